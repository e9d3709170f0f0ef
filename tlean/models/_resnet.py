"""ResNet-18 (He et al. 2016) as torchvision builds it, from BasicBlock."""

from __future__ import annotations

from tlean._core import Seq, seq
from tlean._model import Model
from tlean.layers._activation import relu
from tlean.layers._blocks import BasicBlock
from tlean.layers._conv import Conv2d
from tlean.layers._linear import Linear
from tlean.layers._norm import BatchNorm2d
from tlean.layers._pool import GlobalAvgPool, MaxPool2d
from tlean.nn._build import build
from tlean.seed import Builder


def _stage(in_planes: int, planes: int, stride: int) -> Seq:
    """Two BasicBlocks, the first changing width and stride (torchvision's ``_make_layer``)."""
    return seq(BasicBlock(in_planes, planes, stride), BasicBlock(planes, planes))


def resnet18_layer(num_classes: int = 1000, in_channels: int = 3) -> Seq:
    """ResNet-18 as a pure layer: a named seq with torchvision's child names.

    ``conv1`` (7x7, stride 2, padding 3, no bias), ``bn1``, ``relu``, ``maxpool`` (3x3,
    stride 2, padding 1), ``layer1`` .. ``layer4`` (each a positional seq of two
    :class:`~tlean.layers.BasicBlock`, so names read ``layer2.0.downsample.0.weight``),
    ``avgpool`` (:class:`~tlean.layers.GlobalAvgPool`: AdaptiveAvgPool2d plus the flatten
    of torchvision's ``forward``) and ``fc``. Input ``[N, in_channels, H, W]``, output
    ``[N, num_classes]``.

    Initialisation uses each layer's PyTorch default; torchvision's
    ``kaiming_normal_(mode="fan_out")`` for convolutions is not replicated (load
    torchvision's weights with :func:`tlean.interop.load_torch_state_dict` for those).
    """
    return seq(
        conv1=Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False),
        bn1=BatchNorm2d(64),
        relu=relu,
        maxpool=MaxPool2d(3, stride=2, padding=1),
        layer1=_stage(64, 64, 1),
        layer2=_stage(64, 128, 2),
        layer3=_stage(128, 256, 2),
        layer4=_stage(256, 512, 2),
        avgpool=GlobalAvgPool(),
        fc=Linear(512, num_classes),
    )


def resnet18(num_classes: int = 1000, in_channels: int = 3) -> Builder[Model]:
    """The Builder of a ResNet-18 Model (see :func:`resnet18_layer`); draws one key per layer with arrays.

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
    return build(resnet18_layer(num_classes, in_channels))
