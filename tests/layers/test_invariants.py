"""Invariants every registered layer shares (tests/registry.py): jit == eager, vmap, eval_shape,
bfloat16, hashing, has_params. The checks are tlean.testing's, as a user runs them on their layers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.registry import CASES
from tlean import Model, testing


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


def model(case):
    """The case's layer and arrays as a Model, the form tlean.testing's checks take."""
    return Model(*built(case))


KEY = jax.random.key(5)  # the dropout key of every check (never the init key)


def run(layer, params, state, x, case, train=False):
    return layer.apply(params, state, x, key=KEY, train=train, **case.apply_kwargs)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_jit_equals_eager_in_eval_and_train(case):
    testing.assert_jit_eager_equal(
        model(case), example(case), train=(False, True), key=KEY, rtol=1e-5, atol=1e-5, **case.apply_kwargs
    )


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_output_shape_equals_eval_shape(case):
    testing.assert_eval_shape(model(case), example(case), key=KEY, **case.apply_kwargs)


@pytest.mark.parametrize("case", [c for c in CASES if c.vmappable], ids=lambda c: c.name)
def test_vmap_over_a_leading_axis_equals_a_loop(case):
    xs = jnp.stack([example(case, seed) for seed in range(3)])
    testing.assert_vmap_consistent(model(case), xs, key=KEY, rtol=1e-5, atol=1e-5, **case.apply_kwargs)


@pytest.mark.parametrize("case", [c for c in CASES if c.bf16 and c.integer_input is None], ids=lambda c: c.name)
def test_bfloat16_input_runs_close_to_float32(case):
    layer, params, state = built(case)
    x = example(case)
    y32 = run(layer, params, state, x, case)[0]
    y16 = run(layer, params, state, x.astype(jnp.bfloat16), case)[0]
    assert all(np.isfinite(np.asarray(leaf, np.float32)).all() for leaf in jax.tree.leaves(y16))
    testing.assert_trees_close(y16, y32, rtol=5e-2, atol=5e-2, context=f"{case.name}: bfloat16 vs float32")


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
    jax.tree.map(
        lambda u, v: np.testing.assert_array_equal(np.asarray(u), np.asarray(v)), eager, jax.jit(layer.init)(key)
    )


# --- the catalogue of bad inputs (issue 8) ----------------------------------------------------

BAD_SHAPES = [(c, shape) for c in CASES for shape in c.bad_shapes]


@pytest.mark.parametrize("case,shape", BAD_SHAPES, ids=[f"{c.name}-{s}" for c, s in BAD_SHAPES])
def test_wrong_shapes_raise_shape_error_naming_the_layer_at_trace_time(case, shape):
    # A Seq or composite names the path of the child that refused the input, then the child
    # (a composite may also check its input itself); any other layer names itself: the check's
    # default pattern. Only tracing runs: nothing compiles.
    dtype = jnp.int32 if case.integer_input is not None else case.dtype
    testing.assert_shape_error_at_trace_time(model(case), shape, dtype=dtype, **case.apply_kwargs)


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


# --- jaxtyping annotations, checked here only (STYLE 7: runtime checking only in tests) -------
# tlean's layer modules use `from __future__ import annotations`, so their jaxtyping annotations
# are strings that nothing evaluates at import. Here each is evaluated, and every registry case
# whose class annotates `apply` is traced with jaxtyping + beartype checking the call (tracing
# only: the check runs at trace time, as under jax.jit, and costs no compilation).

ANNOTATED_MODULES = ("tlean.layers", "tlean.models")
#: Annotations jaxtyping cannot express (two variadic axes, "*batch C *spatial"; a bare Ellipsis):
#: tools/fix_jaxtyping.py rewrites them and empties this set (xfail, not strict: an owner may fix one first).
ANNOTATIONS_TO_FIX: set[str] = set()


def _jaxtyped_methods():
    import importlib

    seen, out = set(), []
    for module in map(importlib.import_module, ANNOTATED_MODULES):
        for name in sorted(getattr(module, "__all__", dir(module))):
            cls = getattr(module, name, None)
            if not isinstance(cls, type):
                continue
            for method in ("apply", "decode", "init_cache"):
                fn = next((k.__dict__[method] for k in cls.__mro__ if method in k.__dict__), None)
                if fn is None or fn in seen or not _is_jaxtyped(fn):
                    continue
                seen.add(fn)
                out.append((f"{name}.{method}", fn))
    return out


def _is_jaxtyped(fn):
    return any(
        tag in str(a) for a in getattr(fn, "__annotations__", {}).values() for tag in ("Float[", "Integer[", "Bool[")
    )


@pytest.mark.parametrize(
    "name,fn",
    [
        pytest.param(name, fn, marks=pytest.mark.xfail(reason="run tools/fix_jaxtyping.py"))
        if name in ANNOTATIONS_TO_FIX
        else (name, fn)
        for name, fn in _jaxtyped_methods()
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_jaxtyping_annotations_are_valid(name, fn):
    import typing

    typing.get_type_hints(fn)  # evaluates every string annotation: a bad jaxtyping spec raises here


def _checked_apply(layer, monkeypatch):
    """Patch the class that defines ``layer``'s apply with jaxtyping + beartype for this test."""
    beartype = pytest.importorskip("beartype").beartype
    from jaxtyping import jaxtyped

    owner = next(k for k in type(layer).__mro__ if "apply" in k.__dict__)
    monkeypatch.setattr(owner, "apply", jaxtyped(typechecker=beartype)(owner.__dict__["apply"]))


#: Cases whose input the annotation wrongly refuses (a shared "*batch" that batch_first=False breaks):
#: tools/fix_jaxtyping.py fixes the annotation and empties this set.
CASES_TO_FIX: set[str] = set()
ANNOTATED_CASES = [
    pytest.param(c, marks=pytest.mark.xfail(strict=True, reason="run tools/fix_jaxtyping.py"))
    if c.name in CASES_TO_FIX
    else c
    for c in CASES
    if _is_jaxtyped(next(k.__dict__["apply"] for k in type(c.make()).__mro__ if "apply" in k.__dict__))
]


@pytest.mark.parametrize("case", ANNOTATED_CASES, ids=lambda c: c.name)
def test_jaxtyping_annotations_hold_for_the_example_input(case, monkeypatch):
    layer = case.make()
    _checked_apply(layer, monkeypatch)
    params, state = jax.eval_shape(layer.init, jax.random.key(0))
    x = jax.ShapeDtypeStruct(case.input_shape, jnp.int32 if case.integer_input is not None else case.dtype)
    # Annotations say jax.Array; the registry's NumPy masks and extra inputs become jax arrays.
    kwargs = jax.tree.map(lambda v: jnp.asarray(v) if isinstance(v, np.ndarray) else v, case.apply_kwargs)
    jax.eval_shape(lambda p, s, x: layer.apply(p, s, x, key=KEY, **kwargs), params, state, x)


def test_the_annotation_check_can_fail(monkeypatch):
    from tlean.layers import Linear

    _checked_apply(Linear(3, 2), monkeypatch)
    with pytest.raises(TypeError, match="parameter 'x'"):  # jaxtyping's TypeCheckError: int32 is not Float
        Linear(3, 2).apply({"weight": jnp.ones((2, 3)), "bias": jnp.ones(2)}, {}, jnp.ones((4, 3), jnp.int32))
