"""``verify.bounds`` and ``verify.linear_bounds``: jitted, vmapped over the examples of a box."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.core
import jax.numpy as jnp
import numpy as np

from tlean._core import ShapeError
from tlean._model import Model
from tlean.verify import _bounds
from tlean.verify._graph import build

METHODS = ("ibp", "crown", "alpha-crown")


class _Name:
    """Prints as ``verify.<name>`` in a ShapeError."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return f"verify.{self.name}"


class LinearBounds(NamedTuple):
    """CROWN's linear bounds on the input: ``lA . x + lbias <= (spec @) f(x) <= uA . x + ubias``.

    Attributes:
      lA, uA: ``[n, K, *input]`` coefficients (K: output size, or spec rows).
      lbias, ubias: ``[n, K]`` constants.
    """

    lA: jax.Array
    lbias: jax.Array
    uA: jax.Array
    ubias: jax.Array


def check_model(model: Any, fn: str) -> Model:
    if not isinstance(model, Model):
        raise TypeError(f"verify.{fn}: expected a tlean Model (layer, params, state), got {type(model).__name__}")
    return model


def check_box(lower, upper, fn: str):
    """Arrays of one float dtype and shape ``[n, *input]``; ``lower <= upper`` where concrete."""
    lower, upper = jnp.asarray(lower), jnp.asarray(upper)
    if lower.shape != upper.shape:
        raise ShapeError(_Name(fn), f"upper of lower's shape {tuple(lower.shape)}", tuple(upper.shape))
    if lower.ndim < 2:
        raise ShapeError(_Name(fn), "a box [n, *input] (a batch of n boxes)", tuple(lower.shape))
    if not jnp.issubdtype(lower.dtype, jnp.floating):
        lower = lower.astype(jnp.float32)
    upper = upper.astype(lower.dtype)
    if not isinstance(lower, jax.core.Tracer) and not isinstance(upper, jax.core.Tracer):
        bad = np.argwhere(np.asarray(lower) > np.asarray(upper))
        if bad.size:
            first = tuple(int(i) for i in bad[0])
            raise ValueError(
                f"verify.{fn}: lower > upper at {len(bad)} entries, first at index {first}: "
                f"{float(lower[first])} > {float(upper[first])}"
            )
    return lower, upper


def check_method(method: str, fn: str) -> str:
    if method not in METHODS:
        raise ValueError(f"verify.{fn}: method must be one of {METHODS}, got {method!r}")
    return method


def check_spec(spec, n: int, fn: str):
    if spec is None:
        return None
    spec = jnp.asarray(spec)
    if spec.ndim != 3 or spec.shape[0] != n:
        raise ShapeError(_Name(fn), f"spec [n={n}, k, out]", tuple(spec.shape))
    return spec


def example_bounds(model: Model, lo, hi, spec, lr, *, method: str, steps: int, sound: bool = False):
    """Bounds for one example ``lo, hi [*input]``: ``(lower, upper)`` of shape ``[*output]`` or ``[k]``."""
    lo, hi = lo[None], hi[None]
    graph = build(model.layer, model.params, model.state, lo.shape, lo.dtype, sound=sound)
    out_shape = graph.shapes[graph.output]
    if not out_shape or out_shape[0] != 1:
        raise ShapeError(_Name("bounds"), "the model to keep the batch axis of its input", out_shape)
    if method == "ibp" and spec is None:
        lower, upper = _bounds.ibp(graph, lo, hi, sound)[graph.output]
        return lower[0], upper[0]
    if spec is not None and (len(out_shape) != 2 or spec.shape[-1] != out_shape[-1]):
        raise ShapeError(_Name("bounds"), f"spec [n, k, out] for outputs of shape {out_shape[1:]}", spec.shape)
    A0 = _bounds.output_spec(graph, spec, lo.dtype)
    if method == "ibp":
        intervals = _bounds.ibp(graph, lo, hi, sound)
        linear = _bounds.backward(graph, graph.output, A0, intervals, relax=False, sound=sound)
        lower, upper = _bounds.concretize(*linear, lo, hi, sound)
    elif method == "crown":
        intervals = _bounds.crown_intervals(graph, lo, hi, sound=sound)
        linear = _bounds.backward(graph, graph.output, A0, intervals, sound=sound)
        lower, upper = _bounds.concretize(*linear, lo, hi, sound)
    else:
        lower, upper = _bounds.optimise_alpha(graph, A0, lo, hi, steps=steps, lr=lr, sound=sound)
    if spec is None:
        return lower.reshape(out_shape[1:]), upper.reshape(out_shape[1:])
    return lower, upper


@functools.partial(jax.jit, static_argnames=("method", "steps", "sound"))
def _bounds_jit(model, lower, upper, spec, lr, *, method, steps, sound=False):
    one = functools.partial(example_bounds, method=method, steps=steps, sound=sound)
    return jax.vmap(one, in_axes=(None, 0, 0, None if spec is None else 0, None))(model, lower, upper, spec, lr)


def bounds(
    model: Model,
    lower: jax.Array,
    upper: jax.Array,
    *,
    method: str = "crown",
    spec: jax.Array | None = None,
    steps: int = 20,
    lr: float = 0.5,
    sound: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """Lower and upper bounds of ``model(x)`` (or ``spec @ model(x)``) over the box ``[lower, upper]``.

    The model is ``model.layer.apply(params, state, x, train=False)``: BatchNorm uses its
    running statistics, Dropout is the identity. Bounds are computed on its jaxpr (see
    :mod:`tlean.verify`), per example, jitted (one compile per model and batch shape) and
    vmapped over the ``n`` boxes.

    Args:
      model: a :class:`tlean.Model` whose layer maps ``[n, *input]`` to ``[n, *output]``.
      lower, upper: ``[n, *input]``, ``lower <= upper``.
      method: ``"ibp"`` (interval bound propagation), ``"crown"`` (backward linear relaxation,
        intermediate bounds by CROWN as auto_LiRPA's default) or ``"alpha-crown"`` (CROWN with
        the lower ReLU slopes optimised, never looser than CROWN).
      spec: ``[n, k, out]``: bound ``spec @ model(x)`` instead (e.g. margins ``e_y - e_j``);
        with IBP it is folded into the affine layers after the last activation, as auto_LiRPA.
      steps, lr: alpha-CROWN's Adam steps and learning rate (auto_LiRPA's ``iteration`` and
        ``lr_alpha``, decayed by 0.98 a step).
      sound: bound the float32 computation itself (off by default, as in auto_LiRPA): every
        rounding of the model's float32 forward and of the bound's own arithmetic is
        accounted for (dots and convolutions at ``Precision.HIGHEST`` widened by
        ``gamma_n |W| |x|``, activations by their measured float32 error, results rounded
        outward; see :mod:`tlean.verify._bounds`), so ``lb <= model(x) <= ub`` holds for
        the float32 outputs themselves. Assumes float32 matmuls at full precision (not TF32).

    Returns:
      ``(lb, ub)``, each ``[n, *output]`` (``[n, k]`` with a spec): ``lb <= f(x) <= ub`` for every
      ``x`` in the box: for the real-number function up to float rounding, or for the float32
      computation exactly with ``sound=True``.

    Raises:
      ShapeError: ``lower`` and ``upper`` differ in shape, or a spec of the wrong shape (a box
        the model refuses raises the model's own ShapeError).
      ValueError: ``lower > upper`` somewhere (checked when the box is concrete), or an
        unknown method.
      TypeError: a primitive without a bound rule, named with its layer path.

    PyTorch analogue: auto_LiRPA's ``BoundedModule(model, x).compute_bounds(x=(BoundedTensor(x,
    PerturbationLpNorm(x_L=lower, x_U=upper)),), method=..., C=spec)``.

    >>> import jax.numpy as jnp
    >>> from tlean import nn, verify
    >>> model = nn.run(0, nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)))
    >>> lb, ub = verify.bounds(model, -jnp.ones((4, 2)), jnp.ones((4, 2)), method="ibp")
    >>> lb.shape, bool((lb <= ub).all())
    ((4, 1), True)
    """
    model = check_model(model, "bounds")
    method = check_method(method, "bounds")
    lower, upper = check_box(lower, upper, "bounds")
    spec = check_spec(spec, lower.shape[0], "bounds")
    if spec is not None:
        spec = spec.astype(lower.dtype)
    rate = jnp.asarray(lr, lower.dtype)
    return _bounds_jit(model, lower, upper, spec, rate, method=method, steps=int(steps), sound=bool(sound))


def _linear_one(model: Model, lo, hi, spec, sound=False):
    lo, hi = lo[None], hi[None]
    graph = build(model.layer, model.params, model.state, lo.shape, lo.dtype, sound=sound)
    intervals = _bounds.crown_intervals(graph, lo, hi, sound=sound)
    A0 = _bounds.output_spec(graph, spec, lo.dtype)
    lA, lbias, uA, ubias = _bounds.backward(graph, graph.output, A0, intervals, sound=sound)
    return lA[:, 0], lbias, uA[:, 0], ubias


@functools.partial(jax.jit, static_argnames=("sound",))
def _linear_jit(model, lower, upper, spec, sound=False):
    one = functools.partial(_linear_one, sound=sound)
    return jax.vmap(one, in_axes=(None, 0, 0, None if spec is None else 0))(model, lower, upper, spec)


def linear_bounds(
    model: Model, lower: jax.Array, upper: jax.Array, *, spec: jax.Array | None = None, sound: bool = False
) -> LinearBounds:
    """CROWN's linear bounds of ``model(x)`` (or ``spec @ model(x)``) as functions of ``x`` in the box.

    Args:
      model: as :func:`bounds`.
      lower, upper: ``[n, *input]``.
      spec: ``[n, k, out]`` or None (the identity on the flattened output).
      sound: as :func:`bounds`: the inequalities hold for the float32 ``f`` exactly (in real
        arithmetic on the returned float coefficients).

    Returns:
      :class:`LinearBounds` with ``lA . x + lbias <= spec @ f(x) <= uA . x + ubias`` on the box:
      coefficients ``[n, K, *input]``, biases ``[n, K]``.

    >>> import jax.numpy as jnp
    >>> from tlean import nn, verify
    >>> model = nn.run(0, nn.Sequential(nn.Linear(2, 1)))
    >>> lin = verify.linear_bounds(model, -jnp.ones((1, 2)), jnp.ones((1, 2)))
    >>> bool(jnp.allclose(lin.lA[0, 0], model.params[0]["weight"][0]))
    True
    """
    model = check_model(model, "linear_bounds")
    lower, upper = check_box(lower, upper, "linear_bounds")
    spec = check_spec(spec, lower.shape[0], "linear_bounds")
    return LinearBounds(*_linear_jit(model, lower, upper, spec, sound=bool(sound)))
