"""A tiny GPT: token and learned position embeddings, a causal pre-norm Transformer stack, a LM head.

``gpt(...)`` is the seeded builder (``nn.run(0, gpt(...))`` gives a Model), ``GPT`` the
layer, and ``generate`` samples from a Model with a KV cache in one jitted ``lax.scan``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax import lax
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
    dtype: Any
    param_dtype: Any
    precision: Any
    dtype, param_dtype, precision = _util.numerics()

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
                self.d_model, self.nhead, self.dim_feedforward, self.dropout, self.activation, self.layer_norm_eps,
                norm_first=True, bias=self.bias, causal=True, precision=self.precision, **numerics)
        except ValueError as err:
            raise ValueError(str(err).replace("TransformerEncoderBlock:", "GPT:", 1)) from None
        _util.set_field(self, "tok_emb", Embedding(self.vocab_size, self.d_model, precision=self.precision, **numerics))
        _util.set_field(self, "pos_emb", LearnedPositionalEmbedding(self.max_len, self.d_model, **numerics))
        _util.set_field(self, "drop", Dropout(self.dropout))
        _util.set_field(self, "encoder", TransformerEncoder(block, self.num_layers, scan=self.scan))
        _util.set_field(self, "ln_f", LayerNorm(self.d_model, self.layer_norm_eps, bias=self.bias, **numerics))
        _util.set_field(self, "lm_head", Linear(self.d_model, self.vocab_size, False, precision=self.precision,
                                                **numerics))

    # -- the full forward -------------------------------------------------------------------
    def apply(self, params: dict, state: dict, x: Integer[Array, "batch seq"], *, key=None, train=False):
        self._check_ids(x, 0)
        c = self.bind(params, state, key=key, train=train)
        h = c.drop(c.pos_emb(c.tok_emb(x)))
        return c.lm_head(c.ln_f(c.encoder(h))), state

    def _check_ids(self, ids: Any, start_pos: Any) -> None:
        dtype = getattr(ids, "dtype", None)
        if dtype is None or not jnp.issubdtype(dtype, jnp.integer):
            got = dtype if dtype is not None else type(ids).__name__
            raise TypeError(f"{self!r}: expected integer token ids, got {got}")
        static = start_pos if _util.is_int(start_pos) else 0
        if jnp.ndim(ids) != 2 or static + jnp.shape(ids)[1] > self.max_len:
            where = f" from start_pos={static}" if static else ""
            raise ShapeError(self, f"ids [batch, seq] with at most {self.max_len - static} positions{where} "
                                   f"(max_len={self.max_len})", jnp.shape(ids))

    def _embed(self, params: dict, ids: jax.Array, start_pos: Any) -> jax.Array:
        h = self.tok_emb.apply(params["tok_emb"], {}, ids)[0]
        return self.pos_emb.apply(params["pos_emb"], {}, h, start_pos=start_pos)[0]

    def _head(self, params: dict, h: jax.Array) -> jax.Array:
        h = self.ln_f.apply(params["ln_f"], {}, h)[0]
        return self.lm_head.apply(params["lm_head"], {}, h)[0]

    # -- KV-cache decoding ------------------------------------------------------------------
    def init_cache(self, batch: int, dtype: Any = None) -> dict:
        """An empty KV cache for ``batch`` sequences of up to ``max_len`` tokens (every layer's, stacked)."""
        return self.encoder.init_cache(batch, self.max_len, dtype or self.dtype or self.param_dtype)

    def decode(self, params: dict, cache: dict, ids: Integer[Array, "batch seq"], start_pos: int | jax.Array
               ) -> tuple[Float[Array, "batch seq vocab"], dict]:
        """``(logits, new cache)`` for ``ids`` at positions ``start_pos ..`` (eval mode).

        Prefill with the prompt at ``start_pos=0``, then feed one token at a time; the
        logits equal those of :meth:`apply` on the whole sequence. ``start_pos`` may be a
        traced integer.
        """
        self._check_ids(ids, start_pos)
        h, cache = self.encoder.decode(params["encoder"], cache, self._embed(params, ids, start_pos), start_pos)
        return self._head(params, h), cache


def gpt(vocab_size: int, max_len: int, d_model: int = 64, nhead: int = 4, num_layers: int = 2,
        dim_feedforward: int | None = None, dropout: float = 0.1, **options: Any) -> Builder[Model]:
    """The seeded builder of a :class:`GPT` Model: ``nn.run(seed, gpt(...))`` (draws one key).

    ``options`` are :class:`GPT`'s other fields (``activation``, ``layer_norm_eps``,
    ``bias``, ``scan``, ``dtype``, ``param_dtype``, ``precision``).
    """
    return build(GPT(vocab_size, max_len, d_model, nhead, num_layers, dim_feedforward, dropout, **options))


def generate(model: Model, prompt_ids: Integer[Array, "*batch prompt"], steps: int, key: jax.Array,
             temperature: float | jax.Array = 1.0) -> Integer[Array, "*batch total"]:
    """Extend ``prompt_ids`` by ``steps`` tokens sampled from ``model`` (a :class:`GPT` Model).

    The prompt is prefilled into a fixed-size KV cache, then each new token is decoded
    at its position with one ``decode`` of a single token; the whole loop is one jitted
    ``lax.scan``, compiled once per model config, prompt shape and ``steps`` (new keys,
    prompts or temperatures of the same shapes reuse it). Token ``t`` is drawn with the
    ``t``-th key of ``jax.random.split(key, steps)`` from ``softmax(logits / temperature)``;
    ``temperature=0`` takes the argmax (greedy).

    Args:
      model: a Model whose layer has ``init_cache`` and ``decode`` (a GPT).
      prompt_ids: ``[batch, prompt]`` (or ``[prompt]``) integer ids, ``prompt >= 1``.
      steps: how many tokens to add; ``prompt + steps <= max_len``.
      key: the sampling key.
      temperature: ``>= 0``; may be traced.

    Returns:
      ``[batch, prompt + steps]`` (or ``[prompt + steps]``) ids: the prompt, then the new tokens.
    """
    layer = getattr(model, "layer", None)
    if not (hasattr(layer, "init_cache") and hasattr(layer, "decode")):
        raise TypeError(f"generate needs a Model of a decoder with init_cache/decode (a GPT), got {model!r}")
    prompt = jnp.asarray(prompt_ids)
    if not jnp.issubdtype(prompt.dtype, jnp.integer):
        raise TypeError(f"generate: prompt_ids must be integer token ids, got {prompt.dtype}")
    unbatched = prompt.ndim == 1
    if unbatched:
        prompt = prompt[None]
    if prompt.ndim != 2 or prompt.shape[1] < 1:
        raise ShapeError(layer, "prompt_ids [batch, prompt] or [prompt] with prompt >= 1", prompt_ids.shape)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"generate: steps must be an int >= 0, got {steps!r}")
    if prompt.shape[1] + steps > layer.max_len:
        raise ValueError(f"generate: prompt length {prompt.shape[1]} + steps {steps} exceeds {layer!r}'s "
                         f"max_len={layer.max_len}")
    if isinstance(temperature, (int, float)) and not temperature >= 0:
        raise ValueError(f"generate: temperature must be >= 0, got {temperature!r}")
    out = prompt if steps == 0 else _generate(model, prompt.astype(jnp.int32), key, jnp.float32(temperature), steps)
    return out[0] if unbatched else out


def _sample(logits: jax.Array, key: jax.Array, temperature: jax.Array) -> jax.Array:
    logits = logits.astype(jnp.float32)
    greedy = jnp.argmax(logits, axis=-1)
    sampled = jax.random.categorical(key, logits / jnp.maximum(temperature, jnp.finfo(jnp.float32).tiny), axis=-1)
    return jnp.where(temperature > 0, sampled, greedy).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("steps",))
def _generate(model: Model, prompt: jax.Array, key: jax.Array, temperature: jax.Array, steps: int) -> jax.Array:
    layer, params = model.layer, model.params
    batch, length = prompt.shape
    keys = jax.random.split(key, steps)
    logits, cache = layer.decode(params, layer.init_cache(batch), prompt, 0)
    first = _sample(logits[:, -1], keys[0], temperature)

    def step(carry, k):
        token, cache, pos = carry
        logits, cache = layer.decode(params, cache, token[:, None], pos)
        return (_sample(logits[:, -1], k, temperature), cache, pos + 1), token

    (last, _, _), tokens = lax.scan(step, (first, cache, jnp.int32(length)), keys[1:])
    return jnp.concatenate([prompt, jnp.transpose(tokens), last[:, None]], axis=1)
