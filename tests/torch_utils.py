"""Helpers for parity tests against torch.nn (PyTorch is the oracle)."""

from __future__ import annotations

import numpy as np
import torch

from tlean.interop import load_torch_state_dict

torch.set_default_dtype(torch.float32)


def load(model, module: torch.nn.Module):
    """``model`` with ``module``'s parameters and buffers, by PyTorch's names."""
    return load_torch_state_dict(model, module.state_dict())


def t(x) -> torch.Tensor:
    """A float64-free torch tensor of a NumPy or JAX array (gradients enabled for floats)."""
    array = np.array(x)
    tensor = torch.from_numpy(array)
    if tensor.is_floating_point():
        tensor.requires_grad_(True)
    return tensor


def n(x) -> np.ndarray:
    """A NumPy array of a torch tensor or JAX array."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)
