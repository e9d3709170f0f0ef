"""Combinators: ``Stacked`` (a layer repeated with stacked params, scanned), ``Residual`` and ``Parallel``.

With :class:`~tlean.Seq` these are the layers that route keywords (DESIGN 1.2): context
keywords (masks, ``allow``, ``memory``, ``kv``) go to every child that declares them,
per-child keywords only where exactly one layer inside takes them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import jax
import jax.core
import jax.numpy as jnp
import numpy as np
from jax import lax

from tlean import _debug
from tlean._core import Layer, ShapeError, call_child, child_config, route, union_keywords
from tlean.layers import _util
from tlean.seed import tracing


@dataclass(frozen=True)
class Stacked(Layer):
    """``num_layers`` copies of ``layer`` applied in turn, their params and state stacked on a leading axis.

    ``params`` is ``layer``'s params with a leading ``num_layers`` axis (likewise
    ``state``), so one ``lax.scan`` runs every depth and compile time does not grow with
    it (``scan=False`` unrolls in Python: the same params tree, outputs and gradients).
    Layer ``i`` is initialised from ``jax.random.split(key, num_layers)[i]`` (one vmapped,
    jitted init) and gets the dropout key ``jax.random.fold_in(key, i)``. ``x`` is first
    cast to the layer's result dtype; a layer that does not map ``x`` to the same shape
    and dtype is a :class:`~tlean.ShapeError` at trace time. The new state is returned
    stacked.

    Names: Stacked adds the name level ``*`` (``layers.*.linear1.weight``), which a
    PyTorch state_dict spells ``layers.0.linear1.weight``, ``layers.1...`` (interop
    splits and stacks it); a sharding rule's spec describes one layer and tlean prepends
    ``None`` for the layer axis. PyTorch analogue: ``nn.ModuleList`` / ``nn.Sequential``
    of ``num_layers`` deep copies applied in order (whose copies start identical; here
    each has its own initial values).

    Args:
      layer: the layer to repeat (any layer: a Transformer block, a Mamba block, a
        composite of your own).
      num_layers: how many copies.
      scan: apply with ``lax.scan`` (True) or a Python loop (False).

    Shapes: ``x -> y`` of the same shape and dtype.

    >>> import jax, jax.numpy as jnp
    >>> from tlean.layers import Linear, Stacked
    >>> stack = Stacked(Linear(4, 4), 3)
    >>> params, state = stack.init(jax.random.key(0))
    >>> params["weight"].shape
    (3, 4, 4)
    >>> stack.apply(params, state, jnp.ones((2, 4)))[0].shape
    (2, 4)
    """

    layer: Layer = child_config()
    num_layers: int = _util.size(1)
    scan: bool = _util.flag(True)

    def __post_init__(self):
        if not isinstance(self.layer, Layer):
            raise TypeError(f"Stacked: layer must be a tlean Layer, got {type(self.layer).__name__}")

    def stacked(self) -> tuple[Layer, int]:
        return self.layer, self.num_layers

    @property
    def keywords(self) -> frozenset[str]:
        return self.layer.keywords

    def declarers(self, keyword: str) -> int:
        return self.num_layers * self.layer.declarers(keyword)

    def init(self, key: jax.Array | None) -> tuple[Any, Any]:
        if not self.layer.has_params:
            return self.layer.init(None)
        if key is None:
            raise TypeError(f"{self!r}: init needs a key, the layer has parameters")
        return _stacked_init(self, key)

    def apply(self, params, state, x, *, key=None, train=False, **kwargs):
        """Apply the copies in turn; ``kwargs`` are routed as :func:`tlean._core.route` says."""
        kwargs = route(self, [self.layer], kwargs)[0] if kwargs else {}
        layer, n = self.layer, self.num_layers
        x = self._cast(params, state, x, kwargs)

        def one(h, p, s, i):
            k = None if key is None else jax.random.fold_in(key, i)
            return call_child(layer, ("*",), p, s, h, key=k, train=train, kwargs=kwargs)

        if self.scan:
            x, new_state = lax.scan(lambda h, xs: one(h, *xs), x, (params, state, jnp.arange(n)))
            return x, new_state
        states = []
        for i in range(n):
            params_i, state_i = jax.tree.map(lambda a, i=i: a[i], (params, state))
            x, s = one(x, params_i, state_i, i)
            states.append(s)
        return x, jax.tree.map(lambda *a: jnp.stack(a), *states) if jax.tree.leaves(states) else state

    def _cast(self, params, state, x, kwargs) -> Any:
        """``x`` cast to the layer's result dtype, after checking that the layer keeps shape and dtype."""
        first = jax.tree.map(lambda a: jax.ShapeDtypeStruct(jnp.shape(a)[1:], a.dtype), (params, state))

        def out(v):
            return _output_shape(self.layer, first, jax.ShapeDtypeStruct(jnp.shape(v), v.dtype), kwargs)

        try:
            with _debug.quiet():
                y = out(x)
                if isinstance(y, jax.ShapeDtypeStruct) and y.dtype != x.dtype:
                    x = x.astype(y.dtype)
                    y = out(x)
        except ShapeError as err:
            raise err._within("*") from None
        if not isinstance(y, jax.ShapeDtypeStruct) or y.shape != jnp.shape(x) or y.dtype != x.dtype:
            got = jax.tree.map(lambda a: (a.shape, str(a.dtype)), y)
            raise ShapeError(
                self,
                f"a layer that maps {tuple(jnp.shape(x))} {x.dtype} to the same shape and dtype "
                f"(its output feeds the next copy)",
                got,
            )
        return x


def _output_shape(layer: Layer, arrays: Any, x: jax.ShapeDtypeStruct, kwargs: dict) -> Any:
    """``jax.eval_shape`` of one copy's output, cached by the abstract inputs (an eager call
    would otherwise trace the layer again every time)."""
    traced = {k: v for k, v in kwargs.items() if hasattr(v, "shape")}
    static = tuple(sorted((k, v) for k, v in kwargs.items() if k not in traced))
    leaves, treedef = jax.tree.flatten(
        (arrays, {k: jax.ShapeDtypeStruct(jnp.shape(v), jnp.result_type(v)) for k, v in traced.items()})
    )
    try:
        return _cached_output_shape(layer, treedef, tuple(leaves), x, static)
    except TypeError:  # an unhashable keyword value: trace without the cache
        return _cached_output_shape.__wrapped__(layer, treedef, tuple(leaves), x, static)


@functools.lru_cache(maxsize=1024)
def _cached_output_shape(layer: Layer, treedef: Any, leaves: tuple, x: jax.ShapeDtypeStruct, static: tuple) -> Any:
    (params, state), traced = jax.tree.unflatten(treedef, leaves)
    return jax.eval_shape(lambda p, s, v, kw: layer.apply(p, s, v, **kw, **dict(static))[0], params, state, x, traced)


def _stacked_init(stack: Stacked, key: jax.Array) -> tuple[Any, Any]:
    """Layer ``i`` from ``split(key, num_layers)[i]``: built eagerly one by one and stacked when the key
    is concrete (the initialisers' fast eager draws then compile nothing per layer), else vmapped."""
    if isinstance(key, jax.core.Tracer) or tracing():
        return _stacked_init_traced(stack, key)
    copies = [stack.layer.init(k) for k in jax.random.split(key, stack.num_layers)]
    return jax.tree.map(lambda *xs: jax.device_put(np.stack([np.asarray(x) for x in xs])), *copies)


@functools.partial(jax.jit, static_argnums=0)
def _stacked_init_traced(stack: Stacked, key: jax.Array) -> tuple[Any, Any]:
    return jax.vmap(stack.layer.init)(jax.random.split(key, stack.num_layers))


@dataclass(frozen=True)
class Residual(Layer):
    """``layer(x) + shortcut(x)`` (``shortcut=None``: the identity), TorchLean's residual connection.

    The shapes must be equal (never broadcast: a :class:`~tlean.ShapeError`); the
    shortcut is cast to the layer's output dtype. Keying: Residual draws one key from its
    parent's stream and starts ``SeedStream(that key)`` for ``layer`` then ``shortcut``, so
    wrapping a layer in Residual changes its initial values. Params ``{"layer": ...,
    "shortcut": ...}`` (names ``layer.weight``).

    >>> import jax, jax.numpy as jnp
    >>> from tlean.layers import Linear, Residual
    >>> res = Residual(Linear(4, 4))
    >>> params, state = res.init(jax.random.key(0))
    >>> res.apply(params, state, jnp.ones((2, 4)))[0].shape
    (2, 4)
    """

    layer: Layer
    shortcut: Layer | None = None

    def __post_init__(self):
        for name in ("layer", "shortcut"):
            value = getattr(self, name)
            if not (isinstance(value, Layer) or (name == "shortcut" and value is None)):
                raise TypeError(f"Residual: {name} must be a tlean Layer, got {type(value).__name__}")

    @property
    def keywords(self) -> frozenset[str]:
        return union_keywords(c for _, c in self.children())

    def declarers(self, keyword: str) -> int:
        return sum(c.declarers(keyword) for _, c in self.children())

    def apply(self, params, state, x, *, key=None, train=False, **kwargs):
        """``layer(x) + shortcut(x)``; ``kwargs`` are routed to the branches that take them."""
        branches = [c for _, c in self.children()]
        routed = route(self, branches, kwargs) if kwargs else [{}] * len(branches)
        c = self.bind(params, state, key=key, train=train)
        y = c.layer(x, **routed[0])
        s = x if self.shortcut is None else c.shortcut(x, **routed[1])
        if jnp.shape(y) != jnp.shape(s):
            raise ShapeError(
                self, f"the shortcut's shape {tuple(jnp.shape(s))} from the layer (no broadcasting)", jnp.shape(y)
            )
        return y + s.astype(y.dtype), c.state


@dataclass(frozen=True, init=False)
class Parallel(Layer):
    """Branches applied to the same input, their outputs added or concatenated (TorchLean's
    ``addBranches`` / ``concatBranches``).

    ``combine="add"`` needs equal output shapes (never broadcast); ``"concat"``
    concatenates along ``dim`` (negative, counted from the end, so it means the same with
    and without a batch axis). Params ``{"layers": (branch 0's, branch 1's, ...)}``
    (names ``layers.0.weight``); keying as for :class:`Residual`.

    >>> import jax, jax.numpy as jnp
    >>> from tlean.layers import Linear, Parallel
    >>> par = Parallel(Linear(4, 2), Linear(4, 3), combine="concat")
    >>> params, state = par.init(jax.random.key(0))
    >>> par.apply(params, state, jnp.ones((5, 4)))[0].shape
    (5, 5)
    """

    layers: tuple[Layer, ...]
    combine: str = "add"
    dim: int = -1

    def __init__(self, *layers: Layer, combine: str = "add", dim: int = -1):
        object.__setattr__(self, "layers", tuple(layers))
        object.__setattr__(self, "combine", combine)
        object.__setattr__(self, "dim", dim)
        self.__post_init__()

    def __post_init__(self):
        if not self.layers:
            raise ValueError("Parallel: give at least one branch")
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"Parallel: branch {i} must be a tlean Layer, got {type(layer).__name__}")
        if self.combine not in ("add", "concat"):
            raise ValueError(f"Parallel: combine must be 'add' or 'concat', got {self.combine!r}")
        _util.integers("Parallel", dim=self.dim)
        if self.dim >= 0:
            raise ValueError(f"Parallel: dim must be negative (counted from the last axis), got {self.dim}")

    def __reduce__(self):
        return (_parallel, (self.layers, self.combine, self.dim))

    @property
    def keywords(self) -> frozenset[str]:
        return union_keywords(self.layers)

    def declarers(self, keyword: str) -> int:
        return sum(c.declarers(keyword) for c in self.layers)

    def apply(self, params, state, x, *, key=None, train=False, **kwargs):
        """Every branch on ``x``, then add or concatenate; ``kwargs`` are routed to the branches that take them."""
        routed = route(self, list(self.layers), kwargs) if kwargs else [{}] * len(self.layers)
        c = self.bind(params, state, key=key, train=train)
        ys = [branch(x, **kw) for branch, kw in zip(c.layers, routed)]
        shapes = [tuple(jnp.shape(y)) for y in ys]
        if self.combine == "add":
            if len(set(shapes)) > 1:
                raise ShapeError(self, "branch outputs of one shape to add (no broadcasting)", f"shapes {shapes}")
            out = ys[0]
            for y in ys[1:]:
                out = out + y
            return out, c.state
        ranks = {len(s) for s in shapes}
        others = {s[: self.dim % len(s)] + s[self.dim % len(s) + 1 :] for s in shapes if len(s) >= -self.dim}
        if len(ranks) > 1 or min(ranks) < -self.dim or len(others) > 1:
            raise ShapeError(self, f"branch outputs that agree on every axis but dim={self.dim}", f"shapes {shapes}")
        return jnp.concatenate([y.astype(jnp.result_type(*ys)) for y in ys], axis=self.dim), c.state


def _parallel(layers, combine, dim):
    return Parallel(*layers, combine=combine, dim=dim)
