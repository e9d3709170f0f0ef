"""`Model`: a layer together with its arrays, as a JAX pytree."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tlean import _debug
from tlean._core import Layer, Seq, check_arrays, path_name
from tlean._walk import named_leaves
from tlean.seed import Builder

__all__ = ["Model", "combine", "torch_name"]

#: ``nn.pure`` registers its constructor names here (the core imports nothing from tlean.nn).
PURE_NAMES: dict[Any, str] = {}


def torch_name(path: tuple) -> str:
    """A pytree key path as dotted text: ``(SequenceKey(0), DictKey('weight'))`` -> ``"0.weight"``.

    A path from the root of a Model starts with ``.params`` or ``.state``; that part is
    dropped. Without the layer it cannot name a stacked axis: for a Model's leaves use
    :meth:`Model.named_parameters` (``"encoder.layers.*.linear1.weight"``), which knows
    its layers. (``jax.tree_util.keystr(path, simple=True, separator=".")`` prints
    ``params.0.weight``.)
    """
    if path and isinstance(path[0], jax.tree_util.GetAttrKey) and path[0].name in ("params", "state"):
        path = path[1:]
    return path_name(path)


_NO_STATE = object()


class Model:
    """A layer together with its params and state: ``Model(layer, params, state, frozen=())``.

    A pytree whose children are ``params`` and ``state`` and whose static aux data is
    the layer (and the ``frozen`` filter), so it passes through ``jax.jit``,
    ``jax.grad``, ``jax.vmap``, optax and checkpointing unchanged. Differentiate
    ``model.params`` when the model has state (BatchNorm's ``num_batches_tracked`` is an
    integer); a Model without state can be differentiated whole.

    ``frozen`` is a tuple of regular expressions over parameter names (as
    :meth:`named_parameters` gives them, matched with ``re.fullmatch``): those params are
    not trained by :mod:`tlean.train` (no gradient, no optimiser state). See
    :meth:`trainable`.

    >>> import jax, jax.numpy as jnp
    >>> from tlean import nn
    >>> model = nn.run(0, nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)))
    >>> model(jnp.ones((5, 3))).shape
    (5, 2)
    >>> model.num_params()
    26
    """

    __slots__ = ("frozen", "layer", "params", "state")

    def __init__(self, layer: Layer, params: Any, state: Any = _NO_STATE, *, frozen: tuple[str, ...] = ()):
        if not isinstance(layer, Layer):
            raise TypeError(f"Model's layer must be a tlean Layer, got {type(layer).__name__}")
        object.__setattr__(self, "layer", layer)
        object.__setattr__(self, "params", params)
        # An omitted state is {}; an explicit None stays None (e.g. in a vmap in_axes prefix).
        object.__setattr__(self, "state", {} if state is _NO_STATE else state)
        object.__setattr__(self, "frozen", _frozen_patterns(frozen))

    def __setattr__(self, name, value):
        raise AttributeError(f"Model is immutable: use model.replace({name}=...)")

    def __reduce__(self):
        return (_rebuild, (self.layer, self.params, self.state, self.frozen))

    def __bool__(self) -> bool:
        return True

    # -- running -------------------------------------------------------------
    def __call__(self, x: Any, *others: Any, key: jax.Array | None = None, train: bool = False, **kwargs) -> Any:
        """The output ``y`` of ``layer.apply``; the updated state is dropped (see :meth:`forward`).

        Extra positional inputs map onto the layer's input keywords in torch's order
        (``bilinear(a, b)``, ``decoder(tgt, memory)``); ``kwargs`` (``allow``,
        ``attn_mask``, ``initial_state``, ``return_final``) go to the layer's ``apply``.
        A keyword the layer does not take is a ``TypeError``.
        """
        return self.forward(x, *others, key=key, train=train, **kwargs)[0]

    def forward(
        self, x: Any, *others: Any, key: jax.Array | None = None, train: bool = False, **kwargs
    ) -> tuple[Any, Model]:
        """Apply the layer: ``(y, model with the updated state)``.

        Args:
          x: the input, as the layer documents it.
          *others: further inputs, in torch's forward order (``layer.inputs`` names them).
          key: the dropout key (needed with ``train=True`` when the model has Dropout).
            Never the key used for init.
          train: training mode: Dropout drops, BatchNorm uses batch statistics and
            returns updated running statistics in the new model's state.
          **kwargs: keywords of the layer's ``apply`` (``allow``, ``initial_state``, ...).

        Returns:
          ``(y, model)`` where ``model`` has the same params and the new state.
        """
        kwargs = {**_positional_inputs(self.layer, others, kwargs), **kwargs}
        _check_keywords(self.layer, kwargs)
        with _debug.scope(x):
            check_arrays(self.layer, self.params, self.state)
            y, state = self.layer.apply(self.params, self.state, x, key=key, train=train, **kwargs)
        return y, self.replace(state=state)

    def replace(self, **fields: Any) -> Model:
        """A copy with some of ``layer``, ``params``, ``state``, ``frozen`` replaced."""
        unknown = set(fields) - {"layer", "params", "state", "frozen"}
        if unknown:
            raise TypeError(f"Model.replace takes layer, params, state and frozen, got {sorted(unknown)}")
        values = {"layer": self.layer, "params": self.params, "state": self.state, "frozen": self.frozen, **fields}
        return Model(values["layer"], values["params"], values["state"], frozen=values["frozen"])

    # -- inspecting ----------------------------------------------------------
    def num_params(self) -> int:
        """The number of trainable scalars (state, such as running statistics, is not counted; a tie counts once)."""
        return _count(self.params)

    def named_leaves(self) -> list:
        """Every array with its names (:class:`tlean._walk.NamedLeaf`): params then state."""
        return named_leaves(self.layer, self.params, self.state)

    def named_parameters(self) -> dict[str, Any]:
        """The params keyed by PyTorch-style names (``"0.weight"``; ``"layers.*.weight"`` for a Stacked layer's)."""
        return {leaf.name: leaf.value for leaf in self.named_leaves() if leaf.part == "params"}

    def named_buffers(self) -> dict[str, Any]:
        """The state keyed by PyTorch-style names (``"1.running_mean"``)."""
        return {leaf.name: leaf.value for leaf in self.named_leaves() if leaf.part == "state"}

    def trainable(self) -> Any:
        """A tree shaped as ``params`` with ``True`` for each trained leaf, ``False`` for the frozen ones."""
        names = [leaf.name for leaf in self.named_leaves() if leaf.part == "params"]
        _, treedef = jax.tree.flatten(self.params)
        return jax.tree.unflatten(treedef, [not any(p.fullmatch(n) for p in self._frozen_res) for n in names])

    @property
    def _frozen_res(self) -> list[re.Pattern]:
        return [re.compile(p) for p in self.frozen]

    def partition(self) -> tuple[Any, Any]:
        """``(trainable, frozen)``: two trees shaped as ``params``, each holding its leaves and ``None``
        where the other has one (optax keeps no state for a ``None``). :func:`combine` undoes it."""
        if not self.frozen:
            return self.params, jax.tree.map(lambda _: None, self.params)
        mask = self.trainable()
        return (
            jax.tree.map(lambda p, m: p if m else None, self.params, mask),
            jax.tree.map(lambda p, m: None if m else p, self.params, mask),
        )

    def summary(
        self, input_shape: tuple[int, ...], dtype: Any = jnp.float32, *, flops: bool = True, **kwargs: Any
    ) -> str:
        """A table of every layer: path, layer, output shape, FLOPs and parameter count.

        Shapes are found with ``jax.eval_shape``, so nothing is computed. Seqs and
        composites expand into their children, indented under them, with dotted paths
        (``layer1.0.conv1``), as torchinfo prints them; a Stacked layer's child appears
        once, as ``layers.*``, counting every copy. Each row counts the parameters no row
        below it counts, so the rows add up to :meth:`num_params`.

        FLOPs come from XLA's cost analysis of each row's layer, lowered (not compiled)
        for the row's input shape in eval mode: a matmul of ``[b, i] @ [i, o]`` is
        ``2*b*i*o``, an elementwise op one per element. Like the parameters, each row
        counts the FLOPs its children's rows do not (a residual block's own addition), a
        Stacked child is counted once per copy, and the total is the sum of the rows. A
        row XLA cannot cost alone (a layer needing context keywords) shows ``-``.

        Args:
          input_shape: the shape of an input, batch axis included.
          dtype: the input dtype.
          flops: count FLOPs (each row's layer is lowered once: about 0.05 s a row on a CPU);
            ``False`` leaves the column out.
          **kwargs: keywords of the layer's ``apply``.

        Returns:
          The table as a string (``print(model.summary((32, 784)))``).

        >>> from tlean import nn
        >>> print(nn.run(0, nn.Sequential(nn.Linear(4, 8), nn.ReLU())).summary((2, 4)))
        input shape: (2, 4)
        ---------------------------------------------------------------------
        #  layer                                  output shape  FLOPs  params
        ---------------------------------------------------------------------
        0  Linear(in_features=4, out_features=8)  (2, 8)          144      40
        1  ReLU()                                 (2, 8)           16       0
        ---------------------------------------------------------------------
        total FLOPs: 160
        total params: 40
        """
        x = jax.ShapeDtypeStruct(tuple(input_shape), jnp.dtype(dtype))
        rows = _summary_rows(self, x, kwargs, flops)
        total = self.num_params()
        headers = ("#", "layer", "output shape", "FLOPs", "params")
        table = [headers] + [
            (path, name, str(shape), "-" if f is None else f"{f:,}", f"{n:,}") for path, name, shape, n, f in rows
        ]
        if not flops:
            table = [row[:3] + row[4:] for row in table]
        widths = [max(len(str(r[c])) for r in table) for c in range(len(table[0]))]
        line = "-" * (sum(widths) + 2 * (len(widths) - 1))

        def fmt(row):  # left-align text columns, right-align the counts
            return "  ".join(str(v).ljust(w) if c < 3 else str(v).rjust(w) for c, (v, w) in enumerate(zip(row, widths)))

        totals = [f"total FLOPs: {sum(f for *_, f in rows if f is not None):,}"] if flops else []
        out = [
            f"input shape: {tuple(input_shape)}",
            line,
            fmt(table[0]),
            line,
            *map(fmt, table[1:]),
            line,
            *totals,
            f"total params: {total:,}",
        ]
        return "\n".join(out)

    # -- composition ---------------------------------------------------------
    def __rshift__(self, other: Any) -> Model:
        return _compose(self, _as_model(other))

    def __rrshift__(self, other: Any) -> Model:
        return _compose(_as_model(other), self)

    def __len__(self) -> int:
        return len(self._seq())

    def __iter__(self) -> Iterator[Model]:
        return (self[i] for i in range(len(self)))

    def __getitem__(self, index: int | slice | str) -> Model:
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
        frozen = f", frozen={self.frozen}" if self.frozen else ""
        return f"Model({self.layer!r}, params={self.num_params():,}{frozen})"

    def __eq__(self, other):
        return self is other

    def __hash__(self):
        return id(self)


def combine(trainable: Any, frozen: Any) -> Any:
    """The params tree from :meth:`Model.partition`'s two halves."""
    return jax.tree.map(lambda a, b: b if a is None else a, trainable, frozen, is_leaf=lambda v: v is None)


def _frozen_patterns(frozen: Any) -> tuple[str, ...]:
    if isinstance(frozen, str):
        frozen = (frozen,)
    frozen = tuple(frozen)
    for p in frozen:
        if not isinstance(p, str):
            raise TypeError(f"Model: frozen must be regular expressions (strings) over parameter names, got {p!r}")
        try:
            re.compile(p)
        except re.error as err:
            raise ValueError(f"Model: frozen pattern {p!r} is not a regular expression: {err}") from None
    return frozen


def _rebuild(layer, params, state, frozen):
    return Model(layer, params, state, frozen=frozen)


def _positional_inputs(layer: Layer, others: tuple, kwargs: dict) -> dict:
    if not others:
        return {}
    names = layer.inputs
    if len(others) > len(names):
        takes = f"its extra inputs are {list(names)}" if names else "it takes one input"
        raise TypeError(f"{layer!r} got {1 + len(others)} positional inputs: {takes}")
    clash = [n for n in names[: len(others)] if n in kwargs]
    if clash:
        raise TypeError(f"{layer!r} got {clash} both positionally and as keywords")
    return dict(zip(names, others))


def _flatten_with_keys(m: Model):
    return ((jax.tree_util.GetAttrKey("params"), m.params), (jax.tree_util.GetAttrKey("state"), m.state)), (
        m.layer,
        m.frozen,
    )


def _flatten(m: Model):
    return (m.params, m.state), (m.layer, m.frozen)


def _unflatten(aux, children) -> Model:
    m = object.__new__(Model)
    object.__setattr__(m, "layer", aux[0])
    object.__setattr__(m, "params", children[0])
    object.__setattr__(m, "state", children[1])
    object.__setattr__(m, "frozen", aux[1])
    return m


jax.tree_util.register_pytree_with_keys(Model, _flatten_with_keys, _unflatten, _flatten)


def _count(tree: Any) -> int:
    return int(sum(np.size(leaf) for leaf in jax.tree.leaves(tree)))


def _check_keywords(layer: Layer, kwargs: dict) -> None:
    unknown = sorted(set(kwargs) - layer.keywords)
    if unknown:
        accepted = sorted(layer.keywords)
        takes = f"it takes {accepted}" if accepted else "it takes no extra keywords"
        raise TypeError(f"{layer!r}.apply got unexpected keyword(s) {unknown}: {takes}")


def _as_model(value: Any) -> Model:
    if isinstance(value, Model):
        return value
    if isinstance(value, Layer):
        if value.has_params:
            name = PURE_NAMES.get(type(value), "<layer>")
            raise TypeError(
                f"{value!r} has parameters and cannot join a Model without a key: build it with "
                f"nn.pure.{name}(..., key=...) (or its nn builder and nn.run), then compose the Models"
            )
        params, state = value.init(None)
        return Model(value, params, state)
    if isinstance(value, Builder):
        raise TypeError(
            f"cannot compose a Model with {value!r}: a Builder is a recipe; build it first with nn.run(seed, builder)"
        )
    return NotImplemented


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


def _summary_rows(
    model: Model, x: Any, kwargs: dict, count_flops: bool = True
) -> list[tuple[str, str, Any, int, int | None]]:
    """Trace ``model`` with ``jax.eval_shape``, recording every child call; count each leaf once, in the
    deepest row whose path holds it, and each FLOP once, in the row whose own ops make it."""
    with _debug.collect_rows() as recorded:
        y = jax.eval_shape(lambda m, v: m(v, **kwargs), model, x)
    shape = lambda t: jax.tree.map(lambda a: tuple(a.shape), t)
    rows = [r for r in recorded if r["shape"] is not None]
    if not rows:  # a layer with no children: one row
        rows = [{"path": (), "layer": model.layer, "shape": shape(y), "input": x}]
    paths = [tuple(map(str, r["path"])) for r in rows]
    counts = [0] * len(rows)
    unplaced = 0
    for leaf in model.named_leaves():
        if leaf.part != "params":
            continue
        parts = tuple(leaf.name.split("."))
        owners = [i for i, p in enumerate(paths) if parts[: len(p)] == p]
        if owners:
            counts[max(owners, key=lambda i: (len(paths[i]), -i))] += int(np.size(leaf.value))
        else:
            unplaced += int(np.size(leaf.value))
    flops = _own_flops(model, rows, paths) if count_flops else [None] * len(rows)
    out = []
    seen: set = set()
    for r, p, n, f in zip(rows, paths, counts, flops):
        label = ".".join(p) or "0"
        name = "  " * max(len(p) - 1, 0) + (
            f"Seq({len(r['layer'])})" if isinstance(r["layer"], Seq) else repr(r["layer"])
        )
        out.append((label, name, r["shape"], n if p not in seen else 0, f))
        seen.add(p)
    if unplaced:
        out.append(("(own)", repr(model.layer), shape(y), unplaced, None))
    return out


def _own_flops(model: Model, rows: list[dict], paths: list[tuple]) -> list[int | None]:
    """Each row's FLOPs less those of its child rows (its parent: the nearest earlier row whose path is a
    proper prefix of its own), a Stacked child's times its copies; ``None`` where XLA cannot cost it."""
    cache: dict = {}
    whole = [_layer_flops(r["layer"], _row_arrays(model, r["path"]), r["input"], cache) for r in rows]
    for i, p in enumerate(paths):  # a Stacked child runs once per copy (XLA costs a loop's body once)
        for k in [k for k, part in enumerate(p) if part == "*"]:
            stack = next((j for j in range(i) if paths[j] == p[:k]), None)
            flops = whole[i]
            if stack is not None and flops is not None:
                whole[i] = flops * int(getattr(rows[stack]["layer"], "num_layers", 1))
    own = list(whole)
    for i, p in enumerate(paths):
        parents = [j for j in range(i) if len(paths[j]) < len(p) and p[: len(paths[j])] == paths[j]]
        child, parent = whole[i], max(parents, key=lambda j: (len(paths[j]), j)) if parents else None
        if parent is not None and child is not None:
            above = own[parent]
            own[parent] = None if above is None else above - child
    return [None if f is None else max(int(f), 0) for f in own]


def _row_arrays(model: Model, path: tuple) -> tuple[Any, Any] | None:
    """The shapes and dtypes of the params and state of the child at ``path`` (one copy below a Stacked
    ``*``), or ``None`` if the model's trees do not nest that way."""
    try:
        trees = []
        for tree in (model.params, model.state):
            stacked = 0
            for key in path:
                if key == "*":
                    stacked += 1
                else:
                    tree = tree[key]
            trees.append(jax.tree.map(lambda a, k=stacked: jax.ShapeDtypeStruct(jnp.shape(a)[k:], a.dtype), tree))
        return trees[0], trees[1]
    except (KeyError, IndexError, TypeError):
        return None


def _layer_flops(layer: Layer, arrays: tuple[Any, Any] | None, x: Any, cache: dict) -> int | None:
    """The FLOPs XLA's cost analysis gives ``layer`` applied to its ``arrays`` (params and state; ``None``:
    a fresh init's shapes) and an input of ``x``'s shapes in eval mode, from the lowered computation (no
    compilation); ``None`` if it cannot be lowered alone."""
    if x is None:
        return None
    try:
        signature = (layer, jax.tree.structure(x), tuple((a.shape, a.dtype) for a in jax.tree.leaves(x)))
        hash(signature)
    except TypeError:
        signature = None
    if signature is not None and signature in cache:
        return cache[signature]
    try:
        with _debug.quiet():
            params, state = arrays if arrays is not None else jax.eval_shape(layer.init, jax.random.key(0))
            apply = lambda p, s, v: layer.apply(p, s, v, key=None, train=False)[0]
            cost = jax.jit(apply).lower(params, state, x).cost_analysis()
        cost = (cost[0] if isinstance(cost, (list, tuple)) else cost) or {}
        flops = int(cost.get("flops", 0))  # no entry: nothing to count (a reshape, an eval-mode dropout)
    except Exception:  # a layer that needs context keywords, a key or its parent's arrays: no figure
        flops = None
    if signature is not None:
        cache[signature] = flops
    return flops
