"""PyTorch's default initialisers, written so eager and jitted init agree bit for bit, and fast eagerly.

``jax.random.uniform(key, shape, minval=-b, maxval=b)`` computes ``u * 2b - b``, which
XLA may contract into a fused multiply-add under ``jax.jit`` but not eagerly, so the
two can differ in the last bit. We draw ``u`` in [0, 1) and return ``b * (2u - 1)``:
``2u - 1`` is exact in floating point, leaving a single rounding either way.

**Fast eager draws.** Called eagerly, ``jax.random.uniform(key, shape)`` compiles one
random-number program per new shape (0.1-0.2 s each: most of the time it took to build
a ResNet). With a concrete key, :func:`uniform` and :func:`normal` instead run one
program per dtype, compiled once, over fixed-size chunks of the flat index. With JAX's
partitionable threefry (``jax_threefry_partitionable``, the default) element ``i`` of
``jax.random.bits(key, shape)`` is ``threefry2x32(key, (i >> 32, i & 0xffffffff))``
folded to 32 bits, a function of the key and ``i`` alone; the chunk program computes
exactly that for ``i = offset .. offset + CHUNK - 1`` and then the same element-wise
operations as ``jax.random.uniform`` / ``jax.random.normal``, so the result is bit for
bit the array the ordinary path gives (tests/test_init_speed.py pins it against
``jax.random`` for many shapes and dtypes). Traced keys (under ``jax.jit``, ``vmap``,
``eval_shape``), the legacy non-partitionable threefry and other PRNG implementations
take the ordinary path.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.core import Tracer
from jax.extend.random import threefry2x32_p

from tlean.seed import split, tracing

CHUNK = 1 << 16  # elements per fast-path program call (the one compiled shape)


def uniform(key: jax.Array, shape: Sequence[int], bound: float, dtype: Any = jnp.float32) -> jax.Array:
    """Samples of U(-bound, bound), PyTorch's ``nn.init.uniform_(-bound, bound)``.

    Exactly ``bound * (2 * jax.random.uniform(key, shape, dtype) - 1)`` (``bound`` rounded
    to ``dtype`` first), eagerly or traced.
    """
    shape, dtype = tuple(shape), jnp.dtype(dtype)
    if _fast(key, shape, dtype):
        return _draw("uniform", key, shape, dtype, bound)
    u = jax.random.uniform(key, shape, dtype)
    return jnp.asarray(bound, dtype) * (2 * u - 1)


def normal(key: jax.Array, shape: Sequence[int], std: float = 1.0, dtype: Any = jnp.float32) -> jax.Array:
    """Samples of N(0, std^2), PyTorch's ``nn.init.normal_(std=std)`` (GPT-2 and BERT use std=0.02).

    Exactly ``jax.random.normal(key, shape, dtype) * std`` computed eagerly (``std`` rounded
    to ``dtype``; ``std=1`` returns ``jax.random.normal`` itself), also under ``jax.jit``:
    an optimisation barrier stops XLA from folding ``std`` into the normal's last multiply,
    which changes the last bit.
    """
    shape, dtype = tuple(shape), jnp.dtype(dtype)
    if _fast(key, shape, dtype):
        return _draw("normal", key, shape, dtype, std)
    z = jax.random.normal(key, shape, dtype)
    # The barrier keeps XLA from folding std into erfinv's last multiply under jit (a 1-ulp change).
    return z if std == 1 else lax.optimization_barrier(z) * jnp.asarray(std, dtype)


def full(shape: Sequence[int], value: float, dtype: Any = jnp.float32) -> jax.Array:
    """``jnp.full(shape, value, dtype)``; eagerly it is made on the host and put on the device, so a
    build compiles no broadcast program per parameter shape (ones and zeros of every norm layer)."""
    if tracing():
        return jnp.full(shape, value, dtype)
    return jax.device_put(np.full(tuple(shape), value, np.dtype(dtype)))


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
    k_weight, k_bias = split(key)  # jax.random.split's keys (with NumPy when the key is concrete)
    bound = fan_in_bound(fan_in)
    params = {"weight": uniform(k_weight, weight_shape, bound, dtype)}
    if bias:
        params["bias"] = uniform(k_bias, weight_shape[:1], bound, dtype)
    return params


# -- the fast eager path ------------------------------------------------------------------
def _fast(key: Any, shape: tuple, dtype: np.dtype) -> bool:
    """Whether the chunked path gives the same bits: a concrete threefry key, nothing tracing, a 16/32-bit
    float, < 2^32 elements."""
    if isinstance(key, Tracer) or not isinstance(key, jax.Array) or tracing():
        return False
    if not jnp.issubdtype(key.dtype, jax.dtypes.prng_key) or key.shape != ():
        return False
    if not jax.config.values["jax_threefry_partitionable"] or str(jax.random.key_impl(key)) != "threefry2x32":
        return False
    if not jnp.issubdtype(dtype, jnp.floating) or dtype.itemsize not in (2, 4):
        return False
    return 0 < math.prod(shape) < 2**32 - CHUNK


def _draw(kind: str, key: jax.Array, shape: tuple, dtype: np.dtype, scale: float) -> jax.Array:
    """The array ``kind`` (uniform or normal, scaled) of ``shape``, assembled from fixed-size chunks."""
    n = math.prod(shape)
    data = np.asarray(jax.random.key_data(key))
    factor = np.asarray(scale, dtype)
    out = np.empty(n, dtype)
    for offset in range(0, n, CHUNK):
        chunk = np.asarray(_chunk(data, np.uint32(offset), factor, kind=kind, dtype=dtype))
        out[offset : offset + CHUNK] = chunk[: n - offset]
    return jax.device_put(out.reshape(shape))  # no per-shape program, unlike jnp.asarray


@functools.partial(jax.jit, static_argnames=("kind", "dtype"))
def _chunk(data: jax.Array, offset: jax.Array, scale: jax.Array, *, kind: str, dtype: np.dtype) -> jax.Array:
    """Elements ``offset .. offset + CHUNK - 1`` of the flat draw, by the operations of ``jax.random``."""
    low = offset + lax.iota(jnp.uint32, CHUNK)
    bits1, bits2 = threefry2x32_p.bind(data[0], data[1], jnp.zeros_like(low), low)
    bits = bits1 ^ bits2  # threefry's partitionable random_bits at width 32
    info = jnp.finfo(dtype)
    nbits, nmant = info.bits, info.nmant
    rng_bits = 8 if nmant < 8 else nbits  # as jax.random.uniform: bfloat16 draws 8 bits
    uint = {8: jnp.uint8, 16: jnp.uint16, 32: jnp.uint32}
    if rng_bits != 32:
        bits = lax.convert_element_type(bits, uint[rng_bits])
    if rng_bits != nbits:
        bits = lax.convert_element_type(bits, uint[nbits])
    float_bits = lax.shift_right_logical(bits, jnp.array(rng_bits - nmant, uint[nbits]))
    float_bits = lax.bitwise_or(float_bits, jnp.asarray(np.array(1.0, dtype).view(uint[nbits]), dtype=uint[nbits]))
    floats = lax.bitcast_convert_type(float_bits, dtype) - jnp.array(1.0, dtype)
    if kind == "uniform":  # bound * (2u - 1), u = jax.random.uniform(key, shape, dtype)
        return scale * (2 * floats - 1)
    # jax.random.normal: sqrt(2) erfinv(u), u = jax.random.uniform(key, shape, dtype, nextafter(-1, 0), 1)
    minval = lax.convert_element_type(np.nextafter(np.array(-1.0, dtype), np.array(0.0, dtype), dtype=dtype), dtype)
    maxval = lax.convert_element_type(np.array(1.0, dtype), dtype)
    u = lax.max(minval, floats * (maxval - minval) + minval)
    z = lax.mul(np.array(np.sqrt(2), dtype), lax.erf_inv(u))
    return lax.optimization_barrier(z) * scale
