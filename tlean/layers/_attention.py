"""Multi-head self-attention on ``jax.nn.dot_product_attention``, with PyTorch's parameters and a KV cache."""

from __future__ import annotations

import dataclasses
from dataclasses import KW_ONLY, dataclass
from typing import Any, Literal

import jax
import jax.core
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, Bool, Float

from tlean._core import Layer, ShapeError
from tlean.layers import _init, _kvcache, _util

_IMPLEMENTATIONS = (None, "xla", "cudnn")


@dataclass(frozen=True)
class MultiheadAttention(Layer):
    """Multi-head attention ``softmax(q k^T / sqrt(head_dim) + bias) v``, self- or cross-attention.

    ``q = x W_q^T + b_q`` and, from the key/value inputs (``kv``; ``x`` itself for
    self-attention), ``k = k_in W_k^T + b_k``, ``v = v_in W_v^T + b_v``, split into
    ``num_heads`` heads of ``head_dim = embed_dim // num_heads``; the heads are attended
    with ``jax.nn.dot_product_attention`` (so ``implementation="cudnn"`` gets the fused
    GPU kernel where cuDNN supports the dtype and shapes), concatenated and projected by
    ``out_proj``. ``add_bias_kv`` appends the learned ``bias_k``/``bias_v`` as one more
    key/value position, ``add_zero_attn`` a position of zeros (after the projections, as
    PyTorch does); masks get an allowed column for each.

    PyTorch analogue: ``torch.nn.MultiheadAttention(embed_dim, num_heads, dropout, bias,
    add_bias_kv, add_zero_attn, kdim, vdim, batch_first)`` in that positional order
    (``MultiheadAttention(8, 2, 0.1)`` has dropout 0.1), called as ``mha(x, k, v)``;
    the same parameter names, layouts and init: ``in_proj_weight [3E, E]`` (xavier-uniform)
    when ``kdim == vdim == embed_dim``, otherwise ``q_proj_weight [E, E]``,
    ``k_proj_weight [E, kdim]``, ``v_proj_weight [E, vdim]`` (each xavier-uniform);
    ``in_proj_bias [3E]`` and ``out_proj.bias`` zero, ``out_proj.weight``
    U(-1/sqrt(E), 1/sqrt(E)), ``bias_k``/``bias_v [1, 1, E]`` xavier-normal.
    Differences: torch's ``key``/``value`` tensors are passed as ``kv=(k, v)`` (or
    ``kv=t`` when they are one tensor; ``key`` is the PRNG key here); ``y`` alone is
    returned unless ``need_weights=True`` (torch's default returns ``(y, weights)``); a
    query whose keys are all masked gets all-zero weights (its output is
    ``out_proj.bias``, its gradients finite), as PyTorch's ``need_weights=False`` path
    gives too (its ``need_weights=True`` path returns NaN there); ``batch_first`` defaults
    to True (``nn.MultiheadAttention`` requires the keyword).

    Masks (apply keywords; at most one of ``allow`` and ``attn_mask``; ``S`` is the key
    length, ``T`` the query length):

    - ``allow``: boolean, **True = may attend** (``jax.nn.dot_product_attention``'s and
      TorchLean's convention), ``[T, S]`` or ``[batch|1, heads|1, T, S]``.
    - ``attn_mask``: PyTorch's meaning, the **opposite**: a boolean True (or a float
      ``-inf``) blocks; a float mask is added to the logits. ``[T, S]`` or
      ``[batch * heads, T, S]``, as PyTorch takes it.
    - ``key_padding_mask``: PyTorch's meaning, ``[batch, S]`` (``[S]`` unbatched),
      True (or ``-inf``) marks a padded key that no query may attend.

    ``causal=True`` (or the apply keyword ``is_causal=True``, which in torch is an
    unchecked hint) adds the causal mask (query ``t`` sees keys ``<= t``, top-left
    aligned when ``T != S``) to any of them. The masks are plain arrays, not checked for
    content; their shapes and dtypes are checked at trace time.

    Args:
      embed_dim: model width ``E`` (of ``x`` and ``y``), divisible by ``num_heads``.
      num_heads: number of heads.
      dropout: drop probability of the attention weights in training (PyTorch's
        ``dropout``); a training call with ``dropout > 0`` computes the attention by hand
        (the fused kernels take no dropout) and needs a ``key``.
      bias: whether the in and out projections have biases.
      add_bias_kv: learned ``bias_k``/``bias_v`` appended to the keys and values.
      add_zero_attn: a zero key and value appended.
      kdim, vdim: feature sizes of the key and value inputs (``None``: ``embed_dim``).
      batch_first: ``x [batch, seq, E]`` (True, tlean's default) or ``[seq, batch, E]``
        (False, torch's default; ``nn.MultiheadAttention`` requires the keyword).
      causal: apply the causal mask (keyword-only).
      implementation: passed to ``jax.nn.dot_product_attention``: ``None`` (JAX's
        choice), ``"xla"`` or ``"cudnn"`` (:meth:`decode` attends over the KV cache with
        the XLA computation, in the cache's layout).
      dtype, param_dtype, precision: computation dtype, storage dtype, and the precision
        of the projections (the attention matmuls follow ``jax_default_matmul_precision``).

    Shapes:
      ``x [batch, T, E]`` (``[T, batch, E]`` with ``batch_first=False``) or unbatched
      ``[T, E]``; ``kv`` the pair ``([batch, S, kdim], [batch, S, vdim])`` laid out as
      ``x`` -> ``y`` of ``x``'s shape; with ``need_weights=True`` ``(y, weights)``,
      ``weights [batch, T, S']`` averaged over heads (``[batch, heads, T, S']`` with
      ``average_attn_weights=False``; no batch axis unbatched), ``S'`` counting the
      appended positions.

    KV cache (causal self-attention decoding, see :meth:`init_cache` and :meth:`decode`):
    prefill a prompt, then extend it a few tokens at a time with a fixed-size cache,
    positions given by ``start_pos``. For cross-attention, :meth:`project_kv` computes
    the memory's keys and values once; pass them to :meth:`apply` as ``kv_cache=``.

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
    >>> cross = MultiheadAttention(8, 2, kdim=6, vdim=4)
    >>> p, s = cross.init(jax.random.key(0))
    >>> memory = (jnp.ones((3, 7, 6)), jnp.ones((3, 7, 4)))
    >>> y, w = cross.apply(p, s, x, kv=memory, need_weights=True)[0]
    >>> y.shape, w.shape
    ((3, 5, 8), (3, 5, 7))
    """

    embed_dim: int = _util.size()
    num_heads: int = _util.size()
    dropout: float = _util.probability(0.0)
    bias: bool = _util.flag(True)
    add_bias_kv: bool = _util.flag(False)
    add_zero_attn: bool = _util.flag(False)
    kdim: int | None = None
    vdim: int | None = None
    batch_first: bool = _util.flag(True)
    causal: bool = _util.flag(False, kw_only=True)
    implementation: Literal["xla", "cudnn"] | None = dataclasses.field(default=None, kw_only=True)
    _: KW_ONLY
    dtype: Any = _util.dtype_field()
    param_dtype: Any = _util.param_dtype_field()
    precision: Any = _util.precision_field()

    def __post_init__(self):
        if self.embed_dim % self.num_heads:
            raise ValueError(
                f"MultiheadAttention: embed_dim={self.embed_dim} must be divisible by num_heads={self.num_heads}"
            )
        if self.implementation not in _IMPLEMENTATIONS:
            raise ValueError(
                f"MultiheadAttention: implementation must be one of {_IMPLEMENTATIONS}, got {self.implementation!r}"
            )
        for name in ("kdim", "vdim"):  # kdim=embed_dim is the default: normalised so equal configs compare equal
            value = getattr(self, name)
            if value is not None:
                _util.set_field(
                    self,
                    name,
                    None if _util.check_size("MultiheadAttention", name, value) == self.embed_dim else int(value),
                )

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def key_dim(self) -> int:
        return self.embed_dim if self.kdim is None else self.kdim

    @property
    def value_dim(self) -> int:
        return self.embed_dim if self.vdim is None else self.vdim

    @property
    def fused(self) -> bool:
        """Whether the three input projections are one ``in_proj_weight`` (``kdim == vdim == embed_dim``)."""
        return self.kdim is None and self.vdim is None

    def init(self, key: jax.Array) -> tuple[dict, dict]:
        e, dtype = self.embed_dim, self.param_dtype
        k_in, k_out = jax.random.split(key)
        params: dict[str, Any]
        if self.fused:
            params = {"in_proj_weight": _init.xavier_uniform(k_in, (3 * e, e), dtype=dtype)}
        else:
            kq, kk, kv = jax.random.split(k_in, 3)
            params = {
                "q_proj_weight": _init.xavier_uniform(kq, (e, e), dtype=dtype),
                "k_proj_weight": _init.xavier_uniform(kk, (e, self.key_dim), dtype=dtype),
                "v_proj_weight": _init.xavier_uniform(kv, (e, self.value_dim), dtype=dtype),
            }
        if self.bias:
            params["in_proj_bias"] = jnp.zeros((3 * e,), dtype)
        if self.add_bias_kv:  # xavier-normal on [1, 1, E]: std sqrt(2 / (E + E)); the barrier keeps jit == eager
            kbk, kbv = jax.random.split(jax.random.fold_in(key, 2))
            for name, k in (("bias_k", kbk), ("bias_v", kbv)):
                unit = lax.optimization_barrier(jax.random.normal(k, (1, 1, e)))
                params[name] = (unit * np.float32(1 / np.sqrt(e))).astype(dtype)
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
        kv: Any = None,
        allow: Bool[Array, "..."] | None = None,
        attn_mask: Array | None = None,
        key_padding_mask: Array | None = None,
        need_weights: bool = False,
        average_attn_weights: bool = True,
        is_causal: bool | None = False,
        kv_cache: dict | None = None,
    ):
        for name, value in (
            ("is_causal", is_causal),
            ("need_weights", need_weights),
            ("average_attn_weights", average_attn_weights),
        ):
            if isinstance(value, jax.core.Tracer):
                raise TypeError(
                    f"{self!r}: {name} must be a Python bool (it is used at trace time), "
                    f"got a traced value; pass it as a static argument"
                )
        causal = self.causal or bool(is_causal)  # torch's is_causal hint applies the causal mask (DESIGN 1.1)
        self._check_input(x)
        if kv is not None and kv_cache is not None:
            raise ValueError(
                f"{self!r}: pass either kv (the key/value inputs) or kv_cache (their projections), not both"
            )
        seq_first = not self.batch_first and x.ndim == 3
        unbatched = x.ndim == 2
        k_in, v_in = self._kv_inputs(x, kv) if kv_cache is None else (None, None)
        if seq_first:
            x = jnp.swapaxes(x, 0, 1)
            k_in, v_in = (None if a is None else jnp.swapaxes(a, 0, 1) for a in (k_in, v_in))
        if unbatched:
            x = x[None]
            k_in, v_in = (None if a is None else a[None] for a in (k_in, v_in))
            if key_padding_mask is not None and jnp.ndim(key_padding_mask) == 1:
                key_padding_mask = jnp.asarray(key_padding_mask)[None]
        dtype = _util.compute_dtype(self.dtype, x, params["in_proj_weight" if self.fused else "q_proj_weight"])
        if kv_cache is None:
            q, k, v = self._project_in(params, x, dtype, k_in, v_in)
            k, v = self._extend(params, k, v)
        else:
            q = self._project(params, x, 0, dtype)
            k, v = self._check_kv_cache(kv_cache, x.shape[0])
            k, v = k.astype(dtype), v.astype(dtype)
        batch, t, s = x.shape[0], x.shape[1], k.shape[1]
        allowed, bias = self._masks(batch, t, s - self._extra, allow, attn_mask, key_padding_mask)
        fused_causal = causal and allowed is None and t == s and not self._extra
        if causal and not fused_causal:
            allowed = _and(allowed, jnp.tril(jnp.ones((t, s - self._extra), bool))[None, None])
        if self._extra:  # the appended positions may always be attended
            if allowed is not None:
                allowed = jnp.concatenate([allowed, jnp.ones(allowed.shape[:-1] + (self._extra,), bool)], axis=-1)
            if bias is not None:
                bias = jnp.concatenate([bias, jnp.zeros(bias.shape[:-1] + (self._extra,), bias.dtype)], axis=-1)
        dropping = train and self.dropout > 0
        if dropping and key is None:
            raise ValueError(f"{self!r} in train mode with dropout={self.dropout} needs a dropout key: pass key=...")
        weights = None
        if dropping or need_weights:
            o, weights = self._attend_by_hand(q, k, v, allowed, bias, key if dropping else None, fused_causal)
        else:
            o = self._attend(q, k, v, allowed, bias, fused_causal)
        y = self._project_out(params, o, dtype)
        if seq_first:
            y = jnp.swapaxes(y, 0, 1)
        y = y[0] if unbatched else y
        if not need_weights or weights is None:
            return y, state
        if average_attn_weights:
            weights = jnp.mean(weights, axis=1)
        return (y, weights[0] if unbatched else weights), state

    @property
    def _extra(self) -> int:
        """How many key/value positions ``add_bias_kv`` and ``add_zero_attn`` append."""
        return int(self.add_bias_kv) + int(self.add_zero_attn)

    def _check_input(self, x: Any) -> None:
        _util.check_float(self, x)
        if jnp.ndim(x) not in (2, 3) or jnp.shape(x)[-1] != self.embed_dim:
            raise ShapeError(self, f"input [batch, seq, {self.embed_dim}] or [seq, {self.embed_dim}]", jnp.shape(x))

    def _kv_inputs(self, x: jax.Array, kv: Any) -> tuple[jax.Array, jax.Array]:
        """The key and value inputs, checked against ``x`` (``kv=None``: self-attention)."""
        if kv is None:
            if not self.fused:
                raise ValueError(
                    f"{self!r}: kdim/vdim differ from embed_dim, so the key and value inputs differ "
                    f"from x: pass kv=(key, value)"
                )
            return x, x
        k_in, v_in = _key_value(kv)
        batch_axis = None if x.ndim == 2 else (0 if self.batch_first else 1)
        for name, a, dim in (("key", k_in, self.key_dim), ("value", v_in, self.value_dim)):
            _util.check_float(self, a)
            shape = jnp.shape(a)
            ok = (
                len(shape) == x.ndim
                and shape[-1] == dim
                and (batch_axis is None or shape[batch_axis] == x.shape[batch_axis])
            )
            if not ok:
                layout = (
                    "[seq]" if x.ndim == 2 else (f"[{x.shape[0]}, seq]" if self.batch_first else f"[seq, {x.shape[1]}]")
                )
                raise ShapeError(self, f"kv {name} {layout[:-1]}, {dim}] (laid out as x {tuple(x.shape)})", shape)
        s_axis = 0 if x.ndim == 2 or not self.batch_first else 1
        if jnp.shape(k_in)[s_axis] != jnp.shape(v_in)[s_axis]:
            raise ShapeError(self, f"kv key and value of the same length (key {jnp.shape(k_in)})", jnp.shape(v_in))
        return k_in, v_in

    def _project(self, params: dict, a: jax.Array, i: int, dtype: Any) -> jax.Array:
        """Projection ``i`` (0 query, 1 key, 2 value) of ``a [batch, seq, features]`` as ``[batch, seq, heads, head_dim]``."""
        e = self.embed_dim
        if self.fused:
            w = params["in_proj_weight"][i * e : (i + 1) * e]
        else:
            w = params[("q_proj_weight", "k_proj_weight", "v_proj_weight")[i]]
        y = jnp.matmul(a.astype(dtype), w.astype(dtype).T, precision=self.precision)
        if self.bias:
            y = _util.add_bias(y, params["in_proj_bias"][i * e : (i + 1) * e].astype(dtype))
        return y.reshape(a.shape[:2] + (self.num_heads, self.head_dim))

    def _project_in(self, params: dict, x: jax.Array, dtype: Any, k_in: Any = None, v_in: Any = None) -> tuple:
        """``q, k, v [batch, seq, heads, head_dim]`` (``k_in``/``v_in`` None or ``x``: self-attention)."""
        if self.fused and (k_in is None or (k_in is x and v_in is x)):  # self-attention: one fused matmul
            qkv = jnp.matmul(x.astype(dtype), params["in_proj_weight"].astype(dtype).T, precision=self.precision)
            if self.bias:
                qkv = _util.add_bias(qkv, params["in_proj_bias"].astype(dtype))
            shape = x.shape[:2] + (self.num_heads, self.head_dim)
            return tuple(part.reshape(shape) for part in jnp.split(qkv, 3, axis=-1))
        return (
            self._project(params, x, 0, dtype),
            self._project(params, k_in, 1, dtype),
            self._project(params, v_in, 2, dtype),
        )

    def _extend(self, params: dict, k: jax.Array, v: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Append ``bias_k``/``bias_v`` and a zero position as ``add_bias_kv``/``add_zero_attn`` ask."""
        if self.add_bias_kv:
            bk, bv = (
                jnp.broadcast_to(
                    params[n].astype(k.dtype).reshape(1, 1, self.num_heads, self.head_dim),
                    (k.shape[0], 1, self.num_heads, self.head_dim),
                )
                for n in ("bias_k", "bias_v")
            )
            k, v = jnp.concatenate([k, bk], axis=1), jnp.concatenate([v, bv], axis=1)
        if self.add_zero_attn:
            zeros = jnp.zeros((k.shape[0], 1, self.num_heads, self.head_dim), k.dtype)
            k, v = jnp.concatenate([k, zeros], axis=1), jnp.concatenate([v, zeros], axis=1)
        return k, v

    def project_kv(self, params: dict, kv: Any) -> dict:
        """The projected keys and values of ``kv`` (a memory), computed once for many queries.

        Returns ``{"key", "value": [batch, S', heads, head_dim]}`` (``S'`` counts the
        ``add_bias_kv``/``add_zero_attn`` positions); ``apply(..., kv_cache=that)`` equals
        ``apply(..., kv=kv)``. ``kv`` as for :meth:`apply`, batched.
        """
        k_in, v_in = _key_value(kv)
        if jnp.ndim(k_in) != 3:
            raise ShapeError(self, f"kv key [batch, seq, {self.key_dim}] for project_kv", jnp.shape(k_in))
        batch = jnp.shape(k_in)[0 if self.batch_first else 1]
        probe = jnp.zeros((batch, 1, self.embed_dim) if self.batch_first else (1, batch, self.embed_dim), k_in.dtype)
        k_in, v_in = self._kv_inputs(probe, (k_in, v_in))
        if not self.batch_first:
            k_in, v_in = jnp.swapaxes(k_in, 0, 1), jnp.swapaxes(v_in, 0, 1)
        dtype = _util.compute_dtype(self.dtype, k_in, params["in_proj_weight" if self.fused else "q_proj_weight"])
        k, v = self._extend(params, self._project(params, k_in, 1, dtype), self._project(params, v_in, 2, dtype))
        return {"key": k, "value": v}

    def _check_kv_cache(self, kv_cache: Any, batch: int) -> tuple[jax.Array, jax.Array]:
        want = (batch, None, self.num_heads, self.head_dim)
        for name in ("key", "value"):
            got = jnp.shape(kv_cache[name]) if isinstance(kv_cache, dict) and name in kv_cache else None
            if got is None or len(got) != 4 or got[:1] + (None,) + got[2:] != want:
                raise ShapeError(
                    self, f"kv_cache[{name!r}] [{batch}, seq, {self.num_heads}, {self.head_dim}] (from project_kv)", got
                )
        if kv_cache["key"].shape != kv_cache["value"].shape:
            raise ShapeError(
                self, f"kv_cache['value'] of kv_cache['key']'s shape {kv_cache['key'].shape}", kv_cache["value"].shape
            )
        return kv_cache["key"], kv_cache["value"]

    def _project_out(self, params: dict, o: jax.Array, dtype: Any) -> jax.Array:
        o = o.reshape(o.shape[:2] + (self.embed_dim,))
        y = jnp.matmul(o, params["out_proj"]["weight"].astype(dtype).T, precision=self.precision)
        if self.bias:
            y = _util.add_bias(y, params["out_proj"]["bias"].astype(dtype))
        return y

    def _attend(self, q, k, v, allowed, bias, is_causal=False) -> jax.Array:
        """``jax.nn.dot_product_attention``; rows with no allowed key are set to zero."""
        o = jax.nn.dot_product_attention(
            q,
            k,
            v,
            bias=None if bias is None else bias.astype(q.dtype),
            mask=allowed,
            is_causal=is_causal,
            implementation=self.implementation,
        )
        return o if allowed is None else _zero_empty_rows(o, allowed)

    def _attend_by_hand(self, q, k, v, allowed, bias, key, is_causal=False) -> tuple[jax.Array, jax.Array]:
        """The same attention written out, with its weights ``[b, heads, t, s]`` (dropped when ``key`` is given)."""
        scale = 1.0 / np.sqrt(self.head_dim)
        logits = jnp.einsum("btnh,bsnh->bnts", q, k, preferred_element_type=jnp.float32) * scale
        if bias is not None:
            logits = logits + bias.astype(jnp.float32)
        full = allowed if allowed is not None else jnp.ones((1, 1) + logits.shape[2:], bool)
        if is_causal:
            full = full & jnp.tril(jnp.ones(logits.shape[2:], bool))[None, None]
        logits = jnp.where(full, logits, -jnp.inf)
        rows_ok = jnp.any(full, axis=-1, keepdims=True)
        weights = jax.nn.softmax(jnp.where(rows_ok, logits, 0.0), axis=-1)
        weights = jnp.where(full & rows_ok, weights, 0.0)
        if key is not None:
            keep = jax.random.bernoulli(key, 1.0 - self.dropout, weights.shape)
            weights = jnp.where(keep, weights / (1.0 - self.dropout), 0.0)
        return jnp.einsum("bnts,bsnh->btnh", weights.astype(v.dtype), v), weights

    def _masks(self, batch: int, t: int, s: int, allow, attn_mask, key_padding_mask):
        """Combine the three masks into ``allowed [b|1, h|1, t, s]`` (True = attend) and an additive bias."""
        if allow is not None and attn_mask is not None:
            raise ValueError(
                f"{self!r}: pass either allow (True = may attend) or attn_mask (PyTorch's: True = blocked), not both"
            )
        heads, parts, bias = self.num_heads, [], None
        if allow is not None:
            if getattr(allow, "dtype", None) != jnp.bool_:
                raise TypeError(
                    f"{self!r}: allow must be boolean (True = may attend), got "
                    f"{getattr(allow, 'dtype', type(allow).__name__)}; a float mask goes to attn_mask"
                )
            if allow.ndim == 2 and allow.shape == (t, s):
                parts.append(allow[None, None])
            elif allow.ndim == 4 and all(d in (1, full) for d, full in zip(allow.shape, (batch, heads, t, s))):
                parts.append(allow)
            else:
                raise ShapeError(self, f"allow [{t}, {s}] or [{batch}|1, {heads}|1, {t}, {s}]", allow.shape)
        if attn_mask is not None:
            attn_mask = jnp.asarray(attn_mask)
            if attn_mask.shape == (t, s):
                attn_mask = attn_mask[None, None]
            elif attn_mask.shape == (batch * heads, t, s):
                attn_mask = attn_mask.reshape(batch, heads, t, s)
            else:
                raise ShapeError(
                    self,
                    f"attn_mask [{t}, {s}] or [{batch * heads}, {t}, {s}] (PyTorch's layout: batch * heads first)",
                    attn_mask.shape,
                )
            allowed, bias = _torch_mask(self, "attn_mask", attn_mask, bias)
            parts.append(allowed)
        if key_padding_mask is not None:
            key_padding_mask = jnp.asarray(key_padding_mask)
            if key_padding_mask.shape != (batch, s):
                raise ShapeError(self, f"key_padding_mask [{batch}, {s}]", key_padding_mask.shape)
            allowed, bias = _torch_mask(self, "key_padding_mask", key_padding_mask[:, None, None, :], bias)
            parts.append(allowed)
        allowed = None
        for part in parts:
            allowed = _and(allowed, part)
        return allowed, bias

    # -- KV-cache decoding ----------------------------------------------------------------
    def init_cache(self, batch: int, max_len: int, dtype: Any = jnp.float32) -> dict:
        """An empty cache ``{"key", "value": [batch, heads, max_len, head_dim]}`` of zeros (transformers' layout)."""
        _util.positive("MultiheadAttention.init_cache", batch=batch, max_len=max_len)
        return _kvcache.empty(batch, max_len, self.num_heads, self.head_dim, dtype)

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
          ``(y [batch, seq, embed_dim], new cache)``. A static ``start_pos`` (a Python or
          NumPy integer, or a concrete array outside ``jit``) that is negative or has
          ``start_pos + seq`` past the cache's ``max_len`` is an error at trace time
          (``ValueError`` / ``ShapeError``). A traced one cannot be checked then: out of
          range, it makes ``y`` NaN and returns the cache unchanged (nothing is written).
        """
        if not self.causal:
            raise ValueError(f"{self!r}: KV-cache decoding needs a causal layer (causal=True)")
        if not self.fused or self._extra:
            raise ValueError(
                f"{self!r}: KV-cache decoding is causal self-attention: it takes no kdim/vdim, "
                f"add_bias_kv or add_zero_attn (for cross-attention use project_kv and kv_cache=)"
            )
        _util.check_float(self, x)
        if jnp.ndim(x) != 3 or jnp.shape(x)[-1] != self.embed_dim:
            raise ShapeError(self, f"input [batch, seq, {self.embed_dim}] to decode", jnp.shape(x))
        start, in_range, max_len = _kvcache.position(self, cache, x, self.num_heads, self.head_dim, start_pos)
        dtype = _util.compute_dtype(self.dtype, x, params["in_proj_weight"])
        q, k, v = self._project_in(params, x, dtype)
        cache = _kvcache.write(cache, k, v, start, in_range)
        o = _kvcache.attend(q, cache, _kvcache.causal_window(start, x.shape[1], max_len))
        y = self._project_out(params, o, dtype)
        return jnp.where(in_range, y, jnp.nan), cache


def _torch_mask(layer: Layer, name: str, m: jax.Array, bias: jax.Array | None):
    """PyTorch's mask (bool True = blocked, or additive float with -inf = blocked) as ``(allowed, bias)``."""
    if m.dtype == jnp.bool_:
        return ~m, bias
    if not jnp.issubdtype(m.dtype, jnp.floating):
        raise TypeError(
            f"{layer!r}: {name} must be boolean (True = blocked, PyTorch's convention) or a float "
            f"additive mask, got {m.dtype}"
        )
    allowed = ~jnp.isneginf(m)
    extra = jnp.where(allowed, m, jnp.zeros((), m.dtype))
    return allowed, extra if bias is None else bias + extra


def _and(a: jax.Array | None, b: jax.Array) -> jax.Array:
    return b if a is None else a & b


def _zero_empty_rows(o: jax.Array, allowed: jax.Array) -> jax.Array:
    """Zero the output ``o [b, t, n, h]`` of query rows that may attend no key (``allowed [b|1, n|1, t, s]``)."""
    rows_ok = jnp.any(allowed, axis=-1)  # [b|1, n|1, t]
    rows_ok = jnp.transpose(rows_ok, (0, 2, 1))[..., None]  # [b|1, t, n|1, 1]
    return jnp.where(rows_ok, o, jnp.zeros((), o.dtype))


def _key_value(kv: Any) -> tuple[Any, Any]:
    """``kv=(key, value)``, or one array serving as both."""
    if isinstance(kv, (tuple, list)) and len(kv) == 2:
        return kv[0], kv[1]
    return kv, kv
