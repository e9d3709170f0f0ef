"""Multi-head self-attention on ``jax.nn.dot_product_attention``, with PyTorch's parameters and a KV cache."""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, Bool, Float

from tlean._core import Layer, ShapeError
from tlean.layers import _init, _util

_IMPLEMENTATIONS = (None, "xla", "cudnn")


@dataclass(frozen=True)
class MultiheadAttention(Layer):
    """Multi-head self-attention ``softmax(q k^T / sqrt(head_dim) + bias) v`` on ``(batch, seq, embed)``.

    ``q, k, v = x @ in_proj_weight.T + in_proj_bias`` split in three and into
    ``num_heads`` heads of ``head_dim = embed_dim // num_heads``; the heads are attended
    with ``jax.nn.dot_product_attention`` (so ``implementation="cudnn"`` gets the fused
    GPU kernel where cuDNN supports the dtype and shapes), concatenated and projected by
    ``out_proj``.

    PyTorch analogue: ``torch.nn.MultiheadAttention(embed_dim, num_heads, dropout, bias,
    batch_first=True)`` called as ``mha(x, x, x, need_weights=False)``; same parameter
    names, layouts and init (``in_proj_weight`` xavier-uniform, ``out_proj.weight``
    U(-1/sqrt(E), 1/sqrt(E)), both biases zero). Differences: self-attention only (no
    ``kdim``/``vdim``, ``add_bias_kv``, ``add_zero_attn``), the attention weights are not
    returned, and a query whose keys are all masked gets all-zero weights (its output is
    ``out_proj.bias``, its gradients finite), as PyTorch's ``need_weights=False`` path
    gives too (its ``need_weights=True`` path returns NaN there).

    Masks (apply keywords; at most one of ``mask`` and ``attn_mask``):

    - ``mask``: boolean, **True = may attend** (``jax.nn.dot_product_attention``'s and
      TorchLean's convention), ``[seq, seq]`` or ``[batch|1, heads|1, seq, seq]``.
    - ``attn_mask``: PyTorch's meaning, the **opposite**: a boolean True (or a float
      ``-inf``) blocks; a float mask is added to the logits. ``[seq, seq]`` or
      ``[batch * heads, seq, seq]``, as PyTorch takes it.
    - ``key_padding_mask``: PyTorch's meaning, ``[batch, seq]`` (``[seq]`` unbatched),
      True (or ``-inf``) marks a padded key that no query may attend.

    ``causal=True`` adds the causal mask (query ``t`` sees keys ``<= t``) to any of them.
    The masks are plain arrays, not checked for content; their shapes and dtypes are
    checked at trace time.

    Args:
      embed_dim: model width ``E``, divisible by ``num_heads``.
      num_heads: number of heads.
      bias: whether the in and out projections have biases.
      causal: apply the causal mask.
      dropout: drop probability of the attention weights in training (PyTorch's
        ``dropout``); a training call with ``dropout > 0`` computes the attention by hand
        (the fused kernels take no dropout) and needs a ``key``.
      implementation: passed to ``jax.nn.dot_product_attention``: ``None`` (JAX's
        choice), ``"xla"`` or ``"cudnn"``.
      dtype, param_dtype, precision: computation dtype, storage dtype, and the precision
        of the projections (the attention matmuls follow ``jax_default_matmul_precision``).

    Shapes:
      ``x [batch, seq, embed_dim]`` or unbatched ``[seq, embed_dim]`` -> ``y`` of the same shape.

    KV cache (causal decoding, see :meth:`init_cache` and :meth:`decode`): prefill a prompt,
    then extend it a few tokens at a time with a fixed-size cache, positions given by
    ``start_pos``.

    >>> import jax, jax.numpy as jnp
    >>> from tlean.layers import MultiheadAttention
    >>> mha = MultiheadAttention(8, 2, causal=True)
    >>> params, state = mha.init(jax.random.key(0))
    >>> x = jax.random.normal(jax.random.key(1), (3, 5, 8))
    >>> y, _ = mha.apply(params, state, x)
    >>> cache = mha.init_cache(3, max_len=16)
    >>> y1, cache = mha.decode(params, cache, x[:, :4], 0)   # prefill 4 positions
    >>> y2, cache = mha.decode(params, cache, x[:, 4:], 4)   # then one more
    >>> bool(jnp.allclose(jnp.concatenate([y1, y2], axis=1), y, atol=1e-5))
    True
    """

    embed_dim: int
    num_heads: int
    bias: bool = True
    causal: bool = False
    dropout: float = 0.0
    implementation: str | None = None
    dtype: Any = None
    param_dtype: Any = jnp.float32
    precision: Any = None

    def __post_init__(self):
        _util.positive("MultiheadAttention", embed_dim=self.embed_dim, num_heads=self.num_heads)
        if self.embed_dim % self.num_heads:
            raise ValueError(
                f"MultiheadAttention: embed_dim={self.embed_dim} must be divisible by num_heads={self.num_heads}"
            )
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, numbers.Real) or not 0 <= self.dropout < 1:
            raise ValueError(f"MultiheadAttention: dropout must be a probability in [0, 1), got {self.dropout!r}")
        if self.implementation not in _IMPLEMENTATIONS:
            raise ValueError(f"MultiheadAttention: implementation must be one of {_IMPLEMENTATIONS}, "
                             f"got {self.implementation!r}")
        _util.set_field(self, "bias", bool(self.bias))
        _util.set_field(self, "causal", bool(self.causal))
        _util.set_field(self, "dropout", float(self.dropout))
        _util.numeric_fields(self)

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    def init(self, key: jax.Array) -> tuple[dict, dict]:
        e, dtype = self.embed_dim, self.param_dtype
        k_in, k_out = jax.random.split(key)
        params = {"in_proj_weight": _init.xavier_uniform(k_in, (3 * e, e), dtype=dtype)}
        if self.bias:
            params["in_proj_bias"] = jnp.zeros((3 * e,), dtype)
        params["out_proj"] = {"weight": _init.uniform(k_out, (e, e), _init.fan_in_bound(e), dtype)}
        if self.bias:
            params["out_proj"]["bias"] = jnp.zeros((e,), dtype)
        return params, {}

    # -- full-sequence attention ------------------------------------------------------------
    def apply(
        self,
        params: dict,
        state: dict,
        x: Float[Array, "*batch seq embed"],
        *,
        key: jax.Array | None = None,
        train: bool = False,
        mask: Bool[Array, "..."] | None = None,
        attn_mask: Array | None = None,
        key_padding_mask: Array | None = None,
    ):
        self._check_input(x)
        unbatched = x.ndim == 2
        if unbatched:
            x = x[None]
            if key_padding_mask is not None and jnp.ndim(key_padding_mask) == 1:
                key_padding_mask = jnp.asarray(key_padding_mask)[None]
        batch, seq = x.shape[0], x.shape[1]
        allowed, bias = self._masks(batch, seq, mask, attn_mask, key_padding_mask)
        dtype = _util.compute_dtype(self.dtype, x, params["in_proj_weight"])
        q, k, v = self._project_in(params, x, dtype)
        if train and self.dropout > 0:
            if key is None:
                raise ValueError(
                    f"{self!r} in train mode with dropout={self.dropout} needs a dropout key: pass key=..."
                )
            o = self._attend_by_hand(q, k, v, allowed, bias, key)
        else:
            o = self._attend(q, k, v, allowed, bias)
        y = self._project_out(params, o, dtype)
        return (y[0] if unbatched else y), state

    def _check_input(self, x: Any) -> None:
        _util.check_float(self, x)
        if jnp.ndim(x) not in (2, 3) or jnp.shape(x)[-1] != self.embed_dim:
            raise ShapeError(self, f"input [batch, seq, {self.embed_dim}] or [seq, {self.embed_dim}]", jnp.shape(x))

    def _project_in(self, params: dict, x: jax.Array, dtype: Any) -> tuple[jax.Array, jax.Array, jax.Array]:
        """``q, k, v [batch, seq, heads, head_dim]``."""
        qkv = jnp.matmul(x.astype(dtype), params["in_proj_weight"].astype(dtype).T, precision=self.precision)
        if self.bias:
            qkv = _util.add_bias(qkv, params["in_proj_bias"].astype(dtype))
        shape = x.shape[:2] + (self.num_heads, self.head_dim)
        return tuple(part.reshape(shape) for part in jnp.split(qkv, 3, axis=-1))

    def _project_out(self, params: dict, o: jax.Array, dtype: Any) -> jax.Array:
        o = o.reshape(o.shape[:2] + (self.embed_dim,))
        y = jnp.matmul(o, params["out_proj"]["weight"].astype(dtype).T, precision=self.precision)
        if self.bias:
            y = _util.add_bias(y, params["out_proj"]["bias"].astype(dtype))
        return y

    def _attend(self, q, k, v, allowed, bias) -> jax.Array:
        """``jax.nn.dot_product_attention``; rows with no allowed key are set to zero."""
        o = jax.nn.dot_product_attention(q, k, v, bias=None if bias is None else bias.astype(q.dtype), mask=allowed,
                                         is_causal=self.causal, implementation=self.implementation)
        return o if allowed is None else _zero_empty_rows(o, self._with_causal(allowed))

    def _attend_by_hand(self, q, k, v, allowed, bias, key) -> jax.Array:
        """The same attention written out, with dropout on the weights (training only)."""
        scale = 1.0 / np.sqrt(self.head_dim)
        logits = jnp.einsum("btnh,bsnh->bnts", q, k, preferred_element_type=jnp.float32) * scale
        if bias is not None:
            logits = logits + bias.astype(jnp.float32)
        full = self._with_causal(allowed if allowed is not None else jnp.ones((1, 1) + logits.shape[2:], bool))
        logits = jnp.where(full, logits, -jnp.inf)
        rows_ok = jnp.any(full, axis=-1, keepdims=True)
        weights = jax.nn.softmax(jnp.where(rows_ok, logits, 0.0), axis=-1)
        weights = jnp.where(full & rows_ok, weights, 0.0)
        keep = jax.random.bernoulli(key, 1.0 - self.dropout, weights.shape)
        weights = jnp.where(keep, weights / (1.0 - self.dropout), 0.0)
        return jnp.einsum("bnts,bsnh->btnh", weights.astype(v.dtype), v)

    def _with_causal(self, allowed: jax.Array) -> jax.Array:
        if not self.causal:
            return allowed
        t, s = allowed.shape[-2:]
        return allowed & jnp.tril(jnp.ones((t, s), bool))[None, None]

    def _masks(self, batch: int, seq: int, mask, attn_mask, key_padding_mask):
        """Combine the three masks into ``allowed [b|1, h|1, seq, seq]`` (True = attend) and an additive bias."""
        if mask is not None and attn_mask is not None:
            raise ValueError(
                f"{self!r}: pass either mask (True = may attend) or attn_mask (PyTorch's: True = blocked), not both"
            )
        heads, parts, bias = self.num_heads, [], None
        if mask is not None:
            if getattr(mask, "dtype", None) != jnp.bool_:
                raise TypeError(f"{self!r}: mask must be boolean (True = may attend), got "
                                f"{getattr(mask, 'dtype', type(mask).__name__)}; a float mask goes to attn_mask")
            if mask.ndim == 2 and mask.shape == (seq, seq):
                parts.append(mask[None, None])
            elif mask.ndim == 4 and all(d in (1, full) for d, full in zip(mask.shape, (batch, heads, seq, seq))):
                parts.append(mask)
            else:
                raise ShapeError(self, f"mask [{seq}, {seq}] or [{batch}|1, {heads}|1, {seq}, {seq}]", mask.shape)
        if attn_mask is not None:
            attn_mask = jnp.asarray(attn_mask)
            if attn_mask.shape == (seq, seq):
                attn_mask = attn_mask[None, None]
            elif attn_mask.shape == (batch * heads, seq, seq):
                attn_mask = attn_mask.reshape(batch, heads, seq, seq)
            else:
                raise ShapeError(self, f"attn_mask [{seq}, {seq}] or [{batch * heads}, {seq}, {seq}] "
                                       f"(PyTorch's layout: batch * heads first)", attn_mask.shape)
            allowed, bias = _torch_mask(self, "attn_mask", attn_mask, bias)
            parts.append(allowed)
        if key_padding_mask is not None:
            key_padding_mask = jnp.asarray(key_padding_mask)
            if key_padding_mask.shape != (batch, seq):
                raise ShapeError(self, f"key_padding_mask [{batch}, {seq}]", key_padding_mask.shape)
            allowed, bias = _torch_mask(self, "key_padding_mask", key_padding_mask[:, None, None, :], bias)
            parts.append(allowed)
        if not parts:
            return None, bias
        allowed = parts[0]
        for part in parts[1:]:
            allowed = allowed & part
        return allowed, bias

    # -- KV-cache decoding ----------------------------------------------------------------
    def init_cache(self, batch: int, max_len: int, dtype: Any = jnp.float32) -> dict:
        """An empty cache ``{"key", "value": [batch, max_len, heads, head_dim]}`` of zeros."""
        _util.positive("MultiheadAttention.init_cache", batch=batch, max_len=max_len)
        shape = (batch, max_len, self.num_heads, self.head_dim)
        return {"key": jnp.zeros(shape, dtype), "value": jnp.zeros(shape, dtype)}

    def decode(self, params: dict, cache: dict, x: Float[Array, "batch seq embed"], start_pos: int | jax.Array):
        """Attend ``x``'s positions ``start_pos .. start_pos + seq - 1`` to the cache and to themselves.

        Writes the keys and values of ``x`` into the cache at ``start_pos`` and lets the
        query at position ``p`` attend to cached positions ``<= p`` (causal). Decoding a
        sequence in chunks (a prefill, then one token at a time) gives the outputs of
        :meth:`apply` on the whole sequence. ``start_pos`` may be a traced integer, so a
        jitted decoding loop does not retrace per token.

        Args:
          params: this layer's params.
          cache: from :meth:`init_cache` or a previous ``decode``.
          x: ``[batch, seq, embed_dim]``, the new positions.
          start_pos: the position of ``x[:, 0]``; everything before it must be cached.

        Returns:
          ``(y [batch, seq, embed_dim], new cache)``. A static ``start_pos + seq`` past the
          cache's ``max_len`` is a ShapeError; a traced one cannot be checked at trace time
          and makes ``y`` NaN rather than overwrite the cache's last positions.
        """
        if not self.causal:
            raise ValueError(f"{self!r}: KV-cache decoding needs a causal layer (causal=True)")
        _util.check_float(self, x)
        if jnp.ndim(x) != 3 or jnp.shape(x)[-1] != self.embed_dim:
            raise ShapeError(self, f"input [batch, seq, {self.embed_dim}] to decode", jnp.shape(x))
        batch, seq = x.shape[:2]
        cache_shape = (batch, None, self.num_heads, self.head_dim)
        for name in ("key", "value"):
            got = jnp.shape(cache.get(name)) if isinstance(cache, dict) else None
            if got is None or len(got) != 4 or got[:1] + (None,) + got[2:] != cache_shape:
                raise ShapeError(self, f"cache[{name!r}] [{batch}, max_len, {self.num_heads}, {self.head_dim}]", got)
        max_len = cache["key"].shape[1]
        if _util.is_int(start_pos) and start_pos + seq > max_len:
            raise ShapeError(self, f"at most {max_len - start_pos} new positions at start_pos={start_pos} "
                                   f"(cache max_len={max_len})", x.shape)
        start = jnp.asarray(start_pos, jnp.int32)
        dtype = _util.compute_dtype(self.dtype, x, params["in_proj_weight"])
        q, k, v = self._project_in(params, x, dtype)
        index = (0, start, 0, 0)
        keys = lax.dynamic_update_slice(cache["key"], k.astype(cache["key"].dtype), index)
        values = lax.dynamic_update_slice(cache["value"], v.astype(cache["value"].dtype), index)
        allowed = jnp.arange(max_len)[None, :] <= (start + jnp.arange(seq))[:, None]
        o = jax.nn.dot_product_attention(q, keys.astype(dtype), values.astype(dtype), mask=allowed[None, None],
                                         implementation=self.implementation)
        y = self._project_out(params, o, dtype)
        y = jnp.where(start + seq <= max_len, y, jnp.nan)
        return y, {"key": keys, "value": values}


def _torch_mask(layer: Layer, name: str, m: jax.Array, bias: jax.Array | None):
    """PyTorch's mask (bool True = blocked, or additive float with -inf = blocked) as ``(allowed, bias)``."""
    if m.dtype == jnp.bool_:
        return ~m, bias
    if not jnp.issubdtype(m.dtype, jnp.floating):
        raise TypeError(f"{layer!r}: {name} must be boolean (True = blocked, PyTorch's convention) or a float "
                        f"additive mask, got {m.dtype}")
    allowed = ~jnp.isneginf(m)
    extra = jnp.where(allowed, m, jnp.zeros((), m.dtype))
    return allowed, extra if bias is None else bias + extra


def _zero_empty_rows(o: jax.Array, allowed: jax.Array) -> jax.Array:
    """Zero the output ``o [b, t, n, h]`` of query rows that may attend no key (``allowed [b|1, n|1, t, s]``)."""
    rows_ok = jnp.any(allowed, axis=-1)  # [b|1, n|1, t]
    rows_ok = jnp.transpose(rows_ok, (0, 2, 1))[..., None]  # [b|1, t, n|1, 1]
    return jnp.where(rows_ok, o, jnp.zeros((), o.dtype))
