"""Llama against transformers' LlamaForCausalLM (the oracle): logits with and without a padding mask,
gradients of every parameter (the tied embedding included), grouped-query attention, Llama-3 RoPE
scaling, KV-cache decoding, from_pretrained / save_pretrained, the config (both RoPE spellings), the
reference initialisers and bad input."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from tests.torch_utils import n
from tlean import ShapeError, nn
from tlean.interop import to_torch_state_dict
from tlean.layers import RoPE, RopeScaling
from tlean.models import LlamaConfig, from_pretrained, llama, save_pretrained
from tlean.models._llama import Llama

V = 64
LLAMA3 = {
    "rope_type": "llama3",
    "rope_theta": 500000.0,
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 16,
}
#: grouped-query (4 query heads, 2 key/value heads), Llama-3.1 RoPE scaling, tied embeddings
GQA = dict(
    vocab_size=V,
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
    initializer_range=0.3,
    rope_parameters=LLAMA3,
    tie_word_embeddings=True,
    bos_token_id=None,
    eos_token_id=None,
    pad_token_id=None,
)
#: plain multi-head attention with head_dim != hidden / heads, biases, untied head, a padding_idx row
MHA = dict(
    vocab_size=V,
    hidden_size=32,
    intermediate_size=40,
    num_hidden_layers=2,
    num_attention_heads=4,
    head_dim=12,
    max_position_embeddings=48,
    initializer_range=0.3,
    rms_norm_eps=1e-5,
    rope_parameters={"rope_type": "default", "rope_theta": 1000.0},
    attention_bias=True,
    mlp_bias=True,
    tie_word_embeddings=False,
    bos_token_id=None,
    eos_token_id=None,
    pad_token_id=0,
)
CONFIGS = {"gqa-llama3-tied": GQA, "mha-bias-untied": MHA}


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """transformers on one intra-op thread: on a small model torch's thread pool mostly spins (10-100x the CPU)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def pair(request, hf_dir_factory):
    """``(tlean Model, transformers model)`` loaded from the same saved directory."""
    import transformers

    path, hf = hf_dir_factory(transformers.LlamaConfig, transformers.LlamaForCausalLM, **CONFIGS[request.param])
    return from_pretrained(path), hf


def ids_and_mask(batch=3, seq=7, seed=0):
    ids = np.random.default_rng(seed).integers(1, V, (batch, seq))
    mask = np.ones((batch, seq), np.int64)
    mask[1, :2] = 0  # left padding of different lengths
    mask[2, :5] = 0
    return np.where(mask == 1, ids, 0), mask


forward = jax.jit(lambda m, x: m(x))


@jax.jit
def logits_and_grads(model, ids, mask, positions, weights):
    """The logits with a padding mask and positions, and the gradient of ``sum(logits * weights)``."""

    def loss(m):
        logits = m(ids, attention_mask=mask, position_ids=positions)
        return jnp.sum(logits * weights), logits

    grads, logits = jax.grad(loss, has_aux=True)(model)
    return logits, grads


def assert_close_to_scale(got, want, rel=1e-5):
    """max |got - want| <= rel * max |want| (the issue's parity criterion)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    err, scale = np.abs(got - want).max(), np.abs(want).max()
    assert err <= rel * scale, f"max abs diff {err:.3g} > {rel} * scale {scale:.3g}"


def test_logits_and_gradients_equal_transformers_with_and_without_left_padding(pair):
    """Logits without a mask, with left padding (transformers' default positions, then generate's
    shifted ones), and the gradient of every parameter (the tied embedding's summed)."""
    model, hf = pair
    ids, mask = ids_and_mask()
    real = mask.astype(bool)
    counted = np.broadcast_to(np.arange(ids.shape[1]), ids.shape)  # transformers' forward default
    shifted = np.maximum(np.cumsum(mask, axis=1) - 1, 0)  # what generate passes with left padding
    weights = np.random.default_rng(2).normal(size=(*ids.shape, V)).astype(np.float32) * mask[..., None]
    with torch.no_grad():
        plain = n(hf(torch.from_numpy(ids)).logits)
        moved = n(
            hf(
                torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), position_ids=torch.from_numpy(shifted)
            ).logits
        )
    hf.zero_grad()
    padded = hf(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits
    torch.sum(padded * torch.from_numpy(weights)).backward()
    assert_close_to_scale(forward(model, ids), plain)
    got, grads = logits_and_grads(model, ids, mask, counted, weights)
    assert_close_to_scale(np.asarray(got)[real], n(padded)[real])  # padded query rows are undefined in transformers
    assert np.abs(np.asarray(got)[real] - plain[real]).max() > 1e-3  # the mask matters
    assert_close_to_scale(np.asarray(logits_and_grads(model, ids, mask, shifted, weights)[0])[real], moved[real])

    got = to_torch_state_dict(grads)
    want = {name: n(p.grad) for name, p in hf.named_parameters()}  # a tied weight once, its gradient summed
    assert set(want) <= set(got)
    for name, g in want.items():
        assert_close_to_scale(got[name], g, rel=2e-5)
    if hf.config.tie_word_embeddings:  # the alias is the same leaf: the same summed gradient
        np.testing.assert_array_equal(got["lm_head.weight"], got["model.embed_tokens.weight"])
        assert "lm_head.weight" not in want
    else:
        assert np.all(got["model.embed_tokens.weight"][0] == 0)  # pad_token_id: torch's padding_idx row


def test_decoding_with_the_cache_equals_the_full_forward(hf_dir_factory):
    """Prefill then one token at a time (start_pos traced under jit), with a left-padding mask over
    the cache slots and shifted positions, as generate decodes (test_generate compares the
    unpadded path and the other config with transformers' generate)."""
    import transformers

    model = from_pretrained(hf_dir_factory(transformers.LlamaConfig, transformers.LlamaForCausalLM, **GQA)[0])
    ids, mask = ids_and_mask(seed=3)
    layer, cache_len = model.layer, 9
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
    slots = np.concatenate([mask, np.ones((3, cache_len - 7), np.int64)], axis=1)
    full = np.asarray(logits_and_grads(model, ids, mask, positions, np.zeros((3, 7, V), np.float32))[0])
    decode = jax.jit(lambda p, c, x, s, pos: layer.decode(p, c, x, s, attention_mask=slots, position_ids=pos))
    logits, cache = decode(model.params, layer.init_cache(3, cache_len), ids[:, :4], 0, positions[:, :4])
    steps = [logits]
    for t in range(4, 7):
        logits, cache = decode(model.params, cache, ids[:, t : t + 1], jnp.int32(t), positions[:, t : t + 1])
        steps.append(logits)
    real = mask.astype(bool)
    assert_close_to_scale(np.concatenate(steps, axis=1)[real], full[real])
    assert cache["key"].shape == (2, 3, 2, cache_len, 8)


def test_rope_frequencies_equal_transformers_rotary_embedding():
    from transformers import LlamaConfig as HFConfig
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    linear = {"rope_type": "linear", "rope_theta": 10000.0, "factor": 4.0}
    for rope in (LLAMA3, linear, {"rope_type": "default", "rope_theta": 1234.0}):
        hf_config = HFConfig(hidden_size=64, num_attention_heads=2, max_position_embeddings=64, rope_parameters=rope)
        ours = LlamaConfig.from_hf(hf_config.to_dict()).rope()
        np.testing.assert_allclose(ours.inverse_frequencies(), n(LlamaRotaryEmbedding(hf_config).inv_freq), rtol=2e-6)
    scaled = RoPE(32, 64, interleaved=False, scaling=RopeScaling("llama3", 8.0, 1.0, 4.0, 16))
    assert not np.allclose(scaled.inverse_frequencies(), RoPE(32, 64, interleaved=False).inverse_frequencies())


def test_from_pretrained_and_save_pretrained_round_trip(pair, tmp_path):
    import transformers

    model, hf = pair
    save_pretrained(model, tmp_path)
    back = transformers.LlamaForCausalLM.from_pretrained(tmp_path).eval()
    ids, _ = ids_and_mask(seed=4)
    with torch.no_grad():
        np.testing.assert_array_equal(n(back(torch.from_numpy(ids)).logits), n(hf(torch.from_numpy(ids)).logits))
    assert back.config.rope_parameters == hf.config.rope_parameters
    assert back.config.num_key_value_heads == hf.config.num_key_value_heads
    assert from_pretrained(tmp_path).layer == model.layer


def test_builder_names_shapes_and_init_follow_transformers():
    import transformers

    hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(**MHA))
    config = LlamaConfig.from_hf(hf.config.to_dict())
    model = nn.run(0, llama(config))
    ours = to_torch_state_dict(model)
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in hf.state_dict().items()}
    params = model.params["model"]["layers"]
    assert abs(float(jnp.std(params["mlp"]["up_proj"]["weight"])) - 0.3) < 0.03  # N(0, initializer_range)
    assert abs(float(jnp.std(model.params["lm_head"]["weight"])) - 0.3) < 0.03
    assert float(jnp.abs(params["self_attn"]["q_proj"]["bias"]).max()) == 0.0
    assert np.all(np.asarray(params["input_layernorm"]["weight"]) == 1)
    assert np.all(np.asarray(model.params["model"]["embed_tokens"]["weight"][0]) == 0)  # pad_token_id's row
    tied = jax.eval_shape(lambda: nn.run(0, llama(config, tie_word_embeddings=True)))
    assert not jax.tree.leaves(tied.params.get("lm_head", {}))
    assert [leaf.aliases for leaf in tied.named_leaves() if leaf.name == "model.embed_tokens.weight"] == [
        ("lm_head.weight",)
    ]
    assert model.layer.context_length == 48


def test_config_reads_both_rope_spellings_and_writes_transformers_5():
    from transformers import LlamaConfig as HFConfig

    old = {
        "model_type": "llama",
        "hidden_size": 64,
        "num_attention_heads": 4,
        "num_key_value_heads": 1,
        "rope_theta": 500000.0,
        "max_position_embeddings": 128,
        "eos_token_id": [5, 6],
        "rope_scaling": {"type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0},
        "torch_dtype": "bfloat16",
        "use_cache": True,
    }
    cfg = LlamaConfig.from_hf(old)
    assert cfg.rope_theta == 500000.0 and cfg.eos_token_id == (5, 6) and cfg.head_dim == 16
    assert cfg.rope_scaling == RopeScaling("llama3", 8.0, 1.0, 4.0, original_max_position_embeddings=128)
    cfg = dataclasses.replace(cfg, rope_scaling=RopeScaling("llama3", 8.0, 1.0, 4.0, 32))
    new = cfg.to_hf()
    assert new["rope_parameters"]["rope_type"] == "llama3" and "rope_theta" not in new
    hf = HFConfig(**new)
    assert LlamaConfig.from_hf(hf.to_dict()) == cfg
    assert hf.rope_parameters["original_max_position_embeddings"] == 32 and hf.num_key_value_heads == 1
    linear = LlamaConfig(rope_scaling={"rope_type": "linear", "factor": 2.0}).rope_scaling
    assert linear == RopeScaling("linear", 2.0, original_max_position_embeddings=2048)
    assert repr(LlamaConfig(hidden_size=64)) == "LlamaConfig(hidden_size=64)"


def test_unsupported_config_values_are_errors_naming_the_field():
    with pytest.raises(ValueError, match=r"rope_parameters\['rope_type'\]='yarn' is not supported"):
        LlamaConfig.from_hf({"rope_parameters": {"rope_type": "yarn", "factor": 2.0, "rope_theta": 1e4}})
    with pytest.raises(ValueError, match=r"partial_rotary_factor=0.5 is not supported"):
        LlamaConfig.from_hf({"partial_rotary_factor": 0.5})
    with pytest.raises(ValueError, match=r"LlamaConfig.from_hf: model_type must be 'llama', got 'gpt2'"):
        LlamaConfig.from_hf({"model_type": "gpt2"})
    with pytest.raises(ValueError, match=r"LlamaConfig: hidden_act must be one of .* got 'prelu'"):
        LlamaConfig(hidden_act="prelu")
    with pytest.raises(ValueError, match=r"LlamaConfig: attention_dropout=0.1 is not supported"):
        LlamaConfig(attention_dropout=0.1)
    with pytest.raises(ValueError, match=r"num_attention_heads=4 must be divisible by num_key_value_heads=3"):
        LlamaConfig(hidden_size=16, num_attention_heads=4, num_key_value_heads=3)
    with pytest.raises(ValueError, match=r"rope_scaling of rope_type 'llama3' lacks \['low_freq_factor'\]"):
        LlamaConfig(rope_scaling={"rope_type": "llama3", "factor": 8.0, "high_freq_factor": 4.0})
    with pytest.raises(TypeError, match=r"Llama: config must be a LlamaConfig, got dict"):
        Llama({"hidden_size": 8})
    with pytest.raises(TypeError, match=r"llama: unknown argument\(s\) \['n_embd'\]; LlamaConfig fields are"):
        llama(n_embd=8)
    with pytest.raises(ValueError, match=r"RopeScaling: rope_type must be one of \['linear', 'llama3'\], got 'yarn'"):
        RopeScaling("yarn", 2.0)
    with pytest.raises(ValueError, match=r"RopeScaling: high_freq_factor=1.0 must exceed low_freq_factor=1.0"):
        RopeScaling("llama3", 8.0, 1.0, 1.0)
    with pytest.raises(TypeError, match=r"RoPE: scaling must be a tlean.layers.RopeScaling or None, got dict"):
        RoPE(8, scaling={"rope_type": "linear"})


def test_bad_input():
    layer = Llama(
        LlamaConfig(
            vocab_size=V,
            hidden_size=16,
            intermediate_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=8,
        )
    )
    params, _ = jax.eval_shape(layer.init, jax.random.key(0))

    def trace(ids, **kw):
        return jax.eval_shape(lambda p: layer.apply(p, {}, ids, **kw), params)

    with pytest.raises(
        ShapeError,
        match=r"expected ids \[batch, seq\] with at most 8 positions "
        r"\(max_position_embeddings=8\), got shape \(1, 9\)",
    ):
        trace(jnp.zeros((1, 9), jnp.int32))
    with pytest.raises(TypeError, match=r"LlamaModel\(.*\): expected integer token ids, got float32"):
        trace(jnp.zeros((1, 3)))
    with pytest.raises(ShapeError, match=r"expected attention_mask \[batch, seq\], got shape \(1, 4\)"):
        trace(jnp.zeros((1, 3), jnp.int32), attention_mask=jnp.ones((1, 4)))
    with pytest.raises(ShapeError, match=r"expected position_ids \[2\|1, 3\], got shape \(3,\)"):
        trace(jnp.zeros((2, 3), jnp.int32), position_ids=jnp.arange(3))
    cache = layer.init_cache(2, 4)
    assert cache["key"].shape == (1, 2, 2, 4, 8)
    with pytest.raises(ShapeError, match=r"expected cache\['key'\] \[1, 3, 2, max_len, 8\] \(init_cache\)"):
        layer.decode(params, cache, jnp.zeros((3, 1), jnp.int32), 0)
    with pytest.raises(ShapeError, match=r"at most 1 new positions at start_pos=3 \(cache max_len=4\)"):
        jax.eval_shape(lambda p: layer.decode(p, cache, jnp.zeros((2, 2), jnp.int32), 3), params)
    with pytest.raises(ShapeError, match=r"expected attention_mask \[batch, max_len=4\], got shape \(2, 2\)"):
        jax.eval_shape(
            lambda p: layer.decode(p, cache, jnp.zeros((2, 2), jnp.int32), 0, attention_mask=jnp.ones((2, 2))), params
        )
    assert dataclasses.replace(layer.config, vocab_size=65) != layer.config
