"""Padding layers, one N-d implementation with torch's names: Zero/Constant/Reflection/Replication/CircularPad 1d-3d.

``pad`` is also what the convolutions use for ``padding_mode`` other than ``"zeros"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array

from tlean._core import Layer, ShapeError
from tlean.layers import _util

_NUMPY_MODES = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def pad(x: jnp.ndarray, pads: Any, mode: str = "constant", value: Any = 0.0) -> jnp.ndarray:
    """``x`` padded on its last ``len(pads)`` axes by ``pads = ((lo, hi), ...)`` (first axis first).

    ``mode`` is torch's: ``"constant"`` (``value``), ``"reflect"`` (mirror without repeating the
    edge), ``"replicate"`` (repeat the edge) or ``"circular"`` (wrap around). A negative entry
    crops that side first, as ``torch.nn.functional.pad`` does.
    """
    lead = [(0, 0)] * (x.ndim - len(pads))
    if mode == "constant":  # lax.pad crops on negative entries itself
        return lax.pad(x, jnp.asarray(value, x.dtype), [(0, 0, 0)] * len(lead) + [(lo, hi, 0) for lo, hi in pads])
    crop = lead + [(max(-lo, 0), max(-hi, 0)) for lo, hi in pads]
    x = x[tuple(slice(lo, x.shape[i] - hi) for i, (lo, hi) in enumerate(crop))]
    return jnp.pad(x, lead + [(max(lo, 0), max(hi, 0)) for lo, hi in pads], mode=_NUMPY_MODES[mode])


def check_fits(layer: Layer, x: Any, pads: Any, mode: str) -> None:
    """``ShapeError`` where torch refuses the padding for this input: reflect needs each pad
    smaller than the (cropped) size, circular at most the size, replicate a non-empty axis,
    and no mode may crop an axis below size 0."""
    shape = jnp.shape(x)
    sizes = shape[len(shape) - len(pads) :]
    for size, (lo, hi) in zip(sizes, pads):
        kept = size + min(lo, 0) + min(hi, 0)
        too_big = {
            "reflect": max(lo, hi) >= kept,
            "circular": max(lo, hi) > kept,
            "replicate": kept < 1 and max(lo, hi) > 0,
        }
        if kept < 0 or too_big.get(mode, False):
            need = {
                "reflect": "each padding smaller than",
                "circular": "each padding at most",
                "replicate": "a non-empty axis of",
            }
            rule = need.get(mode, "a size after cropping of at least 0, not")
            raise ShapeError(
                layer, f"an input whose padded axes fit the {mode} padding {tuple(pads)} ({rule} the size)", shape
            )


@dataclass(frozen=True)
class _PadNd(Layer):
    """Shared N-d padding layer; subclasses fix ``spatial`` (1, 2, 3) and ``mode``.

    ``padding`` is torch's: an int (every side) or a tuple of ``2 * spatial`` ints ordered
    as ``torch.nn.functional.pad`` reads them, last axis first:
    ``(left, right, top, bottom, front, back)``; it is stored as that tuple.
    """

    spatial: ClassVar[int] = 1
    mode: ClassVar[str] = "constant"

    padding: Any

    def __post_init__(self):
        name, n = type(self).__name__, 2 * self.spatial
        items = (self.padding,) * n if _util.is_int(self.padding) else self.padding
        try:
            items = tuple(items)
        except TypeError:
            items = ()
        if len(items) != n or not all(_util.is_int(v) for v in items):
            raise ValueError(
                f"{name}: padding must be an int or a tuple of {n} ints "
                f"(last axis first, as torch.nn.functional.pad), got {self.padding!r}"
            )
        _util.set_field(self, "padding", tuple(int(v) for v in items))

    @property
    def pads(self) -> tuple[tuple[int, int], ...]:
        """``((lo, hi), ...)`` per padded axis, first axis first (torch lists the last axis first)."""
        pairs = [self.padding[i : i + 2] for i in range(0, len(self.padding), 2)]
        return tuple(tuple(p) for p in reversed(pairs))

    @property
    def fill(self) -> float:
        return 0.0

    def apply(self, params, state, x: Array, *, key=None, train=False):
        shape, n = jnp.shape(x), self.spatial
        ranks = (n + 1, n + 2)
        if len(shape) not in ranks and not (self.mode == "constant" and len(shape) >= n):
            axes = {1: "W", 2: "H, W", 3: "D, H, W"}[n]
            raise ShapeError(self, f"input [N, C, {axes}] or unbatched [C, {axes}]", shape)
        check_fits(self, x, self.pads, self.mode)
        return pad(jnp.asarray(x), self.pads, self.mode, self.fill), state


def _doc(torch_name: str, what: str, example: str) -> str:
    return f"""{what}

    PyTorch analogue: ``torch.nn.{torch_name}`` with the same ``padding`` (an int, or a
    tuple ``(left, right[, top, bottom[, front, back]])``, last axis first).
    Negative padding crops, as in torch. Padding too large for the input is a
    :class:`~tlean.ShapeError` at trace time (reflect: each pad smaller than the size;
    circular: at most the size).

    Shapes: ``[N, C, *S] -> [N, C, *S']`` or unbatched ``[C, *S] -> [C, *S']``,
    ``S'[i] = S[i] + lo[i] + hi[i]`` over the last 1, 2 or 3 axes.

    >>> import jax.numpy as jnp
    >>> from tlean import layers as L
    >>> {example}
    """


@dataclass(frozen=True)
class _ConstantPadNd(_PadNd):
    value: float

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.value, (int, float, np.number)) or isinstance(self.value, bool):
            raise ValueError(f"{type(self).__name__}: value must be a number, got {self.value!r}")

    @property
    def fill(self) -> float:
        return self.value


@dataclass(frozen=True)
class _ZeroPadNd(_PadNd):
    pass


_ZERO = "L.ZeroPad{n}d({p}).apply({{}}, {{}}, jnp.ones({shape}))[0].shape\n    {out}"
_CONST = "L.ConstantPad{n}d({p}, 3.5).apply({{}}, {{}}, jnp.ones({shape}))[0][{idx}]\n    Array(3.5, dtype=float32)"
_REFL = "L.ReflectionPad{n}d({p}).apply({{}}, {{}}, jnp.arange(3.0).reshape({shape}))[0]\n    {out}"
_REPL = "L.ReplicationPad{n}d({p}).apply({{}}, {{}}, jnp.arange(3.0).reshape({shape}))[0]\n    {out}"
_CIRC = "L.CircularPad{n}d({p}).apply({{}}, {{}}, jnp.arange(3.0).reshape({shape}))[0]\n    {out}"


@dataclass(frozen=True)
class ZeroPad1d(_ZeroPadNd):
    __doc__ = _doc("ZeroPad1d", "Pads the last axis with zeros.", _ZERO.format(n=1, p=2, shape="(1, 3)", out="(1, 7)"))
    spatial: ClassVar[int] = 1


@dataclass(frozen=True)
class ZeroPad2d(_ZeroPadNd):
    __doc__ = _doc(
        "ZeroPad2d",
        "Pads the last two axes with zeros.",
        _ZERO.format(n=2, p="(1, 1, 2, 0)", shape="(1, 3, 3)", out="(1, 5, 5)"),
    )
    spatial: ClassVar[int] = 2


@dataclass(frozen=True)
class ZeroPad3d(_ZeroPadNd):
    __doc__ = _doc(
        "ZeroPad3d",
        "Pads the last three axes with zeros.",
        _ZERO.format(n=3, p=1, shape="(1, 2, 2, 2)", out="(1, 4, 4, 4)"),
    )
    spatial: ClassVar[int] = 3


@dataclass(frozen=True)
class ConstantPad1d(_ConstantPadNd):
    __doc__ = _doc(
        "ConstantPad1d", "Pads the last axis with ``value``.", _CONST.format(n=1, p=1, shape="(1, 3)", idx="0, 0")
    )
    spatial: ClassVar[int] = 1
    value: float


@dataclass(frozen=True)
class ConstantPad2d(_ConstantPadNd):
    __doc__ = _doc(
        "ConstantPad2d",
        "Pads the last two axes with ``value``.",
        _CONST.format(n=2, p=1, shape="(1, 3, 3)", idx="0, 0, 0"),
    )
    spatial: ClassVar[int] = 2
    value: float


@dataclass(frozen=True)
class ConstantPad3d(_ConstantPadNd):
    __doc__ = _doc(
        "ConstantPad3d",
        "Pads the last three axes with ``value``.",
        _CONST.format(n=3, p=1, shape="(1, 2, 2, 2)", idx="0, 0, 0, 0"),
    )
    spatial: ClassVar[int] = 3
    value: float


@dataclass(frozen=True)
class ReflectionPad1d(_PadNd):
    __doc__ = _doc(
        "ReflectionPad1d",
        "Pads the last axis with its mirror image, the edge not repeated.",
        _REFL.format(n=1, p=2, shape="(1, 3)", out="Array([[2., 1., 0., 1., 2., 1., 0.]], dtype=float32)"),
    )
    spatial: ClassVar[int] = 1
    mode: ClassVar[str] = "reflect"


@dataclass(frozen=True)
class ReflectionPad2d(_PadNd):
    __doc__ = _doc(
        "ReflectionPad2d",
        "Pads the last two axes with their mirror image, the edge not repeated.",
        _REFL.format(n=2, p="(1, 1, 0, 0)", shape="(1, 1, 3)", out="Array([[[1., 0., 1., 2., 1.]]], dtype=float32)"),
    )
    spatial: ClassVar[int] = 2
    mode: ClassVar[str] = "reflect"


@dataclass(frozen=True)
class ReflectionPad3d(_PadNd):
    __doc__ = _doc(
        "ReflectionPad3d",
        "Pads the last three axes with their mirror image, the edge not repeated.",
        _REFL.format(
            n=3, p="(1, 1, 0, 0, 0, 0)", shape="(1, 1, 1, 3)", out="Array([[[[1., 0., 1., 2., 1.]]]], dtype=float32)"
        ),
    )
    spatial: ClassVar[int] = 3
    mode: ClassVar[str] = "reflect"


@dataclass(frozen=True)
class ReplicationPad1d(_PadNd):
    __doc__ = _doc(
        "ReplicationPad1d",
        "Pads the last axis by repeating its edge values.",
        _REPL.format(n=1, p=(2, 1), shape="(1, 3)", out="Array([[0., 0., 0., 1., 2., 2.]], dtype=float32)"),
    )
    spatial: ClassVar[int] = 1
    mode: ClassVar[str] = "replicate"


@dataclass(frozen=True)
class ReplicationPad2d(_PadNd):
    __doc__ = _doc(
        "ReplicationPad2d",
        "Pads the last two axes by repeating their edge values.",
        _REPL.format(n=2, p="(1, 0, 0, 0)", shape="(1, 1, 3)", out="Array([[[0., 0., 1., 2.]]], dtype=float32)"),
    )
    spatial: ClassVar[int] = 2
    mode: ClassVar[str] = "replicate"


@dataclass(frozen=True)
class ReplicationPad3d(_PadNd):
    __doc__ = _doc(
        "ReplicationPad3d",
        "Pads the last three axes by repeating their edge values.",
        _REPL.format(
            n=3, p="(0, 1, 0, 0, 0, 0)", shape="(1, 1, 1, 3)", out="Array([[[[0., 1., 2., 2.]]]], dtype=float32)"
        ),
    )
    spatial: ClassVar[int] = 3
    mode: ClassVar[str] = "replicate"


@dataclass(frozen=True)
class CircularPad1d(_PadNd):
    __doc__ = _doc(
        "CircularPad1d",
        "Pads the last axis by wrapping around (periodic boundary).",
        _CIRC.format(n=1, p=(1, 2), shape="(1, 3)", out="Array([[2., 0., 1., 2., 0., 1.]], dtype=float32)"),
    )
    spatial: ClassVar[int] = 1
    mode: ClassVar[str] = "circular"


@dataclass(frozen=True)
class CircularPad2d(_PadNd):
    __doc__ = _doc(
        "CircularPad2d",
        "Pads the last two axes by wrapping around (periodic boundary).",
        _CIRC.format(n=2, p="(1, 0, 0, 0)", shape="(1, 1, 3)", out="Array([[[2., 0., 1., 2.]]], dtype=float32)"),
    )
    spatial: ClassVar[int] = 2
    mode: ClassVar[str] = "circular"


@dataclass(frozen=True)
class CircularPad3d(_PadNd):
    __doc__ = _doc(
        "CircularPad3d",
        "Pads the last three axes by wrapping around (periodic boundary).",
        _CIRC.format(
            n=3, p="(0, 1, 0, 0, 0, 0)", shape="(1, 1, 1, 3)", out="Array([[[[0., 1., 2., 0.]]]], dtype=float32)"
        ),
    )
    spatial: ClassVar[int] = 3
    mode: ClassVar[str] = "circular"
