"""The one walk over a layer's children that names every leaf (DESIGN 1.2).

A leaf's name is its key path in ``params`` or ``state`` written with dots, as PyTorch's
``state_dict`` names it (``"layer1.0.conv1.weight"``), with one exception: a
:class:`~tlean.layers.Stacked` layer holds its children's arrays stacked on a leading axis
and adds the name level ``*`` (``"encoder.layers.*.linear1.weight"``), which PyTorch spells
``layers.0.linear1.weight``, ``layers.1.linear1.weight``, ... (:meth:`NamedLeaf.torch_names`).
A tied leaf (a layer's ``ties``) has its alias names too. Interop, ``Model.summary`` and
``named_parameters``, sharding rules, checkpoints and errors all name leaves here.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jax

from tlean._core import Layer, path_keys

__all__ = ["NamedLeaf", "leaf_name", "named_leaves"]


@dataclass(frozen=True)
class NamedLeaf:
    """One array of a Model, with its names.

    Attributes:
      part: ``"params"`` or ``"state"``.
      name: the canonical dotted name, ``*`` for each stacked axis.
      stack: the sizes of the stacked (leading) axes, one per ``*``, outermost first.
      aliases: other names of the same array (ties).
      value: the array.
    """

    part: str
    name: str
    stack: tuple[int, ...]
    aliases: tuple[str, ...]
    value: Any

    def torch_names(self, name: str | None = None) -> list[str]:
        """``name`` (default the canonical one) with each ``*`` replaced by every index, in order."""
        parts = (name or self.name).split(".")
        stars = [i for i, p in enumerate(parts) if p == "*"]
        out = []
        for index in itertools.product(*(range(n) for n in self.stack)):
            filled = list(parts)
            for pos, i in zip(stars, index):
                filled[pos] = str(i)
            out.append(".".join(filled))
        return out

    def unstack(self) -> Iterator[tuple[tuple[int, ...], Any]]:
        """``(indices, slice)`` for every stacked position of ``value`` (one item if unstacked)."""
        for index in itertools.product(*(range(n) for n in self.stack)):
            yield index, self.value[index] if index else self.value


def leaf_name(layer: Layer | None, path: tuple) -> tuple[str, tuple[int, ...]]:
    """The name of the leaf at key ``path`` under ``layer``, and its stacked axis sizes."""
    keys = path_keys(path)
    parts: list = []
    stack: list[int] = []
    i = 0
    while layer is not None:
        stacked = layer.stacked()
        if stacked is not None:
            layer, n = stacked
            parts.append("*")
            stack.append(n)
            continue
        if i == len(keys):
            break
        k = keys[i]
        i += 1
        parts.append(k)
        child = dict(layer.children()).get(k)
        if isinstance(child, tuple) and i < len(keys):
            j = keys[i]
            i += 1
            parts.append(j)
            child = child[j] if isinstance(j, int) and j < len(child) else None
        layer = child if isinstance(child, Layer) else None
    parts.extend(keys[i:])
    return ".".join(map(str, parts)), tuple(stack)


def _aliases(layer: Layer, prefix: str, out: dict[str, list[str]]) -> None:
    for alias, canonical in (layer.ties or {}).items():
        out.setdefault(prefix + canonical, []).append(prefix + alias)
    stacked = layer.stacked()
    if stacked is not None:
        _aliases(stacked[0], prefix + "*.", out)
        return
    for name, child in layer.children():
        for i, c in enumerate(child) if isinstance(child, tuple) else [(None, child)]:
            _aliases(c, f"{prefix}{name}." + ("" if i is None else f"{i}."), out)


def named_leaves(layer: Layer, params: Any, state: Any) -> list[NamedLeaf]:
    """Every array of ``params`` then ``state`` (in ``jax.tree.leaves`` order) with its names."""
    aliases: dict[str, list[str]] = {}
    _aliases(layer, "", aliases)
    out = []
    for part, tree in (("params", params), ("state", state)):
        for path, value in jax.tree_util.tree_flatten_with_path(tree)[0]:
            name, stack = leaf_name(layer, path)
            out.append(NamedLeaf(part, name, stack, tuple(aliases.get(name, ()) if part == "params" else ()), value))
    return out
