"""``check_finite``: a debug mode that names the first layer producing a NaN or Inf."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

import jax
import jax.core
import jax.numpy as jnp
import numpy as np

_ENABLED = contextvars.ContextVar("tlean_check_finite", default=False)
_LOG: contextvars.ContextVar[list | None] = contextvars.ContextVar("tlean_finite_log", default=None)
_PATH: contextvars.ContextVar[tuple] = contextvars.ContextVar("tlean_seq_path", default=())


@contextlib.contextmanager
def check_finite(enabled: bool = True) -> Iterator[None]:
    """Within this block, every ``seq`` checks each child's output for NaN and Inf.

    The first non-finite value raises ``FloatingPointError`` naming the layer and its
    position (``seq[2] Linear(...)``), or saying the input was already non-finite.
    Eagerly the check is immediate; under ``jax.jit`` it runs as a ``jax.debug.callback``
    and the error surfaces when the computation runs. The switch is read at trace time:
    trace (or re-jit) the function inside the block. It costs a reduction per layer, so
    it is off by default; tlean never hides a non-finite value either way.

    >>> import jax.numpy as jnp
    >>> from tlean import check_finite, seq
    >>> from tlean.layers import Lambda
    >>> net = seq(Lambda(jnp.log), Lambda(jnp.exp))
    >>> with check_finite():
    ...     net.apply(({}, {}), ({}, {}), -jnp.ones(2))
    Traceback (most recent call last):
    FloatingPointError: check_finite: seq[0] Lambda(fn=log) produced a non-finite value (NaN or Inf)
    """
    token = _ENABLED.set(enabled)
    try:
        yield
    finally:
        _ENABLED.reset(token)


def enabled() -> bool:
    return _ENABLED.get()


def _location(where: tuple) -> str:
    from tlean._core import location

    return location(where)


def _nonfinite(tree: Any) -> Any:
    flags = [
        jnp.logical_not(jnp.all(jnp.isfinite(leaf)))
        for leaf in jax.tree.leaves(tree)
        if jnp.issubdtype(jnp.asarray(leaf).dtype, jnp.inexact)
    ]
    return jnp.any(jnp.stack(flags)) if flags else jnp.bool_(False)


def path() -> tuple:
    """The seq indices and names leading to the Seq being applied now."""
    return _PATH.get()


@contextlib.contextmanager
def child(where: tuple) -> Iterator[tuple]:
    """Apply one child: extend the path by its indices or names."""
    token = _PATH.set(_PATH.get() + tuple(where))
    try:
        yield _PATH.get()
    finally:
        _PATH.reset(token)


@contextlib.contextmanager
def scope(x: Any) -> Iterator[None]:
    """Open the outermost check scope when checking is on (a no-op otherwise); check the input first.

    While summary rows are collected, ``x`` is also noted as the input of the row the block records
    (:func:`summary_row` keeps its shape and dtype, from which ``Model.summary`` counts FLOPs)."""
    token = _INPUT.set(x) if _ROWS.get() is not None else None
    try:
        with _check_scope(x):
            yield
    finally:
        if token is not None:
            _INPUT.reset(token)


@contextlib.contextmanager
def _check_scope(x: Any) -> Iterator[None]:
    if not enabled() or _LOG.get() is not None:
        yield
        return
    log: list = []
    token = _LOG.set(log)
    try:
        record(x, None, path() + (0,), what="the input to")
        yield
    finally:
        _LOG.reset(token)
    flags = [flag for flag, _ in log]
    if flags and any(isinstance(f, jax.core.Tracer) for f in flags):
        messages = [message for _, message in log]
        jax.debug.callback(lambda fs: _raise_first(np.asarray(fs), messages), jnp.stack(flags))


def record(y: Any, layer: Any, where: tuple, what: str = "") -> None:
    """Note whether ``y`` (the output of ``layer`` at ``where``) is finite; raise now if eager."""
    log = _LOG.get()
    if log is None:
        return
    flag = _nonfinite(y)
    if what:
        message = f"check_finite: {what} {_location(where)} is already non-finite (NaN or Inf)"
    else:
        message = f"check_finite: {_location(where)} {layer!r} produced a non-finite value (NaN or Inf)"
    if not isinstance(flag, jax.core.Tracer):
        if bool(flag):
            raise FloatingPointError(message)
        return
    log.append((flag, message))


def _raise_first(flags: np.ndarray, messages: list[str]) -> None:
    any_flag = flags.reshape(len(messages), -1).any(axis=1)  # vmap adds a trailing batch axis
    for flag, message in zip(np.atleast_1d(any_flag).tolist(), messages):
        if flag:
            raise FloatingPointError(message)


# -- Model.summary: rows recorded by the child calls while the model is traced ------------------
_ROWS: contextvars.ContextVar[list | None] = contextvars.ContextVar("tlean_summary_rows", default=None)
_INPUT: contextvars.ContextVar[Any] = contextvars.ContextVar("tlean_summary_input", default=None)


@contextlib.contextmanager
def collect_rows() -> Iterator[list]:
    """Collect a summary row for every child call inside the block (see :func:`summary_row`)."""
    rows: list = []
    token = _ROWS.set(rows)
    try:
        yield rows
    finally:
        _ROWS.reset(token)


@contextlib.contextmanager
def summary_row(layer: Any, where: tuple) -> Iterator[Any]:
    """Record ``{"path", "layer", "shape", "input"}`` when rows are being collected.

    The row is placed when the call starts (so a parent precedes its children) and its
    output shape filled in by the function this yields; ``input`` is the shape and dtype
    (``jax.ShapeDtypeStruct``\\ s) of the input :func:`scope` noted, or ``None``.
    """
    rows = _ROWS.get()
    if rows is None:
        yield lambda y: None
        return
    row = {"path": tuple(where), "layer": layer, "shape": None, "input": _abstract(_INPUT.get())}
    rows.append(row)

    def output(y):
        row["shape"] = jax.tree.map(lambda a: tuple(jnp.shape(a)), y)

    yield output


def _abstract(x: Any) -> Any:
    """``x`` as ``jax.ShapeDtypeStruct``\\ s (``None`` if it holds anything but arrays)."""
    if x is None:
        return None
    try:
        return jax.tree.map(lambda a: jax.ShapeDtypeStruct(jnp.shape(a), a.dtype), x)
    except (AttributeError, TypeError):
        return None


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """No summary rows and no finiteness records inside (a shape-only trace such as Stacked's check)."""
    rows, enabled = _ROWS.set(None), _ENABLED.set(False)
    try:
        yield
    finally:
        _ROWS.reset(rows)
        _ENABLED.reset(enabled)
