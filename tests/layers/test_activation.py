"""Activations against torch.nn."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from tlean import ShapeError, nn
from tlean import layers as L
from tests.torch_utils import n, t

PAIRS = [
    (nn.pure.relu(), torch.nn.ReLU()),
    (nn.pure.gelu(), torch.nn.GELU()),
    (nn.pure.gelu("tanh"), torch.nn.GELU(approximate="tanh")),
    (nn.pure.silu(), torch.nn.SiLU()),
    (nn.pure.tanh(), torch.nn.Tanh()),
    (nn.pure.sigmoid(), torch.nn.Sigmoid()),
    (nn.pure.softmax(-1), torch.nn.Softmax(dim=-1)),
    (nn.pure.softmax(0), torch.nn.Softmax(dim=0)),
    (nn.pure.identity(), torch.nn.Identity()),
]


class ActivationParityTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_values_and_gradients_match_torch(self):
        x = np.random.default_rng(0).normal(scale=3, size=(4, 7)).astype(np.float32)
        for model, module in PAIRS:
            y = self.variant(lambda m, x: m(x))(model, x)
            xt = t(x)
            yt = module(xt)
            np.testing.assert_allclose(y, n(yt), atol=1e-6, rtol=1e-5, err_msg=repr(model.layer))
            w = np.linspace(-1, 1, x.size, dtype=np.float32).reshape(x.shape)
            (yt * torch.from_numpy(w)).sum().backward()
            g = self.variant(jax.grad(lambda x, m: (m(x) * w).sum()))(x, model)
            np.testing.assert_allclose(g, n(xt.grad), atol=1e-6, rtol=1e-5, err_msg=repr(model.layer))


def test_activations_keep_dtype_and_softmax_computes_in_float32():
    x = jnp.linspace(-3, 3, 12, dtype=jnp.bfloat16).reshape(3, 4)
    for layer in (L.relu, L.gelu, L.silu, L.tanh, L.sigmoid, L.softmax, L.identity):
        assert layer.apply({}, {}, x)[0].dtype == jnp.bfloat16
    y = L.softmax.apply({}, {}, x)[0]
    ref = jax.nn.softmax(x.astype(jnp.float32), -1).astype(jnp.bfloat16)
    np.testing.assert_array_equal(np.asarray(y, np.float32), np.asarray(ref, np.float32))


def test_bad_config_and_input():
    with pytest.raises(ValueError, match=r"GELU: approximate must be 'none' or 'tanh', got 'exact'"):
        L.GELU("exact")
    with pytest.raises(ShapeError, match=r"Softmax\(dim=2\): expected an input with an axis 2, got shape \(3, 4\)"):
        L.Softmax(2).apply({}, {}, jnp.ones((3, 4)))
    assert not L.relu.has_params and L.relu == L.ReLU()


def test_integer_input_is_refused_where_it_would_truncate():
    ints = jnp.array([1, 2, 3])
    for layer in (L.softmax, L.gelu, L.silu, L.sigmoid, L.tanh):
        with pytest.raises(TypeError, match=r"expected a floating-point input, got int32"):
            layer.apply({}, {}, ints)
    np.testing.assert_array_equal(L.relu.apply({}, {}, jnp.array([-1, 2]))[0], [0, 2])  # ReLU is exact on ints
    with pytest.raises(ShapeError, match=r"Softmax\(\): expected an input with an axis -1, got shape \(\)"):
        L.softmax.apply({}, {}, jnp.float32(1.0))
