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
from jaxtyping import Array, Float

from tlean._core import Layer, ShapeError
from tlean.layers import _util


def _check_start(layer: Layer, name: str) -> None:
    """Validate the ``start_pos`` field and store it as a Python int."""
    if not _util.is_int(layer.start_pos) or layer.start_pos < 0:
        raise ValueError(f"{name}: start_pos must be an int >= 0, got {layer.start_pos!r}")
    _util.set_field(layer, "start_pos", int(layer.start_pos))


def _positions(layer: Layer, x: Any, dim: int, max_len: int, start_pos: Any) -> jax.Array:
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
            raise ShapeError(layer, f"at most {max_len - start} positions from start_pos={start} (max_len={max_len})",
                             shape)
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

    def apply(self, params: dict, state: dict, x: Float[Array, "*batch seq dim"], *, key=None, train=False,
              start_pos: int | jax.Array | None = None):
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

    def apply(self, params: dict, state: dict, x: Float[Array, "*batch seq dim"], *, key=None, train=False,
              start_pos: int | jax.Array | None = None):
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
    query at ``p`` and a key at ``p'`` depends on ``p - p'`` only.

    PyTorch analogue: none in ``torch.nn``. The rotation is computed in float32 and cast
    back to the input dtype.

    Args:
      head_dim: the size of the last axis (at least 2; even when ``interleaved=False``).
      max_len: the number of positions a static ``start_pos + seq`` may reach.
      start_pos: position of the first element (overridable in ``apply``).
      interleaved: pair layout, see above.
      base: the ``10000`` of the angle.

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

    def __post_init__(self):
        _util.positive("RoPE", head_dim=self.head_dim, max_len=self.max_len)
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

    def apply(self, params: dict, state: dict, x: Float[Array, "*batch seq head_dim"], *, key=None, train=False,
              start_pos: int | jax.Array | None = None):
        positions = _positions(self, x, self.head_dim, self.max_len, start_pos)
        pairs = self.head_dim // 2
        angles = positions.astype(jnp.float32)[:, None] * _inverse_frequencies(self.head_dim, pairs, self.base)[None, :]
        cos, sin = _util.trailing(jnp.cos(angles), x.ndim), _util.trailing(jnp.sin(angles), x.ndim)
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

