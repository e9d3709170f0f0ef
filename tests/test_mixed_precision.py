"""Mixed precision: bfloat16 compute with float32 master weights, float32 statistics.

Every layer of the registry with weights and a ``dtype`` field is checked with
``dtype=jnp.bfloat16``: its params stay float32, its output is bfloat16 and within bf16
tolerance of the float32 layer on the same params, its gradients are float32. Norms,
softmax (alone and inside attention) and the loss reduce in float32: the jaxpr is
inspected for reductions over bfloat16 operands. A bf16 MLP trains with optax (float32
master weights and optimiser state) and the loss goes down.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tests.registry import CASES
from tlean import layers as L
from tlean import nn, train

BF16 = jnp.bfloat16


def _has_dtype(layer) -> bool:
    return dataclasses.is_dataclass(layer) and any(f.name == "dtype" for f in dataclasses.fields(layer))


# Layers built from other registered layers: their dtype plumbing is checked by tracing
# only (jax.eval_shape), their parts are run by the full check.
COMPOSITES = {"TransformerEncoderBlock", "BasicBlock"}


def _weighted_cases(composites: bool):
    """One registry case per layer class with weights and a ``dtype`` (the first, simplest one)."""
    seen, out = set(), []
    for case in CASES:
        layer = case.make()
        kind = type(layer).__name__
        if (
            case.bf16
            and kind not in seen
            and type(layer).__module__.startswith("tlean.layers")
            and _has_dtype(layer)
            and layer.has_params
            and (kind in COMPOSITES) == composites
        ):
            seen.add(kind)
            out.append(case)
    return out


WEIGHTED = _weighted_cases(composites=False)
COMPOSED = _weighted_cases(composites=True)


def _input(case, seed: int = 1):
    if case.integer_input is not None:
        return jax.random.randint(jax.random.key(seed), case.input_shape, 0, case.integer_input)
    return jax.random.normal(jax.random.key(seed), case.input_shape, jnp.float32)


def _dtype(leaf):
    return leaf.dtype


def _floats(tree):
    return [leaf for leaf in jax.tree.leaves(tree) if jnp.issubdtype(leaf.dtype, jnp.floating)]


def test_every_layer_with_weights_is_covered():
    names = {type(c.make()).__name__ for c in WEIGHTED + COMPOSED}
    assert {"Linear", "LayerNorm", "RMSNorm", "LSTM", "GRU", "RNN"} <= names
    assert {"Conv2d", "BatchNorm2d", "MultiheadAttention", "TransformerEncoderBlock", "Embedding"} <= names


@pytest.mark.parametrize("case", WEIGHTED, ids=lambda c: type(c.make()).__name__)
def test_bf16_compute_with_float32_params(case):
    """dtype=bf16: params float32, outputs bf16 and close to float32, gradients float32."""
    layer32 = dataclasses.replace(case.make(), dtype=jnp.float32)
    layer16 = dataclasses.replace(case.make(), dtype=BF16)
    params, state = layer16.init(jax.random.key(0))
    assert all(leaf.dtype == jnp.float32 for leaf in _floats(params)), "params must stay float32"
    assert jax.tree.map(_dtype, layer32.init(jax.random.key(0))) == jax.tree.map(_dtype, (params, state))
    x = _input(case)

    def loss(p, layer):
        y, new_state = layer.apply(p, state, x, **case.apply_kwargs)
        total = sum(jnp.sum(jnp.square(leaf.astype(jnp.float32))) for leaf in _floats(y))
        return total, (y, new_state)

    both = jax.jit(lambda p: (jax.value_and_grad(loss, has_aux=True)(p, layer16), loss(p, layer32)))  # one compile
    ((_, (y16, state16)), grads), (_, (y32, _)) = both(params)
    assert all(leaf.dtype == BF16 for leaf in _floats(y16)), f"outputs {jax.tree.map(_dtype, y16)}"
    assert jax.tree.map(_dtype, state16) == jax.tree.map(_dtype, state), "state keeps its dtypes"
    for a, b in zip(_floats(y16), _floats(y32)):
        a, b = np.asarray(a, np.float32), np.asarray(b)
        scale = max(1.0, float(np.abs(b).max()))
        # bf16 keeps 8 significant bits (relative rounding 2**-8 ~ 0.4%); a few roundings
        # per layer stay within a few percent of the output's scale.
        np.testing.assert_allclose(a, b, atol=0.03 * scale, rtol=0.03)
    assert jax.tree.map(_dtype, grads) == jax.tree.map(_dtype, params)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
    assert any(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(grads))


@pytest.mark.parametrize("case", COMPOSED, ids=lambda c: type(c.make()).__name__)
def test_bf16_dtypes_of_composite_layers(case):
    """Traced only: params float32, output bf16, gradients float32."""
    layer = dataclasses.replace(case.make(), dtype=BF16)
    params, state = jax.eval_shape(layer.init, jax.random.key(0))
    assert all(leaf.dtype == jnp.float32 for leaf in _floats(params))
    x = jax.ShapeDtypeStruct(case.input_shape, jnp.float32)
    y, new_state = jax.eval_shape(lambda p, s, x: layer.apply(p, s, x, **case.apply_kwargs), params, state, x)
    assert all(leaf.dtype == BF16 for leaf in _floats(y))
    assert jax.tree.map(_dtype, new_state) == jax.tree.map(_dtype, state)
    loss = lambda p, s, x: jnp.sum(layer.apply(p, s, x, **case.apply_kwargs)[0].astype(jnp.float32))
    grads = jax.eval_shape(jax.grad(loss), params, state, x)
    assert jax.tree.map(_dtype, grads) == jax.tree.map(_dtype, params)


@pytest.mark.parametrize("case", WEIGHTED + COMPOSED, ids=lambda c: type(c.make()).__name__)
def test_param_dtype_sets_storage(case):
    layer = dataclasses.replace(case.make(), param_dtype=BF16)
    params, _ = jax.eval_shape(layer.init, jax.random.key(0))
    assert _floats(params) and all(leaf.dtype == BF16 for leaf in _floats(params))


@pytest.mark.parametrize("case", WEIGHTED + COMPOSED, ids=lambda c: type(c.make()).__name__)
def test_integer_dtypes_are_refused_naming_the_layer(case):
    layer = case.make()
    for field in ("dtype", "param_dtype"):
        with pytest.raises(ValueError, match=rf"^{type(layer).__name__}: {field} must be a floating dtype"):
            dataclasses.replace(layer, **{field: jnp.int32})


# -- statistics in float32 -----------------------------------------------------------------
_REDUCTIONS = {"reduce_sum", "reduce_max", "reduce_min", "reduce_prod", "argmax", "argmin", "cumsum", "cumlogsumexp"}


def _reduced_dtypes(closed_jaxpr) -> list:
    """The dtypes of the operands of every reduction in a jaxpr, sub-jaxprs included."""
    found = []

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name in _REDUCTIONS:
                found.extend(v.aval.dtype for v in eqn.invars)
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                walk(sub)

    walk(closed_jaxpr.jaxpr)
    return found


STATISTICS = [
    ("LayerNorm", lambda: L.LayerNorm(8, dtype=BF16), (2, 5, 8), {}),
    ("RMSNorm", lambda: L.RMSNorm(8, dtype=BF16), (2, 5, 8), {}),
    ("Softmax", lambda: L.Softmax(-1), (2, 5, 8), {}),
    ("BatchNorm2d-train", lambda: L.BatchNorm2d(3, dtype=BF16), (2, 3, 4, 4), {"train": True}),
    ("InstanceNorm2d", lambda: L.InstanceNorm2d(3, dtype=BF16), (2, 3, 4, 4), {}),
    ("MultiheadAttention", lambda: L.MultiheadAttention(8, 2, dtype=BF16), (2, 5, 8), {}),
    ("TransformerEncoder", lambda: L.TransformerEncoder.of(2, 8, 2, 16, dropout=0.0, dtype=BF16), (2, 5, 8), {}),
]


@pytest.mark.parametrize("name,make,shape,kwargs", STATISTICS, ids=[s[0] for s in STATISTICS])
def test_norms_and_softmax_reduce_in_float32(name, make, shape, kwargs):
    layer = make()
    params, state = jax.eval_shape(layer.init, jax.random.key(0))
    x = jax.ShapeDtypeStruct(shape, BF16)
    jaxpr, (y, new_state) = jax.make_jaxpr(lambda p, s, x: layer.apply(p, s, x, **kwargs), return_shape=True)(
        params, state, x
    )
    dtypes = _reduced_dtypes(jaxpr)
    assert dtypes, "expected the layer to reduce (mean, variance or softmax)"
    assert all(d == jnp.float32 for d in dtypes), f"{name} reduces over {sorted(set(map(str, dtypes)))}"
    assert y.dtype == BF16
    assert jax.tree.map(_dtype, new_state) == jax.tree.map(_dtype, state)  # running stats stay float32


def test_loss_is_float32_on_bf16_logits():
    model = nn.run(0, nn.Linear(8, 4, dtype=BF16))
    batch = (jnp.ones((6, 8)), jnp.zeros((6,), jnp.int32))
    jaxpr = jax.make_jaxpr(lambda m: train.classification_loss(m, batch, key=None, train=False)[0])(model)
    assert all(d == jnp.float32 for d in _reduced_dtypes(jaxpr))
    loss, _ = train.classification_loss(model, batch, key=None, train=False)
    assert loss.dtype == jnp.float32


# -- training --------------------------------------------------------------------------------
def _mlp():
    return nn.Sequential(nn.Linear(12, 32, dtype=BF16), nn.ReLU(), nn.Linear(32, 4, dtype=BF16)), (16, 12)


MODELS = {"mlp": _mlp}


@pytest.mark.parametrize("name", list(MODELS))
def test_bf16_model_trains_with_float32_master_weights(name):
    builder, shape = MODELS[name]()
    model = nn.run(0, builder)
    rng = np.random.default_rng(0)
    batch = (rng.standard_normal(shape).astype(np.float32), rng.integers(0, 4, shape[0]).astype(np.int32))
    optimizer = optax.adam(3e-2)
    state = train.TrainState.create(model, optimizer)
    step = train.make_train_step(train.classification_loss, optimizer)
    losses = []
    for _ in range(8):
        state, metrics = step(state, batch)
        assert metrics["loss"].dtype == jnp.float32
        losses.append(float(metrics["loss"]))
    assert losses[-1] < 0.85 * losses[0], losses
    assert all(leaf.dtype == jnp.float32 for leaf in _floats(state.model.params))
    assert all(leaf.dtype == jnp.float32 for leaf in _floats(state.opt_state))
    logits = state.model(jnp.asarray(batch[0]))
    assert logits.dtype == BF16
