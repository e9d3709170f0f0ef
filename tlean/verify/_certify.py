"""Certified robustness: margins ``e_y - e_j`` over an L-infinity ball, and certified-training losses."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.core
import jax.numpy as jnp
import numpy as np
import optax

from tlean._model import Model
from tlean.verify import _api, _bounds
from tlean.verify._graph import build


class Certificate(NamedTuple):
    """What :func:`certify` proves.

    Attributes:
      certified: ``[n]`` bool: the label ``y`` stays the top-1 class over the whole ball.
      margin: ``[n, classes - 1]`` lower bounds of ``f_y(x') - f_j(x')`` for every ``j != y``.
    """

    certified: jax.Array
    margin: jax.Array


def margin_spec(y: jax.Array, classes: int, dtype=jnp.float32) -> jax.Array:
    """``[n, classes - 1, classes]``: row ``i`` is ``e_y - e_j`` for the ``i``-th class ``j != y``.

    >>> margin_spec(jnp.array([1]), 3).tolist()
    [[[-1.0, 1.0, 0.0], [0.0, 1.0, -1.0]]]
    """
    y = jnp.asarray(y)
    rows = jnp.arange(classes - 1)
    others = rows[None, :] + (rows[None, :] >= y[:, None])  # [n, classes - 1]
    return (jax.nn.one_hot(y, classes, dtype=dtype)[:, None, :] - jax.nn.one_hot(others, classes, dtype=dtype)).astype(
        dtype
    )


def _ball(x, eps, clip, fn):
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    eps = jnp.asarray(eps, x.dtype)
    if not isinstance(eps, jax.core.Tracer) and bool(np.any(np.asarray(eps) < 0)):
        raise ValueError(f"verify.{fn}: eps must be >= 0, got {np.asarray(eps)}")
    if eps.ndim:
        eps = eps.reshape(eps.shape + (1,) * (x.ndim - eps.ndim))
    lower, upper = x - eps, x + eps
    if clip is not None:
        lo, hi = clip
        lower, upper = jnp.clip(lower, lo, hi), jnp.clip(upper, lo, hi)
    return x, lower, upper


def _classes(model: Model, x) -> int:
    out = jax.eval_shape(lambda m, v: m(v), model, x[:1])
    if out.ndim != 2:
        raise ValueError(f"verify: expected logits [n, classes] from the model, got shape {out.shape}")
    return out.shape[1]


def certify(
    model: Model,
    x: jax.Array,
    y: jax.Array,
    eps: float | jax.Array,
    *,
    method: str = "crown",
    norm: str = "inf",
    clip: tuple[float, float] | None = None,
    steps: int = 20,
    lr: float = 0.5,
    sound: bool = False,
) -> Certificate:
    """Certify top-1 robustness of a classifier in the L-infinity ball of radius ``eps`` around ``x``.

    Bounds the margins ``f_y - f_j`` (the spec ``e_y - e_j``) with :func:`tlean.verify.bounds`;
    an example is certified when every margin's lower bound is positive.

    Args:
      model: a classifier ``[n, *input] -> [n, classes]``.
      x: ``[n, *input]`` centres; y: ``[n]`` integer labels.
      eps: the radius, a scalar or ``[n]`` (per example); ``>= 0``.
      method: ``"ibp"``, ``"crown"`` or ``"alpha-crown"``.
      norm: ``"inf"`` (the only norm supported).
      clip: ``(lo, hi)``: intersect the ball with the data range, e.g. ``(0, 1)`` for images.
      steps, lr: alpha-CROWN's optimisation (see :func:`tlean.verify.bounds`).
      sound: certify the float32 computation itself (see :func:`tlean.verify.bounds`), so a
        certificate survives floating-point error; off by default.

    Returns:
      a :class:`Certificate`.

    Raises:
      ValueError: ``eps < 0``, a norm other than ``"inf"``, or a model that does not return logits.

    PyTorch analogue: auto_LiRPA's ``compute_bounds(C=margin_spec)`` and ``(lb > 0).all(-1)``.

    >>> import jax, jax.numpy as jnp
    >>> from tlean import nn, verify
    >>> model = nn.run(0, nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)))
    >>> x = jax.random.normal(jax.random.key(0), (5, 4))
    >>> cert = verify.certify(model, x, model(x).argmax(-1), 0.0)
    >>> bool(cert.certified.all()), cert.margin.shape
    (True, (5, 2))
    """
    if norm not in ("inf", np.inf):
        raise ValueError(f"verify.certify: only norm='inf' is supported, got {norm!r}")
    model = _api.check_model(model, "certify")
    x, lower, upper = _ball(x, eps, clip, "certify")
    spec = margin_spec(y, _classes(model, x), x.dtype)
    margin, _ = _api.bounds(model, lower, upper, method=method, spec=spec, steps=steps, lr=lr, sound=sound)
    return Certificate(jnp.all(margin > 0, axis=-1), margin)


def _robust_ce(margin, y):
    """Cross-entropy on the worst-case logits: 0 for class ``y``, ``-margin_j`` for the others."""
    worst = jnp.concatenate([jnp.zeros_like(margin[:, :1]), -margin], axis=1)
    return optax.softmax_cross_entropy_with_integer_labels(worst, jnp.zeros_like(y)).mean()


def _margins(model: Model, x, y, eps, *, train, key, fn):
    """``((IBP margins, CROWN-IBP margins), new_state)`` on the batch ``x``."""
    x, lower, upper = _ball(x, eps, None, fn)
    y = jnp.asarray(y)
    _, new = model.forward(x, key=key, train=train)
    spec = margin_spec(y, _classes(model, x), x.dtype)
    if train and (key is not None or jax.tree_util.tree_leaves(model.state)):
        # BatchNorm or Dropout: train mode differs from eval mode; one graph for the batch.
        return _train_margins(model, x, lower, upper, spec, key), new.state
    return _eval_margins(model, lower, upper, spec), new.state


def _crown_ibp(graph, A0, lo, hi):
    """IBP and CROWN-IBP lower bounds of ``A0 . output``: IBP intervals, CROWN's last pass."""
    intervals = _bounds.ibp(graph, lo, hi)
    ibp_lower, _ = _bounds.concretize(*_bounds.backward(graph, graph.output, A0, intervals, relax=False), lo, hi)
    crown_lower, _ = _bounds.concretize(*_bounds.backward(graph, graph.output, A0, intervals), lo, hi)
    return ibp_lower, crown_lower


def _eval_one(model, lo, hi, spec):
    lo, hi = lo[None], hi[None]
    graph = build(model.layer, model.params, model.state, lo.shape, lo.dtype)
    return _crown_ibp(graph, _bounds.output_spec(graph, spec, lo.dtype), lo, hi)


@jax.jit
def _eval_margins(model, lower, upper, spec):
    """``(IBP margins, CROWN-IBP margins)``, each ``[n, classes - 1]``, in eval mode."""
    return jax.vmap(_eval_one, in_axes=(None, 0, 0, 0))(model, lower, upper, spec)


@jax.jit
def _train_margins(model, x, lower, upper, spec, key):
    """As :func:`_eval_margins` in train mode: one graph for the batch, statistics of ``x`` constant."""
    graph = build(model.layer, model.params, model.state, x.shape, x.dtype, clean=x, key=key)
    n, k, classes = spec.shape
    out_shape = graph.shapes[graph.output]
    if out_shape != (n, classes):
        raise ValueError(f"verify: expected logits {(n, classes)} from the model, got shape {out_shape}")
    # Row (i, r) bounds spec[i, r] . output[i]: block-diagonal coefficients [n * k, n, classes].
    A0 = (jnp.eye(n, dtype=x.dtype)[:, None, :, None] * spec[:, :, None, :]).reshape(n * k, n, classes)
    ibp_lower, crown_lower = _crown_ibp(graph, A0, lower, upper)
    return ibp_lower.reshape(n, k), crown_lower.reshape(n, k)


def ibp_loss(model: Model, x, y, eps, *, train: bool = True, key: jax.Array | None = None):
    """IBP certified-training loss: cross-entropy on the worst-case logits from IBP margins.

    Args:
      model: a classifier ``[n, *input] -> [n, classes]``.
      x, y: a batch and its labels; eps: the L-infinity radius (traced: a schedule never retraces).
      train: run the clean forward in training mode (Dropout, BatchNorm's state update).
      key: Dropout's key.

    Returns:
      ``(loss, new_state)``: mix with the clean loss as ``kappa * clean + (1 - kappa) * loss``.

    In train mode BatchNorm normalises with the clean batch's statistics, held constant in the
    bounds (auto_LiRPA's behaviour), and the returned state is the clean forward's. That
    bounds the whole batch as one input (coefficients ``n`` times larger); a model without
    state and without a key (no BatchNorm, no Dropout) is bounded one example at a time.

    >>> import jax, jax.numpy as jnp
    >>> from tlean import nn, verify
    >>> model = nn.run(0, nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)))
    >>> loss, _ = verify.ibp_loss(model, jnp.ones((2, 4)), jnp.array([0, 1]), 0.1)
    >>> loss.shape
    ()
    """
    (ibp_margin, _), state = _margins(model, x, y, eps, train=train, key=key, fn="ibp_loss")
    return _robust_ce(ibp_margin, jnp.asarray(y)), state


def crown_ibp_loss(model: Model, x, y, eps, *, beta, train: bool = True, key: jax.Array | None = None):
    """CROWN-IBP loss (Zhang et al. 2020): margins ``beta * CROWN-IBP + (1 - beta) * IBP``.

    CROWN-IBP bounds every intermediate layer by IBP and the margins by CROWN's backward pass;
    ``beta`` goes from 1 to 0 over training (the usual schedule), traced so it never retraces.
    Arguments and return as :func:`ibp_loss`.

    >>> import jax, jax.numpy as jnp
    >>> from tlean import nn, verify
    >>> model = nn.run(0, nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)))
    >>> loss, _ = verify.crown_ibp_loss(model, jnp.ones((2, 4)), jnp.array([0, 1]), 0.1, beta=1.0)
    >>> bool(loss > 0)
    True
    """
    (ibp_margin, crown_margin), state = _margins(model, x, y, eps, train=train, key=key, fn="crown_ibp_loss")
    beta = jnp.asarray(beta, ibp_margin.dtype)
    return _robust_ce(beta * crown_margin + (1 - beta) * ibp_margin, jnp.asarray(y)), state
