"""Comparing trees of arrays leaf by leaf, with messages that name the leaf that differs."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tlean._core import Layer
from tlean._model import Model
from tlean.seed import Builder, run


def as_model(model: Any, key: jax.Array | int | None = None) -> Model:
    """A :class:`~tlean.Model` of ``model``: a Model as it is, a Layer initialised with ``key``
    (by its jitted ``init``, equal to the eager one bit for bit), a Builder run from ``key``.

    ``key`` defaults to ``jax.random.key(0)`` (seed 0 for a Builder).
    """
    if isinstance(model, Model):
        return model
    if isinstance(model, Layer):
        key = jax.random.key(0) if key is None else key
        key = jax.random.key(key) if isinstance(key, int) else key
        return Model(model, *jax.jit(model.init)(key))
    if isinstance(model, Builder):
        return run(0 if key is None else key, model)
    raise TypeError(f"tlean.testing: expected a tlean Model, Layer or Builder, got {type(model).__name__}")


def leaf_name(path: tuple) -> str:
    """A key path as dotted text (``"0.weight"``, ``"1"`` for the second output); ``"<root>"`` for the root."""
    parts = []
    for key in path:
        for attr in ("key", "idx", "name"):
            if hasattr(key, attr):
                parts.append(str(getattr(key, attr)))
                break
        else:
            parts.append(str(key))
    return ".".join(parts) or "<root>"


def named(tree: Any) -> dict[str, Any]:
    """``{dotted path: leaf}`` of ``tree`` (``None`` leaves dropped)."""
    return {leaf_name(path): leaf for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _numbers(value: Any) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype == jnp.bfloat16 or array.dtype.kind == "V":
        array = array.astype(np.float32)
    return array.astype(np.float64) if array.dtype.kind in "fciub" else array


def difference(actual: Any, expected: Any, *, rtol: float, atol: float) -> str | None:
    """``None`` if ``actual`` is close to ``expected`` (``|a - e| <= atol + rtol |e|``, NaN equals NaN);
    otherwise how they differ: shapes, or how many elements, the largest error and where."""
    a, e = _numbers(actual), _numbers(expected)
    if a.shape != e.shape:
        return f"shape {a.shape}, expected {e.shape}"
    if a.dtype.kind not in "fciub" or e.dtype.kind not in "fciub":
        return None if np.array_equal(a, e) else "values differ"
    both_nan = np.isnan(a) & np.isnan(e)
    with np.errstate(invalid="ignore"):
        error = np.where(both_nan, 0.0, np.abs(a - e))
        bad = ~(both_nan | (error <= atol + rtol * np.abs(e)))
    if not bad.any():
        return None
    error = np.where(np.isnan(error), np.inf, error)
    worst = np.unravel_index(int(np.argmax(np.where(bad, error, -1.0))), a.shape) if a.shape else ()
    at = f" at index {tuple(int(i) for i in worst)}" if a.shape else ""
    return (
        f"{int(bad.sum())} of {a.size} elements differ, max abs error {float(error[worst]):.3g}{at} "
        f"(got {float(a[worst]):.6g}, expected {float(e[worst]):.6g}; atol={atol:g}, rtol={rtol:g})"
    )


def tree_differences(actual: Any, expected: Any, *, rtol: float, atol: float, what: str) -> list[str]:
    """One line per leaf of ``actual`` that differs from ``expected`` (or one for a structure mismatch)."""
    got, want = named(actual), named(expected)
    if got.keys() != want.keys() or jax.tree.structure(actual) != jax.tree.structure(expected):
        return [f"{what}: structure differs: got {jax.tree.structure(actual)}, expected {jax.tree.structure(expected)}"]
    lines = []
    for name, value in got.items():
        diff = difference(value, want[name], rtol=rtol, atol=atol)
        if diff is not None:
            lines.append(f"{what} {name!r}: {diff}" if name != "<root>" else f"{what}: {diff}")
    return lines


def assert_trees_close(
    actual: Any, expected: Any, *, rtol: float = 1e-5, atol: float = 1e-5, what: str = "output", context: str = ""
) -> None:
    """Raise ``AssertionError`` naming every leaf of ``actual`` that is not close to ``expected``'s.

    Args:
      actual, expected: pytrees of arrays (NumPy, JAX or anything ``np.asarray`` takes).
      rtol, atol: the tolerance, as ``numpy.testing.assert_allclose`` (NaN equals NaN).
      what: how the message names the trees (``"output"``, ``"gradient of parameter"``).
      context: a prefix for the message (which check, which mode).
    """
    lines = tree_differences(actual, expected, rtol=rtol, atol=atol, what=what)
    if lines:
        raise AssertionError((context + ":\n  " if context else "") + "\n  ".join(lines))


def shapes_and_dtypes(tree: Any) -> Any:
    """``tree`` with each leaf replaced by ``(shape, dtype)``."""
    return jax.tree.map(
        lambda a: (tuple(jnp.shape(a)), jnp.dtype(a.dtype) if hasattr(a, "dtype") else np.asarray(a).dtype), tree
    )
