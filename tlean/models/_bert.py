"""BERT (Devlin et al. 2019) with transformers' ``BertModel`` module tree and checkpoint names.

The model is a composite of tlean layers whose field names are transformers' submodule
names, so the generic walk gives a transformers state_dict's keys
(``encoder.layer.0.attention.self.query.weight``) with no key map. The self-attention and
the intermediate (feed-forward) block are shared with :mod:`tlean.models._vit`, whose
hub checkpoints use the same submodules.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Integer

from tlean._core import Layer, ShapeError, sublayer
from tlean._model import Model
from tlean.layers import _util
from tlean.layers._combinators import Stacked
from tlean.layers._dropout import Dropout
from tlean.layers._embedding import Embedding
from tlean.layers._linear import Linear
from tlean.layers._norm import LayerNorm
from tlean.models._hf import builder_args, jitted_init
from tlean.models._hub import Family
from tlean.nn._build import build
from tlean.seed import Builder

__all__ = ["BertConfig", "BertModel", "bert"]

#: transformers' ``hidden_act`` names tlean computes, with the same formula
#: (``gelu`` is the exact erf form; ``gelu_new`` and ``gelu_pytorch_tanh`` the tanh form).
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "gelu": functools.partial(jax.nn.gelu, approximate=False),
    "gelu_new": functools.partial(jax.nn.gelu, approximate=True),
    "gelu_pytorch_tanh": functools.partial(jax.nn.gelu, approximate=True),
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "tanh": jnp.tanh,
}


def check_activation(config_name: str, name: str, value: Any) -> str:
    """A ``hidden_act`` tlean supports, else a ``ValueError`` naming the field."""
    if not isinstance(value, str) or value not in ACTIVATIONS:
        raise ValueError(f"{config_name}: {name}={value!r} is not supported; use one of {sorted(ACTIVATIONS)}")
    return value


def normal_init(std: float) -> Callable:
    """``init(key, shape, dtype)`` drawing N(0, std), transformers' ``normal_(0, initializer_range)``."""

    def init(key, shape, dtype):
        return (jnp.float32(std) * jax.random.normal(key, shape, jnp.float32)).astype(dtype)

    return init


def zeros_init(key, shape, dtype):
    """``init(key, shape, dtype)`` of zeros (biases)."""
    return jnp.zeros(shape, dtype)


def config_from_hf(cls: type, hf: dict, model_type: str, refused: dict[str, Callable[[Any], bool]]) -> Any:
    """``cls`` from a transformers ``config.json`` dict: its own fields, others ignored.

    ``refused`` maps a transformers field to a test of its value that tlean cannot
    honour (a ``ValueError`` naming the field and value).
    """
    if hf.get("model_type", model_type) != model_type:
        raise ValueError(f"{cls.__name__}.from_hf: model_type must be {model_type!r}, got {hf['model_type']!r}")
    for name, bad in refused.items():
        if name in hf and bad(hf[name]):
            raise ValueError(f"{cls.__name__}.from_hf: {name}={hf[name]!r} is not supported by tlean")
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in hf.items() if k in names})


def check_config(config: Any) -> None:
    """Run the declared field checks (``_util.size()``, ``flag()``, ...) of a config dataclass, as
    :class:`~tlean.Layer` does for its fields; errors name the config and the field."""
    for f in dataclasses.fields(config):
        if "check" in f.metadata:
            value = f.metadata["check"](type(config).__name__, f.name, getattr(config, f.name))
            object.__setattr__(config, f.name, value)


def config_repr(config: Any) -> str:
    """``Type(field=value, ...)`` with the fields that differ from the defaults (compact error messages)."""
    shown = [
        f"{f.name}={getattr(config, f.name)!r}"
        for f in dataclasses.fields(config)
        if getattr(config, f.name) != f.default
    ]
    return f"{type(config).__name__}({', '.join(shown)})"


@dataclass(frozen=True, repr=False)
class BertConfig:
    """The fields of transformers' ``BertConfig`` that the encoder needs, with its defaults.

    ``add_pooling_layer`` is BertModel's constructor argument (False for the checkpoints
    of ``BertForMaskedLM``, ``BertLMHeadModel``, ``BertForTokenClassification`` and
    ``BertForQuestionAnswering``, whose ``architectures`` :meth:`from_hf` reads). Values
    tlean does not compute (``is_decoder``, cross-attention, relative position
    embeddings, another ``hidden_act``) are a ``ValueError`` naming the field.

    >>> BertConfig.from_hf({"model_type": "bert", "hidden_size": 32, "num_attention_heads": 2}).hidden_size
    32
    """

    vocab_size: int = _util.size(30522)
    hidden_size: int = _util.size(768)
    num_hidden_layers: int = _util.size(12)
    num_attention_heads: int = _util.size(12)
    intermediate_size: int = _util.size(3072)
    hidden_act: str = _util.checked(check_activation, "gelu")
    hidden_dropout_prob: float = _util.probability(0.1)
    attention_probs_dropout_prob: float = _util.probability(0.1)
    max_position_embeddings: int = _util.size(512)
    type_vocab_size: int = _util.size(2)
    layer_norm_eps: float = _util.nonnegative(1e-12)
    initializer_range: float = _util.nonnegative(0.02)
    pad_token_id: int | None = 0
    add_pooling_layer: bool = _util.flag(True)

    def __post_init__(self):
        check_config(self)
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"BertConfig: hidden_size={self.hidden_size} must be a multiple of "
                f"num_attention_heads={self.num_attention_heads}"
            )
        pad = self.pad_token_id
        if pad is not None and not (_util.is_int(pad) and 0 <= pad < self.vocab_size):
            raise ValueError(f"BertConfig: pad_token_id must be None or an int in [0, {self.vocab_size}), got {pad!r}")

    @classmethod
    def from_hf(cls, hf: dict) -> BertConfig:
        """The config of a transformers ``config.json`` dict (``model_type`` ``"bert"``)."""
        refused = {
            "is_decoder": bool,
            "add_cross_attention": bool,
            "position_embedding_type": lambda v: v not in (None, "absolute"),
        }
        config = config_from_hf(cls, hf, "bert", refused)
        if set(hf.get("architectures") or ()) & _NO_POOLER:
            config = dataclasses.replace(config, add_pooling_layer=False)
        return config

    def __repr__(self) -> str:
        return config_repr(self)

    def to_hf(self) -> dict:
        """The ``config.json`` dict transformers' ``BertConfig`` reads."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "add_pooling_layer"}
        return {"model_type": "bert", **fields}


_NO_POOLER = {"BertForMaskedLM", "BertLMHeadModel", "BertForTokenClassification", "BertForQuestionAnswering"}


# -- the parts, named as transformers names its submodules -------------------------------------
@dataclass(frozen=True)
class Part(Layer):
    """A submodule of a transformers model built from its config (and the model's numerics)."""

    config: Any
    dtype: Any = _util.dtype_field()
    param_dtype: Any = _util.param_dtype_field()
    precision: Any = _util.precision_field()

    @property
    def numerics(self) -> dict:
        return dict(dtype=self.dtype, param_dtype=self.param_dtype, precision=self.precision)

    def linear(self, in_features: int, out_features: int, bias: bool = True) -> Linear:
        return Linear(in_features, out_features, bias, **self.numerics)

    def layer_norm(self) -> LayerNorm:
        return LayerNorm(
            self.config.hidden_size, self.config.layer_norm_eps, dtype=self.dtype, param_dtype=self.param_dtype
        )

    def set(self, /, **children: Layer | None) -> None:
        """Set the sub-layer fields (in ``__post_init__``); positional-only, so a child may be named ``self``."""
        for name, child in children.items():
            _util.set_field(self, name, child)


def allowed(layer: Layer, attention_mask: Any, batch: int, length: int) -> jax.Array:
    """transformers' ``attention_mask [batch, length]`` (1 = attend) as a boolean ``[batch, 1, 1, length]``."""
    if jnp.shape(attention_mask) != (batch, length):
        raise ShapeError(
            layer, f"attention_mask [batch, seq] = {(batch, length)} (1 = attend)", jnp.shape(attention_mask)
        )
    return jnp.asarray(attention_mask).astype(bool)[:, None, None, :]


@dataclass(frozen=True)
class BertSelfAttention(Part):
    """``softmax(q k^T / sqrt(head_dim)) v`` over ``num_attention_heads`` heads, the heads concatenated.

    transformers' ``BertSelfAttention`` (and ViT's ``ViTSelfAttention``): children
    ``query``, ``key``, ``value`` (Linear, biased unless the config's ``qkv_bias`` is
    False) and ``dropout`` on the attention probabilities (``attention_probs_dropout_prob``,
    training only). The softmax runs in float32. Keyword ``attention_mask [batch, seq]``
    (1 = attend, transformers' meaning): a query row with no key allowed gets uniform
    weights. ``x [batch, seq, hidden] -> [batch, seq, hidden]`` (no output projection).
    """

    query: Linear = sublayer()
    key: Linear = sublayer()
    value: Linear = sublayer()
    dropout: Dropout = sublayer()

    def __post_init__(self):
        h, bias = self.config.hidden_size, getattr(self.config, "qkv_bias", True)
        self.set(
            query=self.linear(h, h, bias),
            key=self.linear(h, h, bias),
            value=self.linear(h, h, bias),
            dropout=Dropout(self.config.attention_probs_dropout_prob),
        )

    def apply(self, params, state, x: Float[Array, "batch seq hidden"], *, key=None, train=False, attention_mask=None):
        if jnp.ndim(x) != 3:
            raise ShapeError(self, f"hidden states [batch, seq, {self.config.hidden_size}]", jnp.shape(x))
        batch, length, hidden = jnp.shape(x)
        heads, head_dim = self.config.num_attention_heads, hidden // self.config.num_attention_heads
        c = self.bind(params, state, key=key, train=train)

        def split(h):  # [batch, seq, hidden] -> [batch, heads, seq, head_dim]
            return h.reshape(batch, length, heads, head_dim).transpose(0, 2, 1, 3)

        q, k, v = split(c.query(x)), split(c.key(x)), split(c.value(x))
        scores = jnp.einsum("bhqd,bhkd->bhqk", q, k, precision=self.precision).astype(jnp.float32)
        scores = scores * jnp.float32(1 / math.sqrt(head_dim))
        if attention_mask is not None:
            scores = jnp.where(allowed(self, attention_mask, batch, length), scores, jnp.finfo(jnp.float32).min)
        probs = c.dropout(jax.nn.softmax(scores, axis=-1).astype(v.dtype))
        context = jnp.einsum("bhqk,bhkd->bhqd", probs, v, precision=self.precision)
        return context.transpose(0, 2, 1, 3).reshape(batch, length, hidden), c.state


@dataclass(frozen=True)
class BertIntermediate(Part):
    """``hidden_act(dense(x))``, ``hidden -> intermediate_size`` (transformers' ``BertIntermediate``)."""

    dense: Linear = sublayer()

    def __post_init__(self):
        self.set(dense=self.linear(self.config.hidden_size, self.config.intermediate_size))

    def apply(self, params, state, x, *, key=None, train=False):
        c = self.bind(params, state, key=key, train=train)
        return ACTIVATIONS[self.config.hidden_act](c.dense(x)), c.state


@dataclass(frozen=True)
class BertSelfOutput(Part):
    """``LayerNorm(dropout(dense(x)) + residual)``: BERT's post-norm sublayer end (``BertSelfOutput``,
    and ``BertOutput`` with ``in_features = intermediate_size``). The residual is the keyword ``residual``."""

    in_features: int | None = None
    dense: Linear = sublayer()
    LayerNorm: LayerNorm = sublayer()
    dropout: Dropout = sublayer()

    def __post_init__(self):
        h = self.config.hidden_size
        self.set(
            dense=self.linear(self.in_features or h, h),
            LayerNorm=self.layer_norm(),
            dropout=Dropout(self.config.hidden_dropout_prob),
        )

    def apply(self, params, state, x, *, key=None, train=False, residual=None):
        c = self.bind(params, state, key=key, train=train)
        return c.LayerNorm(c.dropout(c.dense(x)) + residual), c.state


@dataclass(frozen=True)
class BertAttention(Part):
    """Self-attention then its output sublayer: ``output(self(x), residual=x)`` (``BertAttention``)."""

    self: BertSelfAttention = sublayer()
    output: BertSelfOutput = sublayer()

    def __post_init__(self):
        self.set(
            self=BertSelfAttention(self.config, **self.numerics), output=BertSelfOutput(self.config, **self.numerics)
        )

    def apply(self, params, state, x, *, key=None, train=False, attention_mask=None):
        c = self.bind(params, state, key=key, train=train)
        return c.output(c.self(x, attention_mask=attention_mask), residual=x), c.state


@dataclass(frozen=True)
class BertLayer(Part):
    """One post-norm encoder layer (``BertLayer``): attention, then ``output(intermediate(h), residual=h)``."""

    attention: BertAttention = sublayer()
    intermediate: BertIntermediate = sublayer()
    output: BertSelfOutput = sublayer()

    def __post_init__(self):
        self.set(
            attention=BertAttention(self.config, **self.numerics),
            intermediate=BertIntermediate(self.config, **self.numerics),
            output=BertSelfOutput(self.config, self.config.intermediate_size, **self.numerics),
        )

    def apply(self, params, state, x, *, key=None, train=False, attention_mask=None):
        c = self.bind(params, state, key=key, train=train)
        h = c.attention(x, attention_mask=attention_mask)
        return c.output(c.intermediate(h), residual=h), c.state


@dataclass(frozen=True)
class BertEncoder(Part):
    """``num_hidden_layers`` :class:`BertLayer` s in a :class:`~tlean.layers.Stacked` named ``layer``
    (transformers' ``encoder.layer.{i}``), applied with ``lax.scan`` unless ``scan=False``."""

    scan: bool = _util.flag(True, kw_only=True)
    layer: Stacked = sublayer()

    def __post_init__(self):
        self.set(
            layer=Stacked(self.layer_type(self.config, **self.numerics), self.config.num_hidden_layers, scan=self.scan)
        )

    @property
    def layer_type(self) -> type:
        return BertLayer

    def apply(self, params, state, x, *, key=None, train=False, attention_mask=None):
        c = self.bind(params, state, key=key, train=train)
        return c.layer(x, attention_mask=attention_mask), c.state


@dataclass(frozen=True)
class BertEmbeddings(Part):
    """``dropout(LayerNorm(word(ids) + token_type(token_type_ids) + position(position_ids)))`` (``BertEmbeddings``).

    ``word_embeddings`` keeps ``pad_token_id``'s row out of training (``padding_idx``).
    ``token_type_ids`` default to zeros and ``position_ids`` to ``0 .. seq-1``, as transformers.
    """

    word_embeddings: Embedding = sublayer()
    position_embeddings: Embedding = sublayer()
    token_type_embeddings: Embedding = sublayer()
    LayerNorm: LayerNorm = sublayer()
    dropout: Dropout = sublayer()

    def __post_init__(self):
        cfg, numerics = self.config, self.numerics
        self.set(
            word_embeddings=Embedding(cfg.vocab_size, cfg.hidden_size, cfg.pad_token_id, **numerics),
            position_embeddings=Embedding(cfg.max_position_embeddings, cfg.hidden_size, **numerics),
            token_type_embeddings=Embedding(cfg.type_vocab_size, cfg.hidden_size, **numerics),
            LayerNorm=self.layer_norm(),
            dropout=Dropout(cfg.hidden_dropout_prob),
        )

    def apply(self, params, state, ids, *, key=None, train=False, token_type_ids=None, position_ids=None):
        c = self.bind(params, state, key=key, train=train)
        batch, length = jnp.shape(ids)
        if token_type_ids is None:
            token_type_ids = jnp.zeros((batch, length), jnp.int32)
        if position_ids is None:
            position_ids = jnp.arange(length, dtype=jnp.int32)[None]
        h = c.word_embeddings(ids) + c.token_type_embeddings(token_type_ids)
        h = h + c.position_embeddings(position_ids)
        return c.dropout(c.LayerNorm(h)), c.state


@dataclass(frozen=True)
class BertPooler(Part):
    """``tanh(dense(h[:, 0]))``: the first token's hidden state, transformed (``BertPooler``)."""

    dense: Linear = sublayer()

    def __post_init__(self):
        self.set(dense=self.linear(self.config.hidden_size, self.config.hidden_size))

    def apply(self, params, state, h, *, key=None, train=False):
        c = self.bind(params, state, key=key, train=train)
        return jnp.tanh(c.dense(h[:, 0])), c.state


def hf_init_overrides(std: float, special: dict[str, Callable] | None = None) -> dict[str, Callable]:
    """transformers' ``_init_weights`` as leaf-name rules: ``special`` first, then every weight
    but a LayerNorm's from N(0, std), every bias zero (LayerNorm weights keep their ones)."""
    return {**(special or {}), r"(?!.*(?:LayerNorm|layernorm)).*\.weight": normal_init(std), r".*\.bias": zeros_init}


@dataclass(frozen=True)
class BertModel(Part):
    """BERT's encoder: embeddings, ``num_hidden_layers`` post-norm Transformer layers, a pooler.

    ``h = encoder(embeddings(ids, token_type_ids, position_ids), attention_mask)``,
    ``pooled = tanh(pooler.dense(h[:, 0]))``. A composite mirroring transformers'
    ``BertModel`` module for module, so its names are the checkpoint's
    (``embeddings.word_embeddings.weight``, ``encoder.layer.0.attention.self.query.weight``,
    ``encoder.layer.0.attention.output.LayerNorm.weight``,
    ``encoder.layer.0.intermediate.dense.weight``, ``encoder.layer.0.output.dense.weight``,
    ``pooler.dense.weight``) and a transformers state_dict loads with
    :func:`tlean.interop.load_torch_state_dict`. The layers are stacked (``encoder.layer.*``)
    and scanned (``scan=False`` unrolls them).

    Initialisation follows transformers' ``_init_weights``: Linear and Embedding weights
    from N(0, ``initializer_range``), biases zero, LayerNorm weights one, the
    ``pad_token_id`` row of ``word_embeddings`` zero.

    PyTorch analogue: ``transformers.BertModel(config, add_pooling_layer)``. What differs:
    the inputs are ``input_ids`` only (no ``inputs_embeds``), ``attention_mask`` is the 2-D
    ``[batch, seq]`` mask (1 = attend), no decoder/cross-attention/KV cache; the output is
    the pair ``(last_hidden_state, pooler_output)`` (``pooler_output`` is ``None`` without
    the pooler).

    Args:
      config: a :class:`BertConfig`.
      scan: apply the layers with ``lax.scan`` (keyword-only).
      dtype, param_dtype, precision: as for :class:`~tlean.layers.Linear` (keyword-only).

    Apply keywords (positional after ``input_ids`` in ``Model.__call__``, transformers'
    order): ``attention_mask [batch, seq]`` (1 = attend, 0 = padding),
    ``token_type_ids [batch, seq]`` (segment ids, default 0), ``position_ids [batch|1, seq]``
    (default ``0 .. seq-1``).

    Shapes:
      ``input_ids [batch, seq]`` integers, ``seq <= max_position_embeddings`` ->
      ``([batch, seq, hidden_size], [batch, hidden_size])``.

    >>> import jax, jax.numpy as jnp
    >>> from tlean import models, nn
    >>> tiny = models.bert(vocab_size=30, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
    ...                    intermediate_size=16, max_position_embeddings=16)
    >>> model = jax.eval_shape(lambda: nn.run(0, tiny))  # shapes only; nn.run(0, tiny) makes the arrays
    >>> ids, mask = jnp.zeros((2, 5), jnp.int32), jnp.ones((2, 5), jnp.int32)
    >>> hidden, pooled = jax.eval_shape(lambda m: m(ids, mask), model)  # model(ids, mask) on real arrays
    >>> hidden.shape, pooled.shape
    ((2, 5, 8), (2, 8))
    """

    scan: bool = _util.flag(True, kw_only=True)
    embeddings: BertEmbeddings = sublayer()
    encoder: BertEncoder = sublayer()
    pooler: BertPooler | None = sublayer(default=None)

    inputs = ("attention_mask", "token_type_ids", "position_ids")

    def __post_init__(self):
        if not isinstance(self.config, BertConfig):
            raise TypeError(f"BertModel: config must be a BertConfig, got {type(self.config).__name__}")
        cfg, numerics = self.config, self.numerics
        self.set(
            embeddings=BertEmbeddings(cfg, **numerics),
            encoder=BertEncoder(cfg, scan=self.scan, **numerics),
            pooler=BertPooler(cfg, **numerics) if cfg.add_pooling_layer else None,
        )

    def init(self, key: jax.Array | None) -> tuple[dict, dict]:
        return super().init(key) if key is None else jitted_init(self, key)

    @property
    def init_overrides(self) -> dict[str, Callable]:
        cfg = self.config
        word = normal_init(cfg.initializer_range)
        if cfg.pad_token_id is not None:
            word = _zero_row(word, cfg.pad_token_id)
        return hf_init_overrides(cfg.initializer_range, {r"embeddings\.word_embeddings\.weight": word})

    def apply(
        self,
        params,
        state,
        input_ids: Integer[Array, "batch seq"],
        *,
        key=None,
        train=False,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
    ):
        self._check(input_ids, token_type_ids, position_ids)
        c = self.bind(params, state, key=key, train=train)
        h = c.embeddings(input_ids, token_type_ids=token_type_ids, position_ids=position_ids)
        h = c.encoder(h, attention_mask=attention_mask)
        return (h, None if self.pooler is None else c.pooler(h)), c.state

    def _check(self, ids: Any, token_type_ids: Any, position_ids: Any) -> None:
        for name, value in (("input_ids", ids), ("token_type_ids", token_type_ids), ("position_ids", position_ids)):
            dtype = getattr(value, "dtype", None)
            if value is not None and (dtype is None or not jnp.issubdtype(dtype, jnp.integer)):
                raise TypeError(f"{self!r}: {name} must be integers, got {dtype or type(value).__name__}")
        longest = self.config.max_position_embeddings
        if jnp.ndim(ids) != 2 or jnp.shape(ids)[1] > longest:
            raise ShapeError(
                self, f"input_ids [batch, seq] with seq <= max_position_embeddings={longest}", jnp.shape(ids)
            )
        batch, length = jnp.shape(ids)
        if token_type_ids is not None and jnp.shape(token_type_ids) != (batch, length):
            raise ShapeError(self, f"token_type_ids [batch, seq] = {(batch, length)}", jnp.shape(token_type_ids))
        if position_ids is not None and jnp.shape(position_ids) not in ((batch, length), (1, length)):
            raise ShapeError(self, f"position_ids [batch or 1, seq] = {(batch, length)}", jnp.shape(position_ids))


def _zero_row(init: Callable, row: int) -> Callable:
    def zeroed(key, shape, dtype):
        return init(key, shape, dtype).at[row].set(0)

    return zeroed


def bert(config: BertConfig | None = None, **fields: Any) -> Builder[Model]:
    """The seeded builder of a :class:`BertModel` Model (draws one key).

    Args:
      config: a :class:`BertConfig` (``None``: transformers' defaults, BERT-base).
      fields: :class:`BertConfig` fields overriding ``config``'s, and the layer options
        ``scan``, ``dtype``, ``param_dtype``, ``precision``.

    >>> import jax
    >>> from tlean import models, nn
    >>> model = jax.eval_shape(lambda: nn.run(0, models.bert(vocab_size=30, hidden_size=8, num_hidden_layers=1,
    ...                                                      num_attention_heads=2, intermediate_size=16)))
    >>> model.named_parameters()["encoder.layer.*.attention.self.query.weight"].shape
    (1, 8, 8)
    """
    config, options = builder_args(BertConfig, config, fields, "bert")
    return build(BertModel(config, **options))


#: How :func:`tlean.models.from_pretrained` reads and writes BERT: a ``BertModel`` with no
#: prefix; checkpoints of ``BertFor*`` heads have the base under ``bert.`` and their heads
#: (``cls.``, ``classifier.``, ``qa_outputs.``) are left out, as are the non-persistent
#: ``position_ids`` / ``token_type_ids`` buffers older checkpoints hold.
FAMILY = Family(
    model_type="bert",
    config=BertConfig,
    layer=BertModel,
    architecture="BertModel",
    base_prefix="bert.",
    ignore=(r"^(bert\.)?embeddings\.(position_ids|token_type_ids)$", r"^cls\.", r"^classifier\.", r"^qa_outputs\."),
)
