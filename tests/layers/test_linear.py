"""Linear and LinearVec against torch.nn.Linear."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.torch_utils import load, n, t
from tlean import ShapeError, nn
from tlean import layers as L


class LinearParityTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_outputs_and_gradients_match_torch(self):
        torch.manual_seed(0)
        for bias, shape in [(True, (3, 5)), (False, (2, 4, 5)), (True, (5,))]:
            tm = torch.nn.Linear(5, 7, bias=bias)
            model = load(nn.pure.linear(5, 7, bias=bias, key=jax.random.key(0)), tm)
            x = np.random.default_rng(1).normal(size=shape).astype(np.float32)
            y = self.variant(lambda m, x: m(x))(model, x)
            xt = t(x)
            yt = tm(xt)
            np.testing.assert_allclose(y, n(yt), atol=1e-5, rtol=1e-5)
            yt.sum().backward()
            gx, gm = self.variant(jax.grad(lambda x, m: m(x).sum(), argnums=(0, 1)))(x, model)
            np.testing.assert_allclose(gx, n(xt.grad), atol=1e-5)
            np.testing.assert_allclose(gm.params["weight"], n(tm.weight.grad), atol=1e-5)
            if bias:
                np.testing.assert_allclose(gm.params["bias"], n(tm.bias.grad), atol=1e-5)

    @chex.variants(with_jit=True, without_jit=True)
    def test_linear_vec(self):
        tm = torch.nn.Linear(3, 2)
        model = load(nn.pure.linear_vec(3, 2, key=jax.random.key(0)), tm)
        x = np.arange(3, dtype=np.float32)
        np.testing.assert_allclose(self.variant(lambda m, x: m(x))(model, x), n(tm(t(x))), atol=1e-6)


def test_default_init_follows_pytorch():
    """weight and bias ~ U(-1/sqrt(in), 1/sqrt(in)), as kaiming_uniform(a=sqrt(5)) gives."""
    params, state = L.Linear(400, 300).init(jax.random.key(0))
    bound = 1 / np.sqrt(400)
    w, b = np.asarray(params["weight"]), np.asarray(params["bias"])
    assert state == {} and w.shape == (300, 400) and b.shape == (300,)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    np.testing.assert_allclose(w.std(), bound / np.sqrt(3), rtol=0.02)  # U(-b, b) has std b/sqrt(3)
    assert abs(w.mean()) < 0.1 * bound
    torch.manual_seed(0)
    tw = torch.nn.Linear(400, 300).weight.detach().numpy()
    np.testing.assert_allclose(w.std(), tw.std(), rtol=0.02)


@settings(max_examples=6)  # each shape compiles the jitted init afresh
@given(st.integers(0, 2**31 - 1), st.integers(1, 40), st.integers(1, 40))
def test_init_eager_equals_jit_bit_for_bit(seed, fan_in, fan_out):
    layer = L.Linear(fan_in, fan_out)
    key = jax.random.key(seed)
    eager = layer.init(key)[0]
    jitted = jax.jit(layer.init)(key)[0]
    for name in ("weight", "bias"):
        np.testing.assert_array_equal(np.asarray(eager[name]), np.asarray(jitted[name]))


@pytest.mark.parametrize(
    "dtype,param_dtype",
    [(None, jnp.float32), (jnp.bfloat16, jnp.float32), (None, jnp.bfloat16), (jnp.float32, jnp.bfloat16)],
)
def test_dtype_and_param_dtype(dtype, param_dtype):
    layer = L.Linear(4, 3, dtype=dtype, param_dtype=param_dtype)
    params, _ = layer.init(jax.random.key(0))
    assert params["weight"].dtype == jnp.dtype(param_dtype)
    x = jnp.ones((2, 4), jnp.float32)
    y, _ = layer.apply(params, {}, x)
    expected = jnp.dtype(dtype) if dtype is not None else jnp.result_type(x, params["weight"])
    assert y.dtype == expected
    ref = np.asarray(x) @ np.asarray(params["weight"], np.float32).T + np.asarray(params["bias"], np.float32)
    np.testing.assert_allclose(np.asarray(y, np.float32), ref, rtol=2e-2, atol=2e-2)


def test_bad_input_and_config():
    layer = L.Linear(128, 10)
    params, state = layer.init(jax.random.key(0))
    with pytest.raises(
        ShapeError,
        match=r"Linear\(in_features=128, out_features=10\): expected input \[\.\.\., 128\], got shape \(32, 64\)",
    ):
        layer.apply(params, state, jnp.ones((32, 64)))
    with pytest.raises(ShapeError, match=r"got shape \(\)"):
        layer.apply(params, state, jnp.float32(1.0))
    with pytest.raises(TypeError, match=r"expected a floating-point input, got int32"):
        layer.apply(params, state, jnp.ones((2, 128), jnp.int32))
    vec = L.LinearVec(3, 2)
    with pytest.raises(
        ShapeError, match=r"LinearVec\(in_features=3, out_features=2\): expected a vector \[3\], got shape \(4, 3\)"
    ):
        vec.apply(vec.init(jax.random.key(0))[0], {}, jnp.ones((4, 3)))
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match=r"Linear: in_features must be a positive int, got"):
            L.Linear(bad, 3)
    with pytest.raises(ValueError, match="out_features"):
        nn.Linear(3, 0)
    with pytest.raises(ValueError, match="precision"):
        L.Linear(3, 3, precision=3)
    assert L.linear_vec(3, 2) == L.LinearVec(3, 2)
