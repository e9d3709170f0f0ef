"""GPT-2 as transformers builds it (``GPT2LMHeadModel``): its config, its ``Conv1D``, its module tree.

The layers mirror transformers' modules field for field, so the generic walk names every
leaf as transformers' ``state_dict`` does (``transformer.h.0.attn.c_attn.weight``) and a
Hugging Face directory loads with :func:`tlean.models.from_pretrained`, no key map. The
block stack is a :class:`~tlean.layers.Stacked` (one ``lax.scan``); ``lm_head.weight`` is
tied to ``transformer.wte.weight`` (one leaf) when ``tie_word_embeddings``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from typing import Any, cast

import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Float

from tlean._core import Layer, sublayer
from tlean._model import Model
from tlean.layers import _kvcache, _util
from tlean.layers._combinators import Stacked
from tlean.layers._dropout import Dropout
from tlean.layers._embedding import Embedding
from tlean.layers._linear import Linear
from tlean.layers._norm import LayerNorm
from tlean.models._hf import (
    CausalLM,
    builder_args,
    check_cache,
    check_ids,
    check_mask,
    check_position_ids,
    numerics,
)
from tlean.models._hub import Family
from tlean.nn._build import build
from tlean.seed import Builder

__all__ = ["FAMILY", "Conv1D", "GPT2Config", "GPT2LMHeadModel", "gpt2"]


def _gelu_tanh(x: jax.Array) -> jax.Array:
    """transformers' ``gelu_new`` / ``gelu_pytorch_tanh``: ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``."""
    return 0.5 * x * (1.0 + jnp.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * (x * x * x))))


def _gelu_fast(x: jax.Array) -> jax.Array:
    return 0.5 * x * (1.0 + jnp.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)))


def _gelu(x: jax.Array) -> jax.Array:
    return jax.nn.gelu(x, approximate=False)


#: transformers' ``ACT2FN`` names (the parameter-free ones) and what they compute.
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "gelu": _gelu,
    "gelu_python": _gelu,
    "gelu_new": _gelu_tanh,
    "gelu_pytorch_tanh": _gelu_tanh,
    "gelu_python_tanh": _gelu_tanh,
    "gelu_accurate": _gelu_tanh,
    "gelu_fast": _gelu_fast,
    "gelu_10": lambda x: jnp.clip(_gelu(x), -10.0, 10.0),
    "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x),
    "relu": jax.nn.relu,
    "relu2": lambda x: jnp.square(jax.nn.relu(x)),
    "relu6": jax.nn.relu6,
    "leaky_relu": lambda x: jax.nn.leaky_relu(x, 0.01),
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "mish": lambda x: x * jnp.tanh(jax.nn.softplus(x)),
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "linear": lambda x: x,
}

_ALIASES = {
    "hidden_size": "n_embd",
    "max_position_embeddings": "n_positions",
    "num_attention_heads": "n_head",
    "num_hidden_layers": "n_layer",
}


@dataclass(frozen=True)
class GPT2Config:
    """transformers' ``GPT2Config``: the fields GPT-2 needs, with transformers' names and defaults.

    ``from_hf(config_json_dict)`` reads a ``config.json`` (transformers' aliases such as
    ``hidden_size`` are accepted, fields tlean does not use are ignored) and ``to_hf()``
    writes the fields back. Values tlean does not support raise a ``ValueError`` naming
    the field: ``scale_attn_by_inverse_layer_idx=True`` (a per-layer scale the scanned
    stack does not carry), ``add_cross_attention=True``, an ``activation_function``
    outside :data:`ACTIVATIONS` (``prelu``, ``xielu``: activations with weights).
    ``reorder_and_upcast_attn=True`` computes ``q k^T`` in float32 (the scores and the
    softmax always are float32 here).

    >>> from tlean.models import GPT2Config
    >>> GPT2Config.from_hf({"model_type": "gpt2", "n_embd": 64, "n_head": 4, "n_layer": 2}).inner_dim
    256
    """

    vocab_size: int = 50257
    n_positions: int = 1024
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    n_inner: int | None = None
    activation_function: str = "gelu_new"
    resid_pdrop: float = 0.1
    embd_pdrop: float = 0.1
    attn_pdrop: float = 0.1
    layer_norm_epsilon: float = 1e-5
    initializer_range: float = 0.02
    scale_attn_weights: bool = True
    scale_attn_by_inverse_layer_idx: bool = False
    reorder_and_upcast_attn: bool = False
    tie_word_embeddings: bool = True
    bos_token_id: int | None = 50256
    eos_token_id: int | tuple[int, ...] | None = 50256
    pad_token_id: int | None = None

    def __post_init__(self):
        name = "GPT2Config"
        for f in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head"):
            object.__setattr__(self, f, _util.check_size(name, f, getattr(self, f)))
        if self.n_inner is not None:
            object.__setattr__(self, "n_inner", _util.check_size(name, "n_inner", self.n_inner))
        if self.n_embd % self.n_head:
            raise ValueError(f"{name}: n_embd={self.n_embd} must be divisible by n_head={self.n_head}")
        if self.activation_function not in ACTIVATIONS:
            raise ValueError(
                f"{name}: activation_function must be one of {sorted(ACTIVATIONS)}, got {self.activation_function!r}"
            )
        for f in ("resid_pdrop", "embd_pdrop", "attn_pdrop"):
            object.__setattr__(self, f, _util.check_probability(name, f, getattr(self, f)))
        for f in ("layer_norm_epsilon", "initializer_range"):
            object.__setattr__(self, f, _util.check_nonnegative(name, f, getattr(self, f)))
        for f in (
            "scale_attn_weights",
            "scale_attn_by_inverse_layer_idx",
            "reorder_and_upcast_attn",
            "tie_word_embeddings",
        ):
            object.__setattr__(self, f, _util.check_flag(name, f, getattr(self, f)))
        if self.scale_attn_by_inverse_layer_idx:
            raise ValueError(
                f"{name}: scale_attn_by_inverse_layer_idx=True is not supported (the scanned block stack "
                f"has one attention scale for every layer)"
            )
        if isinstance(self.eos_token_id, list):
            object.__setattr__(self, "eos_token_id", tuple(self.eos_token_id))

    def __repr__(self) -> str:
        changed = [
            f"{f.name}={getattr(self, f.name)!r}"
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != f.default
        ]
        return f"GPT2Config({', '.join(changed)})"

    @property
    def head_dim(self) -> int:
        """``n_embd // n_head``."""
        return self.n_embd // self.n_head

    @property
    def inner_dim(self) -> int:
        """The MLP width: ``n_inner``, or ``4 * n_embd`` when it is ``None`` (transformers' rule)."""
        return 4 * self.n_embd if self.n_inner is None else self.n_inner

    @classmethod
    def from_hf(cls, config: dict) -> GPT2Config:
        """The config of a transformers ``config.json`` dict (``model_type`` ``"gpt2"``)."""
        if config.get("model_type", "gpt2") != "gpt2":
            raise ValueError(f"GPT2Config.from_hf: model_type must be 'gpt2', got {config.get('model_type')!r}")
        if config.get("add_cross_attention"):
            raise ValueError(
                "GPT2Config: add_cross_attention=True is not supported (GPT-2 as a decoder with cross-attention)"
            )
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {_ALIASES.get(k, k): v for k, v in config.items()}
        return cls(**{k: v for k, v in values.items() if k in fields})

    def to_hf(self) -> dict:
        """The fields as a ``config.json`` dict (without ``model_type`` / ``architectures``)."""
        out = dataclasses.asdict(self)
        if isinstance(out["eos_token_id"], tuple):
            out["eos_token_id"] = list(out["eos_token_id"])
        return out


@dataclass(frozen=True)
class Conv1D(Layer):
    """transformers' ``Conv1D``: ``y = x @ weight + bias`` with ``weight [nx, nf]`` (input-major).

    Despite its name a linear layer (GPT-2's original TensorFlow code used a 1x1
    convolution); it stores the weight transposed with respect to ``torch.nn.Linear``,
    so GPT-2 checkpoints load without transposing.

    PyTorch analogue: ``transformers.pytorch_utils.Conv1D(nf, nx)``: same argument
    order (``nf`` output features first), names, layout and init (``weight ~ N(0, 0.02)``,
    ``bias`` zeros).

    Args:
      nf: output features.
      nx: input features.
      dtype, param_dtype, precision: as for :class:`~tlean.layers.Linear` (keyword-only).

    Shapes: ``x [..., nx] -> y [..., nf]``.

    >>> import jax, jax.numpy as jnp
    >>> from tlean.models import Conv1D
    >>> layer = Conv1D(6, 4)
    >>> params, state = layer.init(jax.random.key(0))
    >>> params["weight"].shape, layer.apply(params, state, jnp.ones((2, 3, 4)))[0].shape
    ((4, 6), (2, 3, 6))
    """

    nf: int = _util.size()
    nx: int = _util.size()
    _: KW_ONLY
    dtype: Any = _util.dtype_field()
    param_dtype: Any = _util.param_dtype_field()
    precision: Any = _util.precision_field()

    def init(self, key: jax.Array) -> tuple[dict, dict]:
        return _conv1d_init(self, key)

    def apply(self, params: dict, state: dict, x: Float[Array, "*batch nx"], *, key=None, train=False):
        _util.check_float(self, x)
        _util.check_features(self, x, self.nx)
        x, weight, bias = _util.promote(self, x, params["weight"], params["bias"])
        return _util.add_bias(jnp.matmul(x, weight, precision=self.precision), bias), state


@functools.partial(jax.jit, static_argnums=0)
def _conv1d_init(layer: Conv1D, key: jax.Array) -> tuple[dict, dict]:
    """Jitted, so eager and jitted init agree bit for bit (XLA fuses the scaling differently otherwise)."""
    weight = 0.02 * jax.random.normal(key, (layer.nx, layer.nf), jnp.float32)
    return {"weight": weight.astype(layer.param_dtype), "bias": jnp.zeros((layer.nf,), layer.param_dtype)}, {}


@dataclass(frozen=True)
class GPT2Attention(Layer):
    """GPT-2's causal self-attention: ``c_attn`` (fused q, k, v), ``c_proj``, attention and residual dropout.

    ``softmax(q k^T * scale + mask) v`` with ``scale = head_dim ** -0.5`` (1 without
    ``scale_attn_weights``); scores and softmax in float32. ``allow [batch|1, 1, T, S]``
    (True = may attend) is the causal and padding mask the model builds; a query with no
    allowed key gets all-zero weights (its output is ``c_proj``'s bias).
    """

    config: GPT2Config
    _: KW_ONLY
    dtype: Any = _util.dtype_field()
    param_dtype: Any = _util.param_dtype_field()
    precision: Any = _util.precision_field()

    c_attn: Conv1D = sublayer()
    c_proj: Conv1D = sublayer()
    attn_dropout: Dropout = sublayer()
    resid_dropout: Dropout = sublayer()

    def __post_init__(self):
        e, num = self.config.n_embd, numerics(self)
        _util.set_field(self, "c_attn", Conv1D(3 * e, e, **num))
        _util.set_field(self, "c_proj", Conv1D(e, e, **num))
        _util.set_field(self, "attn_dropout", Dropout(self.config.attn_pdrop))
        _util.set_field(self, "resid_dropout", Dropout(self.config.resid_pdrop))

    def apply(self, params, state, x: Float[Array, "batch seq embed"], *, key=None, train=False, allow=None):
        c = self.bind(params, state, key=key, train=train)
        q, k, v = self._qkv(c, x)
        return c.resid_dropout(c.c_proj(self._attend(q, k, v, allow, c.attn_dropout))), state

    def decode(self, params: dict, cache: dict, x: jax.Array, start_pos: Any, slot_mask: jax.Array | None):
        """``(y, new cache)``: the new keys/values written at ``start_pos``, the queries attending to the cache."""
        cfg = self.config
        start, in_range, max_len = _kvcache.position(self, cache, x, cfg.n_head, cfg.head_dim, start_pos)
        q, k, v = self._qkv(self.bind(params, {}), x)
        cache = _kvcache.write(cache, k, v, start, in_range)
        allow = _kvcache.causal_window(start, x.shape[1], max_len)
        if slot_mask is not None:
            allow = allow & slot_mask[:, None, None, :]
        o = self._attend(q, cache["key"].astype(q.dtype), cache["value"].astype(q.dtype), allow, None, cached=True)
        y = self.c_proj.apply(params["c_proj"], {}, o)[0]
        return jnp.where(in_range, y, jnp.nan), cache

    def _qkv(self, c: Any, x: jax.Array) -> tuple[jax.Array, ...]:
        """``q, k, v [batch, seq, heads, head_dim]`` from the fused projection."""
        b, t = x.shape[:2]
        heads = jnp.split(c.c_attn(x), 3, axis=-1)
        return tuple(h.reshape(b, t, self.config.n_head, self.config.head_dim) for h in heads)

    def _attend(self, q, k, v, allow, dropout, cached: bool = False) -> jax.Array:
        """Attention of ``q [b, t, heads, d]`` over ``k``, ``v [b, s, heads, d]`` (``cached``: the KV
        cache's ``[b, heads, s, d]``, read in place)."""
        kv = "bhkd" if cached else "bkhd"
        if self.config.reorder_and_upcast_attn:
            q, k = q.astype(jnp.float32), k.astype(jnp.float32)
        scale = self.config.head_dim**-0.5 if self.config.scale_attn_weights else 1.0
        scores = jnp.einsum(f"bqhd,{kv}->bhqk", q, k, precision=self.precision).astype(jnp.float32) * scale
        if allow is not None:
            scores = jnp.where(allow, scores, jnp.finfo(jnp.float32).min)
        weights = jax.nn.softmax(scores, axis=-1)
        if allow is not None:  # a fully masked row: zero weights, not a uniform average
            weights = jnp.where(allow, weights, 0.0)
        weights = weights.astype(v.dtype)
        if dropout is not None:
            weights = dropout(weights)
        o = jnp.einsum(f"bhqk,{kv}->bqhd", weights, v, precision=self.precision)
        return o.reshape(o.shape[:2] + (self.config.n_embd,))


@dataclass(frozen=True)
class GPT2MLP(Layer):
    """``dropout(c_proj(act(c_fc(x))))``, transformers' ``GPT2MLP``."""

    config: GPT2Config
    _: KW_ONLY
    dtype: Any = _util.dtype_field()
    param_dtype: Any = _util.param_dtype_field()
    precision: Any = _util.precision_field()

    c_fc: Conv1D = sublayer()
    c_proj: Conv1D = sublayer()
    dropout: Dropout = sublayer()

    def __post_init__(self):
        e, inner, num = self.config.n_embd, self.config.inner_dim, numerics(self)
        _util.set_field(self, "c_fc", Conv1D(inner, e, **num))
        _util.set_field(self, "c_proj", Conv1D(e, inner, **num))
        _util.set_field(self, "dropout", Dropout(self.config.resid_pdrop))

    def apply(self, params, state, x, *, key=None, train=False):
        c = self.bind(params, state, key=key, train=train)
        return c.dropout(c.c_proj(ACTIVATIONS[self.config.activation_function](c.c_fc(x)))), state


@dataclass(frozen=True)
class GPT2Block(Layer):
    """``h = x + attn(ln_1(x)); y = h + mlp(ln_2(h))``, transformers' ``GPT2Block`` (pre-norm)."""

    config: GPT2Config
    _: KW_ONLY
    dtype: Any = _util.dtype_field()
    param_dtype: Any = _util.param_dtype_field()
    precision: Any = _util.precision_field()

    ln_1: LayerNorm = sublayer()
    attn: GPT2Attention = sublayer()
    ln_2: LayerNorm = sublayer()
    mlp: GPT2MLP = sublayer()

    def __post_init__(self):
        cfg, num = self.config, numerics(self)
        norm = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        _util.set_field(self, "ln_1", LayerNorm(cfg.n_embd, cfg.layer_norm_epsilon, **norm))
        _util.set_field(self, "attn", GPT2Attention(cfg, **num))
        _util.set_field(self, "ln_2", LayerNorm(cfg.n_embd, cfg.layer_norm_epsilon, **norm))
        _util.set_field(self, "mlp", GPT2MLP(cfg, **num))

    def apply(self, params, state, x, *, key=None, train=False, allow=None):
        c = self.bind(params, state, key=key, train=train)
        h = x + c.attn(c.ln_1(x), allow=allow)
        return h + c.mlp(c.ln_2(h)), state

    def decode(self, params: dict, cache: dict, x: jax.Array, start_pos: Any, slot_mask: jax.Array | None):
        c = self.bind(params, {})
        a, cache = self.attn.decode(params["attn"], cache, c.ln_1(x), start_pos, slot_mask)
        h = x + a
        return h + c.mlp(c.ln_2(h)), cache


@dataclass(frozen=True)
class GPT2Model(Layer):
    """transformers' ``GPT2Model``: ``ln_f(h(drop(wte(ids) + wpe(positions))))``, ``h`` a scanned stack."""

    config: GPT2Config
    _: KW_ONLY
    scan: bool = _util.flag(True)
    dtype: Any = _util.dtype_field()
    param_dtype: Any = _util.param_dtype_field()
    precision: Any = _util.precision_field()

    wte: Embedding = sublayer()
    wpe: Embedding = sublayer()
    drop: Dropout = sublayer()
    h: Stacked = sublayer()
    ln_f: LayerNorm = sublayer()

    def __post_init__(self):
        cfg, num = self.config, numerics(self)
        norm = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        _util.set_field(self, "wte", Embedding(cfg.vocab_size, cfg.n_embd, **num))
        _util.set_field(self, "wpe", Embedding(cfg.n_positions, cfg.n_embd, **num))
        _util.set_field(self, "drop", Dropout(cfg.embd_pdrop))
        _util.set_field(self, "h", Stacked(GPT2Block(cfg, **num), cfg.n_layer, self.scan))
        _util.set_field(self, "ln_f", LayerNorm(cfg.n_embd, cfg.layer_norm_epsilon, **norm))

    def apply(self, params, state, ids, *, key=None, train=False, attention_mask=None, position_ids=None):
        batch, seq = check_ids(self, ids, 0, position_ids, self.config.n_positions, "n_positions")
        allow = jnp.tril(jnp.ones((seq, seq), bool))[None, None]
        if attention_mask is not None:
            allow = (
                allow & check_mask(self, attention_mask, batch, seq, "attention_mask [batch, seq]")[:, None, None, :]
            )
        c = self.bind(params, state, key=key, train=train)
        h = c.drop(c.wte(ids) + c.wpe(self._positions(position_ids, batch, seq, 0)))
        return c.ln_f(c.h(h, allow=allow)), state

    def init_cache(self, batch: int, max_len: int, dtype: Any) -> dict:
        cfg = self.config
        _util.positive("GPT2 init_cache", batch=batch, max_len=max_len)
        one = _kvcache.empty(batch, max_len, cfg.n_head, cfg.head_dim, dtype)
        return _kvcache.stack(cfg.n_layer, one)

    def decode(
        self, params: dict, cache: dict, ids: jax.Array, start_pos: Any, *, attention_mask=None, position_ids=None
    ) -> tuple[jax.Array, dict]:
        cfg, block = self.config, cast(GPT2Block, self.h.layer)
        batch, seq = check_ids(self, ids, start_pos, position_ids, self.config.n_positions, "n_positions")
        check_cache(self, cache, cfg.n_layer, batch, cfg.n_head, cfg.head_dim)
        first = {k: jax.ShapeDtypeStruct(jnp.shape(v)[1:], v.dtype) for k, v in cache.items()}  # one layer's shapes
        start, _, max_len = _kvcache.position(block.attn, first, ids, cfg.n_head, cfg.head_dim, start_pos)
        slot_mask = None
        if attention_mask is not None:
            slot_mask = check_mask(self, attention_mask, batch, max_len, f"attention_mask [batch, max_len={max_len}]")
        c = self.bind(params, {})
        h = c.wte(ids) + c.wpe(self._positions(position_ids, batch, seq, start))
        h = h.astype(self.dtype or jnp.result_type(h, params["h"]["ln_1"]["weight"]))  # the scan carry's dtype
        if self.scan:
            h, cache = lax.scan(
                lambda x, pc: block.decode(pc[0], pc[1], x, start_pos, slot_mask), h, (params["h"], cache)
            )
        else:
            caches = []
            for i in range(cfg.n_layer):
                layer_params, layer_cache = jax.tree.map(lambda a, i=i: a[i], (params["h"], cache))
                h, one = block.decode(layer_params, layer_cache, h, start_pos, slot_mask)
                caches.append(one)
            cache = jax.tree.map(lambda *a: jnp.stack(a), *caches)
        return c.ln_f(h), cache

    def _positions(self, position_ids: Any, batch: int, seq: int, start: Any) -> jax.Array:
        if position_ids is None:
            return (start + jnp.arange(seq, dtype=jnp.int32))[None]
        return check_position_ids(self, position_ids, batch, seq)


def _normal(key: jax.Array, shape: tuple[int, ...], dtype: Any, std: float) -> jax.Array:
    return (std * jax.random.normal(key, shape, jnp.float32)).astype(dtype)


@dataclass(frozen=True)
class GPT2LMHeadModel(CausalLM):
    """GPT-2 with its language-model head: transformers' ``GPT2LMHeadModel``, module for module.

    ``logits = lm_head(transformer(ids))``, where ``transformer`` is ``GPT2Model``:
    token (``wte``) and learned position (``wpe``) embeddings, embedding dropout, the
    ``n_layer`` pre-norm blocks ``h`` (a :class:`~tlean.layers.Stacked`, scanned), ``ln_f``.
    Each block is ``ln_1``, ``attn`` (``c_attn``, ``c_proj``: :class:`Conv1D`), ``ln_2``,
    ``mlp`` (``c_fc``, ``c_proj``). Leaf names are transformers' keys
    (``transformer.h.*.attn.c_attn.weight`` is ``transformer.h.{i}.attn.c_attn.weight``).
    With ``tie_word_embeddings`` (the default) ``lm_head.weight`` is an alias of
    ``transformer.wte.weight``: one leaf, its gradient the sum of both uses, as in torch.

    Init (transformers' ``_init_weights``): embeddings and ``Conv1D`` weights
    ``N(0, initializer_range)``, the two ``c_proj`` weights ``N(0, initializer_range /
    sqrt(2 n_layer))``, biases zero, LayerNorms ones/zeros (per-leaf ``init_overrides``).
    Dropout (``embd_pdrop``, ``attn_pdrop`` on the attention weights, ``resid_pdrop``
    after each ``c_proj``) is active with ``train=True``.

    Args:
      config: a :class:`GPT2Config`.
      scan: apply the blocks with ``lax.scan`` (keyword-only).
      dtype, param_dtype, precision: as for :class:`~tlean.layers.Linear` (keyword-only);
        transformers' ``dtype`` is ``param_dtype``.

    Apply keywords: ``attention_mask [batch, seq]`` (transformers': 1 = a real token,
    0 = padding, whose keys get zero weight; a query with no real key before it, such
    as left padding, gets zero attention weights where transformers averages: compare
    real positions only) and ``position_ids [batch|1, seq]`` (default ``arange(seq)``).

    Decoding (the protocol ``models.generate`` uses): :attr:`context_length`,
    :meth:`init_cache` and :meth:`decode`.

    Shapes: ``ids [batch, seq]`` integers -> ``logits [batch, seq, vocab_size]``.

    >>> import jax, jax.numpy as jnp
    >>> from tlean import models, nn
    >>> model = nn.run(0, models.gpt2(vocab_size=50, n_positions=16, n_embd=16, n_layer=2, n_head=2))
    >>> ids = jnp.array([[1, 2, 3, 4]])
    >>> model(ids).shape
    (1, 4, 50)
    >>> [leaf.aliases for leaf in model.named_leaves() if leaf.name == "transformer.wte.weight"]
    [('lm_head.weight',)]
    """

    config: GPT2Config
    _: KW_ONLY
    scan: bool = _util.flag(True)
    dtype: Any = _util.dtype_field()
    param_dtype: Any = _util.param_dtype_field()
    precision: Any = _util.precision_field()

    transformer: GPT2Model = sublayer()
    lm_head: Linear = sublayer()

    def __post_init__(self):
        if not isinstance(self.config, GPT2Config):
            raise TypeError(f"GPT2LMHeadModel: config must be a GPT2Config, got {type(self.config).__name__}")
        cfg, num = self.config, numerics(self)
        _util.set_field(self, "transformer", GPT2Model(cfg, scan=self.scan, **num))
        _util.set_field(self, "lm_head", Linear(cfg.n_embd, cfg.vocab_size, False, **num))

    @property
    def ties(self) -> dict | None:
        return {"lm_head.weight": "transformer.wte.weight"} if self.config.tie_word_embeddings else None

    @property
    def init_overrides(self) -> dict:
        std = self.config.initializer_range
        normal = functools.partial(_normal, std=std)
        rules = {
            r"transformer\.h\.(attn|mlp)\.c_proj\.weight": functools.partial(
                _normal, std=std / math.sqrt(2 * self.config.n_layer)
            ),
            r"transformer\.(wte|wpe|h\.attn\.c_attn|h\.mlp\.c_fc)\.weight": normal,
        }
        if not self.config.tie_word_embeddings:
            rules[r"lm_head\.weight"] = normal
        return rules

    base = "transformer"

    @property
    def context_length(self) -> int:
        """The longest sequence: ``n_positions``."""
        return self.config.n_positions


def gpt2(config: GPT2Config | None = None, **fields: Any) -> Builder[Model]:
    """The seeded builder of a GPT-2 Model: ``nn.run(seed, models.gpt2(n_layer=2, ...))`` (draws one key).

    Args:
      config: a :class:`GPT2Config` (default: GPT-2 small's, 124M parameters).
      **fields: :class:`GPT2Config` fields replacing the config's, and the layer's
        ``scan``, ``dtype``, ``param_dtype``, ``precision``.
    """
    config, options = builder_args(GPT2Config, config, fields, "gpt2")
    return build(GPT2LMHeadModel(config, **options))


FAMILY = Family(
    model_type="gpt2",
    config=GPT2Config,
    layer=GPT2LMHeadModel,
    architecture="GPT2LMHeadModel",
    base_prefix="transformer.",
    ignore=(r"(^|\.)attn\.(masked_)?bias$", r"(^|\.)crossattention\.(masked_)?bias$"),
)
