"""Private helpers shared by the layer families: config normalisation and input checks."""

from __future__ import annotations

import numbers
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from tlean._core import ShapeError


def set_field(layer: Any, name: str, value: Any) -> None:
    """Assign a normalised value to a field of a frozen dataclass (in ``__post_init__``)."""
    object.__setattr__(layer, name, value)


def canon_precision(precision: Any) -> Any:
    """``None``, a ``lax.Precision``, a string such as ``"highest"`` or a pair of those."""
    if precision is None or isinstance(precision, lax.Precision):
        return precision
    if isinstance(precision, str):
        return lax.Precision(precision)
    if isinstance(precision, (tuple, list)) and len(precision) == 2:
        return tuple(canon_precision(p) for p in precision)
    raise ValueError(f"precision must be None, a jax.lax.Precision, a string or a pair, got {precision!r}")


def positive(layer_name: str, **sizes: Any) -> None:
    """Raise ``ValueError`` naming the layer if any size is not an integer >= 1 (NumPy ints count)."""
    for name, value in sizes.items():
        if not is_int(value) or value < 1:
            raise ValueError(f"{layer_name}: {name} must be a positive int, got {value!r}")


def is_int(value: Any) -> bool:
    """An integer (Python or NumPy), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def integers(layer_name: str, **fields: Any) -> None:
    """Raise ``ValueError`` naming the layer if a field (an axis, an index) is not an integer."""
    for name, value in fields.items():
        if not is_int(value):
            raise ValueError(f"{layer_name}: {name} must be an int, got {value!r}")


def float_dtype(layer_name: str, name: str, dtype: Any, optional: bool = False) -> jnp.dtype | None:
    """``dtype`` as a floating ``jnp.dtype`` (``None`` allowed when ``optional``), or a ValueError."""
    if dtype is None and optional:
        return None
    try:
        canon = jnp.dtype(dtype) if dtype is not None else None
    except TypeError:
        canon = None
    if canon is None or not jnp.issubdtype(canon, jnp.floating):
        raise ValueError(f"{layer_name}: {name} must be a floating dtype{' or None' if optional else ''}, got {dtype!r}")
    return canon


def numeric_fields(layer: Any) -> None:
    """Normalise a layer's ``dtype`` (a floating dtype or ``None``), ``param_dtype`` (a
    floating dtype) and, where it has one, ``precision``; a ValueError names the layer."""
    name = type(layer).__name__
    set_field(layer, "dtype", float_dtype(name, "dtype", layer.dtype, optional=True))
    set_field(layer, "param_dtype", float_dtype(name, "param_dtype", layer.param_dtype))
    if hasattr(layer, "precision"):
        try:
            set_field(layer, "precision", canon_precision(layer.precision))
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None


def check_float(layer: Any, x: Any) -> None:
    """Raise ``TypeError`` if ``x`` is not a floating-point array."""
    dtype = getattr(x, "dtype", None)
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(
            f"{layer!r}: expected a floating-point input, got {dtype if dtype is not None else type(x).__name__}; "
            f"cast it first, e.g. x.astype(jnp.float32)"
        )


def check_features(layer: Any, x: Any, features: int, name: str = "input") -> None:
    """Raise ``ShapeError`` unless ``x`` has rank >= 1 and ``x.shape[-1] == features``."""
    if jnp.ndim(x) < 1 or jnp.shape(x)[-1] != features:
        raise ShapeError(layer, f"{name} [..., {features}]", jnp.shape(x))


def compute_dtype(dtype: Any, *arrays: Any) -> jnp.dtype:
    """The computation dtype: ``dtype`` if given, else the result type of the arrays (as flax does)."""
    return jnp.dtype(dtype) if dtype is not None else jnp.result_type(*arrays)


def add_bias(y: jax.Array, bias: jax.Array, axis: int = -1) -> jax.Array:
    """``y + bias`` with ``bias`` laid along ``axis``, broadcast explicitly (no rank promotion)."""
    axis = axis % y.ndim
    shape = [1] * y.ndim
    shape[axis] = bias.shape[0]
    return y + bias.reshape(shape)


def trailing(param: jax.Array, ndim: int) -> jax.Array:
    """``param`` reshaped to rank ``ndim`` by leading 1s, to broadcast over the trailing axes explicitly."""
    return param.reshape((1,) * (ndim - param.ndim) + param.shape)
