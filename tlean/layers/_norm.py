"""Normalisation layers. Statistics are computed in float32 whatever the input dtype."""

from __future__ import annotations

import math
import numbers
from dataclasses import KW_ONLY, dataclass
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from tlean._core import Layer, ShapeError
from tlean.layers import _init, _layout, _util


def _stats_dtype(x: jax.Array) -> jnp.dtype:
    """float32, or float64 when the input already is."""
    return jnp.promote_types(x.dtype, jnp.float32)


def _check_trailing(layer: Layer, x: Any, shape: tuple[int, ...]) -> None:
    _util.check_float(layer, x)
    if jnp.ndim(x) < len(shape) or tuple(jnp.shape(x)[-len(shape) :]) != shape:
        dims = ", ".join(map(str, shape))
        raise ShapeError(layer, f"input [..., {dims}]", jnp.shape(x))


@dataclass(frozen=True)
class LayerNorm(Layer):
    """``y = (x - mean) / sqrt(var + eps) * weight + bias`` over the trailing ``normalized_shape`` axes.

    PyTorch analogue: ``torch.nn.LayerNorm(normalized_shape, eps, elementwise_affine, bias)``
    (``dtype``/``param_dtype`` are keyword-only); same names and init (``weight`` ones,
    ``bias`` zeros, both of ``normalized_shape``).
    The variance is the biased one, as in PyTorch; mean and variance are computed in
    float32. The result has ``dtype``, or (``None``) the result type of input and params,
    as flax does: a bfloat16 input with float32 params gives float32.

    Shapes: ``x [..., *normalized_shape] -> y`` of the same shape.
    """

    normalized_shape: Any
    eps: float = 1e-5
    elementwise_affine: bool = True
    bias: bool = True
    _: KW_ONLY
    dtype: Any = _util.checked(_util.check_dtype, None)
    param_dtype: Any = _util.checked(_util.check_param_dtype, jnp.float32)

    def __post_init__(self):
        raw = self.normalized_shape
        shape = (raw,) if _util.is_int(raw) else tuple(raw) if isinstance(raw, (tuple, list)) else (raw,)
        _util.set_field(self, "normalized_shape", shape)
        _util.positive("LayerNorm", **{f"normalized_shape[{i}]": d for i, d in enumerate(shape)})
        if not shape:
            raise ValueError("LayerNorm: normalized_shape must not be empty")
        if not self.eps >= 0:
            raise ValueError(f"LayerNorm: eps must be >= 0, got {self.eps!r}")
        _util.numeric_fields(self)

    def init(self, key):
        params = {}
        if self.elementwise_affine:
            params["weight"] = _init.full(self.normalized_shape, 1, self.param_dtype)
            if self.bias:
                params["bias"] = _init.full(self.normalized_shape, 0, self.param_dtype)
        return params, {}

    def apply(self, params, state, x, *, key=None, train=False):
        _check_trailing(self, x, self.normalized_shape)
        out_dtype = _util.compute_dtype(self.dtype, x, *params.values())
        axes = tuple(range(x.ndim - len(self.normalized_shape), x.ndim))
        h = x.astype(_stats_dtype(x))
        mean = jnp.mean(h, axis=axes, keepdims=True)
        var = jnp.mean(jnp.square(h - mean), axis=axes, keepdims=True)
        y = (h - mean) * jax.lax.rsqrt(var + self.eps)
        if self.elementwise_affine:
            y = y * _util.trailing(params["weight"].astype(y.dtype), y.ndim)
            if self.bias:
                y = y + _util.trailing(params["bias"].astype(y.dtype), y.ndim)
        return y.astype(out_dtype), state


@dataclass(frozen=True)
class RMSNorm(Layer):
    """``y = x / sqrt(mean(x**2) + eps) * weight`` over the trailing ``normalized_shape`` axes.

    PyTorch analogue: ``torch.nn.RMSNorm(normalized_shape, eps=None, elementwise_affine=True)``
    with torch's names and meaning: ``weight`` (of ``normalized_shape``) initialised to ones,
    and ``eps=None`` meaning the input dtype's machine epsilon (``torch.finfo(x.dtype).eps``);
    Llama-style models pass ``eps=1e-6`` (or 1e-5). The mean square is computed in float32.
    (Until 0.2 tlean's first argument was ``dim`` and ``eps`` defaulted to 1e-6.)

    Shapes: ``x [..., *normalized_shape] -> y`` of the same shape.

    >>> import jax.numpy as jnp
    >>> from tlean.layers import RMSNorm
    >>> norm = RMSNorm(4, eps=1e-6)
    >>> params, state = norm.init(None)
    >>> norm.apply(params, state, jnp.full((2, 4), 3.0))[0].round(4)
    Array([[1., 1., 1., 1.],
           [1., 1., 1., 1.]], dtype=float32)
    """

    normalized_shape: Any
    eps: float | None = None
    elementwise_affine: bool = _util.flag(True)
    _: KW_ONLY
    dtype: Any = _util.checked(_util.check_dtype, None)
    param_dtype: Any = _util.checked(_util.check_param_dtype, jnp.float32)

    def __post_init__(self):
        raw = self.normalized_shape
        shape = (raw,) if _util.is_int(raw) else tuple(raw) if isinstance(raw, (tuple, list)) else (raw,)
        if not shape:
            raise ValueError("RMSNorm: normalized_shape must not be empty")
        _util.positive("RMSNorm", **{f"normalized_shape[{i}]": d for i, d in enumerate(shape)})
        _util.set_field(self, "normalized_shape", tuple(int(d) for d in shape))
        if self.eps is not None:
            _util.set_field(self, "eps", _util.check_nonnegative("RMSNorm", "eps", self.eps))

    def init(self, key):
        return (
            {"weight": _init.full(self.normalized_shape, 1, self.param_dtype)} if self.elementwise_affine else {}
        ), {}

    def apply(self, params, state, x, *, key=None, train=False):
        _check_trailing(self, x, self.normalized_shape)
        out_dtype = _util.compute_dtype(self.dtype, x, *params.values())
        eps = jnp.finfo(x.dtype).eps if self.eps is None else self.eps
        axes = tuple(range(-len(self.normalized_shape), 0))
        h = x.astype(_stats_dtype(x))
        y = h * jax.lax.rsqrt(jnp.mean(jnp.square(h), axis=axes, keepdims=True) + eps)
        if self.elementwise_affine:
            y = y * _util.trailing(params["weight"].astype(y.dtype), y.ndim)
        return y.astype(out_dtype), state


_SPATIAL = {0: (), 1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}


def _along(v: jax.Array, axis: int, ndim: int) -> jax.Array:
    """A per-channel vector ``[C]`` laid along ``axis`` of a rank-``ndim`` array, for explicit broadcasting."""
    return v.reshape(tuple(v.shape[0] if i == axis else 1 for i in range(ndim)))


def _check_eps(name: str, eps: Any) -> float:
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not float(eps) >= 0:
        raise ValueError(f"{name}: eps must be a number >= 0, got {eps!r}")
    return float(eps)


def _check_momentum(name: str, m: Any) -> float | None:
    if m is None:
        return None
    if isinstance(m, bool) or not isinstance(m, numbers.Real) or not 0.0 <= float(m) <= 1.0:
        raise ValueError(f"{name}: momentum must be in [0, 1] (PyTorch's convention) or None, got {m!r}")
    return float(m)


def _check_flags(layer: Layer, *flags: str) -> None:
    for flag in flags:
        _util.set_field(layer, flag, _util.check_flag(type(layer).__name__, flag, getattr(layer, flag)))


def _affine_params(layer: Any, c: int) -> dict:
    """``weight`` (ones) and, unless ``bias=False``, ``bias`` (zeros), of shape ``[c]``, when ``affine``."""
    if not layer.affine:
        return {}
    params = {"weight": _init.full((c,), 1, layer.param_dtype)}
    if layer.bias:
        params["bias"] = _init.full((c,), 0, layer.param_dtype)
    return params


def _running_stats(c: int) -> dict:
    return {
        "running_mean": _init.full((c,), 0, jnp.float32),
        "running_var": _init.full((c,), 1, jnp.float32),
        "num_batches_tracked": _init.full((), 0, jnp.int32),
    }


def _normalise(layer: Any, params: dict, h: jax.Array, mean: jax.Array, var: jax.Array, axis: int) -> jax.Array:
    """``(h - mean) * rsqrt(var + eps) * weight + bias`` with per-channel ``[C]`` statistics along ``axis``.

    ``weight / sqrt(var + eps)`` is folded into one per-channel factor first, so the input is
    multiplied once (and its backward pass reduces once): ~6% of a CNN step.
    """
    scale = jax.lax.rsqrt(var + layer.eps)
    if layer.affine:
        scale = scale * params["weight"].astype(h.dtype)
    y = (h - _along(mean, axis, h.ndim)) * _along(scale, axis, h.ndim)
    if layer.affine and layer.bias:
        y = y + _along(params["bias"].astype(h.dtype), axis, h.ndim)
    return y


def _updated(
    state: dict, momentum: float | None, mean: jax.Array, unbiased_var: jax.Array, count_batches: bool
) -> dict:
    """PyTorch's running-statistics update: ``running = (1 - m) * running + m * batch``."""
    tracked = state["num_batches_tracked"] + (1 if count_batches else 0)
    f = momentum if momentum is not None else 1.0 / tracked.astype(jnp.float32)
    new = lambda old, batch: ((1 - f) * old + f * jax.lax.stop_gradient(batch)).astype(old.dtype)
    return {
        "running_mean": new(state["running_mean"], mean),
        "running_var": new(state["running_var"], unbiased_var),
        "num_batches_tracked": tracked.astype(state["num_batches_tracked"].dtype),
    }


@dataclass(frozen=True)
class _BatchNorm(Layer):
    """One N-d batch norm: per-channel statistics over every axis but the channel axis 1.

    Subclasses set ``spatial_ranks``, the numbers of spatial axes they accept.
    """

    num_features: int
    eps: float = 1e-5
    momentum: float | None = 0.1
    affine: bool = True
    track_running_stats: bool = True
    _: KW_ONLY
    bias: bool = True
    axis_name: Any = None
    dtype: Any = _util.checked(_util.check_dtype, None)
    param_dtype: Any = _util.checked(_util.check_param_dtype, jnp.float32)

    spatial_ranks: ClassVar[tuple[int, ...]] = (2,)

    def __post_init__(self):
        name = type(self).__name__
        _util.positive(name, num_features=self.num_features)
        _util.set_field(self, "eps", _check_eps(name, self.eps))
        _util.set_field(self, "momentum", _check_momentum(name, self.momentum))
        _check_flags(self, "affine", "track_running_stats", "bias")
        if isinstance(self.axis_name, list):
            _util.set_field(self, "axis_name", tuple(self.axis_name))
        if self.axis_name is not None and not isinstance(self.axis_name, (str, tuple)):
            raise ValueError(
                f"{name}: axis_name must be None, an axis name or a tuple of names, got {self.axis_name!r}"
            )
        _util.numeric_fields(self)

    def init(self, key):
        return _affine_params(self, self.num_features), _running_stats(
            self.num_features
        ) if self.track_running_stats else {}

    def apply(self, params, state, x, *, key=None, train=False):
        _util.check_float(self, x)
        shape, c = jnp.shape(x), self.num_features
        if len(shape) - 2 not in self.spatial_ranks or shape[1] != c:
            forms = " or ".join(f"[N, {c}{''.join(', ' + d for d in _SPATIAL[s])}]" for s in self.spatial_ranks)
            raise ShapeError(self, f"input {forms}", shape)
        out_dtype = _util.compute_dtype(self.dtype, x, *params.values())
        h = jnp.asarray(x).astype(_stats_dtype(x))
        last = h.ndim > 2 and _layout.enabled()  # channels-last inside on the CPU (see _layout)
        h = _layout.to_last(h, 1) if last else h
        axis = h.ndim - 1 if last else 1
        axes = tuple(a for a in range(h.ndim) if a != axis)
        if train or not self.track_running_stats:
            count = math.prod(h.shape[a] for a in axes)
            if count <= 1 and self.axis_name is None:
                dims = " * ".join(("N",) + _SPATIAL[h.ndim - 2])
                raise ShapeError(self, f"more than one value per channel in training ({dims} > 1)", shape)
            mean = self._mean(h, axes)
            var = self._mean(jnp.square(h - _along(mean, axis, h.ndim)), axes)
        else:
            mean, var = state["running_mean"].astype(h.dtype), state["running_var"].astype(h.dtype)
        y = _normalise(self, params, h, mean, var, axis=axis)
        y = _layout.to_first(y, 1) if last else y
        if train and self.track_running_stats:
            if self.axis_name is not None:
                count = count * jax.lax.psum(1, self.axis_name)
            state = _updated(state, self.momentum, mean, var * (count / (count - 1)), count_batches=True)
        return y.astype(out_dtype), state

    def _mean(self, h: jax.Array, axes: tuple[int, ...]) -> jax.Array:
        """The per-channel mean over ``axes`` (and over ``axis_name``)."""
        m = jnp.mean(h, axis=axes)
        return m if self.axis_name is None else jax.lax.pmean(m, self.axis_name)


_BATCH_NORM_DOC = """``y = (x - mean) / sqrt(var + eps) * weight + bias`` per channel (axis 1) of {shapes}.

    PyTorch analogue: ``torch.nn.{name}(num_features, eps, momentum, affine,
    track_running_stats, *, bias)``, same arguments, parameter and buffer names, init and
    update rule; tlean-only options (``axis_name``, ``dtype``, ``param_dtype``) are keyword-only.

    - ``train=True``: normalise with the statistics of the batch (mean and biased variance
      over every axis but the channels) and return the updated running statistics in
      ``state``: ``running = (1 - momentum) * running + momentum * batch``, with the
      *unbiased* batch variance going into ``running_var``, and ``num_batches_tracked + 1``.
      ``momentum=None`` gives PyTorch's cumulative average (factor ``1 / num_batches_tracked``).
    - ``train=False``: normalise with ``running_mean`` and ``running_var``; state unchanged.
    - ``track_running_stats=False``: no state; batch statistics in both modes.

    ``momentum`` is PyTorch's: the weight of the *new* batch. flax.linen/nnx's and
    equinox's ``BatchNorm(momentum=0.99)`` weigh the *old* value, so their momentum is
    ``1 - `` this one (PyTorch's 0.1 is their 0.9).

    Statistics are computed in float32 (float64 for float64 inputs) and the state stays
    float32; ``num_batches_tracked`` is int32 (PyTorch's int64 is cast by
    :func:`tlean.interop.load_torch_state_dict`). Under ``jax.jit`` with a sharded batch
    the statistics are global (XLA inserts the reductions: SyncBN). Under ``shard_map`` or a
    ``vmap`` with a named axis they are per shard unless ``axis_name`` names the axis (or
    tuple of axes) to average over with ``jax.lax.pmean``; shards must then be equal in size.

    Only batched input is accepted, as in PyTorch. A training batch with a single value per
    channel is a :class:`~tlean.ShapeError` at trace time (PyTorch raises too).

    Args:
      num_features: channels C.
      eps: added to the variance.
      momentum: PyTorch's momentum in [0, 1], or ``None`` for a cumulative average.
      affine: learn ``weight`` (init ones) and ``bias`` (init zeros).
      track_running_stats: keep ``running_mean`` (zeros), ``running_var`` (ones) and
        ``num_batches_tracked`` (0) in ``state``.
      bias: with ``affine``, whether to learn ``bias`` (torch's keyword-only ``bias``).
      axis_name: a named axis (or tuple) to average the batch statistics over.
      dtype: output dtype; ``None`` gives the result type of input and params, as flax
        does (a bfloat16 input with float32 params gives float32).
      param_dtype: storage dtype of ``weight`` and ``bias`` (torch's factory ``dtype``).

    Shapes: {shapes}, output of the same shape.
"""


@dataclass(frozen=True)
class BatchNorm1d(_BatchNorm):
    spatial_ranks = (0, 1)


@dataclass(frozen=True)
class BatchNorm2d(_BatchNorm):
    spatial_ranks = (2,)


@dataclass(frozen=True)
class BatchNorm3d(_BatchNorm):
    spatial_ranks = (3,)


BatchNorm1d.__doc__ = _BATCH_NORM_DOC.format(name="BatchNorm1d", shapes="``[N, C]`` or ``[N, C, L]``")
BatchNorm2d.__doc__ = (
    _BATCH_NORM_DOC.format(name="BatchNorm2d", shapes="``[N, C, H, W]``")
    + """
    >>> import jax, jax.numpy as jnp
    >>> from tlean.layers import BatchNorm2d
    >>> bn = BatchNorm2d(3)
    >>> params, state = bn.init(jax.random.key(0))
    >>> y, state = bn.apply(params, state, jnp.arange(24.0).reshape(2, 3, 2, 2), train=True)
    >>> [round(float(v), 3) for v in state["running_mean"]], int(state["num_batches_tracked"])  # 0.1 * batch mean
    ([0.75, 1.15, 1.55], 1)
"""
)
BatchNorm3d.__doc__ = _BATCH_NORM_DOC.format(name="BatchNorm3d", shapes="``[N, C, D, H, W]``")


@dataclass(frozen=True)
class _InstanceNorm(Layer):
    """One N-d instance norm: per-sample, per-channel statistics over the ``spatial`` trailing axes."""

    num_features: int
    eps: float = 1e-5
    momentum: float | None = 0.1
    affine: bool = True
    track_running_stats: bool = False
    _: KW_ONLY
    bias: bool = True
    dtype: Any = _util.checked(_util.check_dtype, None)
    param_dtype: Any = _util.checked(_util.check_param_dtype, jnp.float32)

    spatial: ClassVar[int] = 2

    def __post_init__(self):
        name = type(self).__name__
        _util.positive(name, num_features=self.num_features)
        _util.set_field(self, "eps", _check_eps(name, self.eps))
        _util.set_field(self, "momentum", _check_momentum(name, self.momentum))
        _check_flags(self, "affine", "track_running_stats", "bias")
        _util.numeric_fields(self)

    def init(self, key):
        return _affine_params(self, self.num_features), _running_stats(
            self.num_features
        ) if self.track_running_stats else {}

    def apply(self, params, state, x, *, key=None, train=False):
        _util.check_float(self, x)
        shape, c, dims = jnp.shape(x), self.num_features, _SPATIAL[self.spatial]
        axis = len(shape) - self.spatial - 1  # the channel axis: 1 batched, 0 unbatched
        if axis not in (0, 1) or shape[axis] != c:
            spatial = "".join(", " + d for d in dims)
            raise ShapeError(self, f"input [N, {c}{spatial}] or unbatched [{c}{spatial}]", shape)
        out_dtype = _util.compute_dtype(self.dtype, x, *params.values())
        h = jnp.asarray(x).astype(_stats_dtype(x))
        axes = tuple(range(axis + 1, h.ndim))
        if train or not self.track_running_stats:
            count = math.prod(shape[axis + 1 :])
            if count <= 1:
                raise ShapeError(self, f"more than one spatial element ({' * '.join(dims)} > 1)", shape)
            mean = jnp.mean(h, axis=axes, keepdims=True)
            var = jnp.mean(jnp.square(h - mean), axis=axes, keepdims=True)
            y = (h - mean) * jax.lax.rsqrt(var + self.eps)
            if self.affine:
                y = y * _along(params["weight"].astype(h.dtype), axis, h.ndim)
                if self.bias:
                    y = y + _along(params["bias"].astype(h.dtype), axis, h.ndim)
            if train and self.track_running_stats:
                # torch averages the per-instance statistics over the batch; momentum=None is 0 there
                # (instance_norm gets ``momentum or 0.0``), and num_batches_tracked never moves.
                instance = lambda v: v.reshape(v.shape[: axis + 1]).reshape(-1, c).mean(axis=0)
                m = 0.0 if self.momentum is None else self.momentum
                state = _updated(state, m, instance(mean), instance(var) * (count / (count - 1)), count_batches=False)
        else:
            y = _normalise(
                self, params, h, state["running_mean"].astype(h.dtype), state["running_var"].astype(h.dtype), axis
            )
        return y.astype(out_dtype), state


_INSTANCE_NORM_DOC = """``y = (x - mean) / sqrt(var + eps) * weight + bias`` per sample and channel, over {dims}.

    PyTorch analogue: ``torch.nn.{name}(num_features, eps, momentum, affine,
    track_running_stats, *, bias)``, same arguments, names and update rule. What differs:
    here ``affine=True`` is the default (TorchLean's instance norm has a learned scale and
    shift); **PyTorch's default is ``affine=False``**. ``nn.{name}`` and ``nn.pure`` therefore
    require ``affine=`` to be passed (a ``TypeError`` naming both defaults otherwise), while
    ``tlean.layers.{name}`` keeps ``affine=True``. The channel count is always checked
    (torch only warns when ``affine=False``).

    - Statistics come from the input (biased variance, in float32) in training, and in
      evaluation unless ``track_running_stats=True``, which keeps ``running_mean``,
      ``running_var`` and ``num_batches_tracked`` in ``state``: training updates them with
      the per-instance statistics averaged over the batch (unbiased variance), evaluation
      normalises with them. As in torch, ``momentum=None`` leaves them unchanged and
      ``num_batches_tracked`` stays 0.
    - Normalising with input statistics needs more than one spatial element
      (a :class:`~tlean.ShapeError`, as torch refuses it).

    Params: ``weight [C]`` (ones) and ``bias [C]`` (zeros) when ``affine``.

    Shapes: {shapes} or unbatched, output of the same shape.
"""


@dataclass(frozen=True)
class InstanceNorm1d(_InstanceNorm):
    spatial = 1


@dataclass(frozen=True)
class InstanceNorm2d(_InstanceNorm):
    spatial = 2


@dataclass(frozen=True)
class InstanceNorm3d(_InstanceNorm):
    spatial = 3


InstanceNorm1d.__doc__ = _INSTANCE_NORM_DOC.format(name="InstanceNorm1d", dims="L", shapes="``[N, C, L]``, ``[C, L]``")
InstanceNorm2d.__doc__ = (
    _INSTANCE_NORM_DOC.format(name="InstanceNorm2d", dims="H and W", shapes="``[N, C, H, W]``, ``[C, H, W]``")
    + """
    >>> import jax, jax.numpy as jnp
    >>> from tlean.layers import InstanceNorm2d
    >>> norm = InstanceNorm2d(3)
    >>> params, state = norm.init(jax.random.key(0))
    >>> norm.apply(params, state, jnp.ones((2, 3, 4, 4)))[0].shape
    (2, 3, 4, 4)
"""
)
InstanceNorm3d.__doc__ = _INSTANCE_NORM_DOC.format(
    name="InstanceNorm3d", dims="D, H and W", shapes="``[N, C, D, H, W]``, ``[C, D, H, W]``"
)


@dataclass(frozen=True)
class GroupNorm(Layer):
    """``y = (x - mean) / sqrt(var + eps) * weight + bias``, statistics per sample over each group of channels.

    The ``num_channels`` channels (axis 1) are split into ``num_groups`` equal groups; mean
    and biased variance are taken over a group's channels and all spatial axes, in float32.

    PyTorch analogue: ``torch.nn.GroupNorm(num_groups, num_channels, eps, affine, *, bias)``,
    same names and init (``weight`` ones, ``bias`` zeros, ``[num_channels]``).

    Shapes: ``[N, C, *]`` (rank >= 2, as torch), output of the same shape.

    >>> import jax.numpy as jnp
    >>> from tlean.layers import GroupNorm
    >>> norm = GroupNorm(2, 4)
    >>> norm.apply(*norm.init(None), jnp.arange(8.0).reshape(1, 4, 2))[0].shape
    (1, 4, 2)
    """

    num_groups: int
    num_channels: int
    eps: float = 1e-5
    affine: bool = True
    _: KW_ONLY
    bias: bool = True
    dtype: Any = _util.checked(_util.check_dtype, None)
    param_dtype: Any = _util.checked(_util.check_param_dtype, jnp.float32)

    def __post_init__(self):
        _util.positive("GroupNorm", num_groups=self.num_groups, num_channels=self.num_channels)
        if self.num_channels % self.num_groups:
            raise ValueError(
                f"GroupNorm: num_channels must be divisible by num_groups, "
                f"got num_channels={self.num_channels}, num_groups={self.num_groups}"
            )
        _util.set_field(self, "eps", _check_eps("GroupNorm", self.eps))
        _check_flags(self, "affine", "bias")
        _util.numeric_fields(self)

    def init(self, key):
        return _affine_params(self, self.num_channels), {}

    def apply(self, params, state, x, *, key=None, train=False):
        _util.check_float(self, x)
        shape = jnp.shape(x)
        if len(shape) < 2 or shape[1] != self.num_channels:
            raise ShapeError(self, f"input [N, {self.num_channels}, *] ({self.num_groups} groups)", shape)
        out_dtype = _util.compute_dtype(self.dtype, x, *params.values())
        h = jnp.asarray(x).astype(_stats_dtype(x))
        g = h.reshape((shape[0], self.num_groups, math.prod(shape[1:]) // self.num_groups))  # explicit: N may be 0
        mean = jnp.mean(g, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(g - mean), axis=-1, keepdims=True)
        y = ((g - mean) * jax.lax.rsqrt(var + self.eps)).reshape(shape)
        if self.affine:
            y = y * _along(params["weight"].astype(h.dtype), 1, h.ndim)
            if self.bias:
                y = y + _along(params["bias"].astype(h.dtype), 1, h.ndim)
        return y.astype(out_dtype), state


@dataclass(frozen=True)
class LocalResponseNorm(Layer):
    """``y[c] = x[c] / (k + alpha / size * sum(x[c']**2))**beta``, over a window of ``size`` neighbouring channels.

    The window of channel ``c`` is ``c - size // 2 .. c + (size - 1) // 2``, zero padded at
    the ends, and the sum is divided by ``size`` whatever the padding (AlexNet's LRN).

    PyTorch analogue: ``torch.nn.LocalResponseNorm(size, alpha, beta, k)``, same arguments.

    Shapes: ``[N, C, *]`` with at least one spatial axis (rank >= 3, as torch), output of
    the same shape.
    """

    size: int
    alpha: float = 1e-4
    beta: float = 0.75
    k: float = 1.0

    def __post_init__(self):
        _util.positive("LocalResponseNorm", size=self.size)
        for name in ("alpha", "beta", "k"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ValueError(f"LocalResponseNorm: {name} must be a number, got {value!r}")
            _util.set_field(self, name, float(value))

    def apply(self, params, state, x, *, key=None, train=False):
        _util.check_float(self, x)
        if jnp.ndim(x) < 3:
            raise ShapeError(self, "input [N, C, *] of rank >= 3", jnp.shape(x))
        h = jnp.asarray(x).astype(_stats_dtype(x))
        window = (1, self.size) + (1,) * (h.ndim - 2)
        pads = ((0, 0), (self.size // 2, (self.size - 1) // 2)) + ((0, 0),) * (h.ndim - 2)
        total = jax.lax.reduce_window(jnp.square(h), 0.0, jax.lax.add, window, (1,) * h.ndim, pads)
        return (h / (self.k + self.alpha / self.size * total) ** self.beta).astype(x.dtype), state
