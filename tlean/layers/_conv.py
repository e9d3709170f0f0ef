"""Two-dimensional convolution on NCHW (and unbatched CHW) inputs with OIHW weights."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Float

from tlean._core import Layer, ShapeError
from tlean.layers import _init, _util

_PADDING_STRINGS = ("same", "valid")


def pair(layer_name: str, name: str, value: Any, minimum: int = 1) -> tuple[int, int]:
    """``value`` (an int or a pair of ints, each >= ``minimum``) as a pair; ``ValueError`` naming the layer otherwise."""
    items = (value, value) if _util.is_int(value) else value
    try:
        items = tuple(items)
    except TypeError:
        items = ()
    if len(items) != 2 or any(not _util.is_int(v) or v < minimum for v in items):
        raise ValueError(f"{layer_name}: {name} must be an int or a pair of ints >= {minimum}, got {value!r}")
    return tuple(int(v) for v in items)


def check_image(layer: Layer, x: Any, channels: int, ranks: tuple[int, ...] = (3, 4)) -> None:
    """Floating-point ``[N, channels, H, W]`` (or ``[channels, H, W]`` when 3 is in ``ranks``), else an error."""
    _util.check_float(layer, x)
    shape = jnp.shape(x)
    if len(shape) not in ranks or shape[-3] != channels:
        forms = [f"[N, {channels}, H, W]" if r == 4 else f"unbatched [{channels}, H, W]" for r in sorted(ranks, reverse=True)]
        raise ShapeError(layer, "input " + " or ".join(forms), shape)


@dataclass(frozen=True)
class Conv2d(Layer):
    """Two-dimensional cross-correlation, ``y[n, o] = bias[o] + sum_i weight[o, i] * x[n, i]``.

    PyTorch analogue: ``torch.nn.Conv2d`` with the same arguments, parameter names,
    layout (weight ``[out_channels, in_channels // groups, kH, kW]``, OIHW) and default
    init. Computed with ``jax.lax.conv_general_dilated``.

    Args:
      in_channels: channels C of the input.
      out_channels: channels of the output.
      kernel_size: an int or a pair ``(kH, kW)``.
      stride: an int or a pair.
      padding: an int or a pair of zero paddings added to both sides, or ``"valid"``
        (none) or ``"same"`` (output size equals input size; as in PyTorch it needs
        ``stride == 1``, and when ``dilation * (k - 1)`` is odd the extra row or column
        of padding goes at the bottom or right).
      dilation: an int or a pair: spacing between kernel elements.
      groups: split the channels into this many groups convolved independently; it must
        divide both ``in_channels`` and ``out_channels``.
      bias: whether to add a learned bias.
      padding_mode: only ``"zeros"`` is supported (PyTorch also has ``"reflect"``,
        ``"replicate"`` and ``"circular"``); anything else is a ``ValueError``.
      dtype: computation dtype; ``None`` uses the result type of input and weight.
      param_dtype: storage dtype of the parameters (float32 by default).
      precision: ``jax.lax.Precision`` for the convolution.

    Params:
      ``weight [out_channels, in_channels // groups, kH, kW]`` and ``bias [out_channels]``,
      both drawn from U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with ``fan_in = in_channels //
      groups * kH * kW``, which is PyTorch's ``kaiming_uniform_(a=sqrt(5))`` and bias init.

    Shapes:
      ``x [N, in_channels, H, W] -> y [N, out_channels, H', W']`` and unbatched
      ``[in_channels, H, W] -> [out_channels, H', W']``, with
      ``H' = (H + pad_top + pad_bottom - dilation * (kH - 1) - 1) // stride + 1`` (likewise W').
      A kernel larger than the padded input is a :class:`~tlean.ShapeError`, as in PyTorch.

    >>> import jax, jax.numpy as jnp
    >>> from tlean.layers import Conv2d
    >>> conv = Conv2d(3, 8, kernel_size=3, padding="same")
    >>> params, state = conv.init(jax.random.key(0))
    >>> params["weight"].shape
    (8, 3, 3, 3)
    >>> conv.apply(params, state, jnp.ones((2, 3, 5, 5)))[0].shape
    (2, 8, 5, 5)
    """

    in_channels: int
    out_channels: int
    kernel_size: Any
    stride: Any = (1, 1)
    padding: Any = (0, 0)
    dilation: Any = (1, 1)
    groups: int = 1
    bias: bool = True
    padding_mode: str = "zeros"
    dtype: Any = None
    param_dtype: Any = jnp.float32
    precision: Any = None

    def __post_init__(self):
        name = "Conv2d"
        _util.positive(name, in_channels=self.in_channels, out_channels=self.out_channels, groups=self.groups)
        for field, minimum in (("kernel_size", 1), ("stride", 1), ("dilation", 1)):
            _util.set_field(self, field, pair(name, field, getattr(self, field), minimum))
        padding = self.padding
        if isinstance(padding, str):
            if padding not in _PADDING_STRINGS:
                raise ValueError(f"{name}: padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
            if padding == "same" and self.stride != (1, 1):
                raise ValueError(f"{name}: padding='same' is not supported for strided convolutions (stride={self.stride}), as in PyTorch")
        else:
            _util.set_field(self, "padding", pair(name, "padding", padding, 0))
        for channels in ("in_channels", "out_channels"):
            if getattr(self, channels) % self.groups:
                raise ValueError(f"{name}: {channels}={getattr(self, channels)} must be divisible by groups={self.groups}")
        if not isinstance(self.bias, bool):
            raise ValueError(f"{name}: bias must be a bool, got {self.bias!r}")
        if self.padding_mode != "zeros":
            raise ValueError(f"{name}: only padding_mode='zeros' is supported, got {self.padding_mode!r}")
        _util.numeric_fields(self)

    @property
    def pads(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """The explicit ``((top, bottom), (left, right))`` zero padding."""
        if self.padding == "valid":
            return (0, 0), (0, 0)
        if self.padding == "same":
            totals = [d * (k - 1) for d, k in zip(self.dilation, self.kernel_size)]
            return tuple((t // 2, t - t // 2) for t in totals)
        return tuple((p, p) for p in self.padding)

    def init(self, key: jax.Array) -> tuple[dict, dict]:
        kh, kw = self.kernel_size
        fan_in = self.in_channels // self.groups * kh * kw
        shape = (self.out_channels, self.in_channels // self.groups, kh, kw)
        return _init.torch_weight_and_bias(key, shape, fan_in, self.bias, self.param_dtype), {}

    def apply(self, params: dict, state: dict, x: Float[Array, "*batch C H W"], *, key=None, train=False):
        check_image(self, x, self.in_channels)
        check_window(self, x, self.pads, self.kernel_size, self.dilation, "dilated kernel")
        dtype = _util.compute_dtype(self.dtype, x, params["weight"])
        unbatched = jnp.ndim(x) == 3
        h = jnp.asarray(x, dtype)
        h = h[None] if unbatched else h
        y = lax.conv_general_dilated(
            h,
            params["weight"].astype(dtype),
            window_strides=self.stride,
            padding=self.pads,
            rhs_dilation=self.dilation,
            dimension_numbers=("NCHW", "OIHW", "NCHW"),
            feature_group_count=self.groups,
            precision=self.precision,
        )
        if self.bias:
            y = _util.add_bias(y, params["bias"].astype(dtype), axis=1)
        return (y[0] if unbatched else y), state


def check_window(layer: Layer, x: Any, pads: Any, kernel: tuple[int, int], dilation: tuple[int, int], what: str) -> None:
    """``ShapeError`` unless the padded spatial size is at least the (dilated) window in both axes."""
    shape = jnp.shape(x)
    padded = tuple(n + lo + hi for n, (lo, hi) in zip(shape[-2:], pads))
    window = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
    if any(p < w for p, w in zip(padded, window)):
        expected = f"an input whose padded size (H, W) is at least the {what} size {window} (padding {tuple(pads)} makes it {padded})"
        raise ShapeError(layer, expected, shape)
