"""MultiheadAttention against torch.nn.MultiheadAttention (masks in both conventions), the
fully-masked-row rule, attention dropout against a NumPy reference, the KV cache, bad input."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from tests.torch_utils import load, n, t
from tlean import ShapeError, nn
from tlean import layers as L

E, H, B, T = 8, 2, 2, 5


def torch_and_tlean(bias=True, causal=False, seed=0):
    """A torch MHA with non-zero biases, and the tlean Model holding its weights."""
    torch.manual_seed(seed)
    tm = torch.nn.MultiheadAttention(E, H, bias=bias, batch_first=True)
    if bias:
        with torch.no_grad():
            tm.in_proj_bias.normal_()
            tm.out_proj.bias.normal_()
    return tm, load(
        nn.pure.multihead_attention(E, H, bias=bias, batch_first=True, causal=causal, key=jax.random.key(0)), tm
    )


def inputs(seed=0, shape=(B, T, E)):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def random_mask(seed=0, shape=(T, T)):
    """True = may attend, with every query row keeping at least one key."""
    m = np.random.default_rng(seed).random(shape) < 0.6
    rows = np.arange(shape[-2])
    m[..., rows, rows % shape[-1]] = True
    return m


def assert_close(a, b, tol=1e-5):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


class MultiheadAttentionParityTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_masks_match_torch(self):
        x = inputs()
        causal = torch.nn.Transformer.generate_square_subsequent_mask(T)
        mask = random_mask(1)
        per_head = random_mask(2, (B * H, T, T))
        additive = np.where(random_mask(3), np.random.default_rng(4).normal(size=(T, T)), -np.inf).astype(np.float32)
        padding = np.zeros((B, T), bool)
        padding[1, 3:] = True
        mask4 = random_mask(5, (B, 1, T, T))
        cases = [  # (our layer is causal, our keywords, torch keywords)
            (False, {}, {}),
            (True, {}, {"attn_mask": causal, "is_causal": True}),
            (False, {"allow": mask}, {"attn_mask": torch.from_numpy(~mask)}),
            (False, {"attn_mask": ~mask}, {"attn_mask": torch.from_numpy(~mask)}),
            (
                False,
                {"attn_mask": ~mask, "is_causal": True},
                {"attn_mask": torch.from_numpy(~(mask & np.tril(np.ones((T, T), bool))))},
            ),
            (False, {"attn_mask": additive}, {"attn_mask": torch.from_numpy(additive)}),
            (False, {"attn_mask": ~per_head}, {"attn_mask": torch.from_numpy(~per_head)}),
            (False, {"key_padding_mask": padding}, {"key_padding_mask": torch.from_numpy(padding)}),
            (
                True,
                {"allow": mask4, "key_padding_mask": padding},
                {
                    "attn_mask": torch.from_numpy(~(mask4 & np.tril(np.ones((T, T), bool))))[:, 0].repeat_interleave(
                        H, 0
                    ),
                    "key_padding_mask": torch.from_numpy(padding),
                },
            ),
        ]
        for i, (causal_layer, ours, theirs) in enumerate(cases):
            tm, model = torch_and_tlean(causal=causal_layer, seed=i)
            y = self.variant(lambda m, x, ours=ours: m(x, **ours))(model, x)  # is_causal is static
            assert_close(y, n(tm(t(x), t(x), t(x), need_weights=False, **theirs)[0]))

    @chex.variants(with_jit=True, without_jit=True)
    def test_gradients_match_torch(self):
        x = inputs(1)
        padding = np.zeros((B, T), bool)
        padding[0, 4] = True
        for bias in (True, False):
            tm, model = torch_and_tlean(bias=bias, causal=True)
            xt = t(x)
            yt = tm(
                xt,
                xt,
                xt,
                need_weights=False,
                attn_mask=torch.ones(T, T, dtype=torch.bool).triu(1),
                key_padding_mask=torch.from_numpy(padding),
            )[0]
            (yt**2).sum().backward()
            loss = lambda x, m: (m(x, key_padding_mask=padding) ** 2).sum()
            gx, gm = self.variant(jax.grad(loss, argnums=(0, 1)))(x, model)
            assert_close(gx, n(xt.grad))
            assert_close(gm.params["in_proj_weight"], n(tm.in_proj_weight.grad))
            assert_close(gm.params["out_proj"]["weight"], n(tm.out_proj.weight.grad))
            if bias:
                assert_close(gm.params["in_proj_bias"], n(tm.in_proj_bias.grad))
                assert_close(gm.params["out_proj"]["bias"], n(tm.out_proj.bias.grad))

    @chex.variants(with_jit=True, without_jit=True)
    def test_unbatched_input_matches_torch(self):
        tm, model = torch_and_tlean()
        x = inputs(2, (T, E))
        padding = np.array([False, False, True, False, True])
        y = self.variant(lambda m, x: m(x, key_padding_mask=padding))(model, x)
        assert_close(y, n(tm(t(x), t(x), t(x), need_weights=False, key_padding_mask=torch.from_numpy(padding))[0]))


class FullyMaskedRowTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_a_query_with_no_allowed_key_outputs_the_out_proj_bias_with_finite_gradients(self):
        tm, model = torch_and_tlean()
        x = inputs(3)
        mask = random_mask(6)
        mask[2] = False  # query 2 may attend nothing
        padding = np.zeros((B, T), bool)
        padding[1] = True  # every key of sequence 1 is padding
        for kw in (
            {"allow": mask},
            {"attn_mask": ~mask},
            {"key_padding_mask": padding},
            {"attn_mask": np.where(mask, 0.0, -np.inf).astype(np.float32)},
        ):
            y = np.asarray(self.variant(lambda m, x, kw: m(x, **kw))(model, x, kw))
            empty = np.zeros((B, T), bool)
            if "key_padding_mask" in kw:
                empty[1] = True
            else:
                empty[:, 2] = True
            np.testing.assert_array_equal(y[empty], np.broadcast_to(model.params["out_proj"]["bias"], y[empty].shape))
            torch_kw = (
                {"key_padding_mask": torch.from_numpy(padding)}
                if "key_padding_mask" in kw
                else {"attn_mask": torch.from_numpy(~mask)}
            )
            assert_close(y, n(tm(t(x), t(x), t(x), need_weights=False, **torch_kw)[0]))  # PyTorch's SDPA path agrees
            with torch.no_grad():  # its need_weights=True path gives NaN there
                assert np.isnan(n(tm(t(x), t(x), t(x), need_weights=True, **torch_kw)[0])[empty]).all()
            loss = lambda x, m: (m(x, **kw) ** 2).sum()
            gx, gm = self.variant(jax.grad(loss, argnums=(0, 1)))(x, model)
            assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves((gx, gm)))

    def test_the_rule_holds_in_the_dropout_path_too(self):
        layer = L.MultiheadAttention(E, H, dropout=0.5)
        params, _ = layer.init(jax.random.key(0))
        mask = random_mask(7)
        mask[0] = False
        f = lambda p, x: layer.apply(p, {}, x, key=jax.random.key(1), train=True, allow=mask)[0]
        x = jnp.asarray(inputs(4))
        y = jax.jit(f)(params, x)
        assert_close(y[:, 0], jnp.broadcast_to(params["out_proj"]["bias"], (B, E)))
        grads = jax.jit(jax.grad(lambda p, x: (f(p, x) ** 2).sum(), argnums=(0, 1)))(params, x)
        assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))


def attention_reference(params, x, allowed, keep, p):
    """softmax(q k^T / sqrt(d) masked) with dropped weights, by loops over batch, head, query."""
    x = np.asarray(x, np.float64)
    w, b = np.asarray(params["in_proj_weight"], np.float64), np.asarray(params["in_proj_bias"], np.float64)
    q, k, v = np.split(x @ w.T + b, 3, axis=-1)
    d = E // H
    out = np.zeros((B, T, E))
    for bi in range(B):
        for h in range(H):
            cols = slice(h * d, (h + 1) * d)
            for i in range(T):
                scores = np.array([q[bi, i, cols] @ k[bi, j, cols] / np.sqrt(d) for j in range(T)])
                scores = np.where(allowed[i], scores, -np.inf)
                weights = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
                weights = weights * keep[bi, h, i] / (1 - p)
                out[bi, i, cols] = weights @ v[bi, :, cols]
    wo, bo = np.asarray(params["out_proj"]["weight"], np.float64), np.asarray(params["out_proj"]["bias"], np.float64)
    return out @ wo.T + bo


class DropoutTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_attention_dropout_matches_a_numpy_reference(self):
        layer = L.MultiheadAttention(E, H, causal=True, dropout=0.4)
        params, _ = layer.init(jax.random.key(0))
        params = jax.tree.map(lambda a: a + 0.1, params)  # non-zero biases
        x, key = inputs(5), jax.random.key(3)
        y = self.variant(lambda p, x, k: layer.apply(p, {}, x, key=k, train=True)[0])(params, x, key)
        keep = np.asarray(jax.random.bernoulli(key, 0.6, (B, H, T, T)))
        assert_close(y, attention_reference(params, x, np.tril(np.ones((T, T), bool)), keep, 0.4))
        evaluation = layer.apply(params, {}, x)[0]  # eval: no dropout, the fused path
        assert_close(
            evaluation, attention_reference(params, x, np.tril(np.ones((T, T), bool)), np.ones((B, H, T, T)), 0)
        )

    def test_train_without_a_key_is_a_clear_error(self):
        layer = L.MultiheadAttention(E, H, dropout=0.1)
        params, _ = layer.init(jax.random.key(0))
        with pytest.raises(
            ValueError, match=r"MultiheadAttention\(.*dropout=0.1\) in train mode .* needs a dropout key"
        ):
            layer.apply(params, {}, jnp.ones((B, T, E)), train=True)
        np.testing.assert_array_equal(  # dropout=0 in train mode needs no key and changes nothing
            L.MultiheadAttention(E, H).apply(params, {}, jnp.ones((B, T, E)), train=True)[0],
            L.MultiheadAttention(E, H).apply(params, {}, jnp.ones((B, T, E)))[0],
        )


def test_default_init_follows_pytorch():
    e = 64
    params, state = L.MultiheadAttention(e, 4).init(jax.random.key(0))
    torch.manual_seed(0)
    tm = torch.nn.MultiheadAttention(e, 4, batch_first=True)
    w, wo = np.asarray(params["in_proj_weight"]), np.asarray(params["out_proj"]["weight"])
    assert state == {} and w.shape == (3 * e, e) and wo.shape == (e, e)
    xavier, kaiming = np.sqrt(6 / (e + 3 * e)), 1 / np.sqrt(e)
    assert xavier * 0.98 < np.abs(w).max() <= xavier and kaiming * 0.98 < np.abs(wo).max() <= kaiming
    np.testing.assert_allclose(w.std(), n(tm.in_proj_weight).std(), rtol=0.05)
    np.testing.assert_allclose(wo.std(), n(tm.out_proj.weight).std(), rtol=0.05)
    assert not np.asarray(params["in_proj_bias"]).any() and not np.asarray(params["out_proj"]["bias"]).any()
    no_bias = L.MultiheadAttention(e, 4, bias=False).init(jax.random.key(0))[0]
    assert set(no_bias) == {"in_proj_weight", "out_proj"} and set(no_bias["out_proj"]) == {"weight"}


class KVCacheTest(chex.TestCase):
    @chex.variants(with_jit=True)  # eagerly, the docstring's example decodes 4 + 1 positions
    def test_chunked_decoding_equals_the_full_causal_forward_for_every_prefix(self):
        layer = L.MultiheadAttention(E, H, causal=True)
        params, _ = layer.init(jax.random.key(0))
        x = jnp.asarray(inputs(6))
        full = layer.apply(params, {}, x)[0]
        decode = self.variant(layer.decode)
        for prefix in range(1, T + 1):
            y, cache = decode(params, layer.init_cache(B, T + 2), x[:, :prefix], 0)
            outs = [y]
            for pos in range(prefix, T):
                y, cache = decode(params, cache, x[:, pos : pos + 1], pos)
                outs.append(y)
            assert_close(jnp.concatenate(outs, axis=1), full)
            np.testing.assert_array_equal(cache["key"][:, :, T:], 0)  # nothing written past the end

    def test_decoding_past_the_cache_is_an_error_or_nan(self):
        layer = L.MultiheadAttention(E, H, causal=True)
        params, _ = layer.init(jax.random.key(0))
        cache = layer.init_cache(B, 4)
        with pytest.raises(
            ShapeError,
            match=r"MultiheadAttention\(.*\): expected at most 1 new positions at "
            r"start_pos=3 \(cache max_len=4\), got shape \(2, 2, 8\)",
        ):
            layer.decode(params, cache, jnp.ones((B, 2, E)), 3)
        y, _ = jax.jit(layer.decode)(params, cache, jnp.ones((B, 2, E)), 3)  # traced: cannot be checked
        assert np.isnan(np.asarray(y)).all()
        with pytest.raises(ValueError, match=r"KV-cache decoding needs a causal layer"):
            L.MultiheadAttention(E, H).decode(params, cache, jnp.ones((B, 1, E)), 0)
        with pytest.raises(ShapeError, match=r"expected cache\['key'\] \[3, 2, max_len, 4\], got shape \(2, 2, 4, 4\)"):
            layer.decode(params, cache, jnp.ones((3, 1, E)), 0)


def test_decoding_out_of_range_never_writes_the_cache():
    """A traced start_pos past max_len or negative gives NaN and the cache back unchanged; a static negative
    one is an error at trace time. (Before: the clamped write overwrote the last slot, or slot 0 for -1.)"""
    layer = L.MultiheadAttention(E, H, causal=True)
    params, _ = layer.init(jax.random.key(0))
    x = jnp.asarray(inputs(4))
    _, cache = layer.decode(params, layer.init_cache(B, 4), x[:, :3], 0)  # slots 0..2 filled, slot 3 empty
    decode = jax.jit(layer.decode)
    for start, seq in ((3, 2), (4, 1), (-1, 1), (-2, 2), (100, 1)):
        y, new = decode(params, cache, x[:, :seq], start)
        assert np.isnan(np.asarray(y)).all(), (start, seq)
        for name in ("key", "value"):
            np.testing.assert_array_equal(new[name], cache[name], err_msg=f"start_pos={start}, seq={seq}")
    y, new = decode(params, cache, x[:, 3:4], 3)  # in range, traced: written and finite
    assert np.isfinite(np.asarray(y)).all() and not np.array_equal(new["key"][:, :, 3], cache["key"][:, :, 3])
    for bad in (-1, np.int64(-3), jnp.int32(-1)):
        with pytest.raises(ValueError, match=r"MultiheadAttention\(.*\): start_pos must be >= 0, got -"):
            layer.decode(params, cache, x[:, :1], bad)
    with pytest.raises(TypeError, match=r"start_pos must be an integer scalar, got 1.0"):
        layer.decode(params, cache, x[:, :1], 1.0)
    with pytest.raises(
        ShapeError,
        match=r"expected at most 4 new positions \(cache max_len=4\), "
        r"got shape \(2, 5, 8\)",
    ):
        decode(params, cache, jnp.ones((B, 5, E)), 0)


def test_bad_input_and_config():
    layer = L.MultiheadAttention(E, H)
    params, _ = layer.init(jax.random.key(0))
    x = jnp.ones((B, T, E))
    with pytest.raises(ValueError, match=r"MultiheadAttention: embed_dim=10 must be divisible by num_heads=3"):
        L.MultiheadAttention(10, 3)
    with pytest.raises(ValueError, match=r"dropout must be a probability in \[0, 1\), got 1.0"):
        L.MultiheadAttention(E, H, dropout=1.0)
    with pytest.raises(ValueError, match=r"implementation must be one of"):
        L.MultiheadAttention(E, H, implementation="flash")
    with pytest.raises(
        ShapeError,
        match=r"MultiheadAttention\(embed_dim=8, num_heads=2\): expected input "
        r"\[batch, seq, 8\] or \[seq, 8\], got shape \(2, 5, 7\)",
    ):
        layer.apply(params, {}, jnp.ones((B, T, 7)))
    with pytest.raises(ShapeError, match=r"expected allow \[5, 5\] or \[2\|1, 2\|1, 5, 5\], got shape \(5, 4\)"):
        layer.apply(params, {}, x, allow=jnp.ones((T, 4), bool))
    with pytest.raises(ShapeError, match=r"expected allow .*, got shape \(2, 5, 5\)"):  # 3-D would be ambiguous
        layer.apply(params, {}, x, allow=jnp.ones((B, T, T), bool))
    with pytest.raises(TypeError, match=r"allow must be boolean \(True = may attend\), got float32"):
        layer.apply(params, {}, x, allow=jnp.ones((T, T)))
    with pytest.raises(ValueError, match=r"pass either allow \(True = may attend\) or attn_mask"):
        layer.apply(params, {}, x, allow=jnp.ones((T, T), bool), attn_mask=jnp.zeros((T, T), bool))
    with pytest.raises(ShapeError, match=r"expected attn_mask \[5, 5\] or \[4, 5, 5\] \(PyTorch's layout"):
        layer.apply(params, {}, x, attn_mask=jnp.zeros((B, T, T), bool))
    with pytest.raises(
        TypeError,
        match=r"attn_mask must be boolean \(True = blocked, PyTorch's convention\) or a "
        r"float additive mask, got int32",
    ):
        layer.apply(params, {}, x, attn_mask=jnp.zeros((T, T), jnp.int32))
    with pytest.raises(ShapeError, match=r"expected key_padding_mask \[2, 5\], got shape \(5,\)"):
        layer.apply(params, {}, x, key_padding_mask=jnp.zeros((T,), bool))
    with pytest.raises(ShapeError, match=r"expected allow"):  # at trace time, before anything compiles
        jax.jit(lambda x, m: layer.apply(params, {}, x, allow=m)).lower(x, jnp.ones((4, 4), bool))


def test_torch_positional_order_and_batch_first():
    # torch's order: MultiheadAttention(embed_dim, num_heads, dropout, bias, ...): 0.1 is the dropout.
    assert L.MultiheadAttention(8, 2, 0.1).dropout == 0.1 and L.MultiheadAttention(8, 2, 0.1, False).bias is False
    with pytest.raises(
        TypeError,
        match=r"nn.MultiheadAttention: pass batch_first= explicitly: torch.nn.MultiheadAttention's "
        r"default is batch_first=False, tlean.layers.MultiheadAttention's is batch_first=True",
    ):
        nn.MultiheadAttention(8, 2)
    torch.manual_seed(0)
    tm = torch.nn.MultiheadAttention(E, H).eval()  # torch's default: [seq, batch, E]
    model = load(nn.pure.multihead_attention(E, H, batch_first=False, key=jax.random.key(0)), tm)
    x = np.random.default_rng(0).normal(size=(T, B, E)).astype(np.float32)
    assert_close(model(x), n(tm(t(x), t(x), t(x), need_weights=False)[0]))


# -- cross-attention, kdim/vdim, add_bias_kv, add_zero_attn, need_weights (issue 13) ---------------
S = 4  # key/value length, differs from the query length T


def torch_cross(args, seed=0, batch_first=True):
    """torch.nn.MultiheadAttention(*args) with random biases, and the tlean Model of the same arguments."""
    torch.manual_seed(seed)
    tm = torch.nn.MultiheadAttention(*args, batch_first=batch_first)
    with torch.no_grad():
        for name, p in tm.named_parameters():
            if "bias" in name:
                p.normal_()
    return tm, load(nn.pure.multihead_attention(*args, batch_first=batch_first, key=jax.random.key(0)), tm)


def dims(args):
    """(kdim, vdim) of torch's positional arguments (None: embed_dim)."""
    return tuple(args[i] if len(args) > i and args[i] is not None else E for i in (6, 7))


CROSS_ARGS = [  # torch's positional order: embed_dim, num_heads, dropout, bias, add_bias_kv, add_zero_attn, kdim, vdim
    (E, H),
    (E, H, 0.0, True, False, False, 6, 3),
    (E, 4, 0.0, True, True, False),
    (E, H, 0.0, False, False, True, 5),
    (E, H, 0.0, True, True, True, 6, 6),
]


class CrossAttentionParityTest(chex.TestCase):
    @chex.variants(without_jit=True)  # jit == eager: the registry's cases; compiling 60 variants here costs 25 s
    def test_outputs_and_weights_match_torch_with_masks(self):
        rng = np.random.default_rng(0)
        padding = np.zeros((B, S), bool)
        padding[1, 2:] = True
        mask = random_mask(8, (T, S))
        for i, args in enumerate(CROSS_ARGS):
            tm, model = torch_cross(args, seed=i)
            kdim, vdim = dims(args)
            x = inputs(i)
            k, v = (rng.normal(size=(B, S, d)).astype(np.float32) for d in (kdim, vdim))
            for ours, theirs in (
                ({}, {}),
                (
                    {"allow": mask, "key_padding_mask": padding},
                    {"attn_mask": torch.from_numpy(~mask), "key_padding_mask": torch.from_numpy(padding)},
                ),
                (
                    {"attn_mask": np.where(mask, 0.5, -np.inf).astype(np.float32)},
                    {"attn_mask": torch.from_numpy(np.where(mask, 0.5, -np.inf).astype(np.float32))},
                ),
            ):
                for average in (True, False):
                    y, w = self.variant(
                        lambda m, x, k, v, ours=ours, average=average: m(
                            x, kv=(k, v), need_weights=True, average_attn_weights=average, **ours
                        )
                    )(model, x, k, v)
                    yt, wt = tm(t(x), t(k), t(v), need_weights=True, average_attn_weights=average, **theirs)
                    assert_close(y, n(yt))
                    assert_close(w, n(wt))
                    assert_close(self.variant(lambda m, x, k, v, ours=ours: m(x, kv=(k, v), **ours))(model, x, k, v), y)

    @chex.variants(with_jit=True)
    def test_gradients_match_torch(self):
        rng = np.random.default_rng(1)
        for i, args in enumerate(CROSS_ARGS[1:]):
            tm, model = torch_cross(args, seed=10 + i)
            kdim, vdim = dims(args)
            x, k, v = inputs(i), *(rng.normal(size=(B, S, d)).astype(np.float32) for d in (kdim, vdim))
            xt, kt, vt = t(x), t(k), t(v)
            # torch's is_causal hint would drop attn_mask (and the bias_k column's padding): pass the mask alone
            (
                tm(xt, kt, vt, need_weights=False, attn_mask=torch.ones(T, S, dtype=torch.bool).triu(1))[0] ** 2
            ).sum().backward()
            loss = lambda x, k, v, m: (m(x, kv=(k, v), is_causal=True) ** 2).sum()
            gx, gk, gv, gm = self.variant(jax.grad(loss, argnums=(0, 1, 2, 3)))(x, k, v, model)
            for ours, theirs in ((gx, xt), (gk, kt), (gv, vt)):
                assert_close(ours, n(theirs.grad), tol=1e-4)
            grads = gm.named_parameters()
            for name, p in tm.named_parameters():
                assert_close(grads[name], n(p.grad), tol=1e-4)

    @chex.variants(with_jit=True, without_jit=True)
    def test_unbatched_seq_first_and_one_tensor_kv_match_torch(self):
        args = (E, H, 0.0, True, True, True, 6, 6)
        rng = np.random.default_rng(2)
        tm, model = torch_cross(args, seed=3, batch_first=False)
        x, mem = inputs(3, (T, B, E)), rng.normal(size=(S, B, 6)).astype(np.float32)
        y, w = self.variant(lambda m, x, mem: m(x, kv=mem, need_weights=True))(model, x, mem)
        yt, wt = tm(t(x), t(mem), t(mem))
        assert y.shape == (T, B, E) and w.shape == (B, T, S + 2)
        assert_close(y, n(yt))
        assert_close(w, n(wt))
        padding = np.array([False, True, False, False])
        y, w = self.variant(lambda m, x, mem: m(x, kv=(mem, mem), need_weights=True, key_padding_mask=padding))(
            model, x[:, 0], mem[:, 0]
        )
        yt, wt = tm(t(x[:, 0]), t(mem[:, 0]), t(mem[:, 0]), key_padding_mask=torch.from_numpy(padding))
        assert y.shape == (T, E) and w.shape == (T, S + 2)
        assert_close(y, n(yt))
        assert_close(w, n(wt))

    def test_self_attention_weights_match_torch(self):
        tm, model = torch_and_tlean(seed=4)
        x = inputs(4)
        for average in (True, False):
            y, w = model(x, need_weights=True, average_attn_weights=average, is_causal=True)
            yt, wt = tm(
                t(x),
                t(x),
                t(x),
                average_attn_weights=average,
                is_causal=True,
                attn_mask=torch.ones(T, T, dtype=torch.bool).triu(1),
            )
            assert_close(y, n(yt))
            assert_close(w, n(wt))
            assert_close(y, model(x, is_causal=True))

    def test_projected_memory_equals_passing_it(self):
        for args in CROSS_ARGS[1:3]:
            layer = L.MultiheadAttention(*args)
            params, _ = layer.init(jax.random.key(1))
            params = jax.tree.map(lambda a: a + 0.1, params)
            x = jnp.asarray(inputs(5))
            k = jax.random.normal(jax.random.key(2), (B, S, layer.key_dim))
            v = jax.random.normal(jax.random.key(3), (B, S, layer.value_dim))
            cache = jax.jit(layer.project_kv)(params, (k, v))
            assert cache["key"].shape == (B, S + layer.add_bias_kv, layer.num_heads, layer.head_dim)
            assert_close(layer.apply(params, {}, x, kv_cache=cache)[0], layer.apply(params, {}, x, kv=(k, v))[0])


def test_torch_positional_order_and_init_of_the_separate_projections():
    layer = L.MultiheadAttention(E, H, 0.1, False, True, True, 6, 3, False)
    assert (
        layer.dropout,
        layer.bias,
        layer.add_bias_kv,
        layer.add_zero_attn,
        layer.kdim,
        layer.vdim,
        layer.batch_first,
    ) == (0.1, False, True, True, 6, 3, False)
    assert L.MultiheadAttention(E, H, kdim=E, vdim=E) == L.MultiheadAttention(E, H)  # the default, normalised
    e = 64
    params, _ = L.MultiheadAttention(e, 4, 0.0, True, True, False, 32, 48).init(jax.random.key(0))
    torch.manual_seed(0)
    tm = torch.nn.MultiheadAttention(e, 4, 0.0, True, True, False, 32, 48)
    ours = {
        k: np.asarray(v)
        for k, v in jax.tree_util.tree_flatten_with_path(params)[0]
        and nn.pure.multihead_attention(e, 4, 0.0, True, True, False, 32, 48, batch_first=True, key=jax.random.key(0))
        .named_parameters()
        .items()
    }
    assert {k: v.shape for k, v in ours.items()} == {k: tuple(v.shape) for k, v in tm.state_dict().items()}
    for name in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
        bound = np.sqrt(6 / sum(ours[name].shape))
        assert bound * 0.95 < np.abs(ours[name]).max() <= bound
    for name in ("bias_k", "bias_v"):
        np.testing.assert_allclose(ours[name].std(), 1 / np.sqrt(e), rtol=0.3)
    assert not ours["in_proj_bias"].any()


def test_cross_attention_bad_input():
    layer = L.MultiheadAttention(E, H, kdim=6, vdim=3)
    params, _ = layer.init(jax.random.key(0))
    x = jnp.ones((B, T, E))
    k, v = jnp.ones((B, S, 6)), jnp.ones((B, S, 3))
    with pytest.raises(
        ValueError,
        match=r"MultiheadAttention\(.*kdim=6, vdim=3\): kdim/vdim differ from embed_dim.*"
        r"pass kv=\(key, value\)",
    ):
        layer.apply(params, {}, x)
    with pytest.raises(
        ShapeError,
        match=r"expected kv key \[2, seq, 6\] \(laid out as x \(2, 5, 8\)\), "
        r"got shape \(2, 4, 5\)",
    ):
        layer.apply(params, {}, x, kv=(jnp.ones((B, S, 5)), v))
    with pytest.raises(ShapeError, match=r"expected kv value \[2, seq, 3\].*got shape \(3, 4, 3\)"):
        layer.apply(params, {}, x, kv=(k, jnp.ones((3, S, 3))))
    with pytest.raises(ShapeError, match=r"expected kv key and value of the same length"):
        layer.apply(params, {}, x, kv=(k, jnp.ones((B, S + 1, 3))))
    with pytest.raises(ShapeError, match=r"expected allow \[5, 4\] or \[2\|1, 2\|1, 5, 4\], got shape \(5, 5\)"):
        layer.apply(params, {}, x, kv=(k, v), allow=jnp.ones((T, T), bool))
    with pytest.raises(ShapeError, match=r"expected key_padding_mask \[2, 4\], got shape \(2, 5\)"):
        layer.apply(params, {}, x, kv=(k, v), key_padding_mask=jnp.zeros((B, T), bool))
    with pytest.raises(TypeError, match=r"expected a floating-point input, got int32"):
        layer.apply(params, {}, x, kv=(k.astype(jnp.int32), v))
    with pytest.raises(ValueError, match=r"KV-cache decoding is causal self-attention"):
        L.MultiheadAttention(E, H, add_bias_kv=True, causal=True).decode(params, {}, x, 0)
    with pytest.raises(ValueError, match=r"MultiheadAttention: kdim must be a positive int, got 0"):
        L.MultiheadAttention(E, H, kdim=0)
