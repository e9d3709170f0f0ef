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

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer

__all__ = ["Builder", "SeedStream", "as_key", "fresh", "lift", "run", "split"]

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
    if dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key):
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


def split(key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``tuple(jax.random.split(key))``, computed with NumPy when ``key`` is a concrete threefry key.

    Eagerly, ``jax.random.split`` compiles a threefry program (a tenth of a second, the
    largest fixed cost of building a small model) and dispatches it for each key drawn.
    With JAX's partitionable threefry (the default) the two new keys are threefry2x32 of
    the key on the counters ``(0, 0)`` and ``(0, 1)``, four 32-bit words that
    :func:`_threefry2x32` computes here bit for bit (tests/test_init_speed.py checks it
    against ``jax.random.split``). Traced keys and other PRNGs take ``jax.random.split``.
    """
    if not _concrete_threefry(key):
        first, second = jax.random.split(key)
        return first, second
    k1, k2 = np.asarray(jax.random.key_data(key), np.uint32)
    bits1, bits2 = _threefry2x32(k1, k2, np.zeros(2, np.uint32), np.arange(2, dtype=np.uint32))
    pair = np.stack([bits1, bits2], axis=1)
    return jax.random.wrap_key_data(pair[0]), jax.random.wrap_key_data(pair[1])


def tracing() -> bool:
    """Whether JAX is tracing (jit, vmap, grad, scan, eval_shape ...): then even a concrete array
    closed over by the traced function becomes a tracer when an operation touches it."""
    try:
        from jax._src import core  # no public API says this; fall back below if it moves

        return not core.trace_state_clean()
    except (ImportError, AttributeError):
        return isinstance(jnp.zeros(()), Tracer)  # catches jit/eval_shape/scan, not vmap/grad


def _concrete_threefry(key: Any) -> bool:
    """A concrete single typed key of the default threefry2x32, partitionable threefry on, nothing tracing."""
    return (
        isinstance(key, jax.Array)
        and not isinstance(key, Tracer)
        and key.shape == ()
        and not tracing()
        and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
        and str(jax.random.key_impl(key)) == "threefry2x32"
        and jax.config.values["jax_threefry_partitionable"]
    )


_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))


def _threefry2x32(k1: np.uint32, k2: np.uint32, x1: np.ndarray, x2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The Threefry-2x32 hash (20 rounds) in NumPy uint32 arithmetic, as jax.random's threefry2x32_p."""
    ks = (np.uint32(k1), np.uint32(k2), np.uint32(k1) ^ np.uint32(k2) ^ np.uint32(0x1BD11BDA))
    with np.errstate(over="ignore"):
        x = [x1 + ks[0], x2 + ks[1]]
        for i in range(5):
            for r in _ROTATIONS[i % 2]:
                x[0] = x[0] + x[1]
                x[1] = ((x[1] << np.uint32(r)) | (x[1] >> np.uint32(32 - r))) ^ x[0]
            x = [x[0] + ks[(i + 1) % 3], x[1] + ks[(i + 2) % 3] + np.uint32(i + 1)]
    return x[0], x[1]


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

    def fresh(self) -> tuple[jax.Array, SeedStream]:
        """Draw one key: ``key, sub = jax.random.split(key)``; return ``(sub, SeedStream(key))``."""
        key, sub = split(self.key)
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

    def map(self, f: Callable[[T], U]) -> Builder[U]:
        """A builder of ``f(value)``; draws what this builder draws, nothing more."""

        def step(stream):
            value, stream = self.fn(stream)
            return f(value), stream

        return Builder(step)

    def bind(self, f: Callable[[T], Builder[U]]) -> Builder[U]:
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
