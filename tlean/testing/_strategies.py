"""Hypothesis strategies for seeds, dtypes, shapes and a layer's inputs.

hypothesis is imported when a strategy is built (it is a test dependency, not tlean's).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

#: The floating dtypes layers are tested in.
FLOAT_DTYPES = ("float32", "bfloat16", "float16")


def seeds(max_value: int = 2**32 - 1) -> Any:
    """Seeds for ``jax.random.key`` and ``nn.run``: integers in ``[0, max_value]``.

    Used as::

        @given(testing.seeds())
        def test_init_is_a_function_of_the_seed(seed):
            a, b = nn.run(seed, nn.Linear(3, 2)), nn.run(seed, nn.Linear(3, 2))
            assert (a.params["weight"] == b.params["weight"]).all()
    """
    from hypothesis import strategies as st

    return st.integers(0, max_value)


def keys(max_value: int = 2**32 - 1) -> Any:
    """``jax.random.key(seed)`` for a drawn seed."""
    return seeds(max_value).map(jax.random.key)


def dtypes(names: Sequence[str] = FLOAT_DTYPES) -> Any:
    """``jnp.dtype`` values drawn from ``names`` (default float32, bfloat16, float16)."""
    from hypothesis import strategies as st

    return st.sampled_from([jnp.dtype(name) for name in names])


def shapes(
    *, batch_dims: tuple[int, int] = (0, 2), trailing: Sequence[int] = (), min_side: int = 1, max_side: int = 6
) -> Any:
    """Input shapes ``(*batch, *trailing)``: between ``batch_dims[0]`` and ``batch_dims[1]`` leading axes
    of sizes in ``[min_side, max_side]``, then the fixed ``trailing`` axes a layer needs.

    ``shapes(trailing=(5,))`` draws inputs for ``Linear(5, ...)``: ``(5,)``, ``(3, 5)``, ``(2, 4, 5)``...;
    ``shapes(batch_dims=(1, 1), trailing=(3, 8, 8))`` batched NCHW images with 3 channels.
    """
    from hypothesis import strategies as st

    low, high = batch_dims
    if not 0 <= low <= high:
        raise ValueError(f"shapes: batch_dims must be (min, max) with 0 <= min <= max, got {batch_dims}")
    batch = st.lists(st.integers(min_side, max_side), min_size=low, max_size=high)
    return batch.map(lambda dims: tuple(dims) + tuple(trailing))


def _as_spec(spec: Any) -> jax.ShapeDtypeStruct:
    if isinstance(spec, jax.ShapeDtypeStruct):
        return spec
    if isinstance(spec, (tuple, list)) and all(isinstance(d, (int, np.integer)) for d in spec):
        return jax.ShapeDtypeStruct(tuple(int(d) for d in spec), jnp.float32)
    shape, dtype = getattr(spec, "shape", None), getattr(spec, "dtype", None)
    if shape is not None and dtype is not None:
        return jax.ShapeDtypeStruct(tuple(shape), dtype)
    raise TypeError(f"inputs: an input spec is a shape tuple, a jax.ShapeDtypeStruct or an array, got {spec!r}")


def _draw_array(spec: jax.ShapeDtypeStruct, seed: int, scale: float, high: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dtype = jnp.dtype(spec.dtype)
    if dtype == jnp.bool_:
        return rng.random(spec.shape) < 0.5
    if jnp.issubdtype(dtype, jnp.integer):
        return rng.integers(0, high, size=spec.shape).astype(dtype)
    return (scale * rng.standard_normal(spec.shape)).astype(np.float32).astype(dtype)


def inputs(spec: Any, *, scale: float = 1.0, high: int = 10) -> Any:
    """Inputs of the shapes and dtypes ``spec`` gives: arrays drawn from a seeded normal distribution.

    Args:
      spec: one input spec or a tuple of them (a Model's positional inputs), each a shape
        tuple (float32), a ``jax.ShapeDtypeStruct`` or an array (its shape and dtype); a
        strategy of specs (``shapes(...)``) is drawn from first.
      scale: the standard deviation of floating-point inputs.
      high: integer inputs (token ids) are drawn from ``[0, high)``; booleans are fair coins.

    Returns:
      A strategy of one NumPy array for a single spec, a tuple of arrays for a tuple of specs.
      Examples shrink towards seed 0, so a failure is reported with a small seed.
    """
    from hypothesis import strategies as st
    from hypothesis.strategies import SearchStrategy

    if isinstance(spec, SearchStrategy):
        return spec.flatmap(lambda drawn: inputs(drawn, scale=scale, high=high))
    several = isinstance(spec, (tuple, list)) and spec and not all(isinstance(d, (int, np.integer)) for d in spec)
    specs = [_as_spec(s) for s in spec] if several else [_as_spec(spec)]

    def draw(seed: int) -> Any:
        arrays = tuple(_draw_array(s, seed + i, scale, high) for i, s in enumerate(specs))
        return arrays if several else arrays[0]

    return st.integers(0, 2**31 - 1).map(draw)
