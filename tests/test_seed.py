"""The seed contract (DESIGN 1.3): one split per draw, one key per layer with params."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tlean import layers as L
from tlean import nn, seq
from tlean.seed import SeedStream, as_key, fresh, lift, run


def data(key):
    return np.asarray(jax.random.key_data(key))


def iterated_splits(seed, n):
    """The i-th key drawn by hand: key, sub = split(key), n times."""
    key, subs = jax.random.key(seed), []
    for _ in range(n):
        key, sub = jax.random.split(key)
        subs.append(sub)
    return subs


def draws(stream, n):
    keys = []
    for _ in range(n):
        k, stream = stream.fresh()
        keys.append(k)
    return keys


@given(st.integers(0, 2**31 - 1), st.integers(1, 5))
def test_ith_key_is_ith_split(seed, n):
    for ours, theirs in zip(draws(SeedStream(seed), n), iterated_splits(seed, n)):
        np.testing.assert_array_equal(data(ours), data(theirs))


def test_seed_forms_agree():
    typed = jax.random.key(7)
    legacy = jax.random.PRNGKey(7)
    for seed in (7, np.int32(7), jnp.int32(7), typed, legacy):
        np.testing.assert_array_equal(data(as_key(seed)), data(typed))


@pytest.mark.parametrize("bad", [1.5, "3", True, jnp.zeros((3,), jnp.uint32), jax.random.split(jax.random.key(0))])
def test_bad_seed_is_a_type_error(bad):
    with pytest.raises(TypeError, match="seed"):
        SeedStream(bad)


def test_builder_monad_laws():
    double = lambda v: lift(2 * v)
    draw_key = fresh()
    # left identity, and map draws nothing
    assert run(0, lift(3).bind(double)) == run(0, double(3))
    assert run(0, lift(3).map(lambda v: v + 1)) == 4
    # bind threads the stream: two draws give the first two keys
    both = draw_key.bind(lambda a: draw_key.map(lambda b: (a, b)))
    a, b = run(5, both)
    first, second = iterated_splits(5, 2)
    np.testing.assert_array_equal(data(a), data(first))
    np.testing.assert_array_equal(data(b), data(second))


def test_fresh_continuation_and_errors():
    value = run(1, fresh(lambda k: lift(jax.random.key_data(k))))
    np.testing.assert_array_equal(value, data(iterated_splits(1, 1)[0]))
    with pytest.raises(TypeError, match="must return a Builder"):
        run(0, fresh(lambda k: k))
    with pytest.raises(TypeError, match="recipe"):
        nn.Linear(2, 3)(jnp.ones(2))


MLP = lambda: nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.1), nn.Linear(8, 2))


def assert_trees_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)), a, b)


@given(st.integers(0, 2**31 - 1))
def test_sequential_equals_pure_from_keys_drawn_in_order(seed):
    k1, k2 = iterated_splits(seed, 2)  # two layers with params draw two keys; ReLU/Dropout none
    by_hand = nn.pure.linear(4, 8, key=k1) >> nn.pure.relu() >> nn.pure.dropout(0.1) >> nn.pure.linear(8, 2, key=k2)
    built = nn.run(seed, MLP())
    assert built.layer == by_hand.layer
    assert_trees_equal(built.params, by_hand.params)


def test_sequential_equals_seq_init():
    layer = seq(L.Linear(4, 8), L.relu, L.Dropout(0.1), L.Linear(8, 2))
    assert_trees_equal(layer.init(jax.random.key(3))[0], nn.run(3, MLP()).params)


def test_parameter_free_layers_never_shift_later_weights():
    plain = nn.run(0, nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2)))
    padded = nn.run(
        0, nn.Sequential(nn.ReLU(), nn.Linear(4, 8), nn.Tanh(), nn.Dropout(0.2), nn.Linear(8, 2), nn.Identity())
    )
    assert_trees_equal(plain.params[0], padded.params[1])
    assert_trees_equal(plain.params[1], padded.params[4])


def test_nested_sequential_threads_one_stream():
    nested = nn.run(2, nn.Sequential(nn.Linear(4, 8), nn.Sequential(nn.ReLU(), nn.Linear(8, 8)), nn.Linear(8, 2)))
    flat = nn.run(2, nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.Linear(8, 2)))
    assert_trees_equal(nested.params[1][1], flat.params[2])
    assert_trees_equal(nested.params[2], flat.params[3])
    assert_trees_equal(
        seq(L.Linear(4, 8), seq(L.relu, L.Linear(8, 8)), L.Linear(8, 2)).init(jax.random.key(2))[0], nested.params
    )


def test_run_eager_jit_bit_identical_and_eval_shape():
    eager = nn.run(11, MLP())
    jitted = jax.jit(lambda s: nn.run(s, MLP()))(11)
    jitted_key = jax.jit(lambda k: nn.run(k, MLP()))(jax.random.key(11))
    assert_trees_equal(eager.params, jitted.params)
    assert_trees_equal(eager.params, jitted_key.params)
    shapes = jax.eval_shape(lambda: nn.run(11, MLP()))
    assert jax.tree.map(lambda a: (a.shape, a.dtype), shapes.params) == jax.tree.map(
        lambda a: (a.shape, a.dtype), eager.params
    )


def test_manual_seed_reproduces():
    nn.manual_seed(42)
    a, b = nn.next_seed(), nn.fresh_seed()
    nn.manual_seed(42)
    np.testing.assert_array_equal(data(a), data(nn.next_seed()))
    np.testing.assert_array_equal(data(b), data(nn.next_seed()))
    first, _second = iterated_splits(42, 2)
    np.testing.assert_array_equal(data(a), data(first))
    nn.manual_seed(5)
    m1 = nn.run_global(MLP())
    assert_trees_equal(m1.params, nn.run(5, MLP()).params)
    nn.manual_seed(5)
    assert_trees_equal(nn.run_global(MLP()).params, m1.params)


def test_with_model_uses_next_global_seed():
    nn.manual_seed(9)
    count = nn.with_model(MLP(), lambda m: m.num_params())
    nn.manual_seed(9)
    model = nn.with_model(MLP(), lambda m: m)
    nn.manual_seed(9)
    expected = nn.run(nn.next_seed(), MLP())
    assert count == expected.num_params()
    assert_trees_equal(model.params, expected.params)


def test_global_stream_refuses_tracers():
    with pytest.raises(RuntimeError, match="global seed stream"):
        jax.jit(lambda s: nn.manual_seed(s))(3)
    with pytest.raises(RuntimeError, match="jax.jit"):
        jax.jit(lambda x: jax.random.key_data(nn.next_seed()))(1.0)
    with pytest.raises(RuntimeError, match="global seed stream"):
        jax.jit(lambda x: nn.run_global(MLP()).params[0]["weight"])(1.0)


def test_global_stream_refuses_every_transformation():
    with pytest.raises(RuntimeError, match="global seed stream"):
        jax.vmap(lambda x: jax.random.key_data(nn.next_seed()))(jnp.arange(3))
    with pytest.raises(RuntimeError, match="global seed stream"):
        jax.grad(lambda x: x * jax.random.key_data(nn.next_seed())[0])(1.0)
    with pytest.raises(RuntimeError, match="global seed stream"):
        jax.eval_shape(lambda: nn.next_seed())
    with pytest.raises(RuntimeError, match="global seed stream"):
        jax.lax.scan(lambda c, _: (c, jax.random.key_data(nn.next_seed())), 0, None, length=2)
    with pytest.raises(TypeError, match="run_global takes a Builder"):
        nn.run_global(L.relu)


def test_traced_legacy_key_and_stream_immutability():
    legacy = jax.random.PRNGKey(4)
    jitted = jax.jit(lambda k: nn.run(k, MLP()))(legacy)
    assert_trees_equal(jitted.params, nn.run(4, MLP()).params)
    with pytest.raises(AttributeError, match="immutable"):
        SeedStream(0).key = jax.random.key(1)
    with pytest.raises(ValueError, match="64 bits"):
        SeedStream(2**70)


def test_global_stream_is_safe_across_threads():
    """Two threads drawing 1000 keys each at the same time never draw the same key, and together they draw
    exactly the keys one thread drawing 2000 would (before: 77 of 200 keys were drawn twice); builds by
    run_global in two threads never build the same model."""
    import threading

    def draw_in_threads(work, threads=2):
        start = threading.Barrier(threads)
        out = [[] for _ in range(threads)]

        def worker(i):
            start.wait()
            out[i] = work()

        pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        return out

    nn.manual_seed(123)
    drawn = draw_in_threads(lambda: [data(nn.next_seed()).tobytes() for _ in range(1000)])
    both = drawn[0] + drawn[1]
    assert len(set(both)) == 2000
    nn.manual_seed(123)
    assert set(both) == {data(nn.next_seed()).tobytes() for _ in range(2000)}

    nn.manual_seed(7)
    built = draw_in_threads(lambda: [nn.run_global(MLP()) for _ in range(5)])
    weights = {np.asarray(m.params[0]["weight"]).tobytes() for models in built for m in models}
    assert len(weights) == 10  # ten builds, ten different models
