"""Fast eager init keeps the seed contract (issue 17): the chunked draws of tlean.layers._init
are bit for bit ``jax.random``'s, eager equals jitted, and a build compiles no program per
parameter shape. No timed assertions: speed is measured by ``benchmarks/`` (first_model)."""

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tlean import nn
from tlean.layers import _init

CHUNK = _init.CHUNK


def bits_of(a) -> np.ndarray:
    a = np.asarray(a)
    return a.view(np.dtype(f"uint{8 * a.dtype.itemsize}"))


def assert_same_bits(a, b):
    assert a.shape == b.shape and a.dtype == b.dtype
    np.testing.assert_array_equal(bits_of(a), bits_of(b))


@contextlib.contextmanager
def count_compiles():
    """Counts XLA compilations while the block runs (``jax.monitoring``'s backend-compile event)."""
    count = [0]

    def listener(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            count[0] += 1

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield count
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def test_threefry_is_partitionable_so_a_slice_of_a_longer_draw_has_the_same_bits():
    """The fast path rests on this: with partitionable threefry, element i of a draw depends on the key
    and i only, so drawing n elements flat and reshaping equals drawing the shape (pinned here)."""
    assert jax.config.jax_threefry_partitionable
    key = jax.random.key(3)
    long = jax.random.bits(key, (4 * 5 * 6 + 17,))
    np.testing.assert_array_equal(np.asarray(long[:120]).reshape(4, 5, 6), np.asarray(jax.random.bits(key, (4, 5, 6))))
    u = jax.random.uniform(key, (130,))
    assert_same_bits(u[:120].reshape(4, 5, 6), jax.random.uniform(key, (4, 5, 6)))


# Shapes on both sides of the chunk boundary, several chunks, and a non-float32 dtype each.
CASES = [
    ((7, 5, 3), jnp.float32),
    ((2, CHUNK + 5), jnp.float32),
    ((CHUNK // 2 + 3,), jnp.bfloat16),
    ((33, 9), jnp.float16),
]


@pytest.mark.parametrize("shape,dtype", CASES, ids=lambda v: str(v))
def test_fast_uniform_is_the_ordinary_draw_bit_for_bit_eager_and_jitted(shape, dtype):
    key = jax.random.key(11)
    fast = _init.uniform(key, shape, 0.37, dtype)
    ordinary = jnp.asarray(0.37, dtype) * (2 * jax.random.uniform(key, shape, dtype) - 1)
    jitted = jax.jit(lambda k: _init.uniform(k, shape, 0.37, dtype))(key)
    assert_same_bits(fast, ordinary)
    assert_same_bits(fast, jitted)
    assert float(jnp.max(jnp.abs(fast.astype(jnp.float32)))) <= float(jnp.asarray(0.37, dtype))


@pytest.mark.parametrize("shape,dtype", CASES[1:3], ids=lambda v: str(v))
@pytest.mark.parametrize("std", [1.0, 0.02])
def test_fast_normal_is_jax_random_normal_times_std_eager_and_jitted(shape, dtype, std):
    key = jax.random.key(12)
    fast = _init.normal(key, shape, std, dtype)
    z = jax.random.normal(key, shape, dtype)
    ordinary = z if std == 1 else z * jnp.asarray(std, dtype)  # eagerly: two programs, one rounding each
    jitted = jax.jit(lambda k: _init.normal(k, shape, std, dtype))(key)
    assert_same_bits(fast, ordinary)
    assert_same_bits(fast, jitted)


def test_traced_keys_and_other_prngs_take_the_ordinary_path():
    shapes = jax.eval_shape(lambda k: _init.uniform(k, (5, 4), 0.5), jax.random.key(0))
    assert shapes.shape == (5, 4) and shapes.dtype == jnp.float32
    rbg = jax.random.key(0, impl="rbg")
    assert not _init._fast(rbg, (5, 4), np.dtype(np.float32))
    assert_same_bits(_init.uniform(rbg, (5, 4), 0.5), 0.5 * (2 * jax.random.uniform(rbg, (5, 4)) - 1))
    assert not _init._fast(jax.random.key(0), (5, 4), np.dtype(np.float64))
    assert not _init._fast(jax.random.key(0), (0, 4), np.dtype(np.float32))
    with jax.threefry_partitionable(False):
        assert not _init._fast(jax.random.key(0), (5, 4), np.dtype(np.float32))


def _many_shapes(offset):
    """Layers whose parameter shapes no other test uses (so the ordinary path would compile each)."""
    return nn.Sequential(
        *[nn.Linear(40 + offset + i, 41 + offset + i) for i in range(4)],
        nn.Conv2d(3, 5 + offset, 3),
        nn.LSTM(6 + offset, 7 + offset),
    )


def test_eager_build_compiles_no_program_per_parameter_shape():
    """Before: one random-number program per new shape (62 compiles for resnet18); now none once warm."""
    nn.run(0, _many_shapes(0))  # warm: the chunk program, the key splits
    with count_compiles() as compiles:
        model = nn.run(1, _many_shapes(3))
    assert compiles[0] == 0
    assert model.params[0]["weight"].shape == (44, 43)


def test_eager_build_equals_jitted_build_and_layer_init():
    builder = nn.Sequential(
        nn.Linear(6, 9),
        nn.Conv2d(3, 4, 3, param_dtype=jnp.bfloat16),
        nn.GRU(5, 6),
        nn.MultiheadAttention(8, 2, batch_first=True),
        nn.Bilinear(3, 4, 5),
        nn.Linear(9, 2, bias=False),
    )
    eager = nn.run(7, builder)
    jitted = jax.jit(lambda s: nn.run(s, builder))(7)
    by_layer = eager.layer.init(jax.random.key(7))[0]
    jax.tree.map(assert_same_bits, eager.params, jitted.params)
    jax.tree.map(assert_same_bits, eager.params, by_layer)


@pytest.mark.parametrize("seed", [0, 1, 2**31 - 1, 2**32 + 5, 2**63 - 1])
def test_numpy_split_is_jax_random_split(seed):
    from tlean.seed import split

    key = jax.random.key(seed)
    for _ in range(3):  # the key, then keys drawn from it
        ours, theirs = split(key), jax.random.split(key)
        for a, b in zip(ours, theirs):
            np.testing.assert_array_equal(np.asarray(jax.random.key_data(a)), np.asarray(jax.random.key_data(b)))
        key = ours[0]
    traced = jax.jit(lambda k: jax.random.key_data(jnp.stack(split(k))))(key)
    np.testing.assert_array_equal(np.asarray(traced), np.asarray(jax.random.key_data(jax.random.split(key))))
    rbg = jax.random.key(seed % 2**31, impl="rbg")
    np.testing.assert_array_equal(
        np.asarray(jax.random.key_data(split(rbg)[1])), np.asarray(jax.random.key_data(jax.random.split(rbg)[1]))
    )


def test_a_concrete_key_closed_over_by_a_traced_function_takes_the_traced_path():
    """Inside jit / eval_shape / vmap a concrete key becomes a tracer when touched: the NumPy paths must not run."""
    key = jax.random.key(3)
    builder = nn.Sequential(nn.Linear(4, 5), nn.Conv2d(2, 3, 3))
    eager = nn.run(key, builder)
    jax.tree.map(assert_same_bits, jax.jit(lambda: nn.run(key, builder))().params, eager.params)
    assert jax.eval_shape(lambda: nn.run(key, builder)).params[0]["weight"].shape == (5, 4)
    total = jax.vmap(lambda x: x * nn.run(key, builder).params[0]["weight"].sum())(jnp.ones(2))
    np.testing.assert_allclose(np.asarray(total), float(eager.params[0]["weight"].sum()), rtol=1e-6)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.int32])
def test_full_is_jnp_full_and_compiles_nothing_eagerly(dtype):
    """The ones and zeros of norm layers: made on the host eagerly (no broadcast program per shape)."""
    for shape, value in (((7,), 1), ((3, 5), 0), ((), 0)):
        with count_compiles() as compiles:
            eager = _init.full(shape, value, dtype)
        assert compiles[0] == 0
        assert_same_bits(eager, jnp.full(shape, value, dtype))
        assert_same_bits(jax.jit(lambda: _init.full(shape, value, dtype))(), eager)
    nn.run(0, nn.Sequential(nn.BatchNorm2d(2), nn.LayerNorm(3), nn.GroupNorm(1, 4)))  # warm: the key seeding
    with count_compiles() as compiles:  # new shapes: no new program
        nn.run(1, nn.Sequential(nn.BatchNorm2d(11), nn.LayerNorm(13), nn.GroupNorm(2, 6)))
    assert compiles[0] == 0
