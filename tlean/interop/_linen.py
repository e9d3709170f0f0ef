"""flax.linen interop: a tlean layer as a linen Module, and a linen Module as a tlean layer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import flax.linen as linen
import jax
import jax.numpy as jnp

from tlean._core import Layer, path_name
from tlean._model import _check_keywords


def _part(entry: Any) -> str:
    return path_name((entry,))


def _nest(tree: Any) -> dict:
    """A params/state tree as nested dicts keyed by PyTorch's names: ``{"0": {"weight": w}}``."""
    out: dict = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        node = out
        *parents, last = [_part(p) for p in path]
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = leaf
    return out


def _unnest(nested: Any, template: Any) -> Any:
    """The inverse of :func:`_nest`, shaped like ``template`` (the layer's own tree)."""

    def lookup(path, _):
        node = nested
        for p in path:
            node = node[_part(p)]
        return node

    return jax.tree_util.tree_map_with_path(lookup, template)


class TleanModule(linen.Module):
    """A tlean layer as a ``flax.linen`` Module (build it with :func:`to_linen`).

    ``init`` draws one key from the ``"params"`` rng stream and calls ``layer.init``
    with it; the params go into the ``"params"`` collection and the layer's state
    (BatchNorm's running statistics) into ``"batch_stats"``, as nested dicts keyed by
    PyTorch's names (``variables["params"]["0"]["weight"]``). ``__call__(x, *,
    train=False, ...)`` runs ``layer.apply``; with ``train=True`` it takes the dropout
    key from the ``"dropout"`` rng stream when one is given and writes the updated
    state back, so apply it with ``mutable=["batch_stats"]`` as flax's own BatchNorm.
    Extra keywords (``mask``, ``initial_state``, ...) go to ``layer.apply``; one the
    layer does not take is a ``TypeError``.

    The params differ from ``layer.init(key)`` for the same key, because linen derives
    the ``"params"`` rng of each module from its path.

    Attributes:
      layer: the wrapped tlean layer (static configuration).
    """

    layer: Layer

    @linen.compact
    def __call__(self, x: Any, *, train: bool = False, **kwargs: Any) -> Any:
        _check_keywords(self.layer, kwargs)
        template = tuple(_nest(t) for t in jax.eval_shape(self.layer.init, jax.random.key(0)))
        if self.is_initializing():  # one layer.init gives both the params and the state
            initial = tuple(_nest(t) for t in self.layer.init(self.make_rng("params")))
        else:  # linen still calls the initialisers to check shapes; zeros of the right shapes do
            initial = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), template)
        params = {k: self.param(k, lambda _, k=k: initial[0][k]) for k in template[0]}
        state_vars = {k: self.variable("batch_stats", k, lambda k=k: initial[1][k]) for k in template[1]}
        key = self.make_rng("dropout") if train and self.has_rng("dropout") else None
        shapes = jax.eval_shape(self.layer.init, jax.random.key(0))
        y, new_state = self.layer.apply(
            _unnest(params, shapes[0]),
            _unnest({k: v.value for k, v in state_vars.items()}, shapes[1]),
            x,
            key=key,
            train=train,
            **kwargs,
        )
        if train and not self.is_initializing():
            for k, value in _nest(new_state).items():
                state_vars[k].value = value
        return y

    def pack(self, params: Any, state: Any = None) -> dict:
        """Linen ``variables`` holding a tlean ``(params, state)`` of this layer (e.g. from ``layer.init``)."""
        variables = {"params": _nest(params)}
        if jax.tree.leaves(state):
            variables["batch_stats"] = _nest(state)
        return variables

    def unpack(self, variables: Any) -> tuple[Any, Any]:
        """The tlean ``(params, state)`` in linen ``variables`` (the inverse of :meth:`pack`)."""
        params, state = jax.eval_shape(self.layer.init, jax.random.key(0))
        return (_unnest(variables.get("params", {}), params), _unnest(variables.get("batch_stats", {}), state))


def to_linen(layer: Layer) -> TleanModule:
    """A ``flax.linen`` Module that runs ``layer`` (see :class:`TleanModule`).

    >>> import jax, jax.numpy as jnp
    >>> from tlean.layers import Linear
    >>> from tlean.interop import to_linen
    >>> module = to_linen(Linear(3, 2))
    >>> variables = module.init(jax.random.key(0), jnp.ones((4, 3)))
    >>> jax.tree.map(jnp.shape, variables["params"])
    {'bias': (2,), 'weight': (2, 3)}
    """
    if not isinstance(layer, Layer):
        raise TypeError(f"to_linen takes a tlean Layer, got {type(layer).__name__}")
    return TleanModule(layer)


@dataclass(frozen=True)
class LinenLayer(Layer):
    """A ``flax.linen`` Module as a tlean layer (build it with :func:`from_linen`).

    ``init(key)`` is ``module.init({"params": key}, example)`` in evaluation mode on a
    zero input of the example's shape and dtype: ``params`` is the ``"params"``
    collection, ``state`` a dict of the other collections (``{"batch_stats": ...}``).
    ``apply`` runs ``module.apply`` with the dropout key as the ``"dropout"`` rng and,
    in training, the non-params collections mutable, returning their new values as
    the state. The module learns about ``train`` through the call argument named by
    ``train_arg`` (set to ``train``) or ``deterministic_arg`` (set to ``not train``,
    e.g. ``"use_running_average"`` of ``flax.linen.BatchNorm`` or ``"deterministic"``
    of ``flax.linen.Dropout``).

    Attributes:
      module: the linen Module (linen Modules compare and hash by configuration).
      example_shape: the shape of the example input used by ``init``.
      example_dtype: its dtype.
      train_arg: name of the module's call argument that receives ``train``.
      deterministic_arg: name of the module's call argument that receives ``not train``.
    """

    module: linen.Module
    example_shape: tuple[int, ...]
    example_dtype: Any = jnp.float32
    train_arg: str | None = None
    deterministic_arg: str | None = None

    def __post_init__(self):
        if not isinstance(self.module, linen.Module):
            raise TypeError(f"LinenLayer: module must be a flax.linen Module, got {type(self.module).__name__}")
        object.__setattr__(self, "example_shape", tuple(int(d) for d in self.example_shape))
        object.__setattr__(self, "example_dtype", jnp.dtype(self.example_dtype))
        if self.train_arg is not None and self.train_arg == self.deterministic_arg:
            raise ValueError(f"LinenLayer: train_arg and deterministic_arg must differ, both are {self.train_arg!r}")

    def __repr__(self) -> str:
        extra = "".join(f", {k}={getattr(self, k)!r}" for k in ("train_arg", "deterministic_arg") if getattr(self, k))
        module = " ".join(repr(self.module).split())  # linen prints one attribute per line
        return (
            f"LinenLayer({module}, example_shape={self.example_shape}, example_dtype={self.example_dtype.name}{extra})"
        )

    def _mode(self, train: bool) -> dict:
        kwargs = {}
        if self.train_arg is not None:
            kwargs[self.train_arg] = train
        if self.deterministic_arg is not None:
            kwargs[self.deterministic_arg] = not train
        return kwargs

    def init(self, key: jax.Array) -> tuple[dict, dict]:
        example = jnp.zeros(self.example_shape, self.example_dtype)
        variables = dict(self.module.init({"params": key}, example, **self._mode(False)))
        params = variables.pop("params", {})
        return params, variables

    def apply(self, params, state, x, *, key=None, train=False):
        variables = {"params": params, **state} if params else dict(state)
        rngs = {"dropout": key} if key is not None else {}
        if train and state:
            y, updates = self.module.apply(variables, x, rngs=rngs, mutable=list(state), **self._mode(True))
            return y, {**state, **updates}
        return self.module.apply(variables, x, rngs=rngs, **self._mode(train)), state


def from_linen(
    module: linen.Module,
    example_input: Any,
    *,
    train_arg: str | None = None,
    deterministic_arg: str | None = None,
) -> LinenLayer:
    """A tlean layer that runs a ``flax.linen`` Module (see :class:`LinenLayer`).

    Args:
      module: the linen Module.
      example_input: an array (or ``jax.ShapeDtypeStruct``) with the shape and dtype of
        an input; only its shape and dtype are kept (the layer must stay hashable).
      train_arg: name of the module's call argument that receives ``train``.
      deterministic_arg: name of the one that receives ``not train``.

    >>> import jax, jax.numpy as jnp, flax.linen as linen
    >>> from tlean.interop import from_linen
    >>> dense = from_linen(linen.Dense(2), jnp.ones((4, 3)))
    >>> params, state = dense.init(jax.random.key(0))
    >>> dense.apply(params, state, jnp.ones((5, 3)))[0].shape
    (5, 2)
    """
    shape = example_input.shape if hasattr(example_input, "shape") else jnp.shape(example_input)
    dtype = getattr(example_input, "dtype", None) or jnp.result_type(example_input)
    return LinenLayer(module, tuple(shape), dtype, train_arg=train_arg, deterministic_arg=deterministic_arg)
