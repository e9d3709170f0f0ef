"""The Layer contract, errors, and composition (`seq`, `>>`)."""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from tlean import _debug
from tlean.seed import SeedStream

__all__ = ["Layer", "Seq", "ShapeError", "seq"]

Params = Any
State = Any


class ShapeError(ValueError):
    """An input of the wrong shape, raised at trace time before XLA compiles anything.

    The message names where the layer sits in its enclosing ``seq`` (``seq[2]``,
    ``seq.layer1[0]``), the layer, what it expected and what it got::

        seq[2] Linear(in_features=128, out_features=10): expected input [..., 128], got shape (32, 64)

    Attributes:
      layer: the layer that refused the input.
      expected: what it expected, in words (``"input [..., 128]"``).
      got: the shape (a tuple) or description of what it received.
      where: the path of seq indices or names from the outermost seq to the layer.
    """

    def __init__(self, layer: Any, expected: str, got: Any, where: tuple = ()):
        self.layer, self.expected, self.got, self.where = layer, expected, got, tuple(where)
        super().__init__(self._message())

    def _message(self) -> str:
        loc = "seq" + "".join(f"[{w}]" if isinstance(w, int) else f".{w}" for w in self.where) + " " if self.where else ""
        got = f"shape {tuple(self.got)}" if isinstance(self.got, (tuple, list)) else str(self.got)
        return f"{loc}{self.layer!r}: expected {self.expected}, got {got}"

    def _within(self, index: int | str) -> "ShapeError":
        """Prefix the location with the position of the enclosing seq child (in place)."""
        self.where = (index,) + self.where
        self.args = (self._message(),)
        return self

    def __reduce__(self):
        return (type(self), (self.layer, self.expected, self.got, self.where))


def _show(value: Any) -> str:
    if isinstance(value, np.dtype):
        return value.name
    if callable(value) and hasattr(value, "__name__") and not isinstance(value, Layer):
        return value.__name__
    return repr(value)


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # arrays and other values without a boolean ==
        return a is b


class Layer:
    """Base of every tlean layer: a frozen dataclass of static configuration.

    The contract (DESIGN 1.1)::

        init(key) -> (params, state)
        apply(params, state, x, *, key=None, train=False) -> (y, state)

    ``params`` are the trainable arrays (dicts with PyTorch's names), ``state`` the
    non-trainable ones (``{}`` when there are none). ``apply`` is a pure function: it
    runs the same eagerly and under ``jax.jit``, ``jax.grad`` and ``jax.vmap``. Shapes
    are checked at trace time and a bad input raises :class:`ShapeError`.

    Subclasses are ``@dataclass(frozen=True)`` and validate and normalise their
    configuration in ``__post_init__`` so that equal configs hash equal. They inherit
    a compact ``repr`` (only the fields that differ from their defaults),
    ``has_params`` and composition with ``>>``. A parameter-free layer need only
    define ``apply``.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # Put our repr in the class dict before @dataclass runs, so it keeps it.
        if "__repr__" not in cls.__dict__:
            cls.__repr__ = Layer.__repr__

    def init(self, key: jax.Array | None) -> tuple[Params, State]:
        """Initial ``(params, state)``; parameter-free layers return ``({}, {})``."""
        return {}, {}

    def apply(self, params: Params, state: State, x: Any, *, key: jax.Array | None = None, train: bool = False):
        """``(y, new_state)`` for input ``x``."""
        raise NotImplementedError(f"{type(self).__name__} does not define apply")

    @property
    def has_params(self) -> bool:
        """Whether ``init`` yields any array (params or state); derived with ``jax.eval_shape``."""
        return bool(jax.tree.leaves(init_shapes(self)))

    def _init_stream(self, stream: SeedStream) -> tuple[tuple[Params, State], SeedStream]:
        """Initialise from a seed stream: draw one key if the layer has arrays, none otherwise."""
        if not self.has_params:
            return self.init(None), stream
        key, stream = stream.fresh()
        return self.init(key), stream

    def __rshift__(self, other: Any):
        if isinstance(other, Layer):
            return Seq(_children(self) + _children(other))
        return NotImplemented

    def __repr__(self) -> str:
        if not dataclasses.is_dataclass(self):
            return f"{type(self).__name__}()"
        shown = []
        for f in dataclasses.fields(self):
            if not f.repr:
                continue
            value = getattr(self, f.name)
            has_default = f.default is not dataclasses.MISSING
            if has_default and _same(value, f.default):
                continue
            shown.append(f"{f.name}={_show(value)}")
        return f"{type(self).__name__}({', '.join(shown)})"


def init_shapes(layer: Layer) -> tuple[Any, Any]:
    """``jax.eval_shape(layer.init, key)``: the shapes and dtypes of ``(params, state)``.

    Cached per layer config (a bounded LRU cache, which keeps up to 4096 configs alive).
    """
    try:
        return _init_shapes(layer)
    except TypeError:  # an unhashable field: derive it without the cache
        return _init_shapes.__wrapped__(layer)


@functools.lru_cache(maxsize=4096)
def _init_shapes(layer: Layer) -> tuple[Any, Any]:
    if isinstance(layer, Seq):
        return layer.pack(init_shapes(c)[0] for c in layer.layers), layer.pack(init_shapes(c)[1] for c in layer.layers)
    return jax.eval_shape(layer.init, jax.random.key(0))


def check_arrays(layer: Layer, params: Any, state: Any) -> None:
    """Check at trace time that ``params`` and ``state`` have the structure and shapes ``init`` gives.

    A wrong tree is a ``TypeError`` listing the expected and received entries; a wrong
    shape a :class:`ShapeError` naming each mismatched array. Nothing is broadcast.
    """
    for part, tree, expected in zip(("params", "state"), (params, state), init_shapes(layer)):
        got_leaves, got_tree = jax.tree.flatten(tree)
        want_leaves, want_tree = jax.tree.flatten(expected)
        if got_tree != want_tree:
            raise TypeError(f"{layer!r}: {part} should have the entries {_entries(expected)}, got {_entries(tree)}")
        wrong = [i for i, (w, g) in enumerate(zip(want_leaves, got_leaves)) if tuple(w.shape) != tuple(jnp.shape(g))]
        if wrong:  # names only on the error path: eager calls run this check every time
            names = [_name(p) for p, _ in jax.tree_util.tree_flatten_with_path(expected)[0]]
            expect = ", ".join(f"{names[i]} {list(want_leaves[i].shape)}" for i in wrong)
            got = ", ".join(f"{names[i]} {tuple(jnp.shape(got_leaves[i]))}" for i in wrong)
            raise ShapeError(layer, f"{part} {expect}", got)


def path_name(path: tuple) -> str:
    """A pytree key path as dotted PyTorch-style text.

    ``(SequenceKey(0), DictKey('weight'))`` -> ``"0.weight"``; the empty path -> ``""``.
    """
    return ".".join(str(getattr(e, "key", getattr(e, "idx", getattr(e, "name", e)))) for e in path)


def _name(path: tuple) -> str:
    return path_name(path) or "(root)"


def _entries(tree: Any) -> list[str]:
    return [_name(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _children(layer: Layer) -> tuple[Layer, ...]:
    """The layers ``>>`` splices in: an unnamed Seq's children, or the layer itself."""
    if isinstance(layer, Seq) and layer.names is None:
        return layer.layers
    return (layer,)


@dataclass(frozen=True)
class Seq(Layer):
    """Layers applied in order: stax's ``serial``, PyTorch's ``nn.Sequential``.

    Params and state are tuples with one entry per child (PyTorch's ``"0.weight"`` is
    ``params[0]["weight"]``), or dicts keyed by name when the children are named
    (``seq(conv1=..., bn1=...)``). ``init`` threads one seed stream: each child with
    arrays draws one key in order, parameter-free children draw none, nested Seqs
    thread the same stream. ``apply`` gives child ``i`` the dropout key
    ``jax.random.fold_in(key, i)``.

    Build it with :func:`seq` or ``a >> b``.
    """

    layers: tuple[Layer, ...]
    names: tuple[str, ...] | None = None

    def __post_init__(self):
        object.__setattr__(self, "layers", tuple(self.layers))
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, Layer):
                hint = " (a Model: compose Models with >> or nn.Sequential)" if hasattr(layer, "params") else ""
                raise TypeError(f"seq: child {i} must be a tlean Layer, got {type(layer).__name__}{hint}")
        if self.names is not None:
            names = tuple(self.names)
            object.__setattr__(self, "names", names)
            if len(names) != len(self.layers) or len(set(names)) != len(names):
                raise ValueError(f"seq: names {names} must be unique, one per child ({len(self.layers)} children)")
            for n in names:
                if not isinstance(n, str) or not n.isidentifier():
                    raise ValueError(f"seq: child names must be identifiers, got {n!r}")

    @property
    def keys(self) -> tuple:
        """The child keys of params and state: names, or ``0 .. n-1``."""
        return self.names if self.names is not None else tuple(range(len(self.layers)))

    def pack(self, values) -> Any:
        """Arrange one value per child as this Seq's params/state container (tuple or dict)."""
        values = tuple(values)
        return dict(zip(self.names, values)) if self.names is not None else values

    def _init_stream(self, stream):
        params, state = [], []
        for layer in self.layers:
            (p, s), stream = layer._init_stream(stream)
            params.append(p)
            state.append(s)
        return (self.pack(params), self.pack(state)), stream

    def init(self, key):
        if key is None:
            if self.has_params:
                raise TypeError(f"{self!r}.init needs a key: it has parameters")
            return self._init_stream(None)[0]
        return self._init_stream(SeedStream(key))[0]

    def apply(self, params, state, x, *, key=None, train=False):
        _check_container(self, params, "params")
        _check_container(self, state, "state")
        new_state = []
        with _debug.scope(x):
            for i, (name, layer) in enumerate(zip(self.keys, self.layers)):
                child_key = None if key is None else jax.random.fold_in(key, i)
                with _debug.child(name) as where:
                    try:
                        if not isinstance(layer, Seq):
                            check_arrays(layer, params[name], state[name])
                        x, s = layer.apply(params[name], state[name], x, key=child_key, train=train)
                    except ShapeError as err:
                        raise err._within(name)
                    _debug.record(x, layer, where)
                new_state.append(s)
        return x, self.pack(new_state)

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)

    def __getitem__(self, index: int | slice | str):
        if isinstance(index, str):
            return self.layers[self._position(index)]
        if isinstance(index, slice):
            names = None if self.names is None else self.names[index]
            return Seq(self.layers[index], names)
        return self.layers[index]

    def _position(self, name: str) -> int:
        if self.names is None or name not in self.names:
            raise KeyError(f"seq has no child named {name!r}; its children are {list(self.keys)}")
        return self.names.index(name)

    def __repr__(self) -> str:
        if self.names is None:
            inner = ", ".join(repr(layer) for layer in self.layers)
        else:
            inner = ", ".join(f"{n}={layer!r}" for n, layer in zip(self.names, self.layers))
        return f"Seq({inner})"


def _check_container(s: Seq, tree: Any, what: str) -> None:
    kind = dict if s.names is not None else tuple
    if not isinstance(tree, kind) or len(tree) != len(s.layers) or (kind is dict and set(tree) != set(s.names)):
        got = f"{type(tree).__name__} with keys {list(tree)}" if isinstance(tree, dict) else (
            f"{type(tree).__name__} of length {len(tree)}" if isinstance(tree, (tuple, list)) else type(tree).__name__)
        raise TypeError(f"{s!r}: {what} must be a {kind.__name__} with one entry per child {list(s.keys)}, got {got}")


def seq(*layers: Layer, **named: Layer) -> Seq:
    """Compose layers in order, keeping nesting as given.

    ``seq(a, b, c)`` keys params by position (``params[0]``); ``seq(conv1=a, bn1=b)``
    keys them by name (``params["conv1"]``), as ``nn.Sequential(OrderedDict(...))``
    does in PyTorch. Mixing the two forms is a ``TypeError``.

    >>> from tlean import seq
    >>> from tlean.layers import Linear, relu
    >>> net = seq(Linear(4, 8), relu, Linear(8, 2))
    >>> len(net)
    3
    """
    if layers and named:
        raise TypeError("seq takes either positional or keyword children, not both")
    if named:
        return Seq(tuple(named.values()), tuple(named))
    return Seq(layers)
