"""Dropout: zero each element with probability ``p`` in training, identity in evaluation."""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from tlean._core import Layer
from tlean.layers import _util


@dataclass(frozen=True)
class Dropout(Layer):
    """Zero each element with probability ``p`` and scale the rest by ``1 / (1 - p)``.

    ``p`` is the probability of dropping (PyTorch's meaning; stax's ``Dropout(rate)``
    took the keep probability). In training (``train=True``) a ``key`` is required; in
    evaluation the layer is the identity. The expectation of the output equals the
    input.

    PyTorch analogue: ``torch.nn.Dropout(p)``; the random mask comes from the explicit
    ``key`` rather than a global generator.

    Args:
      p: drop probability in [0, 1).
    """

    p: float = 0.5

    def __post_init__(self):
        if isinstance(self.p, bool) or not isinstance(self.p, numbers.Real) or not 0.0 <= self.p < 1.0:
            raise ValueError(f"Dropout: p is the probability of dropping and must be in [0, 1), got {self.p!r}")
        object.__setattr__(self, "p", float(self.p))

    def apply(self, params, state, x, *, key=None, train=False):
        _util.check_float(self, x)
        if not train or self.p == 0.0:
            return x, state
        if key is None:
            raise ValueError(
                f"{self!r} in train mode needs a dropout key: pass key=jax.random.key(...) "
                "(use a key of its own, never the one used for init), or train=False"
            )
        keep = jax.random.bernoulli(key, 1.0 - self.p, jnp.shape(x))
        return jnp.where(keep, x / jnp.asarray(1.0 - self.p, x.dtype), jnp.zeros((), x.dtype)), state
