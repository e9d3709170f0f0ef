"""The PyTorch-style shim: builders, nn.pure, nn.Sequential."""

import inspect
from collections import OrderedDict

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tlean import Builder, Model, nn
from tlean import layers as L


def test_builders_have_the_layer_signature_and_docs():
    assert list(inspect.signature(nn.Linear).parameters)[:3] == ["in_features", "out_features", "bias"]
    assert "torch.nn.Linear" in nn.Linear.__doc__
    assert "key" in inspect.signature(nn.pure.linear).parameters
    assert (
        isinstance(nn.Linear(2, 3), Builder)
        and repr(nn.Linear(2, 3)) == "Builder(Linear(in_features=2, out_features=3))"
    )


def test_every_builder_draws_one_key_iff_the_layer_has_params():
    stream = nn.SeedStream(0)
    for builder, draws in [
        (nn.Linear(2, 3), 1),
        (nn.LayerNorm(3), 1),
        (nn.ReLU(), 0),
        (nn.Dropout(0.2), 0),
        (nn.Flatten(), 0),
    ]:
        _, after = builder.fn(stream)
        expected = stream
        for _ in range(draws):
            _, expected = expected.fresh()
        np.testing.assert_array_equal(jax.random.key_data(after.key), jax.random.key_data(expected.key))


def test_pure_needs_a_key_only_with_params():
    with pytest.raises(
        TypeError, match=r"nn.pure.linear: Linear\(in_features=2, out_features=3\) has parameters and needs key="
    ):
        nn.pure.linear(2, 3)
    assert isinstance(nn.pure.relu(), Model)
    m = nn.pure.linear(2, 3, key=jax.random.key(1))
    np.testing.assert_array_equal(m.params["weight"], L.Linear(2, 3).init(jax.random.key(1))[0]["weight"])


def test_sequential_accepts_builders_models_and_bare_layers():
    fixed = nn.pure.linear(8, 2, key=jax.random.key(7))
    model = nn.run(0, nn.Sequential(nn.Linear(4, 8), L.relu, fixed))
    assert model.params[2] is fixed.params or np.array_equal(model.params[2]["weight"], fixed.params["weight"])
    np.testing.assert_array_equal(model.params[0]["weight"], nn.run(0, nn.Linear(4, 8)).params["weight"])
    with pytest.raises(
        TypeError, match=r"child 1 is the bare layer Linear\(in_features=8, out_features=2\), which has parameters"
    ):
        nn.Sequential(nn.Linear(4, 8), L.Linear(8, 2))
    with pytest.raises(TypeError, match="child 0 must be a Builder, a Model or a parameter-free Layer, got str"):
        nn.Sequential("relu")


def test_sequential_named_children_and_ordered_dict():
    kw = nn.run(0, nn.Sequential(fc1=nn.Linear(4, 8), act=nn.ReLU(), fc2=nn.Linear(8, 2)))
    od = nn.run(0, nn.Sequential(OrderedDict([("fc1", nn.Linear(4, 8)), ("act", nn.ReLU()), ("fc2", nn.Linear(8, 2))])))
    positional = nn.run(0, nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)))
    assert sorted(kw.named_parameters()) == ["fc1.bias", "fc1.weight", "fc2.bias", "fc2.weight"]
    assert kw.layer == od.layer and kw.layer.names == ("fc1", "act", "fc2")
    np.testing.assert_array_equal(kw.params["fc2"]["weight"], positional.params[2]["weight"])
    np.testing.assert_allclose(kw(jnp.ones((1, 4))), positional(jnp.ones((1, 4))))


def test_sequential_len_iter_slice():
    s = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    assert len(s) == 3 and len(list(s)) == 3
    head = nn.run(0, s[:2])
    assert len(head) == 2 and head(jnp.ones((1, 4))).shape == (1, 8)
    named = nn.Sequential(a=nn.ReLU(), b=nn.Tanh())
    assert named["b"] is named[1] and named[1:].names == ("b",)


def test_the_issue_example_runs():
    x = jnp.ones((16, 784))
    model = nn.run(0, nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Dropout(0.1), nn.Linear(256, 10)))
    logits = jax.jit(lambda m, x: m(x))(model, x)
    loss = lambda m: jnp.mean(jax.nn.log_softmax(m(x))[:, 0])
    grads = jax.grad(loss)(model)
    assert logits.shape == (16, 10) and grads.params[0]["weight"].shape == (256, 784)
