"""Mamba: the associative scan against its sequential reference and a NumPy loop of the
docstring's equations; init; training on a delayed-copy task; bad input."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from absl.testing import parameterized
from hypothesis import given
from hypothesis import strategies as st

from tlean import ShapeError, nn
from tlean import layers as L
from tlean.layers._ssm import linear_recurrence


def mamba_numpy(params, x, h0=None):
    """The docstring's equations, one sequence ``x [seq, input]``, loops over time and channels, float64::

    u_t = W_in x_t;  dt_t = softplus(W_dt x_t + b_dt);  A = -exp(A_log)
    h_t = exp(dt_t * A) * h_{t-1} + dt_t * u_t;  y_t = (h_t + D * u_t) * silu(W_g x_t)
    """
    f = lambda v: np.asarray(v, np.float64)
    w_in, w_dt, b_dt = f(params["in_proj"]["weight"]), f(params["dt_proj"]["weight"]), f(params["dt_proj"]["bias"])
    w_g, a_log, d = f(params["gate_proj"]["weight"]), f(params["A_log"]), f(params["D"])
    x = f(x)
    hidden = w_in.shape[0]
    h = np.zeros(hidden) if h0 is None else f(h0).copy()
    y = np.zeros((x.shape[0], hidden))
    for t in range(x.shape[0]):
        for j in range(hidden):
            u = np.dot(w_in[j], x[t])
            dt = math.log1p(math.exp(np.dot(w_dt[j], x[t]) + b_dt[j]))
            a = -math.exp(a_log[j])
            h[j] = math.exp(dt * a) * h[j] + dt * u
            g = np.dot(w_g[j], x[t])
            y[t, j] = (h[j] + d[j] * u) * g / (1 + math.exp(-g))
    return y, h


def perturbed(params, seed=0, scale=0.3):
    """Params with every leaf moved off its init (D off 1, A_log off log(1..H)), so no term hides."""
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return jax.tree.unflatten(tree, [v + scale * jax.random.normal(k, v.shape) for k, v in zip(keys, leaves)])


def data(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


class MambaTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(("parallel", "parallel"), ("sequential", "sequential"))
    def test_matches_the_numpy_loop_of_the_equations(self, mode):
        layer = L.Mamba(3, 5, mode=mode)
        params = perturbed(layer.init(jax.random.key(0))[0])
        run = self.variant(lambda p, x, h0: layer.apply(p, {}, x, initial_state=h0, return_final=True)[0])
        x = data(9, 3)
        y, h = run(params, x, None)  # h_{-1} = 0
        ref_y, ref_h = mamba_numpy(params, x)
        np.testing.assert_allclose(y, ref_y, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(h, ref_h, rtol=1e-5, atol=1e-5)
        xb, h0 = data(9, 2, 3, seed=1), data(2, 5, seed=2)
        yb, hb = run(params, xb, h0)
        for b in range(2):
            ref_y, ref_h = mamba_numpy(params, xb[:, b], h0[b])
            np.testing.assert_allclose(yb[:, b], ref_y, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(hb[b], ref_h, rtol=1e-5, atol=1e-5)

    @chex.variants(with_jit=True, without_jit=True)
    def test_associative_scan_equals_sequential_in_value_and_gradient(self):
        parallel, sequential = L.Mamba(4, 6), L.Mamba(4, 6, mode="sequential")
        params = perturbed(parallel.init(jax.random.key(1))[0], seed=1)
        x, h0 = data(6, 2, 4, seed=3), data(2, 6, seed=4)  # lengths: see the property test below

        def loss(layer):
            def f(p, x, h0):
                y, h = layer.apply(p, {}, x, initial_state=h0, return_final=True)[0]
                return jnp.sum(jnp.sin(y)) + jnp.sum(h**2)  # non-uniform cotangents

            return self.variant(jax.value_and_grad(f, argnums=(0, 1, 2)))

        (v_par, g_par), (v_seq, g_seq) = loss(parallel)(params, x, h0), loss(sequential)(params, x, h0)
        np.testing.assert_allclose(v_par, v_seq, rtol=1e-5, atol=1e-5)
        chex.assert_trees_all_close(g_par, g_seq, rtol=1e-5, atol=1e-5)


@jax.jit
def _recurrence_value_and_grads(a, b, h0, w):
    """Value and gradient of a weighted sum of h, by the parallel and the sequential scan."""
    f = lambda mode: jax.value_and_grad(lambda a, b, h0: jnp.sum(w * linear_recurrence(a, b, h0, mode)), (0, 1, 2))
    return f("parallel")(a, b, h0), f("sequential")(a, b, h0)


@given(st.sampled_from([1, 2, 5, 8, 13, 32]), st.sampled_from([0, 2]), st.integers(0, 2**16))
def test_linear_recurrence_parallel_equals_sequential(seq, batch, seed):
    """Lengths odd, prime and powers of two (each level of the scan's recursion), an empty batch, and gradients."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.0, 1.0, (seq, batch, 3)).astype(np.float32)
    b, w = (rng.normal(size=(seq, batch, 3)).astype(np.float32) for _ in range(2))
    h0 = rng.normal(size=(batch, 3)).astype(np.float32)
    (v1, g1), (v2, g2) = _recurrence_value_and_grads(a, b, h0, w)
    np.testing.assert_allclose(v1, v2, rtol=1e-5, atol=1e-5)
    chex.assert_trees_all_close(g1, g2, rtol=1e-5, atol=1e-5)


def test_forward_mode_needs_the_sequential_reference():
    """The parallel scan's gradient is a custom VJP (reverse mode only), as documented."""
    x, v = data(4, 2), data(4, 2, seed=1)
    parallel, sequential = L.Mamba(2, 3), L.Mamba(2, 3, mode="sequential")
    params = parallel.init(jax.random.key(0))[0]
    with pytest.raises(TypeError, match="forward-mode autodiff"):
        jax.jit(lambda x, v: jax.jvp(lambda x: parallel.apply(params, {}, x)[0], (x,), (v,))).lower(x, v)
    tangent = jax.jit(lambda x, v: jax.jvp(lambda x: sequential.apply(params, {}, x)[0], (x,), (v,))[1])(x, v)
    jacobian = jax.jit(jax.jacrev(lambda x: parallel.apply(params, {}, x)[0]))(x)  # [4, 3, 4, 2]
    np.testing.assert_allclose(tangent, np.einsum("tjsi,si->tj", jacobian, v), rtol=1e-5, atol=1e-5)


def test_long_sequences_stay_finite_and_chunks_compose():
    """Decays underflow to 0 over 600 steps without NaN; two chunks with initial_state equal one run."""
    layer = L.Mamba(2, 8)
    params = layer.init(jax.random.key(0))[0]
    x = 3 * data(600, 2)
    y, grads = jax.jit(jax.value_and_grad(lambda p: jnp.sum(layer.apply(p, {}, x)[0])))(params)
    assert np.isfinite(y) and all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
    run = jax.jit(lambda x, h0: layer.apply(params, {}, x, initial_state=h0, return_final=True)[0])
    whole, _ = run(x[:32], jnp.zeros(8))
    first, h = run(x[:16], jnp.zeros(8))
    second, _ = run(x[16:32], h)
    np.testing.assert_allclose(np.concatenate([first, second]), whole, rtol=1e-5, atol=1e-5)


def test_batch_first_and_time_major_agree():
    params = L.Mamba(3, 4).init(jax.random.key(0))[0]
    x = data(6, 2, 3)
    time_major = jax.jit(L.Mamba(3, 4).apply)(params, {}, x)[0]
    batch_first = jax.jit(L.Mamba(3, 4, batch_first=True).apply)(params, {}, np.swapaxes(x, 0, 1))[0]
    np.testing.assert_allclose(np.swapaxes(batch_first, 0, 1), time_major, rtol=1e-6, atol=1e-6)
    assert L.Mamba(3, 4).apply(params, {}, jnp.zeros((0, 3)))[0].shape == (0, 4)


def test_init_as_documented():
    hidden, inputs = 400, 25
    model = nn.pure.mamba(inputs, hidden, key=jax.random.key(0))
    params = model.params
    assert model.state == {}
    assert jax.tree.map(jnp.shape, params) == {
        "in_proj": {"weight": (hidden, inputs)},
        "dt_proj": {"weight": (hidden, inputs), "bias": (hidden,)},
        "gate_proj": {"weight": (hidden, inputs)},
        "A_log": (hidden,),
        "D": (hidden,),
    }
    np.testing.assert_allclose(np.exp(params["A_log"]), np.arange(1, hidden + 1), rtol=1e-6)
    np.testing.assert_array_equal(params["D"], np.ones(hidden))
    for name in ("in_proj", "dt_proj", "gate_proj"):
        w = np.asarray(params[name]["weight"])
        assert np.abs(w).max() <= 1 / math.sqrt(inputs) and w.std() > 0.9 / math.sqrt(3 * inputs)
    dt = np.asarray(jax.nn.softplus(params["dt_proj"]["bias"]))
    assert 1e-3 <= dt.min() < 1.3e-3 and 0.08 < dt.max() <= 1e-1 + 1e-7  # log-uniform over [1e-3, 1e-1]
    np.testing.assert_allclose(np.median(np.log(dt)), np.log(1e-2), atol=0.3)
    assert sorted(model.named_parameters()) == [
        "A_log",
        "D",
        "dt_proj.bias",
        "dt_proj.weight",
        "gate_proj.weight",
        "in_proj.weight",
    ]


def copy_batch(key, seq=16, batch=32):
    """Delayed copy: y_t = x_{t-1}. y_t is independent of x_t, so any loss below var(y) needs the state."""
    x = jax.random.normal(key, (seq, batch, 1))
    return x, jnp.concatenate([jnp.zeros((1, batch, 1)), x[:-1]])


def test_trains_on_a_delayed_copy_task():
    model = nn.run(0, nn.Sequential(nn.Linear(1, 16), nn.Mamba(16, 16), nn.Linear(16, 1)))
    opt = optax.adam(1e-2)

    @jax.jit
    def loss_fn(params, x, y):
        return jnp.mean((model.replace(params=params)(x) - y) ** 2)

    @jax.jit
    def step(params, opt_state, key):
        loss, grads = jax.value_and_grad(loss_fn)(params, *copy_batch(key))
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    params, opt_state = model.params, opt.init(model.params)
    x_eval, y_eval = copy_batch(jax.random.key(999), batch=256)
    before = loss_fn(params, x_eval, y_eval)
    for i in range(50):
        params, opt_state, _ = step(params, opt_state, jax.random.key(i))
    after = loss_fn(params, x_eval, y_eval)
    baseline = jnp.mean(y_eval**2)  # the best loss of any model without memory
    assert after < 0.8 * before and after < 0.8 * baseline, (before, after, baseline)


def test_bad_input_and_config():
    layer = L.Mamba(3, 4)
    params = layer.init(jax.random.key(0))[0]
    with pytest.raises(
        ShapeError,
        match=r"Mamba\(input_size=3, hidden_size=4\): expected input \(seq, 3\) or \(seq, batch, input\) with input=3, got shape \(5, 2\)",
    ):
        layer.apply(params, {}, jnp.ones((5, 2)))
    with pytest.raises(ShapeError, match=r"got shape \(3,\)"):
        layer.apply(params, {}, jnp.ones((3,)))
    with pytest.raises(ShapeError, match=r"\(batch, seq, input\) with input=3, got shape \(1, 2, 5, 3\)"):
        L.Mamba(3, 4, batch_first=True).apply(params, {}, jnp.ones((1, 2, 5, 3)))
    with pytest.raises(
        ShapeError, match=r"Mamba\(.*\): expected initial_state h \(\[batch,\] hidden\) = \(2, 4\), got shape \(4,\)"
    ):
        layer.apply(params, {}, jnp.ones((5, 2, 3)), initial_state=jnp.zeros(4))
    with pytest.raises(TypeError, match=r"expected a floating-point input, got int32"):
        layer.apply(params, {}, jnp.ones((5, 3), jnp.int32))
    with pytest.raises(ValueError, match=r"Mamba: mode must be 'parallel' or 'sequential', got 'fast'"):
        L.Mamba(3, 4, mode="fast")
    with pytest.raises(ValueError, match=r"Mamba: hidden_size must be a positive int, got 0"):
        L.Mamba(3, 0)
    with pytest.raises(ValueError, match=r"Mamba: batch_first must be a bool"):
        L.Mamba(3, 4, batch_first=1)
