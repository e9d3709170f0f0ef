"""TransformerEncoderBlock against torch.nn.TransformerEncoderLayer, TransformerEncoder against
torch.nn.TransformerEncoder (3 layers), scanned == unrolled, the keying rules, KV-cache decoding."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from tests.torch_utils import load, n, t
from tlean import ShapeError, nn
from tlean import layers as L
from tlean.layers import _combinators
from tlean.seed import SeedStream

D, NH, FF, B, T = 8, 2, 16, 2, 5


def randomise(module: torch.nn.Module, seed: int) -> None:
    """Give every parameter (norms and zero-initialised biases included) distinct random values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(p + 0.2 * torch.randn(p.shape, generator=g))


def torch_layer(norm_first=False, activation="relu", dropout=0.0, seed=0):
    torch.manual_seed(seed)
    layer = torch.nn.TransformerEncoderLayer(D, NH, FF, dropout, activation, batch_first=True, norm_first=norm_first)
    randomise(layer, seed)
    return layer


def stacked(state_dict: dict, num_layers: int) -> dict:
    """torch.nn.TransformerEncoder's ``layers.{i}.name`` stacked into our ``layers.*.name``."""
    names = sorted({k.split(".", 2)[2] for k in state_dict})
    return {
        f"layers.*.{name}": np.stack([n(state_dict[f"layers.{i}.{name}"]) for i in range(num_layers)]) for name in names
    }


def inputs(seed=0):
    return np.random.default_rng(seed).normal(size=(B, T, D)).astype(np.float32)


def padding():
    m = np.zeros((B, T), bool)
    m[1, 3:] = True
    return m


def assert_close(a, b, tol=1e-5):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


class BlockParityTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_matches_torch_for_norm_first_and_activation_in_eval_and_train(self):
        x = inputs()
        for norm_first in (False, True):
            for activation in ("relu", "gelu"):
                tl = torch_layer(norm_first, activation)
                model = load(
                    nn.pure.transformer_encoder_block(
                        D, NH, FF, 0.0, activation, batch_first=True, norm_first=norm_first, key=jax.random.key(0)
                    ),
                    tl,
                )
                run = self.variant(lambda m, x, train: m(x, key=jax.random.key(1), train=train), static_argnums=2)
                tl.eval()
                assert_close(run(model, x, False), n(tl(t(x))))
                tl.train()  # dropout=0: train mode runs the same computation
                assert_close(run(model, x, True), n(tl(t(x))))

    @chex.variants(with_jit=True)  # eager gradients are slow; the forward runs eagerly above and below
    def test_masks_and_gradients_match_torch(self):
        x = inputs(1)
        tl = torch_layer(norm_first=True, activation="gelu", seed=3).eval()
        model = load(
            nn.pure.transformer_encoder_block(
                D, NH, FF, 0.1, "gelu", batch_first=True, norm_first=True, causal=True, key=jax.random.key(0)
            ),
            tl,
        )
        xt = t(x)
        causal = torch.ones(T, T, dtype=torch.bool).triu(1)
        yt = tl(xt, src_mask=causal, src_key_padding_mask=torch.from_numpy(padding()), is_causal=True)
        (yt**2).sum().backward()
        loss = lambda x, m: (m(x, key_padding_mask=padding()) ** 2).sum()
        y = self.variant(lambda m, x: m(x, key_padding_mask=padding()))(model, x)
        assert_close(y, n(yt))
        gx, gm = self.variant(jax.grad(loss, argnums=(0, 1)))(x, model)
        assert_close(gx, n(xt.grad))
        grads = gm.named_parameters()
        for name, p in tl.named_parameters():
            assert_close(grads[name], n(p.grad), tol=1e-4)
        y_mask = self.variant(lambda m, x: m(x, allow=~padding()[:, None, None, :]))(model, x)
        assert_close(y_mask, y)  # our True-means-attend mask, the same keys


class EncoderParityTest(chex.TestCase):
    @chex.variants(with_jit=True)
    def test_three_layer_stack_matches_torch_in_value_and_gradient(self):
        torch.manual_seed(0)
        layer = torch.nn.TransformerEncoderLayer(D, NH, FF, 0.1, "relu", batch_first=True)
        te = torch.nn.TransformerEncoder(layer, 3, enable_nested_tensor=False)
        for i, block in enumerate(te.layers):  # torch deep-copies one layer: make the three differ
            randomise(block, 10 + i)
        te.eval()
        model = load(nn.pure.transformer_encoder(L.TransformerEncoderBlock(D, NH, FF), 3, key=jax.random.key(0)), te)
        ours = model.named_parameters()
        for key, value in te.state_dict().items():  # torch's layers.{i}.name is index i of our layers.name
            _, i, name = key.split(".", 2)
            np.testing.assert_array_equal(ours[f"layers.*.{name}"][int(i)], n(value))
        x = inputs(2)
        xt = t(x)
        yt = te(xt, mask=torch.ones(T, T, dtype=torch.bool).triu(1), src_key_padding_mask=torch.from_numpy(padding()))
        (yt**2).sum().backward()
        causal = np.where(np.triu(np.ones((T, T), bool), 1), -np.inf, 0.0).astype(np.float32)  # torch's float mask
        run = lambda m, x: m(x, mask=causal, src_key_padding_mask=padding())
        loss = lambda x, m: (run(m, x) ** 2).sum()
        (value, (gx, gm)) = self.variant(jax.value_and_grad(loss, argnums=(0, 1)))(x, model)
        assert_close(value, (yt**2).sum().item(), tol=1e-4)
        assert_close(self.variant(run)(model, x), n(yt))
        assert_close(gx, n(xt.grad), tol=1e-4)
        torch_grads = stacked({k: p.grad for k, p in te.named_parameters()}, 3)
        for name, g in gm.named_parameters().items():
            assert_close(g, torch_grads[name], tol=1e-4)


class ScanTest(chex.TestCase):
    @chex.variants(with_jit=True)
    def test_scanned_equals_unrolled_in_values_and_gradients_with_dropout(self):
        block = L.TransformerEncoderBlock(D, NH, FF, 0.3, "gelu", norm_first=True)
        scanned = nn.pure.transformer_encoder(block, 2, key=jax.random.key(0))
        unrolled = scanned.replace(layer=L.TransformerEncoder(block, 2, scan=False))
        x, key = inputs(3), jax.random.key(7, impl="rbg")  # any key type; rbg's bits compile faster on CPU
        loss = lambda p, m, x: (m.replace(params=p)(x, key=key, train=True) ** 2).sum()
        ys, gs = self.variant(jax.value_and_grad(loss, argnums=(0, 2)))(scanned.params, scanned, x)
        yu, gu = self.variant(jax.value_and_grad(loss, argnums=(0, 2)))(unrolled.params, unrolled, x)
        assert_close(ys, yu)
        jax.tree.map(lambda a, b: assert_close(a, b), gs, gu)
        evaluate = lambda m, x: m(x)
        assert_close(self.variant(evaluate)(scanned, x), self.variant(evaluate)(unrolled, x), tol=1e-6)


def test_layer_i_is_initialised_from_split_key_i_and_dropped_with_fold_in_key_i():
    # DESIGN 1.2: the encoder's key starts SeedStream(key); its first key k feeds the Stacked
    # layers (layer i from split(k, num_layers)[i]), and the layers child (field 0) gets the
    # dropout key fold_in(key, 0), layer i fold_in(fold_in(key, 0), i).
    encoder = L.TransformerEncoder.of(2, D, NH, FF, 0.5)
    key = jax.random.key(3)
    params, state = encoder.init(key)
    assert jax.tree.leaves(state) == []
    block = encoder.block
    k, _ = SeedStream(key).fresh()
    one_by_one = jax.jit(lambda keys: [block.init(k)[0] for k in keys])(jax.random.split(k, 2))
    for i in range(2):
        jax.tree.map(np.testing.assert_array_equal, encoder.layer_params(params, i), one_by_one[i])
    x, dropout_key = jnp.asarray(inputs(4)), jax.random.key(9, impl="rbg")

    @jax.jit
    def by_hand(params, h):
        for i in range(2):
            h = block.apply(
                encoder.layer_params(params, i),
                block_state,
                h,
                key=jax.random.fold_in(jax.random.fold_in(dropout_key, 0), i),
                train=True,
            )[0]
        return h

    block_state = block.init(jax.random.key(0))[1]
    scanned = jax.jit(lambda p, x: encoder.apply(p, state, x, key=dropout_key, train=True)[0])(params, x)
    assert_close(scanned, by_hand(params, x))


def test_the_scanned_stack_traces_its_block_once_whatever_the_depth(monkeypatch):
    calls = []
    original = L.TransformerEncoderBlock.apply

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(L.TransformerEncoderBlock, "apply", counting)
    for depth in (2, 6):
        for scan, expected in ((True, 1), (False, depth)):
            encoder = L.TransformerEncoder.of(depth, D, NH, FF, scan=scan)
            params, state = jax.eval_shape(encoder.init, jax.random.key(0))
            _combinators._cached_output_shape.cache_clear()  # Stacked's shape check, cached per abstract input
            calls.clear()
            jax.jit(lambda p, x: encoder.apply(p, state, x)[0]).lower(
                params, jax.ShapeDtypeStruct((B, T, D), jnp.float32)
            )
            assert len(calls) == expected + 1  # and one shape check of the block by Stacked (jax.eval_shape)


class KVCacheTest(chex.TestCase):
    @chex.variants(with_jit=True)
    def test_incremental_decoding_equals_the_full_causal_forward_for_every_prefix(self):
        for scan, prefixes in ((True, (1, 3)), (False, (2,))):  # every prefix: tests/models/test_gpt.py
            encoder = L.TransformerEncoder.of(2, D, NH, FF, norm_first=scan, causal=True, scan=scan)
            params, state = encoder.init(jax.random.key(0))
            x = jnp.asarray(inputs(5))
            full = encoder.apply(params, state, x)[0]
            decode = self.variant(encoder.decode)
            for prefix in prefixes:
                y, cache = decode(params, encoder.init_cache(B, T), x[:, :prefix], 0)
                outs = [y]
                for pos in range(prefix, T):
                    y, cache = decode(params, cache, x[:, pos : pos + 1], pos)
                    outs.append(y)
                assert_close(jnp.concatenate(outs, axis=1), full)
            assert cache["key"].shape == (2, B, NH, T, D // NH)


def test_bad_input_and_config():
    with pytest.raises(ValueError, match=r"TransformerEncoderBlock: d_model=10 must be divisible by nhead=3"):
        L.TransformerEncoder.of(2, 10, 3)
    with pytest.raises(ValueError, match=r"TransformerEncoderBlock: d_model=10 must be divisible by nhead=3"):
        L.TransformerEncoderBlock(10, 3)
    with pytest.raises(ValueError, match=r"TransformerEncoder: num_layers must be a positive int, got 0"):
        L.TransformerEncoder.of(0, 8, 2)
    with pytest.raises(TypeError, match=r"TransformerEncoder: encoder_layer must be a tlean Layer, got int"):
        L.TransformerEncoder(2, 8, 2)
    with pytest.raises(ValueError, match=r"activation must be 'relu', 'gelu' or a hashable callable, got 'tanh'"):
        L.TransformerEncoderBlock(8, 2, activation="tanh")
    with pytest.raises(ValueError, match=r"dropout must be a probability in \[0, 1\), got 1.5"):
        L.TransformerEncoder.of(2, 8, 2, dropout=1.5)
    assert L.TransformerEncoderBlock(8, 2, activation=jnp.tanh) == L.TransformerEncoderBlock(8, 2, activation=jnp.tanh)
    encoder = L.TransformerEncoder.of(2, D, NH, FF)
    params, state = jax.eval_shape(encoder.init, jax.random.key(0))  # every error comes at trace time
    trace = lambda x, **kw: jax.eval_shape(lambda p, x: encoder.apply(p, state, x, **kw), params, x)
    with pytest.raises(
        ShapeError,
        match=r"seq.layers\[\*\] TransformerEncoderBlock\(d_model=8, nhead=2, dim_feedforward=16\): "
        r"expected input \[batch, seq, 8\] or \[seq, 8\], got shape \(2, 5, 6\)",
    ):
        trace(jnp.ones((B, T, 6)))
    with pytest.raises(TypeError, match=r"TransformerEncoderBlock\(.*\): expected a floating-point input, got int32"):
        trace(jnp.ones((B, T, D), jnp.int32))
    with pytest.raises(ShapeError, match=r"MultiheadAttention\(.*\): expected allow \[5, 5\]"):
        trace(jnp.ones((B, T, D)), allow=jnp.ones((4, 4), bool))
    with pytest.raises(TypeError, match=r"the meaning of mask= changed.*allow=.*src_mask="):
        trace(jnp.ones((B, T, D)), mask=jnp.ones((5, 5), bool))
    with pytest.raises(TypeError, match=r"the meaning of mask= changed"):
        L.TransformerEncoderBlock(D, NH, FF).apply(
            *jax.eval_shape(L.TransformerEncoderBlock(D, NH, FF).init, jax.random.key(0)),
            jnp.ones((B, T, D)),
            mask=jnp.ones((T, T), bool),
        )
    with pytest.raises(ValueError, match=r"KV-cache decoding needs a causal layer"):
        jax.eval_shape(encoder.decode, params, encoder.init_cache(B, T), jnp.ones((B, 1, D)), 0)
