"""The seed monad: TorchLean's ``nn.M`` over a JAX key.

A :class:`SeedStream` is a key; drawing a seed is exactly one ``jax.random.split``.
A :class:`Builder` is a function ``SeedStream -> (value, SeedStream)``: a recipe that
draws the keys it needs, in order, and returns what it built. :func:`run` starts a
builder from a seed and drops the final stream.

Everything here is a pure function of the seed, so ``run`` works eagerly, under
``jax.jit`` (the seed may be a tracer) and under ``jax.eval_shape``.

>>> import jax
>>> from tlean.seed import SeedStream
>>> k1, stream = SeedStream(0).fresh()
>>> key, sub = jax.random.split(jax.random.key(0))
>>> bool((jax.random.key_data(k1) == jax.random.key_data(sub)).all())
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Generic, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Builder", "SeedStream", "as_key", "fresh", "lift", "run"]

T = TypeVar("T")
U = TypeVar("U")


def as_key(seed: Any) -> jax.Array:
    """A typed JAX key from a seed.

    Args:
      seed: a Python int (``jax.random.key(seed)``), a typed key (returned as is), a
        legacy ``uint32[2]`` key (wrapped with ``jax.random.wrap_key_data``), or a
        traced value of those inside ``jax.jit``.

    Raises:
      TypeError: for anything else (floats, strings, arrays of the wrong shape).
    """
    if isinstance(seed, bool):
        raise TypeError(f"a seed must be an int or a jax.random key, got bool {seed!r}")
    if isinstance(seed, (int, np.integer)):
        if not -(2**63) <= int(seed) < 2**64:
            raise ValueError(f"an integer seed must fit in 64 bits, got {seed}")
        return jax.random.key(int(seed))
    dtype = getattr(seed, "dtype", None)
    shape = getattr(seed, "shape", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        if shape != ():
            raise TypeError(f"a seed key must be a single key (shape ()), got shape {shape}")
        return seed
    if dtype is not None and jnp.issubdtype(dtype, jnp.integer):
        if shape == ():
            return jax.random.key(seed)
        if shape == (2,) and dtype == jnp.uint32:
            return jax.random.wrap_key_data(seed)
    raise TypeError(
        "a seed must be a Python int, an integer scalar, a jax.random.key or a legacy "
        f"uint32[2] key; got {type(seed).__name__} with dtype {dtype} and shape {shape}"
    )


@jax.tree_util.register_pytree_node_class
class SeedStream:
    """A stream of keys: ``fresh()`` draws one, by exactly one ``jax.random.split``.

    ``SeedStream(seed)`` starts from :func:`as_key` ``(seed)``. The stream is a pytree
    (its key is the only leaf), so it passes through ``jax.jit``.

    Args:
      seed: an int, a typed key, a legacy ``uint32[2]`` key, or a tracer of those.
    """

    __slots__ = ("key",)

    def __init__(self, seed: Any):
        object.__setattr__(self, "key", as_key(seed))

    def __setattr__(self, name, value):
        raise AttributeError("SeedStream is immutable: fresh() returns the next stream")

    def fresh(self) -> tuple[jax.Array, "SeedStream"]:
        """Draw one key: ``key, sub = jax.random.split(key)``; return ``(sub, SeedStream(key))``."""
        key, sub = jax.random.split(self.key)
        return sub, SeedStream(key)

    def tree_flatten(self):
        return (self.key,), None

    @classmethod
    def tree_unflatten(cls, aux, children):
        stream = object.__new__(cls)
        object.__setattr__(stream, "key", children[0])
        return stream

    def __repr__(self) -> str:
        return f"SeedStream({self.key})"


@dataclass(frozen=True)
class Builder(Generic[T]):
    """TorchLean's ``nn.M``: a recipe ``fn(stream) -> (value, stream)``.

    Build the value with :func:`run`. ``map`` transforms the value without drawing
    seeds; ``bind`` feeds the value to a function returning the next builder, threading
    the stream through both.
    """

    fn: Callable[[SeedStream], tuple[T, SeedStream]]
    label: str = field(default="", compare=False)

    def __repr__(self) -> str:
        return f"Builder({self.label or getattr(self.fn, '__qualname__', self.fn)})"

    def map(self, f: Callable[[T], U]) -> "Builder[U]":
        """A builder of ``f(value)``; draws what this builder draws, nothing more."""

        def step(stream):
            value, stream = self.fn(stream)
            return f(value), stream

        return Builder(step)

    def bind(self, f: Callable[[T], "Builder[U]"]) -> "Builder[U]":
        """Run this builder, then ``f(value)`` on the stream it leaves."""

        def step(stream):
            value, stream = self.fn(stream)
            return _as_builder(f(value), "bind's function").fn(stream)

        return Builder(step)

    def __call__(self, *args, **kwargs):
        raise TypeError(
            "a Builder is a recipe for a model, not a model: build it first with "
            "tlean.nn.run(seed, builder) (or nn.run_global(builder)), then call the result"
        )


def _as_builder(value: Any, what: str) -> Builder:
    if not isinstance(value, Builder):
        raise TypeError(f"{what} must return a Builder, got {type(value).__name__}; wrap values with lift(value)")
    return value


def run(seed: Any, builder: Builder[T]) -> T:
    """Run ``builder`` from ``SeedStream(seed)`` and return its value (the final stream is dropped)."""
    value, _ = _as_builder(builder, "run's second argument").fn(SeedStream(seed))
    return value


def lift(value: T) -> Builder[T]:
    """A builder that returns ``value`` and draws no seed (TorchLean's ``pure``)."""
    return Builder(lambda stream: (value, stream))


def fresh(k: Callable[[jax.Array], Builder[T]] | None = None) -> Builder:
    """Draw one key and continue with ``k(key)``, which returns a Builder.

    With ``k=None`` the builder's value is the key itself.
    """

    def step(stream):
        key, stream = stream.fresh()
        if k is None:
            return key, stream
        return _as_builder(k(key), "fresh's continuation").fn(stream)

    return Builder(step)
