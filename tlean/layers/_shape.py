"""Reshaping (Flatten, Unflatten) and reducing layers, and ``Lambda`` for glue: all parameter-free."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import jax.numpy as jnp

from tlean._core import Layer, ShapeError
from tlean.layers import _util


def _axis(layer: Layer, dim: int, ndim: int, what: str = "dim") -> int:
    """``dim`` as a non-negative axis of a rank-``ndim`` input, or a ShapeError."""
    if not -ndim <= dim < ndim:
        raise ShapeError(layer, f"an input with axis {what}={dim}", f"rank {ndim}")
    return dim % ndim


@dataclass(frozen=True)
class Flatten(Layer):
    """Merge axes ``start_dim .. end_dim`` into one, as ``torch.flatten``.

    PyTorch analogue: ``torch.nn.Flatten(start_dim=1, end_dim=-1)``, with the same
    defaults (keeps the batch axis). ``flatten`` (``start_dim=0``) turns a single CHW
    example into a vector, TorchLean's form; ``flatten_batch`` is ``Flatten(1)``.
    """

    start_dim: int = 1
    end_dim: int = -1

    def __post_init__(self):
        _util.integers("Flatten", start_dim=self.start_dim, end_dim=self.end_dim)

    def apply(self, params, state, x, *, key=None, train=False):
        x = jnp.asarray(x)
        ndim = max(x.ndim, 1)
        start, end = _axis(self, self.start_dim, ndim, "start_dim"), _axis(self, self.end_dim, ndim, "end_dim")
        if start > end:
            raise ShapeError(self, f"start_dim <= end_dim on a rank-{ndim} input", f"axes {start} > {end}")
        shape = jnp.shape(x) or (1,)
        merged = math.prod(shape[start : end + 1])  # explicit, so an empty batch stays well defined
        return x.reshape(shape[:start] + (merged,) + shape[end + 1 :]), state


@dataclass(frozen=True)
class Unflatten(Layer):
    """Split axis ``dim`` into ``unflattened_size``, as ``torch.Tensor.unflatten``.

    PyTorch analogue: ``torch.nn.Unflatten(dim, unflattened_size)``; one entry of
    ``unflattened_size`` may be -1 (inferred). The sizes must multiply to the axis' length
    (a :class:`~tlean.ShapeError` otherwise).

    >>> import jax.numpy as jnp
    >>> from tlean.layers import Unflatten
    >>> Unflatten(1, (2, -1)).apply({}, {}, jnp.zeros((4, 6)))[0].shape
    (4, 2, 3)
    """

    dim: int
    unflattened_size: tuple[int, ...]

    def __post_init__(self):
        _util.integers("Unflatten", dim=self.dim)
        size = self.unflattened_size
        if not isinstance(size, (tuple, list)) or not size:
            raise ValueError(f"Unflatten: unflattened_size must be a non-empty tuple or list of ints, got {size!r}")
        size = tuple(size)
        if not all(_util.is_int(d) and (d >= 0 or d == -1) for d in size) or size.count(-1) > 1:
            raise ValueError(f"Unflatten: unflattened_size must hold sizes >= 0 and at most one -1, got {size!r}")
        _util.set_field(self, "unflattened_size", tuple(int(d) for d in size))

    def apply(self, params, state, x, *, key=None, train=False):
        x = jnp.asarray(x)
        axis = _axis(self, self.dim, x.ndim)
        n, size = x.shape[axis], self.unflattened_size
        known = math.prod(d for d in size if d != -1)
        if -1 in size:
            if known == 0 or n % known:
                raise ShapeError(self, f"axis {axis} of a length divisible by {known}", x.shape)
            size = tuple(n // known if d == -1 else d for d in size)
        elif known != n:
            raise ShapeError(self, f"axis {axis} of length {known} (the product of {size})", x.shape)
        return x.reshape(x.shape[:axis] + size + x.shape[axis + 1 :]), state


@dataclass(frozen=True)
class Sum(Layer):
    """Sum over ``dim`` (all axes when ``None``). PyTorch analogue: ``torch.sum(x, dim, keepdim)``."""

    dim: int | None = None
    keepdim: bool = False

    def __post_init__(self):
        if self.dim is not None:
            _util.integers("Sum", dim=self.dim)

    def apply(self, params, state, x, *, key=None, train=False):
        x = jnp.asarray(x)
        axis = None if self.dim is None else _axis(self, self.dim, x.ndim)
        return jnp.sum(x, axis=axis, keepdims=self.keepdim), state


@dataclass(frozen=True)
class Mean(Layer):
    """Mean over ``dim``, e.g. pooling a ``(batch, seq, dim)`` sequence with ``Mean(1)``. ``torch.mean``."""

    dim: int
    keepdim: bool = False

    def __post_init__(self):
        _util.integers("Mean", dim=self.dim)

    def apply(self, params, state, x, *, key=None, train=False):
        x = jnp.asarray(x)
        return jnp.mean(x, axis=_axis(self, self.dim, x.ndim), keepdims=self.keepdim), state


@dataclass(frozen=True)
class Select(Layer):
    """Take position ``index`` along ``dim``, e.g. the last step of a sequence with ``Select(-1, 1)``.

    Equivalent to ``torch.select(x, dim, index)``; an index out of range is a ShapeError,
    never clamped.
    """

    index: int
    dim: int

    def __post_init__(self):
        _util.integers("Select", index=self.index, dim=self.dim)

    def apply(self, params, state, x, *, key=None, train=False):
        x = jnp.asarray(x)
        axis = _axis(self, self.dim, x.ndim)
        n = x.shape[axis]
        if not -n <= self.index < n:
            raise ShapeError(self, f"axis {axis} longer than index {self.index}", x.shape)
        return jnp.take(x, self.index % n, axis=axis), state


@dataclass(frozen=True)
class Lambda(Layer):
    """A pure function ``fn(x)`` as a parameter-free layer, for glue between layers.

    ``fn`` must be hashable and compare equal across calls: use a module-level function
    such as ``jnp.tanh``. A fresh closure (``Lambda(lambda x: ...)`` inside a training
    step) is a new config each call and makes a jitted step retrace every call.
    """

    fn: Callable

    def __post_init__(self):
        if not callable(self.fn):
            raise TypeError(f"Lambda: fn must be callable, got {type(self.fn).__name__}")
        try:
            hash(self.fn)
        except TypeError:
            raise TypeError(f"Lambda: fn must be hashable (it is static config under jit), got {self.fn!r}") from None

    def apply(self, params, state, x, *, key=None, train=False):
        return self.fn(x), state


flatten = Flatten(start_dim=0)
flatten_batch = Flatten(start_dim=1)
