"""Positions: learned and sinusoidal encodings added to ``x``, and rotary embeddings (RoPE).

Each layer reads positions along the second-to-last axis of ``x [..., seq, dim]``: element
``p`` of the sequence sits at position ``start_pos + p``. ``start_pos`` is a config field
(static) and can be overridden per call by ``apply(..., start_pos=...)``, which may be a
traced integer: KV-cache decoding under ``jax.jit`` moves it every token without retracing.
A static ``start_pos`` is checked against ``max_len`` at trace time; a traced one cannot
be (its value is unknown then), see each layer for what happens past ``max_len``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Integer

from tlean._core import Layer, ShapeError
from tlean.layers import _util


def _check_start(layer: Any, name: str) -> None:
    """Validate the ``start_pos`` field and store it as a Python int."""
    if not _util.is_int(layer.start_pos) or layer.start_pos < 0:
        raise ValueError(f"{name}: start_pos must be an int >= 0, got {layer.start_pos!r}")
    _util.set_field(layer, "start_pos", int(layer.start_pos))


def _positions(layer: Any, x: Any, dim: int, max_len: int, start_pos: Any) -> jax.Array:
    """Check ``x [..., seq, dim]`` and return the float32 positions ``start + arange(seq)``."""
    _util.check_float(layer, x)
    shape = jnp.shape(x)
    if len(shape) < 2 or shape[-1] != dim:
        raise ShapeError(layer, f"input [..., seq, {dim}]", shape)
    seq = shape[-2]
    start = layer.start_pos if start_pos is None else start_pos
    if _util.is_int(start):
        if start < 0:
            raise ValueError(f"{layer!r}: start_pos must be >= 0, got {start}")
        if start + seq > max_len:
            raise ShapeError(
                layer, f"at most {max_len - start} positions from start_pos={start} (max_len={max_len})", shape
            )
    else:
        start = jnp.asarray(start)
        if start.shape != () or not jnp.issubdtype(start.dtype, jnp.integer):
            raise TypeError(f"{layer!r}: start_pos must be an integer scalar, got {start.dtype}{list(start.shape)}")
        if seq > max_len:
            raise ShapeError(layer, f"at most {max_len} positions (max_len={max_len})", shape)
    return start + jnp.arange(seq)


def _inverse_frequencies(dim: int, pairs: int, base: float) -> jax.Array:
    """``base ** (-2i / dim)`` for ``i < pairs``, in float32."""
    return jnp.asarray(base ** (-2.0 * np.arange(pairs) / dim), jnp.float32)


_SCALINGS = ("linear", "llama3")


@dataclass(frozen=True)
class RopeScaling:
    """How a :class:`RoPE` rescales its frequencies for a longer context (transformers' ``rope_parameters``).

    ``rope_type="linear"`` divides every inverse frequency ``w_i = base^(-2i/d)`` by
    ``factor`` (position interpolation). ``rope_type="llama3"`` (Llama 3.1) keeps the high
    frequencies (wavelength ``2 pi / w_i`` below ``original_max_position_embeddings /
    high_freq_factor``), divides the low ones (wavelength above ``original_max_position_embeddings
    / low_freq_factor``) by ``factor`` and blends linearly in between with
    ``s = (original_max_position_embeddings / wavelength - low_freq_factor) / (high_freq_factor -
    low_freq_factor)``: ``w (1 - s) / factor + w s``. The formulas are transformers' 5.x
    ``_compute_linear_scaling_rope_parameters`` and ``_compute_llama3_parameters``.

    >>> from tlean.layers import RoPE, RopeScaling
    >>> rope = RoPE(64, 256, interleaved=False, base=500000.0,
    ...             scaling=RopeScaling("llama3", 8.0, 1.0, 4.0, 64))
    >>> float(rope.inverse_frequencies()[-1]) < 500000.0 ** (-62 / 64) / 7
    True
    """

    rope_type: str
    factor: float
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int = 8192

    def __post_init__(self):
        if self.rope_type not in _SCALINGS:
            raise ValueError(f"RopeScaling: rope_type must be one of {list(_SCALINGS)}, got {self.rope_type!r}")
        for name in ("factor", "low_freq_factor", "high_freq_factor"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) or not value > 0:
                raise ValueError(f"RopeScaling: {name} must be a number > 0, got {value!r}")
            object.__setattr__(self, name, float(value))
        _util.positive("RopeScaling", original_max_position_embeddings=self.original_max_position_embeddings)
        object.__setattr__(self, "original_max_position_embeddings", int(self.original_max_position_embeddings))
        if self.rope_type == "llama3" and not self.high_freq_factor > self.low_freq_factor:
            raise ValueError(
                f"RopeScaling: high_freq_factor={self.high_freq_factor} must exceed "
                f"low_freq_factor={self.low_freq_factor}"
            )

    def apply(self, inv_freq: np.ndarray) -> np.ndarray:
        """The rescaled inverse frequencies (float64 in, float64 out)."""
        if self.rope_type == "linear":
            return inv_freq / self.factor
        old = self.original_max_position_embeddings
        wavelength = 2 * np.pi / inv_freq
        scaled = np.where(wavelength > old / self.low_freq_factor, inv_freq / self.factor, inv_freq)
        smooth = (old / wavelength - self.low_freq_factor) / (self.high_freq_factor - self.low_freq_factor)
        blended = (1 - smooth) * scaled / self.factor + smooth * scaled
        medium = (wavelength >= old / self.high_freq_factor) & (wavelength <= old / self.low_freq_factor)
        return np.where(medium, blended, scaled)


@dataclass(frozen=True)
class LearnedPositionalEmbedding(Layer):
    """``y = x + weight[start_pos : start_pos + seq]``: a learned vector per position.

    Args:
      seq_len: the number of positions (the longest sequence).
      dim: the feature size.
      start_pos: position of the first element (overridable in ``apply``).
      param_dtype: storage dtype of ``weight``.

    Params:
      ``weight [seq_len, dim] ~ N(0, 1)``: the layout and init of the
      ``torch.nn.Embedding(seq_len, dim)`` that PyTorch code usually adds by position
      (``x + pos(torch.arange(seq))``), so its state_dict loads by the name ``weight``.

    Shapes:
      ``x [..., seq, dim] -> y`` of the same shape, ``seq <= seq_len - start_pos``; the
      positions broadcast over the leading axes. A traced ``start_pos`` cannot be checked
      at trace time; positions past ``seq_len`` then read NaN (never a clamped row).

    >>> import jax, jax.numpy as jnp
    >>> from tlean.layers import LearnedPositionalEmbedding
    >>> pos = LearnedPositionalEmbedding(16, 4)
    >>> params, state = pos.init(jax.random.key(0))
    >>> pos.apply(params, state, jnp.zeros((2, 5, 4)))[0].shape
    (2, 5, 4)
    """

    seq_len: int
    dim: int
    start_pos: int = 0
    dtype: Any = None
    param_dtype: Any = jnp.float32

    def __post_init__(self):
        _util.positive("LearnedPositionalEmbedding", seq_len=self.seq_len, dim=self.dim)
        _check_start(self, "LearnedPositionalEmbedding")
        _util.numeric_fields(self)

    def init(self, key: jax.Array) -> tuple[dict, dict]:
        return {"weight": jax.random.normal(key, (self.seq_len, self.dim), self.param_dtype)}, {}

    def apply(
        self,
        params: dict,
        state: dict,
        x: Float[Array, "*batch seq dim"],
        *,
        key=None,
        train=False,
        start_pos: int | jax.Array | None = None,
    ):
        positions = _positions(self, x, self.dim, self.seq_len, start_pos)
        dtype = _util.compute_dtype(self.dtype, x, params["weight"])
        table = jnp.take(params["weight"].astype(dtype), positions, axis=0, mode="fill", fill_value=jnp.nan)
        return x.astype(dtype) + _util.trailing(table, x.ndim), state


@dataclass(frozen=True)
class SinusoidalPositionalEncoding(Layer):
    """``y = x + PE[start_pos : start_pos + seq]``, the fixed encoding of "Attention is all you need".

    ``PE[p, 2i] = sin(p / 10000^(2i/dim))`` and ``PE[p, 2i+1] = cos(p / 10000^(2i/dim))``
    (an odd ``dim`` ends with a sine). Nothing is trained or stored: the encoding is
    computed in float32 from the formula and added in the input's dtype.

    PyTorch analogue: none in ``torch.nn``; this is the ``PositionalEncoding`` module of
    PyTorch's Transformer tutorial, without its dropout (add a ``Dropout`` after it).

    Args:
      dim: the feature size.
      max_len: the number of positions a static ``start_pos + seq`` may reach.
      start_pos: position of the first element (overridable in ``apply``).
      base: the ``10000`` of the formula.

    Shapes:
      ``x [..., seq, dim] -> y`` of the same shape. A traced ``start_pos`` is not checked
      against ``max_len``; the formula holds at any position.

    >>> import jax.numpy as jnp
    >>> from tlean.layers import SinusoidalPositionalEncoding
    >>> pe = SinusoidalPositionalEncoding(4, max_len=8)
    >>> y, _ = pe.apply({}, {}, jnp.zeros((1, 2, 4)))
    >>> [round(float(v), 3) for v in y[0, 1]]  # position 1: sin 1, cos 1, sin 0.01, cos 0.01
    [0.841, 0.54, 0.01, 1.0]
    """

    dim: int
    max_len: int = 5000
    start_pos: int = 0
    base: float = 10000.0

    def __post_init__(self):
        _util.positive("SinusoidalPositionalEncoding", dim=self.dim, max_len=self.max_len)
        _check_start(self, "SinusoidalPositionalEncoding")
        if not self.base > 0:
            raise ValueError(f"SinusoidalPositionalEncoding: base must be > 0, got {self.base!r}")
        _util.set_field(self, "base", float(self.base))

    def apply(
        self,
        params: dict,
        state: dict,
        x: Float[Array, "*batch seq dim"],
        *,
        key=None,
        train=False,
        start_pos: int | jax.Array | None = None,
    ):
        positions = _positions(self, x, self.dim, self.max_len, start_pos)
        pairs = (self.dim + 1) // 2
        angles = positions.astype(jnp.float32)[:, None] * _inverse_frequencies(self.dim, pairs, self.base)[None, :]
        pe = jnp.stack([jnp.sin(angles), jnp.cos(angles)], axis=-1).reshape(positions.shape[0], 2 * pairs)
        return x + _util.trailing(pe[:, : self.dim].astype(x.dtype), x.ndim), state


@dataclass(frozen=True)
class RoPE(Layer):
    """Rotary position embedding: rotate feature pairs by the angle ``(start_pos + p) / base^(2i/head_dim)``.

    With ``interleaved=True`` (TorchLean's ``rotatePairs``, the RoFormer/GPT-J layout) pair
    ``i`` is ``(x[2i], x[2i+1])``; with ``interleaved=False`` (GPT-NeoX/Llama) it is
    ``(x[i], x[i + head_dim/2])``. Each pair ``(a, b)`` becomes
    ``(a cos t - b sin t, a sin t + b cos t)``. With an odd ``head_dim`` (interleaved only)
    the last element is left unchanged. Applied to queries and keys, the dot product of a
    query at ``p`` and a key at ``p'`` depends on ``p - p'`` only. ``scaling`` (a
    :class:`RopeScaling`) rescales the frequencies for long contexts (Llama 3.1's ``"llama3"``).

    PyTorch analogue: none in ``torch.nn``. The rotation is computed in float32 and cast
    back to the input dtype.

    Args:
      head_dim: the size of the last axis (at least 2; even when ``interleaved=False``).
      max_len: the number of positions a static ``start_pos + seq`` may reach.
      start_pos: position of the first element (overridable in ``apply``).
      interleaved: pair layout, see above.
      base: the ``10000`` of the angle (transformers' ``rope_theta``).
      scaling: a :class:`RopeScaling`, or ``None`` for the plain frequencies.

    Apply keywords: ``start_pos`` (see above) or ``position_ids``, an integer array of
    explicit positions whose shape broadcasts against ``x.shape[:-1]`` (``[seq]``, or
    ``[batch, 1, seq]`` for ``x [batch, heads, seq, head_dim]``; transformers'
    ``position_ids``, e.g. shifted by left padding). Explicit positions are not checked
    against ``max_len`` (their values are not known at trace time).

    Shapes:
      ``x [batch, heads, seq, head_dim]`` (any leading axes: ``[..., seq, head_dim]``)
      ``-> y`` of the same shape. A traced ``start_pos`` is not checked against ``max_len``.

    >>> import jax, jax.numpy as jnp
    >>> from tlean.layers import RoPE
    >>> rope = RoPE(4, max_len=16)
    >>> q = jax.random.normal(jax.random.key(0), (2, 3, 5, 4))
    >>> y, _ = rope.apply({}, {}, q)
    >>> bool(jnp.allclose(jnp.linalg.norm(y, axis=-1), jnp.linalg.norm(q, axis=-1), atol=1e-5))
    True
    """

    head_dim: int
    max_len: int = 4096
    start_pos: int = 0
    interleaved: bool = True
    base: float = 10000.0
    scaling: RopeScaling | None = None

    def __post_init__(self):
        _util.positive("RoPE", head_dim=self.head_dim, max_len=self.max_len)
        if self.scaling is not None and not isinstance(self.scaling, RopeScaling):
            raise TypeError(
                f"RoPE: scaling must be a tlean.layers.RopeScaling or None, got {type(self.scaling).__name__}"
            )
        _check_start(self, "RoPE")
        if self.head_dim < 2:
            raise ValueError(f"RoPE: head_dim must be at least 2 (one pair to rotate), got {self.head_dim}")
        if not self.interleaved and self.head_dim % 2:
            raise ValueError(
                f"RoPE: the half-split layout (interleaved=False) needs an even head_dim, got {self.head_dim}; "
                "use interleaved=True, which leaves an odd last element unchanged"
            )
        if not self.base > 0:
            raise ValueError(f"RoPE: base must be > 0, got {self.base!r}")
        _util.set_field(self, "interleaved", bool(self.interleaved))
        _util.set_field(self, "base", float(self.base))

    def inverse_frequencies(self) -> jax.Array:
        """``[head_dim // 2]`` float32: ``base^(-2i / head_dim)``, rescaled by ``scaling``."""
        pairs = self.head_dim // 2
        if self.scaling is None:
            return _inverse_frequencies(self.head_dim, pairs, self.base)
        plain = self.base ** (-2.0 * np.arange(pairs) / self.head_dim)
        return jnp.asarray(self.scaling.apply(plain), jnp.float32)

    def apply(
        self,
        params: dict,
        state: dict,
        x: Float[Array, "*batch seq head_dim"],
        *,
        key=None,
        train=False,
        start_pos: int | jax.Array | None = None,
        position_ids: Integer[Array, "..."] | None = None,
    ):
        if position_ids is None:
            positions = _util.trailing(_positions(self, x, self.head_dim, self.max_len, start_pos), x.ndim - 1)
        else:
            positions = self._explicit(x, start_pos, position_ids)
        angles = positions.astype(jnp.float32)[..., None] * _util.trailing(self.inverse_frequencies(), x.ndim)
        cos, sin = jnp.cos(angles), jnp.sin(angles)
        pairs = self.head_dim // 2
        h = x.astype(jnp.promote_types(x.dtype, jnp.float32))
        if self.interleaved:
            even, odd = h[..., 0 : 2 * pairs : 2], h[..., 1 : 2 * pairs : 2]
        else:
            even, odd = h[..., :pairs], h[..., pairs:]
        first, second = even * cos - odd * sin, even * sin + odd * cos
        if self.interleaved:
            rotated = jnp.stack([first, second], axis=-1).reshape(h.shape[:-1] + (2 * pairs,))
            y = jnp.concatenate([rotated, h[..., 2 * pairs :]], axis=-1)
        else:
            y = jnp.concatenate([first, second], axis=-1)
        return y.astype(x.dtype), state

    def _explicit(self, x: Any, start_pos: Any, position_ids: Any) -> jax.Array:
        """Check ``x`` and ``position_ids`` (integers broadcasting against ``x.shape[:-1]``), rank-matched to it."""
        _util.check_float(self, x)
        shape = jnp.shape(x)
        if len(shape) < 2 or shape[-1] != self.head_dim:
            raise ShapeError(self, f"input [..., seq, {self.head_dim}]", shape)
        if start_pos is not None:
            raise TypeError(f"{self!r}: pass start_pos or position_ids, not both")
        dtype = getattr(position_ids, "dtype", None)
        if dtype is None or not jnp.issubdtype(dtype, jnp.integer):
            raise TypeError(
                f"{self!r}: position_ids must be an integer array, got "
                f"{dtype if dtype is not None else type(position_ids).__name__}"
            )
        lead, pos_shape = shape[:-1], jnp.shape(position_ids)
        try:
            fits = len(pos_shape) <= len(lead) and np.broadcast_shapes(pos_shape, lead) == lead
        except ValueError:
            fits = False
        if not fits:
            raise ShapeError(self, f"position_ids broadcasting against the input's {tuple(lead)}", pos_shape)
        return _util.trailing(position_ids, len(lead))
