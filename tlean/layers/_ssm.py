"""A Mamba-style gated diagonal state-space layer, with a parallel (associative) scan."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from tlean._core import Layer, ShapeError
from tlean.layers import _init, _util

_MODES = ("parallel", "sequential")
DT_MIN, DT_MAX, DT_FLOOR = 1e-3, 1e-1, 1e-4  # Mamba's dt_min, dt_max, dt_init_floor


def _combine(first: tuple[jax.Array, jax.Array], second: tuple[jax.Array, jax.Array]):
    """Compose two affine maps ``h -> a h + b``: first ``(a1, b1)``, then ``(a2, b2)``."""
    a1, b1 = first
    a2, b2 = second
    return a1 * a2, a2 * b1 + b2


def linear_recurrence(a: jax.Array, b: jax.Array, h0: jax.Array, mode: str = "parallel") -> jax.Array:
    """All ``h_t = a_t * h_{t-1} + b_t`` for ``t = 0 .. seq-1`` (elementwise), from ``h_{-1} = h0``.

    ``a`` and ``b`` are ``[seq, ...]``, ``h0`` is ``[...]``; returns ``h [seq, ...]``.
    ``mode="parallel"`` uses ``jax.lax.associative_scan`` with the operator
    ``(a1, b1) o (a2, b2) = (a1 * a2, a2 * b1 + b2)`` (O(log seq) depth), and its
    gradient is the reverse recurrence ``delta_t = g_t + a_{t+1} delta_{t+1}``, one more
    associative scan (a ``jax.custom_vjp``: reverse mode only, so ``jax.jvp`` and
    ``jax.jacfwd`` need ``"sequential"``). ``"sequential"`` is the plain ``jax.lax.scan``
    reference, differentiated by JAX.
    """
    if mode == "sequential":

        def step(h, ab):
            h = ab[0] * h + ab[1]
            return h, h

        return jax.lax.scan(step, h0, (a, b))[1]
    if a.shape[0] == 0:
        return b
    return _parallel(a, b, h0)


def _scan(a: jax.Array, b: jax.Array, h0: jax.Array) -> jax.Array:
    b = b.at[0].add(a[0] * h0)  # fold h0 into the first step: h_0 = a_0 h0 + b_0
    return jax.lax.associative_scan(_combine, (a, b), axis=0)[1]


@jax.custom_vjp
def _parallel(a: jax.Array, b: jax.Array, h0: jax.Array) -> jax.Array:
    return _scan(a, b, h0)


def _parallel_fwd(a, b, h0):
    h = _scan(a, b, h0)
    return h, (a, h, h0)


def _parallel_bwd(residuals, g):
    """With ``delta_t = dL/dh_t`` in full: ``dL/db_t = delta_t``, ``dL/da_t = delta_t h_{t-1}``, ``dL/dh0 = a_0 delta_0``."""
    a, h, h0 = residuals
    a_next = jnp.concatenate([a[1:], jnp.zeros_like(a[:1])])
    delta = jax.lax.associative_scan(_combine, (a_next, g), axis=0, reverse=True)[1]
    h_prev = jnp.concatenate([h0[None], h[:-1]])
    return delta * h_prev, delta, a[0] * delta[0]


_parallel.defvjp(_parallel_fwd, _parallel_bwd)


def _inverse_softplus(y: jax.Array) -> jax.Array:
    """``x`` with ``softplus(x) = y``: ``y + log(-expm1(-y))``, as Mamba writes it."""
    return y + jnp.log(-jnp.expm1(-y))


@jax.jit
def _dt_bias(u: jax.Array) -> jax.Array:
    """Mamba's dt bias from ``u ~ U[0, 1)``: ``dt = exp(u (log dt_max - log dt_min) + log dt_min)``
    floored at ``DT_FLOOR``, returned as ``softplus^{-1}(dt)``. One jitted computation, so
    eager and jitted ``init`` agree bit for bit."""
    dt = jnp.exp(u * (math.log(DT_MAX) - math.log(DT_MIN)) + math.log(DT_MIN))
    return _inverse_softplus(jnp.maximum(dt, DT_FLOOR))


@dataclass(frozen=True)
class Mamba(Layer):
    """A Mamba-style gated diagonal state-space layer over time-major sequences.

    With ``x_t`` the input at time ``t`` and all vectors of size ``hidden_size``::

        u_t  = W_in x_t
        dt_t = softplus(W_dt x_t + b_dt)
        A    = -exp(A_log)
        h_t  = exp(dt_t * A) * h_{t-1} + dt_t * u_t        (elementwise, h_{-1} = 0)
        y_t  = (h_t + D * u_t) * silu(W_g x_t)

    The step size ``dt_t`` depends on the input (Mamba's selectivity), the state is
    diagonal (one decay per channel, ``0 < exp(dt_t A) < 1``) and ``silu(W_g x_t)``
    gates the output. This is the selective-scan core of Mamba with a state of one per
    channel (``d_state=1``); Mamba's block around it (the depthwise causal conv, the
    ``d_state``-wide state with input-dependent ``B``, ``C``, the low-rank ``dt``
    projection and the output projection) is not included. No PyTorch analogue.

    ``mode="parallel"`` (default) computes the recurrence with
    ``jax.lax.associative_scan`` over the pairs ``(a_t, b_t) = (exp(dt_t A), dt_t u_t)``
    with ``(a1, b1) o (a2, b2) = (a1 a2, a2 b1 + b2)``, depth O(log seq); its gradient
    is a custom VJP, the reverse recurrence as one more associative scan (it halves the
    compile time of autodiff through the scan), so forward-mode differentiation
    (``jax.jvp``, ``jax.jacfwd``, ``jax.hessian``) needs ``mode="sequential"``, which runs
    the same recurrence with ``jax.lax.scan`` (the reference; see
    :func:`linear_recurrence`). The three projections are one matmul; the recurrence
    runs in at least float32 and ``y`` is cast to the compute dtype.

    Args:
      input_size: features of ``x``.
      hidden_size: channels of ``u``, ``h`` and ``y``.
      batch_first: batched input as ``(batch, seq, input)`` instead of ``(seq, batch, input)``.
      mode: ``"parallel"`` or ``"sequential"``.
      dtype, param_dtype, precision: as :class:`~tlean.layers.Linear`.

    Params (PyTorch-style names, ``torch_name`` prints ``in_proj.weight``)::

        in_proj.weight   [hidden, input]  W_in, U(-1/sqrt(input), 1/sqrt(input)) as torch.nn.Linear
        dt_proj.weight   [hidden, input]  W_dt, same init
        dt_proj.bias     [hidden]         b_dt = softplus^{-1}(dt), dt log-uniform in [1e-3, 1e-1]
                                          (floored at 1e-4), as Mamba initialises it
        gate_proj.weight [hidden, input]  W_g, same init as in_proj
        A_log            [hidden]         log(1, 2, ..., hidden): A = -(1 .. hidden), Mamba's S4D-real
                                          init laid along the channels
        D                [hidden]         ones, as Mamba

    Shapes:
      ``(seq, input) -> (seq, hidden)``; ``(seq, batch, input) -> (seq, batch, hidden)``
      (``(batch, seq, ...)`` both ways when ``batch_first``). ``apply`` also takes
      ``initial_state`` (``h_{-1}``, shape ``([batch,] hidden)``) and ``return_final``
      (``y`` becomes ``(outputs, h_last)``, ``h_last`` of that shape), so a long
      sequence can be run in chunks.

    >>> import jax, jax.numpy as jnp
    >>> from tlean.layers import Mamba
    >>> ssm = Mamba(3, 8)
    >>> params, state = ssm.init(jax.random.key(0))
    >>> ssm.apply(params, state, jnp.ones((16, 3)))[0].shape
    (16, 8)
    """

    input_size: int
    hidden_size: int
    batch_first: bool = False
    mode: str = "parallel"
    dtype: Any = None
    param_dtype: Any = jnp.float32
    precision: Any = None

    def __post_init__(self):
        _util.positive("Mamba", input_size=self.input_size, hidden_size=self.hidden_size)
        if not isinstance(self.batch_first, bool):
            raise ValueError(f"Mamba: batch_first must be a bool, got {self.batch_first!r}")
        if self.mode not in _MODES:
            raise ValueError(f"Mamba: mode must be 'parallel' or 'sequential', got {self.mode!r}")
        _util.numeric_fields(self)

    def init(self, key: jax.Array) -> tuple[dict, dict]:
        k_in, k_dt, k_dt_bias, k_gate = jax.random.split(key, 4)
        shape, hidden, pd = (self.hidden_size, self.input_size), self.hidden_size, self.param_dtype
        bound = _init.fan_in_bound(self.input_size)
        params = {
            "in_proj": {"weight": _init.uniform(k_in, shape, bound, pd)},
            "dt_proj": {
                "weight": _init.uniform(k_dt, shape, bound, pd),
                "bias": _dt_bias(jax.random.uniform(k_dt_bias, (hidden,), jnp.float32)).astype(pd),
            },
            "gate_proj": {"weight": _init.uniform(k_gate, shape, bound, pd)},
            "A_log": jnp.log(jnp.arange(1, hidden + 1, dtype=jnp.float32)).astype(pd),
            "D": jnp.ones((hidden,), pd),
        }
        return params, {}

    def apply(
        self,
        params: dict,
        state: dict,
        x: Float[Array, "seq *batch input_size"],
        *,
        key: jax.Array | None = None,
        train: bool = False,
        initial_state: jax.Array | None = None,
        return_final: bool = False,
    ):
        """``(y, state)``: ``y [seq, (batch,) hidden]``, or ``(y, h_last)`` when ``return_final``."""
        _util.check_float(self, x)
        order = "(batch, seq, input)" if self.batch_first else "(seq, batch, input)"
        if jnp.ndim(x) not in (2, 3) or jnp.shape(x)[-1] != self.input_size:
            raise ShapeError(
                self, f"input (seq, {self.input_size}) or {order} with input={self.input_size}", jnp.shape(x)
            )
        batched = x.ndim == 3
        if batched and self.batch_first:
            x = jnp.swapaxes(x, 0, 1)
        dtype = _util.compute_dtype(self.dtype, x, params["in_proj"]["weight"])
        scan_dtype = jnp.promote_types(dtype, jnp.float32)
        shape = x.shape[1:-1] + (self.hidden_size,)
        if initial_state is None:
            h0 = jnp.zeros(shape, scan_dtype)
        else:
            if jnp.shape(initial_state) != shape:
                raise ShapeError(self, f"initial_state h ([batch,] hidden) = {shape}", jnp.shape(initial_state))
            _util.check_float(self, initial_state)
            h0 = jnp.asarray(initial_state).astype(scan_dtype)

        weights = jnp.concatenate(
            [params["in_proj"]["weight"], params["dt_proj"]["weight"], params["gate_proj"]["weight"]]
        ).astype(dtype)
        proj = jnp.matmul(x.astype(dtype), weights.T, precision=self.precision)  # one matmul for u, dt, gate
        u, dt, gate = jnp.split(proj.astype(scan_dtype), 3, axis=-1)
        as_channels = lambda v: _util.trailing(v.astype(scan_dtype), u.ndim)
        dt = jax.nn.softplus(dt + as_channels(params["dt_proj"]["bias"]))
        a = jnp.exp(dt * -jnp.exp(as_channels(params["A_log"])))
        h = linear_recurrence(a, dt * u, h0, self.mode)
        y = ((h + as_channels(params["D"]) * u) * jax.nn.silu(gate)).astype(dtype)
        if batched and self.batch_first:
            y = jnp.swapaxes(y, 0, 1)
        if not return_final:
            return y, state
        final = h[-1] if h.shape[0] > 0 else h0
        return (y, final.astype(dtype)), state
