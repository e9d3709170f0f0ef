"""The tiny GPT: PyTorch parity of the logits, KV-cache decoding equals the full forward for every
prefix, generate equals a naive loop and compiles once, the builder's keying, bad input."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from tests.torch_utils import load, n
from tlean import ShapeError, nn
from tlean.models import GPT, _generate, generate, gpt
from tlean.seed import SeedStream

V, M, D, H, NL = 11, 8, 8, 2, 2


class TorchGPT(torch.nn.Module):
    """The same model written with torch.nn modules of the same names."""

    def __init__(self):
        super().__init__()
        self.tok_emb = torch.nn.Embedding(V, D)
        self.pos_emb = torch.nn.Embedding(M, D)
        layer = torch.nn.TransformerEncoderLayer(D, H, 4 * D, 0.0, "gelu", batch_first=True, norm_first=True)
        self.encoder = torch.nn.TransformerEncoder(layer, NL, enable_nested_tensor=False)
        self.ln_f = torch.nn.LayerNorm(D)
        self.lm_head = torch.nn.Linear(D, V, bias=False)

    def forward(self, ids):
        seq = ids.shape[1]
        h = self.tok_emb(ids) + self.pos_emb(torch.arange(seq))
        h = self.encoder(h, mask=torch.ones(seq, seq, dtype=torch.bool).triu(1), is_causal=True)
        return self.lm_head(self.ln_f(h))


def tiny(seed=0, **options):
    return nn.run(seed, gpt(V, M, D, H, NL, **options))


def ids(seed=0, shape=(2, 6)):
    return np.random.default_rng(seed).integers(0, V, shape).astype(np.int32)


class GPTTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_logits_match_a_torch_model_with_the_same_names(self):
        torch.manual_seed(0)
        tm = TorchGPT().eval()
        for i, block in enumerate(tm.encoder.layers):  # torch deep-copies one layer: make them differ
            g = torch.Generator().manual_seed(i)
            with torch.no_grad():
                for p in block.parameters():
                    p.add_(0.2 * torch.randn(p.shape, generator=g))
        model = load(tiny(), tm)
        x = ids()
        np.testing.assert_allclose(
            self.variant(lambda m, x: m(x))(model, x), n(tm(torch.from_numpy(x).long())), rtol=1e-4, atol=1e-4
        )

    @chex.variants(with_jit=True)
    def test_incremental_decoding_equals_the_full_forward_for_every_prefix(self):
        model = tiny(dropout=0.2)
        layer, x = model.layer, jnp.asarray(ids(1, (2, 5)))
        full = model(x)
        decode = self.variant(layer.decode)
        for prefix in range(1, x.shape[1] + 1):
            logits, cache = decode(model.params, layer.init_cache(2, M), x[:, :prefix], 0)
            steps = [logits]
            for pos in range(prefix, x.shape[1]):
                logits, cache = decode(model.params, cache, x[:, pos : pos + 1], pos)
                steps.append(logits)
            np.testing.assert_allclose(jnp.concatenate(steps, axis=1), full, rtol=1e-5, atol=1e-5)


forward = jax.jit(lambda m, x: m(x))


def naive_generate(model, prompt, steps, key, temperature):
    """Re-run the full forward on the growing sequence; sample token t with split(key, steps)[t].

    The sequence sits in a fixed buffer (one compilation): causal logits at position p do
    not depend on the padding after it.
    """
    length = prompt.shape[1]
    out = jnp.zeros((prompt.shape[0], length + steps), jnp.int32).at[:, :length].set(prompt)
    for t, k in enumerate(jax.random.split(key, steps)):
        logits = forward(model, out)[:, length + t - 1]
        token = jnp.argmax(logits, -1) if temperature == 0 else jax.random.categorical(k, logits / temperature)
        out = out.at[:, length + t].set(token)
    return out


def test_generate_equals_the_naive_loop_greedy_and_sampled():
    model = tiny(3)
    prompt, key = ids(2, (3, 2)), jax.random.key(5)
    for temperature in (0.0, 1.5):
        got = generate(model, prompt, steps=5, key=key, temperature=temperature)
        assert got.shape == (3, 7) and got.dtype == jnp.int32
        np.testing.assert_array_equal(got, naive_generate(model, prompt, 5, key, temperature))
        np.testing.assert_array_equal(got[:, :2], prompt)
    single = generate(model, prompt[0], steps=5)  # unbatched in, unbatched out; rows decode independently
    np.testing.assert_array_equal(single, generate(model, prompt, steps=5, key=key, temperature=0.0)[0])
    np.testing.assert_array_equal(generate(model, prompt, steps=0, key=key), prompt)


def test_generate_compiles_once_and_traces_decode_twice_whatever_the_steps(monkeypatch):
    traces = []
    original = GPT.decode

    def counting(self, *args, **kwargs):
        traces.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(GPT, "decode", counting)
    model = tiny(4, activation="relu")  # a config no other test compiled
    before = _generate._run._cache_size()
    generate(model, ids(3, (2, 2)), steps=5, key=jax.random.key(0), temperature=1.0)
    assert len(traces) == 2  # the prefill and the scan body: not one per token
    generate(model, ids(4, (2, 2)), steps=5, key=jax.random.key(1), temperature=0.7, top_k=3, top_p=0.9)
    assert len(traces) == 2 and _generate._run._cache_size() == before + 1  # new values: no retrace


def test_the_builder_draws_one_key_and_names_follow_pytorch():
    model = tiny(7)
    expected, _ = GPT(V, M, D, H, NL).init(SeedStream(7).fresh()[0])
    jax.tree.map(np.testing.assert_array_equal, model.params, expected)
    names = set(model.named_parameters())
    assert {
        "tok_emb.weight",
        "pos_emb.weight",
        "ln_f.weight",
        "lm_head.weight",
        "encoder.layers.*.self_attn.in_proj_weight",
    } <= names
    assert model.params["encoder"]["layers"]["linear1"]["weight"].shape == (NL, 4 * D, D)


def test_bad_input():
    model = tiny()
    with pytest.raises(
        ShapeError,
        match=r"GPT\(.*\): expected ids \[batch, seq\] with at most 8 positions "
        r"\(max_len=8\), got shape \(2, 9\)",
    ):
        model(jnp.zeros((2, 9), jnp.int32))
    with pytest.raises(TypeError, match=r"GPT\(.*\): expected integer token ids, got float32"):
        model(jnp.zeros((2, 3)))
    with pytest.raises(
        ValueError,
        match=r"generate: the prompt's 3 tokens \+ steps=6 = 9 exceed the model's context "
        r"length 8",
    ):
        generate(model, jnp.zeros((2, 3), jnp.int32), steps=6, key=jax.random.key(0))
    with pytest.raises(TypeError, match=r"generate: ids must be integer token ids, got float32"):
        generate(model, jnp.zeros((2, 3)), steps=2, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"generate: temperature must be >= 0, got -1.0"):
        generate(model, jnp.zeros((2, 3), jnp.int32), steps=2, key=jax.random.key(0), temperature=-1.0)
    with pytest.raises(TypeError, match=r"generate needs a Model of a decoder"):
        generate(nn.run(0, nn.Linear(2, 2)), jnp.zeros((2, 3), jnp.int32), steps=2, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"GPT\(.*\): decode takes no attention_mask"):
        generate(model, jnp.ones((2, 3), jnp.int32), steps=2, attention_mask=jnp.ones((2, 3)))
    with pytest.raises(ValueError, match=r"GPT\(.*\): init_cache max_len=9 exceeds the model's max_len=8"):
        model.layer.init_cache(2, 9)
    with pytest.raises(ValueError, match=r"GPT: d_model=10 must be divisible by nhead=4"):
        GPT(V, M, d_model=10, nhead=4)


def test_padding_mask_and_position_ids_follow_the_decode_protocol():
    """A left-padded row with shifted positions gives the logits of the same tokens unpadded; decode
    takes position_ids too."""
    model = tiny(8)
    x = ids(6, (2, 5))
    mask = np.array([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]])
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
    padded = model(jnp.asarray(x), attention_mask=jnp.asarray(mask), position_ids=jnp.asarray(positions))
    alone = model(jnp.asarray(x[1:, 2:]))
    np.testing.assert_allclose(padded[1, 2:], alone[0], rtol=1e-5, atol=1e-5)
    shifted = jnp.asarray([[2, 3, 4]])
    logits, _ = model.layer.decode(
        model.params, model.layer.init_cache(1, 5), jnp.asarray(x[1:, 2:]), 0, position_ids=shifted
    )
    np.testing.assert_allclose(logits, model(jnp.asarray(x[1:, 2:]), position_ids=shifted), rtol=1e-5, atol=1e-5)
    assert np.abs(logits - alone).max() > 1e-3  # the positions matter
    assert model.layer.context_length == M
