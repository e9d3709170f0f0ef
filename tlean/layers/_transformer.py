"""Transformers: torch.nn.TransformerEncoderLayer / TransformerDecoderLayer, their stacks (Stacked) and Transformer."""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Float

from tlean._core import Layer, ShapeError, child_config, init_shapes, sublayer
from tlean.layers import _kvcache, _util
from tlean.layers._attention import MultiheadAttention
from tlean.layers._combinators import Stacked
from tlean.layers._dropout import Dropout
from tlean.layers._linear import Linear
from tlean.layers._norm import LayerNorm

_ACTIVATIONS = {"relu": jax.nn.relu, "gelu": lambda x: jax.nn.gelu(x, approximate=False)}


def check_activation(layer_name: str, name: str, activation: Any) -> Any:
    """``"relu"``, ``"gelu"`` or a hashable callable (a layer config is static under jit)."""
    if isinstance(activation, str):
        if activation not in _ACTIVATIONS:
            raise ValueError(f"{layer_name}: {name} must be 'relu', 'gelu' or a hashable callable, got {activation!r}")
        return activation
    if not callable(activation):
        raise ValueError(f"{layer_name}: {name} must be 'relu', 'gelu' or a hashable callable, got {activation!r}")
    try:
        hash(activation)
    except TypeError as err:
        raise ValueError(f"{layer_name}: {name} must be hashable (a layer config is static under jit): {err}") from None
    return activation


def _bool_mask_refused(layer: Layer, mask: Any) -> None:
    raise TypeError(
        f"{layer!r}: the meaning of mask= changed. tlean's mask= meant True = may attend; a keyword named as "
        f"torch's now has torch's meaning (True = blocked). Pass allow= (True = may attend) or src_mask= "
        f"(torch's: True or -inf = blocked)"
    )


def _one_of(layer: Layer, a: tuple[str, Any], b: tuple[str, Any]) -> Any:
    """The value of whichever of two aliases was given (both: ValueError)."""
    if a[1] is not None and b[1] is not None:
        raise ValueError(f"{layer!r}: {a[0]} and {b[0]} are the same mask; pass one")
    return a[1] if a[1] is not None else b[1]


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
    dropout, activation, layer_norm_eps, batch_first, norm_first, bias)`` in torch's
    positional order, with the same child names (``self_attn.in_proj_weight``,
    ``linear1.weight``, ``norm1.weight``, ...), layouts and initialisers, so its
    state_dict loads by name. A composite: the children ``self_attn``, ``linear1``,
    ``linear2``, ``norm1``, ``norm2`` draw their keys in that order from
    ``SeedStream(key)``. Differences: ``batch_first`` defaults to True (torch: False;
    ``nn.TransformerEncoderLayer`` requires the keyword); ``causal=True`` (torch: a causal
    ``src_mask``) makes it a decoder-only (GPT) block, with :meth:`init_cache` /
    :meth:`decode` for KV-cache decoding.

    Args:
      d_model: model width.
      nhead: number of attention heads (divides ``d_model``).
      dim_feedforward: hidden width of the feed-forward network.
      dropout: drop probability of the four dropouts (attention weights, after attention,
        inside the FFN after the activation, after the FFN).
      activation: ``"relu"``, ``"gelu"`` (exact, as PyTorch's) or a hashable callable.
      layer_norm_eps: LayerNorm epsilon.
      batch_first: ``[batch, seq, d_model]`` (True) or ``[seq, batch, d_model]``.
      norm_first: pre-norm instead of post-norm.
      bias: biases in the projections, linears and LayerNorms.
      causal: causal self-attention (keyword-only).
      dtype, param_dtype, precision: as for :class:`Linear` (keyword-only).

    Apply keywords (torch's names keep torch's meaning, DESIGN 1.1): ``src_mask``
    (alias ``attn_mask``; True or ``-inf`` = blocked, or additive float), ``src_key_padding_mask``
    (alias ``key_padding_mask``; True = padded), ``is_causal`` (applies the causal mask,
    combined with any other), and ``allow`` (boolean, True = may attend). ``mask=`` is
    refused for one release: its meaning changed.

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

    d_model: int = _util.size()
    nhead: int = _util.size()
    dim_feedforward: int = _util.size(2048)
    dropout: float = _util.probability(0.1)
    activation: str | Callable = _util.checked(check_activation, "relu")
    layer_norm_eps: float = _util.nonnegative(1e-5)
    batch_first: bool = _util.flag(True)
    norm_first: bool = _util.flag(False)
    bias: bool = _util.flag(True)
    _: KW_ONLY
    causal: bool = _util.flag(False)
    dtype: Any = _util.dtype_field()
    param_dtype: Any = _util.param_dtype_field()
    precision: Any = _util.precision_field()

    # the children, in torch's order (their keys are drawn in this order)
    self_attn: MultiheadAttention = sublayer()
    linear1: Linear = sublayer()
    ff_dropout: Dropout = sublayer()
    linear2: Linear = sublayer()
    norm1: LayerNorm = sublayer()
    norm2: LayerNorm = sublayer()
    dropout1: Dropout = sublayer()
    dropout2: Dropout = sublayer()

    def __post_init__(self):
        name = type(self).__name__
        if self.d_model % self.nhead:
            raise ValueError(f"{name}: d_model={self.d_model} must be divisible by nhead={self.nhead}")
        numerics = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        linear = dict(numerics, precision=self.precision)
        norm = LayerNorm(self.d_model, self.layer_norm_eps, bias=self.bias, **numerics)
        for field, layer in dict(
            self_attn=MultiheadAttention(
                self.d_model, self.nhead, self.dropout, self.bias, causal=self.causal, **linear
            ),
            linear1=Linear(self.d_model, self.dim_feedforward, self.bias, **linear),
            ff_dropout=Dropout(self.dropout),
            linear2=Linear(self.dim_feedforward, self.d_model, self.bias, **linear),
            norm1=norm,
            norm2=norm,
            dropout1=Dropout(self.dropout),
            dropout2=Dropout(self.dropout),
        ).items():
            _util.set_field(self, field, layer)

    # -- applying ---------------------------------------------------------------------------
    def apply(
        self,
        params: dict,
        state: dict,
        x: Float[Array, "*batch seq d_model"],
        *,
        key: jax.Array | None = None,
        train: bool = False,
        allow: Array | None = None,
        src_mask: Array | None = None,
        src_key_padding_mask: Array | None = None,
        is_causal: bool | None = False,
        attn_mask: Array | None = None,
        key_padding_mask: Array | None = None,
        mask: Any = None,
    ):
        if mask is not None:
            _bool_mask_refused(self, mask)
        src_mask = _one_of(self, ("src_mask", src_mask), ("attn_mask", attn_mask))
        padding = _one_of(self, ("src_key_padding_mask", src_key_padding_mask), ("key_padding_mask", key_padding_mask))
        x, seq_first = self._check_input(x)
        c = self.bind(params, state, key=key, train=train)
        attend = lambda h: c.self_attn(
            h, allow=allow, attn_mask=src_mask, key_padding_mask=padding, is_causal=bool(is_causal)
        )
        y = self._forward(c, x, attend)
        return (jnp.swapaxes(y, 0, 1) if seq_first else y), state

    def _check_input(self, x: Any) -> tuple[Any, bool]:
        """``x`` batch-first, and whether it came sequence-first."""
        _util.check_float(self, x)
        if jnp.ndim(x) not in (2, 3) or jnp.shape(x)[-1] != self.d_model:
            raise ShapeError(self, f"input [batch, seq, {self.d_model}] or [seq, {self.d_model}]", jnp.shape(x))
        seq_first = not self.batch_first and jnp.ndim(x) == 3
        return (jnp.swapaxes(x, 0, 1) if seq_first else x), seq_first

    def _forward(self, c: Any, x: jax.Array, attend: Callable) -> jax.Array:
        """The residual structure around ``attend(h)``, with the children bound in ``c``."""
        act = _ACTIVATIONS[self.activation] if isinstance(self.activation, str) else self.activation

        def sa_block(h):
            return c.dropout1(attend(h))

        def ff_block(h):
            return c.dropout2(c.linear2(c.ff_dropout(act(c.linear1(h)))))

        if self.norm_first:
            x = x + sa_block(c.norm1(x))
            return x + ff_block(c.norm2(x))
        x = c.norm1(x + sa_block(x))
        return c.norm2(x + ff_block(x))

    # -- KV-cache decoding ------------------------------------------------------------------
    def init_cache(self, batch: int, max_len: int, dtype: Any = jnp.float32) -> dict:
        """The empty KV cache of ``self_attn`` (see :meth:`MultiheadAttention.init_cache`)."""
        return self.self_attn.init_cache(batch, max_len, dtype)

    def decode(self, params: dict, cache: dict, x: Float[Array, "batch seq d_model"], start_pos: int | jax.Array):
        """``(y, new cache)`` for positions ``start_pos ..`` of ``x`` (eval mode; needs ``causal=True``).

        See :meth:`MultiheadAttention.decode`; decoding in chunks equals :meth:`apply`
        on the whole sequence.
        """
        x, _ = self._check_input(x)
        if not self.batch_first:
            raise ValueError(f"{self!r}: decode takes batch-first input; build the block with batch_first=True")
        out = {}

        def attend(h):
            y, out["cache"] = self.self_attn.decode(params["self_attn"], cache, h, start_pos)
            return y

        y = self._forward(self.bind(params, init_shapes(self)[1]), x, attend)
        return y, out["cache"]


@dataclass(frozen=True)
class TransformerEncoder(Layer):
    """``num_layers`` copies of ``encoder_layer``, stacked and applied with ``lax.scan``, then an optional ``norm``.

    A composite with the child ``layers = Stacked(encoder_layer, num_layers, scan)`` and
    torch's optional final ``norm``: ``params = {"layers": block params with a leading
    num_layers axis, "norm": ...}``, so PyTorch's ``layers.{i}.self_attn.in_proj_weight``
    is ``params["layers"]["self_attn"]["in_proj_weight"][i]`` (named
    ``layers.*.self_attn.in_proj_weight``; interop splits and stacks it). Layer ``i`` is
    initialised from ``jax.random.split(k, num_layers)[i]``, ``k`` the first key of
    ``SeedStream(key)``; ``norm`` draws the next. ``scan=True`` traces and compiles the
    block once whatever the depth; ``scan=False`` unrolls with the same outputs and
    gradients. Layer ``i`` gets the dropout key ``fold_in(fold_in(key, 0), i)``.

    PyTorch analogue: ``torch.nn.TransformerEncoder(encoder_layer, num_layers, norm,
    enable_nested_tensor, mask_check)`` (the last two are accepted and have no effect:
    there are no nested tensors here). PyTorch deep-copies one layer, so its layers start
    identical; here each layer has its own initial values. ``nn.TransformerEncoder``
    takes builders as torch takes modules:
    ``nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 4, batch_first=True), 6)``.
    :meth:`of` builds one from the block's options.

    Apply keywords: ``mask`` (torch's ``src_mask``: True or ``-inf`` = blocked; a boolean
    ``mask`` is refused for one release, as its meaning changed), ``src_key_padding_mask``,
    ``is_causal``, ``allow`` (True = may attend): all go to every layer.

    >>> import jax, jax.numpy as jnp
    >>> from tlean.layers import TransformerEncoder, TransformerEncoderBlock
    >>> enc = TransformerEncoder(TransformerEncoderBlock(16, 4, 32), 3)
    >>> params, state = enc.init(jax.random.key(0))
    >>> params["layers"]["linear1"]["weight"].shape
    (3, 32, 16)
    >>> enc.apply(params, state, jnp.ones((2, 5, 16)))[0].shape
    (2, 5, 16)
    """

    encoder_layer: Layer = child_config()
    num_layers: int = _util.size()
    layers: Stacked = sublayer()
    norm: Layer | None = None
    enable_nested_tensor: bool = _util.flag(True)
    mask_check: bool = _util.flag(True)
    _: KW_ONLY
    scan: bool = _util.flag(True)

    def __post_init__(self):
        if not isinstance(self.encoder_layer, Layer):
            raise TypeError(
                f"TransformerEncoder: encoder_layer must be a tlean Layer, got {type(self.encoder_layer).__name__}"
            )
        if self.norm is not None and not isinstance(self.norm, Layer):
            raise TypeError(f"TransformerEncoder: norm must be a tlean Layer or None, got {type(self.norm).__name__}")
        _util.set_field(self, "layers", Stacked(self.encoder_layer, self.num_layers, self.scan))

    @classmethod
    def of(
        cls,
        num_layers: int,
        d_model: int,
        nhead: int,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation: str | Callable = "relu",
        norm_first: bool = False,
        *,
        final_norm: bool = False,
        scan: bool = True,
        **block_options: Any,
    ) -> TransformerEncoder:
        """The encoder of ``num_layers`` :class:`TransformerEncoderBlock`\\ s built from the block's options.

        ``final_norm=True`` adds torch's final ``norm`` (a LayerNorm); ``block_options`` are
        the block's other fields (``layer_norm_eps``, ``bias``, ``causal``, ``dtype``, ...).
        """
        block = TransformerEncoderBlock(
            d_model, nhead, dim_feedforward, dropout, activation, norm_first=norm_first, **block_options
        )
        norm = None
        if final_norm:
            norm = LayerNorm(
                d_model, block.layer_norm_eps, bias=block.bias, dtype=block.dtype, param_dtype=block.param_dtype
            )
        return cls(block, num_layers, norm=norm, scan=scan)

    @property
    def block(self) -> Layer:
        """The layer every depth applies (with its own parameters)."""
        return self.encoder_layer

    def layer_params(self, params: dict, i: int) -> dict:
        """The params of layer ``i``."""
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
        src_key_padding_mask: Array | None = None,
        is_causal: bool | None = None,
        allow: Array | None = None,
    ):
        if mask is not None and getattr(mask, "dtype", None) == jnp.bool_:
            _bool_mask_refused(self, mask)
        context = dict(src_mask=mask, src_key_padding_mask=src_key_padding_mask, allow=allow, is_causal=is_causal)
        context = {
            k: v for k, v in context.items() if v is not None and v is not False
        }  # the layers must take the rest
        c = self.bind(params, state, key=key, train=train)
        x = c.layers(x, **context)
        if self.norm is not None:
            x = c.norm(x)
        return x, c.state

    # -- KV-cache decoding ------------------------------------------------------------------
    def init_cache(self, batch: int, max_len: int, dtype: Any = jnp.float32) -> dict:
        """Every layer's empty KV cache, stacked: ``{"key", "value": [layers, batch, heads, max_len, head_dim]}``."""
        one = _decoding(self.encoder_layer).init_cache(batch, max_len, dtype)
        return _kvcache.stack(self.num_layers, one)

    def decode(self, params: dict, cache: dict, x: Float[Array, "batch seq d_model"], start_pos: int | jax.Array):
        """``(y, new cache)``: every layer's :meth:`TransformerEncoderBlock.decode`, scanned or unrolled, then ``norm``."""
        block = _decoding(self.encoder_layer)
        x = x.astype(_util.compute_dtype(block.dtype, x, params["layers"]["linear1"]["weight"]))
        if self.scan:
            x, cache = lax.scan(lambda h, pc: block.decode(pc[0], pc[1], h, start_pos), x, (params["layers"], cache))
        else:
            caches = []
            for i in range(self.num_layers):
                x, c = block.decode(
                    self.layer_params(params, i), jax.tree.map(lambda a, i=i: a[i], cache), x, start_pos
                )
                caches.append(c)
            cache = jax.tree.map(lambda *a: jnp.stack(a), *caches)
        if self.norm is not None:
            x = self.norm.apply(params["norm"], {}, x)[0]
        return x, cache


def _bool_as_float(mask: Any) -> Any:
    """torch's boolean mask (True = blocked) as its float equivalent (-inf = blocked); other values pass."""
    if mask is not None and getattr(mask, "dtype", None) == jnp.bool_:
        return jnp.where(mask, -jnp.inf, 0.0).astype(jnp.float32)
    return mask


@dataclass(frozen=True)
class TransformerDecoderLayer(Layer):
    """One Transformer decoder layer: self-attention, cross-attention to ``memory``, then a feed-forward network.

    ``norm_first=False`` (post-norm, PyTorch's default)::

        x = norm1(x + dropout1(self_attn(x)))
        x = norm2(x + dropout2(multihead_attn(x, kv=memory)))
        x = norm3(x + dropout3(linear2(dropout(activation(linear1(x))))))

    ``norm_first=True`` (pre-norm) applies ``norm1``..``norm3`` to the branch inputs and
    adds the branches to ``x`` unnormalised. Both attentions also drop their attention
    weights with probability ``dropout`` in training, as PyTorch's do.

    PyTorch analogue: ``torch.nn.TransformerDecoderLayer(d_model, nhead, dim_feedforward,
    dropout, activation, layer_norm_eps, batch_first, norm_first, bias)`` in torch's
    positional order, called as ``layer(tgt, memory)`` (``Model.__call__`` maps the second
    input onto the ``memory`` keyword), with torch's child names (``self_attn``,
    ``multihead_attn``, ``linear1``, ``linear2``, ``norm1``..``norm3``), layouts and
    initialisers, so its state_dict loads by name. A composite: the children draw their
    keys in that order from ``SeedStream(key)``. Differences: ``batch_first`` defaults to
    True (torch: False; ``nn.TransformerDecoderLayer`` requires the keyword);
    ``tgt_is_causal``/``memory_is_causal`` apply the causal mask (torch: unchecked hints
    that need the mask as well).

    Args:
      d_model: model width (of ``x`` and ``memory``).
      nhead: number of heads of both attentions (divides ``d_model``).
      dim_feedforward: hidden width of the feed-forward network.
      dropout: drop probability of every dropout (both attentions' weights, after each
        branch, inside the FFN).
      activation: ``"relu"``, ``"gelu"`` (exact) or a hashable callable.
      layer_norm_eps: LayerNorm epsilon.
      batch_first: ``[batch, seq, d_model]`` (True) or ``[seq, batch, d_model]``.
      norm_first: pre-norm instead of post-norm.
      bias: biases in the projections, linears and LayerNorms.
      dtype, param_dtype, precision: as for :class:`Linear` (keyword-only).

    Apply keywords (torch's names keep torch's meaning, DESIGN 1.1): ``memory`` (required),
    ``tgt_mask`` / ``memory_mask`` (True or ``-inf`` = blocked, or additive float; ``[T, T]``
    / ``[T, S]`` or per head ``[batch * nhead, ...]``), ``tgt_key_padding_mask`` /
    ``memory_key_padding_mask`` (True = padded), ``tgt_is_causal`` / ``memory_is_causal``
    (apply the causal mask), and ``allow`` / ``memory_allow`` (boolean, True = may attend).

    Shapes:
      ``x [batch, T, d_model]``, ``memory [batch, S, d_model]`` (or unbatched ``[T, d_model]``,
      ``[S, d_model]``) -> ``y`` of ``x``'s shape.

    >>> import jax, jax.numpy as jnp
    >>> from tlean.layers import TransformerDecoderLayer
    >>> layer = TransformerDecoderLayer(16, 4, dim_feedforward=32)
    >>> params, state = layer.init(jax.random.key(0))
    >>> sorted(params)
    ['linear1', 'linear2', 'multihead_attn', 'norm1', 'norm2', 'norm3', 'self_attn']
    >>> tgt, memory = jnp.ones((2, 5, 16)), jnp.ones((2, 7, 16))
    >>> layer.apply(params, state, tgt, memory=memory, tgt_is_causal=True)[0].shape
    (2, 5, 16)
    """

    d_model: int = _util.size()
    nhead: int = _util.size()
    dim_feedforward: int = _util.size(2048)
    dropout: float = _util.probability(0.1)
    activation: str | Callable = _util.checked(check_activation, "relu")
    layer_norm_eps: float = _util.nonnegative(1e-5)
    batch_first: bool = _util.flag(True)
    norm_first: bool = _util.flag(False)
    bias: bool = _util.flag(True)
    _: KW_ONLY
    dtype: Any = _util.dtype_field()
    param_dtype: Any = _util.param_dtype_field()
    precision: Any = _util.precision_field()

    # the children, in torch's order (their keys are drawn in this order)
    self_attn: MultiheadAttention = sublayer()
    multihead_attn: MultiheadAttention = sublayer()
    linear1: Linear = sublayer()
    ff_dropout: Dropout = sublayer()
    linear2: Linear = sublayer()
    norm1: LayerNorm = sublayer()
    norm2: LayerNorm = sublayer()
    norm3: LayerNorm = sublayer()
    dropout1: Dropout = sublayer()
    dropout2: Dropout = sublayer()
    dropout3: Dropout = sublayer()

    inputs = ("memory",)  # decoder(tgt, memory) as in torch (Model.__call__)

    def __post_init__(self):
        name = type(self).__name__
        if self.d_model % self.nhead:
            raise ValueError(f"{name}: d_model={self.d_model} must be divisible by nhead={self.nhead}")
        numerics = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        linear = dict(numerics, precision=self.precision)
        attention = MultiheadAttention(self.d_model, self.nhead, self.dropout, self.bias, **linear)
        norm = LayerNorm(self.d_model, self.layer_norm_eps, bias=self.bias, **numerics)
        drop = Dropout(self.dropout)
        for field, layer in dict(
            self_attn=attention,
            multihead_attn=attention,
            linear1=Linear(self.d_model, self.dim_feedforward, self.bias, **linear),
            ff_dropout=drop,
            linear2=Linear(self.dim_feedforward, self.d_model, self.bias, **linear),
            norm1=norm,
            norm2=norm,
            norm3=norm,
            dropout1=drop,
            dropout2=drop,
            dropout3=drop,
        ).items():
            _util.set_field(self, field, layer)

    def apply(
        self,
        params: dict,
        state: dict,
        x: Float[Array, "... d_model"],
        *,
        key: jax.Array | None = None,
        train: bool = False,
        memory: Float[Array, "... d_model"] | None = None,
        tgt_mask: Array | None = None,
        memory_mask: Array | None = None,
        tgt_key_padding_mask: Array | None = None,
        memory_key_padding_mask: Array | None = None,
        tgt_is_causal: bool | None = False,
        memory_is_causal: bool | None = False,
        allow: Array | None = None,
        memory_allow: Array | None = None,
    ):
        x, memory, seq_first = _check_decoder_inputs(self, x, memory)
        c = self.bind(params, state, key=key, train=train)
        y = self._forward(
            c,
            x,
            lambda h: c.self_attn(
                h, allow=allow, attn_mask=tgt_mask, key_padding_mask=tgt_key_padding_mask, is_causal=bool(tgt_is_causal)
            ),
            lambda h: c.multihead_attn(
                h,
                kv=memory,
                allow=memory_allow,
                attn_mask=memory_mask,
                key_padding_mask=memory_key_padding_mask,
                is_causal=bool(memory_is_causal),
            ),
        )
        return (jnp.swapaxes(y, 0, 1) if seq_first else y), state

    def _forward(self, c: Any, x: jax.Array, self_attend: Callable, cross_attend: Callable) -> jax.Array:
        """The residual structure around the two attentions, with the children bound in ``c``."""
        act = _ACTIVATIONS[self.activation] if isinstance(self.activation, str) else self.activation

        def ff_block(h):
            return c.dropout3(c.linear2(c.ff_dropout(act(c.linear1(h)))))

        if self.norm_first:
            x = x + c.dropout1(self_attend(c.norm1(x)))
            x = x + c.dropout2(cross_attend(c.norm2(x)))
            return x + ff_block(c.norm3(x))
        x = c.norm1(x + c.dropout1(self_attend(x)))
        x = c.norm2(x + c.dropout2(cross_attend(x)))
        return c.norm3(x + ff_block(x))

    # -- KV-cache decoding ------------------------------------------------------------------
    def init_cache(
        self, params: dict, memory: Float[Array, "batch src d_model"], max_len: int, dtype: Any = jnp.float32
    ) -> dict:
        """The cache for :meth:`decode`: an empty causal self-attention cache and ``memory``'s projected keys/values.

        ``{"self_attn": {"key", "value": [batch, nhead, max_len, head_dim]}, "memory": {"key",
        "value": [batch, S, nhead, head_dim]}}``; the memory is projected once here
        (:meth:`MultiheadAttention.project_kv`), not at every decoding step.
        """
        if jnp.ndim(memory) != 3 or jnp.shape(memory)[-1] != self.d_model:
            raise ShapeError(
                self, f"memory [batch, seq, {self.d_model}] (batch-first) for init_cache", jnp.shape(memory)
            )
        if not self.batch_first:
            raise ValueError(f"{self!r}: decoding takes batch-first input; build the layer with batch_first=True")
        causal = dataclasses.replace(self.self_attn, causal=True)
        return {
            "self_attn": causal.init_cache(memory.shape[0], max_len, dtype),
            "memory": self.multihead_attn.project_kv(params["multihead_attn"], memory),
        }

    def decode(
        self,
        params: dict,
        cache: dict,
        x: Float[Array, "batch seq d_model"],
        start_pos: int | jax.Array,
        *,
        memory_key_padding_mask: Array | None = None,
    ) -> tuple[jax.Array, dict]:
        """``(y, new cache)`` for positions ``start_pos ..`` of the target ``x`` (eval mode).

        Self-attention is causal over the cached positions; cross-attention reads the
        projected memory of :meth:`init_cache`. Decoding in chunks equals :meth:`apply` with
        ``tgt_is_causal=True`` on the whole target.
        """
        if not self.batch_first:
            raise ValueError(f"{self!r}: decoding takes batch-first input; build the layer with batch_first=True")
        _util.check_float(self, x)
        if jnp.ndim(x) != 3 or jnp.shape(x)[-1] != self.d_model:
            raise ShapeError(self, f"input [batch, seq, {self.d_model}] to decode", jnp.shape(x))
        causal = dataclasses.replace(self.self_attn, causal=True)
        out = {}

        def self_attend(h):
            y, out["self_attn"] = causal.decode(params["self_attn"], cache["self_attn"], h, start_pos)
            return y

        def cross_attend(h):
            return self.multihead_attn.apply(
                params["multihead_attn"], {}, h, kv_cache=cache["memory"], key_padding_mask=memory_key_padding_mask
            )[0]

        y = self._forward(self.bind(params, {}), x, self_attend, cross_attend)
        return y, {"self_attn": out["self_attn"], "memory": cache["memory"]}


def _check_decoder_inputs(layer: Any, x: Any, memory: Any) -> tuple[Any, Any, bool]:
    """``x`` and ``memory`` batch-first (checked), and whether they came sequence-first."""
    if memory is None:
        raise TypeError(f"{layer!r} needs memory=... (the encoder's output): call it as decoder(tgt, memory)")
    d = layer.d_model
    _util.check_float(layer, x)
    _util.check_float(layer, memory)
    if jnp.ndim(x) not in (2, 3) or jnp.shape(x)[-1] != d:
        raise ShapeError(layer, f"input [batch, seq, {d}] or [seq, {d}]", jnp.shape(x))
    batch_axis = 0 if layer.batch_first else 1
    if (
        jnp.ndim(memory) != jnp.ndim(x)
        or jnp.shape(memory)[-1] != d
        or (jnp.ndim(x) == 3 and jnp.shape(memory)[batch_axis] != jnp.shape(x)[batch_axis])
    ):
        want = (
            f"[seq, {d}]"
            if jnp.ndim(x) == 2
            else (f"[{x.shape[0]}, seq, {d}]" if layer.batch_first else f"[seq, {x.shape[1]}, {d}]")
        )
        raise ShapeError(layer, f"memory {want} (laid out as the input {tuple(jnp.shape(x))})", jnp.shape(memory))
    seq_first = not layer.batch_first and jnp.ndim(x) == 3
    if seq_first:
        x, memory = jnp.swapaxes(x, 0, 1), jnp.swapaxes(memory, 0, 1)
    return x, memory, seq_first


@dataclass(frozen=True)
class TransformerDecoder(Layer):
    """``num_layers`` copies of ``decoder_layer``, stacked and applied with ``lax.scan``, then an optional ``norm``.

    The decoder counterpart of :class:`TransformerEncoder`, with the same structure and
    keying: ``params = {"layers": layer params with a leading num_layers axis, "norm": ...}``,
    so torch's ``layers.{i}.multihead_attn.in_proj_weight`` is index ``i`` of
    ``layers.*.multihead_attn.in_proj_weight``; layer ``i`` is initialised from
    ``jax.random.split(k, num_layers)[i]`` and dropped with ``fold_in(fold_in(key, 0), i)``;
    ``scan=False`` unrolls with the same outputs and gradients. Every layer attends to the
    same ``memory``.

    PyTorch analogue: ``torch.nn.TransformerDecoder(decoder_layer, num_layers, norm)``,
    called as ``decoder(tgt, memory, ...)``. PyTorch deep-copies one layer, so its layers
    start identical; here each has its own initial values. ``nn.TransformerDecoder`` takes
    builders as torch takes modules.

    Apply keywords: ``memory`` (required) and the masks of :class:`TransformerDecoderLayer`
    (``tgt_mask``, ``memory_mask``, ``tgt_key_padding_mask``, ``memory_key_padding_mask``,
    ``tgt_is_causal``, ``memory_is_causal``, ``allow``, ``memory_allow``): all go to every layer.

    >>> import jax, jax.numpy as jnp
    >>> from tlean.layers import TransformerDecoder, TransformerDecoderLayer
    >>> dec = TransformerDecoder(TransformerDecoderLayer(16, 4, 32), 2)
    >>> params, state = dec.init(jax.random.key(0))
    >>> params["layers"]["multihead_attn"]["in_proj_weight"].shape
    (2, 48, 16)
    >>> dec.apply(params, state, jnp.ones((2, 5, 16)), memory=jnp.ones((2, 7, 16)))[0].shape
    (2, 5, 16)
    """

    decoder_layer: Layer = child_config()
    num_layers: int = _util.size()
    layers: Stacked = sublayer()
    norm: Layer | None = None
    _: KW_ONLY
    scan: bool = _util.flag(True)

    inputs = ("memory",)

    def __post_init__(self):
        if not isinstance(self.decoder_layer, Layer):
            raise TypeError(
                f"TransformerDecoder: decoder_layer must be a tlean Layer, got {type(self.decoder_layer).__name__}"
            )
        if self.norm is not None and not isinstance(self.norm, Layer):
            raise TypeError(f"TransformerDecoder: norm must be a tlean Layer or None, got {type(self.norm).__name__}")
        _util.set_field(self, "layers", Stacked(self.decoder_layer, self.num_layers, self.scan))

    def apply(
        self,
        params: dict,
        state: dict,
        x: Float[Array, "... d_model"],
        *,
        key: jax.Array | None = None,
        train: bool = False,
        memory: Array | None = None,
        tgt_mask: Array | None = None,
        memory_mask: Array | None = None,
        tgt_key_padding_mask: Array | None = None,
        memory_key_padding_mask: Array | None = None,
        tgt_is_causal: bool | None = None,
        memory_is_causal: bool | None = False,
        allow: Array | None = None,
        memory_allow: Array | None = None,
    ):
        if memory is None:
            raise TypeError(f"{self!r} needs memory=... (the encoder's output): call it as decoder(tgt, memory)")
        context = dict(
            tgt_mask=tgt_mask,
            memory_mask=memory_mask,
            tgt_key_padding_mask=tgt_key_padding_mask,
            memory_key_padding_mask=memory_key_padding_mask,
            tgt_is_causal=tgt_is_causal,
            memory_is_causal=memory_is_causal,
            allow=allow,
            memory_allow=memory_allow,
        )
        context = {
            k: v for k, v in context.items() if v is not None and v is not False
        }  # the layers must take the rest
        c = self.bind(params, state, key=key, train=train)
        x = c.layers(x, memory=memory, **context)
        if self.norm is not None:
            x = c.norm(x)
        return x, c.state

    # -- KV-cache decoding ------------------------------------------------------------------
    def init_cache(
        self, params: dict, memory: Float[Array, "batch src d_model"], max_len: int, dtype: Any = jnp.float32
    ) -> dict:
        """Every layer's :meth:`TransformerDecoderLayer.init_cache`, stacked on a leading ``num_layers`` axis."""
        layer = _decoding(self.decoder_layer)
        return jax.vmap(lambda p: layer.init_cache(p, memory, max_len, dtype))(params["layers"])

    def decode(
        self,
        params: dict,
        cache: dict,
        x: Float[Array, "batch seq d_model"],
        start_pos: int | jax.Array,
        *,
        memory_key_padding_mask: Array | None = None,
    ) -> tuple[jax.Array, dict]:
        """``(y, new cache)``: every layer's :meth:`TransformerDecoderLayer.decode` in turn (scanned), then ``norm``."""
        layer = _decoding(self.decoder_layer)
        x = x.astype(_util.compute_dtype(layer.dtype, x, params["layers"]["linear1"]["weight"]))

        def step(h, pc):
            return layer.decode(pc[0], pc[1], h, start_pos, memory_key_padding_mask=memory_key_padding_mask)

        x, cache = lax.scan(step, x, (params["layers"], cache))
        if self.norm is not None:
            x = self.norm.apply(params["norm"], {}, x)[0]
        return x, cache


def _xavier(key: jax.Array, shape: tuple, dtype: Any) -> jax.Array:
    """``nn.init.xavier_uniform_`` on the last two axes (a leading axis stacks layers)."""
    bound = (6.0 / (shape[-1] + shape[-2])) ** 0.5
    return jax.random.uniform(key, shape, jnp.float32, -bound, bound).astype(dtype)


_MATRICES = (
    r"(encoder|decoder)\.layers\.((self_attn|multihead_attn)\.(in_proj_weight|out_proj\.weight)|linear[12]\.weight)"
)


@dataclass(frozen=True)
class Transformer(Layer):
    """The encoder-decoder Transformer: ``decoder(tgt, memory=encoder(src))``, torch.nn.Transformer.

    ``encoder`` is a :class:`TransformerEncoder` of ``num_encoder_layers``
    :class:`TransformerEncoderBlock`\\ s with a final LayerNorm, ``decoder`` a
    :class:`TransformerDecoder` of ``num_decoder_layers`` :class:`TransformerDecoderLayer`\\ s
    with a final LayerNorm (or ``custom_encoder`` / ``custom_decoder``). As in torch, every
    matrix of the default encoder and decoder is re-initialised xavier-uniform (per layer).

    PyTorch analogue: ``torch.nn.Transformer(d_model, nhead, num_encoder_layers,
    num_decoder_layers, dim_feedforward, dropout, activation, custom_encoder,
    custom_decoder, layer_norm_eps, batch_first, norm_first, bias)`` in torch's order,
    called as ``model(src, tgt)`` (``Model.__call__`` maps ``tgt`` onto the keyword), with
    torch's names (``encoder.layers.{i}.self_attn.in_proj_weight``, ``encoder.norm.weight``,
    ``decoder.layers.{i}.multihead_attn...``, ``decoder.norm``), so its state_dict loads
    by name. Differences: ``batch_first`` defaults to True (``nn.Transformer`` requires the
    keyword); ``*_is_causal`` apply the causal mask; torch also re-initialises the
    matrices of a custom encoder/decoder, here they keep their own init.

    Apply keywords (torch's meanings): ``tgt`` (required), ``src_mask``, ``tgt_mask``,
    ``memory_mask``, ``src_key_padding_mask``, ``tgt_key_padding_mask``,
    ``memory_key_padding_mask``, ``src_is_causal``, ``tgt_is_causal``, ``memory_is_causal``.

    Shapes:
      ``src [batch, S, d_model]``, ``tgt [batch, T, d_model]`` (or unbatched, or
      sequence-first with ``batch_first=False``) -> ``y`` of ``tgt``'s shape.

    >>> import jax, jax.numpy as jnp
    >>> from tlean.layers import Transformer
    >>> model = Transformer(16, 4, 2, 2, 32)
    >>> params, state = model.init(jax.random.key(0))
    >>> sorted(params), sorted(params["encoder"])
    (['decoder', 'encoder'], ['layers', 'norm'])
    >>> src, tgt = jnp.ones((2, 7, 16)), jnp.ones((2, 5, 16))
    >>> model.apply(params, state, src, tgt=tgt, tgt_is_causal=True)[0].shape
    (2, 5, 16)
    """

    d_model: int = _util.size(512)
    nhead: int = _util.size(8)
    num_encoder_layers: int = _util.size(6)
    num_decoder_layers: int = _util.size(6)
    dim_feedforward: int = _util.size(2048)
    dropout: float = _util.probability(0.1)
    activation: str | Callable = _util.checked(check_activation, "relu")
    custom_encoder: Layer | None = child_config(default=None)
    custom_decoder: Layer | None = child_config(default=None)
    layer_norm_eps: float = _util.nonnegative(1e-5)
    batch_first: bool = _util.flag(True)
    norm_first: bool = _util.flag(False)
    bias: bool = _util.flag(True)
    _: KW_ONLY
    scan: bool = _util.flag(True)
    dtype: Any = _util.dtype_field()
    param_dtype: Any = _util.param_dtype_field()
    precision: Any = _util.precision_field()

    encoder: Layer = sublayer()
    decoder: Layer = sublayer()

    inputs = ("tgt",)  # model(src, tgt) as in torch (Model.__call__)
    init_overrides = types.MappingProxyType({_MATRICES: _xavier})

    def __post_init__(self):
        for name in ("custom_encoder", "custom_decoder"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Layer):
                raise TypeError(f"Transformer: {name} must be a tlean Layer or None, got {type(value).__name__}")
        numerics = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        options = (
            self.d_model,
            self.nhead,
            self.dim_feedforward,
            self.dropout,
            self.activation,
            self.layer_norm_eps,
            True,
            self.norm_first,
            self.bias,
        )  # the stacks run batch-first: apply swaps once
        norm = LayerNorm(self.d_model, self.layer_norm_eps, bias=self.bias, **numerics)
        encoder = (
            self.custom_encoder
            if self.custom_encoder is not None
            else TransformerEncoder(
                TransformerEncoderBlock(*options, precision=self.precision, **numerics),
                self.num_encoder_layers,
                norm=norm,
                scan=self.scan,
            )
        )
        decoder = (
            self.custom_decoder
            if self.custom_decoder is not None
            else TransformerDecoder(
                TransformerDecoderLayer(*options, precision=self.precision, **numerics),
                self.num_decoder_layers,
                norm=norm,
                scan=self.scan,
            )
        )
        _util.set_field(self, "encoder", encoder)
        _util.set_field(self, "decoder", decoder)

    def apply(
        self,
        params: dict,
        state: dict,
        x: Float[Array, "... d_model"],
        *,
        key: jax.Array | None = None,
        train: bool = False,
        tgt: Array | None = None,
        src_mask: Array | None = None,
        tgt_mask: Array | None = None,
        memory_mask: Array | None = None,
        src_key_padding_mask: Array | None = None,
        tgt_key_padding_mask: Array | None = None,
        memory_key_padding_mask: Array | None = None,
        src_is_causal: bool | None = None,
        tgt_is_causal: bool | None = None,
        memory_is_causal: bool | None = False,
    ):
        if tgt is None:
            raise TypeError(f"{self!r} needs tgt=...: call it as transformer(src, tgt)")
        tgt, x, seq_first = _check_decoder_inputs(self, tgt, x)
        c = self.bind(params, state, key=key, train=train)
        encoder_kw = dict(
            mask=_bool_as_float(src_mask), src_key_padding_mask=src_key_padding_mask, is_causal=src_is_causal
        )
        memory = c.encoder(x, **{k: v for k, v in encoder_kw.items() if v is not None and v is not False})
        decoder_kw = dict(
            tgt_mask=tgt_mask,
            memory_mask=memory_mask,
            tgt_key_padding_mask=tgt_key_padding_mask,
            memory_key_padding_mask=memory_key_padding_mask,
            tgt_is_causal=tgt_is_causal,
            memory_is_causal=memory_is_causal,
        )
        y = c.decoder(tgt, memory=memory, **{k: v for k, v in decoder_kw.items() if v is not None and v is not False})
        return (jnp.swapaxes(y, 0, 1) if seq_first else y), c.state


def _decoding(layer: Layer) -> Any:
    """The stacked layer, which KV-cache decoding calls by its ``init_cache``/``decode`` methods."""
    if not (hasattr(layer, "init_cache") and hasattr(layer, "decode")):
        raise TypeError(f"KV-cache decoding needs layers with init_cache/decode, got {layer!r}")
    return layer
