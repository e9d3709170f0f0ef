"""Where channels-first layers compute: channels-last on the CPU, as given elsewhere.

tlean's API is torch's, channels-first (``[N, C, *spatial]``, weights ``[out, in, *k]``).
XLA's CPU backend runs convolutions channels-last (it transposes an NCHW convolution's
operands and result itself), and BatchNorm's reductions over ``N, *spatial`` and pooling
windows are faster with the channels contiguous. So on the CPU the convolutions, batch norms
and pooling layers move the channel axis last, compute, and move it back. Between two such
layers the pair "back, then last again" is the identity, and XLA's simplifier removes it
(also across elementwise ops such as ReLU or a residual add), so a network pays for one
transpose at its input and one at its output, as a model written channels-last would: the
CNN benchmark's train step takes about 0.87 of its channels-first time.

On a GPU XLA's layout assignment already picks the convolutions' layouts (cuDNN's), and
the layers compute as given. ``TLEAN_CHANNELS_LAST=1`` (or ``0``) forces the choice; the
results are the same up to float rounding (the reductions' order).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import jax
import jax.numpy as jnp

_forced: bool | None = None


def enabled() -> bool:
    """Whether channels-first layers compute channels-last (read at trace time)."""
    if _forced is not None:
        return _forced
    env = os.environ.get("TLEAN_CHANNELS_LAST", "").strip()
    if env in ("0", "1"):
        return env == "1"
    return jax.default_backend() == "cpu"


@contextlib.contextmanager
def forced(value: bool | None) -> Iterator[None]:
    """Within the block, :func:`enabled` returns ``value`` (``None``: the default rule).

    Only what is traced inside the block is affected: JAX caches a function's trace by
    the function, so one traced before (even jitted again) keeps its layout; trace a new
    function (a fresh closure) inside the block.
    """
    global _forced
    old, _forced = _forced, value
    try:
        yield
    finally:
        _forced = old


def to_last(x: jax.Array, channel_axis: int) -> jax.Array:
    """``x`` with its ``channel_axis`` moved to the end."""
    return jnp.moveaxis(x, channel_axis, -1)


def to_first(y: jax.Array, channel_axis: int) -> jax.Array:
    """The inverse of :func:`to_last`: the last axis moved back to ``channel_axis``."""
    return jnp.moveaxis(y, -1, channel_axis)
