"""PyTorch state_dicts in and out of tlean Models, key for key by PyTorch's names.

Most leaves map one to one: the tlean path ``params[0]["weight"]`` is PyTorch's
``"0.weight"``. The exception is :class:`~tlean.layers.TransformerEncoder`, whose
blocks are stacked on a leading axis (one ``lax.scan`` runs them): its leaf
``layers.linear1.weight`` of shape ``[num_layers, ...]`` is PyTorch's
``layers.0.linear1.weight``, ``layers.1.linear1.weight``, ... stacked, and is split
back on the way out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from tlean._core import Layer, Seq
from tlean._model import Model


@dataclass(frozen=True)
class _Leaf:
    part: str  # "params" or "state"
    name: str  # the tlean leaf as PyTorch would name it if it were not stacked
    value: Any
    stack: tuple[str, str, int] | None = None  # (prefix, suffix, depth): torch keys f"{prefix}{i}.{suffix}"

    def torch_keys(self) -> list[str]:
        if self.stack is None:
            return [self.name]
        prefix, suffix, depth = self.stack
        return [f"{prefix}{i}.{suffix}" for i in range(depth)]


def _part(entry: Any) -> str:
    for attr in ("key", "idx", "name"):
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def _child(layer: Layer, key: Any) -> Layer | None:
    """The sub-layer whose params sit under ``key`` in ``layer``'s params, if it can be found."""
    if isinstance(layer, Seq):
        try:
            return layer[key]
        except (KeyError, IndexError, TypeError):
            return None
    parts = getattr(layer, "parts", None)  # composite layers that delegate to a named seq (BasicBlock)
    if isinstance(parts, Seq):
        return _child(parts, key)
    child = getattr(layer, str(key), None) if str(key).isidentifier() else None  # GPT's tok_emb, encoder, ...
    return child if isinstance(child, Layer) else None


def _stacked(layer: Layer, tree: Any, prefix: str, out: dict[str, int]) -> None:
    """Collect ``{torch prefix of a stacked block list: depth}`` under ``layer``."""
    from tlean.layers import TransformerEncoder

    if isinstance(layer, TransformerEncoder):
        out[f"{prefix}layers."] = layer.num_layers
        return
    if isinstance(tree, dict):
        items = tree.items()
    elif isinstance(tree, (tuple, list)):
        items = enumerate(tree)
    else:
        return
    for key, sub in items:
        child = _child(layer, key)
        if child is not None:
            _stacked(child, sub, f"{prefix}{key}.", out)


def _named_leaves(model: Model) -> list[_Leaf]:
    """Every array of params then state, with PyTorch's name and how it is stacked."""
    stacks: dict[str, int] = {}
    _stacked(model.layer, model.params, "", stacks)
    out = []
    for part in ("params", "state"):
        for path, leaf in jax.tree_util.tree_flatten_with_path(getattr(model, part))[0]:
            name = ".".join(_part(p) for p in path)
            stack = None
            for prefix, depth in stacks.items():
                if name.startswith(prefix):
                    stack = (prefix, name[len(prefix):], depth)
            out.append(_Leaf(part, name, leaf, stack))
    return out


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
    ``"layers.3.self_attn.in_proj_weight"`` of a TransformerEncoder, stacked here);
    values are tensors or NumPy arrays, cast to the dtype of the array they replace
    (PyTorch's int64 ``num_batches_tracked`` becomes int32, bfloat16 tensors go
    through float32 exactly). Missing, unexpected and mis-shaped keys are all listed
    in one ``ValueError``; nothing is loaded partially.

    Args:
      model: the tlean Model whose structure the state_dict must match.
      state_dict: ``torch_module.state_dict()`` or any mapping of names to arrays.

    Returns:
      The model with the loaded arrays (its layer unchanged).
    """
    leaves = _named_leaves(model)
    ours = {k for leaf in leaves for k in leaf.torch_keys()}
    missing = [k for leaf in leaves for k in leaf.torch_keys() if k not in state_dict]
    unexpected = [k for k in state_dict if k not in ours]
    values, mismatched = {}, []
    for leaf in leaves:
        keys = leaf.torch_keys()
        if any(k not in state_dict for k in keys):
            continue
        want = tuple(leaf.value.shape) if leaf.stack is None else tuple(leaf.value.shape[1:])
        arrays = [_to_numpy(state_dict[k]) for k in keys]
        bad = [f"{k}: expected shape {want}, got {tuple(a.shape)}" for k, a in zip(keys, arrays) if tuple(a.shape) != want]
        if bad:
            mismatched.extend(bad)
            continue
        array = arrays[0] if leaf.stack is None else np.stack(arrays)
        values[(leaf.part, leaf.name)] = jnp.asarray(array, dtype=leaf.value.dtype)
    if missing or unexpected or mismatched:
        lines = [f"cannot load the state_dict into {model.layer!r}:"]
        if missing:
            lines.append(f"  missing keys: {missing}")
        if unexpected:
            lines.append(f"  unexpected keys: {unexpected}")
        if mismatched:
            lines.append("  mis-shaped keys: " + "; ".join(mismatched))
        raise ValueError("\n".join(lines))

    def replace(part):
        return jax.tree_util.tree_map_with_path(
            lambda path, _: values[(part, ".".join(_part(p) for p in path))], getattr(model, part))

    return model.replace(params=replace("params"), state=replace("state"))


def to_torch_state_dict(model: Model, *, tensors: bool = False) -> dict[str, Any]:
    """The model's params and state as a flat ``{torch name: array}`` dict, PyTorch's keys.

    Stacked TransformerEncoder leaves are split into PyTorch's per-layer keys.

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
    for leaf in _named_leaves(model):
        array = np.asarray(leaf.value)
        parts = [array] if leaf.stack is None else list(array)
        for key, value in zip(leaf.torch_keys(), parts):
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
