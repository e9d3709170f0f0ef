"""Helpers for parity tests against torch.nn (PyTorch is the oracle): short names for tlean.testing's.

New tests call :func:`tlean.testing.assert_torch_parity` (state_dict loading, outputs, state and
gradients in both modes); these names remain for the hand-written parity tests.
"""

from __future__ import annotations

import numpy as np
import torch

from tlean.testing import from_torch, to_numpy, to_torch

torch.set_default_dtype(torch.float32)


def load(model, module: torch.nn.Module):
    """``model`` (a Model, Layer or Builder) with ``module``'s parameters and buffers, by PyTorch's names."""
    return from_torch(model, module)


def t(x) -> torch.Tensor:
    """A torch tensor holding a copy of a NumPy or JAX array (gradients enabled for floats)."""
    return to_torch(np.array(x))


def n(x) -> np.ndarray:
    """A NumPy array of a torch tensor or JAX array."""
    return np.asarray(to_numpy(x))
