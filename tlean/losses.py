"""Losses with ``torch.nn``'s names, arguments and numbers, on optax where optax has the maths.

Each loss is built like its ``torch.nn`` module, with the same constructor arguments in the
same positional order, and called like it: ``loss(input, target)`` (``loss(input1, input2,
target)`` for the pairwise losses, ``loss(log_probs, targets, input_lengths,
target_lengths)`` for CTC). ``reduction`` is ``"none"`` (one value per element or sample),
``"mean"`` or ``"sum"`` (``"batchmean"`` too for :class:`KLDivLoss`), as in torch.

Losses are pytrees: array options (``weight``, ``pos_weight``) are children, scalar options
(``reduction``, ``ignore_index``, ``label_smoothing``, ``margin``...) are static, so a jitted
function taking the loss as an argument compiles once for every value of its weights.

What differs from torch:

- an all-ignored batch (every target is ``ignore_index``, or every weight is 0) gives 0 under
  ``reduction="mean"``, with zero gradients, where torch gives NaN (pytorch#75181);
- losses compute in float32 at least: bfloat16/float16 inputs are upcast before the loss and
  its reduction, and the result is float32;
- inputs and targets must have the same shape where torch broadcasts them with a warning;
- a class index out of range is a ``ValueError`` when the target is concrete (eager); under
  ``jax.jit`` it cannot be checked and the loss of that element is NaN. Likewise BCELoss
  inputs outside ``[0, 1]`` give NaN rather than torch's error;
- the deprecated ``size_average``/``reduce`` arguments are accepted, mapped to ``reduction``
  as torch maps them, with a ``DeprecationWarning``.

Every error (a wrong shape or dtype, an unknown ``reduction``, a weight of the wrong length)
names the loss, what it expected and what it got, and is raised at trace time.

>>> import jax.numpy as jnp
>>> from tlean import losses
>>> loss = losses.CrossEntropyLoss(label_smoothing=0.1)
>>> round(float(loss(jnp.zeros((2, 3)), jnp.array([0, 2]))), 4)   # log(3)
1.0986
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from dataclasses import InitVar
from typing import Any

import jax
import jax.core
import jax.numpy as jnp
import numpy as np
import optax

from tlean._core import ShapeError

__all__ = [
    "BCELoss",
    "BCEWithLogitsLoss",
    "CTCLoss",
    "CosineEmbeddingLoss",
    "CrossEntropyLoss",
    "HuberLoss",
    "KLDivLoss",
    "L1Loss",
    "MSELoss",
    "MarginRankingLoss",
    "NLLLoss",
    "SmoothL1Loss",
    "TripletMarginLoss",
]

_REDUCTIONS = ("none", "mean", "sum")


def _loss(*data_fields: str):
    """Make a loss class a frozen dataclass and a pytree whose children are ``data_fields``."""

    def wrap(cls):
        cls = dataclasses.dataclass(frozen=True, eq=False, repr=False)(cls)
        meta = [f.name for f in dataclasses.fields(cls) if f.name not in data_fields]
        return jax.tree_util.register_dataclass(cls, data_fields=list(data_fields), meta_fields=meta)

    return wrap


class _Loss:
    """What every loss shares: the ``reduction`` check, torch's legacy arguments and the repr."""

    reduction: str
    _reductions = _REDUCTIONS

    def __post_init__(self, size_average: Any = None, reduce: Any = None) -> None:
        if size_average is not None or reduce is not None:
            # torch's _Reduction.legacy_get_string: None means True for both.
            size_average = True if size_average is None else size_average
            reduce = True if reduce is None else reduce
            legacy = "mean" if size_average and reduce else "sum" if reduce else "none"
            warnings.warn(
                f"{type(self).__name__}: size_average and reduce are deprecated, use reduction={legacy!r}",
                DeprecationWarning,
                stacklevel=3,
            )
            object.__setattr__(self, "reduction", legacy)
        if self.reduction not in self._reductions:
            raise ValueError(
                f"{type(self).__name__}: reduction must be one of {self._reductions}, got {self.reduction!r}"
            )
        self._check_config()

    def _check_config(self) -> None:
        """Per-loss checks of the static options (overridden)."""

    def __repr__(self) -> str:
        shown = []
        for f in dataclasses.fields(self):  # pyright: ignore[reportArgumentType] (subclasses are dataclasses)
            value = getattr(self, f.name)
            if value is f.default:
                continue
            if hasattr(value, "shape") and hasattr(value, "dtype"):
                value = f"{jnp.dtype(value.dtype).name}{list(value.shape)}"
            elif value == f.default:
                continue
            else:
                value = repr(value)
            shown.append(f"{f.name}={value}")
        return f"{type(self).__name__}({', '.join(shown)})"

    # -- helpers shared by the losses ------------------------------------------------------
    def _float(self, what: str, x: Any) -> jax.Array:
        """``x`` as a floating array of at least float32, or a TypeError naming the loss."""
        x = jnp.asarray(x)
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise TypeError(f"{self!r}: expected {what} to be a floating array, got {x.dtype} of shape {x.shape}")
        return x.astype(jnp.promote_types(x.dtype, jnp.float32))

    def _same_shape(self, what: str, x: jax.Array, other: jax.Array, other_what: str = "input") -> None:
        if x.shape != other.shape:
            raise ShapeError(self, f"{what} of the {other_what}'s shape {other.shape}", x.shape)

    def _broadcast(self, what: str, value: Any, shape: tuple) -> jax.Array | None:
        """An array option (``weight``, ``pos_weight``) broadcast to ``shape``, checked at trace time."""
        if value is None:
            return None
        value = self._float(what, value)
        try:
            ok = np.broadcast_shapes(value.shape, shape) == tuple(shape)
        except ValueError:
            ok = False
        if not ok:
            raise ShapeError(self, f"{what} broadcastable to the input's shape {tuple(shape)}", value.shape)
        return jnp.broadcast_to(value, shape)

    def _reduce(self, loss: jax.Array, total: jax.Array | None = None) -> jax.Array:
        """Apply ``reduction``; ``"mean"`` divides by ``total`` when given (0 / 0 is 0, not NaN)."""
        if self.reduction == "none":
            return loss
        if self.reduction == "sum":
            return jnp.sum(loss)
        if total is None:
            return jnp.mean(loss)
        # A weight sum may be any positive number, so only the empty (zero) total is replaced.
        return jnp.sum(loss) / jnp.where(total == 0, 1, total)


class _ClassLoss(_Loss):
    """Shared by CrossEntropyLoss and NLLLoss: class axis 1 (0 when unbatched), weights, ignore_index."""

    weight: Any
    ignore_index: int

    def _check_config(self) -> None:
        if not isinstance(self.ignore_index, (int, np.integer)) or isinstance(self.ignore_index, bool):
            raise TypeError(f"{self!r}: ignore_index must be an int, got {self.ignore_index!r}")

    def _classes_last(self, x: jax.Array) -> jax.Array:
        """Input (C,), (N, C) or (N, C, d1, ...) with the class axis moved last."""
        if x.ndim == 0:
            raise ShapeError(self, "input (C,), (N, C) or (N, C, d1, ...)", x.shape)
        return jnp.moveaxis(x, 0 if x.ndim == 1 else 1, -1)

    def _class_weight(self, classes: int) -> jax.Array | None:
        if self.weight is None:
            return None
        weight = self._float("weight", self.weight)
        if weight.shape != (classes,):
            raise ShapeError(self, f"weight of shape ({classes},), one per class", weight.shape)
        return weight

    def _indices(self, target: jax.Array, batch_shape: tuple, classes: int, input_shape: tuple) -> jax.Array:
        """Check a class-index target: integer, of the input's shape without the class axis."""
        if target.shape != batch_shape:
            expected = f"target of shape {batch_shape} (class indices)"
            if isinstance(self, CrossEntropyLoss):
                expected += f" or {input_shape} (class probabilities)"
            raise ShapeError(self, expected, target.shape)
        if not jnp.issubdtype(target.dtype, jnp.integer):
            raise TypeError(
                f"{self!r}: expected integer class indices as target, got {target.dtype} of shape {target.shape}"
            )
        if not isinstance(target, jax.core.Tracer):  # out-of-range indices are only checkable eagerly
            values = np.asarray(target)
            bad = values[(values != self.ignore_index) & ((values < 0) | (values >= classes))]
            if bad.size:
                raise ValueError(
                    f"{self!r}: expected class indices in [0, {classes}) or ignore_index={self.ignore_index}, "
                    f"got {sorted(set(bad.tolist()))[:5]}"
                )
        return target


@_loss("weight")
class CrossEntropyLoss(_ClassLoss):
    """Softmax cross-entropy of logits against class indices or class probabilities.

    ``CrossEntropyLoss(weight=None, size_average=None, ignore_index=-100, reduce=None,
    reduction="mean", label_smoothing=0.0)``, as ``torch.nn.CrossEntropyLoss``. On
    ``optax.losses.softmax_cross_entropy_with_integer_labels`` and ``optax.losses.softmax_cross_entropy``.

    Args:
      weight: optional per-class weights ``(C,)``; a pytree child.
      ignore_index: class-index targets equal to it contribute nothing (not to the mean's
        denominator either). Only for index targets.
      reduction: ``"none"``, ``"mean"`` or ``"sum"``. With index targets ``"mean"`` divides
        by the summed weight of the non-ignored targets (their count without ``weight``);
        with probability targets by the number of elements.
      label_smoothing: in ``[0, 1]``; mixes the target with the uniform distribution.

    Call ``loss(input, target)``:
      input: logits ``(C,)``, ``(N, C)`` or ``(N, C, d1, ...)``.
      target: class indices (integers) of shape ``()``, ``(N,)`` or ``(N, d1, ...)``, or class
        probabilities (floats) of the input's shape.

    Returns:
      A scalar, or with ``reduction="none"`` the per-element loss (the input's shape without
      the class axis; ignored elements are 0).

    Differs from torch: see the module docstring (all-ignored batch gives 0; out-of-range
    indices raise eagerly and give NaN under jit).

    >>> import jax.numpy as jnp
    >>> loss = CrossEntropyLoss(weight=jnp.array([1.0, 2.0]), reduction="none")
    >>> loss(jnp.zeros((3, 2)), jnp.array([0, 1, -100])).round(4)
    Array([0.6931, 1.3863, 0.    ], dtype=float32)
    """

    weight: Any = None
    size_average: InitVar[Any] = None
    ignore_index: int = -100
    reduce: InitVar[Any] = None
    reduction: str = "mean"
    label_smoothing: float = 0.0

    def _check_config(self) -> None:
        super()._check_config()
        if not isinstance(self.label_smoothing, (int, float)) or not 0.0 <= self.label_smoothing <= 1.0:
            raise ValueError(f"{self!r}: label_smoothing must be a float in [0, 1], got {self.label_smoothing!r}")

    def __call__(self, input: jax.Array, target: jax.Array) -> jax.Array:
        logits = self._classes_last(self._float("input", input))
        classes = logits.shape[-1]
        weight = self._class_weight(classes)
        target = jnp.asarray(target)
        smoothing = self.label_smoothing
        if target.shape == jnp.shape(input):
            if not jnp.issubdtype(target.dtype, jnp.floating):
                raise TypeError(
                    f"{self!r}: expected floating class probabilities as a target of the input's shape "
                    f"{target.shape}, got {target.dtype}"
                )
            probs = self._classes_last(target.astype(logits.dtype))
            if smoothing:
                probs = probs * (1.0 - smoothing) + smoothing / classes
            if weight is not None:
                probs = probs * jnp.broadcast_to(weight, probs.shape)
            return self._reduce(optax.losses.softmax_cross_entropy(logits, probs))
        target = self._indices(target, logits.shape[:-1], classes, jnp.shape(input))
        ignored = target == self.ignore_index
        safe = jnp.where(ignored, 0, target)
        w_target = jnp.where(ignored, 0.0, 1.0 if weight is None else jnp.take(weight, safe))
        loss = w_target * optax.losses.softmax_cross_entropy_with_integer_labels(logits, safe)
        if smoothing:
            # The uniform part: -sum_c weight_c log p_c per element, as torch weighs it.
            uniform = jnp.ones_like(logits) if weight is None else jnp.broadcast_to(weight, logits.shape)
            smooth = jnp.where(ignored, 0.0, optax.losses.softmax_cross_entropy(logits, uniform))
            loss = (1.0 - smoothing) * loss + (smoothing / classes) * smooth
        loss = jnp.where(ignored | ((target >= 0) & (target < classes)), loss, jnp.nan)
        return self._reduce(loss, jnp.sum(w_target))


@_loss("weight")
class NLLLoss(_ClassLoss):
    """Negative log-likelihood of log-probabilities against class indices.

    ``NLLLoss(weight=None, size_average=None, ignore_index=-100, reduce=None,
    reduction="mean")``, as ``torch.nn.NLLLoss``: ``-weight[t] * input[t]`` per element.

    Args:
      weight: optional per-class weights ``(C,)``; a pytree child.
      ignore_index: targets equal to it contribute nothing (not to the mean's denominator).
      reduction: ``"none"``, ``"mean"`` (divides by the summed weight of the non-ignored
        targets) or ``"sum"``.

    Call ``loss(input, target)``:
      input: log-probabilities ``(C,)``, ``(N, C)`` or ``(N, C, d1, ...)``.
      target: integer class indices ``()``, ``(N,)`` or ``(N, d1, ...)``.

    Returns:
      A scalar, or the per-element loss with ``reduction="none"``.

    Differs from torch: see the module docstring.

    >>> import jax, jax.numpy as jnp
    >>> logp = jax.nn.log_softmax(jnp.zeros((2, 4)))
    >>> round(float(NLLLoss()(logp, jnp.array([1, 3]))), 4)   # log(4)
    1.3863
    """

    weight: Any = None
    size_average: InitVar[Any] = None
    ignore_index: int = -100
    reduce: InitVar[Any] = None
    reduction: str = "mean"

    def __call__(self, input: jax.Array, target: jax.Array) -> jax.Array:
        logp = self._classes_last(self._float("input", input))
        classes = logp.shape[-1]
        weight = self._class_weight(classes)
        target = self._indices(jnp.asarray(target), logp.shape[:-1], classes, jnp.shape(input))
        ignored = target == self.ignore_index
        safe = jnp.where(ignored, 0, target)
        w_target = jnp.where(ignored, 0.0, 1.0 if weight is None else jnp.take(weight, safe))
        picked = jnp.take_along_axis(logp, safe[..., None], axis=-1)[..., 0]
        loss = jnp.where(ignored | ((target >= 0) & (target < classes)), -w_target * picked, jnp.nan)
        return self._reduce(loss, jnp.sum(w_target))


class _Pointwise(_Loss):
    """A loss of two same-shaped float arrays, element by element."""

    def _pair(self, input: Any, target: Any) -> tuple[jax.Array, jax.Array]:
        x, y = self._float("input", input), self._float("target", target)
        self._same_shape("target", y, x)
        return x, y


@_loss()
class MSELoss(_Pointwise):
    """Squared error ``(input - target) ** 2``, on ``optax.losses.squared_error``.

    ``MSELoss(size_average=None, reduce=None, reduction="mean")``, as ``torch.nn.MSELoss``.
    Call ``loss(input, target)`` with two float arrays of the same (any) shape; returns a scalar
    or, with ``reduction="none"``, the per-element loss. Differs from torch: the shapes must be
    equal (torch broadcasts with a warning).

    >>> import jax.numpy as jnp
    >>> float(MSELoss()(jnp.array([1.0, 2.0]), jnp.array([0.0, 0.0])))
    2.5
    """

    size_average: InitVar[Any] = None
    reduce: InitVar[Any] = None
    reduction: str = "mean"

    def __call__(self, input: jax.Array, target: jax.Array) -> jax.Array:
        return self._reduce(optax.losses.squared_error(*self._pair(input, target)))


@_loss()
class L1Loss(_Pointwise):
    """Absolute error ``|input - target|``.

    ``L1Loss(size_average=None, reduce=None, reduction="mean")``, as ``torch.nn.L1Loss``.
    Call ``loss(input, target)`` with two float arrays of the same shape; returns a scalar or,
    with ``reduction="none"``, the per-element loss. Differs from torch: the shapes must be equal.

    >>> import jax.numpy as jnp
    >>> float(L1Loss(reduction="sum")(jnp.array([1.0, -2.0]), jnp.zeros(2)))
    3.0
    """

    size_average: InitVar[Any] = None
    reduce: InitVar[Any] = None
    reduction: str = "mean"

    def __call__(self, input: jax.Array, target: jax.Array) -> jax.Array:
        x, y = self._pair(input, target)
        return self._reduce(jnp.abs(x - y))


@_loss()
class SmoothL1Loss(_Pointwise):
    """Smooth L1: ``0.5 d**2 / beta`` where ``|d| < beta``, else ``|d| - 0.5 beta`` (``d = input - target``).

    ``SmoothL1Loss(size_average=None, reduce=None, reduction="mean", beta=1.0)``, as
    ``torch.nn.SmoothL1Loss``: ``optax.losses.huber_loss(delta=beta) / beta``, the L1 loss when
    ``beta == 0``. ``beta`` must be >= 0. Call ``loss(input, target)`` with two float arrays
    of the same shape. Differs from torch: the shapes must be equal.

    >>> import jax.numpy as jnp
    >>> SmoothL1Loss(reduction="none")(jnp.array([0.5, 3.0]), jnp.zeros(2))
    Array([0.125, 2.5  ], dtype=float32)
    """

    size_average: InitVar[Any] = None
    reduce: InitVar[Any] = None
    reduction: str = "mean"
    beta: float = 1.0

    def _check_config(self) -> None:
        if not isinstance(self.beta, (int, float)) or self.beta < 0:
            raise ValueError(f"{self!r}: beta must be a float >= 0, got {self.beta!r}")

    def __call__(self, input: jax.Array, target: jax.Array) -> jax.Array:
        x, y = self._pair(input, target)
        if self.beta == 0:
            return self._reduce(jnp.abs(x - y))
        return self._reduce(optax.losses.huber_loss(x, y, delta=self.beta) / self.beta)


@_loss()
class HuberLoss(_Pointwise):
    """Huber: ``0.5 d**2`` where ``|d| <= delta``, else ``delta (|d| - 0.5 delta)``, on ``optax.losses.huber_loss``.

    ``HuberLoss(reduction="mean", delta=1.0)``, as ``torch.nn.HuberLoss``; ``delta`` must be
    > 0. Call ``loss(input, target)`` with two float arrays of the same shape. Differs from
    torch: the shapes must be equal.

    >>> import jax.numpy as jnp
    >>> HuberLoss(reduction="none", delta=2.0)(jnp.array([1.0, 3.0]), jnp.zeros(2))
    Array([0.5, 4. ], dtype=float32)
    """

    reduction: str = "mean"
    delta: float = 1.0

    def _check_config(self) -> None:
        if not isinstance(self.delta, (int, float)) or self.delta <= 0:
            raise ValueError(f"{self!r}: delta must be a float > 0, got {self.delta!r}")

    def __call__(self, input: jax.Array, target: jax.Array) -> jax.Array:
        return self._reduce(optax.losses.huber_loss(*self._pair(input, target), delta=self.delta))


@_loss("weight")
class BCELoss(_Pointwise):
    """Binary cross-entropy of probabilities: ``-weight (t log x + (1 - t) log(1 - x))``.

    ``BCELoss(weight=None, size_average=None, reduce=None, reduction="mean")``, as
    ``torch.nn.BCELoss``, with torch's clamp of each log at -100 (so ``x`` of exactly 0 or 1
    gives a finite loss).

    Args:
      weight: optional rescaling weight broadcastable to the input's shape; a pytree child.
      reduction: ``"none"``, ``"mean"`` (over elements) or ``"sum"``.

    Call ``loss(input, target)``: probabilities in ``[0, 1]`` and float targets of the same
    shape. Differs from torch: inputs outside ``[0, 1]`` give NaN (torch raises); the shapes
    must be equal.

    >>> import jax.numpy as jnp
    >>> round(float(BCELoss()(jnp.array([0.5, 0.5]), jnp.array([1.0, 0.0]))), 4)   # log(2)
    0.6931
    """

    weight: Any = None
    size_average: InitVar[Any] = None
    reduce: InitVar[Any] = None
    reduction: str = "mean"

    def __call__(self, input: jax.Array, target: jax.Array) -> jax.Array:
        x, y = self._pair(input, target)
        loss = -(y * jnp.maximum(jnp.log(x), -100.0) + (1.0 - y) * jnp.maximum(jnp.log1p(-x), -100.0))
        weight = self._broadcast("weight", self.weight, x.shape)
        return self._reduce(loss if weight is None else weight * loss)


@_loss("weight", "pos_weight")
class BCEWithLogitsLoss(_Pointwise):
    """Binary cross-entropy of logits, ``-weight (pos_weight t log s(x) + (1 - t) log(1 - s(x)))``.

    ``BCEWithLogitsLoss(weight=None, size_average=None, reduce=None, reduction="mean",
    pos_weight=None)``, as ``torch.nn.BCEWithLogitsLoss``; ``s`` is the sigmoid, computed
    stably with ``log_sigmoid`` (``optax.losses.sigmoid_binary_cross_entropy`` without ``pos_weight``).

    Args:
      weight: optional rescaling weight broadcastable to the input's shape; a pytree child.
      reduction: ``"none"``, ``"mean"`` (over elements) or ``"sum"``.
      pos_weight: optional weight of the positive term, broadcastable to the input's shape
        (typically ``(C,)`` for input ``(N, C)``); a pytree child.

    Call ``loss(input, target)``: logits and float targets of the same shape. Differs from
    torch: the shapes must be equal.

    >>> import jax.numpy as jnp
    >>> loss = BCEWithLogitsLoss(pos_weight=jnp.array([3.0]))
    >>> round(float(loss(jnp.zeros(2), jnp.array([1.0, 0.0]))), 4)   # 2 log(2)
    1.3863
    """

    weight: Any = None
    size_average: InitVar[Any] = None
    reduce: InitVar[Any] = None
    reduction: str = "mean"
    pos_weight: Any = None

    def __call__(self, input: jax.Array, target: jax.Array) -> jax.Array:
        x, y = self._pair(input, target)
        pos_weight = self._broadcast("pos_weight", self.pos_weight, x.shape)
        if pos_weight is None:
            loss = optax.losses.sigmoid_binary_cross_entropy(x, y)
        else:
            loss = -(pos_weight * y * jax.nn.log_sigmoid(x) + (1.0 - y) * jax.nn.log_sigmoid(-x))
        weight = self._broadcast("weight", self.weight, x.shape)
        return self._reduce(loss if weight is None else weight * loss)


@_loss()
class KLDivLoss(_Pointwise):
    """Pointwise KL divergence ``target (log target - input)`` of log-probabilities ``input``.

    ``KLDivLoss(size_average=None, reduce=None, reduction="mean", log_target=False)``, as
    ``torch.nn.KLDivLoss``, on ``optax.losses.kl_divergence`` (``kl_divergence_with_log_targets``
    when ``log_target``) applied element by element.

    Args:
      reduction: ``"none"``, ``"mean"`` (over all elements, as torch: not the true KL),
        ``"batchmean"`` (the sum divided by the batch size ``input.shape[0]``; the KL of the
        distributions) or ``"sum"``.
      log_target: the target holds log-probabilities.

    Call ``loss(input, target)`` with log-probabilities and a target of the same shape.
    Differs from torch: the shapes must be equal.

    >>> import jax, jax.numpy as jnp
    >>> p = jnp.array([[0.25, 0.75]])
    >>> float(KLDivLoss(reduction="batchmean")(jnp.log(p), p))
    0.0
    """

    size_average: InitVar[Any] = None
    reduce: InitVar[Any] = None
    reduction: str = "mean"
    log_target: bool = False
    _reductions = (*_REDUCTIONS, "batchmean")

    def __call__(self, input: jax.Array, target: jax.Array) -> jax.Array:
        x, y = self._pair(input, target)
        kl = optax.losses.kl_divergence_with_log_targets if self.log_target else optax.losses.kl_divergence
        loss = kl(x, y, axis=())
        if self.reduction == "batchmean":
            return jnp.sum(loss) / (x.shape[0] if x.ndim else 1)
        return self._reduce(loss)


class _Pairwise(_Loss):
    """Two inputs and a ±1 target (CosineEmbeddingLoss, MarginRankingLoss)."""

    def _three(self, input1: Any, input2: Any, target: Any, target_shape) -> tuple:
        x1, x2 = self._float("input1", input1), self._float("input2", input2)
        self._same_shape("input2", x2, x1, "input1")
        target = jnp.asarray(target)
        if target.shape != target_shape:
            raise ShapeError(self, f"target of shape {target_shape}", target.shape)
        if not (jnp.issubdtype(target.dtype, jnp.floating) or jnp.issubdtype(target.dtype, jnp.integer)):
            raise TypeError(f"{self!r}: expected a numeric target of 1 and -1, got {target.dtype}")
        return x1, x2, target.astype(x1.dtype)


@_loss()
class CosineEmbeddingLoss(_Pairwise):
    """``1 - cos(x1, x2)`` where ``target == 1``, ``max(0, cos(x1, x2) - margin)`` where ``target == -1``.

    ``CosineEmbeddingLoss(margin=0.0, size_average=None, reduce=None, reduction="mean")``, as
    ``torch.nn.CosineEmbeddingLoss``, with torch's cosine ``x1.x2 / sqrt((|x1|^2 + 1e-12)
    (|x2|^2 + 1e-12))`` (optax's ``cosine_similarity`` clamps the norms instead). Other target
    values give 0, as in torch.

    Call ``loss(input1, input2, target)``: ``input1`` and ``input2`` ``(N, D)`` or ``(D,)``,
    ``target`` ``(N,)`` or ``()``. Returns a scalar, or the ``(N,)`` loss with
    ``reduction="none"``.

    >>> import jax.numpy as jnp
    >>> x = jnp.array([[1.0, 0.0], [1.0, 0.0]])
    >>> CosineEmbeddingLoss(reduction="none")(x, x, jnp.array([1, -1])).round(4)
    Array([0., 1.], dtype=float32)
    """

    margin: float = 0.0
    size_average: InitVar[Any] = None
    reduce: InitVar[Any] = None
    reduction: str = "mean"

    def __call__(self, input1: jax.Array, input2: jax.Array, target: jax.Array) -> jax.Array:
        if jnp.ndim(input1) not in (1, 2):
            raise ShapeError(self, "input1 of shape (N, D) or (D,)", jnp.shape(input1))
        x1, x2, target = self._three(input1, input2, target, jnp.shape(input1)[:-1])
        eps = 1e-12
        cos = jnp.sum(x1 * x2, -1) / jnp.sqrt((jnp.sum(x1 * x1, -1) + eps) * (jnp.sum(x2 * x2, -1) + eps))
        loss = jnp.where(target == 1, 1.0 - cos, 0.0) + jnp.where(
            target == -1, jnp.maximum(cos - self.margin, 0.0), 0.0
        )
        return self._reduce(loss)


@_loss()
class MarginRankingLoss(_Pairwise):
    """``max(0, -target (input1 - input2) + margin)``: rank ``input1`` above ``input2`` where ``target == 1``.

    ``MarginRankingLoss(margin=0.0, size_average=None, reduce=None, reduction="mean")``, as
    ``torch.nn.MarginRankingLoss``. Call ``loss(input1, input2, target)`` with three arrays of
    the same shape (``(N,)`` or ``()``). Differs from torch: the shapes must be equal.

    >>> import jax.numpy as jnp
    >>> float(MarginRankingLoss(margin=0.5)(jnp.array([1.0]), jnp.array([2.0]), jnp.array([1.0])))
    1.5
    """

    margin: float = 0.0
    size_average: InitVar[Any] = None
    reduce: InitVar[Any] = None
    reduction: str = "mean"

    def __call__(self, input1: jax.Array, input2: jax.Array, target: jax.Array) -> jax.Array:
        x1, x2, target = self._three(input1, input2, target, jnp.shape(input1))
        return self._reduce(jnp.maximum(-target * (x1 - x2) + self.margin, 0.0))


@_loss()
class TripletMarginLoss(_Loss):
    """``max(d(a, p) - d(a, n) + margin, 0)`` with ``d(x, y) = ||x - y + eps||_p``.

    ``TripletMarginLoss(margin=1.0, p=2.0, eps=1e-6, swap=False, size_average=None,
    reduce=None, reduction="mean")``, as ``torch.nn.TripletMarginLoss``; ``swap`` uses
    ``min(d(a, n), d(p, n))`` as the negative distance. (optax's ``triplet_margin_loss`` puts
    ``eps`` inside the sum and has no ``swap``, so the distance follows torch's
    ``pairwise_distance`` here.)

    Call ``loss(anchor, positive, negative)``, three float arrays ``(N, D)`` or ``(D,)`` of the
    same shape. Returns a scalar, or the ``(N,)`` loss with ``reduction="none"``.

    >>> import jax.numpy as jnp
    >>> a = jnp.zeros((1, 2))
    >>> round(float(TripletMarginLoss(eps=0.0)(a, a, a + 3.0)), 4)
    0.0
    """

    margin: float = 1.0
    p: float = 2.0
    eps: float = 1e-6
    swap: bool = False
    size_average: InitVar[Any] = None
    reduce: InitVar[Any] = None
    reduction: str = "mean"

    def _check_config(self) -> None:
        if not isinstance(self.margin, (int, float)) or self.margin <= 0:
            raise ValueError(f"{self!r}: margin must be a float > 0, got {self.margin!r}")
        if not isinstance(self.p, (int, float)) or self.p <= 0:
            raise ValueError(f"{self!r}: p must be a float > 0, got {self.p!r}")

    def __call__(self, anchor: jax.Array, positive: jax.Array, negative: jax.Array) -> jax.Array:
        a = self._float("anchor", anchor)
        if a.ndim not in (1, 2):
            raise ShapeError(self, "anchor of shape (N, D) or (D,)", a.shape)
        pos, neg = self._float("positive", positive), self._float("negative", negative)
        self._same_shape("positive", pos, a, "anchor")
        self._same_shape("negative", neg, a, "anchor")

        def distance(x, y):
            return jnp.linalg.norm(x - y + self.eps, ord=self.p, axis=-1)

        d_neg = distance(a, neg)
        if self.swap:
            d_neg = jnp.minimum(d_neg, distance(pos, neg))
        return self._reduce(jnp.maximum(distance(a, pos) - d_neg + self.margin, 0.0))


@_loss()
class CTCLoss(_Loss):
    """Connectionist temporal classification: ``-log p(target | log_probs)``, on ``optax.losses.ctc_loss``.

    ``CTCLoss(blank=0, reduction="mean", zero_infinity=False)``, as ``torch.nn.CTCLoss``.

    Args:
      blank: the index of the blank class.
      reduction: ``"none"`` (one loss per sample), ``"mean"`` (each loss divided by its
        target length, at least 1, then the batch mean, as torch) or ``"sum"``.
      zero_infinity: an impossible alignment (input shorter than the target needs) gives a loss
        of 0 and a zero gradient instead of ``inf``.

    Call ``loss(log_probs, targets, input_lengths, target_lengths)``:
      log_probs: ``(T, N, C)`` log-probabilities (time first, as torch), or ``(T, C)`` unbatched.
      targets: padded ``(N, S)`` integer targets (or ``(S,)`` unbatched); concatenated 1-D
        targets ``(sum(target_lengths),)`` too, but only eagerly (their padded shape depends
        on the values of ``target_lengths``): under ``jax.jit`` pass padded targets.
      input_lengths: ``(N,)`` integers <= T (``()`` unbatched).
      target_lengths: ``(N,)`` integers <= S (``()`` unbatched).

    Returns:
      A scalar, or the ``(N,)`` losses with ``reduction="none"``.

    Differs from torch: ``log_probs`` are re-normalised with ``log_softmax`` by optax (a no-op
    on ``log_softmax`` outputs, so the loss and its gradient match torch's there). Lengths out
    of range are a ``ValueError`` eagerly but cannot be checked under jit.

    >>> import jax, jax.numpy as jnp
    >>> log_probs = jax.nn.log_softmax(jnp.zeros((4, 1, 3)))
    >>> loss = CTCLoss(reduction="sum")
    >>> bool(loss(log_probs, jnp.array([[1, 2]]), jnp.array([4]), jnp.array([2])) > 0)
    True
    """

    blank: int = 0
    reduction: str = "mean"
    zero_infinity: bool = False

    def _check_config(self) -> None:
        if not isinstance(self.blank, (int, np.integer)) or isinstance(self.blank, bool) or self.blank < 0:
            raise ValueError(f"{self!r}: blank must be an int >= 0, got {self.blank!r}")

    def __call__(self, log_probs: jax.Array, targets: jax.Array, input_lengths: Any, target_lengths: Any) -> jax.Array:
        lp = self._float("log_probs", log_probs)
        if lp.ndim not in (2, 3):
            raise ShapeError(self, "log_probs of shape (T, N, C) or (T, C)", lp.shape)
        unbatched = lp.ndim == 2
        batch = 1 if unbatched else lp.shape[1]
        lengths_shape = () if unbatched else (batch,)
        input_lengths = self._lengths("input_lengths", input_lengths, lengths_shape)
        target_lengths = self._lengths("target_lengths", target_lengths, lengths_shape)
        targets = jnp.asarray(targets)
        if not jnp.issubdtype(targets.dtype, jnp.integer):
            raise TypeError(f"{self!r}: expected integer targets, got {targets.dtype} of shape {targets.shape}")
        if unbatched:
            if targets.ndim != 1:
                raise ShapeError(self, "targets of shape (S,) for unbatched log_probs (T, C)", targets.shape)
            lp, targets = lp[:, None], targets[None]
            input_lengths, target_lengths = input_lengths[None], target_lengths[None]
        elif targets.ndim == 1:
            targets = self._pad_concatenated(targets, target_lengths)
        elif targets.ndim != 2 or targets.shape[0] != batch:
            raise ShapeError(
                self, f"targets of shape ({batch}, S) or concatenated (sum(target_lengths),)", targets.shape
            )
        self._check_lengths("input_lengths", input_lengths, lp.shape[0], "T")
        self._check_lengths("target_lengths", target_lengths, targets.shape[1], "S")
        loss = _ctc_per_sample(lp, targets, input_lengths, target_lengths, self.blank, self.zero_infinity)
        if unbatched:
            loss = loss[0]
        if self.reduction == "mean":
            return jnp.mean(loss / jnp.maximum(target_lengths, 1).reshape(loss.shape))
        return self._reduce(loss)

    def _lengths(self, what: str, lengths: Any, shape: tuple) -> jax.Array:
        lengths = jnp.asarray(lengths)
        if not jnp.issubdtype(lengths.dtype, jnp.integer):
            raise TypeError(f"{self!r}: expected integer {what}, got {lengths.dtype}")
        if lengths.shape != shape:
            raise ShapeError(self, f"{what} of shape {shape}", lengths.shape)
        return lengths

    def _check_lengths(self, what: str, lengths: jax.Array, most: int, name: str) -> None:
        """Lengths in ``[0, most]``: checked when they are concrete (eagerly), not under jit."""
        if isinstance(lengths, jax.core.Tracer):
            return
        values = np.asarray(lengths)
        if values.size and (values.min() < 0 or values.max() > most):
            raise ValueError(f"{self!r}: expected {what} in [0, {name}={most}], got {values.tolist()}")

    def _pad_concatenated(self, targets: jax.Array, target_lengths: jax.Array) -> jax.Array:
        """Concatenated targets to padded ``(N, max length)`` ones: eager only."""
        if isinstance(targets, jax.core.Tracer) or isinstance(target_lengths, jax.core.Tracer):
            raise TypeError(
                f"{self!r}: concatenated 1-D targets need concrete target_lengths (their padded shape "
                f"depends on the values), so they work only outside jax.jit; under jit pass padded "
                f"(N, S) targets, got targets of shape {targets.shape}"
            )
        lengths = np.asarray(target_lengths)
        flat = np.asarray(targets)
        if lengths.sum() != flat.shape[0]:
            raise ShapeError(self, f"concatenated targets of length sum(target_lengths) = {lengths.sum()}", flat.shape)
        padded = np.zeros((lengths.shape[0], max(int(lengths.max(initial=0)), 1)), flat.dtype)
        starts = np.cumsum(lengths) - lengths
        for row, (start, length) in enumerate(zip(starts, lengths)):
            padded[row, :length] = flat[start : start + length]
        return jnp.asarray(padded)


@functools.partial(jax.jit, static_argnums=(4, 5))
def _ctc_per_sample(lp, targets, input_lengths, target_lengths, blank, zero_infinity):
    """Per-sample CTC losses of ``(T, N, C)`` log-probs and padded ``(N, S)`` targets.

    Jitted on its own so that eager calls reuse one compiled scan instead of tracing optax's
    scan at every call.
    """
    time, labels = lp.shape[0], targets.shape[1]
    logit_paddings = (jnp.arange(time)[None, :] >= input_lengths[:, None]).astype(lp.dtype)
    label_paddings = (jnp.arange(labels)[None, :] >= target_lengths[:, None]).astype(lp.dtype)
    loss = optax.losses.ctc_loss(jnp.moveaxis(lp, 0, 1), logit_paddings, targets, label_paddings, blank_id=blank)
    # optax scores an impossible alignment with a large finite number; torch says inf.
    repeats = jnp.sum((targets[:, 1:] == targets[:, :-1]) & (label_paddings[:, 1:] == 0), axis=1)
    impossible = input_lengths < target_lengths + repeats
    return jnp.where(impossible, 0.0 if zero_infinity else jnp.inf, loss)
