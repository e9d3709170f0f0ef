"""Invariants every registered layer shares (tests/registry.py): jit == eager, vmap, eval_shape,
bfloat16, hashing, has_params."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.registry import CASES


def example(case, seed=0, dtype=None):
    key = jax.random.key(100 + seed)
    if case.integer_input is not None:
        return jax.random.randint(key, case.input_shape, 0, case.integer_input)
    return jax.random.normal(key, case.input_shape, dtype or case.dtype)


_BUILT: dict = {}


def built(case):
    """The case's layer, params and state, initialised once per case by the jitted init
    (eager init is slow for the composite layers; that it equals the jitted one bit for
    bit is checked below)."""
    if case.name not in _BUILT:
        layer = case.make()
        _BUILT[case.name] = (layer, *jax.jit(layer.init)(jax.random.key(0)))
    return _BUILT[case.name]


def run(layer, params, state, x, case, train=False):
    return layer.apply(params, state, x, key=jax.random.key(5), train=train, **case.apply_kwargs)


def assert_close(a, b, **kw):
    jax.tree.map(lambda u, v: np.testing.assert_allclose(np.asarray(u, np.float32), np.asarray(v, np.float32), **kw), a, b)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_jit_equals_eager_in_eval_and_train(case):
    layer, params, state = built(case)
    x = example(case)
    for train in (False, True):
        eager = run(layer, params, state, x, case, train)
        jitted = jax.jit(lambda p, s, x: run(layer, p, s, x, case, train))(params, state, x)
        assert_close(eager, jitted, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_output_shape_equals_eval_shape(case):
    layer, params, state = built(case)
    x = example(case)
    y = run(layer, params, state, x, case)
    abstract = jax.eval_shape(lambda p, s, x: run(layer, p, s, x, case), params, state, x)
    assert jax.tree.map(lambda a: (a.shape, a.dtype), y) == jax.tree.map(lambda a: (a.shape, a.dtype), abstract)
    shapes = jax.eval_shape(layer.init, jax.random.key(0))
    assert jax.tree.map(lambda a: (a.shape, a.dtype), shapes) == jax.tree.map(lambda a: (a.shape, a.dtype), (params, state))


@pytest.mark.parametrize("case", [c for c in CASES if c.vmappable], ids=lambda c: c.name)
def test_vmap_over_a_leading_axis_equals_a_loop(case):
    layer, params, state = built(case)
    xs = jnp.stack([example(case, seed) for seed in range(3)])
    ys = jax.vmap(lambda x: run(layer, params, state, x, case)[0])(xs)
    for i in range(3):
        assert_close(ys[i], run(layer, params, state, xs[i], case)[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", [c for c in CASES if c.bf16 and c.integer_input is None], ids=lambda c: c.name)
def test_bfloat16_input_runs_close_to_float32(case):
    layer, params, state = built(case)
    x = example(case)
    y32 = run(layer, params, state, x, case)[0]
    y16 = run(layer, params, state, x.astype(jnp.bfloat16), case)[0]
    assert all(np.isfinite(np.asarray(leaf, np.float32)).all() for leaf in jax.tree.leaves(y16))
    assert_close(y16, y32, rtol=5e-2, atol=5e-2)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_equal_configs_are_equal_and_hash_equal(case):
    a, b = case.make(), case.make()
    assert a == b and hash(a) == hash(b) and repr(a) == repr(b)
    params, state = jax.eval_shape(a.init, jax.random.key(0))
    assert a.has_params == bool(jax.tree.leaves((params, state)))


@pytest.mark.parametrize("case", [c for c in CASES if c.make().has_params], ids=lambda c: c.name)
def test_init_is_deterministic_and_eager_equals_jit_bit_for_bit(case):
    layer = case.make()
    key = jax.random.key(42)
    eager = layer.init(key)
    jax.tree.map(lambda u, v: np.testing.assert_array_equal(np.asarray(u), np.asarray(v)), eager, layer.init(key))
    jax.tree.map(lambda u, v: np.testing.assert_array_equal(np.asarray(u), np.asarray(v)), eager, jax.jit(layer.init)(key))


# --- the catalogue of bad inputs (issue 8) ----------------------------------------------------

BAD_SHAPES = [(c, shape) for c in CASES for shape in c.bad_shapes]


@pytest.mark.parametrize("case,shape", BAD_SHAPES, ids=[f"{c.name}-{s}" for c, s in BAD_SHAPES])
def test_wrong_shapes_raise_shape_error_naming_the_layer_at_trace_time(case, shape):
    from tlean import ShapeError

    layer, params, state = built(case)
    # A Seq or composite names the path of the child that refused the input, then the child
    # (a composite may also check its input itself); any other layer names itself.
    located = r"^seq(\[[\d*]+\]|\.\w+)+ \w+\(.*\): expected .*, got"
    own = rf"^{type(layer).__name__}\(.*\): expected .*, got"
    composite = bool(layer.children()) or layer.stacked() is not None
    pattern = located if type(layer).__name__ == "Seq" else f"{located}|{own}" if composite else own
    x = jax.ShapeDtypeStruct(shape, jnp.int32 if case.integer_input is not None else case.dtype)
    with pytest.raises(ShapeError, match=pattern):
        jax.jit(lambda p, s, x: run(layer, p, s, x, case)).lower(params, state, x)  # trace only: nothing compiles


FLOAT_LAYERS_WITH_WEIGHTS = [c for c in CASES if c.integer_input is None and c.make().has_params]


@pytest.mark.parametrize("case", FLOAT_LAYERS_WITH_WEIGHTS, ids=lambda c: c.name)
def test_integer_input_is_a_type_error_naming_the_layer(case):
    layer, params, state = built(case)
    x = jnp.ones(case.input_shape, jnp.int32)
    with pytest.raises(TypeError, match=r"\(.*\): expected a floating-point input, got int32"):
        run(layer, params, state, x, case)


@pytest.mark.parametrize("case", [c for c in CASES if c.integer_input is None], ids=lambda c: c.name)
def test_nan_input_is_never_hidden(case):
    layer, params, state = built(case)
    x = jnp.full(case.input_shape, jnp.nan, case.dtype)
    y = run(layer, params, state, x, case)[0]
    assert any(np.isnan(np.asarray(leaf, np.float32)).any() for leaf in jax.tree.leaves(y))


@pytest.mark.parametrize("case", [c for c in CASES if c.vmappable], ids=lambda c: c.name)
def test_empty_batch_gives_an_empty_output_or_a_clear_error(case):
    from tlean import ShapeError

    layer, params, state = built(case)
    x = jnp.zeros((0,) + case.input_shape[1:], jnp.int32 if case.integer_input is not None else case.dtype)
    try:
        y = run(layer, params, state, x, case)[0]
    except ShapeError as err:
        assert type(layer).__name__ in str(err)
        return
    assert all(leaf.shape[:1] == (0,) for leaf in jax.tree.leaves(y))
