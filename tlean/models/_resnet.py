"""ResNet-18/34/50 (He et al. 2016) as torchvision builds them: names, ResNet v1.5 strides and initialisation."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import KW_ONLY, dataclass
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from tlean._core import Layer, Seq, seq, sublayer
from tlean._model import Model
from tlean.layers import _init, _util
from tlean.layers._activation import ReLU
from tlean.layers._blocks import BasicBlock, Bottleneck
from tlean.layers._conv import Conv2d
from tlean.layers._linear import Linear
from tlean.layers._norm import BatchNorm2d
from tlean.layers._pool import GlobalAvgPool, MaxPool2d
from tlean.nn._build import build
from tlean.seed import Builder

_BLOCKS = (BasicBlock, Bottleneck)


def kaiming_normal_fan_out(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
    """``torch.nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")``: N(0, 2 / fan_out),
    ``fan_out = shape[0] * prod(shape[2:])`` (out channels times the kernel size)."""
    fan_out = shape[0] * math.prod(shape[2:])
    return _init.normal(key, shape, math.sqrt(2.0) / math.sqrt(fan_out), dtype)


def _zeros(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
    return jnp.zeros(shape, dtype)


@dataclass(frozen=True)
class ResNet(Layer):
    """A ResNet with torchvision's module tree, names and initialisation.

    ``fc(avgpool(layer4(layer3(layer2(layer1(maxpool(relu(bn1(conv1(x))))))))))``:
    ``conv1`` (7x7, stride 2, padding 3, no bias), ``bn1``, ``relu``, ``maxpool`` (3x3,
    stride 2, padding 1), ``layer1`` .. ``layer4`` (each a positional seq of ``layers[i]``
    blocks of ``64, 128, 256, 512`` planes, the first of stages 2-4 with stride 2 and a
    ``downsample`` projection where the shape changes, as torchvision's ``_make_layer``),
    ``avgpool`` (:class:`~tlean.layers.GlobalAvgPool`: AdaptiveAvgPool2d plus the flatten
    of torchvision's ``forward``) and ``fc``. Parameter names are torchvision's
    (``layer2.0.downsample.0.weight``, ``layer4.2.bn3.running_var``), so a torchvision
    state_dict loads by name with :func:`tlean.interop.load_torch_state_dict`.

    PyTorch analogue: ``torchvision.models.resnet.ResNet(block, layers, num_classes,
    zero_init_residual)``. Initialisation as torchvision's: every convolution
    ``kaiming_normal_(mode="fan_out", nonlinearity="relu")`` (N(0, 2 / (out * kH * kW))),
    BatchNorm weight 1 and bias 0, ``fc`` torch's Linear default; with
    ``zero_init_residual`` the last BatchNorm of each block (``bn3`` of a Bottleneck,
    ``bn2`` of a BasicBlock) starts with weight 0. These are ``init_overrides``: the
    children are initialised first (one key each from ``SeedStream(key)``, in field
    order), then every matched leaf draws a further key from the same stream, in leaf
    order. What differs: ``in_channels`` (torchvision: 3) is an option; no
    ``replace_stride_with_dilation`` or ``norm_layer``.

    Args:
      block: :class:`~tlean.layers.BasicBlock` (ResNet-18/34) or
        :class:`~tlean.layers.Bottleneck` (ResNet-50/101/152).
      layers: the number of blocks of each of the four stages, e.g. ``(3, 4, 6, 3)``.
      num_classes: outputs of ``fc``.
      zero_init_residual: start each residual branch's last BatchNorm weight at 0.
      groups, width_per_group: the Bottleneck's ``groups`` and ``base_width`` (ResNeXt,
        Wide ResNet); a BasicBlock needs the defaults (1, 64), as in torchvision.
      in_channels: input channels (keyword-only).
      axis_name, dtype, param_dtype, precision: passed to every block, convolution and
        norm (keyword-only).

    Shapes: ``[N, in_channels, H, W] -> [N, num_classes]``.

    >>> import jax
    >>> from tlean.layers import Bottleneck
    >>> from tlean.models import ResNet
    >>> net = ResNet(Bottleneck, (1, 1, 1, 1), num_classes=10)
    >>> params, state = jax.eval_shape(net.init, jax.random.key(0))
    >>> params["layer1"][0]["downsample"][0]["weight"].shape
    (256, 64, 1, 1)
    """

    block: type = BasicBlock
    layers: tuple[int, ...] = (2, 2, 2, 2)
    num_classes: int = _util.size(1000)
    zero_init_residual: bool = _util.flag(False)
    groups: int = _util.size(1)
    width_per_group: int = _util.size(64)
    _: KW_ONLY
    in_channels: int = _util.size(3)
    axis_name: Any = None
    dtype: Any = _util.dtype_field()
    param_dtype: Any = _util.param_dtype_field()
    precision: Any = _util.precision_field()

    conv1: Conv2d = sublayer()
    bn1: BatchNorm2d = sublayer()
    relu: Layer = sublayer()
    maxpool: MaxPool2d = sublayer()
    layer1: Seq = sublayer()
    layer2: Seq = sublayer()
    layer3: Seq = sublayer()
    layer4: Seq = sublayer()
    avgpool: GlobalAvgPool = sublayer()
    fc: Linear = sublayer()

    def __post_init__(self):
        if self.block not in _BLOCKS:
            raise TypeError(f"ResNet: block must be BasicBlock or Bottleneck, got {self.block!r}")
        layers = tuple(self.layers) if isinstance(self.layers, (tuple, list)) else self.layers
        if not (isinstance(layers, tuple) and len(layers) == 4 and all(_util.is_int(n) and n >= 1 for n in layers)):
            raise ValueError(f"ResNet: layers must be four positive ints (blocks per stage), got {self.layers!r}")
        _util.set_field(self, "layers", tuple(int(n) for n in layers))
        if isinstance(self.axis_name, list):
            _util.set_field(self, "axis_name", tuple(self.axis_name))
        if self.block is BasicBlock and (self.groups, self.width_per_group) != (1, 64):
            raise ValueError(
                f"ResNet: BasicBlock only supports groups=1 and width_per_group=64, got "
                f"groups={self.groups}, width_per_group={self.width_per_group}"
            )
        numerics = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        _util.set_field(
            self,
            "conv1",
            Conv2d(self.in_channels, 64, 7, stride=2, padding=3, bias=False, precision=self.precision, **numerics),
        )
        _util.set_field(self, "bn1", BatchNorm2d(64, axis_name=self.axis_name, **numerics))
        _util.set_field(self, "relu", ReLU())
        _util.set_field(self, "maxpool", MaxPool2d(3, stride=2, padding=1))
        in_planes = 64
        for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), self.layers)):
            stage, in_planes = self._stage(in_planes, planes, blocks, stride=1 if i == 0 else 2)
            _util.set_field(self, f"layer{i + 1}", stage)
        _util.set_field(self, "avgpool", GlobalAvgPool())
        _util.set_field(self, "fc", Linear(in_planes, self.num_classes, precision=self.precision, **numerics))

    def _stage(self, in_planes: int, planes: int, blocks: int, stride: int) -> tuple[Seq, int]:
        """torchvision's ``_make_layer``: ``blocks`` blocks, the first changing width and stride."""
        options = dict(
            axis_name=self.axis_name, dtype=self.dtype, param_dtype=self.param_dtype, precision=self.precision
        )
        if self.block is Bottleneck:
            options.update(groups=self.groups, base_width=self.width_per_group)
        out = planes * self.block.expansion
        first = self.block(in_planes, planes, stride, **options)
        return seq(first, *(self.block(out, planes, **options) for _ in range(blocks - 1))), out

    @property
    def init_overrides(self) -> Mapping[str, Callable]:
        """torchvision's re-initialisation: kaiming-normal (fan_out) convolutions; with
        ``zero_init_residual``, zero weights for each block's last BatchNorm."""
        overrides: dict[str, Callable] = {}
        if self.zero_init_residual:
            last = "bn3" if self.block is Bottleneck else "bn2"
            overrides[rf"layer\d\.\d+\.{last}\.weight"] = _zeros
        overrides[r"(.*\.)?(conv\d|downsample\.0)\.weight"] = kaiming_normal_fan_out
        return overrides

    def apply(self, params: dict, state: dict, x: Float[Array, "N C H W"], *, key=None, train=False):
        c = self.bind(params, state, key=key, train=train)
        h = c.maxpool(c.relu(c.bn1(c.conv1(x))))
        h = c.layer4(c.layer3(c.layer2(c.layer1(h))))
        return c.fc(c.avgpool(h)), c.state


def _layer(block: type, layers: tuple[int, ...], num_classes: int, in_channels: int, options: dict) -> ResNet:
    return ResNet(block, layers, num_classes, in_channels=in_channels, **options)


def resnet18_layer(num_classes: int = 1000, in_channels: int = 3, **options: Any) -> ResNet:
    """ResNet-18 as a pure layer: ``ResNet(BasicBlock, (2, 2, 2, 2), ...)`` (see :class:`ResNet`).

    ``options`` are :class:`ResNet`'s other fields (``zero_init_residual``, ``axis_name``,
    ``dtype``, ``param_dtype``, ``precision``).
    """
    return _layer(BasicBlock, (2, 2, 2, 2), num_classes, in_channels, options)


def resnet34_layer(num_classes: int = 1000, in_channels: int = 3, **options: Any) -> ResNet:
    """ResNet-34 as a pure layer: ``ResNet(BasicBlock, (3, 4, 6, 3), ...)`` (see :class:`ResNet`)."""
    return _layer(BasicBlock, (3, 4, 6, 3), num_classes, in_channels, options)


def resnet50_layer(num_classes: int = 1000, in_channels: int = 3, **options: Any) -> ResNet:
    """ResNet-50 (v1.5) as a pure layer: ``ResNet(Bottleneck, (3, 4, 6, 3), ...)`` (see :class:`ResNet`)."""
    return _layer(Bottleneck, (3, 4, 6, 3), num_classes, in_channels, options)


def resnet18(num_classes: int = 1000, in_channels: int = 3, **options: Any) -> Builder[Model]:
    """The Builder of a ResNet-18 Model (see :class:`ResNet`); draws one key.

    11,689,512 parameters for 1000 classes, as torchvision's ``resnet18()``; a
    torchvision state_dict loads into it by name.

    >>> import jax
    >>> from tlean import models, nn
    >>> model = jax.eval_shape(lambda: nn.run(0, models.resnet18(num_classes=10)))  # shapes only, no arrays
    >>> sorted(model.named_parameters())[:3]
    ['bn1.bias', 'bn1.weight', 'conv1.weight']
    >>> model.named_buffers()["layer2.0.downsample.1.running_var"].shape
    (128,)
    """
    return build(resnet18_layer(num_classes, in_channels, **options))


def resnet34(num_classes: int = 1000, in_channels: int = 3, **options: Any) -> Builder[Model]:
    """The Builder of a ResNet-34 Model (see :class:`ResNet`); draws one key.

    21,797,672 parameters for 1000 classes, as torchvision's ``resnet34()``.
    """
    return build(resnet34_layer(num_classes, in_channels, **options))


def resnet50(num_classes: int = 1000, in_channels: int = 3, **options: Any) -> Builder[Model]:
    """The Builder of a ResNet-50 (v1.5, stride on the 3x3 convolution) Model (see :class:`ResNet`); draws one key.

    25,557,032 parameters for 1000 classes, as torchvision's ``resnet50()``.

    >>> import jax
    >>> from tlean import models, nn
    >>> model = jax.eval_shape(lambda: nn.run(0, models.resnet50()))  # shapes only, no arrays
    >>> model.num_params()
    25557032
    >>> model.named_parameters()["layer4.2.conv3.weight"].shape
    (2048, 512, 1, 1)
    """
    return build(resnet50_layer(num_classes, in_channels, **options))
