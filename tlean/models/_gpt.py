"""A tiny GPT: token and learned position embeddings, a causal pre-norm Transformer stack, a LM head.

``gpt(...)`` is the seeded builder (``nn.run(0, gpt(...))`` gives a Model), ``GPT`` the
layer; it has the decode protocol of ``tlean.models``, so :func:`tlean.models.generate`
samples from it with a KV cache in one jitted ``lax.scan``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from typing import Any, cast

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Integer

from tlean._core import Layer, ShapeError, sublayer
from tlean._model import Model
from tlean.layers import _util
from tlean.layers._dropout import Dropout
from tlean.layers._embedding import Embedding
from tlean.layers._linear import Linear
from tlean.layers._norm import LayerNorm
from tlean.layers._position import LearnedPositionalEmbedding
from tlean.layers._transformer import TransformerEncoder, TransformerEncoderBlock
from tlean.nn._build import build
from tlean.seed import Builder


@dataclass(frozen=True)
class GPT(Layer):
    """A decoder-only Transformer language model (GPT-2's layout, small).

    ``logits = lm_head(ln_f(encoder(drop(tok_emb(ids) + pos_emb))))`` where ``encoder`` is
    a :class:`~tlean.layers.TransformerEncoder` of causal, pre-norm (``norm_first=True``)
    blocks, stacked and scanned.

    A composite; params (PyTorch-style names): ``tok_emb.weight [vocab_size, d_model]``,
    ``pos_emb.weight [max_len, d_model]``, ``encoder.layers.*.…`` (stacked on a leading
    ``num_layers`` axis, torch's ``encoder.layers.{i}.…``), ``ln_f.{weight,bias}``,
    ``lm_head.weight [vocab_size, d_model]`` (no bias, not tied to ``tok_emb``). The
    children draw their keys in that order from ``SeedStream(key)``. A PyTorch model with
    the same submodules (``nn.Embedding``, ``nn.Embedding``, ``nn.TransformerEncoder`` of
    causal ``TransformerEncoderLayer(norm_first=True, batch_first=True)``, ``nn.LayerNorm``,
    ``nn.Linear(bias=False)``) computes the same logits and loads by name.

    Args:
      vocab_size: number of tokens.
      max_len: the longest sequence (positions and KV-cache size).
      d_model, nhead, num_layers: width, heads, depth.
      dim_feedforward: FFN width; ``None`` means ``4 * d_model``.
      dropout: embedding, attention and residual dropout in training.
      activation: ``"gelu"`` (default), ``"relu"`` or a hashable callable.
      layer_norm_eps, bias, scan, dtype, param_dtype, precision: as for the encoder.

    Apply keywords (the ``tlean.models`` protocol, transformers' names):
      ``attention_mask [batch, seq]`` (1 = real token, 0 = padding, whose keys get zero
      weight) and ``position_ids [batch|1, seq]`` (rows of ``pos_emb``; default
      ``arange(seq)``).

    Decoding: :attr:`context_length` (``max_len``), :meth:`init_cache` and :meth:`decode`,
    as :func:`tlean.models.generate` uses them (without a padding mask: left-padded
    batches need ``models.gpt2`` or ``models.llama``).

    Shapes:
      ``ids [batch, seq]`` integers in ``[0, vocab_size)``, ``seq <= max_len`` ->
      ``logits [batch, seq, vocab_size]``.

    >>> import jax, jax.numpy as jnp
    >>> from tlean import nn
    >>> from tlean.models import generate, gpt
    >>> model = nn.run(0, gpt(vocab_size=11, max_len=16, d_model=16, nhead=2, num_layers=2))
    >>> model(jnp.zeros((2, 5), jnp.int32)).shape
    (2, 5, 11)
    >>> generate(model, jnp.zeros((2, 3), jnp.int32), steps=4, key=jax.random.key(1)).shape
    (2, 7)
    """

    vocab_size: int = _util.size()
    max_len: int = _util.size()
    d_model: int = _util.size(64)
    nhead: int = _util.size(4)
    num_layers: int = _util.size(2)
    dim_feedforward: int | None = None
    dropout: float = _util.probability(0.1)
    activation: str | Callable = "gelu"
    layer_norm_eps: float = _util.nonnegative(1e-5)
    bias: bool = _util.flag(True)
    scan: bool = _util.flag(True)
    _: KW_ONLY
    dtype: Any = _util.dtype_field()
    param_dtype: Any = _util.param_dtype_field()
    precision: Any = _util.precision_field()

    tok_emb: Embedding = sublayer()
    pos_emb: LearnedPositionalEmbedding = sublayer()
    drop: Dropout = sublayer()
    encoder: TransformerEncoder = sublayer()
    ln_f: LayerNorm = sublayer()
    lm_head: Linear = sublayer()

    def __post_init__(self):
        if self.dim_feedforward is None:
            _util.set_field(self, "dim_feedforward", 4 * self.d_model)
        numerics = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        try:
            block = TransformerEncoderBlock(
                self.d_model,
                self.nhead,
                cast(int, self.dim_feedforward),
                self.dropout,
                self.activation,
                self.layer_norm_eps,
                norm_first=True,
                bias=self.bias,
                causal=True,
                precision=self.precision,
                **numerics,
            )
        except ValueError as err:
            raise ValueError(str(err).replace("TransformerEncoderBlock:", "GPT:", 1)) from None
        _util.set_field(self, "tok_emb", Embedding(self.vocab_size, self.d_model, precision=self.precision, **numerics))
        _util.set_field(self, "pos_emb", LearnedPositionalEmbedding(self.max_len, self.d_model, **numerics))
        _util.set_field(self, "drop", Dropout(self.dropout))
        _util.set_field(self, "encoder", TransformerEncoder(block, self.num_layers, scan=self.scan))
        _util.set_field(self, "ln_f", LayerNorm(self.d_model, self.layer_norm_eps, bias=self.bias, **numerics))
        _util.set_field(
            self, "lm_head", Linear(self.d_model, self.vocab_size, False, precision=self.precision, **numerics)
        )

    # -- the full forward -------------------------------------------------------------------
    def apply(
        self,
        params: dict,
        state: dict,
        x: Integer[Array, "batch seq"],
        *,
        key=None,
        train=False,
        attention_mask: Any = None,
        position_ids: Any = None,
    ):
        self._check_ids(x, 0 if position_ids is None else None)
        padding = (
            None if attention_mask is None else ~self._mask(attention_mask, x.shape, "attention_mask [batch, seq]")
        )
        c = self.bind(params, state, key=key, train=train)
        if position_ids is None:
            h = c.pos_emb(c.tok_emb(x))
        else:
            h = c.tok_emb(x) + self._rows(params, self._position_ids(position_ids, x.shape))
        h = c.drop(h)
        h = c.encoder(h) if padding is None else c.encoder(h, src_key_padding_mask=padding)
        return c.lm_head(c.ln_f(h)), state

    @property
    def context_length(self) -> int:
        """The longest sequence: ``max_len``."""
        return self.max_len

    def _check_ids(self, ids: Any, start_pos: Any) -> None:
        dtype = getattr(ids, "dtype", None)
        if dtype is None or not jnp.issubdtype(dtype, jnp.integer):
            got = dtype if dtype is not None else type(ids).__name__
            raise TypeError(f"{self!r}: expected integer token ids, got {got}")
        static = start_pos if _util.is_int(start_pos) else 0
        if jnp.ndim(ids) != 2 or static + jnp.shape(ids)[1] > self.max_len:
            where = f" from start_pos={static}" if static else ""
            raise ShapeError(
                self,
                f"ids [batch, seq] with at most {self.max_len - static} positions{where} (max_len={self.max_len})",
                jnp.shape(ids),
            )

    def _position_ids(self, position_ids: Any, shape: tuple[int, ...]) -> jax.Array:
        dtype = getattr(position_ids, "dtype", None)
        if dtype is None or not jnp.issubdtype(dtype, jnp.integer):
            raise TypeError(
                f"{self!r}: position_ids must be integers, got "
                f"{dtype if dtype is not None else type(position_ids).__name__}"
            )
        batch, seq = shape
        if jnp.ndim(position_ids) != 2 or position_ids.shape[0] not in (1, batch) or position_ids.shape[1] != seq:
            raise ShapeError(self, f"position_ids [{batch}|1, {seq}]", jnp.shape(position_ids))
        return position_ids

    def _mask(self, mask: Any, shape: tuple[int, ...], expected: str) -> jax.Array:
        mask = jnp.asarray(mask)
        if mask.shape != tuple(shape):
            raise ShapeError(self, expected, mask.shape)
        return mask != 0

    def _rows(self, params: dict, position_ids: jax.Array) -> jax.Array:
        """``pos_emb``'s rows at ``position_ids`` (NaN past the table, never a clamped row)."""
        weight = params["pos_emb"]["weight"]
        dtype = _util.compute_dtype(self.dtype, weight)
        return jnp.take(weight.astype(dtype), position_ids, axis=0, mode="fill", fill_value=jnp.nan)

    def _head(self, params: dict, h: jax.Array) -> jax.Array:
        h = self.ln_f.apply(params["ln_f"], {}, h)[0]
        return self.lm_head.apply(params["lm_head"], {}, h)[0]

    # -- KV-cache decoding ------------------------------------------------------------------
    def init_cache(self, batch: int, max_len: int | None = None, dtype: Any = None) -> dict:
        """An empty KV cache for ``batch`` sequences of up to ``max_len`` tokens (default and at
        most the layer's ``max_len``): every layer's, stacked on a leading axis."""
        max_len = self.max_len if max_len is None else max_len
        if _util.is_int(max_len) and max_len > self.max_len:
            raise ValueError(f"{self!r}: init_cache max_len={max_len} exceeds the model's max_len={self.max_len}")
        if dtype is None:
            dtype = self.dtype if self.dtype is not None else self.param_dtype
        return self.encoder.init_cache(batch, max_len, dtype)

    def decode(
        self,
        params: dict,
        cache: dict,
        ids: Integer[Array, "batch seq"],
        start_pos: int | jax.Array,
        *,
        attention_mask: Any = None,
        position_ids: Any = None,
    ) -> tuple[Float[Array, "batch seq vocab"], dict]:
        """``(logits, new cache)`` for ``ids`` written at cache slots ``start_pos ..`` (eval mode).

        Prefill with the prompt at ``start_pos=0``, then feed one token at a time; the
        logits equal those of :meth:`apply` on the whole sequence. ``start_pos`` may be a
        traced integer. ``position_ids [batch|1, seq]`` picks the rows of ``pos_emb``
        (default ``start_pos + arange(seq)``). ``attention_mask`` is refused: the encoder's
        :meth:`~tlean.layers.MultiheadAttention.decode` has no padding mask (decode
        unpadded prompts, or use ``models.gpt2`` / ``models.llama``).
        """
        if attention_mask is not None:
            raise ValueError(
                f"{self!r}: decode takes no attention_mask (MultiheadAttention.decode has no padding "
                f"mask); decode unpadded prompts, or use models.gpt2 / models.llama"
            )
        self._check_ids(ids, start_pos if position_ids is None else None)
        h = self.tok_emb.apply(params["tok_emb"], {}, ids)[0]
        if position_ids is None:
            h = self.pos_emb.apply(params["pos_emb"], {}, h, start_pos=start_pos)[0]
        else:
            h = h + self._rows(params, self._position_ids(position_ids, ids.shape))
        h, cache = self.encoder.decode(params["encoder"], cache, h, start_pos)
        return self._head(params, h), cache


def gpt(
    vocab_size: int,
    max_len: int,
    d_model: int = 64,
    nhead: int = 4,
    num_layers: int = 2,
    dim_feedforward: int | None = None,
    dropout: float = 0.1,
    **options: Any,
) -> Builder[Model]:
    """The seeded builder of a :class:`GPT` Model: ``nn.run(seed, gpt(...))`` (draws one key).

    ``options`` are :class:`GPT`'s other fields (``activation``, ``layer_norm_eps``,
    ``bias``, ``scan``, ``dtype``, ``param_dtype``, ``precision``).
    """
    return build(GPT(vocab_size, max_len, d_model, nhead, num_layers, dim_feedforward, dropout, **options))
