"""BasicBlock against a torch block with torchvision's structure and names."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from absl.testing import parameterized

from tests.torch_utils import load, n, t
from tlean import Model, ShapeError, nn
from tlean import layers as L
from tlean.seed import SeedStream


class TorchBasicBlock(torch.nn.Module):
    """torchvision.models.resnet.BasicBlock, written out (torchvision is not a test dependency)."""

    expansion = 1

    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(planes)
        self.relu = torch.nn.ReLU(inplace=True)
        self.conv2 = torch.nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = torch.nn.Sequential(
                torch.nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False), torch.nn.BatchNorm2d(planes)
            )
        self.stride = stride

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


def randomise_norms(module, seed=0):
    """Random BatchNorm affine parameters and running statistics, so eval mode is not trivial."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
                m.bias.copy_(torch.rand(m.bias.shape, generator=g) - 0.5)
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) - 0.5)
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
    return module


def from_torch(layer, module):
    return load(Model(layer, *jax.eval_shape(layer.init, jax.random.key(0))), module)


class BasicBlockParityTest(chex.TestCase):
    # Jitted only: the block is Conv2d/BatchNorm2d composed, whose eager runs are tested in their own
    # files, and tests/layers/test_invariants.py checks the block's eager == jit in train and eval.
    @chex.variants(with_jit=True)
    @parameterized.named_parameters(
        ("identity-shortcut", 4, 4, 1, (2, 4, 5, 5)),
        ("projection-stride-2", 4, 8, 2, (2, 4, 6, 5)),
    )
    def test_outputs_state_and_gradients_match_torch_in_train_and_eval(self, inplanes, planes, stride, shape):
        torch.manual_seed(0)
        tm = randomise_norms(TorchBasicBlock(inplanes, planes, stride))
        model = from_torch(L.BasicBlock(inplanes, planes, stride), tm)
        assert set(model.named_parameters()) | set(model.named_buffers()) == set(tm.state_dict())
        rng = np.random.default_rng(1)
        for train in (False, True):
            tm.train(train)
            tm.zero_grad()
            x = rng.normal(size=shape).astype(np.float32)
            xt = t(x)
            yt = tm(xt)
            y, new = self.variant(lambda m, x: m.forward(x, train=train))(model, x)
            np.testing.assert_allclose(y, n(yt), atol=1e-5, rtol=1e-5)
            for name, buffer in tm.named_buffers():  # train: the running statistics moved as torch's did
                np.testing.assert_allclose(new.named_buffers()[name], n(buffer), atol=1e-6, rtol=1e-5, err_msg=name)
            g = rng.normal(size=y.shape).astype(np.float32)
            (yt * torch.from_numpy(g)).sum().backward()
            loss = lambda x, p: jnp.sum(model.replace(params=p)(x, train=train) * g)
            gx, gp = self.variant(jax.grad(loss, argnums=(0, 1)))(x, model.params)
            np.testing.assert_allclose(gx, n(xt.grad), atol=1e-4, rtol=1e-4)
            grads = Model(model.layer, gp, model.state).named_parameters()
            for name, p in tm.named_parameters():
                np.testing.assert_allclose(grads[name], n(p.grad), atol=1e-4, rtol=1e-4, err_msg=name)


def shapes_of(layer):
    """A Model of ``layer`` whose arrays are ShapeDtypeStructs: names and shapes without computing anything."""
    return Model(layer, *jax.eval_shape(layer.init, jax.random.key(0)))


def test_names_follow_torchvision():
    m = shapes_of(L.BasicBlock(4, 8, stride=2))
    assert sorted(m.named_parameters()) == sorted(
        [
            "conv1.weight",
            "bn1.weight",
            "bn1.bias",
            "conv2.weight",
            "bn2.weight",
            "bn2.bias",
            "downsample.0.weight",
            "downsample.1.weight",
            "downsample.1.bias",
        ]
    )
    assert "downsample.1.num_batches_tracked" in m.named_buffers() and "bn1.running_var" in m.named_buffers()
    assert "downsample" not in shapes_of(L.BasicBlock(4, 4)).params
    assert not L.BasicBlock(4, 4).projects and L.BasicBlock(4, 4, 2).projects and L.BasicBlock(4, 5).projects


def test_sub_layers_are_initialised_from_one_seed_stream_in_the_documented_order():
    block = L.BasicBlock(3, 6, stride=2)
    key = jax.random.key(3)
    params, state = block.init(key)
    stream = SeedStream(key)
    expected = {}
    for name, layer in [
        ("conv1", L.Conv2d(3, 6, 3, 2, 1, bias=False)),
        ("bn1", L.BatchNorm2d(6)),
        ("conv2", L.Conv2d(6, 6, 3, 1, 1, bias=False)),
        ("bn2", L.BatchNorm2d(6)),
        ("downsample.0", L.Conv2d(3, 6, 1, 2, bias=False)),
        ("downsample.1", L.BatchNorm2d(6)),
    ]:
        sub, stream = stream.fresh()
        expected[name] = layer.init(sub)
    np.testing.assert_array_equal(params["conv1"]["weight"], expected["conv1"][0]["weight"])
    np.testing.assert_array_equal(params["conv2"]["weight"], expected["conv2"][0]["weight"])
    np.testing.assert_array_equal(params["downsample"][0]["weight"], expected["downsample.0"][0]["weight"])
    bound = 1 / np.sqrt(3 * 9)  # conv1: PyTorch's default init, fan_in = 3 * 3 * 3
    assert np.abs(params["conv1"]["weight"]).max() <= bound
    np.testing.assert_array_equal(params["bn1"]["weight"], np.ones(6))
    np.testing.assert_array_equal(state["bn2"]["running_var"], np.ones(6))
    model = nn.run(0, nn.BasicBlock(3, 6, stride=2))  # the builder draws one key and calls init with it
    np.testing.assert_array_equal(
        model.params["conv1"]["weight"], block.init(SeedStream(0).fresh()[0])[0]["conv1"]["weight"]
    )


def test_config_is_passed_to_the_sub_layers():
    block = L.BasicBlock(4, 4, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16, axis_name="data")
    assert block.conv1.dtype == jnp.bfloat16 and block.bn2.axis_name == "data"
    shapes = shapes_of(block)
    assert (
        shapes.params["conv2"]["weight"].dtype == jnp.bfloat16
        and shapes.state["bn1"]["running_mean"].dtype == jnp.float32
    )
    params, state = jax.tree.map(lambda s: jnp.ones(s.shape, s.dtype), (shapes.params, shapes.state))
    y, _ = block.apply(params, state, jnp.ones((2, 4, 3, 3)))
    assert y.dtype == jnp.bfloat16
    assert L.BasicBlock(4, 4) == L.BasicBlock(np.int64(4), 4, stride=1) and hash(L.BasicBlock(4, 4)) == hash(
        L.BasicBlock(4, 4, 1)
    )


def test_bad_configuration_and_input():
    with pytest.raises(ValueError, match=r"BasicBlock: stride must be a positive int, got 0"):
        L.BasicBlock(4, 4, stride=0)
    block = L.BasicBlock(4, 8, stride=2)
    params, state = shapes_of(block).params, shapes_of(block).state  # shapes suffice: errors come at trace time
    with pytest.raises(
        ShapeError,
        match=r"BasicBlock\(in_planes=4, planes=8, stride=2\): expected input \[N, 4, H, W\], got shape \(2, 3, 5, 5\)",
    ):
        block.apply(params, state, jnp.ones((2, 3, 5, 5)))
    with pytest.raises(ShapeError, match=r"expected input \[N, 4, H, W\], got shape \(4, 5, 5\)"):
        block.apply(params, state, jnp.ones((4, 5, 5)))
    x = jax.ShapeDtypeStruct((1, 4, 2, 2), jnp.float32)  # 1 x 1 after the stride: no batch statistics
    with pytest.raises(
        ShapeError, match=r"^seq\.bn1 BatchNorm2d\(num_features=8\): expected more than one value per channel"
    ):
        jax.jit(lambda p, s, x: block.apply(p, s, x, train=True)).lower(params, state, x)
