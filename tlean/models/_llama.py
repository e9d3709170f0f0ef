"""Llama as transformers builds it (``LlamaForCausalLM``): its config and its module tree.

The layers mirror transformers' modules field for field, so the generic walk names every
leaf as transformers' ``state_dict`` does (``model.layers.0.self_attn.q_proj.weight``) and
a Hugging Face directory loads with :func:`tlean.models.from_pretrained`, no key map.
Grouped-query attention with half-split RoPE (``rope_theta``, Llama 3.1's ``"llama3"``
scaling) is :class:`~tlean.layers.Attention`, SwiGLU is
:class:`~tlean.layers.GatedFeedForward`; the decoder layers are a
:class:`~tlean.layers.Stacked` (one ``lax.scan``).
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
from dataclasses import KW_ONLY, dataclass
from typing import Any, cast

import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Float, Integer

from tlean._core import Layer, sublayer
from tlean._model import Model
from tlean.layers import _kvcache, _util
from tlean.layers._combinators import Stacked
from tlean.layers._embedding import Embedding
from tlean.layers._gqa import Attention, GatedFeedForward
from tlean.layers._linear import Linear
from tlean.layers._norm import RMSNorm
from tlean.layers._position import RoPE, RopeScaling
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

__all__ = ["FAMILY", "Llama", "LlamaConfig", "LlamaDecoderLayer", "LlamaModel", "llama"]

#: transformers' ``hidden_act`` names that tlean's GatedFeedForward computes.
ACTIVATIONS = {
    "silu": "silu",
    "swish": "silu",
    "gelu": "gelu",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_new": "gelu_tanh",
    "relu": "relu",
}


def _scaling_from_hf(rope: dict, max_positions: int, where: str) -> RopeScaling | None:
    """A :class:`RopeScaling` from transformers' ``rope_parameters`` (or ``rope_scaling``) dict."""
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type == "default":
        return None
    if rope_type not in ("linear", "llama3"):
        raise ValueError(
            f"LlamaConfig: {where}['rope_type']={rope_type!r} is not supported "
            f"(tlean has 'default', 'linear' and 'llama3')"
        )
    keys = ("factor",) if rope_type == "linear" else ("factor", "low_freq_factor", "high_freq_factor")
    missing = [k for k in keys if rope.get(k) is None]
    if missing:
        raise ValueError(f"LlamaConfig: {where} of rope_type {rope_type!r} lacks {missing}")
    values = {k: rope[k] for k in keys}
    old = rope.get("original_max_position_embeddings") or max_positions
    return RopeScaling(rope_type, **values, original_max_position_embeddings=old)


@dataclass(frozen=True, repr=False)
class LlamaConfig:
    """transformers' ``LlamaConfig``: the fields Llama needs, with transformers' names and defaults.

    ``rope_theta`` and ``rope_scaling`` are transformers' RoPE settings (transformers 5
    keeps both in one ``rope_parameters`` dict; 4.x wrote ``rope_theta`` and
    ``rope_scaling`` at the top level: :meth:`from_hf` reads either spelling, :meth:`to_hf`
    writes ``rope_parameters``). ``rope_scaling`` is a :class:`~tlean.layers.RopeScaling`,
    a transformers-style dict (``{"rope_type": "llama3", "factor": 8.0, ...}``) or ``None``.
    ``num_key_value_heads=None`` means ``num_attention_heads`` and ``head_dim=None``
    ``hidden_size // num_attention_heads``, as in transformers. ``eos_token_id`` may be a
    tuple (Llama 3 lists several).

    Unsupported values raise a ``ValueError`` naming the field: a ``hidden_act`` outside
    :data:`ACTIVATIONS`, a ``rope_type`` other than default / linear / llama3 (yarn,
    dynamic, longrope), ``partial_rotary_factor`` below 1, a non-zero
    ``attention_dropout`` (tlean's Attention has no attention dropout).

    >>> from tlean.models import LlamaConfig
    >>> cfg = LlamaConfig.from_hf({"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4,
    ...                            "num_key_value_heads": 2, "rope_theta": 500000.0})
    >>> cfg.head_dim, cfg.num_key_value_heads, cfg.to_hf()["rope_parameters"]
    (16, 2, {'rope_type': 'default', 'rope_theta': 500000.0})
    """

    vocab_size: int = 32000
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int | None = None
    head_dim: int | None = None
    hidden_act: str = "silu"
    max_position_embeddings: int = 2048
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_scaling: RopeScaling | None = None
    attention_bias: bool = False
    attention_dropout: float = 0.0
    mlp_bias: bool = False
    tie_word_embeddings: bool = False
    initializer_range: float = 0.02
    pad_token_id: int | None = None
    bos_token_id: int | None = 1
    eos_token_id: int | tuple[int, ...] | None = 2

    def __post_init__(self):
        name = "LlamaConfig"
        for f in (
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "max_position_embeddings",
        ):
            object.__setattr__(self, f, _util.check_size(name, f, getattr(self, f)))
        heads = self.num_attention_heads
        kv = (
            heads
            if self.num_key_value_heads is None
            else _util.check_size(name, "num_key_value_heads", self.num_key_value_heads)
        )
        if heads % kv:
            raise ValueError(f"{name}: num_attention_heads={heads} must be divisible by num_key_value_heads={kv}")
        object.__setattr__(self, "num_key_value_heads", kv)
        if self.head_dim is None:
            if self.hidden_size % heads:
                raise ValueError(
                    f"{name}: hidden_size={self.hidden_size} must be divisible by num_attention_heads="
                    f"{heads}, or give head_dim"
                )
            object.__setattr__(self, "head_dim", self.hidden_size // heads)
        head_dim = _util.check_size(name, "head_dim", self.head_dim)
        object.__setattr__(self, "head_dim", head_dim)
        if head_dim % 2:
            raise ValueError(f"{name}: head_dim={head_dim} must be even (half-split RoPE rotates pairs)")
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(f"{name}: hidden_act must be one of {sorted(ACTIVATIONS)}, got {self.hidden_act!r}")
        for f in ("rms_norm_eps", "initializer_range", "attention_dropout"):
            object.__setattr__(self, f, _util.check_nonnegative(name, f, getattr(self, f)))
        if self.attention_dropout:
            raise ValueError(
                f"{name}: attention_dropout={self.attention_dropout} is not supported (tlean's "
                f"Attention has no attention dropout); use 0.0"
            )
        for f in ("attention_bias", "mlp_bias", "tie_word_embeddings"):
            object.__setattr__(self, f, _util.check_flag(name, f, getattr(self, f)))
        theta = self.rope_theta
        if isinstance(theta, bool) or not isinstance(theta, numbers.Real) or not theta > 0:
            raise ValueError(f"{name}: rope_theta must be a number > 0, got {theta!r}")
        object.__setattr__(self, "rope_theta", float(theta))
        if isinstance(self.rope_scaling, dict):
            object.__setattr__(
                self, "rope_scaling", _scaling_from_hf(self.rope_scaling, self.max_position_embeddings, "rope_scaling")
            )
        elif self.rope_scaling is not None and not isinstance(self.rope_scaling, RopeScaling):
            raise TypeError(
                f"{name}: rope_scaling must be a tlean.layers.RopeScaling, a dict or None, got "
                f"{type(self.rope_scaling).__name__}"
            )
        for f in ("pad_token_id", "bos_token_id"):
            value = getattr(self, f)
            if value is not None and (not _util.is_int(value) or value < 0):
                raise ValueError(f"{name}: {f} must be a token id >= 0 or None, got {value!r}")
        eos = self.eos_token_id
        if isinstance(eos, (list, tuple)):
            object.__setattr__(self, "eos_token_id", tuple(int(e) for e in eos))
        elif eos is not None and not _util.is_int(eos):
            raise ValueError(f"{name}: eos_token_id must be a token id, a list of them or None, got {eos!r}")

    def __repr__(self) -> str:
        derived = {
            "num_key_value_heads": self.num_attention_heads,
            "head_dim": self.hidden_size // self.num_attention_heads,
        }
        changed = [
            f"{f.name}={getattr(self, f.name)!r}"
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != derived.get(f.name, f.default)
        ]
        return f"LlamaConfig({', '.join(changed)})"

    @property
    def activation(self) -> str:
        """``hidden_act`` as :class:`~tlean.layers.GatedFeedForward`'s activation name."""
        return ACTIVATIONS[self.hidden_act]

    @classmethod
    def from_hf(cls, config: dict) -> LlamaConfig:
        """The config of a transformers ``config.json`` dict (``model_type`` ``"llama"``), either RoPE spelling."""
        if config.get("model_type", "llama") != "llama":
            raise ValueError(f"LlamaConfig.from_hf: model_type must be 'llama', got {config.get('model_type')!r}")
        fields = {f.name for f in dataclasses.fields(cls)} - {"rope_theta", "rope_scaling"}
        values = {k: v for k, v in config.items() if k in fields}
        where = "rope_parameters" if config.get("rope_parameters") else "rope_scaling"
        rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
        if not isinstance(rope, dict) or any(isinstance(v, dict) for v in rope.values()):
            raise ValueError(
                f"LlamaConfig: {where} must be one flat dict (per-layer RoPE is not supported), got {rope!r}"
            )
        partial = rope.get("partial_rotary_factor", config.get("partial_rotary_factor"))
        if partial is not None and partial != 1:
            raise ValueError(
                f"LlamaConfig: partial_rotary_factor={partial} is not supported (RoPE rotates the whole head)"
            )
        max_positions = config.get("max_position_embeddings", 2048)
        if "original_max_position_embeddings" in config and "original_max_position_embeddings" not in rope:
            rope = {**rope, "original_max_position_embeddings": config["original_max_position_embeddings"]}
        values["rope_theta"] = rope.get("rope_theta", config.get("rope_theta", 10000.0))
        values["rope_scaling"] = _scaling_from_hf(rope, max_positions, where)
        return cls(**values)

    def to_hf(self) -> dict:
        """The fields as a ``config.json`` dict in transformers 5's spelling (``rope_parameters``)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        scaling = out.pop("rope_scaling")
        rope = {"rope_type": "default" if scaling is None else scaling.rope_type, "rope_theta": out.pop("rope_theta")}
        if scaling is not None:
            rope["factor"] = scaling.factor
            if scaling.rope_type == "llama3":
                rope.update(
                    low_freq_factor=scaling.low_freq_factor,
                    high_freq_factor=scaling.high_freq_factor,
                    original_max_position_embeddings=scaling.original_max_position_embeddings,
                )
        out["rope_parameters"] = rope
        if isinstance(out["eos_token_id"], tuple):
            out["eos_token_id"] = list(out["eos_token_id"])
        return out

    def rope(self) -> RoPE:
        """The half-split :class:`~tlean.layers.RoPE` of every attention layer."""
        return RoPE(
            cast(int, self.head_dim),
            self.max_position_embeddings,
            interleaved=False,
            base=self.rope_theta,
            scaling=self.rope_scaling,
        )


def _check_config(name: str, config: Any) -> None:
    if not isinstance(config, LlamaConfig):
        raise TypeError(f"{name}: config must be a LlamaConfig, got {type(config).__name__}")


@dataclass(frozen=True)
class LlamaDecoderLayer(Layer):
    """``h = x + self_attn(input_layernorm(x)); y = h + mlp(post_attention_layernorm(h))``.

    transformers' ``LlamaDecoderLayer``: causal grouped-query :class:`~tlean.layers.Attention`
    with half-split RoPE, a SwiGLU :class:`~tlean.layers.GatedFeedForward`, two RMSNorms.
    Apply keywords: ``allow`` (boolean ``[batch|1, 1, 1|seq, seq]``, True = may attend,
    combined with the causal mask) and ``position_ids [batch|1, seq]`` (RoPE positions).
    """

    config: LlamaConfig
    _: KW_ONLY
    dtype: Any = _util.dtype_field()
    param_dtype: Any = _util.param_dtype_field()
    precision: Any = _util.precision_field()

    self_attn: Attention = sublayer()
    mlp: GatedFeedForward = sublayer()
    input_layernorm: RMSNorm = sublayer()
    post_attention_layernorm: RMSNorm = sublayer()

    def __post_init__(self):
        _check_config("LlamaDecoderLayer", self.config)
        cfg, num = self.config, numerics(self)
        norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, dtype=self.dtype, param_dtype=self.param_dtype)
        _util.set_field(
            self,
            "self_attn",
            Attention(
                cfg.hidden_size,
                cfg.num_attention_heads,
                cfg.num_key_value_heads,
                cfg.head_dim,
                cfg.attention_bias,
                rope=cfg.rope(),
                causal=True,
                **num,
            ),
        )
        _util.set_field(
            self, "mlp", GatedFeedForward(cfg.hidden_size, cfg.intermediate_size, cfg.activation, cfg.mlp_bias, **num)
        )
        _util.set_field(self, "input_layernorm", norm)
        _util.set_field(self, "post_attention_layernorm", norm)

    def apply(
        self,
        params,
        state,
        x: Float[Array, "batch seq hidden"],
        *,
        key=None,
        train=False,
        allow=None,
        position_ids=None,
    ):
        c = self.bind(params, state, key=key, train=train)
        h = x + c.self_attn(c.input_layernorm(x), allow=allow, position_ids=position_ids)
        return h + c.mlp(c.post_attention_layernorm(h)), state

    def decode(
        self, params: dict, cache: dict, x: jax.Array, start_pos: Any, *, allow: Any = None, position_ids: Any = None
    ) -> tuple[jax.Array, dict]:
        """``(y, new cache)`` for the new positions ``x`` (see :meth:`Attention.decode`)."""
        c = self.bind(params, {})
        a, cache = self.self_attn.decode(
            params["self_attn"], cache, c.input_layernorm(x), start_pos, allow=allow, position_ids=position_ids
        )
        h = x + a
        return h + c.mlp(c.post_attention_layernorm(h)), cache


@dataclass(frozen=True)
class LlamaModel(Layer):
    """transformers' ``LlamaModel``: ``norm(layers(embed_tokens(ids)))``, ``layers`` a scanned stack.

    Returns the last hidden states ``[batch, seq, hidden_size]``. Apply keywords as
    :class:`Llama`'s (``attention_mask``, ``position_ids``).
    """

    config: LlamaConfig
    _: KW_ONLY
    scan: bool = _util.flag(True)
    dtype: Any = _util.dtype_field()
    param_dtype: Any = _util.param_dtype_field()
    precision: Any = _util.precision_field()

    embed_tokens: Embedding = sublayer()
    layers: Stacked = sublayer()
    norm: RMSNorm = sublayer()

    def __post_init__(self):
        _check_config("LlamaModel", self.config)
        cfg, num = self.config, numerics(self)
        _util.set_field(self, "embed_tokens", Embedding(cfg.vocab_size, cfg.hidden_size, cfg.pad_token_id, **num))
        _util.set_field(self, "layers", Stacked(LlamaDecoderLayer(cfg, **num), cfg.num_hidden_layers, self.scan))
        _util.set_field(
            self, "norm", RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, dtype=self.dtype, param_dtype=self.param_dtype)
        )

    def apply(
        self,
        params,
        state,
        ids: Integer[Array, "batch seq"],
        *,
        key=None,
        train=False,
        attention_mask=None,
        position_ids=None,
    ):
        batch, seq = check_ids(
            self, ids, 0, position_ids, self.config.max_position_embeddings, "max_position_embeddings"
        )
        context = {}
        if attention_mask is not None:
            context["allow"] = check_mask(self, attention_mask, batch, seq, "attention_mask [batch, seq]")[
                :, None, None, :
            ]
        if position_ids is not None:
            context["position_ids"] = check_position_ids(self, position_ids, batch, seq)
        c = self.bind(params, state, key=key, train=train)
        return c.norm(c.layers(c.embed_tokens(ids), **context)), state

    def init_cache(self, batch: int, max_len: int, dtype: Any) -> dict:
        block = cast(LlamaDecoderLayer, self.layers.layer)
        return _kvcache.stack(self.config.num_hidden_layers, block.self_attn.init_cache(batch, max_len, dtype))

    def decode(
        self,
        params: dict,
        cache: dict,
        ids: jax.Array,
        start_pos: Any,
        *,
        attention_mask: Any = None,
        position_ids: Any = None,
    ) -> tuple[jax.Array, dict]:
        """``(last hidden states, new cache)`` for ``ids`` at cache slots ``start_pos ..`` (see :meth:`Llama.decode`)."""
        cfg, block = self.config, cast(LlamaDecoderLayer, self.layers.layer)
        batch, seq = check_ids(
            self, ids, start_pos, position_ids, self.config.max_position_embeddings, "max_position_embeddings"
        )
        kv_heads, head_dim = cast(int, cfg.num_key_value_heads), cast(int, cfg.head_dim)  # set by __post_init__
        max_len = check_cache(self, cache, cfg.num_hidden_layers, batch, kv_heads, head_dim)
        allow = None
        if attention_mask is not None:
            allow = check_mask(self, attention_mask, batch, max_len, f"attention_mask [batch, max_len={max_len}]")
            allow = allow[:, None, None, :]
        if position_ids is not None:
            position_ids = check_position_ids(self, position_ids, batch, seq)
        c = self.bind(params, {})
        h = c.embed_tokens(ids)
        h = h.astype(_util.compute_dtype(self.dtype, h, params["norm"]["weight"]))  # the scan carry's dtype

        def step(x, pc):
            return block.decode(pc[0], pc[1], x, start_pos, allow=allow, position_ids=position_ids)

        h, cache = lax.scan(step, h, (params["layers"], cache))
        return c.norm(h), cache


def _normal(key: jax.Array, shape: tuple[int, ...], dtype: Any, std: float, zero_row: int | None = None) -> jax.Array:
    w = std * jax.random.normal(key, shape, jnp.float32)
    if zero_row is not None:
        w = w.at[zero_row].set(0.0)
    return w.astype(dtype)


def _zeros(key: jax.Array, shape: tuple[int, ...], dtype: Any) -> jax.Array:
    return jnp.zeros(shape, dtype)


@dataclass(frozen=True)
class Llama(CausalLM):
    """Llama with its language-model head: transformers' ``LlamaForCausalLM``, module for module.

    ``logits = lm_head(model(ids))``, ``model`` a :class:`LlamaModel`: ``embed_tokens``,
    ``num_hidden_layers`` pre-norm decoder layers ``layers`` (a
    :class:`~tlean.layers.Stacked`, scanned), the final RMSNorm ``norm``. Each layer is
    ``self_attn`` (``q_proj``, ``k_proj``, ``v_proj``, ``o_proj``: grouped-query attention,
    ``num_key_value_heads`` key/value heads, half-split RoPE with ``rope_theta`` and
    optional ``"linear"`` / ``"llama3"`` scaling), ``mlp`` (``gate_proj``, ``up_proj``,
    ``down_proj``: SwiGLU), ``input_layernorm``, ``post_attention_layernorm``. Leaf names are
    transformers' keys (``model.layers.*.mlp.gate_proj.weight`` is
    ``model.layers.{i}.mlp.gate_proj.weight``); transformers' ``rotary_emb.inv_freq`` is a
    non-persistent buffer, computed here from the config. With ``tie_word_embeddings``
    ``lm_head.weight`` is an alias of ``model.embed_tokens.weight``: one leaf, its gradient
    the sum of both uses, as in torch.

    Init (transformers' ``_init_weights``): ``embed_tokens`` and every Linear weight
    ``N(0, initializer_range)`` (the ``pad_token_id`` row zero), biases zero, RMSNorm
    weights one (per-leaf ``init_overrides``). There is no dropout.

    Args:
      config: a :class:`LlamaConfig`.
      scan: apply the layers with ``lax.scan`` (keyword-only).
      dtype, param_dtype, precision: as for :class:`~tlean.layers.Linear` (keyword-only);
        transformers' ``dtype`` is ``param_dtype``.

    Apply keywords: ``attention_mask [batch, seq]`` (transformers': 1 = a real token, 0 =
    padding, whose keys get zero weight; a query with no real key at or before it, such as
    a left-padding position, outputs zeros from attention where transformers' values are
    undefined: compare real positions only) and ``position_ids [batch|1, seq]`` (RoPE
    positions; default ``arange(seq)``, as transformers' forward, which does not derive
    them from the mask; :func:`~tlean.models.generate` does, as transformers' generate).

    Decoding (the protocol ``models.generate`` uses): :attr:`context_length`,
    :meth:`init_cache` and :meth:`decode`.

    Shapes: ``ids [batch, seq]`` integers, ``seq <= max_position_embeddings`` ->
    ``logits [batch, seq, vocab_size]``.

    >>> import jax, jax.numpy as jnp
    >>> from tlean import models, nn
    >>> model = nn.run(0, models.llama(vocab_size=50, hidden_size=16, intermediate_size=24, num_hidden_layers=2,
    ...                                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32))
    >>> model(jnp.array([[1, 2, 3]])).shape
    (1, 3, 50)
    >>> model.params["model"]["layers"]["self_attn"]["k_proj"]["weight"].shape  # [layers, kv_heads * head_dim, hidden]
    (2, 8, 16)
    """

    config: LlamaConfig
    _: KW_ONLY
    scan: bool = _util.flag(True)
    dtype: Any = _util.dtype_field()
    param_dtype: Any = _util.param_dtype_field()
    precision: Any = _util.precision_field()

    model: LlamaModel = sublayer()
    lm_head: Linear = sublayer()

    def __post_init__(self):
        _check_config("Llama", self.config)
        cfg, num = self.config, numerics(self)
        _util.set_field(self, "model", LlamaModel(cfg, scan=self.scan, **num))
        _util.set_field(self, "lm_head", Linear(cfg.hidden_size, cfg.vocab_size, False, **num))

    @property
    def ties(self) -> dict | None:
        return {"lm_head.weight": "model.embed_tokens.weight"} if self.config.tie_word_embeddings else None

    @property
    def init_overrides(self) -> dict:
        std = self.config.initializer_range
        rules = {
            r"model\.embed_tokens\.weight": functools.partial(_normal, std=std, zero_row=self.config.pad_token_id),
            r"model\.layers\.(self_attn|mlp)\.\w+_proj\.weight": functools.partial(_normal, std=std),
            r"model\.layers\.(self_attn|mlp)\.\w+_proj\.bias": _zeros,
        }
        if not self.config.tie_word_embeddings:
            rules[r"lm_head\.weight"] = functools.partial(_normal, std=std)
        return rules

    base = "model"

    @property
    def context_length(self) -> int:
        """The longest sequence: ``max_position_embeddings``."""
        return self.config.max_position_embeddings


def llama(config: LlamaConfig | None = None, **fields: Any) -> Builder[Model]:
    """The seeded builder of a Llama Model: ``nn.run(seed, models.llama(num_hidden_layers=2, ...))`` (draws one key).

    Args:
      config: a :class:`LlamaConfig` (default: transformers' default, Llama-2-7B's shape).
      **fields: :class:`LlamaConfig` fields replacing the config's, and the layer's
        ``scan``, ``dtype``, ``param_dtype``, ``precision``.
    """
    config, options = builder_args(LlamaConfig, config, fields, "llama")
    return build(Llama(config, **options))


FAMILY = Family(
    model_type="llama",
    config=LlamaConfig,
    layer=Llama,
    architecture="LlamaForCausalLM",
    base_prefix="model.",
    ignore=(r"rotary_emb\.(original_)?inv_freq$",),
)
