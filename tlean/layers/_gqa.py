"""Attention with transformers' separate projections (grouped-query, RoPE inside, KV cache) and the gated
feed-forward (SwiGLU / GeGLU) of Llama-style models."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from typing import Any, cast

import jax
import jax.core
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Integer

from tlean._core import Layer, ShapeError, child_config, sublayer
from tlean.layers import _kvcache, _util
from tlean.layers._linear import Linear
from tlean.layers._position import RoPE


@dataclass(frozen=True)
class Attention(Layer):
    """Grouped-query attention with ``q_proj``/``k_proj``/``v_proj``/``o_proj``, as transformers names them.

    ``q = x W_q^T`` split into ``num_heads`` heads, ``k = x W_k^T``, ``v = x W_v^T`` into
    ``num_kv_heads`` heads (each shared by ``num_heads / num_kv_heads`` query heads:
    grouped-query attention; ``num_kv_heads == 1`` is multi-query, ``None`` is plain
    multi-head); ``rope`` rotates ``q`` and ``k`` by position; then
    ``softmax(q k^T / sqrt(head_dim)) v`` (``jax.nn.dot_product_attention``, which shares
    the key/value heads itself) and ``o_proj``. A composite of four :class:`Linear`
    children drawing their keys in that order.

    PyTorch analogue: none in ``torch.nn`` (whose ``MultiheadAttention`` fuses the
    projections); transformers' ``LlamaAttention`` (``attention_bias`` is ``bias``, and
    ``o_bias`` defaults to it), so a Llama/Mistral/Qwen layer's ``self_attn.*`` weights
    load by name. Differences: the masks are tlean's ``allow`` (True = may attend) and
    ``causal`` / ``is_causal`` (a model builds ``allow`` from transformers'
    ``attention_mask``); there is no attention dropout; positions reach ``rope`` as
    ``start_pos`` or as transformers' ``position_ids``.

    Args:
      hidden_size: model width ``E`` (input and output features).
      num_heads: number of query heads.
      num_kv_heads: number of key/value heads, dividing ``num_heads`` (``None``: ``num_heads``).
      head_dim: per-head width (``None``: ``hidden_size // num_heads``, which must divide).
      bias: biases in ``q_proj``, ``k_proj``, ``v_proj``.
      o_bias: bias in ``o_proj`` (``None``: ``bias``).
      rope: a :class:`RoPE` over ``head_dim`` applied to ``q`` and ``k`` (keyword-only;
        ``None``: no rotation). Its ``max_len`` bounds the positions.
      causal: apply the causal mask (keyword-only).
      dtype, param_dtype, precision: as for :class:`Linear` (keyword-only).

    Apply keywords: ``allow`` (boolean, True = may attend, ``[T, T]`` or
    ``[batch|1, heads|1, T|1, T]``, so a padding mask is ``[batch, 1, 1, T]``), ``is_causal``
    (adds the causal mask), ``start_pos`` (the position of ``x[:, 0]`` for ``rope``; default
    0) or ``position_ids`` (``[batch|1, T]`` integer positions for ``rope``; not both).

    Shapes:
      ``x [batch, T, hidden_size]`` -> ``y [batch, T, hidden_size]``. Params
      ``q_proj.weight [num_heads * head_dim, E]``, ``k_proj.weight`` and ``v_proj.weight``
      ``[num_kv_heads * head_dim, E]``, ``o_proj.weight [E, num_heads * head_dim]``.

    KV cache: :meth:`init_cache` and :meth:`decode` (causal decoding in chunks, positions
    from ``start_pos`` or ``position_ids``, an optional ``allow`` over the cache slots), the
    cache holding the ``num_kv_heads`` heads only.

    >>> import jax, jax.numpy as jnp
    >>> from tlean.layers import Attention, RoPE
    >>> attn = Attention(16, 4, 2, rope=RoPE(4, 32, interleaved=False), causal=True)
    >>> params, state = attn.init(jax.random.key(0))
    >>> params["k_proj"]["weight"].shape
    (8, 16)
    >>> x = jax.random.normal(jax.random.key(1), (2, 5, 16))
    >>> y, _ = attn.apply(params, state, x)
    >>> y1, cache = attn.decode(params, attn.init_cache(2, 8), x[:, :3], 0)
    >>> y2, cache = attn.decode(params, cache, x[:, 3:], 3)
    >>> bool(jnp.allclose(jnp.concatenate([y1, y2], axis=1), y, atol=1e-5))
    True
    """

    hidden_size: int = _util.size()
    num_heads: int = _util.size()
    num_kv_heads: int | None = None
    head_dim: int | None = None
    bias: bool = _util.flag(False)
    o_bias: bool | None = None
    _: KW_ONLY
    rope: RoPE | None = child_config(default=None)
    causal: bool = _util.flag(False)
    dtype: Any = _util.dtype_field()
    param_dtype: Any = _util.param_dtype_field()
    precision: Any = _util.precision_field()

    q_proj: Linear = sublayer()
    k_proj: Linear = sublayer()
    v_proj: Linear = sublayer()
    o_proj: Linear = sublayer()

    @property
    def _ints(self) -> tuple[int, int]:
        """``(num_kv_heads, head_dim)``: ``__post_init__`` has replaced their ``None`` defaults by ints."""
        return cast(int, self.num_kv_heads), cast(int, self.head_dim)

    def __post_init__(self):
        name = type(self).__name__
        if self.num_kv_heads is None:
            _util.set_field(self, "num_kv_heads", self.num_heads)
        kv = _util.check_size(name, "num_kv_heads", self.num_kv_heads)
        if self.num_heads % kv:
            raise ValueError(f"{name}: num_heads={self.num_heads} must be divisible by num_kv_heads={kv}")
        if self.head_dim is None:
            if self.hidden_size % self.num_heads:
                raise ValueError(
                    f"{name}: hidden_size={self.hidden_size} must be divisible by num_heads="
                    f"{self.num_heads}, or pass head_dim"
                )
            _util.set_field(self, "head_dim", self.hidden_size // self.num_heads)
        _util.set_field(self, "head_dim", _util.check_size(name, "head_dim", self.head_dim))
        _util.set_field(self, "num_kv_heads", kv)
        _util.set_field(
            self, "o_bias", _util.check_flag(name, "o_bias", self.bias if self.o_bias is None else self.o_bias)
        )
        if self.rope is not None:
            if not isinstance(self.rope, RoPE):
                raise TypeError(f"{name}: rope must be a tlean.layers.RoPE or None, got {type(self.rope).__name__}")
            if self.rope.head_dim != self.head_dim:
                raise ValueError(f"{name}: rope.head_dim={self.rope.head_dim} must equal head_dim={self.head_dim}")
        linear = dict(dtype=self.dtype, param_dtype=self.param_dtype, precision=self.precision)
        head_dim = self._ints[1]
        e, q, kv_width = self.hidden_size, self.num_heads * head_dim, kv * head_dim
        for field, layer in dict(
            q_proj=Linear(e, q, self.bias, **linear),
            k_proj=Linear(e, kv_width, self.bias, **linear),
            v_proj=Linear(e, kv_width, self.bias, **linear),
            o_proj=Linear(q, e, bool(self.o_bias), **linear),
        ).items():
            _util.set_field(self, field, layer)

    def apply(
        self,
        params: dict,
        state: dict,
        x: Float[Array, "batch seq hidden"],
        *,
        key: jax.Array | None = None,
        train: bool = False,
        allow: Bool[Array, "..."] | None = None,
        is_causal: bool | None = False,
        start_pos: int | jax.Array | None = None,
        position_ids: Integer[Array, "batch seq"] | None = None,
    ):
        if isinstance(is_causal, jax.core.Tracer):
            raise TypeError(f"{self!r}: is_causal must be a Python bool (it selects the mask at trace time)")
        self._check_input(x)
        if start_pos is not None and position_ids is not None:
            raise TypeError(f"{self!r}: pass start_pos or position_ids, not both")
        start_pos = 0 if start_pos is None and position_ids is None else start_pos
        static = int(cast(int, start_pos)) if _util.is_int(start_pos) else None
        if self.rope is not None and static is not None and static + x.shape[1] > self.rope.max_len:
            raise ShapeError(
                self,
                f"at most {self.rope.max_len - static} positions from start_pos={static} "
                f"(rope max_len={self.rope.max_len})",
                x.shape,
            )
        c = self.bind(params, state, key=key, train=train)
        q, k, v = self._heads(c, x, start_pos, position_ids)
        t = x.shape[1]
        allowed = None if allow is None else self._allowed(allow, x.shape[0], t, t, "")
        causal = self.causal or bool(is_causal)
        if causal and allowed is not None:
            allowed = allowed & jnp.tril(jnp.ones((t, t), bool))[None, None]
        o = jax.nn.dot_product_attention(q, k, v, mask=allowed, is_causal=causal and allowed is None)
        return c.o_proj(self._merge(o, allowed)), state

    def _allowed(self, allow: Any, batch: int, t: int, keys: int, where: str) -> jax.Array:
        """``allow`` checked (boolean, ``[t, keys]`` or ``[batch|1, heads|1, t|1, keys]``) and made 4-d;
        ``where`` ends the error message."""
        if getattr(allow, "dtype", None) != jnp.bool_:
            raise TypeError(
                f"{self!r}: allow must be boolean (True = may attend), got "
                f"{getattr(allow, 'dtype', type(allow).__name__)}"
            )
        full = (batch, self.num_heads, t, keys)
        if allow.shape == (t, keys):
            return allow[None, None]
        if allow.ndim == 4 and all(d in (1, f) for d, f in zip(allow.shape[:3], full)) and allow.shape[3] == keys:
            return allow
        raise ShapeError(
            self, f"allow [{t}, {keys}] or [{batch}|1, {self.num_heads}|1, {t}|1, {keys}]{where}", allow.shape
        )

    def _merge(self, o: jax.Array, allowed: jax.Array | None) -> jax.Array:
        """Heads ``o [b, t, heads, d]`` merged to ``[b, t, heads * d]``; a query with no allowed key
        gives zeros (then ``o_proj``'s bias), with finite gradients."""
        if allowed is not None:
            rows_ok = jnp.transpose(jnp.any(allowed, axis=-1), (0, 2, 1))[..., None]
            o = jnp.where(rows_ok, o, jnp.zeros((), o.dtype))
        return o.reshape(o.shape[:2] + (self.num_heads * self._ints[1],))

    def _check_input(self, x: Any) -> None:
        _util.check_float(self, x)
        if jnp.ndim(x) != 3 or jnp.shape(x)[-1] != self.hidden_size:
            raise ShapeError(self, f"input [batch, seq, {self.hidden_size}]", jnp.shape(x))

    def _heads(
        self, c: Any, x: jax.Array, start_pos: Any, position_ids: Any = None
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """``q [b, t, heads, d]``, ``k, v [b, t, kv_heads, d]``, with ``rope`` applied at ``start_pos``
        (or at ``position_ids [b|1, t]``)."""
        b, t = x.shape[:2]
        q = c.q_proj(x).reshape(b, t, self.num_heads, self.head_dim)
        k = c.k_proj(x).reshape(b, t, self.num_kv_heads, self.head_dim)
        v = c.v_proj(x).reshape(b, t, self.num_kv_heads, self.head_dim)
        if self.rope is not None:  # RoPE rotates [..., seq, head_dim]: heads go to axis 1
            if position_ids is None:
                where = dict(start_pos=start_pos)
            else:
                position_ids = jnp.asarray(position_ids)
                if position_ids.ndim != 2 or position_ids.shape[0] not in (1, b) or position_ids.shape[1] != t:
                    raise ShapeError(self, f"position_ids [{b}|1, {t}]", position_ids.shape)
                where = dict(position_ids=position_ids[:, None, :])

            rope = self.rope

            def rotate(a):
                return jnp.swapaxes(rope.apply({}, {}, jnp.swapaxes(a, 1, 2), **where)[0], 1, 2)

            q, k = rotate(q), rotate(k)
        return q, k, v

    # -- KV-cache decoding ------------------------------------------------------------------
    def init_cache(self, batch: int, max_len: int, dtype: Any = jnp.float32) -> dict:
        """An empty cache ``{"key", "value": [batch, num_kv_heads, max_len, head_dim]}`` of zeros (transformers' layout)."""
        _util.positive("Attention.init_cache", batch=batch, max_len=max_len)
        return _kvcache.empty(batch, max_len, *self._ints, dtype)

    def decode(
        self,
        params: dict,
        cache: dict,
        x: Float[Array, "batch seq hidden"],
        start_pos: int | jax.Array,
        *,
        allow: Bool[Array, "..."] | None = None,
        position_ids: Integer[Array, "batch seq"] | None = None,
    ):
        """``(y, new cache)``: attend positions ``start_pos ..`` of ``x`` to the cache and to themselves (causal).

        The keys and values of ``x`` are written at cache slots ``start_pos ..
        start_pos + seq - 1``. Decoding a sequence in chunks equals :meth:`apply` with
        ``causal=True`` on the whole of it (``rope`` sees the absolute positions). A static
        ``start_pos`` out of range is a ``ValueError`` / :class:`ShapeError` at trace time; a
        traced one out of range makes ``y`` NaN and leaves the cache unchanged.

        Args:
          allow: optional boolean over the cache slots, ``[seq, max_len]`` or ``[batch|1,
            heads|1, seq|1, max_len]`` (a padding mask: ``[batch, 1, 1, max_len]``), combined
            with the causal window; a query with no allowed slot outputs zeros.
          position_ids: ``[batch|1, seq]`` integer positions for ``rope`` (default
            ``start_pos + arange(seq)``), e.g. shifted by left padding.
        """
        if not self.causal:
            raise ValueError(f"{self!r}: KV-cache decoding needs a causal layer (causal=True)")
        self._check_input(x)
        start, in_range, max_len = _kvcache.position(self, cache, x, *self._ints, start_pos)
        q, k, v = self._heads(self.bind(params, {}), x, start if position_ids is None else None, position_ids)
        cache = _kvcache.write(cache, k, v, start, in_range)
        allowed = _kvcache.causal_window(start, x.shape[1], max_len)
        if allow is not None:
            allowed = allowed & self._allowed(allow, x.shape[0], x.shape[1], max_len, " over the cache slots")
        o = _kvcache.attend(q, cache, allowed)
        y = self.o_proj.apply(params["o_proj"], {}, self._merge(o, None if allow is None else allowed))[0]
        return jnp.where(in_range, y, jnp.nan), cache


_GATE_ACTIVATIONS = {
    "silu": jax.nn.silu,
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "relu": jax.nn.relu,
}


def _check_gate_activation(layer_name: str, name: str, activation: Any) -> Any:
    if isinstance(activation, str):
        if activation not in _GATE_ACTIVATIONS:
            raise ValueError(
                f"{layer_name}: {name} must be one of {sorted(_GATE_ACTIVATIONS)} or a hashable callable, "
                f"got {activation!r}"
            )
        return activation
    try:
        hash(activation)
    except TypeError:
        raise ValueError(f"{layer_name}: {name} must be hashable (a layer config is static under jit)") from None
    if not callable(activation):
        raise ValueError(
            f"{layer_name}: {name} must be one of {sorted(_GATE_ACTIVATIONS)} or a hashable callable, "
            f"got {activation!r}"
        )
    return activation


@dataclass(frozen=True)
class GatedFeedForward(Layer):
    """The gated feed-forward network ``down_proj(activation(gate_proj(x)) * up_proj(x))``.

    ``activation="silu"`` is SwiGLU (Llama, Mistral, Qwen), ``"gelu"`` / ``"gelu_tanh"`` GeGLU
    (Gemma uses the tanh form). A composite of three :class:`Linear` children, keys drawn
    in the order ``gate_proj``, ``up_proj``, ``down_proj``.

    PyTorch analogue: none in ``torch.nn``; transformers' ``LlamaMLP`` (``mlp_bias`` is
    ``bias``), whose ``gate_proj``/``up_proj``/``down_proj`` weights load by name.

    Args:
      hidden_size: input and output width.
      intermediate_size: hidden width.
      activation: ``"silu"``, ``"gelu"`` (exact), ``"gelu_tanh"``, ``"relu"`` or a hashable callable.
      bias: biases in the three projections.
      dtype, param_dtype, precision: as for :class:`Linear` (keyword-only).

    Shapes:
      ``x [..., hidden_size] -> y [..., hidden_size]``; ``gate_proj.weight`` and
      ``up_proj.weight [intermediate_size, hidden_size]``, ``down_proj.weight
      [hidden_size, intermediate_size]``.

    >>> import jax, jax.numpy as jnp
    >>> from tlean.layers import GatedFeedForward
    >>> mlp = GatedFeedForward(8, 20)
    >>> params, state = mlp.init(jax.random.key(0))
    >>> sorted(params), mlp.apply(params, state, jnp.ones((2, 3, 8)))[0].shape
    (['down_proj', 'gate_proj', 'up_proj'], (2, 3, 8))
    """

    hidden_size: int = _util.size()
    intermediate_size: int = _util.size()
    activation: str | Callable = _util.checked(_check_gate_activation, "silu")
    bias: bool = _util.flag(False)
    _: KW_ONLY
    dtype: Any = _util.dtype_field()
    param_dtype: Any = _util.param_dtype_field()
    precision: Any = _util.precision_field()

    gate_proj: Linear = sublayer()
    up_proj: Linear = sublayer()
    down_proj: Linear = sublayer()

    def __post_init__(self):
        linear = dict(dtype=self.dtype, param_dtype=self.param_dtype, precision=self.precision)
        e, h = self.hidden_size, self.intermediate_size
        for field, layer in dict(
            gate_proj=Linear(e, h, self.bias, **linear),
            up_proj=Linear(e, h, self.bias, **linear),
            down_proj=Linear(h, e, self.bias, **linear),
        ).items():
            _util.set_field(self, field, layer)

    def apply(self, params: dict, state: dict, x: Float[Array, "*batch hidden"], *, key=None, train=False):
        _util.check_float(self, x)
        _util.check_features(self, x, self.hidden_size)
        c = self.bind(params, state, key=key, train=train)
        act = _GATE_ACTIVATIONS[self.activation] if isinstance(self.activation, str) else self.activation
        return c.down_proj(act(c.gate_proj(x)) * c.up_proj(x)), state
