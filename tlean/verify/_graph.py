"""The bound graph: a model's ``apply(train=False)`` jaxpr, flattened, with its constants evaluated.

:func:`build` traces ``layer.apply(params, state, x, train=False)`` with
:func:`jax.make_jaxpr`, then walks the equations once. Every equation whose inputs do not
depend on ``x`` (weights, BatchNorm's running statistics, ``rsqrt(var + eps)``, ...) is
evaluated on the spot (on tracers when called under ``jit``); calls (``jit``/``pjit``,
``closed_call``, ``custom_jvp_call``, ``custom_vjp_call``, ``remat``) are inlined, so the glue
inside any composite is bounded too; every other equation that depends on ``x`` becomes one
:class:`Node`, classified by :mod:`tlean.verify._relax`:

- ``"affine"``: exact, ``out = lin(*refs) + offset`` with ``|lin|`` for interval bounds and
  :func:`jax.linear_transpose` of ``lin`` for CROWN's backward pass;
- ``"act"``: an element-wise function of one bounded value with a linear relaxation
  (``max(x, c)``, ``min(x, c)``, tanh, logistic, erf, erfc, softplus, leaky ReLU);
- ``"monotone"``: non-decreasing in every bounded input (max-pooling, ``max`` of two
  bounded values): interval bounds exact, constant bounds in CROWN.

Anything else raises a ``TypeError`` naming the primitive and the layer path taken from the
equation's ``name_stack`` (``jax.named_scope``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.extend import core as jcore

from tlean.layers import _layout
from tlean.verify import _relax


@dataclasses.dataclass(frozen=True)
class Ref:
    """A value that depends on the input box: node ``id`` (0 is the input)."""

    id: int


@dataclasses.dataclass
class Node:
    """One bounded operation: ``out = f(*args)``, args being :class:`Ref` or constant arrays.

    Attributes:
      kind: ``"affine"``, ``"act"`` or ``"monotone"``.
      prim: the primitive's name (for messages).
      refs: ids of the bounded inputs, in order.
      out: this node's id.
      shape: the output's shape.
      where: the layer path (``name_stack``) of the equation.
      lin, abslin, offset: affine nodes: ``out = lin(*refs) + offset``; ``abslin`` is ``lin``
        with every coefficient replaced by its absolute value.
      act: activation nodes: the :class:`tlean.verify._relax.Activation`.
      fn: monotone nodes: ``out = fn(*refs)``.
    """

    kind: str
    prim: str
    refs: tuple
    out: int
    shape: tuple
    where: str
    lin: Callable | None = None
    abslin: Callable | None = None
    offset: Any = None
    act: Any = None
    fn: Callable | None = None
    terms: tuple = (0, 0)  # affine: rounding counts (forward, transpose), see _relax._terms
    cache: dict = dataclasses.field(default_factory=dict, repr=False)  # linear transposes


@dataclasses.dataclass
class Graph:
    """The flattened model: ``nodes`` in topological order; ``shapes[id]``; ``output`` id."""

    nodes: list
    shapes: dict
    output: int


_SCALAR_AFFINE = frozenset({"mul", "div", "add", "sub", "neg", "copy", "copy_p"})
_CALL_PARAMS = ("jaxpr", "call_jaxpr", "fun_jaxpr")


@dataclasses.dataclass(frozen=True)
class Poison:
    """Train mode: a value with no bound rule, harmless if only batch statistics use it.

    ``clean`` is its value on the clean batch; ``error`` is raised if it reaches the output.
    """

    clean: Any
    error: TypeError


_BATCH_REDUCTIONS = frozenset({"reduce_sum", "reduce_max", "reduce_min", "argmax", "argmin", "reduce_prod"})


def build(layer, params, state, x_shape: tuple, dtype, *, clean=None, key=None, sound: bool = False) -> Graph:
    """Trace ``layer.apply(params, state, x, train=False)`` for ``x`` of ``x_shape`` into a Graph.

    With ``clean`` (the clean batch, of ``x_shape``), trace ``apply(..., train=True, key=key)``
    instead, the whole batch being one bounded input: every reduction over the batch axis
    (BatchNorm's mean and variance) is evaluated on the clean batch and held constant, as
    auto_LiRPA does in training. ``sound``: dots and convolutions are bound at
    ``Precision.HIGHEST`` (the rounding analysis of ``sound=True`` assumes float32 arithmetic).
    """
    train = clean is not None

    def forward(p, s, x):
        return layer.apply(p, s, x, train=train, key=key)[0]

    # Channels-first as written: the CPU's channels-last compute path (tlean.layers._layout) would add a
    # pair of transposes per layer, each one more step of CROWN's backward pass (about 30% on the CNN).
    with _layout.forced(False):
        closed = jax.make_jaxpr(forward)(params, state, jax.ShapeDtypeStruct(x_shape, dtype))
    leaves = jax.tree_util.tree_leaves((params, state))
    builder = _Builder(x_shape[0] if train else None, sound)
    builder.shapes[0] = tuple(x_shape)
    if train:
        builder.clean[0] = clean
    outs = builder.walk(closed.jaxpr, closed.consts, [*leaves, Ref(0)], "")
    if len(outs) != 1:
        raise TypeError(f"verify: the model must return one array, got {len(outs)} outputs")
    (out,) = outs
    if isinstance(out, Poison):
        raise out.error
    if not isinstance(out, Ref):
        raise TypeError("verify: the model's output does not depend on its input")
    return Graph(builder.nodes, builder.shapes, out.id)


class _Builder:
    def __init__(self, batch: int | None = None, sound: bool = False):
        self.sound = sound
        self.batch = batch  # train mode: the batch size; None: one example, eval mode
        self.clean: dict[int, Any] = {}  # train mode: each node's value on the clean batch
        self.nodes: list[Node] = []
        self.shapes: dict[int, tuple] = {}
        # id -> (root id, f): the value is f(root) element-wise, f made of scalar affine maps
        # and activations (how GELU's x * Phi(x) is recognised as one function of x).
        self.chains: dict[int, tuple] = {}

    def chain(self, ref: Ref) -> tuple:
        return self.chains.get(ref.id, (ref.id, lambda s: s))

    def new(self, kind: str, prim: str, refs, shape, where, **fields) -> Ref:
        out = len(self.shapes)
        self.shapes[out] = tuple(shape)
        self.nodes.append(Node(kind, prim, tuple(r.id for r in refs), out, tuple(shape), where, **fields))
        return Ref(out)

    def walk(self, jaxpr, consts, args, prefix: str) -> list:
        env: dict = {}

        def read(v):
            return v.val if isinstance(v, jcore.Literal) else env[v]

        for v, c in zip(jaxpr.constvars, consts):
            env[v] = c
        if len(jaxpr.invars) != len(args):
            raise TypeError(f"verify: expected {len(jaxpr.invars)} inputs to the traced model, got {len(args)}")
        for v, a in zip(jaxpr.invars, args):
            env[v] = a
        for eqn in jaxpr.eqns:
            invals = [read(v) for v in eqn.invars]
            where = _join(prefix, str(eqn.source_info.name_stack))
            if not any(isinstance(a, (Ref, Poison)) for a in invals):
                outs = _evaluate(eqn, invals)
            elif self.batch is None:
                outs = self.bounded(eqn, invals, where)
            else:
                outs = self.bounded_train(eqn, invals, where)
            for v, o in zip(eqn.outvars, outs):
                if not isinstance(v, jcore.DropVar):
                    env[v] = o
        return [read(v) for v in jaxpr.outvars]

    def bounded_train(self, eqn, invals, where) -> list:
        """Train mode: batch reductions become constants, unsupported values Poison."""
        if any(k in eqn.params for k in _CALL_PARAMS):
            return self.bounded(eqn, invals, where)
        clean = _evaluate(eqn, [self.clean[a.id] if isinstance(a, Ref) else getattr(a, "clean", a) for a in invals])
        first = invals[0]
        if (
            eqn.primitive.name in _BATCH_REDUCTIONS
            and 0 in tuple(eqn.params.get("axes", ()))
            and isinstance(first, (Ref, Poison))
        ):
            return clean
        poison = next((a for a in invals if isinstance(a, Poison)), None)
        if poison is not None:
            return [Poison(c, poison.error) for c in clean]
        try:
            outs = self.bounded(eqn, invals, where)
        except TypeError as error:
            return [Poison(c, error) for c in clean]
        for o, c in zip(outs, clean):
            if isinstance(o, Ref):
                self.clean.setdefault(o.id, c)
        return outs

    def bounded(self, eqn, invals, where) -> list:
        name = eqn.primitive.name
        sub = next((eqn.params[k] for k in _CALL_PARAMS if k in eqn.params), None)
        if sub is not None:
            known = _relax.named_activation(eqn, invals)
            if known is not None:
                (ref,) = [a for a in invals if isinstance(a, Ref)]
                aval = eqn.outvars[0].aval
                out = self.new("act", known.name, [ref], aval.shape, where, act=known)
                if self.batch is not None:
                    self.clean[out.id] = known(self.clean[ref.id])
                return [out]
            if isinstance(sub, jcore.ClosedJaxpr):
                jaxpr, consts = sub.jaxpr, sub.consts
            else:
                jaxpr, consts = sub, []
            if name.startswith("custom_vjp") and len(jaxpr.invars) != len(invals):
                invals = invals[len(invals) - len(jaxpr.invars) :]
            return self.walk(jaxpr, consts, invals, where)
        if eqn.primitive.multiple_results:
            raise _unsupported(name, where, "it has several outputs")
        shape = eqn.outvars[0].aval.shape
        refs = [a for a in invals if isinstance(a, Ref)]
        if name == "mul" and len(refs) == 2 and self.shapes[refs[0].id] == self.shapes[refs[1].id] == tuple(shape):
            (root_a, fa), (root_b, fb) = self.chain(refs[0]), self.chain(refs[1])
            act = _relax.fuse_gelu(fa, fb) if root_a == root_b else None
            if act is not None:
                return [self.new("act", "gelu", [Ref(root_a)], shape, where, act=act)]
        rule = _relax.classify(eqn, invals, self.shapes, sound=self.sound)
        if rule is None:
            raise _unsupported(name, where)
        if isinstance(rule, str):
            raise _unsupported(name, where, rule)
        kind, refs, fields = rule
        out = self.new(kind, name, refs, shape, where, **fields)
        self.record_chain(eqn, invals, out, kind, fields)
        return [out]

    def record_chain(self, eqn, invals, out: Ref, kind: str, fields: dict) -> None:
        refs = [a for a in invals if isinstance(a, Ref)]
        if len(refs) != 1 or self.shapes[refs[0].id] != self.shapes[out.id]:
            return
        root, f = self.chain(refs[0])
        if kind == "act" and np.size(fields["act"].c) == 1:
            act = fields["act"]
            self.chains[out.id] = (root, lambda s: act(f(s)))
        elif (
            kind == "affine"
            and eqn.primitive.name in _SCALAR_AFFINE
            and all(isinstance(a, Ref) or np.ndim(a) == 0 for a in invals)
        ):
            prim, params = eqn.primitive, eqn.params

            def g(s):
                return prim.bind(*[f(s) if isinstance(a, Ref) else a for a in invals], **params)

            self.chains[out.id] = (root, g)


def _evaluate(eqn, invals) -> list:
    with eqn.ctx.manager:
        outs = eqn.primitive.bind(*invals, **eqn.primitive.get_bind_params(eqn.params))
    return outs if eqn.primitive.multiple_results else [outs]


def _join(prefix: str, name: str) -> str:
    if not prefix:
        return name
    return f"{prefix}/{name}" if name else prefix


def _unsupported(prim: str, where: str, why: str = "") -> TypeError:
    at = f" at layer {where!r}" if where else " (no layer path: the model's top level)"
    reason = f": {why}" if why else ""
    return TypeError(
        f"verify: primitive {prim!r}{at} has no bound rule{reason}. Supported: linear primitives "
        "(dot_general, conv_general_dilated, add/sub, scaling by constants, reshapes, slicing, "
        "padding, concatenate, reduce_sum, average pooling), max(x, c)/min(x, c) (ReLU, clamp), "
        "tanh, logistic, erf/erfc (GELU), softplus, leaky ReLU and max-pooling"
    )
