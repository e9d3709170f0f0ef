"""Pooling with torch's names, one N-d implementation per family: MaxPool1d/2d/3d, AvgPool1d/2d/3d,
AdaptiveAvgPool1d/2d/3d, AdaptiveMaxPool1d/2d/3d, and GlobalAvgPool.

Inputs are channels-first, ``[N, C, *spatial]`` or unbatched ``[C, *spatial]``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, Float

from tlean._core import Layer, ShapeError
from tlean.layers import _layout, _util
from tlean.layers._conv import AXES, check_input, check_window, ntuple


def _accumulator(x: jnp.ndarray) -> jnp.dtype:
    """float32 for lower-precision inputs, so sums and means do not lose bits."""
    return jnp.promote_types(x.dtype, jnp.float32)


class _WindowPool(Layer):
    """Shared config and windowing of MaxPoolNd and AvgPoolNd (subclasses are dataclasses)."""

    spatial: ClassVar[int] = 2
    if TYPE_CHECKING:  # declared by the subclasses that dilate (MaxPoolNd)
        dilation: tuple[int, ...]
    kernel_size: Any
    stride: Any
    padding: Any
    ceil_mode: bool

    def _normalise(self, dilation: bool = False) -> None:
        name, n = type(self).__name__, self.spatial
        _util.set_field(self, "kernel_size", ntuple(name, "kernel_size", self.kernel_size, n))
        stride = self.kernel_size if self.stride is None else self.stride
        _util.set_field(self, "stride", ntuple(name, "stride", stride, n))
        _util.set_field(self, "padding", ntuple(name, "padding", self.padding, n, 0))
        if dilation:
            _util.set_field(self, "dilation", ntuple(name, "dilation", self.dilation, n))
        if any(2 * p > k for p, k in zip(self.padding, self.kernel_size)):  # PyTorch refuses these too
            raise ValueError(
                f"{name}: padding must be at most half of the kernel size, as in PyTorch; "
                f"got padding={self.padding}, kernel_size={self.kernel_size}"
            )
        _util.set_field(self, "ceil_mode", _util.check_flag(name, "ceil_mode", self.ceil_mode))

    @property
    def _dilation(self) -> tuple[int, ...]:
        return getattr(self, "dilation", (1,) * self.spatial)

    def output_size(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """torch's pooling output size: with ``ceil_mode`` the last window may hang over the end,
        but must start inside the input or the left padding."""
        sizes = []
        for size, k, s, p, d in zip(
            shape[-self.spatial :], self.kernel_size, self.stride, self.padding, self._dilation
        ):
            span = size + 2 * p - d * (k - 1) - 1
            out = (span + (s - 1 if self.ceil_mode else 0)) // s + 1
            if self.ceil_mode and (out - 1) * s >= size + p:
                out -= 1
            sizes.append(out)
        return tuple(sizes)

    def _check(self, x: Any) -> tuple[tuple[int, int], ...]:
        """Check the input; the ``(lo, hi)`` padding that makes every output window fit."""
        check_input(self, x, None, self.spatial)
        shape = jnp.shape(x)
        if 0 in shape[-self.spatial :]:
            raise ShapeError(self, f"a non-empty spatial size ({AXES[self.spatial]}) >= 1", shape)
        pads = tuple((p, p) for p in self.padding)
        if not self.ceil_mode:
            check_window(self, x, pads, self.kernel_size, self._dilation, "pooling window")
        out = self.output_size(shape)
        if any(o < 1 for o in out):
            window = tuple(d * (k - 1) + 1 for k, d in zip(self.kernel_size, self._dilation))
            raise ShapeError(
                self,
                f"an input giving at least one pooling window (size {window}, ceil_mode=True) "
                f"along every axis ({AXES[self.spatial]}); this one gives {out}",
                shape,
            )
        window = [d * (k - 1) + 1 for k, d in zip(self.kernel_size, self._dilation)]
        return tuple(
            (p, max((o - 1) * s + w - n - p, p))
            for o, s, w, n, p in zip(out, self.stride, window, shape[-self.spatial :], self.padding)
        )

    def _reduce(self, x: jnp.ndarray, init: Any, op: Any, pads: Any) -> jnp.ndarray:
        """``lax.reduce_window`` over the trailing spatial axes, padding with ``init``; an input with
        a channel axis before them is reduced channels-last where :mod:`~tlean.layers._layout` says so."""
        channel = x.ndim - self.spatial - 1
        last = channel >= 0 and _layout.enabled()
        h = _layout.to_last(x, channel) if last else x
        lead, tail = (1,) * (x.ndim - self.spatial - last), (1,) * last
        y = lax.reduce_window(
            h,
            np.asarray(init, x.dtype),  # a concrete NumPy scalar, so JAX sees the monoid and can differentiate
            op,
            window_dimensions=lead + self.kernel_size + tail,
            window_strides=lead + self.stride + tail,
            padding=((0, 0),) * len(lead) + tuple(pads) + ((0, 0),) * last,
        )
        return _layout.to_first(y, channel) if last else y

    def _crop(self, y: jnp.ndarray, shape: tuple[int, ...]) -> jnp.ndarray:
        out = self.output_size(shape)
        return y[(...,) + tuple(slice(0, o) for o in out)]


@dataclass(frozen=True)
class _MaxPoolNd(_WindowPool):
    """The maximum over each window; padding counts as ``-inf``.

    PyTorch analogue: ``torch.nn.MaxPool{1,2,3}d(kernel_size, stride=None, padding=0,
    dilation=1, return_indices=False, ceil_mode=False)``, same positional order and
    meanings. ``stride`` defaults to ``kernel_size`` and is stored as the tuple it
    resolves to. ``return_indices=True`` is refused (``ValueError``): tlean returns only
    the pooled values. As in PyTorch, ``padding`` may be at most half the kernel size (a
    ``ValueError`` here, at construction, where PyTorch raises in forward); with
    ``ceil_mode`` the last window may hang over the end of the input but must start inside
    the input or the left padding; an input giving no window is a
    :class:`~tlean.ShapeError`. NaN propagates.

    Shapes:
      ``[N, C, *S] -> [N, C, *S']`` or ``[C, *S] -> [C, *S']`` with
      ``S' = floor_or_ceil((S + 2 * padding - dilation * (k - 1) - 1) / stride) + 1``.
    """

    kernel_size: Any
    stride: Any = None
    padding: Any = 0
    dilation: Any = 1
    return_indices: bool = False
    ceil_mode: bool = False

    def __post_init__(self):
        self._normalise(dilation=True)
        if self.return_indices is not False:
            raise ValueError(
                f"{type(self).__name__}: return_indices=True is not supported (tlean returns only the pooled "
                f"values; take jnp.argmax over the windows if you need them), got {self.return_indices!r}"
            )

    def apply(self, params, state, x: Float[Array, "..."], *, key=None, train=False):
        pads = self._check(x)
        x = jnp.asarray(x)
        if self.dilation == (1,) * self.spatial:
            return self._crop(self._reduce(x, -np.inf, lax.max, pads), x.shape), state
        return self._dilated_max(x, pads), state

    def _dilated_max(self, x: jnp.ndarray, pads: Any) -> jnp.ndarray:
        """The elementwise maximum of the ``prod(kernel_size)`` strided views of the ``-inf``-padded input.

        JAX has no reverse-mode rule for a dilated ``reduce_window`` max, so a dilated
        window takes this route, which differentiates like ``jnp.maximum``.
        """
        lead = x.ndim - self.spatial
        padded = jnp.pad(x, ((0, 0),) * lead + tuple(pads), constant_values=-np.inf)
        out = self.output_size(x.shape)
        views = []
        for offsets in itertools.product(*(range(k) for k in self.kernel_size)):
            start = (0,) * lead + tuple(i * d for i, d in zip(offsets, self.dilation))
            limit = padded.shape[:lead] + tuple(b + (m - 1) * s + 1 for b, m, s in zip(start[lead:], out, self.stride))
            views.append(lax.slice(padded, start, limit, (1,) * lead + self.stride))
        result = views[0]
        for view in views[1:]:
            result = jnp.maximum(result, view)
        return result


@dataclass(frozen=True)
class _AvgPoolNd(_WindowPool):
    """The mean over each window, with zero padding.

    PyTorch analogue: ``torch.nn.AvgPool{1,2,3}d(kernel_size, stride=None, padding=0,
    ceil_mode=False, count_include_pad=True, divisor_override=None)``, same positional
    order and meanings (torch's AvgPool1d has no ``divisor_override``; here it has one).
    With ``count_include_pad=True`` a window is divided by the number of its elements
    inside the padded input (a window hanging over the end in ``ceil_mode`` is not
    charged for that part, as in torch), with ``False`` by the number of input elements
    it covers, and by ``divisor_override`` when that is given. Sums are accumulated in
    float32 for lower-precision inputs. ``padding`` may be at most half the kernel size
    (``ValueError``) and an input giving no window is a :class:`~tlean.ShapeError`.

    Shapes:
      ``[N, C, *S] -> [N, C, *S']`` or ``[C, *S] -> [C, *S']`` with
      ``S' = floor_or_ceil((S + 2 * padding - k) / stride) + 1``.
    """

    kernel_size: Any
    stride: Any = None
    padding: Any = 0
    ceil_mode: bool = False
    count_include_pad: bool = True
    divisor_override: int | None = None

    def __post_init__(self):
        name = type(self).__name__
        self._normalise()
        _util.set_field(self, "count_include_pad", _util.check_flag(name, "count_include_pad", self.count_include_pad))
        if self.divisor_override is not None and (
            not _util.is_int(self.divisor_override) or self.divisor_override == 0
        ):
            raise ValueError(f"{name}: divisor_override must be a non-zero int or None, got {self.divisor_override!r}")

    def apply(self, params, state, x: Float[Array, "..."], *, key=None, train=False):
        pads = self._check(x)
        x = jnp.asarray(x)
        total = self._crop(self._reduce(x.astype(_accumulator(x)), 0, lax.add, pads), x.shape)
        spatial = x.shape[-self.spatial :]
        if self.divisor_override is not None:
            count = jnp.asarray(self.divisor_override, total.dtype)
        else:
            if self.count_include_pad:  # ones over the padded input, zeros over the ceil-mode overhang
                ones = jnp.ones(tuple(s + 2 * p for s, p in zip(spatial, self.padding)), total.dtype)
                count_pads = [(0, hi - p) for (_, hi), p in zip(pads, self.padding)]
            else:
                ones, count_pads = jnp.ones(spatial, total.dtype), pads
            count = _util.trailing(self._crop(self._reduce(ones, 0, lax.add, count_pads), spatial), total.ndim)
        return (total / count).astype(x.dtype), state


def _pool_doc(base: type, n: int, example: str) -> str:
    return (base.__doc__ or "").replace("{1,2,3}d", f"{n}d").replace(
        "*S", AXES[n]
    ).rstrip() + f"\n\n    >>> import jax.numpy as jnp\n    >>> from tlean import layers as L\n    >>> {example}\n    "


@dataclass(frozen=True)
class MaxPool1d(_MaxPoolNd):
    __doc__ = _pool_doc(
        _MaxPoolNd,
        1,
        "L.MaxPool1d(2).apply({}, {}, jnp.arange(5.0).reshape(1, 5))[0]\n    Array([[1., 3.]], dtype=float32)",
    )
    spatial: ClassVar[int] = 1
    padding: Any = (0,)
    dilation: Any = (1,)


@dataclass(frozen=True)
class MaxPool2d(_MaxPoolNd):
    __doc__ = _pool_doc(
        _MaxPoolNd,
        2,
        "L.MaxPool2d(2).apply({}, {}, jnp.arange(16.0).reshape(1, 4, 4))[0]\n"
        "    Array([[[ 5.,  7.],\n            [13., 15.]]], dtype=float32)",
    )
    spatial: ClassVar[int] = 2
    padding: Any = (0, 0)
    dilation: Any = (1, 1)


@dataclass(frozen=True)
class MaxPool3d(_MaxPoolNd):
    __doc__ = _pool_doc(
        _MaxPoolNd, 3, "L.MaxPool3d(2, ceil_mode=True).apply({}, {}, jnp.ones((1, 3, 4, 5)))[0].shape\n    (1, 2, 2, 3)"
    )
    spatial: ClassVar[int] = 3
    padding: Any = (0, 0, 0)
    dilation: Any = (1, 1, 1)


@dataclass(frozen=True)
class AvgPool1d(_AvgPoolNd):
    __doc__ = _pool_doc(
        _AvgPoolNd,
        1,
        "L.AvgPool1d(2, ceil_mode=True).apply({}, {}, jnp.arange(5.0).reshape(1, 5))[0]\n"
        "    Array([[0.5, 2.5, 4. ]], dtype=float32)",
    )
    spatial: ClassVar[int] = 1
    padding: Any = (0,)


@dataclass(frozen=True)
class AvgPool2d(_AvgPoolNd):
    __doc__ = _pool_doc(
        _AvgPoolNd,
        2,
        "L.AvgPool2d(2).apply({}, {}, jnp.arange(16.0).reshape(1, 4, 4))[0]\n"
        "    Array([[[ 2.5,  4.5],\n            [10.5, 12.5]]], dtype=float32)",
    )
    spatial: ClassVar[int] = 2
    padding: Any = (0, 0)


@dataclass(frozen=True)
class AvgPool3d(_AvgPoolNd):
    __doc__ = _pool_doc(
        _AvgPoolNd,
        3,
        "L.AvgPool3d(2, divisor_override=1).apply({}, {}, jnp.ones((1, 2, 2, 2)))[0]\n"
        "    Array([[[[8.]]]], dtype=float32)",
    )
    spatial: ClassVar[int] = 3
    padding: Any = (0, 0, 0)


# --- adaptive pooling ----------------------------------------------------------------------------


def adaptive_windows(size: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """torch's adaptive windows ``[floor(i * size / out), ceil((i + 1) * size / out))`` as
    ``(index [out, width], valid [out, width])``; invalid slots repeat the window's last index."""
    starts = [i * size // out for i in range(out)]
    ends = [-(-(i + 1) * size // out) for i in range(out)]
    width = max(e - s for s, e in zip(starts, ends))
    index = np.array([[min(s + j, e - 1) for j in range(width)] for s, e in zip(starts, ends)], np.int32)
    valid = np.array([[s + j < e for j in range(width)] for s, e in zip(starts, ends)])
    return index, valid


def adaptive_reduce(x: jnp.ndarray, sizes: tuple[int, ...], reduce: str) -> jnp.ndarray:
    """Adaptive ``"avg"`` or ``"max"`` pooling of the last ``len(sizes)`` axes, one axis at a time
    (both reductions are separable over a box)."""
    n = len(sizes)
    for i, out in enumerate(sizes):
        axis = x.ndim - n + i
        index, valid = adaptive_windows(x.shape[axis], out)
        windows = jnp.take(x, index, axis=axis)  # [..., out, width, ...]
        rest = (1,) * (x.ndim - axis - 1)
        mask = valid.reshape((1,) * axis + valid.shape + rest)
        if reduce == "max":
            x = jnp.max(jnp.where(mask, windows, -jnp.inf), axis=axis + 1)
        else:
            counts = valid.sum(axis=1).reshape((1,) * axis + (out,) + rest)
            x = jnp.sum(jnp.where(mask, windows, 0), axis=axis + 1) / counts.astype(windows.dtype)
    return x


@dataclass(frozen=True)
class _AdaptivePoolNd(Layer):
    """Shared N-d adaptive pooling; subclasses fix ``spatial`` and the reduction."""

    spatial: ClassVar[int] = 2
    reduction: ClassVar[str] = "avg"

    output_size: Any

    def __post_init__(self):
        name, n = type(self).__name__, self.spatial
        items = (
            (self.output_size,) * n if _util.is_int(self.output_size) or self.output_size is None else self.output_size
        )
        try:
            items = tuple(items)
        except TypeError:
            items = ()
        if len(items) != n or any(v is not None and (not _util.is_int(v) or v < 1) for v in items):
            raise ValueError(
                f"{name}: output_size must be an int >= 1, None or a tuple of {n} of those, got {self.output_size!r}"
            )
        _util.set_field(self, "output_size", tuple(None if v is None else int(v) for v in items))

    def apply(self, params, state, x: Float[Array, "..."], *, key=None, train=False):
        check_input(self, x, None, self.spatial)
        shape = jnp.shape(x)
        sizes = tuple(s if o is None else o for s, o in zip(shape[-self.spatial :], self.output_size))
        if 0 in shape[-self.spatial :]:
            raise ShapeError(self, f"a non-empty spatial size ({AXES[self.spatial]}) >= 1", shape)
        x = jnp.asarray(x)
        if self.reduction == "max":
            return adaptive_reduce(x, sizes, "max"), state
        return adaptive_reduce(x.astype(_accumulator(x)), sizes, "avg").astype(x.dtype), state


@dataclass(frozen=True)
class _AdaptiveMaxPoolNd(_AdaptivePoolNd):
    reduction: ClassVar[str] = "max"
    return_indices: bool = False

    def __post_init__(self):
        super().__post_init__()
        if self.return_indices is not False:
            raise ValueError(
                f"{type(self).__name__}: return_indices=True is not supported (tlean returns only the pooled values), "
                f"got {self.return_indices!r}"
            )


_ADAPTIVE_DOC = """Adaptive {what} pooling to a fixed output size over the last {n} ax{es}.

    PyTorch analogue: ``torch.nn.Adaptive{What}Pool{n}d(output_size{ri})`` with torch's
    windows: output ``i`` reduces input ``[floor(i * S / out), ceil((i + 1) * S / out))``,
    so windows may overlap and differ in size. ``output_size`` is an int or a tuple with
    ``None`` entries keeping that axis's input size; it is stored as a tuple.{ri_note}

    Shapes: ``[N, C, {axes}] -> [N, C, *output_size]`` or unbatched ``[C, {axes}] -> [C, *output_size]``.

    >>> import jax.numpy as jnp
    >>> from tlean import layers as L
    >>> L.Adaptive{What}Pool{n}d({ex_size}).apply({{}}, {{}}, jnp.arange(5.0).reshape({ex_shape}))[0]
    {ex_out}
    """


def _adaptive_doc(n: int, what: str, ex_size: str, ex_shape: str, ex_out: str) -> str:
    maxed = what == "max"
    return _ADAPTIVE_DOC.format(
        what=what,
        What={"average": "Avg", "max": "Max"}[what],
        n=n,
        es="is" if n == 1 else "es",
        axes=AXES[n],
        ri=", return_indices=False" if maxed else "",
        ri_note=" ``return_indices=True`` is refused (``ValueError``)." if maxed else "",
        ex_size=ex_size,
        ex_shape=ex_shape,
        ex_out=ex_out,
    )


@dataclass(frozen=True)
class AdaptiveAvgPool1d(_AdaptivePoolNd):
    __doc__ = _adaptive_doc(1, "average", "3", "1, 5", "Array([[0.5, 2. , 3.5]], dtype=float32)")
    spatial: ClassVar[int] = 1


@dataclass(frozen=True)
class AdaptiveAvgPool2d(_AdaptivePoolNd):
    __doc__ = _adaptive_doc(2, "average", "(1, None)", "1, 1, 5", "Array([[[0., 1., 2., 3., 4.]]], dtype=float32)")
    spatial: ClassVar[int] = 2


@dataclass(frozen=True)
class AdaptiveAvgPool3d(_AdaptivePoolNd):
    __doc__ = _adaptive_doc(3, "average", "1", "1, 1, 1, 5", "Array([[[[2.]]]], dtype=float32)")
    spatial: ClassVar[int] = 3


@dataclass(frozen=True)
class AdaptiveMaxPool1d(_AdaptiveMaxPoolNd):
    __doc__ = _adaptive_doc(1, "max", "3", "1, 5", "Array([[1., 3., 4.]], dtype=float32)")
    spatial: ClassVar[int] = 1


@dataclass(frozen=True)
class AdaptiveMaxPool2d(_AdaptiveMaxPoolNd):
    __doc__ = _adaptive_doc(2, "max", "(1, 2)", "1, 1, 5", "Array([[[2., 4.]]], dtype=float32)")
    spatial: ClassVar[int] = 2


@dataclass(frozen=True)
class AdaptiveMaxPool3d(_AdaptiveMaxPoolNd):
    __doc__ = _adaptive_doc(3, "max", "(None, 1, 1)", "1, 1, 1, 5", "Array([[[[4.]]]], dtype=float32)")
    spatial: ClassVar[int] = 3


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
        check_input(self, x, None, 2)
        if 0 in jnp.shape(x)[-2:]:
            raise ShapeError(self, "a non-empty spatial size H, W >= 1", jnp.shape(x))
        x = jnp.asarray(x)
        return jnp.mean(x, axis=(-2, -1), dtype=_accumulator(x)).astype(x.dtype), state
