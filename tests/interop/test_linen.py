"""flax.linen interop: to_linen(layer) gives the layer's outputs and trains under linen's
init/apply (BatchNorm statistics in "batch_stats", dropout from the "dropout" rng);
from_linen(module) gives the module's outputs and trains with tlean.train."""

from __future__ import annotations

import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tlean import Model, nn, seq, train
from tlean import layers as L
from tlean.interop import LinenLayer, TleanModule, from_linen, to_linen


def cnn():
    return seq(
        L.Conv2d(1, 4, 3, padding=1), L.BatchNorm2d(4), L.relu, L.Dropout(0.25), L.Flatten(), L.Linear(4 * 5 * 5, 3)
    )


def batch(n=8, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 1, 5, 5)).astype(np.float32)
    return jnp.asarray(x), jnp.asarray((x.mean((1, 2, 3)) > 0).astype(np.int32) + (x[:, 0, 0, 0] > 1))


def assert_trees_equal(a, b, **tol):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(x, y, **tol) if tol else np.testing.assert_array_equal(x, y)


def test_to_linen_variables_carry_pytorch_names():
    module = to_linen(cnn())
    assert isinstance(module, TleanModule)
    variables = module.init(jax.random.key(0), batch()[0])
    assert sorted(variables) == ["batch_stats", "params"]
    assert jax.tree.map(jnp.shape, variables["params"]["0"]) == {"bias": (4,), "weight": (4, 1, 3, 3)}
    assert sorted(variables["batch_stats"]["1"]) == ["num_batches_tracked", "running_mean", "running_var"]
    params, state = module.unpack(variables)
    assert_trees_equal(module.pack(params, state), variables)


def test_to_linen_gives_the_layer_outputs():
    layer = cnn()
    params, state = layer.init(jax.random.key(1))
    module = to_linen(layer)
    x, _ = batch()
    assert_trees_equal(module.apply(module.pack(params, state), x), layer.apply(params, state, x)[0])
    # training mode: batch statistics and the running-stat update as the layer's own (linen derives the
    # dropout key from its rng, so compare the layer without Dropout)
    no_dropout = seq(*layer.layers[:3], *layer.layers[4:])
    params, state = params[:3] + params[4:], state[:3] + state[4:]
    module = to_linen(no_dropout)
    y, updates = module.apply(module.pack(params, state), x, train=True, mutable=["batch_stats"])
    want, want_state = no_dropout.apply(params, state, x, train=True)
    assert_trees_equal(y, want)
    assert_trees_equal(module.unpack({"params": module.pack(params)["params"], **updates})[1], want_state)


def test_to_linen_trains_under_linen_init_and_apply():
    module = to_linen(cnn())
    x, y = batch(32)
    variables = module.init(jax.random.key(0), x)
    params, stats = variables["params"], variables["batch_stats"]
    optimizer = optax.adam(1e-2)
    opt_state = optimizer.init(params)

    @jax.jit
    def step(params, stats, opt_state, key):
        def loss_fn(params):
            logits, updates = module.apply(
                {"params": params, "batch_stats": stats}, x, train=True, mutable=["batch_stats"], rngs={"dropout": key}
            )
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), updates["batch_stats"]

        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), stats, opt_state, loss

    losses = []
    for i in range(25):
        params, stats, opt_state, loss = step(params, stats, opt_state, jax.random.key(i))
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0]
    assert int(stats["1"]["num_batches_tracked"]) == 25
    assert step._cache_size() == 1
    eval_logits = module.apply({"params": params, "batch_stats": stats}, x)
    assert float(jnp.mean(jnp.argmax(eval_logits, -1) == y)) > 0.7


def test_to_linen_composes_inside_linen_modules():
    class Net(linen.Module):
        @linen.compact
        def __call__(self, x):
            x = to_linen(L.Linear(3, 8))(x)
            return linen.Dense(2)(jnp.tanh(x))

    variables = Net().init(jax.random.key(0), jnp.ones((4, 3)))
    assert jax.tree.map(jnp.shape, variables["params"]["TleanModule_0"]) == {"bias": (8,), "weight": (8, 3)}
    assert Net().apply(variables, jnp.ones((4, 3))).shape == (4, 2)


def test_to_linen_errors():
    with pytest.raises(TypeError, match="to_linen takes a tlean Layer, got Dense"):
        to_linen(linen.Dense(3))
    module = to_linen(L.Linear(3, 2))
    variables = module.init(jax.random.key(0), jnp.ones((1, 3)))
    with pytest.raises(TypeError, match=r"unexpected keyword\(s\) \['mask'\]"):
        module.apply(variables, jnp.ones((1, 3)), mask=None)
    with pytest.raises(ValueError, match="needs a dropout key"):  # train without a "dropout" rng
        to_linen(L.Dropout(0.5)).apply({}, jnp.ones((2,)), train=True)


class LinenNet(linen.Module):
    @linen.compact
    def __call__(self, x, train: bool = False):
        x = linen.Dense(16)(x)
        x = linen.BatchNorm(use_running_average=not train, momentum=0.9)(x)
        x = linen.Dropout(0.2, deterministic=not train)(linen.relu(x))
        return linen.Dense(3)(x)


def test_from_linen_gives_the_module_outputs():
    module = LinenNet()
    x = jnp.asarray(np.random.default_rng(0).normal(size=(8, 4)), jnp.float32)
    layer = from_linen(module, x, train_arg="train")
    assert isinstance(layer, LinenLayer) and layer == from_linen(
        LinenNet(), jax.ShapeDtypeStruct((8, 4), jnp.float32), train_arg="train"
    )
    assert hash(layer) == hash(from_linen(LinenNet(), x, train_arg="train"))
    params, state = layer.init(jax.random.key(0))
    variables = module.init({"params": jax.random.key(0)}, x)
    assert_trees_equal(params, variables["params"])
    assert_trees_equal(state, {"batch_stats": variables["batch_stats"]})
    assert_trees_equal(layer.apply(params, state, x)[0], module.apply(variables, x))
    key = jax.random.key(3)
    y, new_state = layer.apply(params, state, x, key=key, train=True)
    want, updates = module.apply(variables, x, train=True, mutable=["batch_stats"], rngs={"dropout": key})
    assert_trees_equal(y, want)
    assert_trees_equal(new_state, updates)
    assert "LinenLayer(LinenNet()" in repr(layer) and "\n" not in repr(layer)


def test_from_linen_trains_with_tlean_train():
    x = np.random.default_rng(1).normal(size=(64, 4)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int32)
    layer = from_linen(LinenNet(), x[:8], train_arg="train")
    model = nn.run(0, nn.build(layer)) >> nn.pure.identity()
    optimizer = optax.adam(1e-2)
    state = train.TrainState.create(model, optimizer, key=1)
    step = train.make_train_step(train.classification_loss, optimizer)
    batches = train.Minibatches((x, y), 16)
    losses = []
    for i in range(30):
        state, metrics = step(state, batches(i))
        losses.append(float(metrics["loss"]))
    assert step._cache_size() == 1
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5])
    assert not np.allclose(state.model.state[0]["batch_stats"]["BatchNorm_0"]["mean"], 0.0)
    assert train.evaluate(train.classification_loss, state.model, [(x, y)])["accuracy"] > 0.8


def test_linen_round_trip_through_both_wrappers():
    layer = seq(L.Linear(4, 6), L.LayerNorm(6), L.gelu, L.Linear(6, 2))
    wrapped = from_linen(to_linen(layer), jnp.ones((3, 4)), train_arg="train")
    params, state = wrapped.init(jax.random.key(0))
    inner_params, inner_state = to_linen(layer).unpack({"params": params})
    x = jnp.asarray(np.random.default_rng(2).normal(size=(5, 4)), jnp.float32)
    assert_trees_equal(wrapped.apply(params, state, x)[0], layer.apply(inner_params, inner_state, x)[0])
    assert isinstance(Model(wrapped, params, state), Model)


def test_from_linen_errors():
    with pytest.raises(TypeError, match="module must be a flax.linen Module, got Linear"):
        from_linen(L.Linear(3, 2), jnp.ones((1, 3)))
    with pytest.raises(ValueError, match="train_arg and deterministic_arg must differ"):
        from_linen(LinenNet(), jnp.ones((1, 4)), train_arg="train", deterministic_arg="train")
