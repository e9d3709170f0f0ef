"""Private helpers shared by the layer families: config normalisation and input checks."""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
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
        raise ValueError(
            f"{layer_name}: {name} must be a floating dtype{' or None' if optional else ''}, got {dtype!r}"
        )
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


# -- configuration fields, declared once and checked by the base class ---------------------------
# A field made here carries its check in ``metadata["check"]``: ``check(layer_name, field_name,
# value) -> normalised value``. ``Layer`` runs every such check before the layer's own
# ``__post_init__`` (tlean._core), so every layer treats the same value the same way.
def checked(check: Callable[[str, str, Any], Any], default: Any = dataclasses.MISSING, **kwargs: Any) -> Any:
    """A dataclass field whose value ``check`` validates and normalises at construction."""
    metadata = dict(kwargs.pop("metadata", None) or {}, check=check)
    return dataclasses.field(default=default, metadata=metadata, **kwargs)


def check_size(layer_name: str, name: str, value: Any) -> int:
    """An integer >= 1 (NumPy ints count; bools do not), as a Python int."""
    if not is_int(value) or value < 1:
        raise ValueError(f"{layer_name}: {name} must be a positive int, got {value!r}")
    return int(value)


def check_flag(layer_name: str, name: str, value: Any) -> bool:
    """A bool (Python or NumPy), as a Python bool; ``0``/``1`` and other values are refused.
    Every layer checks its flags with this, declared (:func:`flag`) or in ``__post_init__``."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{layer_name}: {name} must be a bool, got {value!r}")
    return bool(value)


def check_probability(layer_name: str, name: str, value: Any) -> float:
    """A real number in ``[0, 1)`` (NumPy scalars count; bools do not), as a Python float."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not 0 <= float(value) < 1:
        raise ValueError(f"{layer_name}: {name} must be a probability in [0, 1), got {value!r}")
    return float(value)


def check_nonnegative(layer_name: str, name: str, value: Any) -> float:
    """A real number >= 0 (an epsilon), as a Python float."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not float(value) >= 0:
        raise ValueError(f"{layer_name}: {name} must be a number >= 0, got {value!r}")
    return float(value)


def check_dtype(layer_name: str, name: str, value: Any) -> jnp.dtype | None:
    """A floating dtype or ``None`` (the computation dtype)."""
    _refuse_torch_dtype(layer_name, name, value)
    return float_dtype(layer_name, name, value, optional=True)


def check_param_dtype(layer_name: str, name: str, value: Any) -> jnp.dtype:
    """A floating dtype (the storage dtype)."""
    _refuse_torch_dtype(layer_name, name, value)
    dtype = float_dtype(layer_name, name, value)
    if dtype is None:  # not optional: float_dtype raised already
        raise ValueError(f"{layer_name}: {name} must be a floating dtype, got None")
    return dtype


def check_precision(layer_name: str, name: str, value: Any) -> Any:
    try:
        return canon_precision(value)
    except ValueError as e:
        raise ValueError(f"{layer_name}: {e}") from None


def _refuse_torch_dtype(layer_name: str, name: str, value: Any) -> None:
    if type(value).__module__ == "torch" and type(value).__name__ == "dtype":
        raise TypeError(
            f"{layer_name}: {name}={value} is a torch dtype. tlean's dtype is the computation dtype (flax's); "
            f"torch's factory dtype is tlean's param_dtype: pass a JAX/NumPy dtype, e.g. param_dtype=jnp.float32"
        )


def size(default: Any = dataclasses.MISSING, **kwargs: Any) -> Any:
    """A positive-int field."""
    return checked(check_size, default, **kwargs)


def flag(default: Any = dataclasses.MISSING, **kwargs: Any) -> Any:
    """A bool field."""
    return checked(check_flag, default, **kwargs)


def probability(default: Any = dataclasses.MISSING, **kwargs: Any) -> Any:
    """A probability field in ``[0, 1)``."""
    return checked(check_probability, default, **kwargs)


def nonnegative(default: Any = dataclasses.MISSING, **kwargs: Any) -> Any:
    """A ``>= 0`` number field (epsilons)."""
    return checked(check_nonnegative, default, **kwargs)


def dtype_field() -> Any:
    """The keyword-only ``dtype`` field: the computation dtype (``None``: the result type of input and
    params, as flax). Every layer with weights declares ``dtype``, ``param_dtype`` and ``precision``,
    in that order, after ``_: KW_ONLY``."""
    return checked(check_dtype, None, kw_only=True)


def param_dtype_field() -> Any:
    """The keyword-only ``param_dtype`` field: the storage dtype (float32)."""
    return checked(check_param_dtype, jnp.float32, kw_only=True)


def precision_field() -> Any:
    """The keyword-only ``precision`` field: the matmul precision (``None``: JAX's default)."""
    return checked(check_precision, None, kw_only=True)


def promote(layer: Any, *arrays: Any) -> tuple:
    """Every array cast to the layer's computation dtype (flax nnx's ``promote_dtype``):
    ``layer.dtype`` if set, else the result type of the arrays; ``None`` (an absent bias) stays ``None``."""
    dtype = compute_dtype(layer.dtype, *(a for a in arrays if a is not None))
    return tuple(None if a is None else jnp.asarray(a).astype(dtype) for a in arrays)
