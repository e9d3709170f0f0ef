"""models.generate against transformers' generate (the oracle): token-identical greedy output for 32 new
tokens, one prompt and a left-padded batch of three, for Llama and GPT-2; eos handling; top-k / top-p
sampling properties; one compilation for new values; bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from tests.models.test_llama import MHA
from tlean import nn
from tlean.models import _generate, from_pretrained, generate

V, STEPS = 64, 32
LLAMA = MHA  # test_llama's untied multi-head config: the same transformers model, built once
GPT2 = dict(
    vocab_size=V,
    n_positions=48,
    n_embd=16,
    n_layer=2,
    n_head=2,
    initializer_range=0.3,
    bos_token_id=None,
    eos_token_id=None,
)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """transformers on one intra-op thread: on a small model torch's thread pool mostly spins (10-100x the CPU)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def pair(request, hf_dir_factory):
    """``(tlean Model, transformers model)`` loaded from the same saved directory."""
    import transformers

    if request.param == "llama":
        path, hf = hf_dir_factory(transformers.LlamaConfig, transformers.LlamaForCausalLM, **LLAMA)
    else:
        path, hf = hf_dir_factory(transformers.GPT2Config, transformers.GPT2LMHeadModel, **GPT2)
    return from_pretrained(path), hf


def prompts(seed=0):
    """Three prompts of 9, 6 and 3 tokens, left-padded with 0 to 9."""
    ids = np.random.default_rng(seed).integers(1, V, (3, 9))
    mask = np.ones((3, 9), np.int64)
    mask[1, :3] = 0
    mask[2, :6] = 0
    return np.where(mask == 1, ids, 0), mask


def hf_greedy(hf, ids, mask=None, **kw):
    with torch.no_grad():
        out = hf.generate(
            torch.from_numpy(ids),
            attention_mask=None if mask is None else torch.from_numpy(mask),
            max_new_tokens=STEPS,
            do_sample=False,
            pad_token_id=0,
            **kw,
        )
    return out.numpy()


def test_greedy_output_equals_transformers_for_one_prompt_and_a_padded_batch(pair):
    model, hf = pair
    ids, mask = prompts()
    single = np.asarray(generate(model, ids[0], steps=STEPS))  # unbatched in, unbatched out
    np.testing.assert_array_equal(single, hf_greedy(hf, ids[:1])[0])
    batch = np.asarray(generate(model, ids, steps=STEPS, attention_mask=mask))
    assert batch.shape == (3, 9 + STEPS) and batch.dtype == np.int32
    np.testing.assert_array_equal(batch, hf_greedy(hf, ids, mask))
    assert len(set(batch[0, 9:].tolist())) > 5  # a varied continuation, not one repeated token
    np.testing.assert_array_equal(batch[0], single)  # row 0 is unpadded: the mask changes nothing there


def test_finished_rows_keep_emitting_eos_as_transformers_pads_them(pair):
    model, hf = pair
    ids, mask = prompts()
    free = np.asarray(generate(model, ids, steps=STEPS, attention_mask=mask))
    before = _generate._run._cache_size()
    eos = int(free[0, 12])  # a token row 0 emits early (rows that never emit it run on)
    out = np.asarray(generate(model, ids, steps=STEPS, attention_mask=mask, eos_token_id=eos))
    want = hf_greedy(hf, ids, mask, eos_token_id=eos)  # pad_token_id=0 after eos; stops once all rows are done
    for row, ref in zip(out, want):
        ends = np.flatnonzero(row[9:] == eos)
        stop = 9 + (ends[0] + 1 if ends.size else STEPS)
        np.testing.assert_array_equal(row[:stop], ref[:stop])
        assert np.all(row[stop:] == eos) and np.all(ref[stop:] == 0)
    assert np.all(out[0, 13:] == eos) and np.array_equal(out[0, :13], free[0, :13])
    assert _generate._run._cache_size() == before  # one eos id or none: the same compiled loop


def test_sampling_properties_and_one_compilation(pair):
    """A key samples (reproducibly); top_k=1 and a tiny top_p leave only the argmax: greedy.
    New keys, temperatures, top_k and top_p values reuse the compiled loop."""
    model, _ = pair
    ids, mask = prompts(1)
    greedy = np.asarray(generate(model, ids, steps=STEPS, attention_mask=mask))
    before = _generate._run._cache_size()
    run = lambda **kw: np.asarray(generate(model, ids, steps=STEPS, attention_mask=mask, **kw))
    a, b = run(key=jax.random.key(0)), run(key=jax.random.key(0))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, greedy)
    assert not np.array_equal(a, run(key=jax.random.key(1), temperature=0.8))
    np.testing.assert_array_equal(run(key=jax.random.key(2), top_k=1), greedy)
    np.testing.assert_array_equal(run(key=jax.random.key(3), top_p=1e-6, temperature=2.0), greedy)
    np.testing.assert_array_equal(run(key=jax.random.key(4), temperature=0.0), greedy)
    assert _generate._run._cache_size() == before


def test_top_k_and_top_p_sample_only_from_their_sets():
    """``_choose`` against sets computed here: the top-k tokens, then the smallest most likely set whose
    mass (after temperature and top-k) reaches top_p, as transformers' warpers."""
    logits = jnp.asarray(np.random.default_rng(0).normal(size=(2, 12)) * 2, jnp.float32)
    keys = jax.random.split(jax.random.key(0), 400)
    draw = jax.jit(jax.vmap(_generate._choose, in_axes=(None, 0, None, None, None)))
    for temperature, top_k, top_p in ((1.0, 12, 0.6), (0.7, 5, 1.0), (1.5, 4, 0.8)):
        samples = np.asarray(draw(logits, keys, jnp.float32(temperature), jnp.int32(top_k), jnp.float32(top_p)))
        for row in range(2):
            scaled = np.asarray(logits[row], np.float64) / temperature
            order = np.argsort(-scaled)[:top_k]
            probs = np.exp(scaled[order] - scaled[order].max())
            probs /= probs.sum()
            kept = int(np.searchsorted(np.cumsum(probs), top_p - 1e-9)) + 1
            seen = set(samples[:, row].tolist())
            assert seen <= set(order[:kept].tolist())
            likely = probs[:kept] / probs[:kept].sum() > 0.03
            assert set(order[:kept][likely].tolist()) <= seen


def test_bad_input(pair):
    model, _ = pair
    ids = jnp.zeros((2, 20), jnp.int32)
    with pytest.raises(
        ValueError,
        match=r"generate: the prompt's 20 tokens \+ steps=29 = 49 exceed the model's "
        r"context length 48",
    ):
        generate(model, ids, steps=29)
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"generate: top_p must be in \(0, 1\] or None, got"):
            generate(model, ids, steps=2, key=jax.random.key(0), top_p=bad)
    with pytest.raises(ValueError, match=r"generate: top_k must be an int >= 1 or None, got 0"):
        generate(model, ids, steps=2, top_k=0)
    with pytest.raises(ValueError, match=r"generate: temperature must be >= 0, got -1.0"):
        generate(model, ids, steps=2, temperature=-1.0)
    with pytest.raises(ValueError, match=r"generate: steps must be an int >= 0, got 2.0"):
        generate(model, ids, steps=2.0)
    with pytest.raises(TypeError, match=r"generate: ids must be integer token ids, got float32"):
        generate(model, jnp.zeros((2, 3)), steps=2)
    with pytest.raises(ValueError, match=r"generate: the prompts must be left-padded"):
        generate(model, ids, steps=2, attention_mask=jnp.ones((2, 20)).at[0, -1].set(0))
    with pytest.raises(
        ValueError, match=r"generate: attention_mask must have the shape of ids \(2, 20\), got \(2, 3\)"
    ):
        generate(model, ids, steps=2, attention_mask=jnp.ones((2, 3)))
    with pytest.raises(ValueError, match=r"generate: eos_token_id must be a token id"):
        generate(model, ids, steps=2, eos_token_id="</s>")
    with pytest.raises(TypeError, match=r"generate needs a Model of a decoder with the decode protocol"):
        generate(nn.run(0, nn.Linear(2, 2)), ids, steps=2)
    with pytest.raises(TypeError, match=r"missing 1 required keyword-only argument: 'steps'"):
        generate(model, ids)
    np.testing.assert_array_equal(generate(model, ids, steps=0), ids)
