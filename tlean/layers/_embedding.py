"""Token embeddings: a table ``weight [num_embeddings, embedding_dim]`` read by id or by distribution,
and bags of ids reduced to one vector (``EmbeddingBag``)."""

from __future__ import annotations

import numbers
from dataclasses import KW_ONLY, dataclass
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Integer

from tlean._core import Layer, ShapeError
from tlean.layers import _util

_sg = jax.lax.stop_gradient


class _Table(Layer):
    """What Embedding and EmbeddingBag share: the table, its init, ``padding_idx`` and ``max_norm``."""

    if TYPE_CHECKING:  # fields both subclasses declare (not fields of this base)
        num_embeddings: int
        embedding_dim: int
        padding_idx: int | None
        max_norm: float | None
        norm_type: float
        scale_grad_by_freq: bool
        sparse: bool
        _weight: Any
        param_dtype: Any

    def _check_table(self) -> None:
        name = type(self).__name__
        _util.positive(name, num_embeddings=self.num_embeddings, embedding_dim=self.embedding_dim)
        if self.padding_idx is not None:
            if not _util.is_int(self.padding_idx) or not -self.num_embeddings <= self.padding_idx < self.num_embeddings:
                raise ValueError(
                    f"{name}: padding_idx must be an int in [-{self.num_embeddings}, {self.num_embeddings}), "
                    f"got {self.padding_idx!r}"
                )
            _util.set_field(self, "padding_idx", int(self.padding_idx) % self.num_embeddings)  # torch's rule
        if self.max_norm is not None:
            if (
                isinstance(self.max_norm, bool)
                or not isinstance(self.max_norm, numbers.Real)
                or not float(self.max_norm) > 0
            ):
                raise ValueError(f"{name}: max_norm must be a number > 0 or None, got {self.max_norm!r}")
            _util.set_field(self, "max_norm", float(self.max_norm))
        if (
            isinstance(self.norm_type, bool)
            or not isinstance(self.norm_type, numbers.Real)
            or not float(self.norm_type) > 0
        ):
            raise ValueError(f"{name}: norm_type must be a number > 0, got {self.norm_type!r}")
        _util.set_field(self, "norm_type", float(self.norm_type))
        for flag in ("scale_grad_by_freq", "sparse"):
            _util.set_field(self, flag, _util.check_flag(name, flag, getattr(self, flag)))
        if self.sparse:
            raise ValueError(f"{name}: sparse=True is not supported: JAX gradients are dense arrays")
        if self._weight is not None:
            raise ValueError(
                f"{name}: _weight is not supported: load a table with tlean.interop.load_torch_state_dict "
                "or Model.replace(params={'weight': ...})"
            )
        _util.numeric_fields(self)

    def init(self, key: jax.Array) -> tuple[dict, dict]:
        weight = jax.random.normal(key, (self.num_embeddings, self.embedding_dim), self.param_dtype)
        if self.padding_idx is not None:
            weight = weight.at[self.padding_idx].set(0)
        return {"weight": weight}, {}

    def _table(self, weight: jax.Array) -> jax.Array:
        """The table as the forward reads it: the ``padding_idx`` row gets no gradient."""
        if self.padding_idx is None:
            return weight
        is_pad = (jnp.arange(self.num_embeddings) == self.padding_idx)[:, None]
        return jnp.where(is_pad, _sg(weight), weight)

    def _renorm(self, rows: jax.Array) -> jax.Array:
        """Rows with a ``norm_type``-norm above ``max_norm`` scaled to ``max_norm / (norm + 1e-7)``.

        torch rescales the table in place under ``no_grad`` before the lookup, so the
        scaling is not differentiated: the value is the rescaled row, the gradient flows
        to the stored row unscaled. The same holds here, functionally (the stored table
        does not change).
        """
        if self.max_norm is None:
            return rows
        norm = jnp.sum(jnp.abs(rows) ** self.norm_type, axis=-1, keepdims=True) ** (1.0 / self.norm_type)
        scale = jnp.where(norm > self.max_norm, self.max_norm / (norm + 1e-7), 1.0)
        return _sg(rows * scale) + (rows - _sg(rows))

    def _gather(self, weight: jax.Array, ids: jax.Array) -> jax.Array:
        """``weight[ids]``, NaN rows for ids outside ``[0, num_embeddings)``, renormalised, frequency-scaled gradients."""
        ids = jnp.where(ids < 0, self.num_embeddings, ids)  # negative ids are out of range, not wrapped
        rows = self._renorm(jnp.take(self._table(weight), ids, axis=0, mode="fill", fill_value=jnp.nan))
        if self.scale_grad_by_freq:
            counts = jnp.zeros((self.num_embeddings,), rows.dtype).at[ids.ravel()].add(1, mode="drop")
            freq = jnp.take(counts, ids, mode="fill", fill_value=1)[..., None]
            rows = _sg(rows) + (rows - _sg(rows)) / freq  # the value unchanged, the gradient divided by the count
        return rows


@dataclass(frozen=True)
class Embedding(_Table):
    """Look up rows of ``weight [num_embeddings, embedding_dim]``, by id or by distribution.

    Two inputs share the one table:

    - integer ids ``[...] -> [..., embedding_dim]``, a gather (``torch.nn.Embedding``);
    - a float one-hot or soft distribution over the vocabulary ``[..., num_embeddings]
      -> [..., embedding_dim]``, the matmul ``x @ weight`` (TorchLean's form, which makes
      the output differentiable in the token distribution). For one-hot rows both agree.

    PyTorch analogue: ``torch.nn.Embedding(num_embeddings, embedding_dim, padding_idx,
    max_norm, norm_type, scale_grad_by_freq, sparse)``; same name, layout and init
    (``weight ~ N(0, 1)``, the ``padding_idx`` row zero).

    - ``padding_idx``: that row starts at zero and never gets a gradient (a loaded
      non-zero row is returned as stored, as in torch).
    - ``max_norm``: looked-up rows whose ``norm_type``-norm exceeds it are rescaled to
      ``max_norm`` in the output. What differs: torch rescales the stored table *in place*;
      here the forward is functional, the table in ``params`` is never modified, so the
      rescaling happens on every call (the outputs agree with torch's, and the stored row
      gets the same unscaled gradient). For distributions every row is rescaled.
    - ``scale_grad_by_freq``: the gradient of each looked-up row is divided by the number of
      times its id occurs in the input (ids only).
    - ``sparse=True`` is refused (JAX gradients are dense), as is ``_weight``.

    Ids outside ``[0, num_embeddings)`` cannot be checked at trace time (their values are
    not known then): where PyTorch raises ``IndexError``, the gather here uses
    ``mode="fill"`` and returns a row of NaN for such an id (negative ids included, which
    NumPy-style indexing would otherwise wrap), so a bad id is never silently clamped into
    a valid row; its gradient into ``weight`` is zero.

    Args:
      num_embeddings: vocabulary size.
      embedding_dim: size of each embedding vector.
      padding_idx: a row kept out of training (negative counts from the end, as in torch).
      max_norm: renormalise looked-up rows to at most this norm.
      norm_type: the ``p`` of that norm.
      scale_grad_by_freq: scale gradients by the inverse frequency of the ids in the input.
      sparse: must be False.
      dtype: computation (output) dtype; ``None`` uses the result type of the weight
        (ids) or of input and weight (distributions).
      param_dtype: storage dtype of ``weight`` (torch's factory ``dtype``).
      precision: ``jax.lax.Precision`` of the distribution matmul.

    >>> import jax, jax.numpy as jnp
    >>> from tlean.layers import Embedding
    >>> emb = Embedding(10, 4, padding_idx=0)
    >>> params, state = emb.init(jax.random.key(0))
    >>> ids = jnp.array([[1, 2, 0]])
    >>> y = emb.apply(params, state, ids)[0]
    >>> y.shape, bool((y[0, 2] == 0).all())
    ((1, 3, 4), True)
    >>> one_hot = jax.nn.one_hot(ids, 10)
    >>> bool(jnp.allclose(emb.apply(params, state, one_hot)[0], y))
    True
    """

    num_embeddings: int
    embedding_dim: int
    padding_idx: int | None = None
    max_norm: float | None = None
    norm_type: float = 2.0
    scale_grad_by_freq: bool = False
    sparse: bool = False
    _weight: Any = None
    _: KW_ONLY
    dtype: Any = _util.checked(_util.check_dtype, None)
    param_dtype: Any = _util.checked(_util.check_param_dtype, jnp.float32)
    precision: Any = None

    def __post_init__(self):
        self._check_table()

    def apply(
        self,
        params: dict,
        state: dict,
        x: Integer[Array, "*batch"] | Float[Array, "*batch vocab"],
        *,
        key=None,
        train=False,
    ):
        weight = params["weight"]
        dtype = getattr(x, "dtype", None)
        if dtype is not None and jnp.issubdtype(dtype, jnp.integer):
            out_dtype = _util.compute_dtype(self.dtype, weight)
            return self._gather(weight.astype(out_dtype), x), state
        if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(
                f"{self!r}: expected integer ids or a floating-point distribution over the vocabulary, "
                f"got {dtype if dtype is not None else type(x).__name__}"
            )
        _util.check_features(self, x, self.num_embeddings, "a distribution")
        if self.scale_grad_by_freq:
            raise TypeError(f"{self!r}: scale_grad_by_freq needs integer ids, got a distribution ({dtype})")
        out_dtype = _util.compute_dtype(self.dtype, x, weight)
        table = self._renorm(self._table(weight.astype(out_dtype)))
        return jnp.matmul(x.astype(out_dtype), table, precision=self.precision), state


@dataclass(frozen=True)
class EmbeddingBag(_Table):
    """Sum, mean or max of the embeddings of each bag of ids, without materialising the rows per bag.

    Bags are given either as a 2-D input ``[B, L]`` (each row a bag of ``L`` ids) or as a
    1-D input ``[n]`` of concatenated ids with ``offsets=[B]``, the start of each bag
    (``[B + 1]`` with ``include_last_offset=True``, the last entry then ending the last bag).
    ``per_sample_weights`` (the input's shape, ``mode="sum"`` only) weighs each id.
    Ids equal to ``padding_idx`` are left out of their bag (and of the mean's count); an
    empty bag gives zeros, as in torch.

    PyTorch analogue: ``torch.nn.EmbeddingBag(num_embeddings, embedding_dim, max_norm,
    norm_type, scale_grad_by_freq, mode, sparse, _weight, include_last_offset,
    padding_idx)``, same arguments, layout and init; forward ``(input, offsets,
    per_sample_weights)`` is ``apply(params, state, x, *, offsets=None,
    per_sample_weights=None)``. ``max_norm`` works as in :class:`Embedding` (functional).
    ``scale_grad_by_freq=True`` is refused (torch's bag gradients with it do not divide each
    row by its id's count), as are ``sparse=True`` and ``_weight``.
    The offsets are values, so they are not checked at trace time: torch requires
    ``offsets[0] == 0`` and non-decreasing offsets, and ids before the first offset are
    dropped here.

    Shapes: ``[B, L] -> [B, embedding_dim]``; ``[n]`` with ``offsets [B]`` (or ``[B + 1]``)
    ``-> [B, embedding_dim]``.

    >>> import jax, jax.numpy as jnp
    >>> from tlean.layers import EmbeddingBag
    >>> bag = EmbeddingBag(10, 3, mode="sum")
    >>> params, state = bag.init(jax.random.key(0))
    >>> bag.apply(params, state, jnp.array([1, 2, 4, 5]), offsets=jnp.array([0, 3]))[0].shape
    (2, 3)
    """

    num_embeddings: int
    embedding_dim: int
    max_norm: float | None = None
    norm_type: float = 2.0
    scale_grad_by_freq: bool = False
    mode: str = "mean"
    sparse: bool = False
    _weight: Any = None
    include_last_offset: bool = False
    padding_idx: int | None = None
    _: KW_ONLY
    dtype: Any = _util.checked(_util.check_dtype, None)
    param_dtype: Any = _util.checked(_util.check_param_dtype, jnp.float32)

    inputs = ("offsets", "per_sample_weights")  # Model(x, ...) maps further positional inputs onto these keywords

    def __post_init__(self):
        if self.mode not in ("sum", "mean", "max"):
            raise ValueError(f"EmbeddingBag: mode must be 'sum', 'mean' or 'max', got {self.mode!r}")
        _util.set_field(
            self,
            "include_last_offset",
            _util.check_flag("EmbeddingBag", "include_last_offset", self.include_last_offset),
        )
        if self.scale_grad_by_freq is True:  # torch 2.13's bag gradients do not follow its documented rule either
            raise ValueError(
                "EmbeddingBag: scale_grad_by_freq=True is not supported; use Embedding and reduce the rows"
            )
        self._check_table()

    def apply(self, params, state, x, *, offsets=None, per_sample_weights=None, key=None, train=False):
        dtype = getattr(x, "dtype", None)
        if dtype is None or not jnp.issubdtype(dtype, jnp.integer):
            raise TypeError(f"{self!r}: expected integer ids, got {dtype if dtype is not None else type(x).__name__}")
        x = jnp.asarray(x)
        if x.ndim == 2:
            if offsets is not None:
                raise ShapeError(
                    self,
                    "offsets=None with a 2-D input [B, L] (each row a bag)",
                    f"offsets of shape {jnp.shape(offsets)}",
                )
            bags = x.shape[0]
            segment = jnp.repeat(jnp.arange(bags), x.shape[1])
        elif x.ndim == 1:
            extra = 1 if self.include_last_offset else 0
            if offsets is None or jnp.ndim(offsets) != 1 or jnp.shape(offsets)[0] < extra:
                raise ShapeError(
                    self,
                    f"offsets [B{' + 1' if extra else ''}] (integers) with a 1-D input",
                    f"offsets {None if offsets is None else jnp.shape(offsets)}",
                )
            bags = jnp.shape(offsets)[0] - extra
            starts = jnp.asarray(offsets)[:bags]
            segment = jnp.searchsorted(starts, jnp.arange(x.shape[0]), side="right") - 1
            if extra:  # ids at or past the last offset belong to no bag
                segment = jnp.where(jnp.arange(x.shape[0]) < jnp.asarray(offsets)[-1], segment, bags)
            segment = jnp.where(segment < 0, bags, segment)  # before the first offset: dropped
        else:
            raise ShapeError(self, "input [B, L] or [n] with offsets", x.shape)
        out_dtype = _util.compute_dtype(self.dtype, params["weight"])
        rows = self._gather(params["weight"].astype(out_dtype), x).reshape(-1, self.embedding_dim)
        ids, segment = x.reshape(-1), segment.reshape(-1)
        valid = jnp.ones(ids.shape, bool) if self.padding_idx is None else ids != self.padding_idx
        if per_sample_weights is not None:
            if self.mode != "sum":
                raise ValueError(f"{self!r}: per_sample_weights needs mode='sum', got mode={self.mode!r}")
            if jnp.shape(per_sample_weights) != x.shape:
                raise ShapeError(
                    self, f"per_sample_weights of the input's shape {x.shape}", jnp.shape(per_sample_weights)
                )
            _util.check_float(self, per_sample_weights)
            rows = rows * jnp.asarray(per_sample_weights).reshape(-1, 1).astype(out_dtype)
        if self.mode == "max":
            rows = jnp.where(valid[:, None], rows, -jnp.inf)
            y = jax.ops.segment_max(rows, segment, num_segments=bags)
            return jnp.where(jnp.isneginf(y), jnp.zeros((), y.dtype), y), state
        y = jax.ops.segment_sum(jnp.where(valid[:, None], rows, jnp.zeros((), rows.dtype)), segment, num_segments=bags)
        if self.mode == "mean":
            count = jax.ops.segment_sum(valid.astype(out_dtype), segment, num_segments=bags)
            y = y / jnp.maximum(count, 1)[:, None]
        return y, state
