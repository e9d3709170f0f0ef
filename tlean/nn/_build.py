"""How a layer becomes an ``nn`` builder and an ``nn.pure`` constructor."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import jax

from tlean._core import Layer
from tlean._model import PURE_NAMES, Model
from tlean.seed import Builder, SeedStream


def build(layer: Layer) -> Builder[Model]:
    """The Builder of a Model of ``layer``: draws one key if it has arrays, none otherwise."""
    if not isinstance(layer, Layer):
        raise TypeError(f"build takes a tlean Layer, got {type(layer).__name__}")

    def step(stream):
        (params, state), stream = layer._init_stream(stream)
        return Model(layer, params, state), stream

    return Builder(step, repr(layer))


def layer_of(value: Any, where: str) -> Any:
    """A layer argument given as a Builder (``nn.TransformerEncoder(nn.TransformerEncoderLayer(...), 6)``)
    becomes the Builder's layer, read with ``jax.eval_shape`` (nothing is initialised); other values pass.

    A Model, or a Builder that holds a fixed Model (it draws no key), has arrays of its own
    that a layer argument would drop: ``TypeError``.
    """
    if isinstance(value, Model):
        raise TypeError(
            f"{where}: got a Model ({value!r}), whose arrays would be dropped: pass the layer "
            f"(model.layer) or its builder"
        )
    if not isinstance(value, Builder):
        return value

    drew = []

    def draws(key):
        stream = SeedStream(key)
        model, after = value.fn(stream)
        drew.append(after is not stream)
        return model

    model = jax.eval_shape(draws, jax.random.key(0))
    drew = drew[0]
    if not isinstance(model, Model):
        raise TypeError(f"{where}: the builder {value!r} does not build a Model")
    if model.layer.has_params and not drew:
        raise TypeError(
            f"{where}: the builder {value!r} holds a fixed Model (it draws no key), whose arrays would "
            f"be dropped: pass a builder that initialises the layer, or the layer itself"
        )
    return model.layer


def _layers_of(where: str, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    return (tuple(layer_of(a, where) for a in args), {k: layer_of(v, where) for k, v in kwargs.items()})


def _check_required(
    where: str,
    layer_type: Callable[..., Layer],
    require: tuple,
    args: tuple,
    kwargs: dict,
    torch_name: str | None = None,
) -> None:
    """A ``TypeError`` naming both defaults when a keyword whose tlean default differs from torch's is not given.

    ``require`` holds ``(name, torch_default)`` pairs; a value passed positionally counts as given.
    """
    if not require:
        return
    signature = inspect.signature(layer_type)
    given = signature.bind_partial(*args, **kwargs).arguments
    for name, torch_default in require:
        if name not in given:
            ours = signature.parameters[name].default
            raise TypeError(
                f"{where}: pass {name}= explicitly: torch.nn.{torch_name or layer_type.__name__}'s default is "
                f"{name}={torch_default!r}, "
                f"tlean.layers.{layer_type.__name__}'s is {name}={ours!r}"
            )


def builder_of(
    layer_type: Callable[..., Layer], name: str | None = None, require: tuple = ()
) -> Callable[..., Builder[Model]]:
    """``nn.X``: a function with ``layer_type``'s signature that returns the layer's Builder.

    ``require`` lists ``(keyword, torch_default)`` pairs for keywords whose tlean default
    differs from torch's (DESIGN 2.1): ``nn.X`` refuses a call that leaves them out.
    """

    @functools.wraps(layer_type)
    def make(*args: Any, **kwargs: Any) -> Builder[Model]:
        _check_required(f"nn.{make.__name__}", layer_type, require, args, kwargs, make.__name__)
        args, kwargs = _layers_of(f"nn.{make.__name__}", args, kwargs)
        return build(layer_type(*args, **kwargs))

    make.__name__ = make.__qualname__ = name or layer_type.__name__
    make.__signature__ = inspect.signature(layer_type).replace(return_annotation=Builder)  # pyright: ignore[reportAttributeAccessIssue]
    make.__doc__ = (
        f"Builder of a Model of :class:`tlean.layers.{layer_type.__name__}`; draws one key "
        f"from the seed stream if the layer has parameters, none otherwise.\n\n{inspect.getdoc(layer_type) or ''}"
    )
    return make


def pure_of(layer_type: Callable[..., Layer], name: str, require: tuple = ()) -> Callable[..., Model]:
    """``nn.pure.x``: build a Model of ``layer_type(...)`` from an explicit ``key=`` (``require`` as in :func:`builder_of`)."""

    @functools.wraps(layer_type)
    def make(*args: Any, key: Any = None, **kwargs: Any) -> Model:
        _check_required(f"nn.pure.{name}", layer_type, require, args, kwargs)
        args, kwargs = _layers_of(f"nn.pure.{name}", args, kwargs)
        layer = layer_type(*args, **kwargs)
        if layer.has_params:
            if key is None:
                raise TypeError(f"nn.pure.{name}: {layer!r} has parameters and needs key=jax.random.key(...)")
            params, state = layer.init(key)
        else:
            params, state = layer.init(None)
        return Model(layer, params, state)

    PURE_NAMES.setdefault(layer_type, name)
    sig = inspect.signature(layer_type)
    key_param = inspect.Parameter("key", inspect.Parameter.KEYWORD_ONLY, default=None)
    make.__name__ = make.__qualname__ = name
    params = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    var_kw = [p for p in sig.parameters.values() if p.kind is inspect.Parameter.VAR_KEYWORD]
    make.__signature__ = sig.replace(parameters=[*params, key_param, *var_kw], return_annotation=Model)  # pyright: ignore[reportAttributeAccessIssue]
    make.__doc__ = (
        f"A Model of :class:`tlean.layers.{layer_type.__name__}` initialised from ``key`` "
        f"(needed when the layer has parameters).\n\n{inspect.getdoc(layer_type) or ''}"
    )
    return make
