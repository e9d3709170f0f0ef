"""Distances between two inputs: CosineSimilarity and PairwiseDistance (parameter-free)."""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from tlean._core import Layer, ShapeError
from tlean.layers import _util

_sg = jax.lax.stop_gradient


def _pair(layer: Layer, x: Any, x2: Any) -> tuple[jax.Array, jax.Array]:
    """``x`` and ``x2`` broadcast to one shape (explicitly, as torch broadcasts them), in their common dtype."""
    if x2 is None:
        raise TypeError(f"{layer!r}: needs its second input: apply(params, state, x, x2=...) or model(x1, x2)")
    _util.check_float(layer, x)
    _util.check_float(layer, x2)
    try:
        shape = jnp.broadcast_shapes(jnp.shape(x), jnp.shape(x2))
    except ValueError:
        raise ShapeError(layer, f"x2 broadcastable with x {tuple(jnp.shape(x))}", jnp.shape(x2)) from None
    dtype = jnp.result_type(x, x2)
    return jnp.broadcast_to(x, shape).astype(dtype), jnp.broadcast_to(x2, shape).astype(dtype)


def _safe_norm(v: jax.Array, axis: int) -> jax.Array:
    """The 2-norm along ``axis`` with a zero (not NaN) gradient at the zero vector, as torch's."""
    sq = jnp.sum(jnp.square(v), axis=axis, keepdims=True)
    positive = sq > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1)), 0)


@dataclass(frozen=True)
class CosineSimilarity(Layer):
    """``y = sum(x1 * x2, dim) / (max(||x1||, eps) * max(||x2||, eps))``, the cosine of the angle along ``dim``.

    Called with two inputs: ``apply(params, state, x, *, x2)`` (torch's forward ``(x1,
    x2)``), broadcast against each other as in torch; ``dim`` is removed from the result.
    As in torch the clamping of each norm to ``eps`` is not differentiated. Computed in
    float32 or wider.

    PyTorch analogue: ``torch.nn.CosineSimilarity(dim=1, eps=1e-8)``.

    >>> import jax.numpy as jnp
    >>> from tlean.layers import CosineSimilarity
    >>> CosineSimilarity(0).apply({}, {}, jnp.array([1.0, 0.0]), x2=jnp.array([1.0, 1.0]))[0].round(4)
    Array(0.7071, dtype=float32)
    """

    dim: int = 1
    eps: float = 1e-8

    inputs = ("x2",)  # Model(x, ...) maps further positional inputs onto these keywords

    def __post_init__(self):
        _util.integers("CosineSimilarity", dim=self.dim)
        if isinstance(self.eps, bool) or not isinstance(self.eps, numbers.Real) or not self.eps >= 0:
            raise ValueError(f"CosineSimilarity: eps must be a number >= 0, got {self.eps!r}")
        _util.set_field(self, "eps", float(self.eps))

    def apply(self, params, state, x, *, x2=None, key=None, train=False):
        a, b = _pair(self, x, x2)
        if not -a.ndim <= self.dim < a.ndim:
            raise ShapeError(self, f"inputs with an axis {self.dim}", a.shape)
        dtype, h = a.dtype, jnp.promote_types(a.dtype, jnp.float32)
        a, b = a.astype(h), b.astype(h)
        dim = self.dim % a.ndim
        clamp = lambda n: _sg(jnp.maximum(n, self.eps)) + (n - _sg(n))  # torch clamps under no_grad
        y = jnp.sum(a / clamp(_safe_norm(a, dim)) * (b / clamp(_safe_norm(b, dim))), axis=dim)
        return y.astype(dtype), state


@dataclass(frozen=True)
class PairwiseDistance(Layer):
    """``y = ||x1 - x2 + eps||_p`` along the last axis.

    Called with two inputs: ``apply(params, state, x, *, x2)`` (torch's forward ``(x1,
    x2)``), broadcast against each other as in torch. ``p`` may be any positive number,
    ``0`` (the count of non-zero differences) or ``inf``/``-inf``.

    PyTorch analogue: ``torch.nn.PairwiseDistance(p=2.0, eps=1e-6, keepdim=False)``.

    Shapes: ``[..., D], [..., D] -> [...]`` (``[..., 1]`` with ``keepdim``); two vectors
    give a scalar, as in torch.

    >>> import jax.numpy as jnp
    >>> from tlean.layers import PairwiseDistance
    >>> PairwiseDistance(eps=0.0).apply({}, {}, jnp.array([3.0, 0.0]), x2=jnp.array([0.0, 4.0]))[0]
    Array(5., dtype=float32)
    """

    p: float = 2.0
    eps: float = 1e-6
    keepdim: bool = False

    inputs = ("x2",)  # Model(x, ...) maps further positional inputs onto these keywords

    def __post_init__(self):
        for name in ("p", "eps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ValueError(f"PairwiseDistance: {name} must be a number, got {value!r}")
            _util.set_field(self, name, float(value))
        if not (self.p >= 0 or self.p == float("-inf")):
            raise ValueError(f"PairwiseDistance: p must be >= 0 or -inf, got {self.p!r}")
        _util.set_field(self, "keepdim", _util.check_flag("PairwiseDistance", "keepdim", self.keepdim))

    def apply(self, params, state, x, *, x2=None, key=None, train=False):
        a, b = _pair(self, x, x2)
        if a.ndim < 1:
            raise ShapeError(self, "inputs with at least one axis [..., D]", a.shape)
        d = jnp.abs(a - b + jnp.asarray(self.eps, a.dtype))
        p, keep = self.p, self.keepdim
        if p == float("inf"):
            y = jnp.max(d, axis=-1, keepdims=keep)
        elif p == float("-inf"):
            y = jnp.min(d, axis=-1, keepdims=keep)
        elif p == 0:
            y = jnp.sum(d != 0, axis=-1, keepdims=keep).astype(d.dtype)
        else:
            y = jnp.sum(d**p, axis=-1, keepdims=keep) ** (1.0 / p)
        return y, state
