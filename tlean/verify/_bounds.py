"""IBP, CROWN and alpha-CROWN on the bound graph of :mod:`tlean.verify._graph`.

Everything here works on one example (the model traced with a batch of one); the public
functions in :mod:`tlean.verify` vmap it over the examples and jit it.

``sound=True``: bounds of the float32 computation itself, not of the real-number function.
``u`` is the unit roundoff (2^-24), ``gamma_n = n u / (1 - n u)`` bounds the error of any sum of
``n`` rounded products (any order, with or without FMA), ``M = max(|lower|, |upper|)`` of a
node's input interval and ``m = |lin|(M) + |offset|``. Where rounding enters:

- forward, every affine node: the float32 model computes ``lin(v) + offset`` with an error of
  at most ``gamma_{n+1} m`` per output (``n``: the dot's contraction length, the convolution's
  ``in_channels / groups * kernel volume``, 1 for an add or a scaling, 0 for a reshape);
- forward, every activation: XLA's ``f`` is within ``float_error`` of the true ``f``
  (:meth:`tlean.verify._relax.Activation.float_error`, measured); ``max`` is exact;
- IBP's own arithmetic: ``lin(centre) +- |lin|(radius)`` rounds by at most ``gamma_n m`` more;
  the centre and radius enclose the box exactly (radius rounded up). So an affine node's
  interval is widened by ``2 gamma_{n+4} m`` and rounded outward by one ulp
  (:func:`node_interval`); an activation's by ``2 float_error`` and one ulp;
- CROWN's backward pass: a transposed coefficient ``fl(Lambda W)`` differs from ``Lambda W``
  by at most ``gamma_{n'} |Lambda| |W|`` (``n'``: the transpose's sum length), so
  ``Lambda . W v`` and ``fl(Lambda W) . v`` differ by at most ``gamma_{n'} |Lambda| |W| M``;
  with the forward's error, each affine node costs ``|Lambda| . (gamma_{n+2} + gamma_{n'+2}) m``
  off the bias. An activation's relaxation lines are moved to bound the float32 ``f`` whatever
  their own rounding (:meth:`~tlean.verify._relax.Activation.sound_offset`), and scaling the
  coefficients by their slopes costs ``u |Lambda| |slope| M``; adding the coefficients of two
  paths ``u (|a| + |b|) M``. The biases, sums of terms whose magnitudes are tracked, lose at
  most ``gamma_S`` of that magnitude (``S``: the longest row plus the number of nodes); that
  and the widenings are taken off the bias, rounded outward (:func:`backward`);
- concretisation over the box: ``gamma_{N+4} (|A| . M + |bias|)`` (``N``: the input size),
  rounded outward (:func:`concretize`).

It assumes round-to-nearest float32 arithmetic at full precision (``Precision.HIGHEST``, which
the bound's own dots use; a TF32 or bfloat16 matmul in the model is not covered) and no
reassociation beyond what ``gamma_n`` allows (XLA's default, no fast-math); convolutions
computed by Winograd or FFT algorithms are not covered by ``gamma_n``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

from tlean.verify._graph import Graph
from tlean.verify._relax import next_down as _down
from tlean.verify._relax import next_up as _up
from tlean.verify._relax import unit_roundoff


def gamma(n: int, dtype) -> float:
    """``gamma_n = n u / (1 - n u)``, rounded up, as a Python float."""
    nu = n * unit_roundoff(dtype)
    if nu >= 0.5:
        raise ValueError(f"verify: sound=True cannot bound sums of {n} terms in {jnp.dtype(dtype).name}")
    return nu / (1.0 - nu) * (1.0 + 8.0 * unit_roundoff(dtype))


def _enclose(lo, hi):
    """``(c, r, M)``: ``[lo, hi]`` inside ``[c - r, c + r]`` exactly; ``M = max(|lo|, |hi|)``."""
    c = (lo + hi) / 2
    r = _up(jnp.maximum(hi - c, c - lo))
    return c, r, jnp.maximum(jnp.abs(lo), jnp.abs(hi))


def _magnitude(node, intervals):
    """``m = |lin|(M) + |offset|`` of an affine node: what its rounding errors scale with."""
    key = ("magnitude", node.out)
    if key not in intervals:
        mags = [_enclose(*intervals[r])[2] for r in node.refs]
        m = node.abslin(*mags)
        if node.offset is not None:
            m = m + jnp.abs(node.offset)
        intervals[key] = jnp.broadcast_to(m, node.shape)
    return intervals[key]


def intervals_shape(intervals, ref):
    return jnp.shape(intervals[ref][0])


# -- interval bound propagation --------------------------------------------------------------------


def node_interval(node, intervals, sound: bool = False):
    """The IBP bounds of ``node``'s output from its inputs' bounds (of its float32 value if ``sound``)."""
    ins = [intervals[r] for r in node.refs]
    if node.kind == "affine" and sound:
        encl = [_enclose(lo, hi) for lo, hi in ins]
        c = node.lin(*[e[0] for e in encl])
        if node.offset is not None:
            c = c + node.offset
        r = node.abslin(*[e[1] for e in encl])
        w = (2.0 * gamma(node.terms[0] + 4, c.dtype)) * _magnitude(node, intervals)
        return _down(c - r - w), _up(c + r + w)
    if node.kind == "act" and sound:
        ((lo, hi),) = ins
        lo, hi = node.act.sound_interval(lo, hi)
        return jnp.broadcast_to(lo, node.shape), jnp.broadcast_to(hi, node.shape)
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


def ibp(graph: Graph, lo, hi, sound: bool = False) -> dict:
    """Interval bounds of every node: ``{id: (lower, upper)}``."""
    intervals = {0: (lo, hi)}
    for node in graph.nodes:
        intervals[node.out] = node_interval(node, intervals, sound)
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


def backward(
    graph: Graph,
    target: int,
    A,
    intervals: dict,
    alphas: dict | None = None,
    relax: bool = True,
    sound: bool = False,
):
    """CROWN's backward pass from node ``target`` with coefficients ``A [K, *shape]``.

    Returns ``(lA, lbias, uA, ubias)``: ``lA . x + lbias <= A . target <= uA . x + ubias`` for
    every input ``x`` in the box that produced ``intervals``; ``lA``, ``uA`` are ``[K, *input]``.
    ``alphas`` maps an activation node's id to ``(alpha_lower_pass, alpha_upper_pass)``, each
    ``[K, *shape]``: the lower ReLU slopes that alpha-CROWN optimises. ``relax=False`` bounds
    every activation by its interval instead (IBP with the affine layers after the last
    activation folded into ``A``, as auto_LiRPA folds a specification into the last layer).
    ``sound``: ``target`` is the float32 value and the inequalities hold exactly in real
    numbers for the returned float coefficients (module docstring: every rounding of the
    forward and of this pass is taken off the biases, which are rounded outward).
    """
    K = A.shape[0]
    dtype = A.dtype
    u = unit_roundoff(dtype)
    lA, uA = {target: A}, {target: A}
    lbias = jnp.zeros((K,), dtype)
    ubias = jnp.zeros((K,), dtype)
    # sound: widening already bounded (lwid, uwid) and magnitudes of the terms summed into the
    # biases (lmag, umag), all >= 0.
    lwid, uwid, lmag, umag = (jnp.zeros((K,), dtype) for _ in range(4))

    def bound_of(ref):
        return jnp.broadcast_to(_enclose(*intervals[ref])[2], graph.shapes[ref])[None]

    def accumulate(store, ref, value):
        nonlocal lwid, uwid
        if ref not in store:
            store[ref] = value
            return
        if sound:  # one rounding of the sum: u (|a| + |b|) M
            extra = u * _rowsum((jnp.abs(store[ref]) + jnp.abs(value)) * bound_of(ref))
            if store is lA:
                lwid = lwid + extra
            else:
                uwid = uwid + extra
        store[ref] = store[ref] + value

    longest = max([math.prod(graph.shapes[0])] + [math.prod(n.shape) for n in graph.nodes])
    for node in reversed(graph.nodes):
        if node.out not in lA:
            continue
        Al, Au = lA.pop(node.out), uA.pop(node.out)
        if node.kind == "affine":
            if node.offset is not None:
                off = _expand(node.offset, node.shape)
                lbias = lbias + _rowsum(Al * off)
                ubias = ubias + _rowsum(Au * off)
                if sound:
                    lmag = lmag + _rowsum(jnp.abs(Al) * jnp.abs(off))
                    umag = umag + _rowsum(jnp.abs(Au) * jnp.abs(off))
            if sound:
                fwd, bwd = node.terms
                w = (gamma(fwd + 2, dtype) + gamma(bwd + 2, dtype)) * _magnitude(node, intervals)[None]
                lwid = lwid + _rowsum(jnp.abs(Al) * w)
                uwid = uwid + _rowsum(jnp.abs(Au) * w)
            cts = jax.vmap(_transpose(graph, node, dtype))(jnp.concatenate([Al, Au]))
            for ref, ct in zip(node.refs, cts):
                accumulate(lA, ref, ct[:K])
                accumulate(uA, ref, ct[K:])
        elif node.kind == "act" and relax:
            (ref,) = node.refs
            lo, hi = intervals[ref]
            lo, hi = jnp.broadcast_to(lo, node.shape), jnp.broadcast_to(hi, node.shape)
            al, bl, au, bu = _relaxation(node, intervals, sound)
            al_u, bl_u = al, bl
            if alphas is not None and node.out in alphas:
                a_low, a_up = alphas[node.out]
                al = node.act.relu_lower_slope(lo[None], hi[None], a_low)
                al_u = node.act.relu_lower_slope(lo[None], hi[None], a_up)
                bl = node.act.c - al * node.act.c
                bl_u = node.act.c - al_u * node.act.c
                if sound:
                    bl = node.act.sound_offset(lo[None], hi[None], al, bl, upper=False)
                    bl_u = node.act.sound_offset(lo[None], hi[None], al_u, bl_u, upper=False)
            lbias = lbias + _rowsum(_pos(Al) * bl + _neg(Al) * bu)
            ubias = ubias + _rowsum(_pos(Au) * bu + _neg(Au) * bl_u)
            if sound:
                M = bound_of(ref)
                lmag = lmag + _rowsum(jnp.abs(Al) * (jnp.abs(bl) + jnp.abs(bu)))
                umag = umag + _rowsum(jnp.abs(Au) * (jnp.abs(bu) + jnp.abs(bl_u)))
                lwid = lwid + u * _rowsum(jnp.abs(Al) * (jnp.abs(al) + jnp.abs(au)) * M)
                uwid = uwid + u * _rowsum(jnp.abs(Au) * (jnp.abs(au) + jnp.abs(al_u)) * M)
            accumulate(lA, ref, _pos(Al) * al + _neg(Al) * au)
            accumulate(uA, ref, _pos(Au) * au + _neg(Au) * al_u)
        else:  # monotone: constant bounds from its interval
            lo, hi = (_expand(v, node.shape) for v in intervals[node.out])
            lbias = lbias + _rowsum(_pos(Al) * lo + _neg(Al) * hi)
            ubias = ubias + _rowsum(_pos(Au) * hi + _neg(Au) * lo)
            if sound:
                M = jnp.maximum(jnp.abs(lo), jnp.abs(hi))
                lmag = lmag + _rowsum(jnp.abs(Al) * M)
                umag = umag + _rowsum(jnp.abs(Au) * M)
    shape = graph.shapes[0]
    zero = jnp.zeros((K, *shape), dtype)
    if sound:
        g = gamma(longest + len(graph.nodes) + 4, dtype)
        lbias = _down(lbias - (lwid + g * lmag) * (1.0 + 2.0 * g))
        ubias = _up(ubias + (uwid + g * umag) * (1.0 + 2.0 * g))
    return lA.get(0, zero), lbias, uA.get(0, zero), ubias


def _transpose(graph: Graph, node, dtype):
    """``jax.linear_transpose`` of an affine node's linear part, traced once per node."""
    key = ("transpose", dtype)
    if key not in node.cache:
        avals = [jax.ShapeDtypeStruct(graph.shapes[r], dtype) for r in node.refs]
        node.cache[key] = jax.linear_transpose(node.lin, *avals)
    return node.cache[key]


def _relaxation(node, intervals, sound: bool = False):
    """An activation's ``(al, bl, au, bu)`` as ``[1, *shape]``, once per ``intervals`` dict.

    ``sound``: the intercepts moved to bound the float32 function (``Activation.sound_offset``).
    """
    key = ("relax", node.out, sound)
    if key not in intervals:
        (ref,) = node.refs
        lo, hi = (jnp.broadcast_to(v, node.shape) for v in intervals[ref])
        al, bl, au, bu = (jnp.broadcast_to(v, node.shape) for v in node.act.relax(lo, hi))
        if sound:
            bl = node.act.sound_offset(lo, hi, al, bl, upper=False)
            bu = node.act.sound_offset(lo, hi, au, bu, upper=True)
        intervals[key] = tuple(v[None] for v in (al, bl, au, bu))
    return intervals[key]


def concretize(lA, lbias, uA, ubias, lo, hi, sound: bool = False):
    """The bounds of the linear functions over the box ``[lo, hi]``: ``(lower [K], upper [K])``.

    ``sound``: the box enclosed exactly, the result widened by ``gamma_{N+4} (|A| . M + |bias|)``
    (``N`` the input size) and rounded outward.
    """
    if sound:
        c, r, M = (_expand(v, lo.shape) for v in _enclose(lo, hi))
    else:
        c, r = _expand((lo + hi) / 2, lo.shape), _expand((hi - lo) / 2, lo.shape)
    lower = _rowsum(lA * c) - _rowsum(jnp.abs(lA) * r) + lbias
    upper = _rowsum(uA * c) + _rowsum(jnp.abs(uA) * r) + ubias
    if sound:
        g = gamma(math.prod(lo.shape) + 4, lo.dtype)
        lower = _down(lower - g * (1.0 + 2.0 * g) * (_rowsum(jnp.abs(lA) * M) + jnp.abs(lbias)))
        upper = _up(upper + g * (1.0 + 2.0 * g) * (_rowsum(jnp.abs(uA) * M) + jnp.abs(ubias)))
    return lower, upper


def _needs(graph: Graph) -> dict:
    """Ids whose bounds some activation or monotone node needs -> the first such consumer."""
    needs: dict = {}
    for node in graph.nodes:
        if node.kind != "affine":
            for r in node.refs:
                needs.setdefault(r, node)
    return needs


def crown_intervals(graph: Graph, lo, hi, alphas: dict | None = None, sound: bool = False) -> dict:
    """Bounds of every node, pre-activations by CROWN (auto_LiRPA's default), the rest by IBP.

    As auto_LiRPA with its default sparse intermediate bounds, a ReLU pre-activation neuron
    that IBP (from the bounds found so far) already proves stable keeps its IBP bounds; the
    others take CROWN's. Pre-activations of other activations take the intersection of both.
    ``alphas`` maps a pre-activation's id to the slopes its backward pass uses (alpha-CROWN).
    ``sound``: bounds of the float32 values (see :func:`backward`).
    """
    needs = _needs(graph)
    intervals = {0: (lo, hi)}
    for node in graph.nodes:
        ibp_lo, ibp_hi = node_interval(node, intervals, sound)
        consumer = needs.get(node.out)
        if consumer is None or node.kind != "affine":
            intervals[node.out] = (ibp_lo, ibp_hi)
            continue
        K = math.prod(node.shape)
        eye = jnp.eye(K, dtype=lo.dtype).reshape(K, *node.shape)
        slopes = None if alphas is None else alphas.get(node.out)
        crown_lo, crown_hi = concretize(*backward(graph, node.out, eye, intervals, slopes, sound=sound), lo, hi, sound)
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


def optimise_alpha(graph: Graph, A0, lo, hi, *, steps: int, lr, sound: bool = False):
    """alpha-CROWN: Adam on the lower ReLU slopes of every backward pass, as auto_LiRPA's default.

    Every pre-activation's backward pass and the output's have their own slopes, one per row
    and neuron (separate for the lower and the upper bound), started at CROWN's adaptive
    slopes; each step recomputes the intermediate bounds with them and descends on
    ``sum(upper) - sum(lower)`` of the output. Adam, learning rate decayed by 0.98 a step,
    slopes projected onto ``[a, 1]`` (auto_LiRPA's ``optimize_bound_args`` defaults). Returns
    ``(lower, upper)``, the best each row reached, so never looser than CROWN (step 0). Every
    step's bounds hold (for the float32 values if ``sound``), so the best of them does.
    """
    intervals = crown_intervals(graph, lo, hi, sound=sound)
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
        inner = crown_intervals(graph, lo, hi, alpha, sound)
        lA, lb, uA, ub = backward(graph, graph.output, A0, inner, alpha.get(graph.output), sound=sound)
        lower, upper = concretize(lA, lb, uA, ub, lo, hi, sound)
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
