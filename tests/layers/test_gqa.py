"""Attention (grouped-query, RoPE inside, KV cache) and GatedFeedForward against slow NumPy references
written here (loops over batch, head and query), plus their errors."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tlean import ShapeError, nn
from tlean import layers as L

B, T, E = 2, 5, 12


def assert_close(a, b, tol=1e-5):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


def linear(p, x):
    y = x @ np.asarray(p["weight"], np.float64).T
    return y + np.asarray(p["bias"], np.float64) if "bias" in p else y


def rotate(v, pos, interleaved, base=10000.0):
    """RoPE of one head vector at position ``pos``, pair by pair."""
    d, out = len(v), np.array(v, np.float64)
    for i in range(d // 2):
        a, b = (2 * i, 2 * i + 1) if interleaved else (i, i + d // 2)
        angle = pos / base ** (2 * i / d)
        out[a] = v[a] * math.cos(angle) - v[b] * math.sin(angle)
        out[b] = v[a] * math.sin(angle) + v[b] * math.cos(angle)
    return out


def attention_reference(layer, params, x, allowed, start=0):
    """Grouped-query attention by loops: query head h reads key/value head h // (heads / kv_heads)."""
    x = np.asarray(x, np.float64)
    n, kv, d = layer.num_heads, layer.num_kv_heads, layer.head_dim
    q, k, v = (linear(params[name], x) for name in ("q_proj", "k_proj", "v_proj"))
    out = np.zeros((B, T, n * d))
    for b in range(B):
        for h in range(n):
            g = h // (n // kv)
            qs = [q[b, i, h * d : (h + 1) * d] for i in range(T)]
            ks = [k[b, j, g * d : (g + 1) * d] for j in range(T)]
            if layer.rope is not None:
                qs = [rotate(qs[i], start + i, layer.rope.interleaved) for i in range(T)]
                ks = [rotate(ks[j], start + j, layer.rope.interleaved) for j in range(T)]
            for i in range(T):
                scores = np.array([qs[i] @ ks[j] / math.sqrt(d) if allowed[b, h, i, j] else -np.inf for j in range(T)])
                if np.isneginf(scores).all():
                    continue  # no allowed key: zeros
                w = np.exp(scores - scores.max())
                w /= w.sum()
                out[b, i, h * d : (h + 1) * d] = sum(w[j] * v[b, j, g * d : (g + 1) * d] for j in range(T))
    return linear(params["o_proj"], out)


CONFIGS = [  # (args, keywords)
    ((E, 4), {}),
    ((E, 4, 2, None, True), {"rope": L.RoPE(3, 16), "causal": True}),
    ((E, 4, 1, 4, False, True), {"rope": L.RoPE(4, 16, interleaved=False)}),
    ((E, 6, 3), {"causal": True}),
]


def randomised(layer, seed):
    params, _ = layer.init(jax.random.key(seed))
    return jax.tree.map(lambda a: a + 0.1 * jax.random.normal(jax.random.key(seed + 1), a.shape), params)


def test_attention_matches_the_numpy_reference():
    x = np.random.default_rng(0).normal(size=(B, T, E)).astype(np.float32)
    mask = np.random.default_rng(1).random((B, 1, T, T)) < 0.6
    mask[1, 0, 2] = False  # a query with no allowed key
    for i, (args, kw) in enumerate(CONFIGS):
        layer = L.Attention(*args, **kw)
        params = randomised(layer, i)
        run = jax.jit(lambda p, x, m, s, layer=layer: layer.apply(p, {}, x, allow=m, start_pos=s)[0])
        causal = np.tril(np.ones((T, T), bool)) if layer.causal else np.ones((T, T), bool)
        for m, start in ((None, 0), (mask, 3)):
            allowed = np.broadcast_to(causal if m is None else m & causal, (B, layer.num_heads, T, T))
            assert_close(run(params, x, m, start), attention_reference(layer, params, x, allowed, start))


def test_attention_names_shapes_and_init():
    layer = L.Attention(E, 4, 2, bias=True, o_bias=False)
    model = nn.pure.attention(E, 4, 2, None, True, False, key=jax.random.key(0))
    shapes = {k: np.shape(v) for k, v in model.named_parameters().items()}
    assert shapes == {
        "q_proj.weight": (12, 12),
        "q_proj.bias": (12,),
        "k_proj.weight": (6, 12),
        "k_proj.bias": (6,),
        "v_proj.weight": (6, 12),
        "v_proj.bias": (6,),
        "o_proj.weight": (12, 12),
    }
    assert layer == L.Attention(E, 4, 2, None, True, False) and L.Attention(E, 4) == L.Attention(E, 4, 4, 3)
    assert np.abs(model.params["k_proj"]["weight"]).max() <= 1 / math.sqrt(E)  # torch.nn.Linear's init


def test_chunked_decoding_equals_the_full_causal_forward():
    layer = L.Attention(E, 4, 2, 6, rope=L.RoPE(6, 16, interleaved=False), causal=True, bias=True)
    params = randomised(layer, 5)
    x = jnp.asarray(np.random.default_rng(2).normal(size=(B, T, E)), jnp.float32)
    full = layer.apply(params, {}, x)[0]
    decode = jax.jit(layer.decode)
    for prefix in (1, 3):
        y, cache = decode(params, layer.init_cache(B, T + 1), x[:, :prefix], 0)
        outs = [y]
        for pos in range(prefix, T):
            y, cache = decode(params, cache, x[:, pos : pos + 1], pos)
            outs.append(y)
        assert_close(jnp.concatenate(outs, axis=1), full)
    assert cache["key"].shape == (B, 2, T + 1, 6)  # the kv heads only, transformers' layout
    y, new = decode(params, cache, x[:, :2], T)  # traced start past the end: NaN, cache unchanged
    assert np.isnan(np.asarray(y)).all()
    jax.tree.map(np.testing.assert_array_equal, new, cache)


def test_position_ids_and_a_padding_allow_in_apply_and_decode():
    """Per-row RoPE positions equal per-row start_pos; a [batch, 1, 1, slots] padding allow in decode
    equals the same allow in apply (a query with no allowed key gives zeros in both)."""
    layer = L.Attention(E, 4, 2, rope=L.RoPE(3, 16), causal=True, bias=True)
    params = randomised(layer, 7)
    x = jnp.asarray(np.random.default_rng(4).normal(size=(B, T, E)), jnp.float32)
    positions = jnp.stack([jnp.arange(T), 3 + jnp.arange(T)])
    allow = jnp.ones((B, 1, 1, T), bool).at[1, ..., :2].set(False)

    @jax.jit  # one compilation for all of it
    def outputs(params, x):
        rows = [layer.apply(params, {}, x[b : b + 1], start_pos=s)[0] for b, s in enumerate((0, 3))]
        y1, cache = layer.decode(params, layer.init_cache(B, T), x[:, :3], 0, allow=allow)
        y2, _ = layer.decode(params, cache, x[:, 3:], 3, allow=allow)
        return (
            jnp.concatenate(rows),
            layer.apply(params, {}, x, position_ids=positions)[0],
            layer.apply(params, {}, x, allow=allow)[0],
            jnp.concatenate([y1, y2], axis=1),
        )

    rows, by_ids, want, decoded = outputs(params, x)
    assert_close(by_ids, rows)
    assert_close(decoded, want)
    assert_close(want[1, 0], params["o_proj"]["bias"])  # row 1's first query sees only padding
    with pytest.raises(TypeError, match=r"pass start_pos or position_ids, not both"):
        layer.apply(params, {}, x, start_pos=1, position_ids=positions)
    with pytest.raises(ShapeError, match=r"expected position_ids \[2\|1, 5\], got shape \(5,\)"):
        layer.apply(params, {}, x, position_ids=jnp.arange(T))
    with pytest.raises(
        ShapeError,
        match=r"expected allow \[3, 5\] or \[2\|1, 4\|1, 3\|1, 5\] over the cache slots, "
        r"got shape \(2, 1, 1, 4\)",
    ):
        layer.decode(params, layer.init_cache(B, T), x[:, :3], 0, allow=allow[..., :4])
    rope = L.RoPE(4, 8)
    with pytest.raises(
        ShapeError,
        match=r"expected position_ids broadcasting against the input's \(2, 3\), "
        r"got shape \(4,\)",
    ):
        rope.apply({}, {}, jnp.ones((2, 3, 4)), position_ids=jnp.arange(4))
    with pytest.raises(TypeError, match=r"position_ids must be an integer array, got float32"):
        rope.apply({}, {}, jnp.ones((2, 3, 4)), position_ids=jnp.ones(3))


def test_gated_feed_forward_matches_the_numpy_reference():
    x = np.random.default_rng(3).normal(size=(B, T, E)).astype(np.float32)
    erf = np.vectorize(math.erf)
    references = {
        "silu": lambda a: a / (1 + np.exp(-a)),
        "gelu": lambda a: 0.5 * a * (1 + erf(a / math.sqrt(2))),
        "gelu_tanh": lambda a: 0.5 * a * (1 + np.tanh(math.sqrt(2 / math.pi) * (a + 0.044715 * a**3))),
        jnp.tanh: np.tanh,
    }
    for i, (activation, act) in enumerate(references.items()):
        layer = L.GatedFeedForward(E, 7, activation, bias=i % 2 == 1)
        params = randomised(layer, 10 + i)
        x64 = np.asarray(x, np.float64)
        expected = linear(params["down_proj"], act(linear(params["gate_proj"], x64)) * linear(params["up_proj"], x64))
        assert_close(jax.jit(lambda p, x, layer=layer: layer.apply(p, {}, x)[0])(params, x), expected)
    assert sorted(nn.run(0, nn.GatedFeedForward(E, 7)).named_parameters()) == [
        "down_proj.weight",
        "gate_proj.weight",
        "up_proj.weight",
    ]


def test_bad_input_and_config():
    with pytest.raises(ValueError, match=r"Attention: num_heads=4 must be divisible by num_kv_heads=3"):
        L.Attention(E, 4, 3)
    with pytest.raises(
        ValueError, match=r"Attention: hidden_size=12 must be divisible by num_heads=5, or pass head_dim"
    ):
        L.Attention(E, 5)
    with pytest.raises(ValueError, match=r"Attention: rope.head_dim=4 must equal head_dim=3"):
        L.Attention(E, 4, rope=L.RoPE(4))
    with pytest.raises(TypeError, match=r"Attention: rope must be a tlean.layers.RoPE or None, got int"):
        L.Attention(E, 4, rope=3)
    with pytest.raises(ValueError, match=r"Attention: num_kv_heads must be a positive int, got 0"):
        L.Attention(E, 4, 0)
    with pytest.raises(ValueError, match=r"GatedFeedForward: activation must be one of .* got 'swish'"):
        L.GatedFeedForward(E, 7, "swish")
    layer = L.Attention(E, 4, 2, causal=True)
    params, _ = jax.eval_shape(layer.init, jax.random.key(0))
    trace = lambda x, **kw: jax.eval_shape(lambda p, x: layer.apply(p, {}, x, **kw), params, x)
    with pytest.raises(
        ShapeError,
        match=r"Attention\(hidden_size=12, num_heads=4, num_kv_heads=2, .*causal=True\): "
        r"expected input \[batch, seq, 12\], got shape \(2, 5, 10\)",
    ):
        trace(jnp.ones((B, T, 10)))
    with pytest.raises(ShapeError, match=r"expected allow \[5, 5\] or \[2\|1, 4\|1, 5\|1, 5\], got shape \(2, 5, 5\)"):
        trace(jnp.ones((B, T, E)), allow=jnp.ones((B, T, T), bool))
    with pytest.raises(TypeError, match=r"expected a floating-point input, got int32"):
        trace(jnp.ones((B, T, E), jnp.int32))
    with pytest.raises(ShapeError, match=r"expected at most 1 new positions at start_pos=3 \(cache max_len=4\)"):
        layer.decode(params, layer.init_cache(B, 4), jnp.ones((B, 2, E)), 3)
    with pytest.raises(ValueError, match=r"KV-cache decoding needs a causal layer"):
        L.Attention(E, 4).decode(params, layer.init_cache(B, 4), jnp.ones((B, 1, E)), 0)
    with pytest.raises(ShapeError, match=r"GatedFeedForward\(.*\): expected input \[..., 12\], got shape \(2, 5\)"):
        L.GatedFeedForward(E, 7).apply(L.GatedFeedForward(E, 7).init(jax.random.key(0))[0], {}, jnp.ones((2, 5)))
