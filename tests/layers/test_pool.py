"""MaxPool1d/2d/3d, AvgPool1d/2d/3d, AdaptiveAvg/MaxPool1d/2d/3d and GlobalAvgPool against torch.nn:
outputs and input gradients over strides, paddings, dilation, ceil_mode, count_include_pad, divisor_override,
batched and unbatched inputs."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from absl.testing import parameterized

from tests.torch_utils import n, t
from tlean import ShapeError, nn
from tlean import layers as L

# (kernel_size, stride, padding, extra, input shape); extra is dilation (max) or count_include_pad (avg)
MAX_CONFIGS = [
    ("2x2", 2, None, 0, 1, (2, 3, 6, 6)),
    ("3x3-s2-p1", 3, 2, 1, 1, (2, 3, 7, 6)),
    ("dilated-unbatched", 3, 1, 1, 2, (2, 7, 7)),
    ("odd-stride-rect-dilation", (2, 3), (3, 2), (1, 1), (2, 1), (1, 2, 8, 9)),
]
AVG_CONFIGS = [
    ("2x2", 2, None, 0, True, (2, 3, 6, 6)),
    ("3x3-s2-p1-exclude-pad", 3, 2, 1, False, (2, 3, 7, 6)),
    ("rect-unbatched", (3, 2), (1, 2), (1, 1), True, (3, 5, 7)),
    ("rect-unbatched-exclude-pad", (4, 2), 1, (2, 1), False, (2, 5, 5)),
]


class PoolParityTest(chex.TestCase):
    def _check(self, layer, torch_layer, shape, negative=False):
        x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
        if negative:  # all below zero: zero padding instead of -inf would show up in the max
            x = -np.abs(x) - 1
            assert (n(torch_layer(torch.from_numpy(x))) < 0).all()
        m = nn.run(0, nn.build(layer))  # parameter-free: draws no key
        xt = t(x)
        yt = torch_layer(xt)
        y = self.variant(lambda m, x: m(x))(m, x)
        assert y.shape == tuple(yt.shape)
        np.testing.assert_allclose(y, n(yt), atol=1e-6, rtol=1e-6)
        g = np.random.default_rng(1).normal(size=y.shape).astype(np.float32)
        (yt * torch.from_numpy(g)).sum().backward()
        gx = self.variant(jax.grad(lambda x: jnp.sum(m(x) * g)))(x)
        np.testing.assert_allclose(gx, n(xt.grad), atol=1e-6, rtol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*MAX_CONFIGS)
    def test_max_pool_matches_torch(self, k, stride, padding, dilation, shape):
        tm = torch.nn.MaxPool2d(k, stride=stride, padding=padding, dilation=dilation)
        layer = L.MaxPool2d(k, stride=stride, padding=padding, dilation=dilation)
        self._check(layer, tm, shape, negative=True)

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*AVG_CONFIGS)
    def test_avg_pool_matches_torch(self, k, stride, padding, count_include_pad, shape):
        tm = torch.nn.AvgPool2d(k, stride=stride, padding=padding, count_include_pad=count_include_pad)
        self._check(L.AvgPool2d(k, stride=stride, padding=padding, count_include_pad=count_include_pad), tm, shape)

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(("batched", (2, 3, 5, 4)), ("unbatched-1x1", (3, 1, 1)))
    def test_global_avg_pool_is_adaptive_avg_pool_then_flatten(self, shape):
        tm = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d((1, 1)), torch.nn.Flatten(-3))
        self._check(L.GlobalAvgPool(), tm, shape)


def test_pools_keep_low_precision_dtypes():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 3, 6, 6)), jnp.bfloat16)
    for layer in (L.MaxPool2d(2), L.AvgPool2d(3, 1, 1), L.GlobalAvgPool()):
        y, _ = layer.apply({}, {}, x)
        ref, _ = layer.apply({}, {}, x.astype(jnp.float32))
        assert y.dtype == jnp.bfloat16
        np.testing.assert_allclose(np.asarray(y, np.float32), ref, rtol=1e-2, atol=1e-2)


def test_stride_defaults_to_the_kernel_and_configs_normalise():
    a, b = L.MaxPool2d(2), L.MaxPool2d((2, 2), stride=2, padding=(0, 0))
    assert a == b and hash(a) == hash(b) and a.stride == (2, 2)
    assert L.AvgPool2d(3, padding=1) == L.AvgPool2d((3, 3), (3, 3), (1, 1), count_include_pad=True)
    assert not L.MaxPool2d(2).has_params and not L.GlobalAvgPool().has_params
    assert nn.pure.max_pool2d(2).layer == L.MaxPool2d(2) and nn.pure.global_avg_pool().params == {}


def test_bad_configuration_is_a_value_error_naming_the_layer():
    with pytest.raises(
        ValueError,
        match=r"MaxPool2d: padding must be at most half of the kernel size, "
        r"as in PyTorch; got padding=\(2, 2\), kernel_size=\(3, 3\)",
    ):
        L.MaxPool2d(3, padding=2, dilation=2)
    with pytest.raises(RuntimeError, match="pad should be"):  # torch refuses it in forward, dilation or not
        torch.nn.MaxPool2d(3, padding=2, dilation=2)(torch.zeros(1, 9, 9))
    L.MaxPool2d(2, padding=1)
    with pytest.raises(ValueError, match=r"AvgPool2d: padding must be at most half"):
        L.AvgPool2d(2, padding=(0, 2))
    with pytest.raises(ValueError, match=r"AvgPool2d: kernel_size must be an int or a pair of ints >= 1, got 0"):
        L.AvgPool2d(0)
    with pytest.raises(ValueError, match=r"MaxPool2d: stride must be an int or a pair of ints >= 1, got \(1, 0\)"):
        L.MaxPool2d(2, stride=(1, 0))
    with pytest.raises(ValueError, match=r"AvgPool2d: count_include_pad must be a bool"):
        L.AvgPool2d(2, count_include_pad="yes")


def test_bad_input_is_a_shape_error_naming_the_layer_and_shapes():
    pool = L.MaxPool2d(3)
    with pytest.raises(
        ShapeError,
        match=r"MaxPool2d\(kernel_size=\(3, 3\), stride=\(3, 3\)\): expected an input whose padded size "
        r"\(H, W\) is at least the pooling window size \(3, 3\) .*makes it \(2, 5\)\), got shape \(1, 2, 5\)",
    ):
        pool.apply({}, {}, jnp.ones((1, 2, 5)))
    torch_error = "Output size is too small"  # torch refuses the same input
    with pytest.raises(RuntimeError, match=torch_error):
        torch.nn.MaxPool2d(3)(torch.ones(1, 2, 5))
    for layer in (L.MaxPool2d(2), L.AvgPool2d(2), L.GlobalAvgPool()):
        with pytest.raises(
            ShapeError,
            match=type(layer).__name__
            + r"\(.*\): expected input \[N, C, H, W\] or unbatched \[C, H, W\], got shape \(4, 4\)",
        ):
            layer.apply({}, {}, jnp.ones((4, 4)))
        with pytest.raises(TypeError, match=r"expected a floating-point input, got int32"):
            layer.apply({}, {}, jnp.ones((1, 4, 4), jnp.int32))
    with pytest.raises(
        ShapeError, match=r"GlobalAvgPool\(\): expected a non-empty spatial size H, W >= 1, got shape \(2, 3, 0, 4\)"
    ):
        L.GlobalAvgPool().apply({}, {}, jnp.ones((2, 3, 0, 4)))


# --- the N-d family (issue 13) -------------------------------------------------------------------------------


def pool_parity(layer, module, shape, negative=False):
    """Output and input gradient of a parameter-free ``layer`` equal torch's ``module``; returns the largest difference."""
    rng = np.random.default_rng(sum(shape))
    x = rng.normal(size=shape).astype(np.float32)
    if negative:  # all below zero: zero padding instead of -inf would show up in a max
        x = -np.abs(x) - 1
    xt = t(x)
    yt = module(xt)
    y, vjp = jax.vjp(jax.jit(lambda x: layer.apply({}, {}, x)[0]), jnp.asarray(x))
    assert y.shape == tuple(yt.shape), (y.shape, tuple(yt.shape))
    np.testing.assert_allclose(y, n(yt), atol=1e-6, rtol=1e-6)
    g = rng.normal(size=y.shape).astype(np.float32)
    (yt * torch.from_numpy(g)).sum().backward()
    (gx,) = vjp(jnp.asarray(g))
    np.testing.assert_allclose(gx, n(xt.grad), atol=1e-6, rtol=1e-6)
    return max(float(np.abs(np.asarray(y) - n(yt)).max()), float(np.abs(np.asarray(gx) - n(xt.grad)).max()))


# (name, dims, positional args in torch's order, keywords, input shape)
MAX_ND = [
    ("1d", 1, (3, 2, 1), {}, (2, 3, 8)),
    ("1d-unbatched-dilated-ceil", 1, (2, 2, 1, 2), dict(ceil_mode=True), (2, 8)),
    ("1d-ceil-last-window-in-right-padding-dropped", 1, (2, 3, 1), dict(ceil_mode=True), (1, 2, 4)),
    ("1d-ceil-window-larger-than-input", 1, (3, 3), dict(ceil_mode=True), (1, 2, 2)),
    ("2d-ceil", 2, (3, 2), dict(ceil_mode=True), (2, 2, 6, 7)),
    ("2d-ceil-padded-dilated-rect", 2, ((2, 3), (2, 1), (1, 1), (2, 1)), dict(ceil_mode=True), (1, 2, 6, 5)),
    ("3d", 3, (2,), {}, (2, 2, 4, 4, 5)),
    ("3d-unbatched-padded-ceil", 3, ((3, 2, 2), (2, 1, 2), (1, 0, 1)), dict(ceil_mode=True), (2, 5, 3, 4)),
    ("3d-dilated", 3, (2, 1, 0, (1, 2, 1)), {}, (1, 1, 3, 5, 3)),
]
AVG_ND = [
    ("1d", 1, (3, 2, 1), {}, (2, 3, 8)),
    ("1d-unbatched-exclude-pad-ceil", 1, (3, 2, 1, True, False), {}, (2, 8)),
    ("1d-ceil-include-pad", 1, (2, 3, 1, True, True), {}, (1, 2, 6)),
    ("2d-ceil-include-pad-hangs-over", 2, (3, 2, 1, True), {}, (2, 2, 6, 5)),
    ("2d-divisor-override", 2, ((2, 3), (1, 2), (1, 1), False, True, 3), {}, (1, 2, 5, 6)),
    ("2d-ceil-exclude-pad-rect", 2, ((3, 2), 2, (1, 0), True, False), {}, (2, 3, 7, 4)),
    ("3d", 3, (2,), {}, (2, 2, 4, 4, 4)),
    ("3d-unbatched-ceil-divisor", 3, ((2, 3, 2), 2, (1, 1, 0), True, False, 5), {}, (2, 3, 5, 4)),
    ("3d-ceil-include-pad", 3, (3, (2, 3, 2), 1, True, True), {}, (1, 1, 5, 4, 6)),
]
TORCH_POOL = {("max", d): getattr(torch.nn, f"MaxPool{d}d") for d in (1, 2, 3)} | {
    ("avg", d): getattr(torch.nn, f"AvgPool{d}d") for d in (1, 2, 3)
}


@pytest.mark.parametrize("name,dims,args,kwargs,shape", MAX_ND, ids=[c[0] for c in MAX_ND])
def test_max_pool_nd_matches_torch(name, dims, args, kwargs, shape):
    pool_parity(
        getattr(L, f"MaxPool{dims}d")(*args, **kwargs), TORCH_POOL["max", dims](*args, **kwargs), shape, negative=True
    )


@pytest.mark.parametrize("name,dims,args,kwargs,shape", AVG_ND, ids=[c[0] for c in AVG_ND])
def test_avg_pool_nd_matches_torch(name, dims, args, kwargs, shape):
    pool_parity(getattr(L, f"AvgPool{dims}d")(*args, **kwargs), TORCH_POOL["avg", dims](*args, **kwargs), shape)


def test_ceil_mode_drops_a_last_window_that_would_start_in_the_right_padding():
    """torch's rule: with ceil_mode the last window must start inside the input or the left padding."""
    pool = L.MaxPool1d(2, 3, 1, ceil_mode=True)
    assert pool.output_size((1, 4)) == (2,) and pool.output_size((1, 5)) == (2,) and pool.output_size((1, 6)) == (3,)
    for size in (4, 5, 6):
        assert (
            torch.nn.MaxPool1d(2, 3, 1, ceil_mode=True)(torch.zeros(1, size)).shape[-1]
            == pool.output_size((1, size))[0]
        )
    assert L.AvgPool2d(2, ceil_mode=True).apply({}, {}, jnp.ones((1, 5, 5)))[0].shape == (1, 3, 3)


# (name, dims, output_size, input shape)
ADAPTIVE = [
    ("1d-overlapping", 1, 3, (2, 3, 7)),
    ("1d-unbatched-upsampling", 1, 5, (2, 3)),
    ("2d-none-entry", 2, (None, 3), (2, 2, 5, 7)),
    ("2d-unbatched-rect", 2, (2, 4), (3, 5, 6)),
    ("2d-to-one", 2, 1, (2, 3, 4, 5)),
    ("3d", 3, (2, None, 3), (1, 2, 5, 3, 4)),
    ("3d-unbatched", 3, 2, (2, 3, 4, 5)),
]


@pytest.mark.parametrize("reduction", ["Avg", "Max"])
@pytest.mark.parametrize("name,dims,output_size,shape", ADAPTIVE, ids=[c[0] for c in ADAPTIVE])
def test_adaptive_pool_matches_torch(reduction, name, dims, output_size, shape):
    module = getattr(torch.nn, f"Adaptive{reduction}Pool{dims}d")(output_size)
    pool_parity(getattr(L, f"Adaptive{reduction}Pool{dims}d")(output_size), module, shape, negative=reduction == "Max")


def test_nd_pool_configs_normalise_and_keep_torchs_positional_order():
    assert (
        L.MaxPool1d(3) == L.MaxPool1d((3,), (3,), 0, 1, False, False)
        and repr(L.MaxPool1d(3)) == "MaxPool1d(kernel_size=(3,), stride=(3,))"
    )
    a = L.AvgPool3d(2, 1, 0, True, False, 2)
    assert (a.kernel_size, a.stride, a.ceil_mode, a.count_include_pad, a.divisor_override) == (
        (2, 2, 2),
        (1, 1, 1),
        True,
        False,
        2,
    )
    assert L.AdaptiveAvgPool2d(3).output_size == (3, 3) and L.AdaptiveMaxPool3d((None, 2, 1)).output_size == (
        None,
        2,
        1,
    )
    assert L.AdaptiveAvgPool2d(3) == L.AdaptiveAvgPool2d((3, 3)) and not L.AdaptiveMaxPool1d(2).has_params
    assert nn.pure.adaptive_avg_pool2d(1).layer == L.AdaptiveAvgPool2d((1, 1)) and nn.pure.max_pool3d(2).params == {}
    assert nn.run(0, nn.AvgPool1d(2)).layer == L.AvgPool1d(2)


def test_bad_nd_pool_configuration_is_a_value_error_naming_the_layer():
    cases = [
        (lambda: L.MaxPool2d(2, return_indices=True), r"MaxPool2d: return_indices=True is not supported"),
        (lambda: L.AdaptiveMaxPool2d(2, True), r"AdaptiveMaxPool2d: return_indices=True is not supported"),
        (lambda: L.MaxPool1d(3, padding=2), r"MaxPool1d: padding must be at most half of the kernel size"),
        (lambda: L.AvgPool3d((2, 2)), r"AvgPool3d: kernel_size must be an int or a triple of ints >= 1, got \(2, 2\)"),
        (
            lambda: L.AvgPool2d(2, divisor_override=0),
            r"AvgPool2d: divisor_override must be a non-zero int or None, got 0",
        ),
        (lambda: L.MaxPool2d(2, ceil_mode=1), r"MaxPool2d: ceil_mode must be a bool, got 1"),
        (
            lambda: L.AdaptiveAvgPool2d((2, 0)),
            r"AdaptiveAvgPool2d: output_size must be an int >= 1, None or a tuple of 2",
        ),
        (lambda: L.AdaptiveAvgPool1d((2, 2)), r"AdaptiveAvgPool1d: output_size must be"),
    ]
    for make, message in cases:
        with pytest.raises(ValueError, match=message):
            make()


def test_bad_nd_pool_input_is_a_shape_error_naming_the_layer():
    with pytest.raises(
        ShapeError,
        match=r"MaxPool3d\(.*\): expected input \[N, C, D, H, W\] or unbatched \[C, D, H, W\], got shape \(4, 4\)",
    ):
        L.MaxPool3d(2).apply({}, {}, jnp.ones((4, 4)))
    with pytest.raises(
        ShapeError,
        match=r"AvgPool1d\(.*\): expected an input whose padded size \(L\) is at least the pooling window size \(3,\)",
    ):
        L.AvgPool1d(3).apply({}, {}, jnp.ones((2, 2)))
    with pytest.raises(
        ShapeError, match=r"MaxPool1d\(.*ceil_mode=True\): expected an input giving at least one pooling window"
    ):
        L.MaxPool1d(4, 2, ceil_mode=True).apply({}, {}, jnp.ones((2, 1)))
    with pytest.raises(RuntimeError, match="output size"):  # torch refuses the same input
        torch.nn.MaxPool1d(4, 2, ceil_mode=True)(torch.ones(2, 1))
    with pytest.raises(
        ShapeError,
        match=r"AdaptiveAvgPool2d\(.*\): expected a non-empty spatial size \(H, W\) >= 1, got shape \(1, 0, 3\)",
    ):
        L.AdaptiveAvgPool2d(2).apply({}, {}, jnp.ones((1, 0, 3)))
    with pytest.raises(TypeError, match=r"AdaptiveMaxPool1d\(.*\): expected a floating-point input, got int32"):
        L.AdaptiveMaxPool1d(2).apply({}, {}, jnp.ones((1, 3), jnp.int32))
