"""PyTorch state_dicts in and out of tlean Models, key for key by PyTorch's names."""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from tlean._model import Model, torch_name


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch.Tensor; torch is not imported unless one is given
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            value = value.float()
        value = value.numpy()
    return np.asarray(value)


def _named_leaves(model: Model) -> list[tuple[str, str, Any]]:
    """``(part, torch name, leaf)`` for every array of params then state."""
    out = []
    for part in ("params", "state"):
        for path, leaf in jax.tree_util.tree_flatten_with_path(getattr(model, part))[0]:
            out.append((part, torch_name(path), leaf))
    return out


def load_torch_state_dict(model: Model, state_dict: Mapping[str, Any]) -> Model:
    """A copy of ``model`` whose params and state are taken from a PyTorch ``state_dict``.

    Keys are ``torch.nn``'s names (``"0.weight"`` inside a Sequential, ``"bn1.running_mean"``);
    values are tensors or NumPy arrays, cast to the dtype of the array they replace
    (PyTorch's int64 ``num_batches_tracked`` becomes int32). Missing, unexpected and
    mis-shaped keys are all listed in one ``ValueError``; nothing is loaded partially.
    """
    leaves = _named_leaves(model)
    ours = {name for _, name, _ in leaves}
    missing = [name for name in (n for _, n, _ in leaves) if name not in state_dict]
    unexpected = [k for k in state_dict if k not in ours]
    values, mismatched = {}, []
    for _, name, leaf in leaves:
        if name not in state_dict:
            continue
        array = _to_numpy(state_dict[name])
        if tuple(array.shape) != tuple(leaf.shape):
            mismatched.append(f"{name}: expected shape {tuple(leaf.shape)}, got {tuple(array.shape)}")
        else:
            values[name] = jnp.asarray(array, dtype=leaf.dtype)
    if missing or unexpected or mismatched:
        lines = [f"cannot load the state_dict into {model.layer!r}:"]
        if missing:
            lines.append(f"  missing keys: {missing}")
        if unexpected:
            lines.append(f"  unexpected keys: {unexpected}")
        if mismatched:
            lines.append("  mis-shaped keys: " + "; ".join(mismatched))
        raise ValueError("\n".join(lines))

    def replace(tree):
        return jax.tree_util.tree_map_with_path(lambda path, _: values[torch_name(path)], tree)

    return model.replace(params=replace(model.params), state=replace(model.state))


def to_torch_state_dict(model: Model) -> dict[str, np.ndarray]:
    """The model's params and state as a flat ``{torch name: numpy array}`` dict.

    Pass it to ``torch_module.load_state_dict({k: torch.from_numpy(v) ...})``; PyTorch
    casts ``num_batches_tracked`` back to int64 on load.
    """
    return {name: np.asarray(leaf) for _, name, leaf in _named_leaves(model)}
