"""The Layer contract, seq and >> (DESIGN 1.1, 1.2)."""

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tlean
from tlean import Layer, ShapeError, seq
from tlean import layers as L


def test_seq_params_are_one_entry_per_child():
    net = seq(L.Linear(4, 8), L.relu, L.Linear(8, 2))
    params, state = net.init(jax.random.key(0))
    assert isinstance(params, tuple) and len(params) == 3
    assert params[1] == {} and state == ({}, {}, {})
    assert params[0]["weight"].shape == (8, 4)


def test_named_seq_keys_params_by_name():
    net = seq(fc1=L.Linear(4, 8), act=L.relu, fc2=L.Linear(8, 2))
    params, _ = net.init(jax.random.key(0))
    assert set(params) == {"fc1", "act", "fc2"}
    assert net["fc2"] == L.Linear(8, 2)
    positional, _ = seq(L.Linear(4, 8), L.relu, L.Linear(8, 2)).init(jax.random.key(0))
    np.testing.assert_array_equal(params["fc2"]["weight"], positional[2]["weight"])


def test_seq_rejects_mixed_and_bad_children():
    with pytest.raises(TypeError, match="either positional or keyword"):
        seq(L.relu, act=L.relu)
    with pytest.raises(TypeError, match=r"child 1 must be a tlean Layer, got int"):
        seq(L.relu, 3)
    with pytest.raises(ValueError, match="identifiers"):
        tlean.Seq((L.relu,), ("not a name",))


def test_rshift_flattens_and_is_associative():
    a, b, c = L.Linear(2, 3), L.relu, L.Linear(3, 1)
    assert (a >> b) >> c == a >> (b >> c) == seq(a, b, c)
    assert len(seq(a, b) >> seq(b, c)) == 4
    named = seq(x=a)
    assert (named >> b).layers == (named, b)  # a named Seq is kept whole


def test_seq_keeps_nesting():
    net = seq(L.Linear(2, 3), seq(L.relu, L.Linear(3, 1)))
    params, _ = net.init(jax.random.key(0))
    assert params[1][1]["weight"].shape == (1, 3)


def test_has_params_is_derived():
    @dataclass(frozen=True)
    class Scale(Layer):
        n: int

        def init(self, key):
            return {"scale": jnp.ones(self.n)}, {}

        def apply(self, params, state, x, *, key=None, train=False):
            return x * params["scale"], state

    @dataclass(frozen=True)
    class Double(Layer):
        def apply(self, params, state, x, *, key=None, train=False):
            return 2 * x, state

    assert Scale(3).has_params and not Double().has_params
    assert L.Linear(2, 2).has_params and not L.relu.has_params and not L.Dropout(0.5).has_params
    assert seq(L.relu, Scale(2)).has_params and not seq(L.relu, Double()).has_params
    assert repr(Scale(3)) == "Scale(n=3)" and repr(Double()) == "Double()"


def test_repr_shows_only_non_defaults():
    assert repr(L.Linear(128, 10)) == "Linear(in_features=128, out_features=10)"
    assert (
        repr(L.Linear(3, 4, bias=False, dtype="bfloat16"))
        == "Linear(in_features=3, out_features=4, bias=False, dtype=bfloat16)"
    )
    assert repr(seq(L.relu, L.GELU("tanh"))) == "Seq(ReLU(), GELU(approximate='tanh'))"


def test_configs_are_normalised_so_equal_configs_hash_equal():
    a = L.Linear(3, 4, param_dtype=jnp.float32, precision="highest")
    b = L.Linear(3, 4, param_dtype="float32", precision=jax.lax.Precision.HIGHEST)
    assert a == b and hash(a) == hash(b)
    assert hash(seq(a, L.relu)) == hash(seq(b, L.relu))


def test_shape_error_names_seq_position_layer_expected_and_got():
    net = seq(L.Linear(32, 128), L.relu, L.Linear(128, 10))
    params, state = net.init(jax.random.key(0))
    assert net.apply(params, state, jnp.ones((2, 32)))[0].shape == (2, 10)
    with pytest.raises(
        ShapeError,
        match=r"^seq\[0\] Linear\(in_features=32, out_features=128\): expected input \[\.\.\., 32\], got shape \(32, 64\)$",
    ):
        net.apply(params, state, jnp.ones((32, 64)))
    nested = seq(L.relu, seq(L.Linear(4, 2)))
    p, s = nested.init(jax.random.key(0))
    with pytest.raises(ShapeError, match=r"^seq\[1\]\[0\] Linear"):
        nested.apply(p, s, jnp.ones((3, 5)))
    named = seq(body=seq(fc=L.Linear(4, 2)))
    p, s = named.init(jax.random.key(0))
    with pytest.raises(ShapeError, match=r"^seq\.body\.fc Linear"):
        named.apply(p, s, jnp.ones((5,)))
    assert issubclass(ShapeError, ValueError)


def test_shape_error_is_raised_at_trace_time():
    net = seq(L.Linear(4, 2))
    params, state = net.init(jax.random.key(0))
    traced = []

    def f(p, x):
        traced.append(1)
        return net.apply(p, state, x)[0]

    with pytest.raises(ShapeError):
        jax.jit(f).lower(params, jax.ShapeDtypeStruct((3, 5), jnp.float32))
    assert traced == [1]


def test_seq_apply_checks_its_containers():
    net = seq(L.Linear(4, 2), L.relu)
    params, state = net.init(jax.random.key(0))
    with pytest.raises(TypeError, match="params must be a tuple with one entry per child"):
        net.apply(params[:1], state, jnp.ones(4))


def test_dropout_keys_are_folded_per_child():
    net = seq(L.Dropout(0.5), L.Dropout(0.5))
    key = jax.random.key(3)
    y, _ = net.apply(({}, {}), ({}, {}), jnp.ones(1000), key=key, train=True)
    by_hand = L.Dropout(0.5).apply({}, {}, jnp.ones(1000), key=jax.random.fold_in(key, 0), train=True)[0]
    by_hand = L.Dropout(0.5).apply({}, {}, by_hand, key=jax.random.fold_in(key, 1), train=True)[0]
    np.testing.assert_array_equal(y, by_hand)


def test_lambda_mean_select():
    net = seq(L.Lambda(jnp.tanh), L.Mean(1), L.Select(-1, 0))
    x = jnp.arange(6.0).reshape(2, 3)
    y, _ = net.apply(*net.init(None), x)
    np.testing.assert_allclose(y, jnp.tanh(x).mean(1)[-1])


def test_equal_configs_trace_a_jitted_step_once():
    """A layer rebuilt from equal config each call is the same static argument: one trace."""
    traces = []

    def make():
        return seq(L.Linear(3, 4, param_dtype="float32"), L.Lambda(jnp.tanh), L.GELU())

    @jax.jit
    def step(model, x):
        traces.append(1)
        return model(x)

    params, state = make().init(jax.random.key(0))
    for _ in range(3):
        step(tlean.Model(make(), params, state), jnp.ones(3))
    assert len(traces) == 1


def test_params_of_the_wrong_shape_or_structure_are_refused_not_broadcast():
    net = seq(L.Linear(2, 3), L.relu)
    params, state = net.init(jax.random.key(0))
    bad_bias = ({"weight": params[0]["weight"], "bias": jnp.ones(1)}, {})
    with pytest.raises(
        ShapeError,
        match=r"seq\[0\] Linear\(in_features=2, out_features=3\): expected params bias \[3\], got bias \(1,\)",
    ):
        net.apply(bad_bias, state, jnp.ones((4, 2)))
    missing = ({"weight": params[0]["weight"]}, {})
    with pytest.raises(TypeError, match=r"params should have the entries \['bias', 'weight'\], got \['weight'\]"):
        net.apply(missing, state, jnp.ones((4, 2)))
    m = tlean.Model(L.Linear(2, 3, bias=False), {"weight": jnp.ones((2, 2))})
    with pytest.raises(ShapeError, match=r"expected params weight \[3, 2\], got weight \(2, 2\)"):
        m(jnp.ones((4, 2)))


def test_state_only_layers_have_params_too():
    @dataclass(frozen=True)
    class Counter(Layer):
        def init(self, key):
            return {}, {"count": jnp.zeros((), jnp.int32)}

        def apply(self, params, state, x, *, key=None, train=False):
            return x, {"count": state["count"] + 1}

    assert Counter().has_params
    net = seq(L.Linear(2, 2), Counter())
    params, state = net.init(jax.random.key(0))
    _, state = net.apply(params, state, jnp.ones(2))
    assert int(state[1]["count"]) == 1


def test_config_validation_at_construction():
    with pytest.raises(ValueError, match=r"Softmax: dim must be an int, got 'a'"):
        L.Softmax("a")
    with pytest.raises(ValueError, match=r"Flatten: start_dim must be an int, got None"):
        L.Flatten(None)
    with pytest.raises(ValueError, match=r"Mean: dim must be an int, got 1.5"):
        L.Mean(1.5)
    with pytest.raises(ValueError, match=r"Select: index must be an int"):
        L.Select(1.0, 0)
    with pytest.raises(TypeError, match="Lambda: fn must be hashable"):
        L.Lambda(_Unhashable())
    with pytest.raises(
        ValueError, match=r"Linear: dtype must be a floating dtype or None, got <class 'jax.numpy.int32'>"
    ):
        L.Linear(2, 2, dtype=jnp.int32)
    with pytest.raises(ValueError, match=r"Linear: param_dtype must be a floating dtype, got None"):
        L.Linear(2, 2, param_dtype=None)
    assert L.Linear(np.int64(4), 3) == L.Linear(4, 3) and L.Dropout(np.float32(0.5)).p == 0.5
    assert L.LayerNorm(np.int64(4)).normalized_shape == (4,)


class _Unhashable:
    __hash__ = None

    def __call__(self, x):
        return x
