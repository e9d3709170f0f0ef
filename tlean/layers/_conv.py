"""Convolution and transposed convolution: one N-d implementation each, with torch's 1d/2d/3d names.

Inputs are channels-first, ``[N, C, *spatial]`` or unbatched ``[C, *spatial]``; weights have
torch's layouts (``[out, in / groups, *k]`` and, transposed, ``[in, out / groups, *k]``).
"""

from __future__ import annotations

import math
from dataclasses import KW_ONLY, dataclass
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Float

from tlean._core import Layer, ShapeError
from tlean.layers import _init, _layout, _util
from tlean.layers._padding import check_fits, pad

_PADDING_STRINGS = ("same", "valid")
_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
AXES = {1: "L", 2: "H, W", 3: "D, H, W"}
_TUPLE_WORDS = {1: "a 1-tuple", 2: "a pair", 3: "a triple"}


def ntuple(layer_name: str, name: str, value: Any, n: int, minimum: int = 1) -> tuple[int, ...]:
    """``value`` (an int or ``n`` ints, each >= ``minimum``) as an ``n``-tuple; ``ValueError`` naming the layer otherwise."""
    items = (value,) * n if _util.is_int(value) else value
    try:
        items = tuple(items)
    except TypeError:
        items = ()
    if len(items) != n or any(not _util.is_int(v) or v < minimum for v in items):
        raise ValueError(
            f"{layer_name}: {name} must be an int or {_TUPLE_WORDS[n]} of ints >= {minimum}, got {value!r}"
        )
    return tuple(int(v) for v in items)


def pair(layer_name: str, name: str, value: Any, minimum: int = 1) -> tuple[int, int]:
    """``ntuple`` with ``n = 2``."""
    a, b = ntuple(layer_name, name, value, 2, minimum)
    return a, b


def check_input(layer: Layer, x: Any, channels: int | None, spatial: int, unbatched: bool = True) -> None:
    """Floating-point ``[N, channels, *spatial]`` (or ``[channels, *spatial]`` when ``unbatched``), else an error.

    ``channels=None`` accepts any channel count (pooling layers).
    """
    _util.check_float(layer, x)
    shape = jnp.shape(x)
    ranks = (spatial + 2, spatial + 1) if unbatched else (spatial + 2,)
    if len(shape) not in ranks or (channels is not None and shape[-spatial - 1] != channels):
        c = "C" if channels is None else channels
        forms = [f"[N, {c}, {AXES[spatial]}]"] + ([f"unbatched [{c}, {AXES[spatial]}]"] if unbatched else [])
        raise ShapeError(layer, "input " + " or ".join(forms), shape)


def check_image(layer: Layer, x: Any, channels: int, ranks: tuple[int, ...] = (3, 4)) -> None:
    """Floating-point ``[N, channels, H, W]`` (or ``[channels, H, W]`` when 3 is in ``ranks``), else an error."""
    check_input(layer, x, channels, 2, unbatched=3 in ranks)


def check_window(
    layer: Layer, x: Any, pads: Any, kernel: tuple[int, ...], dilation: tuple[int, ...], what: str
) -> None:
    """``ShapeError`` unless the padded spatial size is at least the (dilated) window along every axis."""
    shape, n = jnp.shape(x), len(kernel)
    padded = tuple(s + lo + hi for s, (lo, hi) in zip(shape[len(shape) - n :], pads))
    window = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
    if any(p < w for p, w in zip(padded, window)):
        expected = (
            f"an input whose padded size ({AXES[n]}) is at least the {what} size {window} "
            f"(padding {tuple(pads)} makes it {padded})"
        )
        raise ShapeError(layer, expected, shape)


def convolve(h: jax.Array, w: jax.Array, bias: jax.Array | None, **options: Any) -> jax.Array:
    """``lax.conv_general_dilated`` of ``h [N, C, *S]`` with ``w [O, I, *k]`` (plus ``bias [O]``),
    channels-first in and out; computed channels-last where :mod:`~tlean.layers._layout` says so."""
    s = "DHW"[3 - (h.ndim - 2) :]
    last = _layout.enabled()
    if last:
        h = _layout.to_last(h, 1)
    io = "N" + s + "C" if last else "NC" + s
    y = lax.conv_general_dilated(h, w, dimension_numbers=(io, "OI" + s, io), **options)
    if bias is not None:
        y = _util.add_bias(y, bias, axis=-1 if last else 1)
    return _layout.to_first(y, 1) if last else y


@dataclass(frozen=True)
class _ConvNd(Layer):
    """Shared N-d convolution: the maths of :class:`Conv1d`, :class:`Conv2d` and :class:`Conv3d`."""

    spatial: ClassVar[int] = 2

    in_channels: int
    out_channels: int
    kernel_size: Any
    stride: Any = 1
    padding: Any = 0
    dilation: Any = 1
    groups: int = 1
    bias: bool = True
    padding_mode: str = "zeros"
    _: KW_ONLY
    dtype: Any = None
    param_dtype: Any = jnp.float32
    precision: Any = None

    def __post_init__(self):
        name, n = type(self).__name__, self.spatial
        _util.positive(name, in_channels=self.in_channels, out_channels=self.out_channels, groups=self.groups)
        for field, minimum in (("kernel_size", 1), ("stride", 1), ("dilation", 1)):
            _util.set_field(self, field, ntuple(name, field, getattr(self, field), n, minimum))
        padding = self.padding
        if isinstance(padding, str):
            if padding not in _PADDING_STRINGS:
                raise ValueError(
                    f"{name}: padding must be an int, {_TUPLE_WORDS[n]}, 'same' or 'valid', got {padding!r}"
                )
            if padding == "same" and self.stride != (1,) * n:
                raise ValueError(
                    f"{name}: padding='same' is not supported for strided convolutions (stride={self.stride}), as in PyTorch"
                )
        else:
            _util.set_field(self, "padding", ntuple(name, "padding", padding, n, 0))
        for channels in ("in_channels", "out_channels"):
            if getattr(self, channels) % self.groups:
                raise ValueError(
                    f"{name}: {channels}={getattr(self, channels)} must be divisible by groups={self.groups}"
                )
        _util.set_field(self, "bias", _util.check_flag(name, "bias", self.bias))
        if self.padding_mode not in _PADDING_MODES:
            raise ValueError(
                f"{name}: padding_mode must be one of {', '.join(map(repr, _PADDING_MODES))}, got {self.padding_mode!r}"
            )
        _util.numeric_fields(self)

    @property
    def pads(self) -> tuple[tuple[int, int], ...]:
        """The explicit ``(lo, hi)`` padding per spatial axis (torch puts the odd one of ``"same"`` at the end)."""
        if self.padding == "valid":
            return ((0, 0),) * self.spatial
        if self.padding == "same":
            totals = [d * (k - 1) for d, k in zip(self.dilation, self.kernel_size)]
            return tuple((t // 2, t - t // 2) for t in totals)
        return tuple((p, p) for p in self.padding)

    def init(self, key: jax.Array) -> tuple[dict, dict]:
        fan_in = self.in_channels // self.groups * math.prod(self.kernel_size)
        shape = (self.out_channels, self.in_channels // self.groups, *self.kernel_size)
        return _init.torch_weight_and_bias(key, shape, fan_in, self.bias, self.param_dtype), {}

    def apply(self, params: dict, state: dict, x: Float[Array, "..."], *, key=None, train=False):
        check_input(self, x, self.in_channels, self.spatial)
        if self.padding_mode != "zeros":
            check_fits(self, x, self.pads, self.padding_mode)
        check_window(self, x, self.pads, self.kernel_size, self.dilation, "dilated kernel")
        dtype = _util.compute_dtype(self.dtype, x, params["weight"])
        unbatched = jnp.ndim(x) == self.spatial + 1
        h = jnp.asarray(x, dtype)
        h = h[None] if unbatched else h
        pads = self.pads
        if self.padding_mode != "zeros":
            h, pads = pad(h, pads, self.padding_mode), ((0, 0),) * self.spatial
        y = convolve(
            h,
            params["weight"].astype(dtype),
            params["bias"].astype(dtype) if self.bias else None,
            window_strides=self.stride,
            padding=pads,
            rhs_dilation=self.dilation,
            feature_group_count=self.groups,
            precision=self.precision,
        )
        return (y[0] if unbatched else y), state


_CONV_DOC = """{n}-d cross-correlation, ``y[n, o] = bias[o] + sum_i weight[o, i] * x[n, i]`` {where}.

    PyTorch analogue: ``torch.nn.Conv{n}d`` with the same positional arguments, parameter
    names, layout (weight ``[out_channels, in_channels // groups, {k}]``) and default init.
    Computed with ``jax.lax.conv_general_dilated``; one N-d implementation serves
    Conv1d, Conv2d and Conv3d. On the CPU it computes channels-last inside (the API stays
    channels-first; see the Speed page).

    Args:
      in_channels: channels C of the input.
      out_channels: channels of the output.
      kernel_size: an int or {tup} of ints.
      stride: an int or {tup}.
      padding: an int or {tup} of paddings added to both sides, or ``"valid"`` (none)
        or ``"same"`` (output size equals input size; as in PyTorch it needs
        ``stride == 1``, and when ``dilation * (k - 1)`` is odd the extra element of
        padding goes at the end).
      dilation: an int or {tup}: spacing between kernel elements.
      groups: split the channels into this many groups convolved independently; it must
        divide both ``in_channels`` and ``out_channels``.
      bias: whether to add a learned bias.
      padding_mode: ``"zeros"``, ``"reflect"``, ``"replicate"`` or ``"circular"``, as in
        PyTorch (the padding is applied with that mode before a convolution without
        padding; reflect needs each pad smaller than the input, circular at most its size).
      dtype: keyword-only; computation dtype (``None``: the result type of input and weight).
      param_dtype: keyword-only; storage dtype of the parameters (float32; torch's ``dtype``).
      precision: keyword-only; ``jax.lax.Precision`` for the convolution.

    Params:
      ``weight [out_channels, in_channels // groups, {k}]`` and ``bias [out_channels]``,
      both drawn from U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with ``fan_in = in_channels //
      groups * prod(kernel_size)``, PyTorch's ``kaiming_uniform_(a=sqrt(5))`` and bias init.

    Shapes:
      ``x [N, in_channels, {axes}] -> y [N, out_channels, {axes_out}]`` and unbatched
      ``[in_channels, {axes}] -> [out_channels, {axes_out}]``, with
      ``{a}' = ({a} + pad_lo + pad_hi - dilation * (k - 1) - 1) // stride + 1`` per axis.
      A kernel larger than the padded input is a :class:`~tlean.ShapeError`, as in PyTorch.

    >>> import jax, jax.numpy as jnp
    >>> from tlean.layers import Conv{n}d
    >>> conv = Conv{n}d(3, 8, kernel_size=3, padding="same", padding_mode="reflect")
    >>> params, state = conv.init(jax.random.key(0))
    >>> params["weight"].shape
    (8, 3, {k3})
    >>> conv.apply(params, state, jnp.ones((2, 3, {five})))[0].shape
    (2, 8, {five})
    """


def _conv_doc(n: int, template: str) -> str:
    axes = AXES[n]
    return template.format(
        n=n,
        tup=_TUPLE_WORDS[n],
        axes=axes,
        axes_out=", ".join(a + "'" for a in axes.split(", ")),
        a=axes.split(", ")[-1],
        k=", ".join(f"k{a}" for a in axes.split(", ")) if n > 1 else "k",
        k3=", ".join(["3"] * n),
        five=", ".join(["5"] * n),
        where={1: "over the length axis", 2: "over the height and width axes", 3: "over depth, height and width"}[n],
    )


@dataclass(frozen=True)
class Conv1d(_ConvNd):
    __doc__ = _conv_doc(1, _CONV_DOC)
    spatial: ClassVar[int] = 1
    stride: Any = (1,)
    padding: Any = (0,)
    dilation: Any = (1,)


@dataclass(frozen=True)
class Conv2d(_ConvNd):
    __doc__ = _conv_doc(2, _CONV_DOC)
    spatial: ClassVar[int] = 2
    stride: Any = (1, 1)
    padding: Any = (0, 0)
    dilation: Any = (1, 1)


@dataclass(frozen=True)
class Conv3d(_ConvNd):
    __doc__ = _conv_doc(3, _CONV_DOC)
    spatial: ClassVar[int] = 3
    stride: Any = (1, 1, 1)
    padding: Any = (0, 0, 0)
    dilation: Any = (1, 1, 1)


@dataclass(frozen=True)
class _ConvTransposeNd(Layer):
    """Shared N-d transposed convolution: the maths of ConvTranspose1d/2d/3d."""

    spatial: ClassVar[int] = 2

    in_channels: int
    out_channels: int
    kernel_size: Any
    stride: Any = 1
    padding: Any = 0
    output_padding: Any = 0
    groups: int = 1
    bias: bool = True
    dilation: Any = 1
    padding_mode: str = "zeros"
    _: KW_ONLY
    dtype: Any = None
    param_dtype: Any = jnp.float32
    precision: Any = None

    def __post_init__(self):
        name, n = type(self).__name__, self.spatial
        _util.positive(name, in_channels=self.in_channels, out_channels=self.out_channels, groups=self.groups)
        for field, minimum in (
            ("kernel_size", 1),
            ("stride", 1),
            ("padding", 0),
            ("output_padding", 0),
            ("dilation", 1),
        ):
            _util.set_field(self, field, ntuple(name, field, getattr(self, field), n, minimum))
        for channels in ("in_channels", "out_channels"):
            if getattr(self, channels) % self.groups:
                raise ValueError(
                    f"{name}: {channels}={getattr(self, channels)} must be divisible by groups={self.groups}"
                )
        if any(op >= s and op >= d for op, s, d in zip(self.output_padding, self.stride, self.dilation)):
            raise ValueError(
                f"{name}: output_padding must be smaller than either stride or dilation along every axis, as in PyTorch; "
                f"got output_padding={self.output_padding}, stride={self.stride}, dilation={self.dilation}"
            )
        _util.set_field(self, "bias", _util.check_flag(name, "bias", self.bias))
        if self.padding_mode != "zeros":
            raise ValueError(
                f"{name}: only padding_mode='zeros' is supported, as in PyTorch; got {self.padding_mode!r}"
            )
        _util.numeric_fields(self)

    def init(self, key: jax.Array) -> tuple[dict, dict]:
        # torch computes fan_in from weight.shape[1] * receptive field: out_channels // groups * prod(k).
        fan_in = self.out_channels // self.groups * math.prod(self.kernel_size)
        shape = (self.in_channels, self.out_channels // self.groups, *self.kernel_size)
        k_weight, k_bias = jax.random.split(key)
        bound = _init.fan_in_bound(fan_in)
        params = {"weight": _init.uniform(k_weight, shape, bound, self.param_dtype)}
        if self.bias:
            params["bias"] = _init.uniform(k_bias, (self.out_channels,), bound, self.param_dtype)
        return params, {}

    def output_padding_for(self, shape: tuple[int, ...], output_size: Any = None) -> tuple[int, ...]:
        """``output_padding``, or the padding that gives ``output_size`` (torch's forward argument)."""
        if output_size is None:
            return self.output_padding
        n = self.spatial
        sizes = tuple(output_size)[-n:] if len(tuple(output_size)) in (n, len(shape)) else None
        smallest = tuple(
            (s - 1) * st - 2 * p + d * (k - 1) + 1
            for s, st, p, d, k in zip(shape[-n:], self.stride, self.padding, self.dilation, self.kernel_size)
        )
        largest = tuple(lo + st - 1 for lo, st in zip(smallest, self.stride))
        if sizes is None or any(
            not _util.is_int(o) or not lo <= o <= hi for o, lo, hi in zip(sizes, smallest, largest)
        ):
            raise ValueError(
                f"{self!r}: output_size must give {n} sizes between {smallest} and {largest} "
                f"for an input of shape {tuple(shape)}, got {output_size!r}"
            )
        return tuple(int(o) - lo for o, lo in zip(sizes, smallest))

    def apply(self, params: dict, state: dict, x: Float[Array, "..."], *, output_size=None, key=None, train=False):
        n, g = self.spatial, self.groups
        check_input(self, x, self.in_channels, n)
        shape = jnp.shape(x)
        output_padding = self.output_padding_for(shape, output_size)
        span = [d * (k - 1) for d, k in zip(self.dilation, self.kernel_size)]
        out = tuple(
            (s - 1) * st - 2 * p + sp + op + 1
            for s, st, p, sp, op in zip(shape[-n:], self.stride, self.padding, span, output_padding)
        )
        if any(o < 1 for o in out):
            raise ShapeError(
                self, f"an input giving an output size of at least 1 along every axis (this one gives {out})", shape
            )
        dtype = _util.compute_dtype(self.dtype, x, params["weight"])
        unbatched = jnp.ndim(x) == n + 1
        h = jnp.asarray(x, dtype)
        h = h[None] if unbatched else h
        # The gradient of a convolution: dilate the input by the stride and correlate with the
        # flipped kernel, weight [in, out/g, *k] regrouped as [out, in/g, *k].
        w = params["weight"].astype(dtype)
        k = self.kernel_size
        w = w.reshape(g, self.in_channels // g, self.out_channels // g, *k).swapaxes(1, 2)
        w = jnp.flip(w.reshape(self.out_channels, self.in_channels // g, *k), axis=tuple(range(2, 2 + n)))
        y = convolve(
            h,
            w,
            params["bias"].astype(dtype) if self.bias else None,
            window_strides=(1,) * n,
            padding=[(sp - p, sp - p + op) for sp, p, op in zip(span, self.padding, output_padding)],
            lhs_dilation=self.stride,
            rhs_dilation=self.dilation,
            feature_group_count=g,
            precision=self.precision,
        )
        return (y[0] if unbatched else y), state


_TRANSPOSE_DOC = """{n}-d transposed convolution (the gradient of Conv{n}d with respect to its input).

    PyTorch analogue: ``torch.nn.ConvTranspose{n}d`` with torch's positional order
    ``(in_channels, out_channels, kernel_size, stride, padding, output_padding, groups,
    bias, dilation, padding_mode)``, parameter names, layout and default init. Only
    ``padding_mode="zeros"`` exists, as in torch. ``output_padding`` must be smaller
    than ``stride`` or ``dilation`` along each axis (``ValueError``). ``apply`` takes
    torch's forward argument ``output_size`` (the spatial sizes, optionally preceded by
    N and C), which picks the output padding as torch does.

    Args:
      in_channels, out_channels, kernel_size, stride, dilation, groups, bias: as Conv{n}d.
      padding: an int or {tup}: ``dilation * (k - 1) - padding`` zeros are added to both
        sides of the stride-dilated input (so larger padding shrinks the output).
      output_padding: extra size added to one side of the output.
      dtype, param_dtype, precision: keyword-only, as Conv{n}d.

    Params:
      ``weight [in_channels, out_channels // groups, {k}]`` and ``bias [out_channels]``,
      U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with torch's ``fan_in = out_channels // groups
      * prod(kernel_size)``.

    Shapes:
      ``[N, in_channels, {axes}] -> [N, out_channels, {axes_out}]`` and unbatched, with
      ``{a}' = ({a} - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1``.

    >>> import jax, jax.numpy as jnp
    >>> from tlean.layers import ConvTranspose{n}d
    >>> up = ConvTranspose{n}d(4, 2, 3, stride=2, padding=1, output_padding=1)
    >>> params, state = up.init(jax.random.key(0))
    >>> params["weight"].shape
    (4, 2, {k3})
    >>> up.apply(params, state, jnp.ones((4, {five})))[0].shape
    (2, {ten})
    """


@dataclass(frozen=True)
class ConvTranspose1d(_ConvTransposeNd):
    __doc__ = _conv_doc(1, _TRANSPOSE_DOC.replace("{ten}", "10"))
    spatial: ClassVar[int] = 1
    stride: Any = (1,)
    padding: Any = (0,)
    output_padding: Any = (0,)
    dilation: Any = (1,)


@dataclass(frozen=True)
class ConvTranspose2d(_ConvTransposeNd):
    __doc__ = _conv_doc(2, _TRANSPOSE_DOC.replace("{ten}", "10, 10"))
    spatial: ClassVar[int] = 2
    stride: Any = (1, 1)
    padding: Any = (0, 0)
    output_padding: Any = (0, 0)
    dilation: Any = (1, 1)


@dataclass(frozen=True)
class ConvTranspose3d(_ConvTransposeNd):
    __doc__ = _conv_doc(3, _TRANSPOSE_DOC.replace("{ten}", "10, 10, 10"))
    spatial: ClassVar[int] = 3
    stride: Any = (1, 1, 1)
    padding: Any = (0, 0, 0)
    output_padding: Any = (0, 0, 0)
    dilation: Any = (1, 1, 1)
