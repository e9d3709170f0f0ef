"""IBP, CROWN and alpha-CROWN on the bound graph of :mod:`tlean.verify._graph`.

Everything here works on one example (the model traced with a batch of one); the public
functions in :mod:`tlean.verify` vmap it over the examples and jit it.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

from tlean.verify._graph import Graph

# -- interval bound propagation --------------------------------------------------------------------


def node_interval(node, intervals):
    """The IBP bounds of ``node``'s output from its inputs' bounds."""
    ins = [intervals[r] for r in node.refs]
    if node.kind == "affine":
        centers = [(lo + hi) / 2 for lo, hi in ins]
        radii = [(hi - lo) / 2 for lo, hi in ins]
        c = node.lin(*centers)
        if node.offset is not None:
            c = c + node.offset
        r = node.abslin(*radii)
        return c - r, c + r
    if node.kind == "act":
        ((lo, hi),) = ins
        lo, hi = node.act.interval(lo, hi)
        return jnp.broadcast_to(lo, node.shape), jnp.broadcast_to(hi, node.shape)
    return node.fn(*[lo for lo, _ in ins]), node.fn(*[hi for _, hi in ins])


def ibp(graph: Graph, lo, hi) -> dict:
    """Interval bounds of every node: ``{id: (lower, upper)}``."""
    intervals = {0: (lo, hi)}
    for node in graph.nodes:
        intervals[node.out] = node_interval(node, intervals)
    return intervals


# -- CROWN ------------------------------------------------------------------------------------------


def _pos(a):
    return jnp.maximum(a, 0.0)


def _neg(a):
    return jnp.minimum(a, 0.0)


def _rowsum(a):
    return a.reshape(a.shape[0], -1).sum(-1)


def _expand(v, shape):
    """A per-neuron array (or scalar) as ``[1, *shape]`` to meet ``[K, *shape]`` coefficients."""
    return jnp.broadcast_to(v, shape)[None]


def backward(graph: Graph, target: int, A, intervals: dict, alphas: dict | None = None, relax: bool = True):
    """CROWN's backward pass from node ``target`` with coefficients ``A [K, *shape]``.

    Returns ``(lA, lbias, uA, ubias)``: ``lA . x + lbias <= A . target <= uA . x + ubias`` for
    every input ``x`` in the box that produced ``intervals``; ``lA``, ``uA`` are ``[K, *input]``.
    ``alphas`` maps an activation node's id to ``(alpha_lower_pass, alpha_upper_pass)``, each
    ``[K, *shape]``: the lower ReLU slopes that alpha-CROWN optimises. ``relax=False`` bounds
    every activation by its interval instead (IBP with the affine layers after the last
    activation folded into ``A``, as auto_LiRPA folds a specification into the last layer).
    """
    K = A.shape[0]
    dtype = A.dtype
    lA, uA = {target: A}, {target: A}
    lbias = jnp.zeros((K,), dtype)
    ubias = jnp.zeros((K,), dtype)

    def accumulate(store, ref, value):
        store[ref] = value if ref not in store else store[ref] + value

    for node in reversed(graph.nodes):
        if node.out not in lA:
            continue
        Al, Au = lA.pop(node.out), uA.pop(node.out)
        if node.kind == "affine":
            if node.offset is not None:
                off = _expand(node.offset, node.shape)
                lbias = lbias + _rowsum(Al * off)
                ubias = ubias + _rowsum(Au * off)
            cts = jax.vmap(_transpose(graph, node, dtype))(jnp.concatenate([Al, Au]))
            for ref, ct in zip(node.refs, cts):
                accumulate(lA, ref, ct[:K])
                accumulate(uA, ref, ct[K:])
        elif node.kind == "act" and relax:
            (ref,) = node.refs
            lo, hi = intervals[ref]
            lo, hi = jnp.broadcast_to(lo, node.shape), jnp.broadcast_to(hi, node.shape)
            al, bl, au, bu = _relaxation(node, intervals)
            al_u, bl_u = al, bl
            if alphas is not None and node.out in alphas:
                a_low, a_up = alphas[node.out]
                al = node.act.relu_lower_slope(lo[None], hi[None], a_low)
                al_u = node.act.relu_lower_slope(lo[None], hi[None], a_up)
                bl = node.act.c - al * node.act.c
                bl_u = node.act.c - al_u * node.act.c
            lbias = lbias + _rowsum(_pos(Al) * bl + _neg(Al) * bu)
            ubias = ubias + _rowsum(_pos(Au) * bu + _neg(Au) * bl_u)
            accumulate(lA, ref, _pos(Al) * al + _neg(Al) * au)
            accumulate(uA, ref, _pos(Au) * au + _neg(Au) * al_u)
        else:  # monotone: constant bounds from its interval
            lo, hi = (_expand(v, node.shape) for v in intervals[node.out])
            lbias = lbias + _rowsum(_pos(Al) * lo + _neg(Al) * hi)
            ubias = ubias + _rowsum(_pos(Au) * hi + _neg(Au) * lo)
    shape = graph.shapes[0]
    zero = jnp.zeros((K, *shape), dtype)
    return lA.get(0, zero), lbias, uA.get(0, zero), ubias


def _transpose(graph: Graph, node, dtype):
    """``jax.linear_transpose`` of an affine node's linear part, traced once per node."""
    key = ("transpose", dtype)
    if key not in node.cache:
        avals = [jax.ShapeDtypeStruct(graph.shapes[r], dtype) for r in node.refs]
        node.cache[key] = jax.linear_transpose(node.lin, *avals)
    return node.cache[key]


def _relaxation(node, intervals):
    """An activation's ``(al, bl, au, bu)`` as ``[1, *shape]``, once per ``intervals`` dict."""
    key = ("relax", node.out)
    if key not in intervals:
        (ref,) = node.refs
        lo, hi = (jnp.broadcast_to(v, node.shape) for v in intervals[ref])
        intervals[key] = tuple(_expand(v, node.shape) for v in node.act.relax(lo, hi))
    return intervals[key]


def concretize(lA, lbias, uA, ubias, lo, hi):
    """The bounds of the linear functions over the box ``[lo, hi]``: ``(lower [K], upper [K])``."""
    c, r = _expand((lo + hi) / 2, lo.shape), _expand((hi - lo) / 2, lo.shape)
    lower = _rowsum(lA * c) - _rowsum(jnp.abs(lA) * r) + lbias
    upper = _rowsum(uA * c) + _rowsum(jnp.abs(uA) * r) + ubias
    return lower, upper


def _needs(graph: Graph) -> dict:
    """Ids whose bounds some activation or monotone node needs -> the first such consumer."""
    needs: dict = {}
    for node in graph.nodes:
        if node.kind != "affine":
            for r in node.refs:
                needs.setdefault(r, node)
    return needs


def crown_intervals(graph: Graph, lo, hi, alphas: dict | None = None) -> dict:
    """Bounds of every node, pre-activations by CROWN (auto_LiRPA's default), the rest by IBP.

    As auto_LiRPA with its default sparse intermediate bounds, a ReLU pre-activation neuron
    that IBP (from the bounds found so far) already proves stable keeps its IBP bounds; the
    others take CROWN's. Pre-activations of other activations take the intersection of both.
    ``alphas`` maps a pre-activation's id to the slopes its backward pass uses (alpha-CROWN).
    """
    needs = _needs(graph)
    intervals = {0: (lo, hi)}
    for node in graph.nodes:
        ibp_lo, ibp_hi = node_interval(node, intervals)
        consumer = needs.get(node.out)
        if consumer is None or node.kind != "affine":
            intervals[node.out] = (ibp_lo, ibp_hi)
            continue
        K = math.prod(node.shape)
        eye = jnp.eye(K, dtype=lo.dtype).reshape(K, *node.shape)
        slopes = None if alphas is None else alphas.get(node.out)
        crown_lo, crown_hi = concretize(*backward(graph, node.out, eye, intervals, slopes), lo, hi)
        crown_lo, crown_hi = crown_lo.reshape(node.shape), crown_hi.reshape(node.shape)
        act = consumer.act if consumer.kind == "act" else None
        if act is not None and act.kind in ("relu", "min"):
            c = jnp.broadcast_to(act.c, node.shape)
            stable = (ibp_lo >= c) | (ibp_hi <= c)
            intervals[node.out] = (jnp.where(stable, ibp_lo, crown_lo), jnp.where(stable, ibp_hi, crown_hi))
        else:
            intervals[node.out] = (jnp.maximum(ibp_lo, crown_lo), jnp.minimum(ibp_hi, crown_hi))
    return intervals


def output_spec(graph: Graph, spec, dtype):
    """The initial coefficients ``[K, *output]``: ``spec [K, out]`` or the identity."""
    shape = graph.shapes[graph.output]
    if spec is None:
        K = math.prod(shape)
        return jnp.eye(K, dtype=dtype).reshape(K, *shape)
    return spec.reshape(spec.shape[0], *shape).astype(dtype)


def optimise_alpha(graph: Graph, A0, lo, hi, *, steps: int, lr):
    """alpha-CROWN: Adam on the lower ReLU slopes of every backward pass, as auto_LiRPA's default.

    Every pre-activation's backward pass and the output's have their own slopes, one per row
    and neuron (separate for the lower and the upper bound), started at CROWN's adaptive
    slopes; each step recomputes the intermediate bounds with them and descends on
    ``sum(upper) - sum(lower)`` of the output. Adam, learning rate decayed by 0.98 a step,
    slopes projected onto ``[a, 1]`` (auto_LiRPA's ``optimize_bound_args`` defaults). Returns
    ``(lower, upper)``, the best each row reached, so never looser than CROWN (step 0).
    """
    intervals = crown_intervals(graph, lo, hi)
    for node in graph.nodes:  # linear transposes traced outside the gradient's trace
        if node.kind == "affine":
            _transpose(graph, node, A0.dtype)
    relus = [n for n in graph.nodes if n.kind == "act" and n.act.optimisable]
    order = {n.out: i for i, n in enumerate(graph.nodes)}
    starts = {n.out: math.prod(n.shape) for n in graph.nodes if n.kind == "affine" and n.out in _needs(graph)}
    starts[graph.output] = A0.shape[0]
    alphas: dict = {}
    for start, K in starts.items():
        for node in relus:
            if order[node.out] < order.get(start, len(order)):
                (ref,) = node.refs
                l, u = (jnp.broadcast_to(v, node.shape) for v in intervals[ref])
                init = jnp.broadcast_to(node.act.relu_lower_slope(l, u)[None], (K, *node.shape))
                alphas.setdefault(start, {})[node.out] = (init, init)

    def bound(alpha):
        inner = crown_intervals(graph, lo, hi, alpha)
        lower, upper = concretize(*backward(graph, graph.output, A0, inner, alpha.get(graph.output)), lo, hi)
        return upper.sum() - lower.sum(), (lower, upper)

    if not alphas or steps <= 0:
        _, (lower, upper) = bound(alphas)
        return lower, upper
    optimiser = optax.adam(optax.exponential_decay(lr, 1, 0.98))
    grad = jax.value_and_grad(bound, has_aux=True)

    def step(carry, _):
        alpha, opt_state, best_l, best_u = carry
        (_, (lower, upper)), g = grad(alpha)
        updates, opt_state = optimiser.update(g, opt_state, alpha)
        alpha = optax.apply_updates(alpha, updates)
        alpha = jax.tree_util.tree_map(lambda a: jnp.clip(a, 0.0, 1.0), alpha)
        return (alpha, opt_state, jnp.maximum(best_l, lower), jnp.minimum(best_u, upper)), None

    K = A0.shape[0]
    inf = jnp.full((K,), jnp.inf, A0.dtype)
    carry = (alphas, optimiser.init(alphas), -inf, inf)
    (alphas, _, best_l, best_u), _ = jax.lax.scan(step, carry, None, length=steps)
    _, (lower, upper) = bound(alphas)
    return jnp.maximum(best_l, lower), jnp.minimum(best_u, upper)
