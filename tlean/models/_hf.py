"""What the Hugging Face families share: their numerics, their jitted init, and the checks of the
inputs of a causal language model (token ids, ``position_ids``, ``attention_mask``)."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from tlean._core import Layer, ShapeError
from tlean.layers import _util


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
