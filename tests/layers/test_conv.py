"""Conv2d against torch.nn.Conv2d: outputs and gradients over stride/padding/dilation/groups, CHW and NCHW."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from absl.testing import parameterized
from hypothesis import given, settings
from hypothesis import strategies as st

from tlean import Model, ShapeError, nn, seq
from tlean import layers as L
from tlean.seed import SeedStream
from tests.torch_utils import load, n, t

# torch warns that it copies the input for an even kernel with padding="same"; that is its business.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")


def from_torch(layer, module):
    """A Model of ``layer`` holding ``module``'s weights (no random init: only shapes are traced)."""
    return load(Model(layer, *jax.eval_shape(layer.init, jax.random.key(0))), module)

# (in, out, kernel_size, stride, padding, dilation, groups, bias, input shape)
CONFIGS = [
    ("plain", 3, 4, 3, 1, 0, 1, 1, True, (2, 3, 7, 7)),
    ("strided-padded", 3, 4, 3, 2, 1, 1, 1, True, (2, 3, 8, 7)),
    ("rect-groups-dilation", 4, 6, (3, 2), (2, 1), (1, 0), (1, 2), 2, False, (1, 4, 9, 8)),
    ("depthwise-same-dilated", 4, 4, 3, 1, "same", 2, 4, True, (2, 4, 6, 6)),
    ("even-kernel-same", 3, 4, 4, 1, "same", 1, 1, True, (2, 3, 5, 6)),
    ("unbatched-valid", 3, 4, (2, 3), 1, "valid", 1, 1, True, (3, 5, 5)),
    ("unbatched-1x1-stride3-groups", 2, 4, 1, 3, (2, 1), 1, 2, True, (2, 7, 5)),
    ("asymmetric-everything", 6, 3, (2, 3), (3, 2), (2, 1), (2, 1), 3, True, (2, 6, 9, 7)),
]


class Conv2dParityTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*CONFIGS)
    def test_outputs_and_gradients_match_torch(self, cin, cout, k, stride, padding, dilation, groups, bias, shape):
        torch.manual_seed(0)
        tm = torch.nn.Conv2d(cin, cout, k, stride=stride, padding=padding, dilation=dilation, groups=groups, bias=bias)
        model = from_torch(L.Conv2d(cin, cout, k, stride, padding, dilation, groups, bias), tm)
        rng = np.random.default_rng(1)
        x = rng.normal(size=shape).astype(np.float32)
        xt = t(x)
        yt = tm(xt)
        y = self.variant(lambda m, x: m(x))(model, x)
        assert y.shape == tuple(yt.shape)
        np.testing.assert_allclose(y, n(yt), atol=1e-5, rtol=1e-5)

        cotangent = rng.normal(size=y.shape).astype(np.float32)  # a random output weighting, not just sum()
        (yt * torch.from_numpy(cotangent)).sum().backward()
        loss = lambda x, p: jnp.sum(model.replace(params=p)(x) * cotangent)
        gx, gp = self.variant(jax.grad(loss, argnums=(0, 1)))(x, model.params)
        np.testing.assert_allclose(gx, n(xt.grad), atol=1e-4, rtol=1e-5)
        np.testing.assert_allclose(gp["weight"], n(tm.weight.grad), atol=1e-4, rtol=1e-5)
        if bias:
            np.testing.assert_allclose(gp["bias"], n(tm.bias.grad), atol=1e-4, rtol=1e-5)
        else:
            assert "bias" not in gp


@settings(max_examples=8)  # a sweep on top of CONFIGS; each new shape compiles anew
@given(
    cin_groups=st.sampled_from([(1, 1), (2, 1), (2, 2), (4, 2)]),
    out_mult=st.integers(1, 2),
    k=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    pad=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    hw=st.tuples(st.integers(5, 8), st.integers(5, 8)),
    batched=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_any_configuration_matches_torch(cin_groups, out_mult, k, stride, dilation, pad, hw, batched, seed):
    cin, groups = cin_groups
    cout = groups * out_mult
    torch.manual_seed(seed)
    tm = torch.nn.Conv2d(cin, cout, k, stride=stride, padding=pad, dilation=dilation, groups=groups)
    model = from_torch(L.Conv2d(cin, cout, k, stride, pad, dilation, groups), tm)
    shape = ((2,) if batched else ()) + (cin,) + hw
    x = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
    np.testing.assert_allclose(model(x), n(tm(t(x))), atol=1e-5, rtol=1e-5)


def test_same_padding_keeps_the_size_and_puts_the_odd_pad_at_the_end():
    conv = L.Conv2d(1, 1, (4, 3), padding="same", dilation=(1, 2), bias=False)
    assert conv.pads == ((1, 2), (2, 2))  # torch: total = dilation * (k - 1), left = total // 2
    params = {"weight": jnp.zeros((1, 1, 4, 3)).at[0, 0, 0, 0].set(1.0)}  # picks x[i - 1, j - 2]
    x = jnp.arange(30.0).reshape(1, 5, 6)
    y, _ = conv.apply(params, {}, x)
    assert y.shape == x.shape
    expected = np.zeros((5, 6), np.float32)
    expected[1:, 2:] = np.asarray(x[0, :-1, :-2])
    np.testing.assert_array_equal(y[0], expected)


def test_default_init_follows_pytorch():
    """weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = in_channels / groups * kH * kW."""
    layer = L.Conv2d(32, 48, (3, 5), groups=4)
    params, state = layer.init(jax.random.key(0))
    fan_in = 32 // 4 * 3 * 5
    bound = 1 / np.sqrt(fan_in)
    w, b = np.asarray(params["weight"]), np.asarray(params["bias"])
    assert state == {} and w.shape == (48, 8, 3, 5) and b.shape == (48,) and w.dtype == np.float32
    assert bound * 0.99 < np.abs(w).max() <= bound and np.abs(b).max() <= bound
    np.testing.assert_allclose(w.std(), bound / np.sqrt(3), rtol=0.02)
    torch.manual_seed(0)
    tw = torch.nn.Conv2d(32, 48, (3, 5), groups=4).weight.detach().numpy()
    np.testing.assert_allclose(w.std(), tw.std(), rtol=0.03)
    assert not L.Conv2d(3, 4, 3, bias=False).init(jax.random.key(0))[0].keys() - {"weight"}


def test_builders_draw_one_key_and_init_the_layer_with_it():
    layer = L.Conv2d(3, 4, 3, bias=False)
    from_builder = nn.run(7, nn.Conv2d(3, 4, 3, bias=False))
    key, _ = SeedStream(7).fresh()
    np.testing.assert_array_equal(from_builder.params["weight"], layer.init(key)[0]["weight"])
    assert from_builder.layer == layer
    from_pure = nn.pure.conv2d(3, 4, 3, bias=False, key=key)
    np.testing.assert_array_equal(from_pure.params["weight"], from_builder.params["weight"])


@pytest.mark.parametrize("dtype,param_dtype", [(None, jnp.float32), (jnp.bfloat16, jnp.float32), (None, jnp.bfloat16)])
def test_dtype_and_param_dtype(dtype, param_dtype):
    layer = L.Conv2d(3, 4, 3, padding=1, dtype=dtype, param_dtype=param_dtype)
    params, _ = layer.init(jax.random.key(0))
    assert params["weight"].dtype == jnp.dtype(param_dtype) and params["bias"].dtype == jnp.dtype(param_dtype)
    x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 3, 5, 5)), jnp.float32)
    y, _ = layer.apply(params, {}, x)
    assert y.dtype == (jnp.dtype(dtype) if dtype is not None else jnp.result_type(x, params["weight"]))
    full = L.Conv2d(3, 4, 3, padding=1).apply(jax.tree.map(lambda p: p.astype(jnp.float32), params), {}, x)[0]
    np.testing.assert_allclose(np.asarray(y, np.float32), full, rtol=5e-2, atol=5e-2)


def test_configs_are_normalised_so_equal_configs_hash_equal():
    a = L.Conv2d(3, 4, 3)
    b = L.Conv2d(3, 4, (3, 3), stride=(1, 1), padding=0, dilation=[1, 1])
    assert a == b and hash(a) == hash(b) and repr(a) == "Conv2d(in_channels=3, out_channels=4, kernel_size=(3, 3))"
    assert L.Conv2d(np.int64(3), 4, np.int32(3), padding=np.int64(1)).padding == (1, 1)
    assert L.Conv2d(3, 4, 3, dtype="bfloat16").dtype == jnp.bfloat16


def test_bad_configuration_is_a_value_error_naming_the_layer():
    cases = [
        (dict(in_channels=3, out_channels=4, kernel_size=3, groups=2), r"Conv2d: in_channels=3 must be divisible by groups=2"),
        (dict(in_channels=4, out_channels=3, kernel_size=3, groups=2), r"Conv2d: out_channels=3 must be divisible by groups=2"),
        (dict(in_channels=3, out_channels=4, kernel_size=3, stride=2, padding="same"), r"padding='same' is not supported for strided"),
        (dict(in_channels=3, out_channels=4, kernel_size=3, padding="full"), r"Conv2d: padding must be an int, a pair, 'same' or 'valid', got 'full'"),
        (dict(in_channels=3, out_channels=4, kernel_size=3, padding=-1), r"Conv2d: padding must be an int or a pair of ints >= 0, got -1"),
        (dict(in_channels=3, out_channels=4, kernel_size=0), r"Conv2d: kernel_size must be an int or a pair of ints >= 1, got 0"),
        (dict(in_channels=3, out_channels=4, kernel_size=(3, 3, 3)), r"kernel_size must be an int or a pair"),
        (dict(in_channels=3, out_channels=4, kernel_size=3, stride=(1, 0)), r"stride must be an int or a pair of ints >= 1, got \(1, 0\)"),
        (dict(in_channels=3, out_channels=4, kernel_size=3, dilation=1.5), r"dilation must be"),
        (dict(in_channels=0, out_channels=4, kernel_size=3), r"Conv2d: in_channels must be a positive int, got 0"),
        (dict(in_channels=3, out_channels=4, kernel_size=3, padding_mode="reflect"), r"only padding_mode='zeros' is supported, got 'reflect'"),
        (dict(in_channels=3, out_channels=4, kernel_size=3, bias=1), r"Conv2d: bias must be a bool"),
        (dict(in_channels=3, out_channels=4, kernel_size=3, dtype=jnp.int32), r"Conv2d: dtype must be a floating dtype"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            L.Conv2d(**kwargs)


def test_bad_input_is_a_shape_error_naming_the_layer_and_shapes():
    conv = L.Conv2d(3, 4, 3)
    params, state = conv.init(jax.random.key(0))
    name = r"Conv2d\(in_channels=3, out_channels=4, kernel_size=\(3, 3\)\)"
    with pytest.raises(ShapeError, match=name + r": expected input \[N, 3, H, W\] or unbatched \[3, H, W\], got shape \(2, 4, 6, 6\)"):
        conv.apply(params, state, jnp.ones((2, 4, 6, 6)))
    with pytest.raises(ShapeError, match=r"got shape \(6, 6\)"):
        conv.apply(params, state, jnp.ones((6, 6)))
    with pytest.raises(ShapeError, match=r"got shape \(1, 2, 3, 6, 6\)"):
        conv.apply(params, state, jnp.ones((1, 2, 3, 6, 6)))
    with pytest.raises(TypeError, match=name + r": expected a floating-point input, got int32"):
        conv.apply(params, state, jnp.ones((2, 3, 6, 6), jnp.int32))
    big = L.Conv2d(3, 4, 3, padding=(1, 0), dilation=2)
    with pytest.raises(ShapeError, match=r"expected an input whose padded size \(H, W\) is at least the dilated kernel size \(5, 5\) "
                                         r"\(padding \(\(1, 1\), \(0, 0\)\) makes it \(6, 4\)\), got shape \(1, 3, 4, 4\)"):
        big.apply(big.init(jax.random.key(0))[0], {}, jnp.ones((1, 3, 4, 4)))


def test_errors_inside_a_seq_say_where_and_happen_at_trace_time():
    net = seq(L.Conv2d(3, 8, 3), L.relu, L.Conv2d(4, 2, 1))
    params, state = jax.eval_shape(net.init, jax.random.key(0))  # shapes suffice: the error comes at trace time
    x = jax.ShapeDtypeStruct((2, 3, 6, 6), jnp.float32)
    with pytest.raises(ShapeError, match=r"^seq\[2\] Conv2d\(in_channels=4, out_channels=2, kernel_size=\(1, 1\)\): "
                                         r"expected input \[N, 4, H, W\] .*, got shape \(2, 8, 4, 4\)"):
        jax.jit(lambda p, s, x: net.apply(p, s, x)).lower(params, state, x)
