"""How a layer becomes an ``nn`` builder and an ``nn.pure`` constructor."""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable

from tlean._core import Layer
from tlean._model import Model
from tlean.seed import Builder


def build(layer: Layer) -> Builder[Model]:
    """The Builder of a Model of ``layer``: draws one key if it has arrays, none otherwise."""
    if not isinstance(layer, Layer):
        raise TypeError(f"build takes a tlean Layer, got {type(layer).__name__}")

    def step(stream):
        (params, state), stream = layer._init_stream(stream)
        return Model(layer, params, state), stream

    return Builder(step, repr(layer))


def builder_of(layer_type: Callable[..., Layer], name: str | None = None) -> Callable[..., Builder[Model]]:
    """``nn.X``: a function with ``layer_type``'s signature that returns the layer's Builder."""

    @functools.wraps(layer_type)
    def make(*args: Any, **kwargs: Any) -> Builder[Model]:
        return build(layer_type(*args, **kwargs))

    make.__name__ = make.__qualname__ = name or layer_type.__name__
    make.__signature__ = inspect.signature(layer_type).replace(return_annotation=Builder)
    make.__doc__ = (
        f"Builder of a Model of :class:`tlean.layers.{layer_type.__name__}`; draws one key "
        f"from the seed stream if the layer has parameters, none otherwise.\n\n{inspect.getdoc(layer_type) or ''}"
    )
    return make


def pure_of(layer_type: Callable[..., Layer], name: str) -> Callable[..., Model]:
    """``nn.pure.x``: build a Model of ``layer_type(...)`` from an explicit ``key=``."""

    @functools.wraps(layer_type)
    def make(*args: Any, key: Any = None, **kwargs: Any) -> Model:
        layer = layer_type(*args, **kwargs)
        if layer.has_params:
            if key is None:
                raise TypeError(f"nn.pure.{name}: {layer!r} has parameters and needs key=jax.random.key(...)")
            params, state = layer.init(key)
        else:
            params, state = layer.init(None)
        return Model(layer, params, state)

    sig = inspect.signature(layer_type)
    key_param = inspect.Parameter("key", inspect.Parameter.KEYWORD_ONLY, default=None)
    make.__name__ = make.__qualname__ = name
    params = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    var_kw = [p for p in sig.parameters.values() if p.kind is inspect.Parameter.VAR_KEYWORD]
    make.__signature__ = sig.replace(parameters=[*params, key_param, *var_kw], return_annotation=Model)
    make.__doc__ = (
        f"A Model of :class:`tlean.layers.{layer_type.__name__}` initialised from ``key`` "
        f"(needed when the layer has parameters).\n\n{inspect.getdoc(layer_type) or ''}"
    )
    return make
