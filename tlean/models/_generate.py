"""``generate``: greedy or sampled continuation through a model's KV cache, in one jitted ``lax.scan``.

It works on any Model whose layer has the decode protocol of ``tlean.models``:
``context_length``, ``init_cache(batch, max_len, dtype=None)`` and ``decode(params, cache,
ids, start_pos, *, attention_mask=None, position_ids=None) -> (logits, cache)``
(``models.gpt2``, ``models.llama``, ``models.gpt``).
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Sequence
from typing import Any

import jax
import jax.core
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, Integer

from tlean._model import Model

__all__ = ["generate"]


def generate(
    model: Model,
    ids: Integer[Array, "*batch prompt"],
    *,
    steps: int,
    key: jax.Array | None = None,
    temperature: float | jax.Array = 1.0,
    top_k: int | None = None,
    top_p: float | jax.Array | None = None,
    attention_mask: Integer[Array, "*batch prompt"] | None = None,
    eos_token_id: int | Sequence[int] | None = None,
) -> Integer[Array, "*batch total"]:
    """Extend ``ids`` by ``steps`` tokens: greedy, or sampled when given a ``key``.

    The prompt is prefilled into a KV cache of ``prompt + steps`` slots with one
    ``decode``, then each new token is decoded at its slot; the loop is one jitted
    ``lax.scan``, compiled once per model config, prompt shape, ``steps``, mask presence
    and number of eos ids beyond one (new prompts, keys, temperatures, ``top_k`` and ``top_p`` values
    reuse it).

    Choosing a token follows transformers' ``generate``: without a ``key`` (or at
    ``temperature=0``) the argmax of the logits (greedy decoding, whose output equals
    transformers' ``do_sample=False``); with a ``key``, token ``t`` is drawn with the
    ``t``-th key of ``jax.random.split(key, steps)`` from ``softmax(logits / temperature)``
    restricted to the ``top_k`` most likely tokens and then to the top-``top_p`` nucleus
    (the fewest most likely tokens whose probabilities add up to at least ``top_p``;
    transformers' ``TopKLogitsWarper`` then ``TopPLogitsWarper``, ties at the ``top_k``-th
    logit kept). transformers' random draws differ, so only greedy output is
    token-identical.

    Padding (batched prompts of different lengths) is on the left, as transformers wants
    for decoder-only models: ``attention_mask`` is 1 for real tokens and 0 for padding;
    padded slots are never attended to, and each row's positions count its real tokens
    only (``cumsum(attention_mask) - 1``, padding at 0: transformers' position ids).

    ``eos_token_id``: once a row has emitted it (any of them, for a list), the row is
    finished and emits the (first) eos id for the remaining steps; transformers emits
    ``pad_token_id`` there and falls back to the eos id when there is none, and stops
    early once every row is finished (here the output always has ``steps`` new tokens).
    ``None`` (the default) never stops: unlike transformers, the model config's eos id
    is not read.

    Args:
      model: a Model whose layer has the decode protocol (``models.gpt2``,
        ``models.llama``, ``models.gpt``).
      ids: ``[batch, prompt]`` (or ``[prompt]``) integer token ids, ``prompt >= 1``.
      steps: how many tokens to add (keyword-only); ``prompt + steps`` may not exceed the
        model's ``context_length``.
      key: the sampling key; ``None`` decodes greedily.
      temperature: ``>= 0``; ``0`` is greedy. May be a traced scalar.
      top_k: keep the ``top_k >= 1`` most likely tokens (``None``: all).
      top_p: the nucleus mass in ``(0, 1]`` (``None`` or ``1``: all). May be traced.
      attention_mask: ``[batch, prompt]`` (or ``[prompt]``), 1 = real token, 0 = left padding.
      eos_token_id: an id or ids that end a row (see above).

    Returns:
      ``[batch, prompt + steps]`` (or ``[prompt + steps]``) int32 ids: the prompt (padding
      included), then the new tokens, as transformers returns them.

    >>> import jax, jax.numpy as jnp
    >>> from tlean import models, nn
    >>> model = nn.run(0, models.llama(vocab_size=50, hidden_size=16, intermediate_size=24, num_hidden_layers=2,
    ...                                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32))
    >>> ids = jnp.array([[0, 5, 7], [3, 4, 5]])
    >>> mask = jnp.array([[0, 1, 1], [1, 1, 1]])  # the first prompt is left-padded
    >>> out = models.generate(model, ids, steps=4, attention_mask=mask)  # greedy
    >>> out.shape, bool((out[:, :3] == ids).all())
    ((2, 7), True)
    >>> sampled = models.generate(model, ids, steps=4, attention_mask=mask, key=jax.random.key(0), top_k=5, top_p=0.9)
    >>> sampled.shape  # the same compiled loop: only values changed
    (2, 7)
    """
    layer: Any = getattr(model, "layer", None)
    if not all(hasattr(layer, name) for name in ("context_length", "init_cache", "decode")):
        raise TypeError(
            f"generate needs a Model of a decoder with the decode protocol (context_length, init_cache, "
            f"decode: models.gpt2, models.llama, models.gpt), got {model!r}"
        )
    prompt = jnp.asarray(ids)
    if not jnp.issubdtype(prompt.dtype, jnp.integer):
        raise TypeError(f"generate: ids must be integer token ids, got {prompt.dtype}")
    unbatched = prompt.ndim == 1
    if unbatched:
        prompt = prompt[None]
    if prompt.ndim != 2 or prompt.shape[1] < 1:
        raise ValueError(
            f"generate: ids must be [batch, prompt] or [prompt] with prompt >= 1, got shape {tuple(jnp.shape(ids))}"
        )
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 0:
        raise ValueError(f"generate: steps must be an int >= 0, got {steps!r}")
    steps, length, context = int(steps), prompt.shape[1], layer.context_length
    if length + steps > context:
        raise ValueError(
            f"generate: the prompt's {length} tokens + steps={steps} = {length + steps} exceed the "
            f"model's context length {context}"
        )
    mask = None if attention_mask is None else _check_mask(attention_mask, prompt, unbatched)
    if _concrete(temperature) and not float(temperature) >= 0:
        raise ValueError(f"generate: temperature must be >= 0, got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 1):
        raise ValueError(f"generate: top_k must be an int >= 1 or None, got {top_k!r}")
    if top_p is not None and _concrete(top_p) and not 0 < float(top_p) <= 1:
        raise ValueError(f"generate: top_p must be in (0, 1] or None, got {top_p!r}")
    eos = _eos_ids(eos_token_id)
    if steps == 0:
        return prompt[0] if unbatched else prompt
    greedy = key is None
    vocab_limit = np.iinfo(np.int32).max  # top_k=None: keep every token (clipped to the vocabulary inside)
    out = _run(
        model,
        prompt.astype(jnp.int32),
        mask,
        jax.random.key(0) if greedy else key,
        jnp.float32(0.0 if greedy else temperature),
        jnp.int32(vocab_limit if top_k is None else top_k),
        jnp.float32(1.0 if top_p is None else top_p),
        eos,
        steps,
    )
    return out[0] if unbatched else out


def _concrete(value: Any) -> bool:
    return not isinstance(value, jax.core.Tracer) and np.ndim(value) == 0


def _check_mask(attention_mask: Any, prompt: jax.Array, unbatched: bool) -> jax.Array:
    mask = jnp.asarray(attention_mask)
    if unbatched:
        mask = mask[None]
    if mask.shape != prompt.shape:
        raise ValueError(
            f"generate: attention_mask must have the shape of ids {tuple(prompt.shape[unbatched:])}, "
            f"got {tuple(jnp.shape(attention_mask))}"
        )
    if not isinstance(mask, jax.core.Tracer):
        values = np.asarray(mask)
        if not np.isin(values, (0, 1)).all():
            raise ValueError("generate: attention_mask must hold 0 (padding) and 1 (real token) only")
        if not values[:, -1].all():
            raise ValueError(
                "generate: the prompts must be left-padded (each row's last token real, "
                "attention_mask[:, -1] == 1), as transformers' generate needs for a decoder"
            )
    return mask.astype(jnp.int32)


def _eos_ids(eos_token_id: Any) -> jax.Array:
    if eos_token_id is None:
        ids: list = []
    elif isinstance(eos_token_id, numbers.Integral) and not isinstance(eos_token_id, bool):
        ids = [eos_token_id]
    elif (
        isinstance(eos_token_id, (list, tuple))
        and eos_token_id
        and all(isinstance(e, numbers.Integral) and not isinstance(e, bool) for e in eos_token_id)
    ):
        ids = list(eos_token_id)
    else:
        raise ValueError(
            f"generate: eos_token_id must be a token id, a non-empty list of them or None, got {eos_token_id!r}"
        )
    return jnp.asarray(ids or [-1], jnp.int32)  # -1 matches no token: one compiled shape for None and one id


def _choose(logits: jax.Array, key: jax.Array, temperature: jax.Array, top_k: jax.Array, top_p: jax.Array) -> jax.Array:
    """One token per row of ``logits [batch, vocab]``: greedy at temperature 0, else a filtered sample.

    The settings are traced (new values never recompile), so each choice is a ``lax.cond``:
    greedy decoding pays for an argmax only, not for the sorts of the filters (three sorts of
    ``[batch, vocab]`` per token, which cost more than the model's decode step on a CPU).
    """
    logits = logits.astype(jnp.float32)
    vocab = logits.shape[-1]

    def sample(logits):
        scaled = logits / temperature
        scaled = lax.cond(top_k < vocab, _top_k, lambda x, _: x, scaled, top_k)
        scaled = lax.cond(top_p < 1, _nucleus, lambda x, _: x, scaled, top_p)
        return jax.random.categorical(key, scaled, axis=-1).astype(jnp.int32)

    return lax.cond(temperature > 0, sample, lambda x: jnp.argmax(x, axis=-1).astype(jnp.int32), logits)


def _top_k(logits: jax.Array, k: jax.Array) -> jax.Array:
    """Logits below the ``k``-th largest set to ``-inf`` (ties with it kept), as ``TopKLogitsWarper``."""
    vocab = logits.shape[-1]
    kth = jnp.take(jnp.sort(logits, axis=-1), vocab - jnp.clip(k, 1, vocab), axis=-1)[..., None]
    return jnp.where(logits < kth, -jnp.inf, logits)


def _nucleus(logits: jax.Array, top_p: jax.Array) -> jax.Array:
    """``TopPLogitsWarper``: drop the least likely tokens while the mass dropped stays ``<= 1 - top_p``
    (the most likely token always stays)."""
    order = jnp.argsort(logits, axis=-1)  # ascending
    ascending = jnp.take_along_axis(logits, order, axis=-1)
    mass = jnp.cumsum(jax.nn.softmax(ascending, axis=-1), axis=-1)
    drop = (mass <= 1 - top_p).at[..., -1].set(False)
    drop = jnp.take_along_axis(drop, jnp.argsort(order, axis=-1), axis=-1)
    return jnp.where(drop, -jnp.inf, logits)


@functools.partial(jax.jit, static_argnames=("steps",))
def _run(
    model: Model,
    prompt: jax.Array,
    mask: jax.Array | None,
    key: jax.Array,
    temperature: jax.Array,
    top_k: jax.Array,
    top_p: jax.Array,
    eos: jax.Array,
    steps: int,
) -> jax.Array:
    layer, params = model.layer, model.params
    batch, length = prompt.shape
    keys = jax.random.split(key, steps)
    cache = layer.init_cache(batch, length + steps)
    if mask is None:  # every slot real, positions = slots: the decode defaults
        slots = positions = None
        next_position = jnp.full((batch,), length, jnp.int32)
    else:
        slots = jnp.concatenate([mask, jnp.ones((batch, steps), jnp.int32)], axis=1)
        positions = jnp.where(mask == 1, jnp.cumsum(mask, axis=1) - 1, 0)
        next_position = positions[:, -1] + 1
    logits, cache = layer.decode(params, cache, prompt, 0, attention_mask=slots, position_ids=positions)
    choose = functools.partial(_choose, temperature=temperature, top_k=top_k, top_p=top_p)

    def finish(token, done):
        token = jnp.where(done, eos[0], token)
        return token, done | jnp.any(token[:, None] == eos[None, :], axis=-1)

    first, done = finish(choose(logits[:, -1], keys[0]), jnp.zeros((batch,), bool))

    def step(carry, xs):
        token, done, cache = carry
        k, t = xs
        pos = None if mask is None else (next_position + t)[:, None]
        logits, cache = layer.decode(params, cache, token[:, None], length + t, attention_mask=slots, position_ids=pos)
        new, done = finish(choose(logits[:, -1], k), done)
        return (new, done, cache), token

    (last, _, _), tokens = lax.scan(step, (first, done, cache), (keys[1:], jnp.arange(steps - 1, dtype=jnp.int32)))
    return jnp.concatenate([prompt, jnp.transpose(tokens), last[:, None]], axis=1)
