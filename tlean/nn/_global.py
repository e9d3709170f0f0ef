"""The global seed stream of ``manual_seed`` / ``next_seed``: Python state, for scripts only.

Inside ``jax.jit`` a global stream would be read once, at trace time, and every later
call would reuse the same keys; so these functions refuse to run while JAX is tracing.
Pure code threads keys explicitly (``nn.run``, ``nn.pure``).

The stream is one for the whole process and safe across threads, like PyTorch's default
generator: a lock makes every draw one atomic step, so threads drawing at the same time
get distinct keys, together exactly the keys one thread would have drawn (in an order
that depends on the scheduling).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import jax
import jax.core
import jax.numpy as jnp

from tlean.seed import Builder, SeedStream, run

T = TypeVar("T")
U = TypeVar("U")

_DEFAULT_SEED = 0
_stream: SeedStream | None = None
_lock = threading.RLock()  # reentrant: a builder run by run_global may itself call next_seed


def _tracing() -> bool:
    """Whether JAX is tracing (jit, vmap, grad, scan, eval_shape ...)."""
    try:
        from jax._src import core  # no public API says this; fall back below if it moves

        return not core.trace_state_clean()
    except (ImportError, AttributeError):
        return isinstance(jnp.zeros(()), jax.core.Tracer)  # catches jit/eval_shape/scan, not vmap/grad


def _refuse_tracing(what: str, value: Any = None) -> None:
    if isinstance(value, jax.core.Tracer) or _tracing():
        raise RuntimeError(
            f"nn.{what} uses the global seed stream, which is Python state and cannot run inside "
            "jax.jit or another transformation (it would be read once, at trace time). "
            "Pass keys explicitly instead: nn.run(seed, builder) or nn.pure.<layer>(..., key=...)."
        )


def _global() -> SeedStream:
    global _stream
    if _stream is None:
        _stream = SeedStream(_DEFAULT_SEED)
    return _stream


def manual_seed(seed: Any) -> None:
    """Reset the global seed stream to ``SeedStream(seed)``, like ``torch.manual_seed``.

    Eager only: raises ``RuntimeError`` on a tracer or inside ``jax.jit``. Until it is
    first called the stream starts from seed 0.
    """
    global _stream
    _refuse_tracing("manual_seed", seed)
    stream = SeedStream(seed)
    with _lock:
        _stream = stream


def next_seed() -> jax.Array:
    """Draw a fresh key from the global stream (one split). Eager only; thread-safe."""
    global _stream
    _refuse_tracing("next_seed")
    with _lock:
        key, _stream = _global().fresh()
    return key


fresh_seed = next_seed


def run_global(builder: Builder[T]) -> T:
    """Run ``builder`` on the global stream, advancing it by the keys it draws. Eager only; thread-safe
    (the build holds the stream, so the keys it draws are consecutive)."""
    global _stream
    _refuse_tracing("run_global")
    if not isinstance(builder, Builder):
        raise TypeError(f"nn.run_global takes a Builder (e.g. nn.Linear(4, 2)), got {type(builder).__name__}")
    with _lock:  # the whole build is one draw: no other thread's key lands in the middle
        value, _stream = builder.fn(_global())
    return value


def with_model(builder: Builder[T], fn: Callable[[T], U]) -> U:
    """``fn(model)`` where ``model = nn.run(nn.next_seed(), builder)``. Eager only."""
    return fn(run(next_seed(), builder))
