"""Interoperability with PyTorch (state_dicts by PyTorch's names) and flax.linen (wrappers both ways).

- :func:`load_torch_state_dict` / :func:`to_torch_state_dict`: a ``torch.nn`` state_dict
  in and out of a :class:`tlean.Model`, key for key.
- :func:`to_linen`: a tlean layer as a ``flax.linen`` Module (:class:`TleanModule`).
- :func:`from_linen`: a ``flax.linen`` Module as a tlean layer (:class:`LinenLayer`).

The linen half is imported on first use, so ``import tlean.interop`` does not import flax.
"""

from tlean.interop._torch import load_torch_state_dict as load_torch_state_dict
from tlean.interop._torch import to_torch_state_dict as to_torch_state_dict

_LINEN = ("LinenLayer", "TleanModule", "from_linen", "to_linen")

__all__ = sorted(["load_torch_state_dict", "to_torch_state_dict", *_LINEN])


def __getattr__(name: str):
    if name in _LINEN:
        from tlean.interop import _linen

        return getattr(_linen, name)
    raise AttributeError(f"module 'tlean.interop' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LINEN))
