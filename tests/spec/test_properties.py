"""Property tests: every fast layer equals its slow reference in tlean.spec, over shapes,
batch prefixes, dtypes and seeds; gradients match finite differences on small shapes.

Hypothesis' budget comes from the profile in tests/conftest.py (TLEAN_HYPOTHESIS_PROFILE=long
for a longer run).
"""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from jax.test_util import check_grads

from tlean import layers as L
from tlean import spec

DTYPES = st.sampled_from([jnp.float32, jnp.bfloat16])
prefixes = st.lists(st.integers(1, 3), min_size=0, max_size=2).map(tuple)
seeds = st.integers(0, 2**31 - 1)


def tol(dtype):
    return dict(rtol=1e-5, atol=1e-5) if dtype == jnp.float32 else dict(rtol=3e-2, atol=3e-2)


def normal(seed, shape, dtype=jnp.float32, scale=1.0):
    return (scale * jax.random.normal(jax.random.key(seed), shape)).astype(dtype)


def f32(params):
    return jax.tree.map(lambda a: np.asarray(a, np.float32), params)


@given(prefixes, st.integers(1, 6), st.integers(1, 6), st.booleans(), seeds, DTYPES)
def test_linear(prefix, fan_in, fan_out, bias, seed, dtype):
    layer = L.Linear(fan_in, fan_out, bias=bias, param_dtype=dtype)
    params, _ = layer.init(jax.random.key(seed))
    x = normal(seed + 1, prefix + (fan_in,), dtype)
    y, _ = layer.apply(params, {}, x)
    assert y.dtype == dtype and y.shape == prefix + (fan_out,)
    np.testing.assert_allclose(np.asarray(y, np.float32), spec.linear(f32(params), np.asarray(x, np.float32)), **tol(dtype))


@given(st.sampled_from(["relu", "gelu", "gelu_tanh", "silu", "tanh", "sigmoid"]), prefixes, seeds, DTYPES)
def test_activations(name, prefix, seed, dtype):
    layer = {"relu": L.relu, "gelu": L.gelu, "gelu_tanh": L.GELU("tanh"), "silu": L.silu, "tanh": L.tanh, "sigmoid": L.sigmoid}[name]
    ref = (lambda x: spec.gelu(x, "tanh")) if name == "gelu_tanh" else getattr(spec, name)
    x = normal(seed, prefix + (4,), dtype, scale=3.0)
    np.testing.assert_allclose(np.asarray(layer.apply({}, {}, x)[0], np.float32), ref(np.asarray(x, np.float32)), **tol(dtype))


@given(prefixes, st.integers(1, 5), seeds, DTYPES)
def test_softmax_on_every_axis(prefix, n, seed, dtype):
    x = normal(seed, prefix + (n,), dtype, scale=4.0)
    for dim in range(-x.ndim, x.ndim):
        y = L.Softmax(dim).apply({}, {}, x)[0]
        np.testing.assert_allclose(np.asarray(y, np.float32), spec.softmax(np.asarray(x, np.float32), dim), **tol(dtype))


@given(prefixes, st.integers(1, 6), st.sampled_from([1e-5, 1e-3]), seeds, DTYPES)
def test_norms(prefix, dim, eps, seed, dtype):
    x = normal(seed, prefix + (dim,), dtype, scale=2.0) + jnp.asarray(1.5, dtype)
    weight = normal(seed + 1, (dim,))
    bias = normal(seed + 2, (dim,))
    ln = L.LayerNorm(dim, eps=eps).apply({"weight": weight, "bias": bias}, {}, x)[0]
    rms = L.RMSNorm(dim, eps=eps).apply({"weight": weight}, {}, x)[0]
    assert ln.dtype == dtype and rms.dtype == dtype
    x32 = np.asarray(x, np.float32)
    np.testing.assert_allclose(np.asarray(ln, np.float32), spec.layer_norm({"weight": weight, "bias": bias}, x32, eps), **tol(dtype))
    np.testing.assert_allclose(np.asarray(rms, np.float32), spec.rms_norm({"weight": weight}, x32, eps), **tol(dtype))


@given(st.lists(st.integers(1, 3), min_size=1, max_size=4).map(tuple), st.data())
def test_flatten_is_a_reshape(shape, data):
    start = data.draw(st.integers(-len(shape), len(shape) - 1))
    end = data.draw(st.integers(start % len(shape) - len(shape), -1))
    x = jnp.arange(np.prod(shape), dtype=jnp.float32).reshape(shape)
    y = L.Flatten(start, end).apply({}, {}, x)[0]
    s, e = start % len(shape), end % len(shape)
    assert y.shape == shape[:s] + (int(np.prod(shape[s:e + 1])),) + shape[e + 1:]
    np.testing.assert_array_equal(np.asarray(y).ravel(), np.arange(np.prod(shape)))


@given(st.floats(0.0, 0.8), seeds)
def test_dropout_scaling_in_expectation(p, seed):
    x = normal(seed, (8,))
    keys = jax.random.split(jax.random.key(seed), 4000)
    samples = jax.vmap(lambda k: L.Dropout(p).apply({}, {}, x, key=k, train=True)[0])(keys)
    np.testing.assert_allclose(samples.mean(0), spec.dropout_expectation(np.asarray(x), p), atol=0.15 * (1 + float(jnp.abs(x).max())))


@given(seeds)
def test_gradients_match_finite_differences(seed):
    x = normal(seed, (2, 3))
    for layer in (L.Linear(3, 2), L.LayerNorm(3), L.RMSNorm(3), L.gelu, L.Softmax(-1), L.silu):
        params, state = layer.init(jax.random.key(seed))
        check_grads(lambda p, x: layer.apply(p, state, x)[0], (params, x), order=1, modes=["rev"], atol=2e-2, rtol=2e-2, eps=1e-2)
