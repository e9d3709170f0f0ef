"""verify.certify, verify.ibp_loss and verify.crown_ibp_loss."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tlean import nn, verify
from tlean.verify import _certify


def mlp(seed=0):
    return nn.run(seed, nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3)))


def test_margin_spec_rows_are_e_y_minus_e_j():
    spec = verify.margin_spec(jnp.array([0, 2]), 3)
    np.testing.assert_array_equal(spec[0], [[1, -1, 0], [1, 0, -1]])
    np.testing.assert_array_equal(spec[1], [[-1, 0, 1], [0, -1, 1]])


def test_certify_is_bounds_of_the_margins_and_sound():
    model = mlp()
    x = jax.random.normal(jax.random.key(0), (6, 4))
    y = model(x).argmax(-1)
    cert = verify.certify(model, x, y, 0.05, method="crown")
    lb, _ = verify.bounds(model, x - 0.05, x + 0.05, method="crown", spec=verify.margin_spec(y, 3))
    np.testing.assert_array_equal(cert.margin, lb)
    np.testing.assert_array_equal(cert.certified, (lb > 0).all(-1))
    # an adversary sampling the box never beats a certificate
    pts = x[None] + 0.05 * jax.random.uniform(jax.random.key(1), (256, 6, 4), minval=-1, maxval=1)
    flipped = (jax.vmap(model)(pts).argmax(-1) != y[None]).any(0)
    assert not bool((flipped & cert.certified).any())
    assert bool(verify.certify(model, x, y, 0.0).certified.all())


def test_certify_clips_the_box():
    model = mlp()
    x = jnp.full((2, 4), 0.99)
    y = model(x).argmax(-1)
    clipped = verify.certify(model, x, y, 0.1, method="ibp", clip=(0.0, 1.0)).margin
    lb, _ = verify.bounds(model, x - 0.1, jnp.ones_like(x), method="ibp", spec=verify.margin_spec(y, 3))
    np.testing.assert_allclose(clipped, lb, rtol=1e-6)


def test_certify_errors():
    model, x, y = mlp(), jnp.zeros((2, 4)), jnp.array([0, 1])
    with pytest.raises(ValueError, match=r"verify.certify: eps must be >= 0, got -0.1"):
        verify.certify(model, x, y, -0.1)
    with pytest.raises(ValueError, match="only norm='inf'"):
        verify.certify(model, x, y, 0.1, norm="2")
    with pytest.raises(ValueError, match=r"eps must be >= 0"):
        verify.ibp_loss(model, x, y, -1.0)


def test_train_mode_holds_the_clean_batch_statistics():
    """Train-mode bounds equal eval-mode bounds of the model whose running statistics are the batch's."""
    model = nn.run(0, nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3)))
    x = jax.random.uniform(jax.random.key(0), (5, 1, 4, 4))
    y = jnp.array([0, 1, 2, 0, 1])
    h = model[0](x)
    state = list(model.state)
    state[1] = dict(state[1], running_mean=h.mean((0, 2, 3)), running_var=h.var((0, 2, 3)))
    frozen = model.replace(state=tuple(state))
    spec = verify.margin_spec(y, 3)
    train = _certify._train_margins(model, x, x - 0.05, x + 0.05, spec, None)
    frozen_eval = _certify._eval_margins(frozen, x - 0.05, x + 0.05, spec)
    for a, b in zip(train, frozen_eval):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    _, new_state = verify.ibp_loss(model, x, y, 0.05)
    assert int(new_state[1]["num_batches_tracked"]) == 1
    np.testing.assert_allclose(new_state[1]["running_mean"], 0.1 * h.mean((0, 2, 3)), rtol=1e-5, atol=1e-7)
    grads = jax.grad(lambda p: verify.crown_ibp_loss(model.replace(params=p), x, y, 0.05, beta=0.5)[0])(model.params)
    assert all(bool(jnp.isfinite(g).all()) for g in jax.tree_util.tree_leaves(grads))


def test_eps_and_beta_are_traced():
    model = mlp()
    x, y = jax.random.normal(jax.random.key(0), (4, 4)), jnp.array([0, 1, 2, 0])
    f = jax.jit(lambda m, eps, beta: verify.crown_ibp_loss(m, x, y, eps, beta=beta)[0])
    losses = [float(f(model, jnp.float32(e), jnp.float32(b))) for e, b in [(0.0, 1.0), (0.1, 0.5), (0.3, 0.0)]]
    assert f._cache_size() == 1
    assert losses[0] < losses[1] < losses[2]  # wider boxes, looser margins, larger loss
    clean = optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()
    np.testing.assert_allclose(losses[0], clean, rtol=1e-5)  # eps 0: the clean cross-entropy


def test_ibp_training_raises_certified_accuracy():
    """A tiny budget: IBP training certifies more of three Gaussian blobs than normal training."""
    key = jax.random.key(0)
    centres = jnp.array([[0.0, 0.0, 0.0, 0.0], [1.5, 0.0, 0.0, 0.0], [0.0, 1.5, 0.0, 0.0]])
    y = jnp.arange(150) % 3
    x = centres[y] + 0.3 * jax.random.normal(key, (150, 4))
    eps = 0.3

    def train(robust: bool):
        model = mlp(1)
        opt = optax.adam(1e-2)
        state = opt.init(model.params)

        @jax.jit
        def step(model, state):
            def loss(params):
                m = model.replace(params=params)
                clean = optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean()
                return clean + verify.ibp_loss(m, x, y, eps)[0] if robust else clean

            g = jax.grad(loss)(model.params)
            updates, state = opt.update(g, state)
            return model.replace(params=optax.apply_updates(model.params, updates)), state

        for _ in range(100):
            model, state = step(model, state)
        return model

    normal, robust = train(False), train(True)
    certified = {
        name: float(verify.certify(m, x, y, eps, method="ibp").certified.mean())
        for name, m in (("normal", normal), ("ibp", robust))
    }
    assert certified["ibp"] > certified["normal"] + 0.2, certified
