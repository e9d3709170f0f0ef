"""Transformer encoder: torch.nn.TransformerEncoderLayer and a stack of them applied with ``lax.scan``."""

from __future__ import annotations

import functools
import numbers
from dataclasses import dataclass
from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Float

from tlean._core import Layer, ShapeError
from tlean.layers import _util
from tlean.layers._attention import MultiheadAttention
from tlean.layers._dropout import Dropout
from tlean.layers._linear import Linear
from tlean.layers._norm import LayerNorm

_ACTIVATIONS = {"relu": jax.nn.relu, "gelu": lambda x: jax.nn.gelu(x, approximate=False)}


def _check_activation(name: str, activation: Any) -> None:
    if isinstance(activation, str):
        if activation not in _ACTIVATIONS:
            raise ValueError(f"{name}: activation must be 'relu', 'gelu' or a hashable callable, got {activation!r}")
        return
    if not callable(activation):
        raise ValueError(f"{name}: activation must be 'relu', 'gelu' or a hashable callable, got {activation!r}")
    try:
        hash(activation)
    except TypeError as err:
        raise ValueError(f"{name}: activation must be hashable (a layer config is static under jit): {err}") from None


def _check_dropout(name: str, p: Any) -> float:
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 <= p < 1:
        raise ValueError(f"{name}: dropout must be a probability in [0, 1), got {p!r}")
    return float(p)


@dataclass(frozen=True)
class TransformerEncoderBlock(Layer):
    """One Transformer encoder layer: self-attention then a feed-forward network, each with a residual.

    ``norm_first=False`` (post-norm, PyTorch's default)::

        x = norm1(x + dropout1(self_attn(x)))
        x = norm2(x + dropout2(linear2(dropout(activation(linear1(x))))))

    ``norm_first=True`` (pre-norm) applies ``norm1``/``norm2`` to the branch inputs and
    adds the branches to ``x`` unnormalised. ``self_attn`` also drops its attention
    weights with probability ``dropout`` in training, as PyTorch's does.

    PyTorch analogue: ``torch.nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward,
    dropout, activation, layer_norm_eps, batch_first=True, norm_first, bias)``; the same
    parameter names (``self_attn.in_proj_weight``, ``linear1.weight``, ``norm1.weight``,
    ...), layouts and initialisers, so its state_dict loads by name. ``causal=True``
    (PyTorch: pass a causal ``src_mask``) makes it a decoder-only (GPT) block, with
    :meth:`init_cache` / :meth:`decode` for KV-cache decoding.

    Args:
      d_model: model width.
      nhead: number of attention heads (divides ``d_model``).
      dim_feedforward: hidden width of the feed-forward network.
      dropout: drop probability of the four dropouts (attention weights, after attention,
        inside the FFN after the activation, after the FFN).
      activation: ``"relu"``, ``"gelu"`` (exact, as PyTorch's) or a hashable callable.
      layer_norm_eps: LayerNorm epsilon.
      norm_first: pre-norm instead of post-norm.
      bias: biases in the projections, linears and LayerNorms.
      causal: causal self-attention.
      dtype, param_dtype, precision: as for :class:`Linear`.

    Apply keywords ``mask``, ``attn_mask``, ``key_padding_mask``: passed to
    :class:`MultiheadAttention` (``mask`` True = may attend; the other two PyTorch's,
    True = blocked).

    Shapes:
      ``x [batch, seq, d_model]`` or ``[seq, d_model]`` -> ``y`` of the same shape.

    >>> import jax, jax.numpy as jnp
    >>> from tlean.layers import TransformerEncoderBlock
    >>> block = TransformerEncoderBlock(16, 4, dim_feedforward=32)
    >>> params, state = block.init(jax.random.key(0))
    >>> sorted(params)
    ['linear1', 'linear2', 'norm1', 'norm2', 'self_attn']
    >>> block.apply(params, state, jnp.ones((2, 5, 16)))[0].shape
    (2, 5, 16)
    """

    d_model: int
    nhead: int
    dim_feedforward: int = 2048
    dropout: float = 0.1
    activation: str | Callable = "relu"
    layer_norm_eps: float = 1e-5
    norm_first: bool = False
    bias: bool = True
    causal: bool = False
    dtype: Any = None
    param_dtype: Any = jnp.float32
    precision: Any = None

    def __post_init__(self):
        name = type(self).__name__
        _util.positive(name, d_model=self.d_model, nhead=self.nhead, dim_feedforward=self.dim_feedforward)
        if self.d_model % self.nhead:
            raise ValueError(f"{name}: d_model={self.d_model} must be divisible by nhead={self.nhead}")
        _util.set_field(self, "dropout", _check_dropout(name, self.dropout))
        _check_activation(name, self.activation)
        if not self.layer_norm_eps >= 0:
            raise ValueError(f"{name}: layer_norm_eps must be >= 0, got {self.layer_norm_eps!r}")
        for flag in ("norm_first", "bias", "causal"):
            _util.set_field(self, flag, bool(getattr(self, flag)))
        _util.numeric_fields(self)

    # -- the sub-layers, by PyTorch's names -------------------------------------------------
    @property
    def self_attn(self) -> MultiheadAttention:
        return MultiheadAttention(self.d_model, self.nhead, self.bias, self.causal, self.dropout,
                                  dtype=self.dtype, param_dtype=self.param_dtype, precision=self.precision)

    @property
    def linear1(self) -> Linear:
        return Linear(self.d_model, self.dim_feedforward, self.bias, self.dtype, self.param_dtype, self.precision)

    @property
    def linear2(self) -> Linear:
        return Linear(self.dim_feedforward, self.d_model, self.bias, self.dtype, self.param_dtype, self.precision)

    @property
    def norm(self) -> LayerNorm:
        return LayerNorm(self.d_model, self.layer_norm_eps, bias=self.bias, dtype=self.dtype,
                         param_dtype=self.param_dtype)

    def init(self, key: jax.Array) -> tuple[dict, dict]:
        k_attn, k_1, k_2 = jax.random.split(key, 3)
        norm = self.norm.init(None)[0]
        params = {
            "self_attn": self.self_attn.init(k_attn)[0],
            "linear1": self.linear1.init(k_1)[0],
            "linear2": self.linear2.init(k_2)[0],
            "norm1": norm,
            "norm2": jax.tree.map(jnp.copy, norm),
        }
        return params, {}

    # -- applying ---------------------------------------------------------------------------
    def apply(
        self,
        params: dict,
        state: dict,
        x: Float[Array, "*batch seq d_model"],
        *,
        key: jax.Array | None = None,
        train: bool = False,
        mask: Array | None = None,
        attn_mask: Array | None = None,
        key_padding_mask: Array | None = None,
    ):
        self._check_input(x)
        keys = [None] * 4 if key is None else [jax.random.fold_in(key, i) for i in range(4)]

        def attention(h):
            y, _ = self.self_attn.apply(params["self_attn"], {}, h, key=keys[0], train=train, mask=mask,
                                        attn_mask=attn_mask, key_padding_mask=key_padding_mask)
            return y, None

        y, _ = self._forward(params, x, attention, keys[1:], train)
        return y, state

    def _check_input(self, x: Any) -> None:
        _util.check_float(self, x)
        if jnp.ndim(x) not in (2, 3) or jnp.shape(x)[-1] != self.d_model:
            raise ShapeError(self, f"input [batch, seq, {self.d_model}] or [seq, {self.d_model}]", jnp.shape(x))

    def _forward(self, params: dict, x: jax.Array, attention: Callable, keys: list, train: bool):
        """The residual structure around ``attention(h) -> (y, aux)``; returns ``(x, aux)``."""
        drop = Dropout(self.dropout)
        norm = self.norm
        act = _ACTIVATIONS[self.activation] if isinstance(self.activation, str) else self.activation

        def sa_block(h):
            y, aux = attention(h)
            return drop.apply({}, {}, y, key=keys[0], train=train)[0], aux

        def ff_block(h):
            h = act(self.linear1.apply(params["linear1"], {}, h)[0])
            h = drop.apply({}, {}, h, key=keys[1], train=train)[0]
            h = self.linear2.apply(params["linear2"], {}, h)[0]
            return drop.apply({}, {}, h, key=keys[2], train=train)[0]

        norm1 = lambda h: norm.apply(params["norm1"], {}, h)[0]  # noqa: E731
        norm2 = lambda h: norm.apply(params["norm2"], {}, h)[0]  # noqa: E731
        if self.norm_first:
            y, aux = sa_block(norm1(x))
            x = x + y
            x = x + ff_block(norm2(x))
        else:
            y, aux = sa_block(x)
            x = norm1(x + y)
            x = norm2(x + ff_block(x))
        return x, aux

    # -- KV-cache decoding ------------------------------------------------------------------
    def init_cache(self, batch: int, max_len: int, dtype: Any = jnp.float32) -> dict:
        """The empty KV cache of ``self_attn`` (see :meth:`MultiheadAttention.init_cache`)."""
        return self.self_attn.init_cache(batch, max_len, dtype)

    def decode(self, params: dict, cache: dict, x: Float[Array, "batch seq d_model"], start_pos: int | jax.Array):
        """``(y, new cache)`` for positions ``start_pos ..`` of ``x`` (eval mode; needs ``causal=True``).

        See :meth:`MultiheadAttention.decode`; decoding in chunks equals :meth:`apply`
        on the whole sequence.
        """
        self._check_input(x)
        attention = lambda h: self.self_attn.decode(params["self_attn"], cache, h, start_pos)  # noqa: E731
        return self._forward(params, x, attention, [None] * 3, False)


@dataclass(frozen=True)
class TransformerEncoder(Layer):
    """``num_layers`` :class:`TransformerEncoderBlock`\\ s with stacked parameters, applied with ``lax.scan``.

    The parameters of all layers are stacked on a leading axis: ``params = {"layers":
    block params with a leading num_layers axis}``, so PyTorch's
    ``layers.{i}.self_attn.in_proj_weight`` is ``params["layers"]["self_attn"]
    ["in_proj_weight"][i]``. ``init`` uses one key and initialises layer ``i`` from
    ``jax.random.split(key, num_layers)[i]`` (one vmapped init). ``apply`` runs the layers
    with ``lax.scan`` (``scan=True``), so the block is traced and compiled once whatever
    the depth, or unrolled in Python (``scan=False``) with the same outputs and gradients.
    Layer ``i`` gets the dropout key ``jax.random.fold_in(key, i)`` either way.

    PyTorch analogue: ``torch.nn.TransformerEncoder(TransformerEncoderLayer(...,
    batch_first=True), num_layers, enable_nested_tensor=False)`` without a final ``norm``
    (add a LayerNorm after it). PyTorch deep-copies one layer, so its layers start
    identical; here each layer has its own initial values. Loading a PyTorch state_dict
    means stacking ``layers.{i}.*`` along a new first axis.

    Args:
      num_layers: depth.
      d_model, nhead, dim_feedforward, dropout, activation, norm_first: the options of
        every block (see :class:`TransformerEncoderBlock`).
      scan: apply with ``lax.scan`` (True) or a Python loop (False).
      layer_norm_eps, bias, causal, dtype, param_dtype, precision: more block options.

    Apply keywords ``mask``, ``attn_mask``, ``key_padding_mask`` go to every layer.

    Shapes:
      ``x [batch, seq, d_model]`` or ``[seq, d_model]`` -> ``y`` of the same shape.

    >>> import jax, jax.numpy as jnp
    >>> from tlean.layers import TransformerEncoder
    >>> enc = TransformerEncoder(3, 16, 4, dim_feedforward=32)
    >>> params, state = enc.init(jax.random.key(0))
    >>> params["layers"]["linear1"]["weight"].shape
    (3, 32, 16)
    >>> enc.apply(params, state, jnp.ones((2, 5, 16)))[0].shape
    (2, 5, 16)
    """

    num_layers: int
    d_model: int
    nhead: int
    dim_feedforward: int = 2048
    dropout: float = 0.1
    activation: str | Callable = "relu"
    norm_first: bool = False
    scan: bool = True
    layer_norm_eps: float = 1e-5
    bias: bool = True
    causal: bool = False
    dtype: Any = None
    param_dtype: Any = jnp.float32
    precision: Any = None

    def __post_init__(self):
        _util.positive("TransformerEncoder", num_layers=self.num_layers)
        _util.set_field(self, "scan", bool(self.scan))
        try:
            block = self.block
        except ValueError as err:
            raise ValueError(str(err).replace("TransformerEncoderBlock:", "TransformerEncoder:", 1)) from None
        for name in ("dropout", "norm_first", "bias", "causal", "dtype", "param_dtype", "precision"):
            _util.set_field(self, name, getattr(block, name))

    @property
    def block(self) -> TransformerEncoderBlock:
        """The layer every depth applies (with its own parameters)."""
        return TransformerEncoderBlock(
            self.d_model, self.nhead, self.dim_feedforward, self.dropout, self.activation,
            layer_norm_eps=self.layer_norm_eps, norm_first=self.norm_first, bias=self.bias, causal=self.causal,
            dtype=self.dtype, param_dtype=self.param_dtype, precision=self.precision,
        )

    def init(self, key: jax.Array) -> tuple[dict, dict]:
        return {"layers": _init_layers(self, key)}, {}

    def layer_params(self, params: dict, i: int) -> dict:
        """The params of layer ``i`` (a :class:`TransformerEncoderBlock`'s)."""
        return jax.tree.map(lambda a: a[i], params["layers"])

    def apply(
        self,
        params: dict,
        state: dict,
        x: Float[Array, "*batch seq d_model"],
        *,
        key: jax.Array | None = None,
        train: bool = False,
        mask: Array | None = None,
        attn_mask: Array | None = None,
        key_padding_mask: Array | None = None,
    ):
        block = self.block
        try:
            block._check_input(x)
        except ShapeError as err:
            raise ShapeError(self, err.expected, err.got) from None
        except TypeError as err:
            raise TypeError(str(err).replace(repr(block), repr(self), 1)) from None

        # The layers compute in the result type of input and params: fix it up front (a scan carry keeps its type).
        x = x.astype(_util.compute_dtype(self.dtype, x, params["layers"]["linear1"]["weight"]))

        def layer(h, p, i):
            k = None if key is None else jax.random.fold_in(key, i)
            return block.apply(p, {}, h, key=k, train=train, mask=mask, attn_mask=attn_mask,
                               key_padding_mask=key_padding_mask)[0]

        if self.scan:
            x, _ = lax.scan(lambda h, xs: (layer(h, *xs), None), x, (params["layers"], jnp.arange(self.num_layers)))
        else:
            for i in range(self.num_layers):
                x = layer(x, self.layer_params(params, i), i)
        return x, state

    # -- KV-cache decoding ------------------------------------------------------------------
    def init_cache(self, batch: int, max_len: int, dtype: Any = jnp.float32) -> dict:
        """Every layer's empty KV cache, stacked: ``{"key", "value": [layers, batch, max_len, heads, head_dim]}``."""
        one = self.block.init_cache(batch, max_len, dtype)
        return jax.tree.map(lambda a: jnp.zeros((self.num_layers,) + a.shape, a.dtype), one)

    def decode(self, params: dict, cache: dict, x: Float[Array, "batch seq d_model"], start_pos: int | jax.Array):
        """``(y, new cache)``: every layer's :meth:`TransformerEncoderBlock.decode`, scanned or unrolled."""
        block = self.block
        block._check_input(x)
        x = x.astype(_util.compute_dtype(self.dtype, x, params["layers"]["linear1"]["weight"]))
        if self.scan:
            def step(h, xs):
                p, c = xs
                return block.decode(p, c, h, start_pos)

            return lax.scan(step, x, (params["layers"], cache))
        caches = []
        for i in range(self.num_layers):
            x, c = block.decode(self.layer_params(params, i), jax.tree.map(lambda a: a[i], cache), x, start_pos)
            caches.append(c)
        return x, jax.tree.map(lambda *a: jnp.stack(a), *caches)


@functools.partial(jax.jit, static_argnums=0)
def _init_layers(encoder: TransformerEncoder, key: jax.Array) -> dict:
    """Layer ``i`` from ``split(key, num_layers)[i]``, vmapped; jitted, as op-by-op it takes seconds."""
    keys = jax.random.split(key, encoder.num_layers)
    return jax.vmap(lambda k: encoder.block.init(k)[0])(keys)
