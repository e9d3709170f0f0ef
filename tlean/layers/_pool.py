"""Spatial pooling on NCHW and unbatched CHW inputs: MaxPool2d, AvgPool2d, GlobalAvgPool."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, Float

from tlean._core import Layer, ShapeError
from tlean.layers import _util
from tlean.layers._conv import check_window, pair


def _check_rank(layer: Layer, x: Any) -> None:
    _util.check_float(layer, x)
    if jnp.ndim(x) not in (3, 4):
        raise ShapeError(layer, "input [N, C, H, W] or unbatched [C, H, W]", jnp.shape(x))


class _Pool2d(Layer):
    """Shared config handling and windowing of MaxPool2d and AvgPool2d (PyTorch's ``ceil_mode=False``)."""

    kernel_size: Any
    stride: Any
    padding: Any

    def _normalise(self) -> None:
        name = type(self).__name__
        _util.set_field(self, "kernel_size", pair(name, "kernel_size", self.kernel_size))
        stride = self.kernel_size if self.stride is None else self.stride
        _util.set_field(self, "stride", pair(name, "stride", stride))
        _util.set_field(self, "padding", pair(name, "padding", self.padding, 0))
        if any(2 * p > k for p, k in zip(self.padding, self.kernel_size)):  # PyTorch refuses these too
            raise ValueError(f"{name}: padding must be at most half of the kernel size, as in PyTorch; "
                             f"got padding={self.padding}, kernel_size={self.kernel_size}")

    def _reduce(self, x: jnp.ndarray, init: Any, op: Any) -> jnp.ndarray:
        """``lax.reduce_window`` over the last two axes, padding with ``init``."""
        lead = (1,) * (x.ndim - 2)
        return lax.reduce_window(
            x,
            np.asarray(init, x.dtype),  # a concrete NumPy scalar, so JAX sees the monoid and can differentiate
            op,
            window_dimensions=lead + self.kernel_size,
            window_strides=lead + self.stride,
            padding=((0, 0),) * (x.ndim - 2) + tuple((p, p) for p in self.padding),
        )


@dataclass(frozen=True)
class MaxPool2d(_Pool2d):
    """The maximum over each ``kernel_size`` window; padding counts as ``-inf``.

    PyTorch analogue: ``torch.nn.MaxPool2d(kernel_size, stride=None, padding=0,
    dilation=1)`` with ``ceil_mode=False`` and ``return_indices=False`` (neither of those
    options is offered). ``stride`` defaults to ``kernel_size`` and is stored as the
    pair it resolves to. As in PyTorch, ``padding`` may be at most half the kernel size
    (a ``ValueError`` here, at construction, where PyTorch raises in forward) and a
    window larger than the padded input is an error (a :class:`~tlean.ShapeError`). NaN
    propagates.

    Shapes:
      ``[N, C, H, W] -> [N, C, H', W']`` or ``[C, H, W] -> [C, H', W']`` with
      ``H' = (H + 2 * padding - dilation * (kH - 1) - 1) // stride + 1``.

    >>> import jax.numpy as jnp
    >>> from tlean.layers import MaxPool2d
    >>> MaxPool2d(2).apply({}, {}, jnp.arange(16.0).reshape(1, 4, 4))[0]
    Array([[[ 5.,  7.],
            [13., 15.]]], dtype=float32)
    """

    kernel_size: Any
    stride: Any = None
    padding: Any = (0, 0)
    dilation: Any = (1, 1)

    def __post_init__(self):
        self._normalise()
        _util.set_field(self, "dilation", pair("MaxPool2d", "dilation", self.dilation))

    def apply(self, params, state, x: Float[Array, "*batch C H W"], *, key=None, train=False):
        _check_rank(self, x)
        pads = tuple((p, p) for p in self.padding)
        check_window(self, x, pads, self.kernel_size, self.dilation, "pooling window")
        x = jnp.asarray(x)
        if self.dilation == (1, 1):
            return self._reduce(x, -np.inf, lax.max), state
        return self._dilated_max(x), state

    def _dilated_max(self, x: jnp.ndarray) -> jnp.ndarray:
        """The elementwise maximum of the ``kH * kW`` strided views of the ``-inf``-padded input.

        JAX has no reverse-mode rule for a dilated ``reduce_window`` max, so a dilated
        window takes this route, which differentiates like ``jnp.maximum``.
        """
        lead = x.ndim - 2
        padded = jnp.pad(x, ((0, 0),) * lead + tuple((p, p) for p in self.padding), constant_values=-np.inf)
        size = [(n - d * (k - 1) - 1) // s + 1 for n, k, d, s in zip(padded.shape[-2:], self.kernel_size, self.dilation, self.stride)]
        out = None
        for i in range(self.kernel_size[0]):
            for j in range(self.kernel_size[1]):
                start = (0,) * lead + (i * self.dilation[0], j * self.dilation[1])
                limit = padded.shape[:lead] + tuple(b + (m - 1) * s + 1 for b, m, s in zip(start[lead:], size, self.stride))
                view = lax.slice(padded, start, limit, (1,) * lead + self.stride)
                out = view if out is None else jnp.maximum(out, view)
        return out


@dataclass(frozen=True)
class AvgPool2d(_Pool2d):
    """The mean over each ``kernel_size`` window, with zero padding.

    PyTorch analogue: ``torch.nn.AvgPool2d(kernel_size, stride=None, padding=0,
    count_include_pad=True)`` with ``ceil_mode=False`` and no ``divisor_override``
    (neither is offered). With ``count_include_pad=True`` (PyTorch's default) every
    window is divided by ``kH * kW``, padding included; with ``False`` by the number of
    input elements it covers. Sums are accumulated in float32 for lower-precision inputs.
    ``padding`` may be at most half the kernel size (``ValueError``) and a window larger
    than the padded input is a :class:`~tlean.ShapeError`, as in PyTorch.

    Shapes:
      ``[N, C, H, W] -> [N, C, H', W']`` or ``[C, H, W] -> [C, H', W']`` with
      ``H' = (H + 2 * padding - kH) // stride + 1``.

    >>> import jax.numpy as jnp
    >>> from tlean.layers import AvgPool2d
    >>> AvgPool2d(2).apply({}, {}, jnp.arange(16.0).reshape(1, 4, 4))[0]
    Array([[[ 2.5,  4.5],
            [10.5, 12.5]]], dtype=float32)
    """

    kernel_size: Any
    stride: Any = None
    padding: Any = (0, 0)
    count_include_pad: bool = True

    def __post_init__(self):
        self._normalise()
        if not isinstance(self.count_include_pad, bool):
            raise ValueError(f"AvgPool2d: count_include_pad must be a bool, got {self.count_include_pad!r}")

    def apply(self, params, state, x: Float[Array, "*batch C H W"], *, key=None, train=False):
        _check_rank(self, x)
        pads = tuple((p, p) for p in self.padding)
        check_window(self, x, pads, self.kernel_size, (1, 1), "pooling window")
        x = jnp.asarray(x)
        total = self._reduce(x.astype(jnp.promote_types(x.dtype, jnp.float32)), 0, lax.add)
        if self.count_include_pad:
            count = jnp.asarray(self.kernel_size[0] * self.kernel_size[1], total.dtype)
        else:
            count = _util.trailing(self._reduce(jnp.ones(x.shape[-2:], total.dtype), 0, lax.add), total.ndim)
        return (total / count).astype(x.dtype), state


@dataclass(frozen=True)
class GlobalAvgPool(Layer):
    """The mean over the spatial axes: ``[N, C, H, W] -> [N, C]`` and ``[C, H, W] -> [C]``.

    PyTorch analogue: ``torch.nn.AdaptiveAvgPool2d((1, 1))`` followed by
    ``torch.flatten(x, 1)`` (what torchvision's ResNet does before ``fc``). An empty
    spatial size is a :class:`~tlean.ShapeError` (PyTorch refuses it too).

    >>> import jax.numpy as jnp
    >>> from tlean.layers import GlobalAvgPool
    >>> GlobalAvgPool().apply({}, {}, jnp.ones((2, 3, 4, 4)))[0].shape
    (2, 3)
    """

    def apply(self, params, state, x: Float[Array, "*batch C H W"], *, key=None, train=False):
        _check_rank(self, x)
        if 0 in jnp.shape(x)[-2:]:
            raise ShapeError(self, "a non-empty spatial size H, W >= 1", jnp.shape(x))
        x = jnp.asarray(x)
        return jnp.mean(x, axis=(-2, -1), dtype=jnp.promote_types(x.dtype, jnp.float32)).astype(x.dtype), state
