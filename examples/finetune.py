"""Example 5: fine-tune a causal language model, from a local Hugging Face directory or from scratch.

    python -m examples.train --config finetune                                   # tiny GPT-2 from scratch
    python -m examples.train --config finetune --from_pretrained DIR --lora_rank 8

``--from_pretrained DIR`` reads any local directory of a causal-LM family tlean has
(``config.json`` with ``model_type`` gpt2 or llama, and its weights) with
:func:`tlean.models.from_pretrained`; nothing is downloaded. Without it a tiny model of
``--family`` (gpt2 by default) is built from ``--seed``.

The text is the char_gpt corpus (docstrings of the standard library), tokenised
bytewise: no tokenizer is read or downloaded, so token ``b`` is the byte ``b``. A model
whose vocabulary has 256 ids or more sees the bytes as ids 0-255 (for a real GPT-2 these
are its byte-level tokens, not its merged ones); a smaller vocabulary receives
``byte % vocab_size``, a lossy folding that keeps the example running on any checkpoint.

``--lora_rank N`` (N > 0) wraps the Linears that ``--lora_targets`` names with LoRA
adapters (:func:`tlean.nn.lora`: the base is frozen, the optimiser keeps state for the
adapters only); ``0`` fine-tunes every parameter. The default targets are the family's
attention input projections: ``.*c_attn`` for gpt2 and ``.*(q_proj|v_proj)`` for llama.
GPT-2's ``c_attn`` is transformers' ``Conv1D`` (weight ``[in, out]``), which
:func:`tlean.nn.lora` adapts only where it supports Conv1D; otherwise the run stops with
an error saying so (use a llama model or ``--lora_rank 0``).

After training it prints the held-out loss before and after, a greedy continuation of
``--prompt`` (:func:`tlean.models.generate`), and writes the model (LoRA merged back with
:func:`tlean.nn.lora.merge`) with :func:`tlean.models.save_pretrained` to
``<out_dir>/hf_model``, which transformers' ``from_pretrained`` reads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from configs import Finetune
from examples import _common
from examples.char_gpt import corpus, windows
from tlean import Model, models, nn, train

#: The causal-LM families this example fine-tunes, and their default LoRA targets (regex over Linear paths).
LORA_TARGETS = {"gpt2": r".*c_attn", "llama": r".*(q_proj|v_proj)"}


def check_directory(path: str | Path) -> str:
    """The ``model_type`` of a local Hugging Face directory, or a ``ValueError`` unless it is gpt2 or llama."""
    config_file = Path(path) / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(
            f"finetune: --from_pretrained {str(path)!r} has no config.json (a local Hugging Face "
            f"directory is needed; nothing is downloaded)"
        )
    model_type = json.loads(config_file.read_text()).get("model_type")
    if model_type not in LORA_TARGETS:
        raise ValueError(
            f"finetune: --from_pretrained {str(path)!r} holds a {model_type!r} model; this example "
            f"fine-tunes causal language models of the families {sorted(LORA_TARGETS)}"
        )
    return model_type


def build(config: Finetune) -> tuple[Model, str]:
    """``(model, family)``: the directory's model, or a tiny one of ``config.family`` built from ``config.seed``."""
    if config.from_pretrained is not None:
        family = check_directory(config.from_pretrained)
        return models.from_pretrained(config.from_pretrained), family
    if config.family == "gpt2":
        builder = models.gpt2(
            vocab_size=256,
            n_positions=config.context,
            n_embd=config.d_model,
            n_head=config.nhead,
            n_layer=config.num_layers,
            resid_pdrop=config.dropout,
            embd_pdrop=config.dropout,
            attn_pdrop=config.dropout,
            bos_token_id=None,
            eos_token_id=None,
        )
    elif config.family == "llama":
        builder = models.llama(
            vocab_size=256,
            hidden_size=config.d_model,
            intermediate_size=4 * config.d_model,
            num_hidden_layers=config.num_layers,
            num_attention_heads=config.nhead,
            max_position_embeddings=config.context,
            bos_token_id=None,
            eos_token_id=None,
        )
    else:
        raise ValueError(f"finetune: --family must be one of {sorted(LORA_TARGETS)}, got {config.family!r}")
    return nn.run(config.seed, builder), config.family


def add_lora(config: Finetune, model: Model, family: str) -> Model:
    """``model`` with LoRA adapters on ``config.lora_targets`` (the family's default if None), the base frozen."""
    targets = config.lora_targets if config.lora_targets is not None else LORA_TARGETS[family]
    try:
        return nn.lora(model, config.lora_rank, config.lora_alpha, targets=targets, key=config.seed + 3)
    except ValueError as err:
        hint = (
            " (GPT-2's c_attn/c_proj/c_fc are Conv1D layers, which this version of nn.lora does not adapt: "
            "fine-tune with --lora_rank 0 or use a llama model)"
            if family == "gpt2"
            else ""
        )
        raise ValueError(f"finetune: --lora_targets {targets!r}: {err}{hint}") from None


def encode(text: str, vocab_size: int) -> np.ndarray:
    """Bytewise token ids: UTF-8 bytes, folded by ``% vocab_size`` when the vocabulary is smaller than 256."""
    return np.frombuffer(text.encode("utf-8"), np.uint8).astype(np.int32) % vocab_size


def decode(ids: Any) -> str:
    """Token ids back to text: printable ASCII bytes and newlines as themselves, any other id (another byte, or
    a pretrained vocabulary's token above 255) as U+FFFD."""
    return "".join(chr(i) if 32 <= i < 127 or i == 10 else "\ufffd" for i in np.asarray(ids).tolist())


def run(config: Finetune) -> dict:
    """Fine-tune, compare the held-out loss before and after, continue the prompt greedily, save.

    Returns:
      The results of :func:`examples._common.train_and_report` and ``loss_before`` (held-out,
      before training), ``sample`` (the prompt and its greedy continuation), ``family``,
      ``trained_params``, ``saved`` (the Hugging Face directory written) and ``model`` (the
      trained Model, adapters unmerged).
    """
    if config.lora_rank < 0:
        raise ValueError(f"finetune: --lora_rank must be >= 0 (0 fine-tunes every parameter), got {config.lora_rank}")
    out = _common.output_dir(config)
    model, family = build(config)
    vocab_size, context = model.layer.config.vocab_size, min(config.context, model.layer.context_length)
    source = config.from_pretrained or f"a tiny {family} from scratch (seed {config.seed})"
    if config.lora_rank > 0:
        model = add_lora(config, model, family)
    trained = sum(
        int(np.size(p)) for p, keep in zip(jax.tree.leaves(model.params), jax.tree.leaves(model.trainable())) if keep
    )
    ids = encode(corpus(), vocab_size)
    split = int(0.95 * len(ids))
    train_ids, test_ids = ids[:split], ids[split:]
    print(
        f"{config.name}: {family} {source}, {len(ids):,} bytes of text, vocabulary {vocab_size}"
        f"{'' if vocab_size >= 256 else ' (bytes folded modulo it)'}; training {trained:,} of "
        f"{model.num_params():,} parameters ({f'LoRA rank {config.lora_rank}' if config.lora_rank else 'full'})"
    )
    _common.show_summary(model, (config.batch_size, context), jnp.int32, out)

    def batches(step: int):
        starts = np.random.default_rng([config.seed, step]).integers(0, len(train_ids) - context - 1, config.batch_size)
        return windows(train_ids, context, starts)

    starts = np.arange(0, len(test_ids) - context - 1, context)[: config.eval_windows]
    eval_data = train.eval_batches(windows(test_ids, context, starts), 64)
    before = train.evaluate(train.classification_loss, model, eval_data)["loss"]
    state, results = _common.train_and_report(config, model, train.classification_loss, batches, eval_data, out)
    print(f"held-out loss: {before:.4f} before, {results['test_loss']:.4f} after")
    tuned = nn.lora.merge(state.model) if config.lora_rank > 0 else state.model
    room = model.layer.context_length
    prompt = encode(config.prompt, vocab_size)[-max(1, room - config.sample_len) :]  # the prompt's end, if too long
    steps = min(config.sample_len, room - len(prompt))
    continuation = decode(np.asarray(models.generate(tuned, jnp.asarray(prompt), steps=steps))[len(prompt) :])
    print(f"greedy continuation: {config.prompt!r} -> {continuation!r}")
    models.save_pretrained(tuned, out / "hf_model")
    print(f"saved{' (LoRA merged)' if config.lora_rank > 0 else ''}: {out / 'hf_model'}")
    results.update(
        loss_before=before,
        sample=config.prompt + continuation,
        family=family,
        trained_params=trained,
        saved=str(out / "hf_model"),
        model=state.model,
    )
    return results
