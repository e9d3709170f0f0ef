"""The Layer contract, errors, composites (layers made of layers), and ``seq`` / ``>>``.

One protocol serves every layer made of layers (DESIGN 1.2): sub-layers are fields of a
frozen dataclass, :meth:`Layer.children` finds them, the base class derives ``init`` from
them (one seed stream threaded in declaration order), and :func:`call_child` applies one of
them with the shared duties (array checks, a ``jax.named_scope``, error locations,
``check_finite`` and ``summary`` records). :class:`Seq` is the one transparent composite.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tlean import _debug
from tlean.seed import SeedStream

__all__ = ["Layer", "Seq", "ShapeError", "call_child", "child_config", "seq", "sublayer"]

Params = Any
State = Any

#: Keywords that carry a per-child value or select a child's output (DESIGN 1.2): a
#: combinator passes them on only when exactly one descendant declares them.
PER_CHILD_KEYWORDS = frozenset(
    {
        "return_final",
        "need_weights",
        "initial_state",
        "cache",
        "start_pos",
        "hx",
        "input2",
        "x2",
        "offsets",
        "per_sample_weights",
        "kv_cache",
    }
)
#: Per-child keywords that change what a layer returns: only the last child of a Seq may take them.
OUTPUT_SELECTORS = frozenset({"return_final", "need_weights"})


class ShapeError(ValueError):
    """An input of the wrong shape, raised at trace time before XLA compiles anything.

    The message names where the layer sits from the outermost layer applied (``seq[2]``,
    ``seq.layer1[0].conv1``: Seq indices in brackets, names of named children and
    composite fields after dots), the layer, what it expected and what it got::

        seq[2] Linear(in_features=128, out_features=10): expected input [..., 128], got shape (32, 64)

    Attributes:
      layer: the layer that refused the input.
      expected: what it expected, in words (``"input [..., 128]"``).
      got: the shape (a tuple) or description of what it received.
      where: the path of indices or names from the outermost layer to this one.
    """

    def __init__(self, layer: Any, expected: str, got: Any, where: tuple = ()):
        self.layer, self.expected, self.got, self.where = layer, expected, got, tuple(where)
        super().__init__(self._message())

    def _message(self) -> str:
        loc = location(self.where) + " " if self.where else ""
        got = f"shape {tuple(self.got)}" if isinstance(self.got, (tuple, list)) else str(self.got)
        return f"{loc}{self.layer!r}: expected {self.expected}, got {got}"

    def _within(self, index: int | str) -> ShapeError:
        """Prefix the location with the position of the enclosing child (in place)."""
        self.where = (index,) + self.where
        self.args = (self._message(),)
        return self

    def __reduce__(self):
        return (type(self), (self.layer, self.expected, self.got, self.where))


def location(where: tuple) -> str:
    """``("layer1", 0, "conv1")`` -> ``"seq.layer1[0].conv1"`` (``"*"`` is a stacked layer: ``[*]``)."""
    return "seq" + "".join(f"[{w}]" if isinstance(w, int) or w == "*" else f".{w}" for w in where)


def _show(value: Any) -> str:
    if isinstance(value, np.dtype):
        return value.name
    if callable(value) and hasattr(value, "__name__") and not isinstance(value, Layer):
        return value.__name__
    return repr(value)


def same_value(a: Any, b: Any) -> bool:
    """``a == b`` as a bool, or identity for values without a boolean ``==`` (arrays)."""
    try:
        return bool(a == b)
    except Exception:  # arrays and other values without a boolean ==
        return a is b


# -- fields ---------------------------------------------------------------------------------
def sublayer(**kwargs: Any) -> Any:
    """A child built from the config in ``__post_init__``: ``field(init=False, repr=False, compare=False)``.

    Only init fields are the layer's configuration (equality, hashing, the checkpoint
    record); a sub-layer derived from them is set with ``object.__setattr__`` in
    ``__post_init__`` and found by :meth:`Layer.children` in declaration order.
    """
    return dataclasses.field(init=False, repr=False, compare=False, **kwargs)


def child_config(**kwargs: Any) -> Any:
    """A Layer-valued field that is configuration, not a child (e.g. TransformerEncoder's ``encoder_layer``)."""
    metadata = dict(kwargs.pop("metadata", None) or {}, child=False)
    return dataclasses.field(metadata=metadata, **kwargs)


@functools.cache
def _child_field_names(cls: type) -> tuple[str, ...]:
    if not dataclasses.is_dataclass(cls):
        return ()
    return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("child", True))


@functools.cache
def _declared_keywords(apply: Callable) -> frozenset[str]:
    parameters = inspect.signature(apply).parameters.values()
    return frozenset(p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY) - {"key", "train"}


class Layer:
    """Base of every tlean layer: a frozen dataclass of static configuration.

    The contract (DESIGN 1.1)::

        init(key) -> (params, state)
        apply(params, state, x, *, key=None, train=False) -> (y, state)

    ``params`` are the trainable arrays (dicts with PyTorch's names), ``state`` the
    non-trainable ones (``{}`` when there are none). ``apply`` is a pure function: it
    runs the same eagerly and under ``jax.jit``, ``jax.grad`` and ``jax.vmap``. Shapes
    are checked at trace time and a bad input raises :class:`ShapeError`.

    **Composites.** A layer whose fields hold Layers (or tuples of Layers, torch's
    ModuleList) is a composite: the base class derives ``init`` (its key starts a
    ``SeedStream``, threaded through the children in declaration order; each child with
    arrays draws one key, a :class:`Seq` threads the stream), params and state nest under
    the field names (a tuple field as ``field.i``; a ``None`` field is absent), and every
    walk (names, interop, summary, sharding rules, checkpoints, ``check_finite``,
    ``tlean.verify``) finds the children the same way. A user writes only ``apply``,
    calling children with :meth:`bind` (or :meth:`child`)::

        @dataclass(frozen=True)
        class Block(Layer):
            fc1: Layer
            norm: Layer

            def apply(self, params, state, x, *, key=None, train=False):
                c = self.bind(params, state, key=key, train=train)
                return x + c.norm(c.fc1(x)), c.state

    Optional class hooks: ``init_overrides`` (leaf-name regex -> ``init(key, shape,
    dtype)``, applied after the children's own init, drawing further keys from the same
    stream in leaf order), ``ties`` (alias leaf name -> canonical leaf name: one array,
    two names) and ``inputs`` (the keyword names of extra positional inputs of
    ``Model.__call__``, in torch's order).

    Subclasses are ``@dataclass(frozen=True)`` and validate and normalise their
    configuration in ``__post_init__`` so that equal configs hash equal. They inherit
    a compact ``repr`` (only the fields that differ from their defaults),
    ``has_params``, ``keywords`` and composition with ``>>``. A parameter-free layer
    need only define ``apply``.
    """

    init_overrides: Mapping[str, Callable] | None = None
    ties: Mapping[str, str] | None = None
    inputs: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # Put our repr in the class dict before @dataclass runs, so it keeps it.
        if "__repr__" not in cls.__dict__:
            cls.__repr__ = Layer.__repr__
        # Run the per-field checks (fields declared with metadata["check"]) before the
        # layer's own __post_init__, so every layer treats the same value the same way.
        own = cls.__dict__.get("__post_init__")
        if own is not None and not getattr(own, "_checks_fields", False):

            @functools.wraps(own)
            def __post_init__(self, *args):
                check_fields(self)
                own(self, *args)

            __post_init__.__dict__["_checks_fields"] = True
            cls.__post_init__ = __post_init__

    def __post_init__(self):
        check_fields(self)

    # -- children -----------------------------------------------------------------------
    def children(self) -> tuple[tuple[Any, Any], ...]:
        """``((name, child), ...)`` in declaration order: each field holding a Layer or a
        non-empty tuple of Layers (``None`` fields and configuration are skipped)."""
        out = []
        for name in _child_field_names(type(self)):
            value = getattr(self, name, None)
            if isinstance(value, Layer) or (
                isinstance(value, tuple) and value and all(isinstance(v, Layer) for v in value)
            ):
                out.append((name, value))
        return tuple(out)

    def init(self, key: jax.Array | None) -> tuple[Params, State]:
        """Initial ``(params, state)``: derived from the children; ``({}, {})`` for a layer without any."""
        if not self.children():
            return {}, {}
        if key is None and self.has_params:
            raise TypeError(f"{self!r}.init needs a key: it has parameters")
        return init_children(self, None if key is None else SeedStream(key))[0]

    def apply(self, params: Params, state: State, x: Any, *, key: jax.Array | None = None, train: bool = False):
        """``(y, new_state)`` for input ``x``."""
        raise NotImplementedError(f"{type(self).__name__} does not define apply")

    @property
    def has_params(self) -> bool:
        """Whether ``init`` yields any array (params or state); derived with ``jax.eval_shape``."""
        return bool(jax.tree.leaves(init_shapes(self)))

    @property
    def keywords(self) -> frozenset[str]:
        """The keyword-only parameters of ``apply`` other than ``key`` and ``train``."""
        return _declared_keywords(type(self).apply)

    def declarers(self, keyword: str) -> int:
        """How many layers at or below this one take ``keyword`` (combinators add up their children)."""
        return int(keyword in self.keywords)

    def stacked(self) -> tuple[Layer, int] | None:
        """``(child, n)`` for a layer that holds ``n`` copies of ``child``'s arrays stacked on a
        leading axis (:class:`~tlean.layers.Stacked`); ``None`` for every other layer."""
        return None

    def _init_stream(self, stream: SeedStream | None) -> tuple[tuple[Params, State], Any]:
        """Initialise from a seed stream: draw one key if the layer has arrays, none otherwise."""
        if not self.has_params:
            return self.init(None), stream
        if stream is None:
            raise TypeError(f"{self!r} has parameters and needs a key")
        key, stream = stream.fresh()
        return self.init(key), stream

    # -- calling children -----------------------------------------------------------------
    def bind(
        self, params: Params, state: State, *, key: jax.Array | None = None, train: bool = False, **context: Any
    ) -> Bound:
        """A view for calling children in ``apply``: ``c = self.bind(params, state, key=key, train=train)``.

        ``c.fc1(x, **kw)`` applies child ``fc1`` (see :func:`call_child`) with field ``j``'s
        dropout key ``fold_in(key, j)``, ``c.layers[i](x)`` element ``i`` of a tuple field
        (key ``fold_in(fold_in(key, j), i)``); ``context`` keywords go to every child that
        declares them; ``c.state`` is the new state after the calls made.
        """
        return Bound(self, params, state, key, train, context)

    def child(
        self,
        name: str,
        params: Params,
        state: State,
        x: Any,
        *,
        key: jax.Array | None = None,
        train: bool = False,
        **kwargs: Any,
    ) -> tuple[Any, State]:
        """Apply child ``name`` once: ``(y, the child's new state)`` (the one-call form of :meth:`bind`)."""
        bound = self.bind(params, state, key=key, train=train)
        y = getattr(bound, name)(x, **kwargs)
        return y, bound.state[name]

    def __rshift__(self, other: Any):
        if isinstance(other, Layer):
            return Seq(_spliced(self) + _spliced(other))
        return NotImplemented

    def __repr__(self) -> str:
        return layer_repr(self, _show)


def layer_repr(layer: Layer, show: Callable[[Any], str]) -> str:
    """``Type(field=value, ...)`` with the fields that differ from their defaults, each value
    written by ``show`` (``repr`` for display; checkpoints pass a process-independent writer)."""
    if isinstance(layer, Seq):
        names = layer.names or [None] * len(layer.layers)
        return "Seq(" + ", ".join(show(c) if n is None else f"{n}={show(c)}" for n, c in zip(names, layer.layers)) + ")"
    if not dataclasses.is_dataclass(layer):
        return f"{type(layer).__name__}()"
    shown = []
    for f in dataclasses.fields(layer):
        if not f.repr:
            continue
        value = getattr(layer, f.name)
        if f.default is not dataclasses.MISSING and same_value(value, f.default):
            continue
        shown.append(f"{f.name}={show(value)}")
    return f"{type(layer).__name__}({', '.join(shown)})"


def check_fields(layer: Layer) -> None:
    """Run each field's declared check (``metadata["check"]``) and store the normalised value."""
    if not dataclasses.is_dataclass(layer):
        return
    for name, check in _field_checks(type(layer)):
        object.__setattr__(layer, name, check(type(layer).__name__, name, getattr(layer, name)))


@functools.cache
def _field_checks(cls: type) -> tuple:
    return tuple((f.name, f.metadata["check"]) for f in dataclasses.fields(cls) if "check" in f.metadata)


# -- init -----------------------------------------------------------------------------------
def init_children(layer: Layer, stream: SeedStream | None) -> tuple[tuple[Params, State], SeedStream | None]:
    """Initialise ``layer``'s children from ``stream`` in order; then its overrides and ties.

    A child (or tuple element) without arrays contributes nothing to a composite's dicts;
    :class:`Seq` keeps one entry per child (its own ``_init_stream``).
    """
    params, state = {}, {}
    for name, child in layer.children():
        if isinstance(child, tuple):
            pairs = []
            for c in child:
                pair, stream = c._init_stream(stream)
                pairs.append(pair)
            if any(c.has_params for c in child):
                params[name], state[name] = tuple(p for p, _ in pairs), tuple(s for _, s in pairs)
        else:
            pair, stream = child._init_stream(stream)
            if child.has_params:
                params[name], state[name] = pair
    if layer.init_overrides:
        params, stream = _override(layer, params, stream)
    if layer.ties:
        params = _drop_aliases(layer, params)
    return (params, state), stream


def _override(layer: Layer, params: Params, stream: SeedStream | None) -> tuple[Params, SeedStream | None]:
    """Re-initialise each leaf whose name fully matches a pattern (first match wins), one key each in leaf order."""
    rules = [(re.compile(p), fn) for p, fn in (layer.init_overrides or {}).items()]
    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    out = []
    for path, leaf in leaves:
        name = path_name(path)
        fn = next((fn for pattern, fn in rules if pattern.fullmatch(name)), None)
        if fn is not None:
            if stream is None:
                raise ValueError(f"{layer!r}: init_overrides need keys, but this init draws none")
            key, stream = stream.fresh()
            leaf = jnp.asarray(fn(key, leaf.shape, leaf.dtype), leaf.dtype)
        out.append(leaf)
    return jax.tree.unflatten(treedef, out), stream


def _split_name(name: str) -> list:
    return [int(p) if p.isdigit() else p for p in name.split(".")]


def get_path(tree: Any, name: str) -> Any:
    """The node at dotted ``name`` in a tree of dicts and tuples."""
    for part in _split_name(name):
        tree = tree[part]
    return tree


def set_path(tree: Any, name: str, value: Any) -> Any:
    """A copy of ``tree`` (dicts and tuples) with the node at ``name`` set (or removed, for ``_REMOVE``)."""
    head, *rest = _split_name(name)
    new = value if not rest else set_path(tree[head], ".".join(map(str, rest)), value)
    if isinstance(tree, tuple):
        return tree[:head] + (new,) + tree[head + 1 :]
    out = dict(tree)
    if new is _REMOVE:
        del out[head]
    else:
        out[head] = new
    return out


_REMOVE = object()


def _drop_aliases(layer: Layer, params: Params) -> Params:
    for alias, canonical in (layer.ties or {}).items():
        try:
            get_path(params, canonical)
        except (KeyError, IndexError, TypeError):
            raise ValueError(f"{layer!r}: tie {alias!r} -> {canonical!r}: no leaf named {canonical!r}") from None
        params = set_path(params, alias, _REMOVE)
    return params


def with_ties(layer: Layer, params: Params) -> Params:
    """``params`` with every alias of ``layer.ties`` filled in from its canonical leaf (the same array)."""
    for alias, canonical in (layer.ties or {}).items():
        params = set_path(params, alias, get_path(params, canonical))
    return params


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
    shape a :class:`ShapeError` naming each mismatched array. Nothing is broadcast. A
    composite's shapes are left to its children, so the error names the child's path.
    """
    if isinstance(layer, Seq):
        return
    composite = bool(layer.children())
    for part, tree, expected in zip(("params", "state"), (params, state), init_shapes(layer)):
        got_leaves, got_tree = jax.tree.flatten(tree)
        want_leaves, want_tree = jax.tree.flatten(expected)
        if part == "state" and not got_leaves and not want_leaves:
            continue  # no state: {} stands for any empty structure
        if got_tree != want_tree:
            raise TypeError(f"{layer!r}: {part} should have the entries {_entries(expected)}, got {_entries(tree)}")
        wrong = [i for i, (w, g) in enumerate(zip(want_leaves, got_leaves)) if tuple(w.shape) != tuple(jnp.shape(g))]
        if wrong and not composite:  # names only on the error path: eager calls run this check every time
            names = [_name(p) for p, _ in jax.tree_util.tree_flatten_with_path(expected)[0]]
            expect = ", ".join(f"{names[i]} {list(want_leaves[i].shape)}" for i in wrong)
            got = ", ".join(f"{names[i]} {tuple(jnp.shape(got_leaves[i]))}" for i in wrong)
            raise ShapeError(layer, f"{part} {expect}", got)


def path_keys(path: tuple) -> list:
    """The keys of a pytree key path: ``(SequenceKey(0), DictKey('weight'))`` -> ``[0, "weight"]``."""
    return [getattr(e, "key", getattr(e, "idx", getattr(e, "name", e))) for e in path]


def path_name(path: tuple) -> str:
    """A pytree key path as dotted PyTorch-style text.

    ``(SequenceKey(0), DictKey('weight'))`` -> ``"0.weight"``; the empty path -> ``""``.
    """
    return ".".join(map(str, path_keys(path)))


def _name(path: tuple) -> str:
    return path_name(path) or "(root)"


def _entries(tree: Any) -> list[str]:
    return [_name(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


# -- applying children ----------------------------------------------------------------------
def call_child(
    layer: Layer,
    where: tuple,
    params: Params,
    state: State,
    x: Any,
    *,
    key: jax.Array | None,
    train: bool,
    kwargs: Mapping[str, Any] | None = None,
) -> tuple[Any, State]:
    """Apply ``layer`` as the child at ``where`` (names or indices below its parent).

    The one place that does what every child call shares: the array check, a
    ``jax.named_scope`` per path part (so HLO dumps, profiles and ``tlean.verify`` name
    the layer), the location of a :class:`ShapeError`, and the ``check_finite`` and
    ``Model.summary`` records.
    """
    with _debug.scope(x), _debug.child(where) as path, _scopes(where):
        with _debug.summary_row(layer, path) as row:
            try:
                check_arrays(layer, params, state)
                y, new_state = layer.apply(params, state, x, key=key, train=train, **(kwargs or {}))
            except ShapeError as err:
                for part in reversed(where):
                    err._within(part)
                raise
            row(y)
        _debug.record(y, layer, path)
    return y, new_state


class _scopes:
    """Nested ``jax.named_scope`` for each part of a child path."""

    def __init__(self, where: tuple):
        self.scopes = [jax.named_scope(str(w)) for w in where]

    def __enter__(self):
        for s in self.scopes:
            s.__enter__()

    def __exit__(self, *exc):
        for s in reversed(self.scopes):
            s.__exit__(*exc)
        return False


class Bound:
    """A composite's children bound to its params, state, key, train flag and context keywords.

    Made by :meth:`Layer.bind`. Attribute ``c.name`` is a callable applying child ``name``
    (or, for a tuple field, a sequence of such callables); ``c.state`` is the state
    tree with every child's new state written so far; ``c.params`` the params with
    tied aliases filled in.
    """

    def __init__(
        self, layer: Layer, params: Params, state: State, key: jax.Array | None, train: bool, context: Mapping[str, Any]
    ):
        self._layer, self._key, self._train, self._context = layer, key, train, dict(context)
        self.params = with_ties(layer, params) if layer.ties else params
        self.state = dict(state) if isinstance(state, dict) else state
        self._index = {name: (j, child) for j, (name, child) in enumerate(layer.children())}

    def __getattr__(self, name: str) -> Any:
        index = self.__dict__.get("_index", {})
        if name not in index:
            raise AttributeError(f"{self._layer!r} has no child {name!r}; its children are {list(index)}")
        j, child = index[name]
        key = None if self._key is None else jax.random.fold_in(self._key, j)
        if isinstance(child, tuple):
            return tuple(
                _BoundChild(self, c, (name, i), None if key is None else jax.random.fold_in(key, i))
                for i, c in enumerate(child)
            )
        return _BoundChild(self, child, (name,), key)


class _BoundChild:
    def __init__(self, bound: Bound, layer: Layer, where: tuple, key: jax.Array | None):
        self.bound, self.layer, self.where, self.key = bound, layer, where, key

    def __call__(self, x: Any, **kwargs: Any) -> Any:
        b, layer = self.bound, self.layer
        context = {k: v for k, v in b._context.items() if k in layer.keywords and k not in kwargs}
        stateful = bool(jax.tree.leaves(init_shapes(layer)[1]))
        if layer.has_params:
            params = _at(b.params, self.where)
            # a stateless child may be given {} for its state (as a layer without children is)
            state = _at(b.state, self.where) if stateful or _has(b.state, self.where) else {}
        else:  # a child without arrays has no entry in a composite's dicts
            params, state = layer.init(None)
        y, new = call_child(
            layer, self.where, params, state, x, key=self.key, train=b._train, kwargs={**context, **kwargs}
        )
        if layer.has_params and (stateful or _has(b.state, self.where)):
            b.state = _put(b.state, self.where, new)
        return y


def _at(tree: Any, where: tuple) -> Any:
    for part in where:
        tree = tree[part]
    return tree


def _has(tree: Any, where: tuple) -> bool:
    try:
        _at(tree, where)
    except (KeyError, IndexError, TypeError):
        return False
    return True


def _put(tree: Any, where: tuple, value: Any) -> Any:
    if not where:
        return value
    head, rest = where[0], where[1:]
    new = _put(tree[head], rest, value)
    if isinstance(tree, tuple):
        return tree[:head] + (new,) + tree[head + 1 :]
    return {**tree, head: new}


# -- keyword routing (combinators) ----------------------------------------------------------
def route(parent: Layer, children: Sequence[Layer], kwargs: Mapping[str, Any]) -> list[dict]:
    """The keywords each child of a combinator gets (DESIGN 1.2).

    Context keywords (masks, ``allow``, ``memory``, ``kv``) go to every child that declares
    them; per-child keywords (:data:`PER_CHILD_KEYWORDS`) only when exactly one descendant
    declares them, and an output selector only when that is the last child of a Seq. A
    keyword no child takes is a ``TypeError`` naming it and the layer.
    """
    out: list[dict] = [{} for _ in children]
    for name, value in kwargs.items():
        takers = [i for i, c in enumerate(children) if name in c.keywords]
        if not takers:
            raise TypeError(f"{parent!r} got the keyword {name!r}, which none of its children takes")
        if name in PER_CHILD_KEYWORDS:
            count = sum(children[i].declarers(name) for i in takers)
            if count != 1:
                raise TypeError(
                    f"{parent!r}: {name!r} carries one layer's value, but {count} layers inside take it; "
                    f"call the layer that should get it directly"
                )
            if name in OUTPUT_SELECTORS and not (isinstance(parent, Seq) and takers == [len(children) - 1]):
                raise TypeError(
                    f"{parent!r}: {name!r} changes what a layer returns; only the last child of a seq may take it"
                )
        for i in takers:
            out[i][name] = value
    return out


def union_keywords(children: Iterable[Layer]) -> frozenset[str]:
    return frozenset().union(*(c.keywords for c in children))


# -- Seq ------------------------------------------------------------------------------------
def _spliced(layer: Layer) -> tuple[Layer, ...]:
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
    arrays draws one key in order, parameter-free children draw none, and a Seq nested
    anywhere (also inside a composite) threads its parent's stream: it is the one
    transparent layer. ``apply`` gives child ``i`` the dropout key
    ``jax.random.fold_in(key, i)`` and routes keywords (masks to every child that takes
    them; see :func:`route`).

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

    def children(self) -> tuple[tuple[Any, Layer], ...]:
        return tuple(zip(self.keys, self.layers))

    @property
    def keywords(self) -> frozenset[str]:
        return union_keywords(self.layers)

    def declarers(self, keyword: str) -> int:
        return sum(c.declarers(keyword) for c in self.layers)

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

    def apply(self, params, state, x, *, key=None, train=False, **kwargs):
        """Thread ``x`` through the children; ``kwargs`` are routed by :func:`route`."""
        _check_container(self, params, "params")
        _check_container(self, state, "state")
        routed = route(self, self.layers, kwargs) if kwargs else [None] * len(self.layers)
        new_state = []
        with _debug.scope(x):
            for i, (name, layer) in enumerate(zip(self.keys, self.layers)):
                child_key = None if key is None else jax.random.fold_in(key, i)
                x, s = call_child(
                    layer, (name,), params[name], state[name], x, key=child_key, train=train, kwargs=routed[i]
                )
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
        return layer_repr(self, repr)


def _check_container(s: Seq, tree: Any, what: str) -> None:
    kind = dict if s.names is not None else tuple
    if not isinstance(tree, kind) or len(tree) != len(s.layers) or (kind is dict and set(tree) != set(s.names or ())):
        got = (
            f"{type(tree).__name__} with keys {list(tree)}"
            if isinstance(tree, dict)
            else (
                f"{type(tree).__name__} of length {len(tree)}"
                if isinstance(tree, (tuple, list))
                else type(tree).__name__
            )
        )
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
