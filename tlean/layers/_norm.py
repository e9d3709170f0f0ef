"""Normalisation layers. Statistics are computed in float32 whatever the input dtype."""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from tlean._core import Layer, ShapeError
from tlean.layers import _util
from tlean.layers._conv import check_image


def _stats_dtype(x: jax.Array) -> jnp.dtype:
    """float32, or float64 when the input already is."""
    return jnp.promote_types(x.dtype, jnp.float32)


def _check_trailing(layer: Layer, x: Any, shape: tuple[int, ...]) -> None:
    _util.check_float(layer, x)
    if jnp.ndim(x) < len(shape) or tuple(jnp.shape(x)[-len(shape):]) != shape:
        dims = ", ".join(map(str, shape))
        raise ShapeError(layer, f"input [..., {dims}]", jnp.shape(x))


@dataclass(frozen=True)
class LayerNorm(Layer):
    """``y = (x - mean) / sqrt(var + eps) * weight + bias`` over the trailing ``normalized_shape`` axes.

    PyTorch analogue: ``torch.nn.LayerNorm(normalized_shape, eps, elementwise_affine, bias)``;
    same names and init (``weight`` ones, ``bias`` zeros, both of ``normalized_shape``).
    The variance is the biased one, as in PyTorch; mean and variance are computed in
    float32. The result has ``dtype``, or (``None``) the result type of input and params,
    as flax does: a bfloat16 input with float32 params gives float32.

    Shapes: ``x [..., *normalized_shape] -> y`` of the same shape.
    """

    normalized_shape: Any
    eps: float = 1e-5
    elementwise_affine: bool = True
    bias: bool = True
    dtype: Any = None
    param_dtype: Any = jnp.float32

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
            params["weight"] = jnp.ones(self.normalized_shape, self.param_dtype)
            if self.bias:
                params["bias"] = jnp.zeros(self.normalized_shape, self.param_dtype)
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
    """``y = x / sqrt(mean(x**2) + eps) * weight`` over the last axis.

    PyTorch analogue: ``torch.nn.RMSNorm(dim, eps)`` with ``weight`` initialised to ones.
    PyTorch's default ``eps=None`` means the input dtype's machine epsilon; here the
    default is 1e-6 (TorchLean, Llama). The mean square is computed in float32.

    Shapes: ``x [..., dim] -> y`` of the same shape.
    """

    dim: int
    eps: float = 1e-6
    elementwise_affine: bool = True
    dtype: Any = None
    param_dtype: Any = jnp.float32

    def __post_init__(self):
        _util.positive("RMSNorm", dim=self.dim)
        if not self.eps >= 0:
            raise ValueError(f"RMSNorm: eps must be >= 0, got {self.eps!r}")
        _util.numeric_fields(self)

    def init(self, key):
        return ({"weight": jnp.ones((self.dim,), self.param_dtype)} if self.elementwise_affine else {}), {}

    def apply(self, params, state, x, *, key=None, train=False):
        _check_trailing(self, x, (self.dim,))
        out_dtype = _util.compute_dtype(self.dtype, x, *params.values())
        h = x.astype(_stats_dtype(x))
        y = h * jax.lax.rsqrt(jnp.mean(jnp.square(h), axis=-1, keepdims=True) + self.eps)
        if self.elementwise_affine:
            y = y * _util.trailing(params["weight"].astype(y.dtype), y.ndim)
        return y.astype(out_dtype), state


def _channel(v: jax.Array, ndim: int) -> jax.Array:
    """A per-channel vector ``[C]`` laid along axis -3 of a rank-``ndim`` NCHW/CHW array."""
    return v.reshape((1,) * (ndim - 3) + (v.shape[0], 1, 1))


def _check_eps(name: str, eps: Any) -> float:
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not eps >= 0:
        raise ValueError(f"{name}: eps must be a number >= 0, got {eps!r}")
    return float(eps)


@dataclass(frozen=True)
class BatchNorm2d(Layer):
    """``y = (x - mean) / sqrt(var + eps) * weight + bias`` per channel of an NCHW batch.

    PyTorch analogue: ``torch.nn.BatchNorm2d(num_features, eps, momentum, affine,
    track_running_stats)``, same parameter and buffer names, init and update rule.

    - ``train=True``: normalise with the statistics of the batch (mean and biased variance
      over N, H, W) and return the updated running statistics in ``state``:
      ``running = (1 - momentum) * running + momentum * batch``, with the *unbiased*
      batch variance going into ``running_var``, and ``num_batches_tracked + 1``.
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

    Only NCHW input is accepted (PyTorch refuses 3-D input too). A training batch with
    ``N * H * W <= 1`` is a :class:`~tlean.ShapeError` at trace time (PyTorch raises for 1
    and returns an empty output for 0).

    Args:
      num_features: channels C.
      eps: added to the variance.
      momentum: PyTorch's momentum in [0, 1], or ``None`` for a cumulative average.
      affine: learn ``weight`` (init ones) and ``bias`` (init zeros).
      track_running_stats: keep ``running_mean`` (zeros), ``running_var`` (ones) and
        ``num_batches_tracked`` (0) in ``state``.
      axis_name: a named axis (or tuple) to average the batch statistics over.
      dtype: output dtype; ``None`` gives the result type of input and params, as flax
        does (a bfloat16 input with float32 params gives float32).
      param_dtype: storage dtype of ``weight`` and ``bias``.

    Shapes: ``x [N, C, H, W] -> y [N, C, H, W]``.

    >>> import jax, jax.numpy as jnp
    >>> from tlean.layers import BatchNorm2d
    >>> bn = BatchNorm2d(3)
    >>> params, state = bn.init(jax.random.key(0))
    >>> y, state = bn.apply(params, state, jnp.arange(24.0).reshape(2, 3, 2, 2), train=True)
    >>> [round(float(v), 3) for v in state["running_mean"]], int(state["num_batches_tracked"])  # 0.1 * batch mean
    ([0.75, 1.15, 1.55], 1)
    """

    num_features: int
    eps: float = 1e-5
    momentum: float | None = 0.1
    affine: bool = True
    track_running_stats: bool = True
    axis_name: Any = None
    dtype: Any = None
    param_dtype: Any = jnp.float32

    def __post_init__(self):
        name = "BatchNorm2d"
        _util.positive(name, num_features=self.num_features)
        _util.set_field(self, "eps", _check_eps(name, self.eps))
        m = self.momentum
        if m is not None:
            if isinstance(m, bool) or not isinstance(m, numbers.Real) or not 0.0 <= m <= 1.0:
                raise ValueError(f"{name}: momentum must be in [0, 1] (PyTorch's convention) or None, got {m!r}")
            _util.set_field(self, "momentum", float(m))
        for flag in ("affine", "track_running_stats"):
            if not isinstance(getattr(self, flag), bool):
                raise ValueError(f"{name}: {flag} must be a bool, got {getattr(self, flag)!r}")
        if isinstance(self.axis_name, list):
            _util.set_field(self, "axis_name", tuple(self.axis_name))
        if self.axis_name is not None and not isinstance(self.axis_name, (str, tuple)):
            raise ValueError(f"{name}: axis_name must be None, an axis name or a tuple of names, got {self.axis_name!r}")
        _util.numeric_fields(self)

    def init(self, key):
        c = self.num_features
        params = {"weight": jnp.ones((c,), self.param_dtype), "bias": jnp.zeros((c,), self.param_dtype)} if self.affine else {}
        state = {}
        if self.track_running_stats:
            state = {
                "running_mean": jnp.zeros((c,), jnp.float32),
                "running_var": jnp.ones((c,), jnp.float32),
                "num_batches_tracked": jnp.zeros((), jnp.int32),
            }
        return params, state

    def apply(self, params, state, x, *, key=None, train=False):
        check_image(self, x, self.num_features, ranks=(4,))
        out_dtype = _util.compute_dtype(self.dtype, x, *params.values())
        h = jnp.asarray(x).astype(_stats_dtype(x))
        batch_stats = train or not self.track_running_stats
        if batch_stats:
            n, _, height, width = h.shape
            count = n * height * width
            if count <= 1 and self.axis_name is None:
                raise ShapeError(self, "more than one value per channel in training (N * H * W > 1)", h.shape)
            mean = self._mean(h)
            var = self._mean(jnp.square(h - _channel(mean, 4)))
        else:
            mean, var = state["running_mean"].astype(h.dtype), state["running_var"].astype(h.dtype)
        # weight / sqrt(var + eps) is folded into one per-channel factor first, so the
        # image is multiplied once (and its backward pass reduces once): ~6% of a CNN step.
        scale = jax.lax.rsqrt(var + self.eps)
        if self.affine:
            scale = scale * params["weight"].astype(h.dtype)
        y = (h - _channel(mean, 4)) * _channel(scale, 4)
        if self.affine:
            y = y + _channel(params["bias"].astype(h.dtype), 4)
        if train and self.track_running_stats:
            if self.axis_name is not None:
                count = count * jax.lax.psum(1, self.axis_name)
            state = self._update(state, jax.lax.stop_gradient(mean), jax.lax.stop_gradient(var), count)
        return y.astype(out_dtype), state

    def _mean(self, h: jax.Array) -> jax.Array:
        """The per-channel mean over N, H, W (and over ``axis_name``)."""
        m = jnp.mean(h, axis=(0, 2, 3))
        return m if self.axis_name is None else jax.lax.pmean(m, self.axis_name)

    def _update(self, state: dict, mean: jax.Array, var: jax.Array, count: Any) -> dict:
        tracked = state["num_batches_tracked"] + 1
        f = self.momentum if self.momentum is not None else 1.0 / tracked.astype(jnp.float32)
        unbiased = var * (count / (count - 1))
        new = lambda old, batch: ((1 - f) * old + f * batch).astype(old.dtype)
        return {
            "running_mean": new(state["running_mean"], mean),
            "running_var": new(state["running_var"], unbiased),
            "num_batches_tracked": tracked.astype(state["num_batches_tracked"].dtype),
        }


@dataclass(frozen=True)
class InstanceNorm2d(Layer):
    """``y = (x - mean) / sqrt(var + eps) * weight + bias`` per sample and channel, over H and W.

    PyTorch analogue: ``torch.nn.InstanceNorm2d(num_features, eps, affine=True)``. Here
    ``affine=True`` is the default (TorchLean's instance norm has a learned scale and
    shift); **PyTorch's default is ``affine=False``**, so pass ``affine=True`` there for
    the same layer. Running statistics (PyTorch's ``track_running_stats=True``) are not
    offered: statistics always come from the input, in train and eval mode alike. The
    variance is the biased one; statistics are computed in float32. Fewer than two spatial
    elements (``H * W <= 1``) is a :class:`~tlean.ShapeError`, as PyTorch refuses it.

    Params: ``weight [C]`` (ones) and ``bias [C]`` (zeros) when ``affine``.

    Shapes: ``[N, C, H, W]`` or unbatched ``[C, H, W]``, output of the same shape.

    >>> import jax, jax.numpy as jnp
    >>> from tlean.layers import InstanceNorm2d
    >>> norm = InstanceNorm2d(3)
    >>> params, state = norm.init(jax.random.key(0))
    >>> norm.apply(params, state, jnp.ones((2, 3, 4, 4)))[0].shape
    (2, 3, 4, 4)
    """

    num_features: int
    eps: float = 1e-5
    affine: bool = True
    dtype: Any = None
    param_dtype: Any = jnp.float32

    def __post_init__(self):
        name = "InstanceNorm2d"
        _util.positive(name, num_features=self.num_features)
        _util.set_field(self, "eps", _check_eps(name, self.eps))
        if not isinstance(self.affine, bool):
            raise ValueError(f"InstanceNorm2d: affine must be a bool, got {self.affine!r}")
        _util.numeric_fields(self)

    def init(self, key):
        c = self.num_features
        return ({"weight": jnp.ones((c,), self.param_dtype), "bias": jnp.zeros((c,), self.param_dtype)} if self.affine else {}), {}

    def apply(self, params, state, x, *, key=None, train=False):
        check_image(self, x, self.num_features)
        if x.shape[-2] * x.shape[-1] <= 1:
            raise ShapeError(self, "more than one spatial element (H * W > 1)", x.shape)
        out_dtype = _util.compute_dtype(self.dtype, x, *params.values())
        h = jnp.asarray(x).astype(_stats_dtype(x))
        mean = jnp.mean(h, axis=(-2, -1), keepdims=True)
        var = jnp.mean(jnp.square(h - mean), axis=(-2, -1), keepdims=True)
        y = (h - mean) * jax.lax.rsqrt(var + self.eps)
        if self.affine:
            y = y * _channel(params["weight"].astype(h.dtype), h.ndim) + _channel(params["bias"].astype(h.dtype), h.ndim)
        return y.astype(out_dtype), state
