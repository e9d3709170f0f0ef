"""The Vision Transformer (Dosovitskiy et al. 2021) as a ``ViTForImageClassification`` checkpoint lays it out.

The module tree mirrors the Hugging Face hub's ViT checkpoints
(``vit.embeddings.patch_embeddings.projection.weight``,
``vit.encoder.layer.0.attention.attention.query.weight``, ``vit.layernorm.weight``,
``classifier.weight``), which transformers' ``save_pretrained`` writes and its
``from_pretrained`` reads. (transformers 5 renames the modules in memory,
``vit.layers.0.attention.q_proj``, and converts on load and save; a directory is the
stable layout.) Self-attention and the intermediate block are BERT's
(:mod:`tlean.models._bert`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from tlean._core import ShapeError, init_children, sublayer
from tlean._model import Model
from tlean.layers import _util
from tlean.layers._conv import Conv2d
from tlean.layers._dropout import Dropout
from tlean.layers._linear import Linear
from tlean.layers._norm import LayerNorm
from tlean.models._bert import (
    BertEncoder,
    BertIntermediate,
    BertSelfAttention,
    Part,
    check_activation,
    check_config,
    config_from_hf,
    config_repr,
    hf_init_overrides,
)
from tlean.models._hf import builder_args, jitted_init
from tlean.models._hub import Family
from tlean.nn._build import build
from tlean.seed import Builder, SeedStream

__all__ = ["ViTConfig", "ViTForImageClassification", "vit"]


def _check_side(config_name: str, name: str, value: Any) -> int | tuple[int, int]:
    """An int or a pair of ints >= 1 (transformers accepts both); a square pair becomes an int."""
    items = (value, value) if _util.is_int(value) else tuple(value) if isinstance(value, (tuple, list)) else ()
    if len(items) != 2 or not all(_util.is_int(v) and v >= 1 for v in items):
        raise ValueError(f"{config_name}: {name} must be a positive int or a pair of them, got {value!r}")
    return int(items[0]) if items[0] == items[1] else (int(items[0]), int(items[1]))


def _check_labels(config_name: str, name: str, value: Any) -> int:
    if not _util.is_int(value) or value < 0:
        raise ValueError(f"{config_name}: {name} must be an int >= 0 (0: no classifier), got {value!r}")
    return int(value)


def pair(side: int | tuple[int, int]) -> tuple[int, int]:
    return (side, side) if isinstance(side, int) else side


@dataclass(frozen=True, repr=False)
class ViTConfig:
    """The fields of transformers' ``ViTConfig`` that image classification needs, with its defaults.

    ``image_size`` and ``patch_size`` are an int or a ``(height, width)`` pair;
    ``num_labels`` is the classifier's width (transformers derives it from ``id2label``;
    0 leaves the classifier out, transformers' ``nn.Identity``). Another ``hidden_act``
    is a ``ValueError`` naming the field.

    >>> ViTConfig.from_hf({"model_type": "vit", "image_size": 32, "id2label": {"0": "cat", "1": "dog", "2": "eel"}})
    ViTConfig(image_size=32, num_labels=3)
    """

    hidden_size: int = _util.size(768)
    num_hidden_layers: int = _util.size(12)
    num_attention_heads: int = _util.size(12)
    intermediate_size: int = _util.size(3072)
    hidden_act: str = _util.checked(check_activation, "gelu")
    hidden_dropout_prob: float = _util.probability(0.0)
    attention_probs_dropout_prob: float = _util.probability(0.0)
    initializer_range: float = _util.nonnegative(0.02)
    layer_norm_eps: float = _util.nonnegative(1e-12)
    image_size: int | tuple[int, int] = _util.checked(_check_side, 224)
    patch_size: int | tuple[int, int] = _util.checked(_check_side, 16)
    num_channels: int = _util.size(3)
    qkv_bias: bool = _util.flag(True)
    num_labels: int = _util.checked(_check_labels, 2)

    def __post_init__(self):
        check_config(self)
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"ViTConfig: hidden_size={self.hidden_size} must be a multiple of "
                f"num_attention_heads={self.num_attention_heads}"
            )
        if any(i < p for i, p in zip(pair(self.image_size), pair(self.patch_size))):
            raise ValueError(f"ViTConfig: patch_size={self.patch_size} is larger than image_size={self.image_size}")

    def __repr__(self) -> str:
        return config_repr(self)

    @property
    def num_patches(self) -> int:
        (h, w), (ph, pw) = pair(self.image_size), pair(self.patch_size)
        return (h // ph) * (w // pw)

    @classmethod
    def from_hf(cls, hf: dict) -> ViTConfig:
        """The config of a transformers ``config.json`` dict (``model_type`` ``"vit"``)."""
        if "num_labels" not in hf and hf.get("id2label"):
            hf = {**hf, "num_labels": len(hf["id2label"])}
        return config_from_hf(cls, hf, "vit", {})

    def to_hf(self) -> dict:
        """The ``config.json`` dict transformers' ``ViTConfig`` reads (labels named ``LABEL_i``)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "num_labels"}
        labels = {i: f"LABEL_{i}" for i in range(self.num_labels)}
        return {
            "model_type": "vit",
            **fields,
            "id2label": {str(i): n for i, n in labels.items()},
            "label2id": {n: i for i, n in labels.items()},
        }


@dataclass(frozen=True)
class ViTPatchEmbeddings(Part):
    """``[N, C, H, W] -> [N, num_patches, hidden]``: a Conv2d with kernel and stride ``patch_size``
    (``projection``), the patches flattened row by row (``ViTPatchEmbeddings``)."""

    projection: Conv2d = sublayer()

    def __post_init__(self):
        c = self.config
        self.set(projection=Conv2d(c.num_channels, c.hidden_size, c.patch_size, c.patch_size, **self.numerics))

    def apply(self, params, state, x, *, key=None, train=False):
        c = self.bind(params, state, key=key, train=train)
        y = c.projection(x)
        return y.reshape(y.shape[0], y.shape[1], -1).transpose(0, 2, 1), c.state


@dataclass(frozen=True)
class ViTEmbeddings(Part):
    """``dropout(concat(cls_token, patches) + position_embeddings)`` (``ViTEmbeddings``).

    Params of its own: ``cls_token [1, 1, hidden]`` and ``position_embeddings
    [1, num_patches + 1, hidden]``, from transformers' ``trunc_normal_(0, initializer_range)``
    (cut at +-2), drawn after ``patch_embeddings``' key.
    """

    patch_embeddings: ViTPatchEmbeddings = sublayer()
    dropout: Dropout = sublayer()

    def __post_init__(self):
        self.set(
            patch_embeddings=ViTPatchEmbeddings(self.config, **self.numerics),
            dropout=Dropout(self.config.hidden_dropout_prob),
        )

    def init(self, key: jax.Array) -> tuple[dict, dict]:
        (params, state), rest = init_children(self, SeedStream(key))
        stream = cast(SeedStream, rest)  # not None: a key was given
        std, hidden, patches = self.config.initializer_range, self.config.hidden_size, self.config.num_patches
        for name, shape in (("cls_token", (1, 1, hidden)), ("position_embeddings", (1, patches + 1, hidden))):
            k, stream = stream.fresh()
            params[name] = trunc_normal(std)(k, shape, self.param_dtype)
        return params, state

    def apply(self, params, state, x, *, key=None, train=False):
        c = self.bind(params, state, key=key, train=train)
        patches = c.patch_embeddings(x)
        cls, pos = _util.promote(self, params["cls_token"], params["position_embeddings"])
        cls = jnp.broadcast_to(cls.astype(patches.dtype), (patches.shape[0], 1, patches.shape[2]))
        h = jnp.concatenate([cls, patches], axis=1) + pos.astype(patches.dtype)
        return c.dropout(h), c.state


def trunc_normal(std: float) -> Callable:
    """``init(key, shape, dtype)``: N(0, std) cut at +-2 (absolute, torch's ``trunc_normal_`` defaults)."""

    def init(key, shape, dtype):
        bound = 2.0 / std if std > 0 else 1.0
        return (jnp.float32(std) * jax.random.truncated_normal(key, -bound, bound, shape, jnp.float32)).astype(dtype)

    return init


@dataclass(frozen=True)
class ViTSelfOutput(Part):
    """``dropout(dense(x))``, hidden -> hidden, or ``intermediate_size`` -> hidden plus the keyword
    ``residual`` (``ViTSelfOutput`` / ``ViTOutput``); pre-norm, so no LayerNorm here."""

    in_features: int | None = None
    dense: Linear = sublayer()
    dropout: Dropout = sublayer()

    def __post_init__(self):
        h = self.config.hidden_size
        self.set(dense=self.linear(self.in_features or h, h), dropout=Dropout(self.config.hidden_dropout_prob))

    def apply(self, params, state, x, *, key=None, train=False, residual=None):
        c = self.bind(params, state, key=key, train=train)
        y = c.dropout(c.dense(x))
        return (y if residual is None else y + residual), c.state


@dataclass(frozen=True)
class ViTAttention(Part):
    """``output(attention(x))``: BERT's self-attention (``attention``) and ``output.dense`` (``ViTAttention``)."""

    attention: BertSelfAttention = sublayer()
    output: ViTSelfOutput = sublayer()

    def __post_init__(self):
        self.set(
            attention=BertSelfAttention(self.config, **self.numerics),
            output=ViTSelfOutput(self.config, **self.numerics),
        )

    def apply(self, params, state, x, *, key=None, train=False):
        c = self.bind(params, state, key=key, train=train)
        return c.output(c.attention(x)), c.state


@dataclass(frozen=True)
class ViTLayer(Part):
    """One pre-norm encoder layer (``ViTLayer``):
    ``h = x + attention(layernorm_before(x))``, ``y = h + output(intermediate(layernorm_after(h)))``."""

    attention: ViTAttention = sublayer()
    intermediate: BertIntermediate = sublayer()
    output: ViTSelfOutput = sublayer()
    layernorm_before: LayerNorm = sublayer()
    layernorm_after: LayerNorm = sublayer()

    def __post_init__(self):
        cfg, numerics = self.config, self.numerics
        self.set(
            attention=ViTAttention(cfg, **numerics),
            intermediate=BertIntermediate(cfg, **numerics),
            output=ViTSelfOutput(cfg, cfg.intermediate_size, **numerics),
            layernorm_before=self.layer_norm(),
            layernorm_after=self.layer_norm(),
        )

    def apply(self, params, state, x, *, key=None, train=False):
        c = self.bind(params, state, key=key, train=train)
        h = c.attention(c.layernorm_before(x)) + x
        return c.output(c.intermediate(c.layernorm_after(h)), residual=h), c.state


@dataclass(frozen=True)
class ViTEncoder(BertEncoder):
    """``num_hidden_layers`` :class:`ViTLayer` s, stacked as ``layer`` (``vit.encoder.layer.{i}``) and scanned."""

    @property
    def layer_type(self) -> type:
        return ViTLayer

    def apply(self, params, state, x, *, key=None, train=False):
        c = self.bind(params, state, key=key, train=train)
        return c.layer(x), c.state


@dataclass(frozen=True)
class ViTModel(Part):
    """``layernorm(encoder(embeddings(pixels)))``: ViT without pooler (``ViTModel(add_pooling_layer=False)``)."""

    scan: bool = _util.flag(True, kw_only=True)
    embeddings: ViTEmbeddings = sublayer()
    encoder: ViTEncoder = sublayer()
    layernorm: LayerNorm = sublayer()

    def __post_init__(self):
        self.set(
            embeddings=ViTEmbeddings(self.config, **self.numerics),
            encoder=ViTEncoder(self.config, scan=self.scan, **self.numerics),
            layernorm=self.layer_norm(),
        )

    def apply(self, params, state, x, *, key=None, train=False):
        c = self.bind(params, state, key=key, train=train)
        return c.layernorm(c.encoder(c.embeddings(x))), c.state


@dataclass(frozen=True)
class ViTForImageClassification(Part):
    """The Vision Transformer with a linear classifier on the class token.

    ``logits = classifier(vit(pixels)[:, 0])`` where ``vit`` embeds ``patch_size``
    patches by a convolution, prepends the class token, adds learned position embeddings,
    and runs ``num_hidden_layers`` pre-norm Transformer layers (stacked as
    ``vit.encoder.layer.*`` and scanned) and a final LayerNorm. A composite whose names
    are those of a hub checkpoint (``vit.embeddings.cls_token``,
    ``vit.embeddings.position_embeddings``, ``vit.embeddings.patch_embeddings.projection.weight``,
    ``vit.encoder.layer.0.attention.attention.query.weight``,
    ``vit.encoder.layer.0.attention.output.dense.weight``,
    ``vit.encoder.layer.0.layernorm_before.weight``, ``vit.layernorm.weight``, ``classifier.weight``),
    so a ``model.safetensors`` written by transformers loads with
    :func:`tlean.interop.load_torch_state_dict`.

    Initialisation follows transformers' ``_init_weights``: Linear and Conv2d weights from
    N(0, ``initializer_range``), biases zero, LayerNorm weights one, ``cls_token`` and
    ``position_embeddings`` from the truncated normal.

    PyTorch analogue: ``transformers.ViTForImageClassification(config)``. What differs: no
    ``interpolate_pos_encoding`` (the image must be ``image_size``), no ``labels``/loss, no
    attention mask; the output is the logits array.

    Args:
      config: a :class:`ViTConfig`.
      scan: apply the layers with ``lax.scan`` (keyword-only).
      dtype, param_dtype, precision: as for :class:`~tlean.layers.Linear` (keyword-only).

    Shapes:
      ``pixel_values [batch, num_channels, *image_size]`` (NCHW, floating) ->
      ``logits [batch, num_labels]`` (``[batch, hidden_size]`` when ``num_labels`` is 0).

    >>> import jax, jax.numpy as jnp
    >>> from tlean import models, nn
    >>> tiny = models.vit(hidden_size=8, num_hidden_layers=2, num_attention_heads=2, intermediate_size=16,
    ...                   image_size=8, patch_size=4, num_labels=5)
    >>> model = jax.eval_shape(lambda: nn.run(0, tiny))  # shapes only; nn.run(0, tiny) makes the arrays
    >>> jax.eval_shape(lambda m: m(jnp.zeros((2, 3, 8, 8))), model).shape  # model(pixels) on real arrays
    (2, 5)
    """

    scan: bool = _util.flag(True, kw_only=True)
    vit: ViTModel = sublayer()
    classifier: Linear | None = sublayer(default=None)

    def __post_init__(self):
        if not isinstance(self.config, ViTConfig):
            raise TypeError(f"ViTForImageClassification: config must be a ViTConfig, got {type(self.config).__name__}")
        labels = self.config.num_labels
        self.set(
            vit=ViTModel(self.config, scan=self.scan, **self.numerics),
            classifier=self.linear(self.config.hidden_size, labels) if labels else None,
        )

    def init(self, key: jax.Array | None) -> tuple[dict, dict]:
        return super().init(key) if key is None else jitted_init(self, key)

    @property
    def init_overrides(self) -> dict[str, Callable]:
        return hf_init_overrides(self.config.initializer_range)

    def apply(self, params, state, pixel_values: Float[Array, "batch channels height width"], *, key=None, train=False):
        _util.check_float(self, pixel_values)
        cfg = self.config
        want = (cfg.num_channels, *pair(cfg.image_size))
        if jnp.ndim(pixel_values) != 4 or tuple(jnp.shape(pixel_values)[1:]) != want:
            raise ShapeError(
                self,
                f"pixel_values [batch, {', '.join(map(str, want))}] (NCHW, image_size={cfg.image_size})",
                jnp.shape(pixel_values),
            )
        c = self.bind(params, state, key=key, train=train)
        first = c.vit(pixel_values)[:, 0]
        return (first if self.classifier is None else c.classifier(first)), c.state


def vit(config: ViTConfig | None = None, **fields: Any) -> Builder[Model]:
    """The seeded builder of a :class:`ViTForImageClassification` Model (draws one key).

    Args:
      config: a :class:`ViTConfig` (``None``: transformers' defaults, ViT-Base/16 at 224 pixels).
      fields: :class:`ViTConfig` fields overriding ``config``'s, and the layer options
        ``scan``, ``dtype``, ``param_dtype``, ``precision``.

    >>> import jax
    >>> from tlean import models, nn
    >>> model = jax.eval_shape(lambda: nn.run(0, models.vit(hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
    ...                                                     intermediate_size=16, image_size=8, patch_size=4)))
    >>> model.named_parameters()["vit.embeddings.position_embeddings"].shape
    (1, 5, 8)
    """
    config, options = builder_args(ViTConfig, config, fields, "vit")
    return build(ViTForImageClassification(config, **options))


#: How :func:`tlean.models.from_pretrained` reads and writes ViT: ``ViTForImageClassification``,
#: the base model under ``vit.``.
FAMILY = Family(
    model_type="vit",
    config=ViTConfig,
    layer=ViTForImageClassification,
    architecture="ViTForImageClassification",
    base_prefix="vit.",
)
