"""Elementwise activations and softmax: parameter-free layers."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from tlean._core import Layer, ShapeError
from tlean.layers import _util


class _Activation(Layer):
    """A parameter-free layer ``y = fn(x)`` that keeps the input's shape and dtype.

    Subclasses whose function is only defined on floats (all but ReLU and Identity)
    refuse integer input with a TypeError rather than truncate the result.
    """

    float_only = True

    def fn(self, x: jax.Array) -> jax.Array:
        raise NotImplementedError

    def apply(self, params, state, x, *, key=None, train=False):
        x = jnp.asarray(x)
        if self.float_only:
            _util.check_float(self, x)
        return self.fn(x), state


@dataclass(frozen=True)
class Identity(_Activation):
    """``y = x``, for any dtype. PyTorch analogue: ``torch.nn.Identity``."""

    float_only = False

    def fn(self, x):
        return x


@dataclass(frozen=True)
class ReLU(_Activation):
    """``y = max(x, 0)``, for any dtype. PyTorch analogue: ``torch.nn.ReLU``.

    >>> import jax.numpy as jnp
    >>> from tlean.layers import relu
    >>> relu.apply({}, {}, jnp.array([-1.0, 2.0]))[0]
    Array([0., 2.], dtype=float32)
    """

    float_only = False

    def fn(self, x):
        return jax.nn.relu(x)


@dataclass(frozen=True)
class GELU(_Activation):
    """``y = x * Phi(x)``, exact (``"none"``, with erf) or the ``"tanh"`` approximation.

    PyTorch analogue: ``torch.nn.GELU(approximate=...)``; note that ``jax.nn.gelu``
    defaults to the tanh form, while this layer, like PyTorch, defaults to the exact one.
    """

    approximate: str = "none"

    def __post_init__(self):
        if self.approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {self.approximate!r}")

    def fn(self, x):
        return jax.nn.gelu(x, approximate=self.approximate == "tanh")


@dataclass(frozen=True)
class SiLU(_Activation):
    """``y = x * sigmoid(x)`` (swish). PyTorch analogue: ``torch.nn.SiLU``."""

    def fn(self, x):
        return jax.nn.silu(x)


@dataclass(frozen=True)
class Tanh(_Activation):
    """``y = tanh(x)``. PyTorch analogue: ``torch.nn.Tanh``."""

    def fn(self, x):
        return jnp.tanh(x)


@dataclass(frozen=True)
class Sigmoid(_Activation):
    """``y = 1 / (1 + exp(-x))``. PyTorch analogue: ``torch.nn.Sigmoid``."""

    def fn(self, x):
        return jax.nn.sigmoid(x)


@dataclass(frozen=True)
class Softmax(_Activation):
    """``y = exp(x) / sum(exp(x))`` along ``dim``, computed in float32, returned in the input dtype.

    PyTorch analogue: ``torch.nn.Softmax(dim)``; PyTorch's implicit ``dim=None`` is
    deprecated, so here ``dim`` defaults to the last axis.
    """

    dim: int = -1

    def __post_init__(self):
        _util.integers("Softmax", dim=self.dim)

    def fn(self, x):
        if not -x.ndim <= self.dim < x.ndim:
            raise ShapeError(self, f"an input with an axis {self.dim}", x.shape)
        return jax.nn.softmax(x.astype(jnp.promote_types(x.dtype, jnp.float32)), axis=self.dim).astype(x.dtype)


identity = Identity()
relu = ReLU()
gelu = GELU()
silu = SiLU()
tanh = Tanh()
sigmoid = Sigmoid()
softmax = Softmax()
