"""The Model pytree (DESIGN 1.1, 1.4)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tlean import Model, nn, seq, torch_name
from tlean import layers as L


@pytest.fixture
def mlp():
    return nn.run(0, nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.1), nn.Linear(8, 2)))


def test_jit_grad_vmap_optax(mlp):
    x = jax.random.normal(jax.random.key(1), (5, 4))
    y = jax.random.normal(jax.random.key(2), (5, 2))
    np.testing.assert_allclose(jax.jit(lambda m, x: m(x))(mlp, x), mlp(x), rtol=1e-6)
    np.testing.assert_allclose(jax.vmap(mlp)(x), mlp(x), rtol=1e-6)
    loss = lambda m: jnp.mean((m(x) - y) ** 2)
    grads = jax.grad(loss)(mlp)
    assert isinstance(grads, Model) and grads.layer == mlp.layer
    opt = optax.adam(1e-2)
    opt_state = opt.init(mlp)
    model = mlp
    losses = []
    for _ in range(20):
        value, grads = jax.value_and_grad(loss)(model)
        updates, opt_state = opt.update(grads, opt_state, model)
        model = optax.apply_updates(model, updates)
        losses.append(float(value))
    assert isinstance(model, Model) and losses[-1] < losses[0] * 0.7


def test_grad_by_hand_matches(mlp):
    x = jnp.ones((1, 4))
    grads = jax.grad(lambda m: m(x).sum())(mlp)
    w0, b0, w1, b1 = mlp.params[0]["weight"], mlp.params[0]["bias"], mlp.params[3]["weight"], mlp.params[3]["bias"]
    by_hand = jax.grad(lambda w: (jax.nn.relu(x @ w.T + b0[None]) @ w1.T + b1[None]).sum())(w0)
    np.testing.assert_allclose(grads.params[0]["weight"], by_hand, rtol=1e-6)


def test_key_paths_print_pytorch_names(mlp):
    names = [torch_name(p[1:]) for p, _ in jax.tree_util.tree_flatten_with_path(mlp)[0]]
    assert names == ["0.bias", "0.weight", "3.bias", "3.weight"]
    paths = [
        jax.tree_util.keystr(p, simple=True, separator=".") for p, _ in jax.tree_util.tree_flatten_with_path(mlp)[0]
    ]
    assert paths[0] == "params.0.bias"
    assert list(mlp.named_parameters()) == ["0.bias", "0.weight", "3.bias", "3.weight"]


def test_forward_returns_model_with_state_and_call_is_eval(mlp):
    x = jnp.ones((3, 4))
    _y, m2 = mlp.forward(x, key=jax.random.key(0), train=True)
    assert isinstance(m2, Model) and m2.params is mlp.params
    np.testing.assert_array_equal(mlp(x), mlp.forward(x)[0])
    with pytest.raises(ValueError, match="needs a dropout key"):
        mlp(x, train=True)


def test_keywords_never_vanish(mlp):
    with pytest.raises(TypeError, match=r"unexpected keyword\(s\) \['mask'\].*no extra keywords"):
        mlp(jnp.ones((1, 4)), mask=jnp.ones((1, 1), bool))


def test_replace_and_immutability(mlp):
    zeroed = mlp.replace(params=jax.tree.map(jnp.zeros_like, mlp.params))
    assert float(jnp.abs(zeroed(jnp.ones((1, 4)))).sum()) == 0.0
    with pytest.raises(AttributeError, match="immutable"):
        mlp.params = None
    with pytest.raises(TypeError, match="replace takes"):
        mlp.replace(weights=1)


def test_num_params_and_summary(mlp):
    assert mlp.num_params() == 4 * 8 + 8 + 8 * 2 + 2
    text = mlp.summary((32, 4))
    lines = text.splitlines()
    assert any(line.split()[:1] == ["#"] and "output shape" in line and "params" in line for line in lines)
    row0 = next(line for line in lines if line.startswith("0 "))
    assert "Linear(in_features=4, out_features=8)" in row0 and "(32, 8)" in row0 and row0.rstrip().endswith("40")
    assert "total params: 58" in text
    nested = nn.run(0, nn.Sequential(nn.Linear(4, 8), nn.Sequential(nn.ReLU(), nn.Linear(8, 3))))
    assert any(line.startswith("1.1 ") and "(7, 3)" in line for line in nested.summary((7, 4)).splitlines())


def test_composition_of_models(mlp):
    k1, _k2 = jax.random.split(jax.random.key(0))
    a = nn.pure.linear(4, 4, key=k1)
    net = a >> L.relu >> a
    assert len(net) == 3 and net.layer == seq(L.Linear(4, 4), L.relu, L.Linear(4, 4))
    # composition never ties weights: two independent buffers with equal values
    w0, w2 = net.params[0]["weight"], net.params[2]["weight"]
    assert w0 is not w2 and w0.unsafe_buffer_pointer() != w2.unsafe_buffer_pointer()
    np.testing.assert_array_equal(w0, w2)
    tied = nn.run(0, nn.Sequential(a, nn.ReLU(), a))
    assert tied.params[0]["weight"] is not tied.params[2]["weight"]
    assert len(L.relu >> a) == 2 and len(mlp >> mlp) == 8
    with pytest.raises(TypeError, match=r"Linear\(in_features=4, out_features=2\) has parameters.*nn\.pure"):
        a >> L.Linear(4, 2)
    with pytest.raises(TypeError, match="has parameters"):
        L.Linear(4, 4) >> a


def test_indexing_a_seq_model(mlp):
    assert mlp[0].layer == L.Linear(4, 8) and mlp[0].params is mlp.params[0]
    head = mlp[:2]
    assert len(head) == 2 and head(jnp.ones((1, 4))).shape == (1, 8)
    named = nn.run(0, nn.Sequential(fc=nn.Linear(2, 3), act=nn.ReLU()))
    assert named["fc"].params["weight"].shape == (3, 2)
    assert [m.layer for m in named] == [L.Linear(2, 3), L.relu]
    with pytest.raises(TypeError, match="not a Seq"):
        mlp[0][0]


def test_model_without_state_differentiates_whole():
    m = nn.pure.linear(2, 2, key=jax.random.key(0))
    assert jax.grad(lambda m: m(jnp.ones(2)).sum())(m).params["weight"].shape == (2, 2)


def test_copy_pickle_and_truthiness(mlp):
    import copy
    import pickle

    for clone in (copy.copy(mlp), copy.deepcopy(mlp), pickle.loads(pickle.dumps(mlp))):
        assert clone.layer == mlp.layer
        np.testing.assert_array_equal(clone.params[0]["weight"], mlp.params[0]["weight"])
    single = nn.pure.linear(2, 2, key=jax.random.key(0))
    assert bool(single) and bool(nn.run(0, nn.Sequential()))
    assert repr(jax.tree.map(lambda _: 0, mlp)).startswith("Model(Seq(")


def test_vmap_over_stacked_models_with_a_model_prefix(mlp):
    stacked = jax.tree.map(lambda a: jnp.stack([a, 2 * a]), mlp)
    x = jnp.ones((3, 4))
    ys = jax.vmap(lambda m, x: m(x), in_axes=(mlp.replace(params=0, state=None), None))(stacked, x)
    np.testing.assert_allclose(ys[0], mlp(x), rtol=1e-6)
    np.testing.assert_allclose(ys[1], mlp.replace(params=jax.tree.map(lambda a: 2 * a, mlp.params))(x), rtol=1e-6)


def test_keywords_reach_a_layer_that_takes_them():
    from dataclasses import dataclass

    from tlean import Layer

    @dataclass(frozen=True)
    class Masked(Layer):
        def apply(self, params, state, x, *, key=None, train=False, mask=None):
            return (x if mask is None else jnp.where(mask, x, 0.0)), state

    m = Model(Masked(), {}, {})
    np.testing.assert_array_equal(m(jnp.ones(3), mask=jnp.array([True, False, True])), [1.0, 0.0, 1.0])
    with pytest.raises(TypeError, match=r"unexpected keyword\(s\) \['maks'\]: it takes \['mask'\]"):
        m(jnp.ones(3), maks=None)


def test_untie_under_jit_gives_distinct_buffers():
    a = nn.pure.linear(3, 3, key=jax.random.key(0))
    tied = jax.jit(lambda a: a >> L.relu >> a)(a)
    assert tied.params[0]["weight"].unsafe_buffer_pointer() != tied.params[2]["weight"].unsafe_buffer_pointer()
    donated = jax.jit(lambda m: jax.tree.map(lambda v: v + 1, m), donate_argnums=0)(tied)
    np.testing.assert_allclose(donated.params[2]["weight"], a.params["weight"] + 1)


def test_composing_a_builder_says_to_build_it():
    m = nn.pure.relu()
    with pytest.raises(TypeError, match=r"a Builder is a recipe; build it first with nn.run"):
        m >> nn.Linear(2, 2)
    with pytest.raises(TypeError, match=r"build it with nn.pure.linear\(\.\.\., key=\.\.\.\)"):
        m >> L.Linear(2, 2)
