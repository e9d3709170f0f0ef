"""Resampling with torch's names: Upsample (nearest, nearest-exact, linear, bilinear, bicubic,
trilinear, area), PixelShuffle and PixelUnshuffle.

Upsample works one spatial axis at a time: each output position is a weighted sum of a few
input positions (taps) whose indices and weights are NumPy constants computed at trace time
with torch's float32 formulas, so they match ``torch.nn.functional.interpolate`` index for
index.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from tlean._core import Layer, ShapeError
from tlean.layers import _util
from tlean.layers._pool import adaptive_reduce

_MODE_RANKS = {
    "nearest": (3, 4, 5),
    "nearest-exact": (3, 4, 5),
    "area": (3, 4, 5),
    "linear": (3,),
    "bilinear": (4,),
    "bicubic": (4,),
    "trilinear": (5,),
}
_INTERPOLATING = ("linear", "bilinear", "bicubic", "trilinear")
_CUBIC_A = -0.75  # torch's bicubic convolution coefficient
_F32 = np.float32


def _kernel_scale(size: int, out: int, scale_factor: float | None) -> np.float32:
    """torch's ``compute_scales_value``: ``1 / scale_factor`` when one is used, else ``size / out``."""
    return _F32(1.0 / scale_factor) if scale_factor is not None else _F32(size) / _F32(out)


def _source(size: int, out: int, scale_factor: float | None, align_corners: bool, cubic: bool) -> np.ndarray:
    """torch's ``area_pixel_compute_source_index`` for every output index, in float32."""
    dst = np.arange(out, dtype=_F32)
    if align_corners:
        scale = _F32(size - 1) / _F32(out - 1) if out > 1 else _F32(0)
        return scale * dst
    src = _kernel_scale(size, out, scale_factor) * (dst + _F32(0.5)) - _F32(0.5)
    return src if cubic else np.maximum(src, _F32(0))


def _taps(
    mode: str, size: int, out: int, scale_factor: float | None, align_corners: bool, spatial: int
) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """``[(index [out], weight [out] or None), ...]``: ``y[i] = sum_t weight_t[i] * x[index_t[i]]``."""
    if mode in ("nearest", "nearest-exact"):
        if mode == "nearest" and out == size and spatial == 2:  # torch's 2-d kernel copies an axis of equal size
            return [(np.arange(out), None)]
        offset = _F32(0.5 if mode == "nearest-exact" else 0.0)
        src = np.floor((np.arange(out, dtype=_F32) + offset) * _kernel_scale(size, out, scale_factor))
        return [(np.minimum(src.astype(np.int64), size - 1), None)]
    if mode == "bicubic":
        src = _source(size, out, scale_factor, align_corners, cubic=True)
        base = np.minimum(np.floor(src).astype(np.int64), size - 1)
        t = np.clip(src - base.astype(_F32), _F32(0), _F32(1))
        a = _F32(_CUBIC_A)
        near = lambda x: ((a + 2) * x - (a + 3)) * x * x + 1  # |x| <= 1
        far = lambda x: ((a * x - 5 * a) * x + 8 * a) * x - 4 * a  # 1 < |x| < 2
        weights = (far(t + 1), near(t), near(1 - t), far(2 - t))
        return [(np.clip(base - 1 + j, 0, size - 1), w.astype(_F32)) for j, w in enumerate(weights)]
    # linear, bilinear, trilinear: two taps per axis
    if out == size:
        return [(np.arange(out), None)]
    src = _source(size, out, scale_factor, align_corners, cubic=False)
    lo = src.astype(np.int64)
    hi = lo + (lo < size - 1)
    lam = np.clip(src - lo.astype(_F32), _F32(0), _F32(1))
    return [(lo, (_F32(1) - lam).astype(_F32)), (hi, lam.astype(_F32))]


def _resample_axis(x: jnp.ndarray, axis: int, taps: list) -> jnp.ndarray:
    shape = [1] * x.ndim
    terms = []
    for index, weight in taps:
        term = jnp.take(x, jnp.asarray(index, jnp.int32), axis=axis)
        if weight is not None:
            shape[axis] = weight.shape[0]
            term = term * jnp.asarray(weight, x.dtype).reshape(shape)
        terms.append(term)
    y = terms[0]
    for term in terms[1:]:
        y = y + term
    return y


def _positive_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and float(value) > 0


@dataclass(frozen=True)
class Upsample(Layer):
    """Resizes the spatial axes of ``[N, C, *S]`` by nearest-neighbour or (bi/tri)linear or bicubic interpolation.

    PyTorch analogue: ``torch.nn.Upsample(size=None, scale_factor=None, mode="nearest",
    align_corners=None, recompute_scale_factor=None)`` (``F.interpolate``) with torch's
    positional order, meanings and index rules, checked against torch:

    - ``nearest`` takes input ``min(floor(i * scale), S - 1)`` (torch's rule, which is not
      the centre-aligned one; ``nearest-exact`` is ``floor((i + 0.5) * scale)``).
    - ``linear``/``bilinear``/``trilinear`` (3-, 4-, 5-d inputs) and ``bicubic`` (4-d,
      Keys' cubic with a = -0.75 and clamped borders, which may overshoot the input range,
      as in torch) sample at ``scale * (i + 0.5) - 0.5`` or, with ``align_corners=True``, at
      ``i * (S - 1) / (S' - 1)``.
    - ``area`` is adaptive average pooling to the output size.
    - ``scale`` is ``1 / scale_factor`` when ``scale_factor`` is given and
      ``recompute_scale_factor`` is not True, else ``S / S'``.

    Args:
      size: output spatial size (an int or a tuple with one int per spatial axis).
      scale_factor: a positive number or a tuple of them; the output size is
        ``floor(S * scale_factor)``. Give exactly one of ``size`` and ``scale_factor``.
      mode: one of ``"nearest"``, ``"nearest-exact"``, ``"linear"``, ``"bilinear"``,
        ``"bicubic"``, ``"trilinear"``, ``"area"``.
      align_corners: only for the interpolating modes (``None`` means False), as in torch.
      recompute_scale_factor: with ``scale_factor``, ``True`` samples as if ``size`` had
        been given.

    Shapes: batched only, as torch: ``[N, C, *S] -> [N, C, *S']`` (a 3-d input is
    ``[N, C, L]``, never an unbatched image). The interpolating modes compute in float32
    (or the input's wider float type) and return the input's dtype; nearest also takes
    integer inputs (label maps). Output sizes below 1 are a :class:`~tlean.ShapeError`.

    >>> import jax.numpy as jnp
    >>> from tlean.layers import Upsample
    >>> Upsample(scale_factor=2, mode="linear", align_corners=True).apply({}, {}, jnp.arange(3.0).reshape(1, 1, 3))[0]
    Array([[[0. , 0.4, 0.8, 1.2, 1.6, 2. ]]], dtype=float32)
    """

    size: Any = None
    scale_factor: Any = None
    mode: str = "nearest"
    align_corners: bool | None = None
    recompute_scale_factor: bool | None = None

    def __post_init__(self):
        name = "Upsample"
        if (self.size is None) == (self.scale_factor is None):
            raise ValueError(
                f"{name}: give exactly one of size and scale_factor, got size={self.size!r}, scale_factor={self.scale_factor!r}"
            )
        if self.size is not None:
            sizes = (
                (self.size,)
                if _util.is_int(self.size)
                else tuple(self.size)
                if isinstance(self.size, (tuple, list))
                else ()
            )
            if not sizes or not all(_util.is_int(s) and s >= 1 for s in sizes):
                raise ValueError(f"{name}: size must be an int >= 1 or a tuple of them, got {self.size!r}")
            _util.set_field(self, "size", int(sizes[0]) if _util.is_int(self.size) else tuple(int(s) for s in sizes))
        else:
            factors = tuple(self.scale_factor) if isinstance(self.scale_factor, (tuple, list)) else (self.scale_factor,)
            if not all(_positive_number(f) for f in factors):
                raise ValueError(
                    f"{name}: scale_factor must be a number > 0 or a tuple of them, got {self.scale_factor!r}"
                )
            as_float = tuple(float(f) for f in factors)
            _util.set_field(
                self, "scale_factor", as_float if isinstance(self.scale_factor, (tuple, list)) else as_float[0]
            )
        if self.mode not in _MODE_RANKS:
            raise ValueError(f"{name}: mode must be one of {', '.join(map(repr, _MODE_RANKS))}, got {self.mode!r}")
        if self.align_corners is not None:
            if not isinstance(self.align_corners, bool):
                raise ValueError(f"{name}: align_corners must be a bool or None, got {self.align_corners!r}")
            if self.mode not in _INTERPOLATING:
                raise ValueError(
                    f"{name}: align_corners can only be set with the interpolating modes "
                    f"{', '.join(_INTERPOLATING)}, as in PyTorch; got mode={self.mode!r}"
                )
        if self.recompute_scale_factor is not None:
            if not isinstance(self.recompute_scale_factor, bool):
                raise ValueError(
                    f"{name}: recompute_scale_factor must be a bool or None, got {self.recompute_scale_factor!r}"
                )
            if self.recompute_scale_factor and self.size is not None:
                raise ValueError(
                    f"{name}: recompute_scale_factor is not meaningful with an explicit size, as in PyTorch"
                )

    def _sizes(self, shape: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[float | None, ...]]:
        """Output spatial sizes and the scale factors the kernels use (None: size / out)."""
        n = len(shape) - 2
        wanted = self.size if self.size is not None else self.scale_factor
        per_axis = wanted if isinstance(wanted, tuple) else (wanted,) * n
        if len(per_axis) != n:
            what = "size" if self.size is not None else "scale_factor"
            raise ShapeError(self, f"an input with {len(per_axis)} spatial axes, one per entry of {what}", shape)
        if self.size is not None:
            return per_axis, (None,) * n
        out = tuple(int(np.floor(s * f)) for s, f in zip(shape[2:], per_axis))
        return out, ((None,) * n if self.recompute_scale_factor else per_axis)

    def apply(self, params, state, x: Array, *, key=None, train=False):
        shape = jnp.shape(x)
        ranks = _MODE_RANKS[self.mode]
        if len(shape) not in ranks:
            forms = {3: "[N, C, L]", 4: "[N, C, H, W]", 5: "[N, C, D, H, W]"}
            raise ShapeError(
                self,
                f"input {' or '.join(forms[r] for r in ranks)} (mode={self.mode!r}; batched only, as torch)",
                shape,
            )
        if self.mode.startswith("nearest"):
            dtype = getattr(x, "dtype", None)
            if dtype is None or not (jnp.issubdtype(dtype, jnp.number) or dtype == jnp.bool_):
                _util.check_float(self, x)
        else:
            _util.check_float(self, x)
        out, factors = self._sizes(shape)
        if any(o < 1 for o in out) or 0 in shape[2:]:
            raise ShapeError(
                self, f"an input giving an output size >= 1 along every spatial axis (this one gives {out})", shape
            )
        x = jnp.asarray(x)
        if self.mode == "area":
            return adaptive_reduce(x.astype(jnp.promote_types(x.dtype, jnp.float32)), out, "avg").astype(x.dtype), state
        h = x if self.mode.startswith("nearest") else x.astype(jnp.promote_types(x.dtype, jnp.float32))
        for i, (size, o, f) in enumerate(zip(shape[2:], out, factors)):
            h = _resample_axis(h, 2 + i, _taps(self.mode, size, o, f, bool(self.align_corners), len(out)))
        return h.astype(x.dtype), state


def _factor(layer_name: str, name: str, value: Any) -> int:
    if not _util.is_int(value) or value < 1:
        raise ValueError(f"{layer_name}: {name} must be a positive int, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class PixelShuffle(Layer):
    """Rearranges ``[*, C * r^2, H, W]`` into ``[*, C, H * r, W * r]`` (sub-pixel convolution).

    PyTorch analogue: ``torch.nn.PixelShuffle(upscale_factor)``, same element order:
    ``y[..., c, h * r + i, w * r + j] = x[..., c * r^2 + i * r + j, h, w]``. Any number of
    leading axes (at least three axes in all). Channels not divisible by ``r^2`` are a
    :class:`~tlean.ShapeError`.

    >>> import jax.numpy as jnp
    >>> from tlean.layers import PixelShuffle
    >>> PixelShuffle(2).apply({}, {}, jnp.arange(4.0).reshape(4, 1, 1))[0]
    Array([[[0., 1.],
            [2., 3.]]], dtype=float32)
    """

    upscale_factor: int

    def __post_init__(self):
        _util.set_field(self, "upscale_factor", _factor("PixelShuffle", "upscale_factor", self.upscale_factor))

    def apply(self, params, state, x: Array, *, key=None, train=False):
        r, shape = self.upscale_factor, jnp.shape(x)
        if len(shape) < 3 or shape[-3] % (r * r):
            raise ShapeError(
                self, f"input [*, C * {r * r}, H, W] (channels divisible by upscale_factor ** 2 = {r * r})", shape
            )
        *lead, c, h, w = shape
        y = jnp.reshape(x, (*lead, c // (r * r), r, r, h, w))
        k = len(lead)
        y = jnp.transpose(y, (*range(k), k, k + 3, k + 1, k + 4, k + 2))
        return y.reshape(*lead, c // (r * r), h * r, w * r), state


@dataclass(frozen=True)
class PixelUnshuffle(Layer):
    """Rearranges ``[*, C, H * r, W * r]`` into ``[*, C * r^2, H, W]``, the inverse of :class:`PixelShuffle`.

    PyTorch analogue: ``torch.nn.PixelUnshuffle(downscale_factor)``, same element order.
    Any number of leading axes (at least three in all). H or W not divisible by ``r`` is a
    :class:`~tlean.ShapeError`.

    >>> import jax.numpy as jnp
    >>> from tlean.layers import PixelUnshuffle
    >>> PixelUnshuffle(2).apply({}, {}, jnp.arange(4.0).reshape(1, 2, 2))[0][:, 0, 0]
    Array([0., 1., 2., 3.], dtype=float32)
    """

    downscale_factor: int

    def __post_init__(self):
        _util.set_field(self, "downscale_factor", _factor("PixelUnshuffle", "downscale_factor", self.downscale_factor))

    def apply(self, params, state, x: Array, *, key=None, train=False):
        r, shape = self.downscale_factor, jnp.shape(x)
        if len(shape) < 3 or shape[-2] % r or shape[-1] % r:
            raise ShapeError(
                self, f"input [*, C, H * {r}, W * {r}] (H and W divisible by downscale_factor = {r})", shape
            )
        *lead, c, h, w = shape
        y = jnp.reshape(x, (*lead, c, h // r, r, w // r, r))
        k = len(lead)
        y = jnp.transpose(y, (*range(k), k, k + 2, k + 4, k + 1, k + 3))
        return y.reshape(*lead, c * r * r, h // r, w // r), state
