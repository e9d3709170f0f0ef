"""PyTorch's default initialisers, written so eager and jitted init agree bit for bit.

``jax.random.uniform(key, shape, minval=-b, maxval=b)`` computes ``u * 2b - b``, which
XLA may contract into a fused multiply-add under ``jax.jit`` but not eagerly, so the
two can differ in the last bit. We draw ``u`` in [0, 1) and return ``b * (2u - 1)``:
``2u - 1`` is exact in floating point, leaving a single rounding either way.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp


def uniform(key: jax.Array, shape: Sequence[int], bound: float, dtype: Any = jnp.float32) -> jax.Array:
    """Samples of U(-bound, bound), PyTorch's ``nn.init.uniform_(-bound, bound)``."""
    u = jax.random.uniform(key, tuple(shape), dtype)
    return jnp.asarray(bound, dtype) * (2 * u - 1)


def fan_in_bound(fan_in: int) -> float:
    """``1 / sqrt(fan_in)`` (0 when ``fan_in`` is 0), PyTorch's bound for default weights and biases.

    PyTorch initialises Linear and Conv weights with ``kaiming_uniform_(a=sqrt(5))``,
    whose bound ``gain * sqrt(3 / fan_in)`` with ``gain = sqrt(2 / (1 + 5))`` is exactly
    ``1 / sqrt(fan_in)``; their biases use the same bound.
    """
    return 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0


def xavier_uniform(key: jax.Array, shape: Sequence[int], gain: float = 1.0, dtype: Any = jnp.float32) -> jax.Array:
    """PyTorch's ``nn.init.xavier_uniform_``: U(-b, b) with ``b = gain * sqrt(6 / (fan_in + fan_out))``.

    For a matrix ``[fan_out, fan_in]`` (PyTorch's layout); higher-rank shapes multiply the
    trailing axes into the receptive field as PyTorch does.
    """
    shape = tuple(shape)
    receptive = math.prod(shape[2:])
    fan_in, fan_out = shape[1] * receptive, shape[0] * receptive
    return uniform(key, shape, gain * math.sqrt(6.0 / (fan_in + fan_out)), dtype)


def torch_weight_and_bias(key: jax.Array, weight_shape: Sequence[int], fan_in: int, bias: bool, dtype: Any) -> dict:
    """``{"weight", "bias"}`` initialised as torch.nn.Linear / ConvNd do (bias only if asked)."""
    k_weight, k_bias = jax.random.split(key)
    bound = fan_in_bound(fan_in)
    params = {"weight": uniform(k_weight, weight_shape, bound, dtype)}
    if bias:
        params["bias"] = uniform(k_bias, weight_shape[:1], bound, dtype)
    return params
