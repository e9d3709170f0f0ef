"""Property tests: every fast layer equals its slow reference in tlean.spec, over shapes,
batch prefixes, dtypes and seeds; gradients match finite differences on small shapes.

Hypothesis' budget comes from the profile in tests/conftest.py (TLEAN_HYPOTHESIS_PROFILE=long
for a longer run).
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads

from tlean import layers as L
from tlean import spec


def budget(n: int):
    """Each new shape compiles afresh, so the CI budget is small; the long profile runs 20x more."""
    return settings(max_examples=n * 20 if os.environ.get("TLEAN_HYPOTHESIS_PROFILE") == "long" else n)


DTYPES = st.sampled_from([jnp.float32, jnp.bfloat16])
prefixes = st.lists(st.integers(1, 3), min_size=0, max_size=2).map(tuple)
seeds = st.integers(0, 2**31 - 1)


def tol(dtype):
    return dict(rtol=1e-5, atol=1e-5) if dtype == jnp.float32 else dict(rtol=3e-2, atol=3e-2)


def normal(seed, shape, dtype=jnp.float32, scale=1.0):
    return (scale * jax.random.normal(jax.random.key(seed), shape)).astype(dtype)


def f32(params):
    return jax.tree.map(lambda a: np.asarray(a, np.float32), params)


@budget(10)
@given(prefixes, st.integers(1, 6), st.integers(1, 6), st.booleans(), seeds, DTYPES)
def test_linear(prefix, fan_in, fan_out, bias, seed, dtype):
    layer = L.Linear(fan_in, fan_out, bias=bias, param_dtype=dtype)
    params, _ = layer.init(jax.random.key(seed))
    x = normal(seed + 1, prefix + (fan_in,), dtype)
    y, _ = layer.apply(params, {}, x)
    assert y.dtype == dtype and y.shape == prefix + (fan_out,)
    np.testing.assert_allclose(
        np.asarray(y, np.float32), spec.linear(f32(params), np.asarray(x, np.float32)), **tol(dtype)
    )


@given(st.sampled_from(["relu", "gelu", "gelu_tanh", "silu", "tanh", "sigmoid"]), prefixes, seeds, DTYPES)
def test_activations(name, prefix, seed, dtype):
    layer = {
        "relu": L.relu,
        "gelu": L.gelu,
        "gelu_tanh": L.GELU("tanh"),
        "silu": L.silu,
        "tanh": L.tanh,
        "sigmoid": L.sigmoid,
    }[name]
    ref = (lambda x: spec.gelu(x, "tanh")) if name == "gelu_tanh" else getattr(spec, name)
    x = normal(seed, prefix + (4,), dtype, scale=3.0)
    np.testing.assert_allclose(
        np.asarray(layer.apply({}, {}, x)[0], np.float32), ref(np.asarray(x, np.float32)), **tol(dtype)
    )


@budget(8)
@given(prefixes, st.integers(1, 5), seeds, DTYPES)
def test_softmax_on_every_axis(prefix, n, seed, dtype):
    x = normal(seed, prefix + (n,), dtype, scale=4.0)
    for dim in range(-x.ndim, x.ndim):
        y = L.Softmax(dim).apply({}, {}, x)[0]
        np.testing.assert_allclose(
            np.asarray(y, np.float32), spec.softmax(np.asarray(x, np.float32), dim), **tol(dtype)
        )


@budget(8)
@given(prefixes, st.integers(1, 6), st.sampled_from([1e-5, 1e-3]), seeds, DTYPES)
def test_norms(prefix, dim, eps, seed, dtype):
    x = normal(seed, prefix + (dim,), dtype, scale=2.0) + jnp.asarray(1.5, dtype)
    weight = normal(seed + 1, (dim,), dtype)  # params in the input's dtype: the output keeps it
    bias = normal(seed + 2, (dim,), dtype)
    ln = L.LayerNorm(dim, eps=eps).apply({"weight": weight, "bias": bias}, {}, x)[0]
    rms = L.RMSNorm(dim, eps=eps).apply({"weight": weight}, {}, x)[0]
    assert ln.dtype == dtype and rms.dtype == dtype
    x32 = np.asarray(x, np.float32)
    w32, b32 = np.asarray(weight, np.float32), np.asarray(bias, np.float32)
    np.testing.assert_allclose(
        np.asarray(ln, np.float32), spec.layer_norm({"weight": w32, "bias": b32}, x32, eps), **tol(dtype)
    )
    np.testing.assert_allclose(np.asarray(rms, np.float32), spec.rms_norm({"weight": w32}, x32, eps), **tol(dtype))


@given(st.lists(st.integers(1, 3), min_size=1, max_size=4).map(tuple), st.data())
def test_flatten_is_a_reshape(shape, data):
    start = data.draw(st.integers(-len(shape), len(shape) - 1))
    end = data.draw(st.integers(start % len(shape) - len(shape), -1))
    x = jnp.arange(np.prod(shape), dtype=jnp.float32).reshape(shape)
    y = L.Flatten(start, end).apply({}, {}, x)[0]
    s, e = start % len(shape), end % len(shape)
    assert y.shape == shape[:s] + (int(np.prod(shape[s : e + 1])),) + shape[e + 1 :]
    np.testing.assert_array_equal(np.asarray(y).ravel(), np.arange(np.prod(shape)))


@given(st.floats(0.0, 0.8), seeds)
def test_dropout_scaling_in_expectation(p, seed):
    x = normal(seed, (8,))
    keys = jax.random.split(jax.random.key(seed), 4000)
    samples = jax.vmap(lambda k: L.Dropout(p).apply({}, {}, x, key=k, train=True)[0])(keys)
    np.testing.assert_allclose(
        samples.mean(0), spec.dropout_expectation(np.asarray(x), p), atol=0.15 * (1 + float(jnp.abs(x).max()))
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_gradients_match_finite_differences(seed):
    x = normal(seed, (2, 3))
    for layer in (L.Linear(3, 2), L.LayerNorm(3), L.RMSNorm(3), L.gelu, L.Softmax(-1), L.silu):
        params, state = layer.init(jax.random.key(seed))
        check_grads(
            lambda p, x: layer.apply(p, state, x)[0],
            (params, x),
            order=1,
            modes=["rev"],
            atol=2e-2,
            rtol=2e-2,
            eps=1e-2,
        )


# --- vision ------------------------------------------------------------------------------------

small = st.integers(1, 3)


@budget(5)
@given(
    st.integers(1, 2),
    small,
    st.integers(1, 2),
    st.integers(3, 6),
    st.integers(3, 6),
    st.integers(1, 3),
    st.integers(1, 2),
    st.integers(0, 1),
    st.integers(1, 2),
    seeds,
    DTYPES,
)
def test_conv2d(n, groups, per_group, h, w, k, stride, padding, dilation, seed, dtype):
    cin, cout = groups * per_group, groups * 2
    if (h + 2 * padding - dilation * (k - 1)) < 1 or (w + 2 * padding - dilation * (k - 1)) < 1:
        return  # the window does not fit: covered by the bad-input tests
    layer = L.Conv2d(cin, cout, k, stride=stride, padding=padding, dilation=dilation, groups=groups, param_dtype=dtype)
    params, _ = layer.init(jax.random.key(seed))
    x = normal(seed + 1, (n, cin, h, w), dtype)
    y, _ = layer.apply(params, {}, x)
    ref = spec.conv2d(f32(params), np.asarray(x, np.float32), (stride,) * 2, (padding,) * 2, (dilation,) * 2, groups)
    assert y.dtype == dtype
    np.testing.assert_allclose(np.asarray(y, np.float32), ref, **tol(dtype))


@budget(5)
@given(st.integers(1, 2), st.integers(2, 6), st.integers(2, 6), st.integers(1, 3), st.integers(1, 3), st.data(), seeds)
def test_pooling(c, h, w, k, stride, data, seed):
    k = min(k, h, w)
    padding = data.draw(st.integers(0, k // 2))
    x = normal(seed, (2, c, h, w))
    ref_max = spec.max_pool2d(np.asarray(x), (k, k), (stride, stride), (padding, padding))
    ref_avg = spec.avg_pool2d(np.asarray(x), (k, k), (stride, stride), (padding, padding))
    np.testing.assert_allclose(L.MaxPool2d(k, stride, padding).apply({}, {}, x)[0], ref_max, rtol=1e-6)
    np.testing.assert_allclose(L.AvgPool2d(k, stride, padding).apply({}, {}, x)[0], ref_avg, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(L.GlobalAvgPool().apply({}, {}, x)[0], spec.global_avg_pool(np.asarray(x)), rtol=1e-5)


@budget(4)
@given(st.integers(2, 3), st.integers(1, 3), st.integers(1, 3), seeds)
def test_batch_and_instance_norm(n, c, hw, seed):
    x = normal(seed, (n, c, hw, hw + 1), scale=2.0)
    layer = L.BatchNorm2d(c)
    params, state = layer.init(jax.random.key(seed))
    params = {"weight": normal(seed + 1, (c,)), "bias": normal(seed + 2, (c,))}
    ref_state = jax.tree.map(np.asarray, state)
    for _ in range(2):
        y, state = layer.apply(params, state, x, train=True)
        ref_y, ref_state = spec.batch_norm2d(params, ref_state, np.asarray(x), train=True)
        np.testing.assert_allclose(y, ref_y, rtol=1e-4, atol=1e-4)
    for name in ("running_mean", "running_var"):
        np.testing.assert_allclose(state[name], ref_state[name], rtol=1e-5, atol=1e-6)
    assert int(state["num_batches_tracked"]) == 2
    np.testing.assert_allclose(
        layer.apply(params, state, x)[0],
        spec.batch_norm2d(params, ref_state, np.asarray(x), train=False)[0],
        rtol=1e-4,
        atol=1e-4,
    )
    inorm = L.InstanceNorm2d(c)
    np.testing.assert_allclose(
        inorm.apply(params, {}, x)[0], spec.instance_norm2d(params, np.asarray(x)), rtol=1e-4, atol=1e-4
    )


# --- sequences ---------------------------------------------------------------------------------


@budget(4)
@given(st.integers(2, 9), st.integers(1, 5), prefixes, seeds)
def test_embedding_ids_and_distributions(vocab, dim, prefix, seed):
    layer = L.Embedding(vocab, dim)
    params, _ = layer.init(jax.random.key(seed))
    ids = jax.random.randint(jax.random.key(seed + 1), prefix + (3,), 0, vocab)
    np.testing.assert_allclose(
        layer.apply(params, {}, ids)[0], spec.embedding(params["weight"], np.asarray(ids)), rtol=1e-6
    )
    probs = jax.nn.softmax(normal(seed + 2, prefix + (3, vocab)), -1)
    np.testing.assert_allclose(
        layer.apply(params, {}, probs)[0],
        spec.embedding_soft(params["weight"], np.asarray(probs)),
        rtol=1e-5,
        atol=1e-6,
    )


@budget(4)
@given(st.integers(1, 8), st.integers(1, 6), st.integers(0, 20), seeds)
def test_sinusoidal_and_rope(dim, n, start, seed):
    x = normal(seed, (2, n, dim))
    y = L.SinusoidalPositionalEncoding(dim, max_len=64, start_pos=start).apply({}, {}, x)[0]
    np.testing.assert_allclose(y, np.asarray(x) + spec.sinusoidal(n, dim, start), rtol=1e-5, atol=2e-5)
    head_dim = dim + 1  # RoPE needs at least 2
    q = normal(seed, (1, 2, n, head_dim))
    for interleaved in (True, False) if head_dim % 2 == 0 else (True,):
        rope = L.RoPE(head_dim, max_len=64, start_pos=start, interleaved=interleaved)
        np.testing.assert_allclose(
            rope.apply({}, {}, q)[0], spec.rope(np.asarray(q), start, interleaved), rtol=1e-5, atol=2e-5
        )


@budget(5)
@given(st.sampled_from([(4, 1), (4, 2), (6, 3)]), st.integers(1, 5), st.booleans(), seeds)
def test_attention_with_random_masks(shape, n, causal, seed):
    embed, heads = shape
    layer = L.MultiheadAttention(embed, heads, causal=causal)
    params, _ = layer.init(jax.random.key(seed))
    params = jax.tree.map(lambda a: a + 0.1 * normal(seed + 3, a.shape), params)  # non-zero biases
    x = normal(seed + 1, (2, n, embed))
    allowed = np.asarray(jax.random.bernoulli(jax.random.key(seed + 2), 0.6, (n, n)))  # rows may be empty
    y = layer.apply(params, {}, x, allow=jnp.asarray(allowed))[0]
    effective = allowed & np.tril(np.ones((n, n), bool)) if causal else allowed
    np.testing.assert_allclose(
        y, spec.multihead_attention(params, np.asarray(x), heads, effective), rtol=1e-4, atol=1e-5
    )


# --- recurrences -------------------------------------------------------------------------------


@budget(6)
@given(
    st.sampled_from(["RNN", "RNN-relu", "GRU", "LSTM"]), st.integers(1, 4), st.integers(1, 4), st.integers(0, 5), seeds
)
def test_recurrences(kind, input_size, hidden, seq, seed):
    layer = {
        "RNN": L.RNN(input_size, hidden),
        "RNN-relu": L.RNN(input_size, hidden, nonlinearity="relu"),
        "GRU": L.GRU(input_size, hidden),
        "LSTM": L.LSTM(input_size, hidden),
    }[kind]
    ref = {
        "RNN": spec.rnn,
        "RNN-relu": lambda p, x: spec.rnn(p, x, nonlinearity="relu"),
        "GRU": spec.gru,
        "LSTM": spec.lstm,
    }[kind]
    params, state = layer.init(jax.random.key(seed))
    x = normal(seed + 1, (seq, input_size))
    y = layer.apply(params, state, x)[0]
    assert y.shape == (seq, hidden)
    if seq:
        np.testing.assert_allclose(y, ref(params, np.asarray(x))[0], rtol=1e-5, atol=1e-5)


@budget(3)
@given(st.integers(1, 3), st.integers(1, 4), st.integers(1, 8), seeds)
def test_mamba(input_size, hidden, seq, seed):
    x = normal(seed, (seq, input_size))
    for mode in ("parallel", "sequential"):
        layer = L.Mamba(input_size, hidden, mode=mode)
        params, _ = layer.init(jax.random.key(seed))
        np.testing.assert_allclose(
            layer.apply(params, {}, x)[0], spec.mamba(params, np.asarray(x)), rtol=1e-4, atol=1e-5
        )


@pytest.mark.parametrize("seed", [0])
def test_layer_gradients_match_finite_differences(seed):
    cases = [
        (L.Conv2d(2, 2, 2, padding=1), (1, 2, 3, 3)),
        (L.BatchNorm2d(2), (2, 2, 2, 2)),
        (L.MultiheadAttention(4, 2, causal=True), (1, 3, 4)),
        (L.LSTM(2, 3), (3, 2)),
        (L.GRU(2, 3), (3, 2)),
        (L.Mamba(2, 3), (4, 2)),
    ]
    for layer, shape in cases:
        params, state = layer.init(jax.random.key(seed))
        x = normal(seed + 1, shape)
        check_grads(
            lambda p, x: layer.apply(p, state, x, train=True)[0],
            (params, x),
            order=1,
            modes=["rev"],
            atol=3e-2,
            rtol=3e-2,
            eps=1e-2,
        )
