"""What the Hugging Face families share: their builders' arguments, numerics and jitted init; the
checks of a causal language model's inputs (token ids, ``position_ids``, ``attention_mask``, the KV
cache); and :class:`CausalLM`, the head and decode protocol of GPT-2 and Llama."""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Integer

from tlean._core import Layer, ShapeError
from tlean.layers import _util

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    from tlean.layers._linear import Linear


C = TypeVar("C", bound="DataclassInstance")  # a model config
LAYER_OPTIONS = ("scan", "dtype", "param_dtype", "precision")


def builder_args(config_type: type[C], config: C | None, fields: dict, name: str) -> tuple[C, dict]:
    """``(config, layer options)`` from a builder's arguments: ``config`` (or the defaults)
    updated with the config fields in ``fields``; the rest must be :data:`LAYER_OPTIONS`."""
    if config is not None and not isinstance(config, config_type):
        raise TypeError(f"{name}: config must be a {config_type.__name__}, got {type(config).__name__}")
    names = {f.name for f in dataclasses.fields(config_type)}
    unknown = sorted(k for k in fields if k not in names and k not in LAYER_OPTIONS)
    if unknown:
        raise TypeError(
            f"{name}: unknown argument(s) {unknown}; {config_type.__name__} fields are {sorted(names)}, "
            f"layer options {list(LAYER_OPTIONS)}"
        )
    updates = {k: v for k, v in fields.items() if k in names}
    config = dataclasses.replace(config, **updates) if config is not None else config_type(**updates)
    return config, {k: v for k, v in fields.items() if k in LAYER_OPTIONS}


def numerics(layer: Any) -> dict:
    """The ``dtype``, ``param_dtype`` and ``precision`` a model passes on to its children."""
    return dict(dtype=layer.dtype, param_dtype=layer.param_dtype, precision=layer.precision)


def cache_dtype(layer: Any, dtype: Any) -> Any:
    """A KV cache's dtype: ``dtype`` if given, else the computation dtype (``dtype``, else ``param_dtype``)."""
    if dtype is not None:
        return dtype
    return layer.dtype if layer.dtype is not None else layer.param_dtype


@functools.partial(jax.jit, static_argnums=0)
def jitted_init(layer: Layer, key: jax.Array) -> tuple[dict, dict]:
    """``layer``'s derived init under one cached ``jax.jit``: the same values (DESIGN 1.3), and XLA drops
    the draws that ``init_overrides`` replace."""
    return Layer.init(layer, key)


def check_ids(
    layer: Layer, ids: Any, start_pos: Any, position_ids: Any, limit: int, limit_name: str
) -> tuple[int, int]:
    """``(batch, seq)`` of integer ``ids [batch, seq]``; a static ``start_pos`` may not run past ``limit``
    positions (``position_ids`` given: the caller places the tokens)."""
    dtype = getattr(ids, "dtype", None)
    if dtype is None or not jnp.issubdtype(dtype, jnp.integer):
        raise TypeError(
            f"{layer!r}: expected integer token ids, got {dtype if dtype is not None else type(ids).__name__}"
        )
    if jnp.ndim(ids) != 2:
        raise ShapeError(layer, "ids [batch, seq]", jnp.shape(ids))
    batch, seq = ids.shape
    if position_ids is None and _util.is_int(start_pos) and start_pos + seq > limit:
        where = f" from start_pos={start_pos}" if start_pos else ""
        raise ShapeError(
            layer,
            f"ids [batch, seq] with at most {limit - start_pos} positions{where} ({limit_name}={limit})",
            ids.shape,
        )
    return batch, seq


def check_position_ids(layer: Layer, position_ids: Any, batch: int, seq: int) -> jax.Array:
    """Integer ``position_ids [batch or 1, seq]``."""
    dtype = getattr(position_ids, "dtype", None)
    if dtype is None or not jnp.issubdtype(dtype, jnp.integer):
        raise TypeError(
            f"{layer!r}: position_ids must be integers, got "
            f"{dtype if dtype is not None else type(position_ids).__name__}"
        )
    if jnp.ndim(position_ids) != 2 or position_ids.shape[0] not in (1, batch) or position_ids.shape[1] != seq:
        raise ShapeError(layer, f"position_ids [{batch}|1, {seq}]", jnp.shape(position_ids))
    return position_ids


def check_mask(layer: Layer, mask: Any, batch: int, length: int, expected: str) -> jax.Array:
    """transformers' ``attention_mask [batch, length]`` (1 = a real token) as booleans."""
    mask = jnp.asarray(mask)
    if mask.shape != (batch, length):
        raise ShapeError(layer, expected, mask.shape)
    return mask != 0


def check_cache(layer: Layer, cache: Any, layers: int, batch: int, heads: int, head_dim: int) -> int:
    """``max_len`` of a stacked KV cache ``{"key", "value": [layers, batch, heads, max_len, head_dim]}``."""
    want = (layers, batch, heads, None, head_dim)
    for name in ("key", "value"):
        got = jnp.shape(cache[name]) if isinstance(cache, dict) and name in cache else None
        if got is None or len(got) != 5 or got[:3] + (None,) + got[4:] != want:
            expected = f"cache[{name!r}] [{layers}, {batch}, {heads}, max_len, {head_dim}] (init_cache)"
            raise ShapeError(layer, expected, got)
    return cache["key"].shape[3]


class CausalLM(Layer):
    """What transformers' ``*ForCausalLM`` models share: ``logits = lm_head(base(ids))``, one jitted
    init, and the decoding protocol :func:`~tlean.models.generate` uses (:attr:`context_length`,
    :meth:`init_cache`, :meth:`decode`).

    A subclass is a dataclass with the sublayers ``lm_head`` and the base model named by
    :attr:`base` (transformers' attribute: ``"transformer"``, ``"model"``), whose ``apply``
    takes ``attention_mask`` and ``position_ids`` and which has ``init_cache(batch, max_len,
    dtype)`` and ``decode(params, cache, ids, start_pos, *, attention_mask, position_ids) ->
    (last hidden states, cache)``; the subclass gives :attr:`context_length`.
    """

    base: ClassVar[str]
    if TYPE_CHECKING:  # the subclasses' fields
        lm_head: Linear
        dtype: Any
        param_dtype: Any

        @property
        def context_length(self) -> int: ...

    def init(self, key: jax.Array | None) -> tuple[dict, dict]:
        """The derived init (children, then ``init_overrides``, then ties) as one cached ``jax.jit``
        program: op by op, every leaf and override would compile its own random draw (seconds)."""
        return Layer.init(self, key) if key is None else jitted_init(self, key)

    def apply(
        self,
        params: dict,
        state: dict,
        ids: Integer[Array, "batch seq"],
        *,
        key=None,
        train=False,
        attention_mask: Any = None,
        position_ids: Any = None,
    ):
        c = self.bind(params, state, key=key, train=train)
        h = getattr(c, self.base)(ids, attention_mask=attention_mask, position_ids=position_ids)
        return c.lm_head(h), state

    def init_cache(self, batch: int, max_len: int, dtype: Any = None) -> dict:
        """An empty KV cache ``{"key", "value": zeros [layers, batch, kv_heads, max_len, head_dim]}``.

        ``dtype`` defaults to the computation dtype (``dtype``, else ``param_dtype``).
        """
        return getattr(self, self.base).init_cache(batch, max_len, cache_dtype(self, dtype))

    def decode(
        self,
        params: dict,
        cache: dict,
        ids: Integer[Array, "batch s"],
        start_pos: int | jax.Array,
        *,
        attention_mask: Any = None,
        position_ids: Any = None,
    ) -> tuple[Float[Array, "batch s vocab"], dict]:
        """``(logits, new cache)`` for ``ids`` written at cache slots ``start_pos .. start_pos + s - 1`` (eval mode).

        Args:
          params: the model's params.
          cache: from :meth:`init_cache` (or a previous ``decode``).
          ids: ``[batch, s]`` new token ids.
          start_pos: the first slot (a Python int, checked at trace time, or a traced int32
            scalar; out of range when traced, the logits are NaN and the cache is unchanged).
          attention_mask: ``[batch, max_len]`` over every cache slot (1 = it holds a real
            token); slots after ``start_pos + s - 1`` are excluded by causality anyway.
          position_ids: ``[batch|1, s]`` positions; default ``start_pos + arange(s)``.

        Returns:
          The logits ``[batch, s, vocab_size]``, equal to the full forward's at those
          positions, and the cache.
        """
        h, cache = getattr(self, self.base).decode(
            params[self.base], cache, ids, start_pos, attention_mask=attention_mask, position_ids=position_ids
        )
        return self.bind(params, {}).lm_head(h), cache
