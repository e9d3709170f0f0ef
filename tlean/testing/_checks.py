"""The invariants every layer shares: jit equals eager, vmap equals a loop, eval_shape, trace-time shape errors."""

from __future__ import annotations

import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tlean._core import Seq, ShapeError
from tlean.testing._compare import as_model, assert_trees_close, shapes_and_dtypes


def _modes(train: bool | tuple[bool, ...]) -> tuple[bool, ...]:
    return (train,) if isinstance(train, bool) else tuple(train)


def _key(key: jax.Array | None) -> jax.Array:
    return jax.random.key(0) if key is None else key


def _forward(model: Any, inputs: tuple, kwargs: dict, key: jax.Array, train: bool) -> tuple[Any, Any]:
    y, new = model.forward(*inputs, key=key, train=train, **kwargs)
    return y, new.state


def assert_jit_eager_equal(
    model: Any,
    *inputs: Any,
    train: bool | tuple[bool, ...] = (False, True),
    key: jax.Array | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    **kwargs: Any,
) -> None:
    """Assert that ``model`` gives the same output and new state eagerly and under ``jax.jit``.

    Args:
      model: a :class:`~tlean.Model`, a Layer (initialised with ``jax.random.key(0)``) or a Builder (seed 0).
      *inputs: the inputs, as ``model(*inputs)`` takes them (torch's forward order).
      train: the mode, or a tuple of modes to check in turn (default both).
      key: the dropout key passed in every mode (default ``jax.random.key(0)``): jit and
        eager draw the same masks from it.
      rtol, atol: the tolerance (XLA may fuse differently under jit).
      **kwargs: keywords of the layer's ``apply`` (masks, ``memory``, ``return_final``...).

    Raises:
      AssertionError: naming the output or state leaf that differs, by how much, and the mode.
    """
    model = as_model(model)
    key = _key(key)
    for mode in _modes(train):
        eager = _forward(model, inputs, kwargs, key, mode)
        jitted = jax.jit(lambda m, *xs, mode=mode: _forward(m, xs, kwargs, key, mode))(model, *inputs)
        assert_trees_close(
            jitted,
            eager,
            rtol=rtol,
            atol=atol,
            what="(output, state)",
            context=f"assert_jit_eager_equal: {model.layer!r} (train={mode}): jit differs from eager",
        )


def assert_vmap_consistent(
    model: Any,
    *inputs: Any,
    train: bool = False,
    key: jax.Array | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    **kwargs: Any,
) -> None:
    """Assert that ``jax.vmap`` of ``model`` over a leading axis of its inputs equals a loop over that axis.

    Each positional input carries the mapped axis first (``inputs[i][j]`` is example ``j``);
    ``kwargs`` are shared by every example. Only the output is compared (the state of a
    vmapped call is per example).

    Args:
      model: a Model, Layer or Builder (as :func:`assert_jit_eager_equal`).
      *inputs: the stacked inputs, mapped axis first.
      train: the mode (the same ``key`` for every example).
      key: the dropout key (default ``jax.random.key(0)``).
      rtol, atol: the tolerance.
      **kwargs: keywords of the layer's ``apply``, not mapped.

    Raises:
      AssertionError: naming the example and the output leaf that differ.
    """
    model = as_model(model)
    key = _key(key)
    sizes = {jnp.shape(x)[0] if jnp.ndim(x) else None for x in jax.tree.leaves(inputs)}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(f"assert_vmap_consistent: every input needs the same leading (mapped) axis, got sizes {sizes}")
    mapped = jax.vmap(lambda *xs: model.forward(*xs, key=key, train=train, **kwargs)[0])(*inputs)
    for j in range(int(sizes.pop() or 0)):
        one = model.forward(*jax.tree.map(lambda x, j=j: x[j], inputs), key=key, train=train, **kwargs)[0]
        assert_trees_close(
            jax.tree.map(lambda y, j=j: y[j], mapped),
            one,
            rtol=rtol,
            atol=atol,
            what="output",
            context=f"assert_vmap_consistent: {model.layer!r}: vmap differs from a loop at example {j}",
        )


def assert_eval_shape(
    model: Any, *inputs: Any, train: bool = False, key: jax.Array | None = None, init: bool = True, **kwargs: Any
) -> None:
    """Assert that the shapes and dtypes of the output and new state equal what ``jax.eval_shape`` gives.

    With ``init=True`` also that ``jax.eval_shape(layer.init, key)`` gives the shapes and
    dtypes of the model's params and state (so a model can be shape-checked, or initialised
    sharded, without computing anything).

    Args:
      model: a Model, Layer or Builder (as :func:`assert_jit_eager_equal`).
      *inputs: the inputs.
      train: the mode.
      key: the dropout key (default ``jax.random.key(0)``).
      init: also check ``init``'s abstract shapes against the model's arrays.
      **kwargs: keywords of the layer's ``apply``.

    Raises:
      AssertionError: saying which shapes or dtypes differ.
    """
    model = as_model(model)
    key = _key(key)
    concrete = shapes_and_dtypes(_forward(model, inputs, kwargs, key, train))
    abstract = shapes_and_dtypes(jax.eval_shape(lambda m, *xs: _forward(m, xs, kwargs, key, train), model, *inputs))
    if concrete != abstract:
        raise AssertionError(
            f"assert_eval_shape: {model.layer!r}: (output, state) is {concrete}, jax.eval_shape gives {abstract}"
        )
    if init:
        declared = shapes_and_dtypes(jax.eval_shape(model.layer.init, jax.random.key(0)))
        held = shapes_and_dtypes((model.params, model.state))
        if declared != held:
            raise AssertionError(
                f"assert_eval_shape: {model.layer!r}: jax.eval_shape(layer.init) gives {declared}, "
                f"the model holds {held}"
            )


def _where_pattern(layer: Any) -> str:
    """The message a ShapeError of ``layer`` starts with: the child's path and repr inside a Seq or
    composite (or the composite itself), the layer's own repr otherwise."""
    located = r"^seq(\[[\d*]+\]|\.\w+)+ \w+\(.*\): expected .*, got"
    own = rf"^{re.escape(type(layer).__name__)}\(.*\): expected .*, got"
    if isinstance(layer, Seq):
        return located
    composite = bool(layer.children()) or layer.stacked() is not None
    return f"{located}|{own}" if composite else own


def assert_shape_error_at_trace_time(
    model: Any,
    bad_input: Any,
    *others: Any,
    match: str | None = None,
    dtype: Any = jnp.float32,
    train: bool = False,
    **kwargs: Any,
) -> ShapeError:
    """Assert that ``model`` refuses ``bad_input`` with a :class:`~tlean.ShapeError` while tracing.

    Only ``jax.jit(...).lower`` runs: nothing is compiled or computed, so an error that XLA
    would raise later, or a silent broadcast, fails the check.

    Args:
      model: a Model, Layer or Builder (as :func:`assert_jit_eager_equal`).
      bad_input: the input that must be refused: a shape tuple (of ``dtype``), a
        ``jax.ShapeDtypeStruct`` or an array.
      *others: further inputs, as ``model(x, *others)`` takes them.
      match: a regular expression the message must match (``re.search``); by default it must
        name the layer (``Linear(...): expected ..., got ...``), with its path inside a Seq
        or composite (``seq[2] Linear(...)``).
      dtype: the dtype of a ``bad_input`` given as a shape.
      train: the mode.
      **kwargs: keywords of the layer's ``apply``.

    Returns:
      The :class:`~tlean.ShapeError`, for further checks.

    Raises:
      AssertionError: if tracing succeeds, raises something else, or the message does not match.
    """
    model = as_model(model)
    if isinstance(bad_input, (tuple, list)):
        bad_input = jax.ShapeDtypeStruct(tuple(bad_input), dtype)
    elif not isinstance(bad_input, jax.ShapeDtypeStruct):
        bad_input = jax.ShapeDtypeStruct(np.shape(bad_input), jnp.result_type(bad_input))
    pattern = match if match is not None else _where_pattern(model.layer)
    step = jax.jit(lambda m, x, *xs: m.forward(x, *xs, key=jax.random.key(0), train=train, **kwargs)[0])
    try:
        step.lower(model, bad_input, *others)
    except ShapeError as err:
        if not re.search(pattern, str(err)):
            raise AssertionError(
                f"assert_shape_error_at_trace_time: {model.layer!r}: the ShapeError for "
                f"{bad_input.shape} does not match {pattern!r}: {err}"
            ) from err
        return err
    except Exception as err:
        raise AssertionError(
            f"assert_shape_error_at_trace_time: {model.layer!r}: input {bad_input.shape} raised "
            f"{type(err).__name__}, not tlean.ShapeError: {err}"
        ) from err
    raise AssertionError(
        f"assert_shape_error_at_trace_time: {model.layer!r} accepted input {bad_input.shape} "
        f"{bad_input.dtype} at trace time (expected a tlean.ShapeError)"
    )
