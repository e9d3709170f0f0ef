"""tlean: TorchLean's seeded model builders in JAX.

Three tiers:

- :mod:`tlean.layers`: pure Layer values, ``init(key) -> (params, state)`` and
  ``apply(params, state, x, *, key=None, train=False) -> (y, state)``;
- :mod:`tlean.seed`: the seed monad (``SeedStream``, ``Builder``, ``run``, ``fresh``, ``lift``);
- :mod:`tlean.nn`: the PyTorch-style shim (``nn.Sequential(nn.Linear(...), ...)``).

Beyond the layers, imported on first use: :mod:`tlean.models`, :mod:`tlean.train`,
:mod:`tlean.checkpoint`, :mod:`tlean.interop`, :mod:`tlean.parallel`, :mod:`tlean.spec`,
:mod:`tlean.losses`, :mod:`tlean.verify`.
"""

import importlib as _importlib

from tlean import layers as layers
from tlean import nn as nn
from tlean import seed as seed
from tlean._core import Layer as Layer
from tlean._core import Seq as Seq
from tlean._core import ShapeError as ShapeError
from tlean._core import child_config as child_config
from tlean._core import seq as seq
from tlean._core import sublayer as sublayer
from tlean._debug import check_finite as check_finite
from tlean._model import Model as Model
from tlean._model import combine as combine
from tlean._model import torch_name as torch_name
from tlean.seed import Builder as Builder
from tlean.seed import SeedStream as SeedStream
from tlean.seed import run as run

__version__ = "0.2.0.dev0"

_LAZY = ("checkpoint", "interop", "losses", "models", "parallel", "spec", "testing", "train", "verify")


def __getattr__(name: str):
    """Import the heavier submodules (orbax, flax) only when they are first used."""
    if name in _LAZY:
        return _importlib.import_module(f"tlean.{name}")
    raise AttributeError(f"module 'tlean' has no attribute {name!r}")


__all__ = sorted([name for name in dir() if not name.startswith("_") and name != "annotations"] + list(_LAZY))
