"""`Model`: a layer together with its arrays, as a JAX pytree."""

from __future__ import annotations

import inspect
from typing import Any, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from tlean._core import Layer, Seq, check_arrays, path_name

__all__ = ["Model", "torch_name"]


def torch_name(path: tuple) -> str:
    """A pytree key path as PyTorch names it: ``(SequenceKey(0), DictKey('weight'))`` -> ``"0.weight"``.

    A path from the root of a Model starts with ``.params`` or ``.state``; that part is
    dropped, so ``jax.tree_util.tree_flatten_with_path(model)`` paths give PyTorch's
    state_dict keys. (``jax.tree_util.keystr(path, simple=True, separator=".")`` prints
    ``params.0.weight``.)
    """
    if path and isinstance(path[0], jax.tree_util.GetAttrKey) and path[0].name in ("params", "state"):
        path = path[1:]
    return path_name(path)


_NO_STATE = object()


class Model:
    """A layer together with its params and state: ``Model(layer, params, state)``.

    A pytree whose children are ``params`` and ``state`` and whose static aux data is
    the layer, so it passes through ``jax.jit``, ``jax.grad``, ``jax.vmap``, optax and
    checkpointing unchanged. Differentiate ``model.params`` when the model has state
    (BatchNorm's ``num_batches_tracked`` is an integer); a Model without state can be
    differentiated whole.

    >>> import jax, jax.numpy as jnp
    >>> from tlean import nn
    >>> model = nn.run(0, nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)))
    >>> model(jnp.ones((5, 3))).shape
    (5, 2)
    >>> model.num_params()
    26
    """

    __slots__ = ("layer", "params", "state")

    def __init__(self, layer: Layer, params: Any, state: Any = _NO_STATE):
        if not isinstance(layer, Layer):
            raise TypeError(f"Model's layer must be a tlean Layer, got {type(layer).__name__}")
        object.__setattr__(self, "layer", layer)
        object.__setattr__(self, "params", params)
        # An omitted state is {}; an explicit None stays None (e.g. in a vmap in_axes prefix).
        object.__setattr__(self, "state", {} if state is _NO_STATE else state)

    def __setattr__(self, name, value):
        raise AttributeError(f"Model is immutable: use model.replace({name}=...)")

    def __reduce__(self):
        return (Model, (self.layer, self.params, self.state))

    def __bool__(self) -> bool:
        return True

    # -- running -------------------------------------------------------------
    def __call__(self, x: Any, *, key: jax.Array | None = None, train: bool = False, **kwargs) -> Any:
        """The output ``y`` of ``layer.apply``; the updated state is dropped (see :meth:`forward`).

        ``kwargs`` (``mask``, ``initial_state``, ``return_final``) go to the layer's
        ``apply``; a keyword the layer does not take is a ``TypeError``.
        """
        return self.forward(x, key=key, train=train, **kwargs)[0]

    def forward(self, x: Any, *, key: jax.Array | None = None, train: bool = False, **kwargs) -> tuple[Any, "Model"]:
        """Apply the layer: ``(y, model with the updated state)``.

        Args:
          x: the input, as the layer documents it.
          key: the dropout key (needed with ``train=True`` when the model has Dropout).
            Never the key used for init.
          train: training mode: Dropout drops, BatchNorm uses batch statistics and
            returns updated running statistics in the new model's state.
          **kwargs: keywords of the layer's ``apply`` (``mask``, ``initial_state``, ...).

        Returns:
          ``(y, model)`` where ``model`` has the same params and the new state.
        """
        _check_keywords(self.layer, kwargs)
        if not isinstance(self.layer, Seq):
            check_arrays(self.layer, self.params, self.state)
        y, state = self.layer.apply(self.params, self.state, x, key=key, train=train, **kwargs)
        return y, self.replace(state=state)

    def replace(self, **fields: Any) -> "Model":
        """A copy with some of ``layer``, ``params``, ``state`` replaced."""
        unknown = set(fields) - {"layer", "params", "state"}
        if unknown:
            raise TypeError(f"Model.replace takes layer, params and state, got {sorted(unknown)}")
        values = {"layer": self.layer, "params": self.params, "state": self.state, **fields}
        return Model(values["layer"], values["params"], values["state"])

    # -- inspecting ----------------------------------------------------------
    def num_params(self) -> int:
        """The number of trainable scalars (state, such as running statistics, is not counted)."""
        return _count(self.params)

    def named_parameters(self) -> dict[str, Any]:
        """The params keyed by PyTorch's names (``"0.weight"``)."""
        return {torch_name(p): v for p, v in jax.tree_util.tree_flatten_with_path(self.params)[0]}

    def named_buffers(self) -> dict[str, Any]:
        """The state keyed by PyTorch's names (``"1.running_mean"``)."""
        return {torch_name(p): v for p, v in jax.tree_util.tree_flatten_with_path(self.state)[0]}

    def summary(self, input_shape: tuple[int, ...], dtype: Any = jnp.float32) -> str:
        """A table of every layer: index, layer, output shape and parameter count.

        Shapes are found with ``jax.eval_shape``, so nothing is computed. Nested Seqs
        are expanded with dotted indices (``1.0``), as torchinfo prints them.

        Args:
          input_shape: the shape of an input, batch axis included.
          dtype: the input dtype.

        Returns:
          The table as a string (``print(model.summary((32, 784)))``).
        """
        rows = []
        x = jax.ShapeDtypeStruct(tuple(input_shape), jnp.dtype(dtype))
        _summarise(self.layer, self.params, self.state, x, "", rows)
        total = self.num_params()
        headers = ("#", "layer", "output shape", "params")
        table = [headers] + [(i, name, str(shape), f"{n:,}") for i, name, shape, n in rows]
        widths = [max(len(str(r[c])) for r in table) for c in range(4)]
        line = "-" * (sum(widths) + 6)

        def fmt(row):  # left-align text columns, right-align the count
            return "  ".join(str(v).ljust(w) if c < 3 else str(v).rjust(w) for c, (v, w) in enumerate(zip(row, widths)))

        out = [f"input shape: {tuple(input_shape)}", line, fmt(headers), line, *map(fmt, table[1:]), line,
               f"total params: {total:,}"]
        return "\n".join(out)

    # -- composition ---------------------------------------------------------
    def __rshift__(self, other: Any) -> "Model":
        return _compose(self, _as_model(other))

    def __rrshift__(self, other: Any) -> "Model":
        return _compose(_as_model(other), self)

    def __len__(self) -> int:
        return len(self._seq())

    def __iter__(self) -> Iterator["Model"]:
        return (self[i] for i in range(len(self)))

    def __getitem__(self, index: int | slice | str) -> "Model":
        """The child (or a slice of children) of a Seq model, with its arrays."""
        s = self._seq()
        if isinstance(index, slice):
            keys = s.keys[index]
            return Model(s[index], s.pack(self.params[k] for k in keys), s.pack(self.state[k] for k in keys))
        key = s.keys[index] if isinstance(index, int) else s.keys[s._position(index)]
        return Model(s[index], self.params[key], self.state[key])

    def _seq(self) -> Seq:
        if not isinstance(self.layer, Seq):
            raise TypeError(f"{self.layer!r} is not a Seq: it has no children to index")
        return self.layer

    def __repr__(self) -> str:
        return f"Model({self.layer!r}, params={self.num_params():,})"

    def __eq__(self, other):
        return self is other

    def __hash__(self):
        return id(self)


def _flatten_with_keys(m: Model):
    return ((jax.tree_util.GetAttrKey("params"), m.params), (jax.tree_util.GetAttrKey("state"), m.state)), m.layer


def _flatten(m: Model):
    return (m.params, m.state), m.layer


def _unflatten(layer: Layer, children) -> Model:
    m = object.__new__(Model)
    object.__setattr__(m, "layer", layer)
    object.__setattr__(m, "params", children[0])
    object.__setattr__(m, "state", children[1])
    return m


jax.tree_util.register_pytree_with_keys(Model, _flatten_with_keys, _unflatten, _flatten)


def _count(tree: Any) -> int:
    return int(sum(np.size(leaf) for leaf in jax.tree.leaves(tree)))


def _check_keywords(layer: Layer, kwargs: dict) -> None:
    if not kwargs:
        return
    parameters = inspect.signature(layer.apply).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return  # the layer declares **kwargs: it takes responsibility for them
    accepted = {p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY} - {"key", "train"}
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        takes = f"it takes {sorted(accepted)}" if accepted else "it takes no extra keywords"
        hint = "; call the child model that takes it" if isinstance(layer, Seq) else ""
        raise TypeError(f"{layer!r}.apply got unexpected keyword(s) {unknown}: {takes}{hint}")


def _as_model(value: Any) -> Model:
    if isinstance(value, Model):
        return value
    if isinstance(value, Layer):
        if value.has_params:
            raise TypeError(
                f"{value!r} has parameters and cannot join a Model without a key: build it with "
                f"{_pure_name(value)}(..., key=...) (or its nn builder and nn.run), then compose the Models"
            )
        params, state = value.init(None)
        return Model(value, params, state)
    if callable(getattr(value, "fn", None)) and type(value).__name__ in ("Builder", "Sequential"):
        raise TypeError(f"cannot compose a Model with {value!r}: a Builder is a recipe; build it first with nn.run(seed, builder)")
    return NotImplemented


def _pure_name(layer: Layer) -> str:
    from tlean.nn import pure  # the shim sits above the core; import it only to name a constructor

    for name in pure.__all__:
        if getattr(getattr(pure, name), "__wrapped__", None) is type(layer):
            return f"nn.pure.{name}"
    return "nn.pure.<layer>"


def _parts(m: Model):
    if isinstance(m.layer, Seq) and m.layer.names is None:
        return list(zip(m.layer.layers, m.params, m.state))
    return [(m.layer, m.params, m.state)]


def _compose(a: Any, b: Any) -> Model:
    if a is NotImplemented or b is NotImplemented:
        return NotImplemented
    parts = _parts(a) + _parts(b)
    layers, params, state = (tuple(column) for column in zip(*parts)) if parts else ((), (), ())
    return Model(Seq(layers), *untie((params, state)))


def untie(tree: Any) -> Any:
    """Copy any leaf whose buffer already appeared earlier in ``tree``.

    Composition never ties weights (``m >> relu >> m`` holds two copies), and no two
    leaves may share a buffer (buffer donation would fail).
    """
    seen: set[int] = set()

    def copy_if_seen(leaf):
        if not isinstance(leaf, (jax.Array, np.ndarray)):
            return leaf  # Python scalars are values, not buffers
        if id(leaf) in seen:
            return jnp.array(leaf, copy=True)
        seen.add(id(leaf))
        return leaf

    return jax.tree.map(copy_if_seen, tree)


def _summarise(layer: Layer, params, state, x, prefix: str, rows: list) -> Any:
    if isinstance(layer, Seq):
        for k, child in zip(layer.keys, layer.layers):
            label = f"{prefix}{k}"
            x = _summarise(child, params[k], state[k], x, label + ".", rows)
        return x
    y = jax.eval_shape(lambda p, s, v: layer.apply(p, s, v)[0], params, state, x)
    shape = y.shape if hasattr(y, "shape") else jax.tree.map(lambda t: t.shape, y)
    rows.append((prefix.rstrip(".") or "0", repr(layer), shape, _count(params)))
    return y
