"""Interoperability with PyTorch (state_dicts by PyTorch's names)."""

from tlean.interop._torch import load_torch_state_dict as load_torch_state_dict
from tlean.interop._torch import to_torch_state_dict as to_torch_state_dict

__all__ = ["load_torch_state_dict", "to_torch_state_dict"]
