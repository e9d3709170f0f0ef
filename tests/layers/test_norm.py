"""LayerNorm, RMSNorm, BatchNorm1d/2d/3d, InstanceNorm1d/2d/3d, GroupNorm and LocalResponseNorm against torch.nn
(PyTorch is the oracle)."""

import copy

import chex
import flax.linen
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from absl.testing import parameterized
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.torch_utils import load, n, t
from tlean import Model, ShapeError, nn
from tlean import layers as L


def from_torch(layer, module):
    """A Model of ``layer`` holding ``module``'s parameters and buffers (no random init)."""
    return load(Model(layer, *jax.eval_shape(layer.init, jax.random.key(0))), module)


def randomise(module, seed=0):
    """Give a torch norm random affine parameters and running statistics, so none is trivially 1 or 0."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in list(module.named_parameters()) + list(module.named_buffers()):
            if tensor.is_floating_point():
                noise = torch.rand(tensor.shape, generator=g)
                tensor.copy_(0.5 + noise if name in ("weight", "running_var") else noise - 0.5)
    return module


def check_grads(module, model, x, train, variant):
    """Outputs and gradients w.r.t. input and every parameter under a random output weighting."""
    module.zero_grad()
    xt = t(x)
    yt = module(xt)
    y = variant(lambda m, x: m(x, train=train))(model, x)
    np.testing.assert_allclose(y, n(yt), atol=1e-5, rtol=1e-5)
    g = np.random.default_rng(5).normal(size=y.shape).astype(np.float32)
    (yt * torch.from_numpy(g)).sum().backward()
    loss = lambda x, p: jnp.sum(model.replace(params=p)(x, train=train) * g)
    gx, gp = variant(jax.grad(loss, argnums=(0, 1)))(x, model.params)
    np.testing.assert_allclose(gx, n(xt.grad), atol=1e-4, rtol=1e-4)
    torch_grads = {k: n(v.grad) for k, v in module.named_parameters()}
    assert set(gp) == set(torch_grads)
    for k, v in torch_grads.items():
        np.testing.assert_allclose(gp[k], v, atol=1e-4, rtol=1e-4)


def normal(shape, seed=0, scale=1.0, shift=0.0):
    return (np.random.default_rng(seed).normal(size=shape) * scale + shift).astype(np.float32)


class LayerNormParityTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(
        ("last-axis", 6, {}, (3, 6)),
        ("list-shape-eps-3d-batch", [3, 4], {"eps": 1e-3}, (2, 5, 3, 4)),
        ("no-bias", 5, {"bias": False}, (2, 5)),
        ("no-affine", (2, 5), {"elementwise_affine": False}, (3, 2, 5)),
    )
    def test_layer_norm_matches_torch(self, shape, kwargs, input_shape):
        tm = randomise(torch.nn.LayerNorm(shape, **kwargs))
        model = from_torch(L.LayerNorm(shape, **kwargs), tm)
        check_grads(tm, model, normal(input_shape, scale=3, shift=1), False, self.variant)

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(
        ("eps-1e-6-batched", 6, {"eps": 1e-6}, (2, 3, 6)),
        ("eps-1e-2-no-affine", 5, {"eps": 1e-2, "elementwise_affine": False}, (2, 5)),
    )
    def test_rms_norm_matches_torch_with_explicit_eps(self, dim, kwargs, input_shape):
        tm = randomise(torch.nn.RMSNorm(dim, **kwargs))
        model = from_torch(L.RMSNorm(dim, **kwargs), tm)
        check_grads(tm, model, normal(input_shape, scale=2), False, self.variant)

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(
        ("default-eps-is-the-dtype-epsilon", 6, {}, (2, 3, 6)),
        ("two-trailing-axes", (3, 4), {"eps": 1e-3}, (2, 3, 4)),
    )
    def test_rms_norm_matches_torch_with_torchs_defaults(self, shape, kwargs, input_shape):
        tm = randomise(torch.nn.RMSNorm(shape, **kwargs))  # torch's eps=None: torch.finfo(x.dtype).eps
        model = from_torch(L.RMSNorm(shape, **kwargs), tm)
        check_grads(tm, model, normal(input_shape, scale=1e-3), False, self.variant)


class BatchNorm2dParityTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(("train", True), ("eval", False))
    def test_outputs_and_gradients_match_torch(self, train):
        tm = randomise(torch.nn.BatchNorm2d(3)).train(train)
        model = from_torch(L.BatchNorm2d(3), tm)
        check_grads(tm, model, normal((4, 3, 5, 3), scale=2, shift=1), train, self.variant)

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(
        ("default", {}),
        ("momentum-0.3-eps-1e-3", {"momentum": 0.3, "eps": 1e-3}),
        ("cumulative-average", {"momentum": None}),
        ("no-affine", {"affine": False}),
    )
    def test_several_train_steps_then_eval_track_torch(self, kwargs):
        tm = randomise(torch.nn.BatchNorm2d(4, **kwargs))
        model = from_torch(L.BatchNorm2d(4, **kwargs), tm)
        step = self.variant(lambda m, x: m.forward(x, train=True))
        for i, shape in enumerate([(3, 4, 2, 5), (5, 4, 1, 2), (3, 4, 2, 5)]):
            x = normal(shape, seed=i, scale=1 + i, shift=i - 1)
            tm.train()
            yt = tm(torch.from_numpy(x))
            y, model = step(model, x)
            np.testing.assert_allclose(y, n(yt), atol=1e-5, rtol=1e-5)
            for name, buffer in tm.named_buffers():
                np.testing.assert_allclose(
                    model.state[name], n(buffer), atol=1e-6, rtol=1e-5, err_msg=f"step {i}: {name}"
                )
        assert model.state["num_batches_tracked"].dtype == jnp.int32 and int(model.state["num_batches_tracked"]) == 3
        tm.eval()
        x = normal((2, 4, 3, 3), seed=9)
        y, after = self.variant(lambda m, x: m.forward(x))(model, x)
        np.testing.assert_allclose(y, n(tm(torch.from_numpy(x))), atol=1e-5, rtol=1e-5)
        jax.tree.map(np.testing.assert_array_equal, after.state, model.state)  # eval leaves the state alone

    @chex.variants(with_jit=True, without_jit=True)
    def test_without_running_stats_both_modes_use_the_batch(self):
        tm = randomise(torch.nn.BatchNorm2d(3, track_running_stats=False)).eval()
        model = from_torch(L.BatchNorm2d(3, track_running_stats=False), tm)
        assert model.state == {}
        for train in (False, True):
            check_grads(tm.train(train), model, normal((2, 3, 4, 4), seed=3), train, self.variant)


@settings(max_examples=8)  # a sweep on top of the parametrised cases above; each shape compiles anew
@given(
    n_=st.integers(1, 3),
    c=st.integers(1, 4),
    h=st.integers(1, 4),
    w=st.integers(2, 4),
    momentum=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**16),
)
def test_one_train_step_matches_torch_over_shapes(n_, c, h, w, momentum, seed):
    tm = randomise(torch.nn.BatchNorm2d(c, momentum=momentum), seed)
    model = from_torch(L.BatchNorm2d(c, momentum=momentum), tm)
    x = normal((n_, c, h, w), seed, scale=2)
    y, model = model.forward(x, train=True)
    np.testing.assert_allclose(y, n(tm(torch.from_numpy(x))), atol=1e-5, rtol=1e-5)
    for name, buffer in tm.named_buffers():
        np.testing.assert_allclose(model.state[name], n(buffer), atol=1e-6, rtol=1e-5)


def test_axis_name_averages_the_statistics_over_a_named_axis():
    """Under vmap (or shard_map) with axis_name, each shard normalises with the full batch's statistics."""
    xs = normal((4, 2, 3, 3, 2), scale=2) + np.arange(4, dtype=np.float32).reshape(4, 1, 1, 1, 1)  # shards differ
    full = xs.reshape(8, 3, 3, 2)
    synced = L.BatchNorm2d(3, axis_name="shards")
    params, state = synced.init(None)
    y_full, s_full = L.BatchNorm2d(3).apply(params, state, full, train=True)
    ys, ss = jax.vmap(lambda x: synced.apply(params, state, x, train=True), axis_name="shards")(xs)
    np.testing.assert_allclose(ys.reshape(full.shape), y_full, atol=1e-5, rtol=1e-5)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        for shard in range(4):
            np.testing.assert_allclose(ss[name][shard], s_full[name], atol=1e-6, rtol=1e-6)
    per_shard, _ = jax.vmap(lambda x: L.BatchNorm2d(3).apply(params, state, x, train=True))(xs)
    assert not np.allclose(per_shard.reshape(full.shape), y_full, atol=1e-2)  # without it: per-shard statistics


def test_flax_momentum_is_one_minus_pytorch_momentum():
    x = normal((4, 3, 2, 2), scale=2, shift=1)
    ours = L.BatchNorm2d(3, momentum=0.1)
    params, state = ours.init(None)
    flax_bn = flax.linen.BatchNorm(use_running_average=False, momentum=0.9, epsilon=1e-5, axis=1)
    variables = flax_bn.init(jax.random.key(0), x)
    for _ in range(2):
        _, state = ours.apply(params, state, x, train=True)
        _, updates = flax_bn.apply(variables, x, mutable=["batch_stats"])
        variables = {**variables, **updates}
    np.testing.assert_allclose(state["running_mean"], variables["batch_stats"]["mean"], rtol=1e-6)


def test_model_forward_in_train_mode_returns_the_model_with_new_state():
    model = nn.run(0, nn.BatchNorm2d(2))
    x = normal((3, 2, 2, 2), shift=4)
    y, trained = jax.jit(lambda m, x: m.forward(x, train=True))(model, x)
    assert int(model.state["num_batches_tracked"]) == 0 and int(trained.state["num_batches_tracked"]) == 1
    np.testing.assert_allclose(trained.state["running_mean"], 0.1 * x.mean(axis=(0, 2, 3)), rtol=1e-5)
    assert trained.layer == model.layer
    jax.tree.map(np.testing.assert_array_equal, trained.params, model.params)  # only the state moves
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-5)


def test_statistics_and_state_stay_float32_for_low_precision_input():
    layer = L.BatchNorm2d(3, param_dtype=jnp.bfloat16)
    params, state = layer.init(None)
    assert params["weight"].dtype == jnp.bfloat16 and state["running_var"].dtype == jnp.float32
    x = jnp.asarray(normal((2, 3, 4, 4), scale=100, shift=1000), jnp.bfloat16)
    y, new = layer.apply(params, state, x, train=True)
    assert y.dtype == jnp.bfloat16 and new["running_mean"].dtype == jnp.float32
    assert new["num_batches_tracked"].dtype == jnp.int32
    ref, _ = L.BatchNorm2d(3).apply(L.BatchNorm2d(3).init(None)[0], state, x.astype(jnp.float32), train=True)
    np.testing.assert_allclose(np.asarray(y, np.float32), ref, atol=3e-2)
    assert L.BatchNorm2d(3, dtype=jnp.float32).apply(params, state, x)[0].dtype == jnp.float32


class InstanceNorm2dParityTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(
        ("batched", {}, (2, 3, 4, 5)),
        ("unbatched", {}, (3, 4, 5)),
        ("eps", {"eps": 1e-2}, (2, 3, 2, 3)),
        ("no-affine-as-torch-default", {"affine": False}, (2, 3, 4, 5)),
    )
    def test_outputs_and_gradients_match_torch(self, kwargs, shape):
        affine = kwargs.get("affine", True)  # torch's default is affine=False: pass it explicitly
        tm = randomise(torch.nn.InstanceNorm2d(3, **{**kwargs, "affine": affine}))
        model = from_torch(L.InstanceNorm2d(3, **kwargs), tm)
        x = normal(shape, scale=3, shift=2)
        check_grads(tm, model, x, False, self.variant)
        np.testing.assert_array_equal(model(x, train=True), model(x))  # no running statistics: modes agree


def test_instance_norm_affine_default_differs_from_torch():
    assert set(L.InstanceNorm2d(4).init(None)[0]) == {"weight", "bias"}
    assert dict(torch.nn.InstanceNorm2d(4).state_dict()) == {}
    assert L.InstanceNorm2d(4, affine=False).init(None) == ({}, {})


def test_bad_configuration_is_a_value_error_naming_the_layer():
    with pytest.raises(
        ValueError, match=r"BatchNorm2d: momentum must be in \[0, 1\] \(PyTorch's convention\) or None, got 1.5"
    ):
        L.BatchNorm2d(3, momentum=1.5)
    with pytest.raises(ValueError, match=r"BatchNorm2d: eps must be a number >= 0, got -1"):
        L.BatchNorm2d(3, eps=-1)
    with pytest.raises(ValueError, match=r"BatchNorm2d: num_features must be a positive int, got 0"):
        L.BatchNorm2d(0)
    with pytest.raises(ValueError, match=r"BatchNorm2d: affine must be a bool"):
        L.BatchNorm2d(3, affine=None)
    with pytest.raises(
        ValueError, match=r"BatchNorm2d: axis_name must be None, an axis name or a tuple of names, got 3"
    ):
        L.BatchNorm2d(3, axis_name=3)
    with pytest.raises(ValueError, match=r"InstanceNorm2d: eps must be a number >= 0"):
        L.InstanceNorm2d(3, eps=float("nan"))
    with pytest.raises(ValueError, match=r"InstanceNorm2d: affine must be a bool"):
        L.InstanceNorm2d(3, affine="no")
    assert L.BatchNorm2d(3, momentum=np.float32(0.5), axis_name=["a", "b"]) == L.BatchNorm2d(
        3, momentum=0.5, axis_name=("a", "b")
    )


def test_bad_input_is_a_shape_error_naming_the_layer_and_shapes():
    bn = L.BatchNorm2d(3)
    params, state = bn.init(None)
    with pytest.raises(
        ShapeError, match=r"BatchNorm2d\(num_features=3\): expected input \[N, 3, H, W\], got shape \(2, 4, 5, 5\)"
    ):
        bn.apply(params, state, jnp.ones((2, 4, 5, 5)))
    with pytest.raises(ShapeError, match=r"expected input \[N, 3, H, W\], got shape \(3, 5, 5\)"):  # torch: 4-D only
        bn.apply(params, state, jnp.ones((3, 5, 5)))
    x = jax.ShapeDtypeStruct((1, 3, 1, 1), jnp.float32)
    with pytest.raises(
        ShapeError,
        match=r"BatchNorm2d\(num_features=3\): expected more than one value per channel in training "
        r"\(N \* H \* W > 1\), got shape \(1, 3, 1, 1\)",
    ):
        jax.jit(lambda p, s, x: bn.apply(p, s, x, train=True)).lower(params, state, x)  # at trace time
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):  # as torch
        torch.nn.BatchNorm2d(3)(torch.ones(1, 3, 1, 1))
    assert bn.apply(params, state, jnp.ones((1, 3, 1, 1)))[0].shape == (1, 3, 1, 1)  # eval mode is fine
    inorm = L.InstanceNorm2d(3)
    with pytest.raises(
        ShapeError,
        match=r"InstanceNorm2d\(num_features=3\): expected input \[N, 3, H, W\] or unbatched \[3, H, W\], got shape \(2, 2, 4, 4\)",
    ):
        inorm.apply(inorm.init(None)[0], {}, jnp.ones((2, 2, 4, 4)))
    with pytest.raises(
        ShapeError, match=r"expected more than one spatial element \(H \* W > 1\), got shape \(2, 3, 1, 1\)"
    ):
        inorm.apply(inorm.init(None)[0], {}, jnp.ones((2, 3, 1, 1)))
    with pytest.raises(TypeError, match=r"BatchNorm2d\(num_features=3\): expected a floating-point input, got int32"):
        bn.apply(params, state, jnp.ones((2, 3, 2, 2), jnp.int32))


# --- BatchNorm1d/3d, InstanceNorm1d/3d with running statistics, GroupNorm, LocalResponseNorm (issue 13) ---


def _jit(f):
    return jax.jit(f)


BATCH_NORM_CASES = [
    ("BatchNorm1d", (3,), {}, (4, 3)),
    ("BatchNorm1d", (3, 1e-3, 0.3), {}, (4, 3, 5)),
    ("BatchNorm1d", (3,), {"affine": False}, (2, 3, 4)),
    ("BatchNorm1d", (3, 1e-5, None), {"bias": False}, (5, 3)),
    ("BatchNorm2d", (3,), {"bias": False}, (2, 3, 3, 4)),
    ("BatchNorm3d", (2,), {}, (2, 2, 3, 2, 3)),
    ("BatchNorm3d", (2, 1e-5, 0.5, True, False), {}, (2, 2, 2, 2, 3)),
]


@pytest.mark.parametrize("name,args,kwargs,shape", BATCH_NORM_CASES, ids=lambda v: str(v).replace(" ", ""))
def test_batch_norm_nd_matches_torch_over_train_steps_then_eval(name, args, kwargs, shape):
    tm = randomise(getattr(torch.nn, name)(*args, **kwargs))
    model = from_torch(getattr(L, name)(*args, **kwargs), tm)
    assert set(model.params) == {k for k, _ in tm.named_parameters()}
    check_grads(
        copy.deepcopy(tm).train(), model, normal(shape, scale=2, shift=1), True, _jit
    )  # a copy: torch's forward moves its buffers
    step = jax.jit(lambda m, x: m.forward(x, train=True))
    for i in range(2):
        x = normal(shape, seed=i + 1, scale=1 + i, shift=i)
        tm.train()
        yt = tm(torch.from_numpy(x))
        y, model = step(model, x)
        np.testing.assert_allclose(y, n(yt), atol=1e-5, rtol=1e-5)
        for k, buffer in tm.named_buffers():
            np.testing.assert_allclose(model.state[k], n(buffer), atol=1e-6, rtol=1e-5, err_msg=f"step {i}: {k}")
    check_grads(tm.eval(), model, normal(shape, seed=9), False, _jit)


INSTANCE_NORM_CASES = [
    ("InstanceNorm1d", (3,), {"affine": True}, (2, 3, 5)),
    ("InstanceNorm1d", (3,), {"affine": False}, (3, 6)),
    ("InstanceNorm1d", (3, 1e-3, 0.3, True, True), {}, (2, 3, 5)),
    ("InstanceNorm2d", (3, 1e-5, 0.1, True, True), {"bias": False}, (3, 4, 5)),
    ("InstanceNorm3d", (2,), {"affine": True}, (2, 2, 3, 2, 3)),
    ("InstanceNorm3d", (2, 1e-5, 0.2, False, True), {}, (2, 3, 2, 3)),
]


@pytest.mark.parametrize("name,args,kwargs,shape", INSTANCE_NORM_CASES, ids=lambda v: str(v).replace(" ", ""))
def test_instance_norm_nd_matches_torch_with_and_without_running_stats(name, args, kwargs, shape):
    tm = randomise(getattr(torch.nn, name)(*args, **kwargs))
    model = from_torch(
        getattr(nn.pure, name.replace("InstanceNorm", "instance_norm"))(*args, **kwargs, key=jax.random.key(0)).layer,
        tm,
    )
    assert set(model.params) == {k for k, _ in tm.named_parameters()} and set(model.state) == {
        k for k, _ in tm.named_buffers()
    }
    check_grads(copy.deepcopy(tm).train(), model, normal(shape, scale=3, shift=2), True, _jit)
    step = jax.jit(lambda m, x: m.forward(x, train=True))
    for i in range(2):
        x = normal(shape, seed=i + 1, scale=1 + i, shift=i)
        yt = tm.train()(torch.from_numpy(x))
        y, model = step(model, x)
        np.testing.assert_allclose(y, n(yt), atol=1e-5, rtol=1e-5)
        for k, buffer in tm.named_buffers():
            np.testing.assert_allclose(model.state[k], n(buffer), atol=1e-6, rtol=1e-5, err_msg=f"step {i}: {k}")
    check_grads(tm.eval(), model, normal(shape, seed=9, scale=2), False, _jit)


def test_instance_norm_momentum_none_leaves_running_stats_as_torch_does():
    tm = torch.nn.InstanceNorm1d(3, momentum=None, affine=True, track_running_stats=True)
    model = from_torch(L.InstanceNorm1d(3, momentum=None, track_running_stats=True), tm)
    x = normal((2, 3, 4), shift=3)
    tm(torch.from_numpy(x))
    _, model = model.forward(x, train=True)
    for k, buffer in tm.named_buffers():
        np.testing.assert_array_equal(model.state[k], n(buffer))


def test_nn_instance_norm_requires_affine_because_the_defaults_differ():
    for name in ("InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d"):
        with pytest.raises(
            TypeError,
            match=rf"nn.{name}: pass affine= explicitly: torch.nn.{name}'s default is affine=False, "
            rf"tlean.layers.{name}'s is affine=True",
        ):
            getattr(nn, name)(4)
        pure = name.replace("InstanceNorm", "instance_norm")
        with pytest.raises(TypeError, match=rf"nn.pure.{pure}: pass affine= explicitly"):
            getattr(nn.pure, pure)(4, key=jax.random.key(0))
        assert nn.run(0, getattr(nn, name)(4, 1e-5, 0.1, False)).params == {}  # positionally counts
        assert set(nn.run(0, getattr(nn, name)(4, affine=True)).params) == {"weight", "bias"}
        assert getattr(L, name)(4).affine  # tlean.layers keeps tlean's default


GROUP_NORM_CASES = [
    ((2, 4), {}, (3, 4)),
    ((2, 4), {"eps": 1e-3}, (2, 4, 5)),
    ((1, 3), {}, (2, 3, 2, 3)),
    ((3, 3), {"affine": False}, (2, 3, 4)),
    ((2, 6, 1e-5, True), {"bias": False}, (2, 6, 2, 2, 2)),
]


@pytest.mark.parametrize("args,kwargs,shape", GROUP_NORM_CASES, ids=lambda v: str(v).replace(" ", ""))
def test_group_norm_matches_torch(args, kwargs, shape):
    tm = randomise(torch.nn.GroupNorm(*args, **kwargs))
    model = from_torch(L.GroupNorm(*args, **kwargs), tm)
    check_grads(tm, model, normal(shape, scale=3, shift=1), False, _jit)
    np.testing.assert_array_equal(model(normal(shape)), model(normal(shape), train=True))


@pytest.mark.parametrize(
    "args,shape",
    [
        ((1,), (2, 3, 4)),
        ((2,), (2, 5, 4)),
        ((3, 1e-2, 0.5, 2.0), (2, 6, 3, 3)),
        ((5, 0.1), (1, 4, 2, 2, 2)),
        ((4,), (2, 3, 5)),
    ],
)
def test_local_response_norm_matches_torch(args, shape):
    tm = torch.nn.LocalResponseNorm(*args)
    model = nn.pure.local_response_norm(*args)
    check_grads(tm, model, normal(shape, scale=3), False, _jit)


def test_new_norm_errors_name_the_layer_expected_and_got():
    with pytest.raises(
        ValueError, match=r"GroupNorm: num_channels must be divisible by num_groups, got num_channels=5, num_groups=2"
    ):
        L.GroupNorm(2, 5)
    norm = L.GroupNorm(2, 4)
    with pytest.raises(
        ShapeError,
        match=r"GroupNorm\(num_groups=2, num_channels=4\): expected input \[N, 4, \*\] \(2 groups\), got shape \(2, 6, 3\)",
    ):
        norm.apply(*norm.init(None), jnp.ones((2, 6, 3)))
    with pytest.raises(ShapeError, match=r"got shape \(4,\)"):
        norm.apply(*norm.init(None), jnp.ones(4))
    bn = L.BatchNorm1d(3)
    with pytest.raises(
        ShapeError, match=r"BatchNorm1d\(num_features=3\): expected input \[N, 3\] or \[N, 3, L\], got shape \(3,\)"
    ):
        bn.apply(*bn.init(None), jnp.ones(3))
    with pytest.raises(
        ShapeError,
        match=r"BatchNorm1d\(num_features=3\): expected more than one value per channel in training \(N > 1\)",
    ):
        bn.apply(*bn.init(None), jnp.ones((1, 3)), train=True)
    bn3 = L.BatchNorm3d(2)
    with pytest.raises(
        ShapeError, match=r"BatchNorm3d\(num_features=2\): expected input \[N, 2, D, H, W\], got shape \(2, 2, 3, 3\)"
    ):
        bn3.apply(*bn3.init(None), jnp.ones((2, 2, 3, 3)))
    inorm = L.InstanceNorm1d(3)
    with pytest.raises(
        ShapeError,
        match=r"InstanceNorm1d\(num_features=3\): expected input \[N, 3, L\] or unbatched \[3, L\], got shape \(2, 4, 5\)",
    ):
        inorm.apply(*inorm.init(None), jnp.ones((2, 4, 5)))
    with pytest.raises(
        ShapeError,
        match=r"InstanceNorm1d\(num_features=3\): expected more than one spatial element \(L > 1\), got shape \(2, 3, 1\)",
    ):
        inorm.apply(*inorm.init(None), jnp.ones((2, 3, 1)))
    tracked = L.InstanceNorm1d(3, track_running_stats=True)
    assert tracked.apply(*tracked.init(None), jnp.ones((2, 3, 1)))[0].shape == (
        2,
        3,
        1,
    )  # eval with running stats: fine, as torch
    lrn = L.LocalResponseNorm(2)
    with pytest.raises(
        ShapeError, match=r"LocalResponseNorm\(size=2\): expected input \[N, C, \*\] of rank >= 3, got shape \(2, 3\)"
    ):
        lrn.apply({}, {}, jnp.ones((2, 3)))
    with pytest.raises(ValueError, match=r"LocalResponseNorm: size must be a positive int, got 0"):
        L.LocalResponseNorm(0)
    with pytest.raises(ValueError, match=r"InstanceNorm3d: momentum must be in \[0, 1\]"):
        L.InstanceNorm3d(2, momentum=2.0)
    with pytest.raises(ValueError, match=r"GroupNorm: affine must be a bool"):
        L.GroupNorm(1, 2, affine=1)


def test_tlean_only_options_are_keyword_only():
    with pytest.raises(TypeError):
        L.LayerNorm(4, 1e-5, True, True, None)  # torch's 5th argument is device: never taken as tlean's dtype
    with pytest.raises(TypeError):
        L.BatchNorm2d(3, 1e-5, 0.1, True, True, None)
    assert (
        L.BatchNorm2d(3, axis_name="d", dtype=jnp.float32, param_dtype=jnp.float32).axis_name == "d"
    )  # BasicBlock's call
    assert (
        L.LayerNorm(4, 1e-6, bias=False, dtype=jnp.bfloat16, param_dtype=jnp.float32).eps == 1e-6
    )  # the Transformer's call
