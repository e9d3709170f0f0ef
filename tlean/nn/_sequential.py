"""``nn.Sequential``: a Builder of a Seq model from builders, Models and parameter-free layers."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from tlean._core import Layer, Seq
from tlean._model import Model, untie
from tlean.nn._build import build
from tlean.seed import Builder, lift


def _as_builder(child: Any, where: str) -> Builder[Model]:
    if isinstance(child, Builder):
        return child
    if isinstance(child, Model):
        return lift(child)
    if isinstance(child, Layer):
        if child.has_params:
            raise TypeError(
                f"nn.Sequential: {where} is the bare layer {child!r}, which has parameters; use its "
                f"builder (nn.{type(child).__name__}(...)) or nn.pure.<layer>(..., key=...)"
            )
        return build(child)
    raise TypeError(
        f"nn.Sequential: {where} must be a Builder, a Model or a parameter-free Layer, got {type(child).__name__}"
    )


class Sequential(Builder[Model]):
    """PyTorch's ``nn.Sequential`` as a Builder: ``nn.run(seed, nn.Sequential(...))`` gives a Model.

    Children may be builders (``nn.Linear(4, 8)``), Models (kept as they are, drawing no
    seed) and parameter-free layers (``tlean.layers.relu``), mixed. Keyword children
    (``nn.Sequential(fc1=..., act=...)``) or one ``OrderedDict`` name the params
    (``"fc1.weight"``). Builders run in order on one seed stream, each drawing one key if
    its layer has parameters, so the result equals ``seq(...).init(key)`` for the same
    layers. Supports ``len``, iteration and slicing, like PyTorch's.

    >>> from tlean import nn
    >>> model = nn.run(0, nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)))
    >>> [name for name in model.named_parameters()]
    ['0.bias', '0.weight', '2.bias', '2.weight']
    """

    names: tuple[str, ...] | None  # the keyword children's names, or None
    children: tuple[Any, ...]

    def __init__(self, *children: Any, **named: Any):
        if len(children) == 1 and isinstance(children[0], OrderedDict) and not named:
            named, children = dict(children[0]), ()
        if children and named:
            raise TypeError("nn.Sequential takes either positional or keyword children, not both")
        object.__setattr__(self, "names", tuple(named) if named else None)
        object.__setattr__(self, "children", tuple(named.values()) if named else tuple(children))
        builders = tuple(
            _as_builder(c, f"child {n!r}" if self.names else f"child {n}")
            for n, c in zip(self.names or range(len(self.children)), self.children)
        )

        def step(stream):
            models = []
            for b in builders:
                model, stream = b.fn(stream)
                if not isinstance(model, Model):
                    raise TypeError(f"nn.Sequential: a child builder returned {type(model).__name__}, not a Model")
                models.append(model)
            layer = Seq(tuple(m.layer for m in models), self.names)
            params, state = untie((layer.pack(m.params for m in models), layer.pack(m.state for m in models)))
            return Model(layer, params, state), stream

        object.__setattr__(self, "fn", step)

    def __len__(self) -> int:
        return len(self.children)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.children)

    def __getitem__(self, index: int | slice | str) -> Any:
        if isinstance(index, str):
            if self.names is None or index not in self.names:
                raise KeyError(f"nn.Sequential has no child named {index!r}")
            return self.children[self.names.index(index)]
        if isinstance(index, slice):
            if self.names is None:
                return Sequential(*self.children[index])
            return Sequential(**dict(zip(self.names[index], self.children[index])))
        return self.children[index]

    def __repr__(self) -> str:
        names = self.names or range(len(self.children))
        return "nn.Sequential(" + ", ".join(f"{n}: {type(c).__name__}" for n, c in zip(names, self.children)) + ")"
