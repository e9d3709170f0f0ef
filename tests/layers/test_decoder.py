"""TransformerDecoderLayer, TransformerDecoder and Transformer against torch.nn (values, gradients,
masks in both conventions, causal flags), the seq-first and unbatched layouts, init and bad input."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from tests.torch_utils import load, n, t
from tlean import ShapeError, nn
from tlean import layers as L

D, NH, FF, B, T, S = 8, 2, 16, 2, 5, 4


def randomise(module: torch.nn.Module, seed: int) -> None:
    """Give every parameter (norms and zero-initialised biases included) distinct random values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(p + 0.2 * torch.randn(p.shape, generator=g))


def data(seed=0, batch_first=True):
    rng = np.random.default_rng(seed)
    tgt, memory = (rng.normal(size=(B, L_, D)).astype(np.float32) for L_ in (T, S))
    if not batch_first:
        tgt, memory = tgt.transpose(1, 0, 2).copy(), memory.transpose(1, 0, 2).copy()
    return tgt, memory


def padding(length):
    m = np.zeros((B, length), bool)
    m[1, length - 2 :] = True
    return m


def causal(rows, cols):
    return torch.ones(rows, cols, dtype=torch.bool).triu(1)


def output_and_grads(f, *args):
    """``f(*args)`` and the gradients of ``sum(f(*args) ** 2)`` for every argument, in one jitted vjp."""

    def both(*args):
        y, vjp = jax.vjp(f, *args)
        return y, vjp(2 * y)

    return jax.jit(both)(*args)


def assert_close(a, b, tol=1e-5):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


def torch_decoder_layer(norm_first, activation, batch_first=True, seed=0):
    torch.manual_seed(seed)
    layer = torch.nn.TransformerDecoderLayer(D, NH, FF, 0.0, activation, 1e-5, batch_first, norm_first)
    randomise(layer, seed)
    return layer


class DecoderLayerParityTest(chex.TestCase):  # jit == eager for every layer: the registry
    @chex.variants(without_jit=True)
    def test_matches_torch_for_norm_first_activation_and_layout(self):
        for i, (norm_first, activation, batch_first) in enumerate(
            ((False, "relu", True), (True, "gelu", True), (False, "gelu", False))
        ):
            tl = torch_decoder_layer(norm_first, activation, batch_first, seed=i).eval()
            model = load(
                nn.pure.transformer_decoder_layer(
                    D, NH, FF, 0.0, activation, 1e-5, batch_first, norm_first, key=jax.random.key(0)
                ),
                tl,
            )
            tgt, memory = data(i, batch_first)
            y = self.variant(lambda m, a, b: m(a, b))(model, tgt, memory)  # decoder(tgt, memory), as torch
            assert_close(y, n(tl(t(tgt), t(memory))))
        tgt, memory = data(5)
        assert_close(
            model(tgt[0], memory[0], tgt_is_causal=True),  # unbatched [T, D], [S, D]
            n(tl(t(tgt[0]), t(memory[0]), tgt_mask=causal(T, T))),
        )

    def test_masks_and_gradients_match_torch(self):
        tl = torch_decoder_layer(True, "relu", seed=3).train()  # dropout 0: train mode is deterministic
        model = load(
            nn.pure.transformer_decoder_layer(D, NH, FF, 0.1, batch_first=True, norm_first=True, key=jax.random.key(0)),
            tl,
        )
        tgt, memory = data(1)
        memory_mask = np.random.default_rng(2).random((T, S)) < 0.3
        memory_mask[:, 0] = False
        tt, mt = t(tgt), t(memory)
        yt = tl(
            tt,
            mt,
            tgt_mask=causal(T, T),
            memory_mask=torch.from_numpy(memory_mask),
            tgt_key_padding_mask=torch.from_numpy(padding(T)),
            memory_key_padding_mask=torch.from_numpy(padding(S)),
        )
        (yt**2).sum().backward()
        kw = dict(
            tgt_is_causal=True,
            memory_mask=memory_mask,
            tgt_key_padding_mask=padding(T),
            memory_key_padding_mask=padding(S),
        )
        y, (g_tgt, g_mem, gm) = output_and_grads(lambda a, b, m: m(a, b, **kw), tgt, memory, model)
        assert_close(y, n(yt))
        assert_close(g_tgt, n(tt.grad), tol=1e-4)
        assert_close(g_mem, n(mt.grad), tol=1e-4)
        grads = gm.named_parameters()
        for name, p in tl.named_parameters():
            assert_close(grads[name], n(p.grad), tol=1e-4)
        # the same masks in tlean's convention (True = may attend) give the same output
        allow = np.tril(np.ones((T, T), bool))
        y_allow = model(
            tgt,
            memory,
            allow=allow,
            memory_allow=~memory_mask,
            tgt_key_padding_mask=padding(T),
            memory_key_padding_mask=padding(S),
        )
        assert_close(y_allow, n(yt))
        # memory_is_causal applies the causal mask to the cross-attention, as a memory_mask does in torch
        with torch.no_grad():
            yt = tl(tt, mt, memory_mask=causal(T, S), memory_is_causal=True)
        assert_close(model(tgt, memory, memory_is_causal=True), n(yt))


class DecoderParityTest(chex.TestCase):
    def test_two_layer_stack_with_norm_matches_torch_in_value_and_gradient(self):
        torch.manual_seed(0)
        layer = torch.nn.TransformerDecoderLayer(D, NH, FF, 0.0, batch_first=True)
        td = torch.nn.TransformerDecoder(layer, 2, norm=torch.nn.LayerNorm(D))
        randomise(td, 1)
        td.train()
        model = load(
            nn.pure.transformer_decoder(L.TransformerDecoderLayer(D, NH, FF), 2, L.LayerNorm(D), key=jax.random.key(0)),
            td,
        )
        ours = model.named_parameters()
        np.testing.assert_array_equal(
            ours["layers.*.multihead_attn.in_proj_weight"][1], n(td.layers[1].multihead_attn.in_proj_weight)
        )
        tgt, memory = data(2)
        tt, mt = t(tgt), t(memory)
        yt = td(tt, mt, tgt_mask=causal(T, T), tgt_is_causal=True, memory_key_padding_mask=torch.from_numpy(padding(S)))
        (yt**2).sum().backward()
        float_causal = np.where(np.triu(np.ones((T, T), bool), 1), -np.inf, 0.0).astype(np.float32)
        y, (g_tgt, g_mem, gm) = output_and_grads(
            lambda a, b, m: m(a, b, tgt_mask=float_causal, memory_key_padding_mask=padding(S)), tgt, memory, model
        )
        assert_close(y, n(yt))
        assert_close(g_tgt, n(tt.grad), tol=1e-4)
        assert_close(g_mem, n(mt.grad), tol=1e-4)
        grads = gm.named_parameters()
        for name, p in td.named_parameters():
            if name.startswith("layers."):
                _, i, rest = name.split(".", 2)
                assert_close(grads[f"layers.*.{rest}"][int(i)], n(p.grad), tol=1e-4)
            else:
                assert_close(grads[name], n(p.grad), tol=1e-4)
        # tgt_is_causal alone applies the causal mask (torch's flag is only a hint)
        assert_close(model(tgt, memory, tgt_is_causal=True, memory_key_padding_mask=padding(S)), n(yt))


@pytest.mark.filterwarnings("ignore:enable_nested_tensor is True")
def test_transformer_matches_torch_in_value_and_gradient_with_every_mask():
    for i, (batch_first, norm_first) in enumerate(((False, True),)):  # post-norm, batch-first: the layer tests
        torch.manual_seed(i)
        tm = torch.nn.Transformer(D, NH, 1, 2, FF, 0.0, "gelu", None, None, 1e-5, batch_first, norm_first)
        randomise(tm, i)
        tm.train()  # dropout 0; train mode keeps torch off its nested-tensor fast path
        model = load(
            nn.pure.transformer(
                D, NH, 1, 2, FF, 0.0, "gelu", None, None, 1e-5, batch_first, norm_first, key=jax.random.key(0)
            ),
            tm,
        )
        tgt, src = data(4 + i, batch_first)
        src_mask = np.random.default_rng(i).random((S, S)) < 0.3
        np.fill_diagonal(src_mask, False)
        st, tt = t(src), t(tgt)
        yt = tm(
            st,
            tt,
            src_mask=torch.from_numpy(src_mask),
            tgt_mask=causal(T, T),
            src_key_padding_mask=torch.from_numpy(padding(S)),
            memory_key_padding_mask=torch.from_numpy(padding(S)),
        )
        kw = dict(
            src_mask=src_mask, tgt_is_causal=True, src_key_padding_mask=padding(S), memory_key_padding_mask=padding(S)
        )
        (yt**2).sum().backward()
        y, (g_src, g_tgt, gm) = output_and_grads(lambda s, g, m, kw=kw: m(s, g, **kw), src, tgt, model)
        assert_close(y, n(yt))
        assert_close(g_src, n(st.grad), tol=1e-4)
        assert_close(g_tgt, n(tt.grad), tol=1e-4)
        grads = gm.named_parameters()
        for name, p in tm.named_parameters():
            parts = name.split(".")
            if parts[1] == "layers":
                assert_close(grads[".".join(parts[:2] + ["*"] + parts[3:])][int(parts[2])], n(p.grad), tol=1e-4)
            else:
                assert_close(grads[name], n(p.grad), tol=1e-4)


def test_transformer_init_and_names_follow_torch():
    torch.manual_seed(0)
    tm = torch.nn.Transformer(16, 2, 2, 1, 32, batch_first=True)
    layer = L.Transformer(16, 2, 2, 1, 32, scan=False)
    ours = nn.Model(layer, *jax.jit(layer.init)(jax.random.key(0))).named_parameters()
    theirs = {}
    for name, p in tm.state_dict().items():
        parts = name.split(".")
        theirs[".".join(parts[:2] + ["*"] + parts[3:]) if parts[1] == "layers" else name] = tuple(p.shape)
    assert {k: v[1:] if ".*." in k else v for k, v in {k: np.shape(v) for k, v in ours.items()}.items()} == theirs
    w = np.asarray(ours["decoder.layers.*.linear1.weight"][0])  # xavier-uniform, as torch re-initialises it
    bound = np.sqrt(6 / (16 + 32))
    assert bound * 0.95 < np.abs(w).max() <= bound
    np.testing.assert_allclose(w.std(), n(tm.decoder.layers[0].linear1.weight).std(), rtol=0.15)
    assert not np.array_equal(ours["encoder.layers.*.linear1.weight"][0], ours["encoder.layers.*.linear1.weight"][1])
    np.testing.assert_array_equal(ours["encoder.norm.weight"], 1)


def test_builders_require_batch_first_and_take_builders():
    for build in (lambda: nn.TransformerDecoderLayer(D, NH), lambda: nn.Transformer(D, NH)):
        with pytest.raises(
            TypeError,
            match=r"pass batch_first= explicitly: torch.nn.Transformer\w*'s default is "
            r"batch_first=False",
        ):
            build()
    decoder = nn.run(0, nn.TransformerDecoder(nn.TransformerDecoderLayer(D, NH, FF, batch_first=True), 2))
    assert decoder.params["layers"]["linear1"]["weight"].shape == (2, FF, D)
    assert L.TransformerDecoderLayer(D, NH, FF, 0.2, "gelu", 1e-6, False, True, False) == L.TransformerDecoderLayer(
        D, NH, FF, dropout=0.2, activation="gelu", layer_norm_eps=1e-6, batch_first=False, norm_first=True, bias=False
    )


def test_bad_input_and_config():
    with pytest.raises(ValueError, match=r"TransformerDecoderLayer: d_model=10 must be divisible by nhead=3"):
        L.TransformerDecoderLayer(10, 3)
    with pytest.raises(TypeError, match=r"TransformerDecoder: decoder_layer must be a tlean Layer, got int"):
        L.TransformerDecoder(3, 2)
    with pytest.raises(TypeError, match=r"Transformer: custom_encoder must be a tlean Layer or None, got str"):
        L.Transformer(D, NH, custom_encoder="encoder")
    layer = L.TransformerDecoderLayer(D, NH, FF)
    params, state = jax.eval_shape(layer.init, jax.random.key(0))
    trace = lambda x, **kw: jax.eval_shape(lambda p, x: layer.apply(p, state, x, **kw), params, x)
    x, memory = jnp.ones((B, T, D)), jnp.ones((B, S, D))
    with pytest.raises(TypeError, match=r"TransformerDecoderLayer\(.*\) needs memory=.*decoder\(tgt, memory\)"):
        trace(x)
    with pytest.raises(
        ShapeError,
        match=r"TransformerDecoderLayer\(d_model=8, nhead=2, dim_feedforward=16\): expected "
        r"memory \[2, seq, 8\] \(laid out as the input \(2, 5, 8\)\), got shape \(3, 4, 8\)",
    ):
        trace(x, memory=jnp.ones((3, S, D)))
    with pytest.raises(ShapeError, match=r"expected input \[batch, seq, 8\] or \[seq, 8\], got shape \(2, 5, 6\)"):
        trace(jnp.ones((B, T, 6)), memory=memory)
    with pytest.raises(ShapeError, match=r"seq.multihead_attn MultiheadAttention\(.*\): expected attn_mask \[5, 4\]"):
        trace(x, memory=memory, memory_mask=jnp.zeros((T, T), bool))
    with pytest.raises(TypeError, match=r"expected a floating-point input, got int32"):
        trace(x, memory=memory.astype(jnp.int32))
    decoder = L.TransformerDecoder(layer, 2)
    params, state = jax.eval_shape(decoder.init, jax.random.key(0))
    with pytest.raises(ShapeError, match=r"seq.layers\[\*\] TransformerDecoderLayer\(.*\): expected memory"):
        jax.eval_shape(lambda p: decoder.apply(p, state, x, memory=jnp.ones((B, S, 6))), params)
    with pytest.raises(TypeError, match=r"got the keyword 'mask', which none of its children takes|unexpected keyword"):
        jax.eval_shape(lambda p: decoder.apply(p, state, x, memory=memory, mask=None), params)


def test_chunked_decoding_with_projected_memory_equals_the_full_causal_forward():
    decoder = L.TransformerDecoder(L.TransformerDecoderLayer(D, NH, FF, norm_first=True), 2, L.LayerNorm(D))
    params, state = jax.jit(decoder.init)(jax.random.key(0))
    params = jax.tree.map(lambda a: a + 0.1 * jax.random.normal(jax.random.key(1), a.shape), params)
    tgt, memory = (jnp.asarray(a) for a in data(6))
    full = decoder.apply(params, state, tgt, memory=memory, tgt_is_causal=True, memory_key_padding_mask=padding(S))[0]
    cache = jax.jit(decoder.init_cache, static_argnums=2)(params, memory, T)
    assert cache["memory"]["key"].shape == (2, B, S, NH, D // NH)  # project_kv's layout, as apply's kv_cache
    assert cache["self_attn"]["key"].shape == (2, B, NH, T, D // NH)  # the KV cache's (transformers')
    decode = jax.jit(lambda p, c, x, s: decoder.decode(p, c, x, s, memory_key_padding_mask=padding(S)))
    y, cache = decode(params, cache, tgt[:, :2], 0)
    outs = [y]
    for pos in range(2, T):
        y, cache = decode(params, cache, tgt[:, pos : pos + 1], pos)
        outs.append(y)
    assert_close(jnp.concatenate(outs, axis=1), full)
