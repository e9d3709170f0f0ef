"""Generation speed: greedy decoding of random GPT-2-small-shaped and Llama-shaped models,
``tlean.models.generate`` against transformers' ``generate`` on PyTorch (eager, CPU threads).

Both frameworks run the same weights: the tlean model is built with ``nn.run`` and written
with ``models.save_pretrained``, transformers loads that directory, and the table records
whether the greedy tokens agree. A prompt of 8 random tokens, batch 1 and 8, 128 new tokens
(``min_new_tokens`` keeps transformers from stopping at an end-of-text token; tlean's
``generate`` has no stop token unless given one). tlean's first call compiles the whole
loop (prefill and a ``lax.scan`` of decode steps) and is reported on its own; the
tokens-per-second figures are the median over rounds of later calls. ``--quick`` uses tiny
models, batch 2 and 8 new tokens.
"""

from __future__ import annotations

import statistics
import sys
import tempfile

import numpy as np

from benchmarks import _common, _timing

PROMPT = 8


def configs(quick: bool) -> dict:
    """Per family: the config fields (transformers' names, which tlean's configs mirror)."""
    if quick:
        return {
            "gpt2": dict(vocab_size=97, n_positions=64, n_embd=32, n_layer=2, n_head=2),
            "llama": dict(
                vocab_size=97,
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=2,
                max_position_embeddings=64,
            ),
        }
    return {
        "gpt2": dict(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12),
        "llama": dict(
            vocab_size=32000,
            hidden_size=768,
            intermediate_size=2048,
            num_hidden_layers=12,
            num_attention_heads=12,
            num_key_value_heads=4,
            max_position_embeddings=2048,
        ),
    }


def missing() -> str | None:
    """Why this benchmark cannot run (tlean.models.generate / gpt2 / llama or transformers absent), or None."""
    try:
        from tlean import models

        for name in ("generate", "gpt2", "llama", "save_pretrained"):
            getattr(models, name)
    except (ImportError, AttributeError) as err:
        return f"tlean.models lacks what it needs ({err})"
    try:
        import transformers  # noqa: F401
    except ImportError:
        return "transformers is not installed"
    return None


def _title(family: str, cfg: dict) -> str:
    if family == "gpt2":
        return f"GPT-2 shape (vocab {cfg['vocab_size']}, {cfg['n_layer']} layers, d {cfg['n_embd']})"
    return (
        f"Llama shape (vocab {cfg['vocab_size']}, {cfg['num_hidden_layers']} layers, d {cfg['hidden_size']}, "
        f"{cfg['num_attention_heads']} heads / {cfg['num_key_value_heads']} KV heads, SwiGLU {cfg['intermediate_size']})"
    )


def run(quick: bool, rounds: int, frameworks) -> list[_common.Table]:
    import jax
    import jax.numpy as jnp
    import torch
    import transformers

    from tlean import models, nn

    steps = 8 if quick else 128
    device = "cuda" if torch.cuda.is_available() else "cpu"  # transformers on the GPU when there is one
    rounds = 1 if quick else min(rounds, 3)
    tables = []
    for family, cfg in configs(quick).items():
        model = nn.run(0, getattr(models, family)(**cfg))
        with tempfile.TemporaryDirectory() as folder:
            models.save_pretrained(model, folder)
            hf = transformers.AutoModelForCausalLM.from_pretrained(folder).eval().to(device)
        rows, notes = [], []
        for batch in (2,) if quick else (1, 8):
            ids = np.random.default_rng(batch).integers(0, cfg["vocab_size"], (batch, PROMPT)).astype(np.int32)
            call_t = lambda: models.generate(model, jnp.asarray(ids), steps=steps)
            start = _timing.clock()
            ours = np.asarray(jax.block_until_ready(call_t()))
            first = _timing.clock() - start
            tids = torch.from_numpy(ids.astype(np.int64)).to(device)

            def call_hf():
                with torch.no_grad():
                    out = hf.generate(
                        tids,
                        attention_mask=torch.ones_like(tids),
                        max_new_tokens=steps,
                        min_new_tokens=steps,
                        do_sample=False,
                        pad_token_id=0,
                    )
                return out.cpu()  # waits for the GPU

            start = _timing.clock()
            theirs = call_hf().numpy()
            first_hf = _timing.clock() - start
            seconds_t, seconds_h = [], []
            for r in range(rounds):
                for name in ("t", "h") if r % 2 == 0 else ("h", "t"):
                    start = _timing.clock()
                    if name == "t":
                        jax.block_until_ready(call_t())
                        seconds_t.append(_timing.clock() - start)
                    else:
                        call_hf()
                        seconds_h.append(_timing.clock() - start)
            rate_t = batch * steps / statistics.median(seconds_t)
            rate_h = batch * steps / statistics.median(seconds_h)
            same = ours.shape == theirs.shape and bool((ours == theirs).all())
            rows.append(_common.Row(f"batch {batch}", rate_t, rate_t / rate_h, first, None))
            rows[-1].extra = {"torch": rate_h, "torch_first": first_hf, "same": same}
            print(
                f"[generate] {family} batch {batch}: tlean {rate_t:.1f} tokens/s (first call {first:.1f} s), "
                f"transformers {rate_h:.1f} tokens/s, same tokens: {same}",
                file=sys.stderr,
            )
        where = torch.cuda.get_device_name() if device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
        notes.append(
            f"{steps} new tokens after a {PROMPT}-token prompt; median of {rounds} round(s); tlean on "
            f"{jax.devices()[0].device_kind}; PyTorch {torch.__version__} on {where}, transformers "
            f"{transformers.__version__}."
        )
        tables.append(
            _common.Table(
                f"generate_{family}",
                f"Greedy generation, {_title(family, cfg)}",
                "tokens/s",
                rows,
                notes,
                kind="generate",
            )
        )
    return tables
