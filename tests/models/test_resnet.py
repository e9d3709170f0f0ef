"""resnet18/34/50 against a torch ResNet with torchvision's module names (torchvision is not installed)."""

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from tests.layers.test_blocks import TorchBasicBlock, randomise_norms
from tests.torch_utils import load, n
from tlean import Builder, Model, ShapeError, models, nn
from tlean import layers as L


class TorchBottleneck(torch.nn.Module):
    """torchvision.models.resnet.Bottleneck (v1.5: stride on conv2), written out with the same names."""

    expansion = 4

    def __init__(self, inplanes, planes, stride=1, groups=1, base_width=64):
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = torch.nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(width)
        self.conv2 = torch.nn.Conv2d(width, width, 3, stride=stride, padding=1, groups=groups, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(width)
        self.conv3 = torch.nn.Conv2d(width, planes * 4, 1, bias=False)
        self.bn3 = torch.nn.BatchNorm2d(planes * 4)
        self.relu = torch.nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inplanes != planes * 4:
            self.downsample = torch.nn.Sequential(
                torch.nn.Conv2d(inplanes, planes * 4, 1, stride=stride, bias=False), torch.nn.BatchNorm2d(planes * 4)
            )

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class TorchResNet(torch.nn.Module):
    """torchvision.models.resnet.ResNet's modules, forward and initialisation, written out with the same names."""

    def __init__(self, block, layers, num_classes=1000, in_channels=3, zero_init_residual=False):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(64)
        self.relu = torch.nn.ReLU(inplace=True)
        self.maxpool = torch.nn.MaxPool2d(3, stride=2, padding=1)
        inplanes = 64
        for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers), 1):
            stride = 1 if i == 1 else 2
            stage = [block(inplanes, planes, stride)] + [
                block(planes * block.expansion, planes) for _ in range(blocks - 1)
            ]
            setattr(self, f"layer{i}", torch.nn.Sequential(*stage))
            inplanes = planes * block.expansion
        self.avgpool = torch.nn.AdaptiveAvgPool2d((1, 1))
        self.fc = torch.nn.Linear(inplanes, num_classes)
        for m in self.modules():
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if zero_init_residual:
            for m in self.modules():
                last = m.bn3 if isinstance(m, TorchBottleneck) else m.bn2 if isinstance(m, TorchBasicBlock) else None
                if last is not None:
                    torch.nn.init.constant_(last.weight, 0)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


@pytest.fixture
def one_torch_thread():
    """One torch thread: the references are small, and spinning threads only cost CPU time."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def shapes(builder):
    """The Model a builder makes, with ShapeDtypeStructs for arrays: nothing is initialised."""
    return jax.eval_shape(lambda: nn.run(0, builder))


def names(model):
    return set(model.named_parameters()) | set(model.named_buffers())


def test_parameter_counts_and_names_equal_torchvisions():
    assert isinstance(models.resnet50(), Builder)
    assert shapes(models.resnet18()).num_params() == 11_689_512  # torchvision's resnet18()
    assert shapes(models.resnet34()).num_params() == 21_797_672  # torchvision's resnet34()
    assert shapes(models.resnet50()).num_params() == 25_557_032  # torchvision's resnet50()
    with torch.device("meta"):  # shapes only: nothing is allocated or initialised
        references = (TorchResNet(TorchBasicBlock, (3, 4, 6, 3), 10, 1), TorchResNet(TorchBottleneck, (3, 4, 6, 3), 10))
    for builder, reference in zip((models.resnet34(10, 1), models.resnet50(10)), references):
        model = shapes(builder)
        assert names(model) == set(reference.state_dict())
        assert model.num_params() == sum(p.numel() for p in reference.parameters())
    assert "layer3.5.bn2.running_var" in names(shapes(models.resnet34()))
    assert "layer4.2.downsample.0.weight" not in names(shapes(models.resnet50()))  # only the first block projects


def torch_grads(module, x, r):
    """``(y, {name: d sum(y * r) / d param})`` of a torch module, in its current mode and dtype."""
    module.zero_grad()
    y = module(torch.from_numpy(x))
    (y * torch.from_numpy(r)).sum().backward()
    return n(y), {name: n(p.grad) for name, p in module.named_parameters()}


def worst(got, want):
    """The largest error over tensors, each relative to the largest magnitude of its reference gradient."""
    return max(float(np.abs(got[k] - want[k]).max()) / max(float(np.abs(want[k]).max()), 1e-3) for k in want)


def test_resnet50_matches_torch_in_eval_and_train_with_gradients_and_running_statistics(one_torch_thread):
    torch.manual_seed(0)
    tm = randomise_norms(TorchResNet(TorchBottleneck, (3, 4, 6, 3), num_classes=10))
    model = load(shapes(models.resnet50(num_classes=10)), tm)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 64, 64)).astype(np.float32)  # layer4 sees 2 x 2: 8 values per channel in training
    r = rng.normal(size=(2, 10)).astype(np.float32)

    def loss(params, m, train):
        y, m = m.replace(params=params).forward(x, train=train)
        return jnp.sum(y * r), (y, m)

    y_eval, (grads, (y_train, trained)) = jax.jit(lambda m: (m(x), jax.grad(loss, has_aux=True)(m.params, m, True)))(
        model
    )
    with torch.no_grad():
        np.testing.assert_allclose(y_eval, n(tm.eval()(torch.from_numpy(x))), atol=1e-4, rtol=1e-4)
    reference = copy.deepcopy(tm).double().train()  # before torch's train step changes the running statistics
    ty, tgrads = torch_grads(tm.train(), x, r)
    np.testing.assert_allclose(y_train, ty, atol=1e-4, rtol=1e-4)
    buffers = trained.named_buffers()
    for name, buffer in tm.named_buffers():  # the statistics of this batch, by torch's update rule
        np.testing.assert_allclose(buffers[name], n(buffer), atol=1e-5, rtol=1e-4, err_msg=name)
    assert int(buffers["bn1.num_batches_tracked"]) == 1
    # Batch statistics over 8 values per channel make the float32 gradient ill-conditioned (torch's own float32
    # gradient is off from its float64 one by ~30% of some tensors' scale here), so both are held to float64.
    _, exact = torch_grads(reference, x.astype(np.float64), r.astype(np.float64))
    ours, theirs = worst(Model(model.layer, grads).named_parameters(), exact), worst(tgrads, exact)
    assert ours <= 1.5 * theirs + 1e-4, f"gradient error {ours:.2e} vs torch float32's {theirs:.2e}"


def test_torchvision_initialisation():
    layer = models.ResNet(L.BasicBlock, (1, 1, 1, 1), 10, zero_init_residual=True)  # resnet18's init, fewer blocks
    eager = nn.run(0, nn.build(layer))
    params = eager.named_parameters()
    for name in ("conv1.weight", "layer2.0.conv2.weight", "layer3.0.downsample.0.weight"):  # N(0, 2 / fan_out)
        w = np.asarray(params[name])
        fan_out = w.shape[0] * w.shape[2] * w.shape[3]
        assert abs(w.std() / np.sqrt(2 / fan_out) - 1) < 0.05, name
        assert abs(w.mean()) < 0.15 * np.sqrt(2 / fan_out), name
    assert np.all(params["layer2.0.bn2.weight"] == 0) and np.all(params["layer2.0.bn1.weight"] == 1)
    assert np.all(params["layer2.0.bn1.bias"] == 0) and np.all(params["layer2.0.downsample.1.weight"] == 1)
    bound = 1 / np.sqrt(512)  # fc keeps torch's Linear default, U(-1/sqrt(in), 1/sqrt(in))
    assert np.abs(params["fc.weight"]).max() <= bound and np.abs(params["fc.weight"]).max() > 0.9 * bound
    plain, zeroed = models.resnet50_layer(), models.resnet50_layer(zero_init_residual=True)
    assert zeroed != plain
    assert any("bn3" in p for p in zeroed.init_overrides) and not any("bn" in p for p in plain.init_overrides)


def test_bottleneck_block_matches_torchvisions_with_groups():
    torch.manual_seed(1)
    tb = randomise_norms(TorchBottleneck(8, 4, stride=2, groups=2, base_width=128))  # width 16, ResNeXt/Wide style
    layer = L.Bottleneck(8, 4, stride=2, groups=2, base_width=128)
    model = load(Model(layer, *jax.eval_shape(layer.init, jax.random.key(0))), tb)
    assert layer.width == 16 and model.named_parameters()["conv2.weight"].shape == (16, 8, 3, 3)
    rng = np.random.default_rng(1)
    x, r = rng.normal(size=(2, 8, 6, 6)).astype(np.float32), rng.normal(size=(2, 16, 3, 3)).astype(np.float32)
    ty, tgrads = torch_grads(tb.eval(), x, r)  # eval mode: running statistics, gradients too
    y, vjp = jax.vjp(lambda p: model.replace(params=p)(x), model.params)
    np.testing.assert_allclose(y, ty, atol=1e-5, rtol=1e-5)
    assert worst(Model(layer, vjp(jnp.asarray(r))[0]).named_parameters(), tgrads) < 1e-5
    assert L.Bottleneck(16, 4).downsample is None and L.Bottleneck(8, 4).projects


def test_errors():
    model = shapes(models.resnet50(num_classes=10))
    forward = lambda train: lambda m, x: m.forward(x, train=train)
    with pytest.raises(
        ShapeError,
        match=r"^seq\.conv1 Conv2d\(in_channels=3, .*\): expected input \[N, 3, H, W\] .*got shape \(2, 1, 32, 32\)",
    ):
        jax.eval_shape(forward(False), model, jax.ShapeDtypeStruct((2, 1, 32, 32), jnp.float32))
    with pytest.raises(
        ShapeError,
        match=r"^seq\.layer4\[0\]\.bn2 BatchNorm2d\(num_features=512\): expected more than one value "
        r"per channel in training \(N \* H \* W > 1\), got shape \(1, 512, 1, 1\)",
    ):
        jax.eval_shape(forward(True), model, jax.ShapeDtypeStruct((1, 3, 32, 32), jnp.float32))
    with pytest.raises(
        ShapeError, match=r"^seq\[0\] Bottleneck\(in_planes=64, planes=64\): expected input \[N, 64, H, W\]"
    ):
        jax.eval_shape(
            lambda m, x: m.layer.layer1.apply(m.params["layer1"], m.state["layer1"], x)[0],
            model,
            jax.ShapeDtypeStruct((2, 32, 8, 8), jnp.float32),
        )
    with pytest.raises(TypeError, match=r"ResNet: block must be BasicBlock or Bottleneck, got <class"):
        models.ResNet(L.Linear, (2, 2, 2, 2))
    with pytest.raises(
        ValueError, match=r"ResNet: layers must be four positive ints \(blocks per stage\), got \(2, 2, 2\)"
    ):
        models.ResNet(L.BasicBlock, (2, 2, 2))
    with pytest.raises(
        ValueError, match=r"ResNet: BasicBlock only supports groups=1 and width_per_group=64, got groups=2"
    ):
        models.resnet18_layer(groups=2)
    with pytest.raises(ValueError, match=r"Bottleneck: planes must be a positive int, got 0"):
        L.Bottleneck(4, 0)
    out = jax.eval_shape(forward(False), model, jax.ShapeDtypeStruct((1, 3, 32, 32), jnp.float32))
    assert out[0].shape == (1, 10)


def test_the_layer_and_the_builder_agree():
    layer = models.resnet50_layer(num_classes=7, in_channels=2)
    assert [name for name, _ in layer.children()] == [
        "conv1",
        "bn1",
        "relu",
        "maxpool",
        "layer1",
        "layer2",
        "layer3",
        "layer4",
        "avgpool",
        "fc",
    ]
    assert shapes(models.resnet50(7, 2)).layer == layer == models.ResNet(L.Bottleneck, [3, 4, 6, 3], 7, in_channels=2)
    assert isinstance(shapes(models.resnet18(7, 2)), Model)
    assert models.resnet18_layer() != models.resnet34_layer() != models.resnet50_layer()
