"""PyTorch state_dicts in and out of tlean Models, key for key by PyTorch's names.

The names come from the one walk over the layers (:mod:`tlean._walk`): the tlean path
``params[0]["weight"]`` is PyTorch's ``"0.weight"``, a composite's field ``conv1`` is
``"conv1."``, and a :class:`~tlean.layers.Stacked` layer's leaf ``layers.*.linear1.weight``
of shape ``[num_layers, ...]`` is PyTorch's ``layers.0.linear1.weight``,
``layers.1.linear1.weight``, ... stacked (split back on the way out). A tied leaf is
written under both names and loaded from either (or both, if equal).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tlean._model import Model
from tlean._walk import NamedLeaf


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch.Tensor; torch is not imported unless one is given
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            value = value.float()
        value = value.numpy()
    # A copy: on CPU jnp.asarray can alias a NumPy buffer, and torch updates buffers such as
    # running_mean in place, which would then change the "immutable" JAX arrays loaded here.
    return np.array(value, copy=True)


def load_torch_state_dict(model: Model, state_dict: Mapping[str, Any]) -> Model:
    """A copy of ``model`` whose params and state are taken from a PyTorch ``state_dict``.

    Keys are ``torch.nn``'s names (``"0.weight"`` inside a Sequential, ``"bn1.running_mean"``,
    ``"layers.3.self_attn.in_proj_weight"`` of a stacked encoder, stacked here; a tied
    leaf under either of its names); values are tensors or NumPy arrays, cast to the
    dtype of the array they replace (PyTorch's int64 ``num_batches_tracked`` becomes
    int32, bfloat16 tensors go through float32 exactly). Missing, unexpected,
    mis-shaped and conflicting (tied) keys are all listed in one ``ValueError``; nothing
    is loaded partially.

    Args:
      model: the tlean Model whose structure the state_dict must match.
      state_dict: ``torch_module.state_dict()`` or any mapping of names to arrays.

    Returns:
      The model with the loaded arrays (its layer unchanged).
    """
    leaves = model.named_leaves()
    known = {k for leaf in leaves for name in (leaf.name, *leaf.aliases) for k in leaf.torch_names(name)}
    unexpected = [k for k in state_dict if k not in known]
    missing, mismatched, conflicting, values = [], [], [], []
    for leaf in leaves:
        given = [name for name in (leaf.name, *leaf.aliases) if all(k in state_dict for k in leaf.torch_names(name))]
        if not given:
            missing.extend(k for k in leaf.torch_names() if k not in state_dict)
            values.append(None)
            continue
        loaded = [_stacked(leaf, name, state_dict, mismatched) for name in given]
        if any(a is None for a in loaded):
            values.append(None)
            continue
        arrays = [a for a in loaded if a is not None]
        if any(not np.array_equal(arrays[0], other) for other in arrays[1:]):
            conflicting.append(f"{' and '.join(given)} (tied: one array) differ")
        values.append(jnp.asarray(loaded[0], dtype=leaf.value.dtype))
    if missing or unexpected or mismatched or conflicting:
        lines = [f"cannot load the state_dict into {model.layer!r}:"]
        if missing:
            lines.append(f"  missing keys: {missing}")
        if unexpected:
            lines.append(f"  unexpected keys: {unexpected}")
        if mismatched:
            lines.append("  mis-shaped keys: " + "; ".join(mismatched))
        if conflicting:
            lines.append("  conflicting keys: " + "; ".join(conflicting))
        raise ValueError("\n".join(lines))
    n_params = len(jax.tree.leaves(model.params))
    params = jax.tree.unflatten(jax.tree.structure(model.params), values[:n_params])
    state = jax.tree.unflatten(jax.tree.structure(model.state), values[n_params:])
    return model.replace(params=params, state=state)


def _stacked(leaf: NamedLeaf, name: str, state_dict: Mapping[str, Any], mismatched: list) -> np.ndarray | None:
    """The arrays of ``name``'s torch keys, checked against the leaf's (per-layer) shape and stacked."""
    keys = leaf.torch_names(name)
    want = tuple(leaf.value.shape[len(leaf.stack) :])
    arrays = [_to_numpy(state_dict[k]) for k in keys]
    bad = [f"{k}: expected shape {want}, got {tuple(a.shape)}" for k, a in zip(keys, arrays) if tuple(a.shape) != want]
    if bad:
        mismatched.extend(bad)
        return None
    if not leaf.stack:
        return arrays[0]
    return np.stack(arrays).reshape(leaf.stack + want)


def to_torch_state_dict(model: Model, *, tensors: bool = False) -> dict[str, Any]:
    """The model's params and state as a flat ``{torch name: array}`` dict, PyTorch's keys.

    Stacked leaves are split into PyTorch's per-layer keys; a tied leaf is written under
    both its names (as torch's ``state_dict`` does).

    Args:
      model: the tlean Model.
      tensors: return ``torch.Tensor``\\ s (int32 ``num_batches_tracked`` as PyTorch's
        int64, bfloat16 as ``torch.bfloat16``) instead of NumPy arrays, ready for
        ``torch_module.load_state_dict(...)``.

    >>> import jax
    >>> from tlean import nn
    >>> from tlean.interop import to_torch_state_dict
    >>> model = nn.run(0, nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)))
    >>> {k: v.shape for k, v in to_torch_state_dict(model).items()}
    {'0.bias': (4,), '0.weight': (4, 3), '2.bias': (2,), '2.weight': (2, 4)}
    """
    out: dict[str, Any] = {}
    for leaf in model.named_leaves():
        parts = [np.asarray(value) for _, value in leaf.unstack()]
        for name in (leaf.name, *leaf.aliases):
            for key, value in zip(leaf.torch_names(name), parts):
                out[key] = _as_tensor(key, value) if tensors else value
    return out


def _as_tensor(name: str, value: np.ndarray) -> Any:
    import torch

    if value.dtype == jnp.bfloat16:
        return torch.from_numpy(value.astype(np.float32)).to(torch.bfloat16)
    tensor = torch.from_numpy(np.array(value))  # a writable copy
    if name.endswith("num_batches_tracked"):
        tensor = tensor.to(torch.int64)
    return tensor
