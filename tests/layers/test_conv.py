"""Conv1d/2d/3d and ConvTranspose1d/2d/3d against torch.nn: outputs and gradients over stride, padding,
padding_mode, dilation, groups, output_padding, batched and unbatched inputs."""

import inspect

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from absl.testing import parameterized
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.torch_utils import load, n, t
from tlean import Model, ShapeError, nn, seq
from tlean import layers as L
from tlean.seed import SeedStream

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
        (
            dict(in_channels=3, out_channels=4, kernel_size=3, groups=2),
            r"Conv2d: in_channels=3 must be divisible by groups=2",
        ),
        (
            dict(in_channels=4, out_channels=3, kernel_size=3, groups=2),
            r"Conv2d: out_channels=3 must be divisible by groups=2",
        ),
        (
            dict(in_channels=3, out_channels=4, kernel_size=3, stride=2, padding="same"),
            r"padding='same' is not supported for strided",
        ),
        (
            dict(in_channels=3, out_channels=4, kernel_size=3, padding="full"),
            r"Conv2d: padding must be an int, a pair, 'same' or 'valid', got 'full'",
        ),
        (
            dict(in_channels=3, out_channels=4, kernel_size=3, padding=-1),
            r"Conv2d: padding must be an int or a pair of ints >= 0, got -1",
        ),
        (
            dict(in_channels=3, out_channels=4, kernel_size=0),
            r"Conv2d: kernel_size must be an int or a pair of ints >= 1, got 0",
        ),
        (dict(in_channels=3, out_channels=4, kernel_size=(3, 3, 3)), r"kernel_size must be an int or a pair"),
        (
            dict(in_channels=3, out_channels=4, kernel_size=3, stride=(1, 0)),
            r"stride must be an int or a pair of ints >= 1, got \(1, 0\)",
        ),
        (dict(in_channels=3, out_channels=4, kernel_size=3, dilation=1.5), r"dilation must be"),
        (dict(in_channels=0, out_channels=4, kernel_size=3), r"Conv2d: in_channels must be a positive int, got 0"),
        (
            dict(in_channels=3, out_channels=4, kernel_size=3, padding_mode="mirror"),
            r"Conv2d: padding_mode must be one of 'zeros', 'reflect', 'replicate', 'circular', got 'mirror'",
        ),
        (dict(in_channels=3, out_channels=4, kernel_size=3, bias=1), r"Conv2d: bias must be a bool"),
        (
            dict(in_channels=3, out_channels=4, kernel_size=3, dtype=jnp.int32),
            r"Conv2d: dtype must be a floating dtype",
        ),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            L.Conv2d(**kwargs)


def test_bad_input_is_a_shape_error_naming_the_layer_and_shapes():
    conv = L.Conv2d(3, 4, 3)
    params, state = conv.init(jax.random.key(0))
    name = r"Conv2d\(in_channels=3, out_channels=4, kernel_size=\(3, 3\)\)"
    with pytest.raises(
        ShapeError, match=name + r": expected input \[N, 3, H, W\] or unbatched \[3, H, W\], got shape \(2, 4, 6, 6\)"
    ):
        conv.apply(params, state, jnp.ones((2, 4, 6, 6)))
    with pytest.raises(ShapeError, match=r"got shape \(6, 6\)"):
        conv.apply(params, state, jnp.ones((6, 6)))
    with pytest.raises(ShapeError, match=r"got shape \(1, 2, 3, 6, 6\)"):
        conv.apply(params, state, jnp.ones((1, 2, 3, 6, 6)))
    with pytest.raises(TypeError, match=name + r": expected a floating-point input, got int32"):
        conv.apply(params, state, jnp.ones((2, 3, 6, 6), jnp.int32))
    big = L.Conv2d(3, 4, 3, padding=(1, 0), dilation=2)
    with pytest.raises(
        ShapeError,
        match=r"expected an input whose padded size \(H, W\) is at least the dilated kernel size \(5, 5\) "
        r"\(padding \(\(1, 1\), \(0, 0\)\) makes it \(6, 4\)\), got shape \(1, 3, 4, 4\)",
    ):
        big.apply(big.init(jax.random.key(0))[0], {}, jnp.ones((1, 3, 4, 4)))


def test_errors_inside_a_seq_say_where_and_happen_at_trace_time():
    net = seq(L.Conv2d(3, 8, 3), L.relu, L.Conv2d(4, 2, 1))
    params, state = jax.eval_shape(net.init, jax.random.key(0))  # shapes suffice: the error comes at trace time
    x = jax.ShapeDtypeStruct((2, 3, 6, 6), jnp.float32)
    with pytest.raises(
        ShapeError,
        match=r"^seq\[2\] Conv2d\(in_channels=4, out_channels=2, kernel_size=\(1, 1\)\): "
        r"expected input \[N, 4, H, W\] .*, got shape \(2, 8, 4, 4\)",
    ):
        jax.jit(lambda p, s, x: net.apply(p, s, x)).lower(params, state, x)


# --- the N-d family (issue 13): Conv1d/2d/3d with padding modes, ConvTranspose1d/2d/3d --------------------


def weighted_parity(layer, module, shape, seed=0, atol=1e-5, **forward):
    """Outputs and gradients (input, weight, bias) of ``layer`` holding ``module``'s weights equal torch's.

    Returns the largest absolute difference seen (for the record; the asserts are the test)."""
    model = from_torch(layer, module)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape).astype(np.float32)
    xt = t(x)
    yt = module(xt, **forward)
    y = jax.jit(lambda m, x: m(x, **forward))(model, x)
    assert y.shape == tuple(yt.shape)
    np.testing.assert_allclose(y, n(yt), atol=atol, rtol=1e-5)
    cotangent = rng.normal(size=y.shape).astype(np.float32)
    (yt * torch.from_numpy(cotangent)).sum().backward()
    gx, gp = jax.jit(jax.grad(lambda x, p: jnp.sum(model.replace(params=p)(x, **forward) * cotangent), argnums=(0, 1)))(
        x, model.params
    )
    torch_grads = {"weight": module.weight.grad} | ({"bias": module.bias.grad} if module.bias is not None else {})
    assert set(gp) == set(torch_grads)
    np.testing.assert_allclose(gx, n(xt.grad), atol=10 * atol, rtol=1e-5)
    for name, g in torch_grads.items():
        np.testing.assert_allclose(gp[name], n(g), atol=10 * atol, rtol=1e-5)
    return max(
        float(np.abs(np.asarray(a) - n(b)).max())
        for a, b in [(y, yt), (gx, xt.grad)] + [(gp[k], v) for k, v in torch_grads.items()]
    )


# (name, dims, positional args as torch takes them, keywords, input shape)
CONV_ND = [
    ("1d-plain", 1, (3, 4, 3), {}, (2, 3, 9)),
    ("1d-stride-pad-dilation-groups", 1, (4, 6, 3, 2, 2, 2, 2, False), {}, (2, 4, 11)),
    ("1d-unbatched-same-reflect", 1, (3, 2, 4), dict(padding="same", padding_mode="reflect"), (3, 7)),
    ("1d-replicate", 1, (2, 3, 3, 1, 2), dict(padding_mode="replicate"), (2, 2, 5)),
    ("1d-circular-strided", 1, (2, 2, 3, 2, 3), dict(padding_mode="circular"), (1, 2, 6)),
    ("2d-reflect-asymmetric", 2, (2, 4, (3, 2), (2, 1), (2, 1)), dict(padding_mode="reflect"), (2, 2, 6, 5)),
    ("2d-circular-groups-unbatched", 2, (4, 4, 3, 1, 1, 1, 2), dict(padding_mode="circular"), (4, 5, 4)),
    (
        "2d-replicate-same-dilated",
        2,
        (2, 3, 3),
        dict(padding="same", dilation=2, padding_mode="replicate"),
        (1, 2, 5, 6),
    ),
    ("3d-plain", 3, (2, 3, (2, 3, 2)), {}, (2, 2, 4, 5, 3)),
    ("3d-strided-padded-groups", 3, (4, 2, 3, (2, 1, 2), 1, 1, 2), {}, (1, 4, 5, 4, 5)),
    ("3d-unbatched-reflect-same", 3, (2, 2, 3), dict(padding="same", padding_mode="reflect"), (2, 3, 4, 3)),
]
TORCH_CONV = {1: torch.nn.Conv1d, 2: torch.nn.Conv2d, 3: torch.nn.Conv3d}
TLEAN_CONV = {1: L.Conv1d, 2: L.Conv2d, 3: L.Conv3d}


@pytest.mark.parametrize("name,dims,args,kwargs,shape", CONV_ND, ids=[c[0] for c in CONV_ND])
def test_conv_nd_matches_torch_with_every_padding_mode(name, dims, args, kwargs, shape):
    torch.manual_seed(0)
    weighted_parity(TLEAN_CONV[dims](*args, **kwargs), TORCH_CONV[dims](*args, **kwargs), shape)


# (name, dims, positional args in torch's order: in, out, k, stride, padding, output_padding, groups, bias, dilation)
TRANSPOSE = [
    ("1d-plain", 1, (3, 2, 3), (2, 3, 5)),
    ("1d-stride-output-padding", 1, (2, 4, 3, 2, 1, 1), (2, 2, 6)),
    ("1d-groups-dilation-nobias-unbatched", 1, (4, 6, 2, 3, 2, 1, 2, False, 2), (4, 5)),
    ("1d-padding-beyond-kernel", 1, (2, 2, 2, 3, 2), (1, 2, 5)),
    ("2d-plain", 2, (3, 2, 3), (2, 3, 4, 5)),
    ("2d-rect-stride-pad-output-padding", 2, (2, 3, (3, 2), (2, 3), (1, 0), (1, 2)), (2, 2, 4, 3)),
    ("2d-groups-dilation-unbatched", 2, (4, 2, 3, 2, 1, 1, 2, True, 2), (4, 3, 3)),
    ("2d-output-padding-below-dilation", 2, (2, 2, 2, 1, 0, 1, 1, True, 2), (1, 2, 3, 3)),
    ("3d-plain", 3, (2, 2, 2), (1, 2, 3, 2, 3)),
    ("3d-strided-groups", 3, (4, 4, (2, 3, 2), 2, (0, 1, 1), (1, 0, 1), 2), (2, 4, 2, 3, 2)),
]
TORCH_TRANSPOSE = {1: torch.nn.ConvTranspose1d, 2: torch.nn.ConvTranspose2d, 3: torch.nn.ConvTranspose3d}
TLEAN_TRANSPOSE = {1: L.ConvTranspose1d, 2: L.ConvTranspose2d, 3: L.ConvTranspose3d}


@pytest.mark.parametrize("name,dims,args,shape", TRANSPOSE, ids=[c[0] for c in TRANSPOSE])
def test_conv_transpose_matches_torch(name, dims, args, shape):
    torch.manual_seed(1)
    weighted_parity(TLEAN_TRANSPOSE[dims](*args), TORCH_TRANSPOSE[dims](*args), shape)


@pytest.mark.parametrize("output_size", [(9, 8), (10, 7), (1, 2, 10, 8)])
def test_conv_transpose_output_size_picks_the_output_padding_as_torch(output_size):
    torch.manual_seed(2)
    args = (2, 3, 3, (2, 2), 1)
    weighted_parity(L.ConvTranspose2d(*args), torch.nn.ConvTranspose2d(*args), (1, 2, 5, 4), output_size=output_size)
    layer = L.ConvTranspose2d(*args)
    params, state = layer.init(jax.random.key(0))
    with pytest.raises(
        ValueError,
        match=r"ConvTranspose2d\(.*\): output_size must give 2 sizes between \(9, 7\) and \(10, 8\) "
        r"for an input of shape \(1, 2, 5, 4\), got \(11, 7\)",
    ):
        layer.apply(params, state, jnp.ones((1, 2, 5, 4)), output_size=(11, 7))
    with pytest.raises(ValueError, match="requested an output size of"):  # torch refuses it too
        torch.nn.ConvTranspose2d(*args)(torch.ones(1, 2, 5, 4), output_size=(11, 7))


def test_the_1d_2d_3d_names_share_one_implementation_and_torchs_positional_order():
    assert L.Conv1d(3, 4, 3, 2, 1, 2, 1, False, "circular") == L.Conv1d(
        3, 4, (3,), stride=2, padding=1, dilation=2, bias=False, padding_mode="circular"
    )
    assert repr(L.Conv3d(2, 2, 3)) == "Conv3d(in_channels=2, out_channels=2, kernel_size=(3, 3, 3))"
    t2 = L.ConvTranspose2d(4, 2, 3, 2, 1, 1, 2, False, 1)
    assert (t2.stride, t2.padding, t2.output_padding, t2.groups, t2.bias, t2.dilation) == (
        (2, 2),
        (1, 1),
        (1, 1),
        2,
        False,
        (1, 1),
    )
    assert repr(L.ConvTranspose1d(2, 3, 3)) == "ConvTranspose1d(in_channels=2, out_channels=3, kernel_size=(3,))"
    with pytest.raises(TypeError):  # tlean-only options are keyword-only
        L.Conv2d(3, 4, 3, 1, 0, 1, 1, True, "zeros", jnp.float32)
    from tlean.layers._conv import _ConvNd, _ConvTransposeNd

    for base, names in (
        (_ConvNd, ("Conv1d", "Conv2d", "Conv3d")),
        (_ConvTransposeNd, ("ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d")),
    ):
        for name in names:  # thin names: only the number of spatial axes and the defaults' lengths differ
            cls = getattr(L, name)
            assert cls.__mro__[1] is base and "apply" not in vars(cls) and "init" not in vars(cls)


def test_conv_transpose_init_follows_torch_fan_in():
    """weight [in, out / groups, *k]; torch's fan_in for it is out / groups * prod(k) (weight.shape[1] * receptive)."""
    layer = L.ConvTranspose2d(16, 24, (3, 2), groups=4)
    params, _ = jax.jit(layer.init)(jax.random.key(0))
    w, b = np.asarray(params["weight"]), np.asarray(params["bias"])
    assert w.shape == (16, 6, 3, 2) and b.shape == (24,)
    bound = 1 / np.sqrt(24 // 4 * 3 * 2)
    assert bound * 0.95 < np.abs(w).max() <= bound and np.abs(b).max() <= bound
    torch.manual_seed(0)
    tm = torch.nn.ConvTranspose2d(16, 24, (3, 2), groups=4)
    assert tuple(tm.weight.shape) == w.shape
    np.testing.assert_allclose(w.std(), n(tm.weight).std(), rtol=0.1)
    small = L.ConvTranspose2d(2, 4, 2, groups=2)
    built = nn.run(3, nn.ConvTranspose2d(2, 4, 2, groups=2))
    np.testing.assert_array_equal(built.params["weight"], small.init(SeedStream(3).fresh()[0])[0]["weight"])
    for name in (
        "Conv1d",
        "Conv3d",
        "ConvTranspose1d",
        "ConvTranspose3d",
    ):  # every name has its builders, same signature
        assert list(inspect.signature(getattr(nn, name)).parameters) == list(
            inspect.signature(getattr(L, name)).parameters
        )
        snake = {
            "Conv1d": "conv1d",
            "Conv3d": "conv3d",
            "ConvTranspose1d": "conv_transpose1d",
            "ConvTranspose3d": "conv_transpose3d",
        }[name]
        assert "key" in inspect.signature(getattr(nn.pure, snake)).parameters


def test_bad_nd_configuration_is_a_value_error_naming_the_layer():
    cases = [
        (lambda: L.Conv1d(3, 4, 3, groups=2), r"Conv1d: in_channels=3 must be divisible by groups=2"),
        (lambda: L.Conv3d(2, 4, (3, 3)), r"Conv3d: kernel_size must be an int or a triple of ints >= 1, got \(3, 3\)"),
        (
            lambda: L.Conv1d(2, 4, 3, padding="full"),
            r"Conv1d: padding must be an int, a 1-tuple, 'same' or 'valid', got 'full'",
        ),
        (
            lambda: L.ConvTranspose2d(4, 3, 3, groups=2),
            r"ConvTranspose2d: out_channels=3 must be divisible by groups=2",
        ),
        (
            lambda: L.ConvTranspose1d(2, 2, 3, stride=2, output_padding=2),
            r"ConvTranspose1d: output_padding must be smaller than either stride or dilation along every axis, as in PyTorch; "
            r"got output_padding=\(2,\), stride=\(2,\), dilation=\(1,\)",
        ),
        (lambda: L.ConvTranspose2d(2, 2, 3, output_padding=(0, 1)), r"ConvTranspose2d: output_padding must be smaller"),
        (
            lambda: L.ConvTranspose2d(2, 2, 3, padding_mode="reflect"),
            r"ConvTranspose2d: only padding_mode='zeros' is supported",
        ),
        (lambda: L.ConvTranspose3d(2, 2, 3, padding="same"), r"ConvTranspose3d: padding must be an int or a triple"),
    ]
    for make, message in cases:
        with pytest.raises(ValueError, match=message):
            make()
    with pytest.raises(RuntimeError, match="output padding must be smaller"):  # torch refuses the same
        torch.nn.ConvTranspose1d(2, 2, 3, stride=2, output_padding=2)(torch.ones(1, 2, 4))
    L.ConvTranspose1d(2, 2, 3, stride=1, output_padding=1, dilation=2)  # below dilation is enough, as in torch


def test_bad_nd_input_is_a_shape_error_naming_the_layer():
    def refuse(layer, shape, message, **kw):  # only shapes: the error comes at trace time, before any arithmetic
        params, state = jax.eval_shape(layer.init, jax.random.key(0))
        with pytest.raises(ShapeError, match=message):
            jax.eval_shape(
                lambda p, s, x: layer.apply(p, s, x, **kw), params, state, jax.ShapeDtypeStruct(shape, jnp.float32)
            )

    refuse(
        L.Conv1d(2, 3, 3, padding=3, padding_mode="reflect"),
        (1, 2, 3),
        r"Conv1d\(.*padding_mode='reflect'\): expected an input whose padded axes fit the reflect "
        r"padding \(\(3, 3\),\) \(each padding smaller than the size\), got shape \(1, 2, 3\)",
    )
    with pytest.raises(RuntimeError, match="Padding size should be less than"):  # torch refuses it too
        torch.nn.Conv1d(2, 3, 3, padding=3, padding_mode="reflect")(torch.ones(1, 2, 3))
    refuse(
        L.Conv2d(2, 3, 3, padding=(0, 4), padding_mode="circular"),
        (2, 3, 3),
        r"Conv2d\(.*\): expected an input whose padded axes fit "
        r"the circular padding \(\(0, 0\), \(4, 4\)\) \(each padding at most the size\)",
    )
    refuse(
        L.Conv3d(2, 2, 1),
        (2, 4, 4),
        r"Conv3d\(.*\): expected input \[N, 2, D, H, W\] or unbatched \[2, D, H, W\], got shape \(2, 4, 4\)",
    )
    refuse(
        L.Conv1d(1, 1, 3, dilation=2),
        (1, 4),
        r"Conv1d\(.*\): expected an input whose padded size \(L\) is at least the dilated kernel size \(5,\)",
    )
    refuse(
        L.ConvTranspose1d(2, 2, 1, padding=1),
        (2, 2),
        r"ConvTranspose1d\(.*\): expected an input giving an output size of at least 1 .*\(0,\)",
    )
    refuse(
        L.ConvTranspose2d(4, 2, 2),
        (1, 2, 3, 3),
        r"ConvTranspose2d\(.*\): expected input \[N, 4, H, W\] or unbatched \[4, H, W\], got shape \(1, 2, 3, 3\)",
    )
    conv = L.Conv1d(2, 3, 3, padding=3, padding_mode="reflect")
    assert conv.apply(*jax.jit(conv.init)(jax.random.key(0)), jnp.ones((1, 2, 4)))[0].shape == (
        1,
        3,
        8,
    )  # a pad below the size is fine
