"""Residual blocks built from the layers: ResNet's BasicBlock and Bottleneck."""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass
from typing import Any, ClassVar

import jax
from jaxtyping import Array, Float

from tlean._core import Layer, Seq, seq, sublayer
from tlean.layers import _util
from tlean.layers._conv import Conv2d, check_image
from tlean.layers._norm import BatchNorm2d


@dataclass(frozen=True)
class BasicBlock(Layer):
    """ResNet-18/34's basic block: ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``.

    PyTorch analogue: ``torchvision.models.resnet.BasicBlock(inplanes, planes, stride,
    downsample)`` with torchvision's names, so its state_dict loads key by key. ``conv1``
    is a 3x3 convolution with ``stride`` and ``conv2`` a 3x3 one, both padded by 1 and
    without bias, each followed by a :class:`BatchNorm2d`. The shortcut is the identity,
    or, when ``stride != 1`` or ``in_planes != planes``, ``downsample``: a 1x1 convolution
    with ``stride`` (no bias) and a BatchNorm2d, as torchvision builds it for ResNet-18.

    A composite: its children ``conv1``, ``bn1``, ``conv2``, ``bn2`` and ``downsample`` (a
    seq, PyTorch's ``downsample.0.weight`` and ``downsample.1.running_mean``, absent when
    the block does not project) are fields, initialised with their default (PyTorch)
    initialisers from ``SeedStream(key)``, one key each in that order (the seq threads
    the stream). torchvision's ResNet re-initialises convolutions with
    ``kaiming_normal_(fan_out)`` and can zero the last BN's weight; that is not replicated here.

    Args:
      in_planes: input channels.
      planes: output channels (``expansion = 1``).
      stride: stride of ``conv1`` and of the projection.
      axis_name: passed to the BatchNorm2d layers (see there).
      dtype, param_dtype, precision: passed to the convolutions and norms.

    Shapes: ``[N, in_planes, H, W] -> [N, planes, H', W']`` with ``H' = (H - 1) // stride + 1``.

    >>> import jax, jax.numpy as jnp
    >>> from tlean.layers import BasicBlock
    >>> block = BasicBlock(4, 8, stride=2)
    >>> params, state = block.init(jax.random.key(0))
    >>> sorted(params), params["downsample"][0]["weight"].shape
    (['bn1', 'bn2', 'conv1', 'conv2', 'downsample'], (8, 4, 1, 1))
    >>> block.apply(params, state, jnp.ones((2, 4, 6, 6)))[0].shape
    (2, 8, 3, 3)
    """

    expansion: ClassVar[int] = 1

    in_planes: int = _util.size()
    planes: int = _util.size()
    stride: int = _util.size(1)
    _: KW_ONLY
    axis_name: Any = None
    dtype: Any = _util.dtype_field()
    param_dtype: Any = _util.param_dtype_field()
    precision: Any = _util.precision_field()

    conv1: Conv2d = sublayer()
    bn1: BatchNorm2d = sublayer()
    conv2: Conv2d = sublayer()
    bn2: BatchNorm2d = sublayer()
    downsample: Seq | None = sublayer(default=None)

    def __post_init__(self):
        if isinstance(self.axis_name, list):
            _util.set_field(self, "axis_name", tuple(self.axis_name))

        def conv(cin: int, cout: int, k: int, stride: int) -> Conv2d:
            return Conv2d(
                cin,
                cout,
                k,
                stride=stride,
                padding=k // 2,
                bias=False,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                precision=self.precision,
            )

        def bn(c: int) -> BatchNorm2d:
            return BatchNorm2d(c, axis_name=self.axis_name, dtype=self.dtype, param_dtype=self.param_dtype)

        _util.set_field(self, "conv1", conv(self.in_planes, self.planes, 3, self.stride))
        _util.set_field(self, "bn1", bn(self.planes))
        _util.set_field(self, "conv2", conv(self.planes, self.planes, 3, 1))
        _util.set_field(self, "bn2", bn(self.planes))
        if self.projects:
            _util.set_field(self, "downsample", seq(conv(self.in_planes, self.planes, 1, self.stride), bn(self.planes)))

    @property
    def projects(self) -> bool:
        """Whether the shortcut is the ``downsample`` projection rather than the identity."""
        return self.stride != 1 or self.in_planes != self.planes

    def apply(self, params: dict, state: dict, x: Float[Array, "N C H W"], *, key=None, train=False):
        check_image(self, x, self.in_planes, ranks=(4,))
        c = self.bind(params, state, train=train)
        h = jax.nn.relu(c.bn1(c.conv1(x)))
        h = c.bn2(c.conv2(h))
        shortcut = c.downsample(x) if self.projects else x.astype(h.dtype)
        return jax.nn.relu(h + shortcut), c.state


@dataclass(frozen=True)
class Bottleneck(Layer):
    """ResNet-50/101/152's bottleneck block: 1x1 reduce, 3x3, 1x1 expand (``expansion = 4``), plus the shortcut.

    ``relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x)))))))) + shortcut(x))`` with
    ``width = int(planes * base_width / 64) * groups``: ``conv1`` is 1x1 ``in_planes -> width``,
    ``conv2`` 3x3 ``width -> width`` with ``stride``, padding 1 and ``groups``, ``conv3`` 1x1
    ``width -> 4 * planes``, none with bias, each followed by a :class:`BatchNorm2d`. The
    shortcut is the identity, or, when ``stride != 1`` or ``in_planes != 4 * planes``,
    ``downsample``: a 1x1 convolution with ``stride`` (no bias) and a BatchNorm2d.

    PyTorch analogue: ``torchvision.models.resnet.Bottleneck(inplanes, planes, stride,
    downsample, groups, base_width)`` (ResNet v1.5: the stride sits on the 3x3 ``conv2``,
    not on ``conv1`` as in the original paper), with torchvision's names (``conv1`` ..
    ``bn3``, ``downsample.0.weight``, ``downsample.1.running_mean``), so its state_dict
    loads key by key. What differs: torchvision builds ``downsample`` outside the block
    and passes it in; here the block builds it from ``stride`` and the widths, as
    torchvision's ``_make_layer`` does. No ``dilation`` (replace_stride_with_dilation).

    A composite: its children ``conv1``, ``bn1``, ``conv2``, ``bn2``, ``conv3``, ``bn3`` and
    ``downsample`` draw one key each, in that order, from ``SeedStream(key)`` and use
    their PyTorch default initialisers; :func:`tlean.models.resnet50` re-initialises them
    as torchvision's ResNet does.

    Args:
      in_planes: input channels.
      planes: the bottleneck's base width; the output has ``4 * planes`` channels.
      stride: stride of ``conv2`` and of the projection.
      groups: groups of ``conv2`` (ResNeXt).
      base_width: width per group (64; 128 for Wide ResNet).
      axis_name: passed to the BatchNorm2d layers (see there).
      dtype, param_dtype, precision: passed to the convolutions and norms.

    Shapes: ``[N, in_planes, H, W] -> [N, 4 * planes, H', W']`` with ``H' = (H - 1) // stride + 1``.

    >>> import jax, jax.numpy as jnp
    >>> from tlean.layers import Bottleneck
    >>> block = Bottleneck(8, 4, stride=2)
    >>> params, state = block.init(jax.random.key(0))
    >>> params["conv2"]["weight"].shape, params["downsample"][0]["weight"].shape
    ((4, 4, 3, 3), (16, 8, 1, 1))
    >>> block.apply(params, state, jnp.ones((2, 8, 6, 6)))[0].shape
    (2, 16, 3, 3)
    """

    expansion: ClassVar[int] = 4

    in_planes: int = _util.size()
    planes: int = _util.size()
    stride: int = _util.size(1)
    groups: int = _util.size(1)
    base_width: int = _util.size(64)
    _: KW_ONLY
    axis_name: Any = None
    dtype: Any = _util.dtype_field()
    param_dtype: Any = _util.param_dtype_field()
    precision: Any = _util.precision_field()

    conv1: Conv2d = sublayer()
    bn1: BatchNorm2d = sublayer()
    conv2: Conv2d = sublayer()
    bn2: BatchNorm2d = sublayer()
    conv3: Conv2d = sublayer()
    bn3: BatchNorm2d = sublayer()
    downsample: Seq | None = sublayer(default=None)

    def __post_init__(self):
        if isinstance(self.axis_name, list):
            _util.set_field(self, "axis_name", tuple(self.axis_name))
        width = self.width
        if width < 1:
            raise ValueError(
                f"Bottleneck: int(planes * base_width / 64) * groups must be >= 1, got width {width} "
                f"(planes={self.planes}, base_width={self.base_width}, groups={self.groups})"
            )

        def conv(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> Conv2d:
            return Conv2d(
                cin,
                cout,
                k,
                stride=stride,
                padding=k // 2,
                groups=groups,
                bias=False,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                precision=self.precision,
            )

        def bn(c: int) -> BatchNorm2d:
            return BatchNorm2d(c, axis_name=self.axis_name, dtype=self.dtype, param_dtype=self.param_dtype)

        out = self.planes * self.expansion
        _util.set_field(self, "conv1", conv(self.in_planes, width, 1))
        _util.set_field(self, "bn1", bn(width))
        _util.set_field(self, "conv2", conv(width, width, 3, self.stride, self.groups))
        _util.set_field(self, "bn2", bn(width))
        _util.set_field(self, "conv3", conv(width, out, 1))
        _util.set_field(self, "bn3", bn(out))
        if self.projects:
            _util.set_field(self, "downsample", seq(conv(self.in_planes, out, 1, self.stride), bn(out)))

    @property
    def width(self) -> int:
        """The channels of the 3x3 convolution: ``int(planes * base_width / 64) * groups`` (torchvision's)."""
        return int(self.planes * (self.base_width / 64.0)) * self.groups

    @property
    def projects(self) -> bool:
        """Whether the shortcut is the ``downsample`` projection rather than the identity."""
        return self.stride != 1 or self.in_planes != self.planes * self.expansion

    def apply(self, params: dict, state: dict, x: Float[Array, "N C H W"], *, key=None, train=False):
        check_image(self, x, self.in_planes, ranks=(4,))
        c = self.bind(params, state, train=train)
        h = jax.nn.relu(c.bn1(c.conv1(x)))
        h = jax.nn.relu(c.bn2(c.conv2(h)))
        h = c.bn3(c.conv3(h))
        shortcut = c.downsample(x) if self.projects else x.astype(h.dtype)
        return jax.nn.relu(h + shortcut), c.state
