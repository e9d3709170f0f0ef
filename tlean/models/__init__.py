"""Ready-made models: ``resnet18`` with torchvision's parameter names, and a tiny GPT
(``gpt``, ``GPT``, ``generate``) with PyTorch-style ones.

>>> import jax
>>> from tlean import models, nn
>>> net = jax.eval_shape(lambda: nn.run(0, models.resnet18(num_classes=10)))  # shapes only
>>> net.num_params()
11181642
"""

from tlean.models._gpt import GPT as GPT
from tlean.models._gpt import generate as generate
from tlean.models._gpt import gpt as gpt
from tlean.models._resnet import resnet18 as resnet18
from tlean.models._resnet import resnet18_layer as resnet18_layer

__all__ = sorted(name for name in dir() if not name.startswith("_"))
