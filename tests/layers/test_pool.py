"""MaxPool2d, AvgPool2d and GlobalAvgPool against torch.nn, CHW and NCHW."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from absl.testing import parameterized

from tlean import ShapeError, nn
from tlean import layers as L
from tests.torch_utils import n, t

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
    with pytest.raises(ValueError, match=r"MaxPool2d: padding must be at most half of the kernel size, "
                                         r"as in PyTorch; got padding=\(2, 2\), kernel_size=\(3, 3\)"):
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
    with pytest.raises(ShapeError, match=r"MaxPool2d\(kernel_size=\(3, 3\), stride=\(3, 3\)\): expected an input whose padded size "
                                         r"\(H, W\) is at least the pooling window size \(3, 3\) .*makes it \(2, 5\)\), got shape \(1, 2, 5\)"):
        pool.apply({}, {}, jnp.ones((1, 2, 5)))
    torch_error = "Output size is too small"  # torch refuses the same input
    with pytest.raises(RuntimeError, match=torch_error):
        torch.nn.MaxPool2d(3)(torch.ones(1, 2, 5))
    for layer in (L.MaxPool2d(2), L.AvgPool2d(2), L.GlobalAvgPool()):
        with pytest.raises(ShapeError, match=type(layer).__name__ + r"\(.*\): expected input \[N, C, H, W\] or unbatched \[C, H, W\], got shape \(4, 4\)"):
            layer.apply({}, {}, jnp.ones((4, 4)))
        with pytest.raises(TypeError, match=r"expected a floating-point input, got int32"):
            layer.apply({}, {}, jnp.ones((1, 4, 4), jnp.int32))
    with pytest.raises(ShapeError, match=r"GlobalAvgPool\(\): expected a non-empty spatial size H, W >= 1, got shape \(2, 3, 0, 4\)"):
        L.GlobalAvgPool().apply({}, {}, jnp.ones((2, 3, 0, 4)))
