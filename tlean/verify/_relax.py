"""Bound rules per primitive: which equations are affine, which are activations, and their relaxations.

Affine primitives (exact): ``add``, ``sub``, ``neg``, ``mul``/``div`` by a constant,
``dot_general`` and ``conv_general_dilated`` with a constant operand, ``reshape``,
``transpose``, ``squeeze``, ``expand_dims``, ``broadcast_in_dim``, ``slice``,
``dynamic_slice``/``gather`` at constant indices, ``concatenate``, ``pad``, ``select_n`` with a
constant predicate, ``reduce_sum``, ``reduce_window_sum`` (average pooling), ``cumsum``,
``rev``, ``convert_element_type``, ``copy``.

Activations (element-wise, one bounded input), each with a linear relaxation
``al * x + bl <= f(x) <= au * x + bu`` on ``[l, u]``:

- ``max(x, c)`` / ``min(x, c)`` (ReLU, ReLU6, clamps) and leaky ReLU: CROWN's triangle,
  upper ``(u - a l) / (u - l)`` chord, lower slope chosen adaptively (1 when the chord slope
  exceeds 1/2, else ``a``) exactly as auto_LiRPA, optimisable by alpha-CROWN;
- ``tanh``, ``logistic``, ``erf`` (and ``erfc = 1 - erf``): convex for ``x < 0``, concave for
  ``x > 0``: chord on the side where it bounds, tangent at the midpoint, and in the mixed case
  the tangent through the far end point found by bisection, rounded to the sound side;
- softplus (``jax.nn.softplus``): convex, chord above and tangent at the midpoint below;
- GELU (``x * Phi(x)``, recognised from the product of two functions of the same value):
  the chord's slope with offsets bounded on a 64-point grid widened by ``max|f''| h^2 / 8``.

Monotone primitives (``reduce_window_max`` = max-pooling, ``reduce_max``, ``max`` of two bounded
values): exact interval bounds, constant bounds in CROWN.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend import core as jcore

_STRUCTURAL = frozenset(
    {
        "reshape",
        "transpose",
        "squeeze",
        "expand_dims",
        "broadcast_in_dim",
        "slice",
        "reduce_sum",
        "convert_element_type",
        "copy",
        "copy_p",
        "reduce_window_sum",
        "rev",
        "cumsum",
        "dynamic_slice",
        "gather",
        "reduce_precision",
        "stop_gradient",
    }
)
_MIXED = frozenset({"add", "concatenate", "pad", "select_n", "dynamic_update_slice"})
_MONOTONE = frozenset({"reduce_window_max", "reduce_max", "cummax"})


def _is_ref(a) -> bool:
    return type(a).__name__ == "Ref"


def _is_float(a) -> bool:
    return jnp.issubdtype(jnp.result_type(a), jnp.inexact)


def _bind(eqn, invals, values) -> Any:
    """Bind ``eqn``'s primitive with the bounded inputs replaced, in order, by ``values``."""
    it = iter(values)
    args = [next(it) if _is_ref(a) else a for a in invals]
    return eqn.primitive.bind(*args, **eqn.params)


def _zeros_for_consts(eqn, invals, values):
    """Bind with the bounded inputs replaced by ``values`` and float constants by zeros (the offset)."""
    it = iter(values)
    args = [next(it) if _is_ref(a) else (jnp.zeros_like(a) if _is_float(a) else a) for a in invals]
    return eqn.primitive.bind(*args, **eqn.params)


def classify(eqn, invals, shapes, *, sound: bool = False) -> tuple | str | None:
    """``(kind, refs, fields)`` for :class:`tlean.verify._graph.Node`, a reason string, or None.

    Affine rules carry ``terms = (forward, backward)``: at most how many rounded products and
    sums make one output of ``lin`` and one entry of its transpose (see :func:`_terms`).
    ``sound``: dots and convolutions are bound at ``Precision.HIGHEST``.
    """
    rule = _classify(eqn, invals, shapes, sound)
    if isinstance(rule, tuple) and rule[0] == "affine":
        rule[2]["terms"] = _terms(eqn, invals, shapes)
    return rule


def _size(shape) -> int:
    return int(np.prod(shape, dtype=np.int64))


def _terms(eqn, invals, shapes) -> tuple[int, int]:
    """``(forward, backward)`` rounding counts of an affine equation: the ``n`` of ``gamma_n``.

    forward: the longest sum of rounded products that makes one output (a dot's contraction
    length, a convolution's ``in_channels / groups * kernel volume``, a sum's reduced count;
    1 for one rounded ``add``/``mul``/``div``; 0 for exact copies: reshapes, slices, padding).
    backward: the same for one entry of its transpose (a dot's free size of the constant
    operand, a convolution's ``out_channels * kernel volume``, a broadcast's factor).
    """
    name = eqn.primitive.name
    shape_of = [shapes[a.id] if _is_ref(a) else np.shape(a) for a in invals]
    out = eqn.outvars[0].aval.shape
    if name == "dot_general":
        (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
        fwd = _size([shape_of[0][d] for d in lc])
        const = 1 if _is_ref(invals[0]) else 0
        skip = set(rc if const else lc) | set(rb if const else lb)
        return fwd, _size([n for d, n in enumerate(shape_of[const]) if d not in skip])
    if name == "conv_general_dilated":
        kernel = shape_of[1]
        spec = eqn.params["dimension_numbers"].rhs_spec
        return _size(kernel) // max(kernel[spec[0]], 1), _size(kernel) // max(kernel[spec[1]], 1)
    if name == "reduce_sum":
        return max(_size(shape_of[0]) // max(_size(out), 1), 1), 0
    if name == "broadcast_in_dim":
        return 0, max(_size(out) // max(_size(shape_of[0]), 1), 1)
    if name == "reduce_window_sum":
        window = _size(eqn.params["window_dimensions"])
        return window, window
    if name == "cumsum":
        n = shape_of[0][eqn.params["axis"]]
        return n, n
    if name == "gather":
        return 0, _size(out)
    if name in ("mul", "div", "convert_element_type", "reduce_precision"):
        return 1, 1
    if name in ("add", "sub"):
        return 1, 0
    return 0, 0


def _classify(eqn, invals, shapes, sound: bool) -> tuple | str | None:
    name = eqn.primitive.name
    refs = [a for a in invals if _is_ref(a)]
    ref_pos = [i for i, a in enumerate(invals) if _is_ref(a)]
    ref_shapes = [shapes[r.id] for r in refs]
    out_dtype = eqn.outvars[0].aval.dtype
    if not jnp.issubdtype(out_dtype, jnp.floating):
        return f"its output is {out_dtype}, not a float (comparisons and indices of bounded values have no bounds)"

    def zeros():
        return [jnp.zeros(s, out_dtype) for s in ref_shapes]

    if name in _STRUCTURAL:
        if ref_pos != [0]:
            return "it is indexed by a bounded value"

        def lin(*xs):
            return _bind(eqn, invals, xs)

        return "affine", refs, {"lin": lin, "abslin": lin, "offset": None}
    if name in _MIXED or name == "sub":
        if name == "select_n" and 0 in ref_pos:
            return "its predicate depends on the input"
        if name == "dynamic_update_slice" and any(i >= 2 for i in ref_pos):
            return "it is indexed by a bounded value"

        def lin_mixed(*xs):
            return _zeros_for_consts(eqn, invals, xs)

        offset = None
        if len(refs) < len(invals):
            offset = _bind(eqn, invals, zeros())
        if name == "sub":
            add_eqn = _Rebound(lax.add_p, eqn.params)

            def abslin(*xs):
                return _zeros_for_consts(add_eqn, invals, xs)

            return "affine", refs, {"lin": lin_mixed, "abslin": abslin, "offset": offset}
        return "affine", refs, {"lin": lin_mixed, "abslin": lin_mixed, "offset": offset}
    if name == "neg":
        return "affine", refs, {"lin": lambda x: -x, "abslin": lambda x: x, "offset": None}
    if name in ("mul", "dot_general"):
        if len(refs) > 1:
            return "it is a product of two bounded values"
        return _scaled(_highest(eqn, sound), invals, refs)
    if name == "div":
        if ref_pos != [0]:
            return "it divides by a bounded value"
        return _scaled(eqn, invals, refs)
    if name == "conv_general_dilated":
        if ref_pos != [0]:
            return "its kernel depends on the input"
        return _scaled(_highest(eqn, sound), invals, refs)
    if name in ("max", "min"):
        if len(refs) == 2:
            return "monotone", refs, {"fn": lambda a, b: _bind(eqn, invals, (a, b))}
        c = invals[1 - ref_pos[0]]
        act = Activation("relu" if name == "max" else "min", c=c)
        return "act", refs, {"act": act}
    if name in ("tanh", "logistic", "erf", "erfc"):
        return "act", refs, {"act": Activation(name)}
    if name in _MONOTONE:
        if ref_pos != [0] or len(invals) != 1:
            return "it takes several bounded operands"
        return "monotone", refs, {"fn": lambda x: _bind(eqn, invals, (x,))}
    return None


def _highest(eqn, sound: bool):
    """A dot or convolution at ``Precision.HIGHEST`` (``sound=True``); other equations unchanged."""
    if not sound or "precision" not in eqn.params:
        return eqn
    return _Rebound(eqn.primitive, {**eqn.params, "precision": (lax.Precision.HIGHEST, lax.Precision.HIGHEST)})


@dataclasses.dataclass
class _Rebound:
    """An equation with another primitive (``sub``'s absolute value is ``add``)."""

    primitive: Any
    params: dict


def _scaled(eqn, invals, refs):
    """Affine rules for a bounded operand times constants: ``|lin|`` uses ``|constants|``."""

    def lin(x):
        return _bind(eqn, invals, (x,))

    abs_invals = [a if _is_ref(a) else jnp.abs(a) for a in invals]

    def abslin(x):
        return _bind(eqn, abs_invals, (x,))

    return "affine", refs, {"lin": lin, "abslin": abslin, "offset": None}


def named_activation(eqn, invals) -> Activation | None:
    """Calls that JAX names and tlean bounds as one activation: softplus, logaddexp(x, 0), leaky_relu."""
    name = eqn.params.get("name")
    refs = [a for a in invals if _is_ref(a)]
    if len(refs) != 1 or len(eqn.outvars) != 1:
        return None
    if name == "softplus" and len(invals) == 1:
        return Activation("softplus")
    if name == "logaddexp" and len(invals) == 2:
        other = invals[1] if _is_ref(invals[0]) else invals[0]
        try:
            if np.all(np.asarray(other) == 0):
                return Activation("softplus")
        except jax.errors.ConcretizationTypeError:
            return None
    if name == "leaky_relu" and len(invals) == 1:
        sub = eqn.params["jaxpr"]
        try:
            with jax.ensure_compile_time_eval():
                probe = -jnp.ones(sub.in_avals[0].shape, sub.in_avals[0].dtype)
                slope = -np.asarray(jcore.jaxpr_as_fun(sub)(probe)[0]).ravel()[0]
        except Exception:
            return None
        if 0.0 <= slope <= 1.0:
            return Activation("relu", c=0.0, a=float(slope))
    return None


# -- activations ---------------------------------------------------------------------------------

_SQRT_PI = float(np.sqrt(np.pi))


def _s_fn(name):
    if name == "tanh":
        return jnp.tanh, lambda x: 1.0 - jnp.tanh(x) ** 2
    if name == "logistic":
        return jax.nn.sigmoid, lambda x: jax.nn.sigmoid(x) * (1.0 - jax.nn.sigmoid(x))
    return lax.erf, lambda x: (2.0 / _SQRT_PI) * jnp.exp(-x * x)


@dataclasses.dataclass(frozen=True, eq=False)
class Activation:
    """An element-wise function with a linear relaxation on ``[l, u]``.

    Attributes:
      kind: ``"relu"`` (``c + leaky(x - c)`` with negative slope ``a``: ReLU, ``max(x, c)``,
        leaky ReLU), ``"min"`` (``min(x, c)``), ``"tanh"``, ``"logistic"``, ``"erf"``,
        ``"erfc"``, ``"softplus"`` or ``"gelu"``.
      c: the constant of ``max(x, c)`` / ``min(x, c)``.
      a: the negative slope of a leaky ReLU (0 for ReLU).
      approximate: GELU's tanh approximation.
    """

    kind: str
    c: Any = 0.0
    a: float = 0.0
    approximate: bool = False

    @property
    def name(self) -> str:
        return self.kind

    @property
    def optimisable(self) -> bool:
        """alpha-CROWN optimises the lower slope of the ReLU family."""
        return self.kind == "relu"

    def __call__(self, x):
        if self.kind == "relu":
            z = x - self.c
            return self.c + jnp.maximum(z, self.a * z)
        if self.kind == "min":
            return jnp.minimum(x, self.c)
        if self.kind == "erfc":
            return lax.erfc(x)
        if self.kind == "softplus":
            return jax.nn.softplus(x)
        if self.kind == "gelu":
            return jax.nn.gelu(x, approximate=self.approximate)
        return _s_fn(self.kind)[0](x)

    def interval(self, l, u):
        """Exact bounds of ``f`` on ``[l, u]`` (a sound enclosure for GELU)."""
        if self.kind == "erfc":
            return self(u), self(l)
        if self.kind == "gelu":
            lo, hi, _, _ = _grid_bounds(self, l, u, jnp.zeros_like(l))
            return lo, hi
        return self(l), self(u)

    # sound=True ----------------------------------------------------------------------------
    def float_error(self, F, X):
        """A bound on ``|f_float32(x) - f(x)|`` where ``|f| <= F`` and ``|x| <= X`` near ``x``.

        ``ULPS[kind]`` units in the last place of ``F`` (plus, for GELU, as many of ``u |x|``:
        its ``x * Phi(x)`` loses relative accuracy where ``Phi`` is tiny), and as many of the
        smallest normal number (flushed subnormals). The multiples are 4x or more the worst error
        of XLA's float32 ``tanh``, ``logistic``, ``erf``, ``erfc``, softplus and GELU against
        float64 on a dense grid of [-20, 20] plus log-spaced points down to 1e-30 (XLA CPU,
        jax 0.10: 4.4, 2.5, 5.1, 64, 2.8 ulps; GELU 1.0 and 2.1 units of ``ulp(f) + u |x|``).
        ReLU, ``max``/``min`` and leaky ReLU: one ulp (``max`` is exact; ``a * x`` rounds once).
        """
        F = lax.stop_gradient(jnp.abs(F))
        ulp = jnp.nextafter(F, jnp.asarray(jnp.inf, F.dtype)) - F
        tiny = float(jnp.finfo(jnp.result_type(F)).tiny)
        k = ULPS[self.kind]
        err = k * (ulp + tiny)
        if self.kind == "gelu":
            err = err + k * unit_roundoff(jnp.result_type(F)) * jnp.abs(X)
        return err

    def sound_interval(self, l, u):
        """:meth:`interval` widened to hold ``f``'s float32 value: ``2 * float_error`` then one ulp."""
        lo, hi = self.interval(l, u)
        err = 2.0 * self.float_error(jnp.maximum(jnp.abs(lo), jnp.abs(hi)), jnp.maximum(jnp.abs(l), jnp.abs(u)))
        return next_down(lo - err), next_up(hi + err)

    def sound_offset(self, l, u, a, b, upper: bool):
        """The intercept of a line of slope ``a`` that bounds the float32 ``f`` on ``[l, u]``.

        Starts from ``b`` (any float line, e.g. :meth:`relax`'s, whatever its rounding) and
        moves it by its largest violation: at ``l``, ``u`` and the kink ``c`` for the ReLU family
        (piecewise linear: the extreme gaps are there), on a 64-point grid widened by
        ``max|f''| h^2 / 8`` for the smooth functions; then by ``2 * float_error`` (the forward's
        and this evaluation's float ``f``) and ``4 u (|a| |x| + |b| + |f|)`` (this check's own
        rounding). ``l, u`` broadcast against ``a, b`` (``[K, *shape]`` or ``[1, *shape]``).
        """
        if self.kind in ("relu", "min"):
            mid = jnp.clip(jnp.broadcast_to(self.c, jnp.shape(l)), l, u)
            xs = jnp.stack(jnp.broadcast_arrays(l, u, mid), -1)
            pad = 0.0
        else:
            n = 64
            t = jnp.linspace(0.0, 1.0, n, dtype=jnp.result_type(l)).reshape((1,) * jnp.ndim(l) + (n,))
            xs = jnp.clip(l[..., None] + (u - l)[..., None] * t, l[..., None], u[..., None])
            h = (u - l) / (n - 1)
            pad = CURVATURE[self.kind] * h * h / 8.0 * 1.01
        fx = self(xs)
        gap = fx - a[..., None] * xs - b[..., None]
        gap = jnp.max(gap, -1) if upper else jnp.max(-gap, -1)
        X = jnp.maximum(jnp.abs(l), jnp.abs(u))
        F = jnp.max(jnp.abs(fx), -1) + pad
        uround = unit_roundoff(jnp.result_type(l))
        eps = 2.0 * self.float_error(F, X) + 4.0 * uround * (jnp.abs(a) * X + jnp.abs(b) + F)
        move = jnp.maximum(gap + pad, 0.0) + eps
        return next_up(b + move) if upper else next_down(b - move)

    # relu family ---------------------------------------------------------------------------
    def relu_upper(self, l, u):
        """CROWN's upper line of ``c + leaky_a(x - c)``: ``(slope, intercept)``, as auto_LiRPA."""
        lz, uz = l - self.c, u - self.c
        lb_r = jnp.minimum(lz, 0.0)
        ub_r = jnp.maximum(jnp.maximum(uz, 0.0), lb_r + 1e-8)
        d = (ub_r - self.a * lb_r) / (ub_r - lb_r)
        b = -lb_r * d + self.a * lb_r
        return d, b + self.c - d * self.c

    def relu_lower_slope(self, l, u, alpha=None):
        """The lower slope: adaptive (1 if the upper slope > 1/2, else ``a``) or ``alpha`` in [a, 1]."""
        lz, uz = l - self.c, u - self.c
        d, _ = self.relu_upper(l, u)
        if alpha is None:
            free = jnp.where(d > 0.5, 1.0, self.a)
        else:
            free = jnp.clip(alpha, self.a, 1.0)
        return jnp.where(lz >= 0, 1.0, jnp.where(uz <= 0, self.a, free))

    def relax(self, l, u, alpha=None):
        """``(al, bl, au, bu)`` with ``al x + bl <= f(x) <= au x + bu`` for ``x`` in ``[l, u]``."""
        if self.kind == "relu":
            au, bu = self.relu_upper(l, u)
            al = self.relu_lower_slope(l, u, alpha)
            return al, self.c - al * self.c, au, bu
        if self.kind == "min":
            g = Activation("relu", c=-self.c)
            al_g, bl_g, au_g, bu_g = g.relax(-u, -l)
            return au_g, -bu_g, al_g, -bl_g
        if self.kind == "erfc":
            al, bl, au, bu = Activation("erf").relax(l, u)
            return -au, 1.0 - bu, -al, 1.0 - bl
        if self.kind == "softplus":
            return _convex_relax(jax.nn.softplus, jax.nn.sigmoid, l, u)
        if self.kind == "gelu":
            k = _chord(self, l, u)
            _, _, lo, hi = _grid_bounds(self, l, u, k)
            return k, lo, k, hi
        f, df = _s_fn(self.kind)
        return _s_relax(f, df, l, u)


_TINY = 1e-6

# sound=True: float32 error multiples (see Activation.float_error) and bounds on |f''|.
ULPS = {
    "relu": 1.0,
    "min": 1.0,
    "tanh": 16.0,
    "logistic": 16.0,
    "erf": 32.0,
    "erfc": 256.0,
    "softplus": 16.0,
    "gelu": 16.0,
}
CURVATURE = {"tanh": 0.78, "logistic": 0.1, "erf": 0.97, "erfc": 0.97, "softplus": 0.25, "gelu": 0.8}


def next_down(x):
    """The next float below ``x`` (``nextafter``), with the gradient of the identity (alpha-CROWN)."""
    x = jnp.asarray(x)
    c = lax.stop_gradient(x)
    return x + (jnp.nextafter(c, jnp.asarray(-jnp.inf, c.dtype)) - c)


def next_up(x):
    """The next float above ``x``, with the gradient of the identity."""
    x = jnp.asarray(x)
    c = lax.stop_gradient(x)
    return x + (jnp.nextafter(c, jnp.asarray(jnp.inf, c.dtype)) - c)


def unit_roundoff(dtype) -> float:
    """``u = eps / 2``: 2^-24 for float32."""
    return float(jnp.finfo(dtype).eps) / 2.0


def _chord(f, l, u):
    w = u - l
    safe = jnp.where(w > _TINY, w, 1.0)
    return jnp.where(w > _TINY, (f(u) - f(l)) / safe, 0.0)


def _convex_relax(f, df, l, u):
    """A convex increasing ``f``: tangent at the midpoint below, chord above."""
    k = _chord(f, l, u)
    m = 0.5 * (l + u)
    al = df(m)
    bl = f(m) - al * m
    flat = (u - l) <= _TINY
    return (
        jnp.where(flat, 0.0, al),
        jnp.where(flat, f(l), bl),
        k,
        jnp.where(flat, f(u), f(l) - k * l),
    )


def _s_relax(f, df, l, u, iters: int = 30):
    """An increasing ``f``, convex below 0 and concave above (tanh, logistic, erf)."""
    k = _chord(f, l, u)
    m = 0.5 * (l + u)
    fl, fu = f(l), f(u)
    chord_b = fl - k * l
    tan_s = df(m)
    tan_b = f(m) - tan_s * m

    # Upper, mixed case: the tangent at d >= 0 through (l, f(l)); keep the lower end of the bracket.
    def up_step(_, bracket):
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        phi = df(mid) * (mid - l) - (f(mid) - fl)
        return jnp.where(phi >= 0, mid, lo), jnp.where(phi >= 0, hi, mid)

    d_up, _ = lax.fori_loop(0, iters, up_step, (jnp.zeros_like(u), jnp.maximum(u, 0.0)))
    up_s = df(d_up)
    up_b = fl - up_s * l

    # Lower, mixed case: the tangent at d <= 0 through (u, f(u)); keep the upper end.
    def lo_step(_, bracket):
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        phi = df(mid) * (u - mid) - (fu - f(mid))
        return jnp.where(phi >= 0, lo, mid), jnp.where(phi >= 0, mid, hi)

    _, d_lo = lax.fori_loop(0, iters, lo_step, (jnp.minimum(l, 0.0), jnp.zeros_like(l)))
    lo_s = df(d_lo)
    lo_b = fu - lo_s * u

    mixed = (l < 0) & (u > 0)
    up_chord = (u <= 0) | (mixed & (df(u) >= k))
    lo_chord = (l >= 0) | (mixed & (df(l) >= k))
    au = jnp.where(up_chord, k, jnp.where(l >= 0, tan_s, up_s))
    bu = jnp.where(up_chord, chord_b, jnp.where(l >= 0, tan_b, up_b))
    al = jnp.where(lo_chord, k, jnp.where(u <= 0, tan_s, lo_s))
    bl = jnp.where(lo_chord, chord_b, jnp.where(u <= 0, tan_b, lo_b))
    flat = (u - l) <= _TINY
    return (
        jnp.where(flat, 0.0, al),
        jnp.where(flat, fl, bl),
        jnp.where(flat, 0.0, au),
        jnp.where(flat, fu, bu),
    )


_GELU_F2 = 0.8  # max |GELU''| = 2 phi(0) ~ 0.798; the tanh approximation's is below 0.8 too


def _grid_bounds(f, l, u, k, n: int = 64):
    """Bounds of ``f`` and of ``f(x) - k x`` on ``[l, u]`` from ``n`` points, widened by ``M h^2 / 8``."""
    t = jnp.linspace(0.0, 1.0, n, dtype=l.dtype).reshape((1,) * l.ndim + (n,))
    xs = l[..., None] + (u - l)[..., None] * t
    fx = f(xs)
    g = fx - jnp.broadcast_to(k, l.shape)[..., None] * xs
    h = (u - l) / (n - 1)
    pad = _GELU_F2 * h * h / 8.0 + 1e-7
    return fx.min(-1) - pad, fx.max(-1) + pad, g.min(-1) - pad, g.max(-1) + pad


def fuse_gelu(chain_a, chain_b) -> Activation | None:
    """Whether ``fa(s) * fb(s)`` is GELU (exact or tanh form), probed on a grid; None when not."""
    fa, fb = chain_a, chain_b
    try:
        with jax.ensure_compile_time_eval():
            xs = jnp.linspace(-6.0, 6.0, 121, dtype=jnp.float32)
            h = np.asarray(fa(xs) * fb(xs))
            for approximate in (False, True):
                if np.allclose(h, np.asarray(jax.nn.gelu(xs, approximate=approximate)), atol=1e-5, rtol=1e-5):
                    return Activation("gelu", approximate=approximate)
    except Exception:
        return None
    return None
