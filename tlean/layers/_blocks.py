"""Residual blocks built from the layers: ResNet's BasicBlock."""

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
    dtype: Any
    param_dtype: Any
    precision: Any
    dtype, param_dtype, precision = _util.numerics()

    conv1: Conv2d = sublayer()
    bn1: BatchNorm2d = sublayer()
    conv2: Conv2d = sublayer()
    bn2: BatchNorm2d = sublayer()
    downsample: Seq | None = sublayer(default=None)

    def __post_init__(self):
        if isinstance(self.axis_name, list):
            _util.set_field(self, "axis_name", tuple(self.axis_name))

        def conv(cin: int, cout: int, k: int, stride: int) -> Conv2d:
            return Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False,
                          dtype=self.dtype, param_dtype=self.param_dtype, precision=self.precision)

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
