"""tlean: TorchLean's seeded model builders in JAX.

Three tiers:

- :mod:`tlean.layers`: pure Layer values, ``init(key) -> (params, state)`` and
  ``apply(params, state, x, *, key=None, train=False) -> (y, state)``;
- :mod:`tlean.seed`: the seed monad (``SeedStream``, ``Builder``, ``run``, ``fresh``, ``lift``);
- :mod:`tlean.nn`: the PyTorch-style shim (``nn.Sequential(nn.Linear(...), ...)``).
"""

from tlean import layers as layers
from tlean import nn as nn
from tlean import seed as seed
from tlean._core import Layer as Layer
from tlean._debug import check_finite as check_finite
from tlean._core import Seq as Seq
from tlean._core import ShapeError as ShapeError
from tlean._core import seq as seq
from tlean._model import Model as Model
from tlean._model import torch_name as torch_name
from tlean.seed import Builder as Builder
from tlean.seed import SeedStream as SeedStream
from tlean.seed import run as run

__version__ = "0.1.0"

__all__ = sorted(name for name in dir() if not name.startswith("_"))
