"""Normalisation layers. Statistics are computed in float32 whatever the input dtype."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from tlean._core import Layer, ShapeError
from tlean.layers import _util


def _stats_dtype(x: jax.Array) -> jnp.dtype:
    """float32, or float64 when the input already is."""
    return jnp.promote_types(x.dtype, jnp.float32)


def _check_trailing(layer: Layer, x: Any, shape: tuple[int, ...]) -> None:
    _util.check_float(layer, x)
    if jnp.ndim(x) < len(shape) or tuple(jnp.shape(x)[-len(shape):]) != shape:
        dims = ", ".join(map(str, shape))
        raise ShapeError(layer, f"input [..., {dims}]", jnp.shape(x))


@dataclass(frozen=True)
class LayerNorm(Layer):
    """``y = (x - mean) / sqrt(var + eps) * weight + bias`` over the trailing ``normalized_shape`` axes.

    PyTorch analogue: ``torch.nn.LayerNorm(normalized_shape, eps, elementwise_affine, bias)``;
    same names and init (``weight`` ones, ``bias`` zeros, both of ``normalized_shape``).
    The variance is the biased one, as in PyTorch; mean and variance are computed in
    float32 and the result is cast back to the input dtype (or ``dtype``).

    Shapes: ``x [..., *normalized_shape] -> y`` of the same shape.
    """

    normalized_shape: Any
    eps: float = 1e-5
    elementwise_affine: bool = True
    bias: bool = True
    dtype: Any = None
    param_dtype: Any = jnp.float32

    def __post_init__(self):
        shape = (self.normalized_shape,) if isinstance(self.normalized_shape, int) else tuple(self.normalized_shape)
        _util.set_field(self, "normalized_shape", shape)
        _util.positive("LayerNorm", **{f"normalized_shape[{i}]": d for i, d in enumerate(shape)})
        if not shape:
            raise ValueError("LayerNorm: normalized_shape must not be empty")
        if not self.eps >= 0:
            raise ValueError(f"LayerNorm: eps must be >= 0, got {self.eps!r}")
        _util.set_field(self, "dtype", _util.canon_dtype(self.dtype))
        _util.set_field(self, "param_dtype", _util.canon_dtype(self.param_dtype))

    def init(self, key):
        params = {}
        if self.elementwise_affine:
            params["weight"] = jnp.ones(self.normalized_shape, self.param_dtype)
            if self.bias:
                params["bias"] = jnp.zeros(self.normalized_shape, self.param_dtype)
        return params, {}

    def apply(self, params, state, x, *, key=None, train=False):
        _check_trailing(self, x, self.normalized_shape)
        out_dtype = _util.compute_dtype(self.dtype, x)
        axes = tuple(range(x.ndim - len(self.normalized_shape), x.ndim))
        h = x.astype(_stats_dtype(x))
        mean = jnp.mean(h, axis=axes, keepdims=True)
        var = jnp.mean(jnp.square(h - mean), axis=axes, keepdims=True)
        y = (h - mean) * jax.lax.rsqrt(var + self.eps)
        if "weight" in params:
            y = y * _util.trailing(params["weight"].astype(y.dtype), y.ndim)
        if "bias" in params:
            y = y + _util.trailing(params["bias"].astype(y.dtype), y.ndim)
        return y.astype(out_dtype), state


@dataclass(frozen=True)
class RMSNorm(Layer):
    """``y = x / sqrt(mean(x**2) + eps) * weight`` over the last axis.

    PyTorch analogue: ``torch.nn.RMSNorm(dim, eps)`` with ``weight`` initialised to ones.
    PyTorch's default ``eps=None`` means the input dtype's machine epsilon; here the
    default is 1e-6 (TorchLean, Llama). The mean square is computed in float32.

    Shapes: ``x [..., dim] -> y`` of the same shape.
    """

    dim: int
    eps: float = 1e-6
    elementwise_affine: bool = True
    dtype: Any = None
    param_dtype: Any = jnp.float32

    def __post_init__(self):
        _util.positive("RMSNorm", dim=self.dim)
        if not self.eps >= 0:
            raise ValueError(f"RMSNorm: eps must be >= 0, got {self.eps!r}")
        _util.set_field(self, "dtype", _util.canon_dtype(self.dtype))
        _util.set_field(self, "param_dtype", _util.canon_dtype(self.param_dtype))

    def init(self, key):
        return ({"weight": jnp.ones((self.dim,), self.param_dtype)} if self.elementwise_affine else {}), {}

    def apply(self, params, state, x, *, key=None, train=False):
        _check_trailing(self, x, (self.dim,))
        out_dtype = _util.compute_dtype(self.dtype, x)
        h = x.astype(_stats_dtype(x))
        y = h * jax.lax.rsqrt(jnp.mean(jnp.square(h), axis=-1, keepdims=True) + self.eps)
        if "weight" in params:
            y = y * _util.trailing(params["weight"].astype(y.dtype), y.ndim)
        return y.astype(out_dtype), state
