"""RNN, GRU and LSTM against torch.nn.RNN/GRU/LSTM with PyTorch's weights under PyTorch's names."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from absl.testing import parameterized
from hypothesis import given
from hypothesis import strategies as st

from tlean import SeedStream, ShapeError, nn
from tlean import layers as L
from tests.torch_utils import load, n, t

# name -> (PyTorch class name, extra constructor arguments)
KINDS = {
    "RNN-tanh": ("RNN", {"nonlinearity": "tanh"}),
    "RNN-relu": ("RNN", {"nonlinearity": "relu"}),
    "GRU": ("GRU", {}),
    "LSTM": ("LSTM", {}),
}
NAMED_KINDS = [(k, k) for k in KINDS]


def build(kind, input_size=3, hidden_size=4, seed=0, **config):
    """A torch module and the tlean Model loaded with its weights by PyTorch's names."""
    cls, extra = KINDS[kind]
    torch.manual_seed(seed)
    module = getattr(torch.nn, cls)(input_size, hidden_size, **extra, **config)
    pure = getattr(nn.pure, cls.lower())
    return module, load(pure(input_size, hidden_size, **extra, **config, key=jax.random.key(seed)), module)


def data(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def initial(kind, shape, seed=1):
    """h0, or (h0, c0) for LSTM, of ``shape`` = (num_layers, [batch,] hidden)."""
    h0 = data(*shape, seed=seed)
    return (h0, data(*shape, seed=seed + 1)) if kind == "LSTM" else h0


def close(ours, theirs, tol=1e-5):
    jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), n(b), rtol=tol, atol=tol), ours, theirs)


def to_torch(tree):
    return jax.tree.map(t, tree)


CONFIGS = [  # (config, input shape): the unbatched time-major form; batch_first, stacked, without bias
    ({}, (6, 3)),  # (the batched time-major form is in test_property_matches_torch_over_shapes)
    ({"batch_first": True, "num_layers": 2, "bias": False}, (2, 6, 3)),
]


def state_shape(config, shape, hidden=4):
    batch = () if len(shape) == 2 else (shape[0] if config.get("batch_first") else shape[1],)
    return (config.get("num_layers", 1), *batch, hidden)


class RecurrentParityTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*NAMED_KINDS)
    def test_outputs_final_state_and_gradients_match_torch(self, kind):
        """Outputs (zero and given initial state), final state, and d/d(inputs, initial state,
        every weight) of sum(w * outputs) + sum(final), against torch's forward and autograd."""

        def run(params, x, s0, w):
            model_ = model.replace(params=params)
            out, final = model_(x, initial_state=s0, return_final=True)
            loss = jnp.sum(w * out) + sum(jnp.sum(f) for f in jax.tree.leaves(final))
            return loss, (model_(x), out, final)

        for config, shape in CONFIGS:
            module, model = build(kind, **config)
            x, s0, w = data(*shape), initial(kind, state_shape(config, shape)), data(*shape[:-1], 4, seed=7)
            (_, (out_zero, out, final)), grads = self.variant(jax.value_and_grad(run, (0, 1, 2), has_aux=True))(
                model.params, x, s0, w)
            with torch.no_grad():
                close(out_zero, module(torch.from_numpy(x))[0])  # initial_state=None means zeros
            xt, st = t(x), to_torch(s0)
            expected_out, expected_final = module(xt, st)
            close(out, expected_out)
            close(final, expected_final)  # h_n, or (h_n, c_n), shaped (num_layers, [batch,] hidden)
            torch_finals = expected_final if kind == "LSTM" else (expected_final,)
            ((torch.from_numpy(w) * expected_out).sum() + sum(f.sum() for f in torch_finals)).backward()
            g_params, g_x, g_s0 = grads
            close(g_x, xt.grad)
            close(g_s0, jax.tree.map(lambda s: s.grad, st))
            assert set(g_params) == {name for name, _ in module.named_parameters()}
            for name, p in module.named_parameters():
                close(g_params[name], p.grad)


@given(
    st.sampled_from(sorted(KINDS)), st.integers(1, 4), st.integers(1, 5), st.integers(1, 2), st.integers(1, 6),
    st.sampled_from([None, 1, 3]), st.booleans(), st.booleans(), st.booleans(), st.integers(0, 1000),
)
def test_property_matches_torch_over_shapes(kind, input_size, hidden, layers, seq, batch, batch_first, bias, h0, seed):
    """Any sizes, unbatched and batched (time-major or batch_first), with or without an initial state."""
    config = {"num_layers": layers, "batch_first": batch_first, "bias": bias}
    module, model = build(kind, input_size, hidden, seed=seed, **config)
    shape = (seq, input_size) if batch is None else ((batch, seq, input_size) if batch_first else (seq, batch, input_size))
    x = 2 * data(*shape, seed=seed)
    s0 = initial(kind, (layers, *(() if batch is None else (batch,)), hidden), seed=seed + 1) if h0 else None
    out, final = jax.jit(lambda m, x, s0: m(x, initial_state=s0, return_final=True))(model, x, s0)
    with torch.no_grad():
        expected_out, expected_final = module(torch.from_numpy(x), None if s0 is None else jax.tree.map(torch.from_numpy, s0))
    close(out, expected_out, 2e-5)
    close(final, expected_final, 2e-5)


@pytest.mark.parametrize("cls", ["RNN", "GRU", "LSTM"])
def test_init_has_torch_names_shapes_and_distribution(cls):
    """Every weight and bias ~ U(-1/sqrt(hidden), 1/sqrt(hidden)), as PyTorch's reset_parameters."""
    hidden = 64
    for layers, bias in [(1, False), (3, True)]:  # names and shapes
        module = getattr(torch.nn, cls)(10, hidden, num_layers=layers, bias=bias)
        shapes = jax.eval_shape(getattr(L, cls)(10, hidden, num_layers=layers, bias=bias).init, jax.random.key(0))
        assert jax.tree.map(lambda a: a.shape, shapes) == ({k: tuple(v.shape) for k, v in module.state_dict().items()}, {})
    ours = jax.jit(getattr(L, cls)(10, hidden, num_layers=2).init)(jax.random.key(3))[0]
    bound = 1 / np.sqrt(hidden)
    for name, value in ours.items():
        value = np.asarray(value)
        assert value.dtype == np.float32 and np.abs(value).max() <= bound, name
        if value.size > 1000:  # std of U(-b, b) is b / sqrt(3)
            np.testing.assert_allclose(value.std(), bound / np.sqrt(3), rtol=0.05, err_msg=name)
    values = [np.asarray(v) for v in ours.values()]
    assert all(not np.array_equal(a[: len(b)], b[: len(a)]) for i, a in enumerate(values) for b in values[i + 1:])


@pytest.mark.parametrize("cls", ["RNN", "GRU", "LSTM"])
def test_builders_draw_one_key(cls):
    model = nn.run(5, getattr(nn, cls)(3, 4, num_layers=2))
    expected = getattr(L, cls)(3, 4, num_layers=2).init(SeedStream(5).fresh()[0])[0]
    chex.assert_trees_all_equal(model.params, expected)
    assert model.layer == getattr(L, cls)(3, 4, 2)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_the_time_loop_is_one_scan_per_layer(kind):
    """The traced program does not grow with the sequence length: one lax.scan per layer."""
    layer = build(kind, num_layers=2)[1].layer
    params = layer.init(jax.random.key(0))[0]

    def program(seq):
        jaxpr = jax.make_jaxpr(lambda p, x: jax.grad(lambda p: jnp.sum(layer.apply(p, {}, x)[0]))(p))(
            params, jnp.ones((seq, 2, 3)))
        scans = [e for e in jaxpr.eqns if e.primitive.name == "scan"]
        return len(jaxpr.eqns), [e.params["length"] for e in scans]

    short, long = program(8), program(512)
    assert short[0] == long[0]
    assert short[1] == [8] * 4 and long[1] == [512] * 4  # forward and backward scan for each of 2 layers


def test_dropout_between_layers():
    layer = L.LSTM(3, 4, num_layers=2, dropout=0.5)
    params = layer.init(jax.random.key(0))[0]
    x, key = data(6, 2, 3), jax.random.key(9)
    eval_out = layer.apply(params, {}, x)[0]
    np.testing.assert_array_equal(layer.apply(params, {}, x, train=False, key=key)[0], eval_out)
    with pytest.raises(ValueError, match=r"LSTM\(.*dropout=0.5\) in train mode needs a dropout key"):
        layer.apply(params, {}, x, train=True)
    train_out = layer.apply(params, {}, x, train=True, key=key)[0]
    np.testing.assert_array_equal(train_out, layer.apply(params, {}, x, train=True, key=key)[0])
    assert not np.allclose(train_out, eval_out)
    # by hand: layer 0, inverted dropout with the key fold_in(key, 1) on its outputs, then layer 1
    first = {k[:-1] + "0": v for k, v in params.items() if k.endswith("l0")}
    second = {k[:-1] + "0": v for k, v in params.items() if k.endswith("l1")}
    h = L.LSTM(3, 4).apply(first, {}, x)[0]
    keep = jax.random.bernoulli(jax.random.fold_in(key, 1), 0.5, h.shape)
    expected = L.LSTM(4, 4).apply(second, {}, jnp.where(keep, h / 0.5, 0.0))[0]
    np.testing.assert_allclose(train_out, expected, rtol=1e-6, atol=1e-6)
    one_layer = L.GRU(3, 4, dropout=0.5)  # as in PyTorch, dropout acts only between layers
    p1 = one_layer.init(jax.random.key(0))[0]
    np.testing.assert_array_equal(one_layer.apply(p1, {}, x, train=True)[0], one_layer.apply(p1, {}, x)[0])


@pytest.mark.parametrize("dtype,param_dtype", [(jnp.bfloat16, jnp.float32), (None, jnp.bfloat16)])
def test_dtype_and_param_dtype(dtype, param_dtype):
    layer = L.LSTM(3, 4, dtype=dtype, param_dtype=param_dtype)
    params = layer.init(jax.random.key(0))[0]
    assert all(v.dtype == jnp.dtype(param_dtype) for v in params.values())
    x = data(5, 2, 3)
    out, (h, c) = layer.apply(params, {}, x, return_final=True)[0]
    expected = jnp.dtype(dtype) if dtype else jnp.result_type(x, params["weight_ih_l0"])  # as flax
    assert out.dtype == h.dtype == c.dtype == expected
    reference = L.LSTM(3, 4).apply(jax.tree.map(lambda v: v.astype(jnp.float32), params), {}, x)[0]
    np.testing.assert_allclose(np.asarray(out, np.float32), reference, atol=3e-2)


def test_bad_input_and_config():
    lstm, gru = L.LSTM(3, 4, num_layers=2), L.GRU(3, 4, batch_first=True)
    p_lstm, p_gru = lstm.init(jax.random.key(0))[0], gru.init(jax.random.key(0))[0]
    with pytest.raises(ShapeError, match=r"LSTM\(input_size=3, hidden_size=4, num_layers=2\): expected input "
                                         r"\(seq, 3\) or \(seq, batch, input\) with input=3, got shape \(5, 2, 7\)"):
        lstm.apply(p_lstm, {}, jnp.ones((5, 2, 7)))
    with pytest.raises(ShapeError, match=r"GRU\(.*batch_first=True\): expected input \(seq, 3\) or \(batch, seq, input\) "
                                         r"with input=3, got shape \(3,\)"):
        gru.apply(p_gru, {}, jnp.ones((3,)))
    with pytest.raises(ShapeError, match=r"got shape \(1, 2, 5, 3\)"):
        gru.apply(p_gru, {}, jnp.ones((1, 2, 5, 3)))
    h0 = jnp.zeros((2, 2, 4))
    with pytest.raises(ShapeError, match=r"LSTM\(.*\): expected initial_state c0 \(num_layers, batch, hidden_size\) = "
                                         r"\(2, 2, 4\) for an input of batch \(2,\), got shape \(2, 4\)"):
        lstm.apply(p_lstm, {}, jnp.ones((5, 2, 3)), initial_state=(h0, jnp.zeros((2, 4))))
    with pytest.raises(ShapeError, match=r"initial_state h0 \(num_layers, hidden_size\) = \(2, 4\) for an input of "
                                         r"batch \(\), got shape \(2, 2, 4\)"):
        lstm.apply(p_lstm, {}, jnp.ones((5, 3)), initial_state=(h0, h0))
    with pytest.raises(ShapeError, match=r"GRU\(.*\): expected initial_state h0 .* = \(1, 6, 4\) .*, got shape \(1, 2, 4\)"):
        gru.apply(p_gru, {}, jnp.ones((6, 2, 3)), initial_state=jnp.zeros((1, 2, 4)))  # batch_first: batch is 6
    with pytest.raises(TypeError, match=r"LSTM\(.*\): initial_state must be a pair \(h0, c0\), got ArrayImpl"):
        lstm.apply(p_lstm, {}, jnp.ones((5, 3)), initial_state=jnp.zeros((2, 4)))
    with pytest.raises(TypeError, match=r"GRU\(.*\): initial_state must be a single array h0, got tuple"):
        gru.apply(p_gru, {}, jnp.ones((5, 3)), initial_state=(jnp.zeros((1, 4)),))
    with pytest.raises(TypeError, match=r"expected a floating-point input, got int32"):
        lstm.apply(p_lstm, {}, jnp.ones((5, 3), jnp.int32))
    with pytest.raises(TypeError, match=r"LSTM\(input_size=3, hidden_size=4\)\.apply got unexpected keyword\(s\) \['mask'\]"):
        nn.pure.lstm(3, 4, key=jax.random.key(0))(jnp.ones((5, 3)), mask=None)
    with pytest.raises(ValueError, match=r"RNN: nonlinearity must be 'tanh' or 'relu', got 'sigmoid'"):
        L.RNN(3, 4, nonlinearity="sigmoid")
    for bad in (0, -2, 1.5):
        with pytest.raises(ValueError, match=r"GRU: hidden_size must be a positive int, got"):
            L.GRU(3, bad)
    with pytest.raises(ValueError, match=r"LSTM: num_layers must be a positive int, got 0"):
        L.LSTM(3, 4, num_layers=0)
    with pytest.raises(ValueError, match=r"RNN: dropout is the probability of dropping and must be in \[0, 1\), got 1.0"):
        L.RNN(3, 4, dropout=1.0)
    with pytest.raises(ValueError, match=r"LSTM: batch_first must be a bool, got 1"):
        L.LSTM(3, 4, batch_first=1)
    with pytest.raises(TypeError, match="bidirectional"):
        L.LSTM(3, 4, bidirectional=True)
    assert L.LSTM(3, 4, dropout=0) == L.LSTM(3, 4) and hash(L.LSTM(3, 4, dropout=0)) == hash(L.LSTM(3, 4))
