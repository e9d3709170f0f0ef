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

from tests.torch_utils import load, n, t
from tlean import SeedStream, ShapeError, nn
from tlean import layers as L

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


MAX_ERROR: dict[str, float] = {}  # family -> the largest |tlean - torch| seen (printed with -s)


def close(ours, theirs, tol=1e-5, family="RNN/GRU/LSTM"):
    def one(a, b):
        a, b = np.asarray(a), n(b)
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
        if a.size:
            MAX_ERROR[family] = max(MAX_ERROR.get(family, 0.0), float(np.max(np.abs(a - b))))

    jax.tree.map(one, ours, theirs)


def teardown_module():
    print(f"\nlargest parity errors: {MAX_ERROR}")


def to_torch(tree):
    return jax.tree.map(t, tree)


CONFIGS = [  # (config, input shape): the unbatched time-major form; batch_first, stacked, without bias
    ({}, (6, 3)),  # (the batched time-major form is in test_property_matches_torch_over_shapes)
    ({"batch_first": True, "num_layers": 2, "bias": False}, (2, 6, 3)),
]


def initial_states(kind, config, shape, hidden=4, seed=1):
    """h0, or (h0, c0) for LSTM, shaped as torch's: (D * num_layers, [batch,] H_out) and c0 with hidden."""
    rows = (2 if config.get("bidirectional") else 1) * config.get("num_layers", 1)
    batch = () if len(shape) == 2 else (shape[0] if config.get("batch_first") else shape[1],)
    h0 = data(rows, *batch, config.get("proj_size") or hidden, seed=seed)
    return (h0, data(rows, *batch, hidden, seed=seed + 1)) if kind == "LSTM" else h0


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
                model.params, x, s0, w
            )
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


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
@given(
    st.sampled_from(sorted(KINDS)),
    st.integers(1, 4),
    st.integers(1, 5),
    st.integers(1, 2),
    st.integers(1, 6),
    st.sampled_from([None, 1, 3]),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.integers(0, 4),
    st.integers(0, 1000),
)
def test_property_matches_torch_over_shapes(
    kind, input_size, hidden, layers, seq, batch, batch_first, bias, h0, bidirectional, proj, seed
):
    """Any sizes, unbatched and batched (time-major or batch_first), one or two directions, an
    LSTM projection or none, with or without an initial state."""
    config = {"num_layers": layers, "batch_first": batch_first, "bias": bias, "bidirectional": bidirectional}
    if kind == "LSTM":
        config["proj_size"] = proj % hidden  # 0 (no projection) to hidden - 1
    module, model = build(kind, input_size, hidden, seed=seed, **config)
    shape = (
        (seq, input_size) if batch is None else ((batch, seq, input_size) if batch_first else (seq, batch, input_size))
    )
    x = 2 * data(*shape, seed=seed)
    s0 = initial_states(kind, config, shape, hidden, seed=seed + 1) if h0 else None
    out, final = jax.jit(lambda m, x, s0: m(x, initial_state=s0, return_final=True))(model, x, s0)
    with torch.no_grad():
        expected_out, expected_final = module(
            torch.from_numpy(x), None if s0 is None else jax.tree.map(torch.from_numpy, s0)
        )
    close(out, expected_out, 2e-5)
    close(final, expected_final, 2e-5)


@pytest.mark.parametrize("cls", ["RNN", "GRU", "LSTM"])
def test_init_has_torch_names_shapes_and_distribution(cls):
    """Every weight and bias ~ U(-1/sqrt(hidden), 1/sqrt(hidden)), as PyTorch's reset_parameters."""
    hidden = 64
    for layers, bias in [(1, False), (3, True)]:  # names and shapes
        module = getattr(torch.nn, cls)(10, hidden, num_layers=layers, bias=bias)
        shapes = jax.eval_shape(getattr(L, cls)(10, hidden, num_layers=layers, bias=bias).init, jax.random.key(0))
        assert jax.tree.map(lambda a: a.shape, shapes) == (
            {k: tuple(v.shape) for k, v in module.state_dict().items()},
            {},
        )
    ours = jax.jit(getattr(L, cls)(10, hidden, num_layers=2).init)(jax.random.key(3))[0]
    bound = 1 / np.sqrt(hidden)
    for name, value in ours.items():
        value = np.asarray(value)
        assert value.dtype == np.float32 and np.abs(value).max() <= bound, name
        if value.size > 1000:  # std of U(-b, b) is b / sqrt(3)
            np.testing.assert_allclose(value.std(), bound / np.sqrt(3), rtol=0.05, err_msg=name)
    values = [np.asarray(v) for v in ours.values()]
    assert all(not np.array_equal(a[: len(b)], b[: len(a)]) for i, a in enumerate(values) for b in values[i + 1 :])


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
            params, jnp.ones((seq, 2, 3))
        )
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
    with pytest.raises(
        ShapeError,
        match=r"LSTM\(input_size=3, hidden_size=4, num_layers=2\): expected input "
        r"\(seq, 3\) or \(seq, batch, input\) with input=3, got shape \(5, 2, 7\)",
    ):
        lstm.apply(p_lstm, {}, jnp.ones((5, 2, 7)))
    with pytest.raises(
        ShapeError,
        match=r"GRU\(.*batch_first=True\): expected input \(seq, 3\) or \(batch, seq, input\) "
        r"with input=3, got shape \(3,\)",
    ):
        gru.apply(p_gru, {}, jnp.ones((3,)))
    with pytest.raises(ShapeError, match=r"got shape \(1, 2, 5, 3\)"):
        gru.apply(p_gru, {}, jnp.ones((1, 2, 5, 3)))
    h0 = jnp.zeros((2, 2, 4))
    with pytest.raises(
        ShapeError,
        match=r"LSTM\(.*\): expected initial_state c0 \(num_layers, batch, hidden_size\) = "
        r"\(2, 2, 4\) for an input of batch \(2,\), got shape \(2, 4\)",
    ):
        lstm.apply(p_lstm, {}, jnp.ones((5, 2, 3)), initial_state=(h0, jnp.zeros((2, 4))))
    with pytest.raises(
        ShapeError,
        match=r"initial_state h0 \(num_layers, hidden_size\) = \(2, 4\) for an input of "
        r"batch \(\), got shape \(2, 2, 4\)",
    ):
        lstm.apply(p_lstm, {}, jnp.ones((5, 3)), initial_state=(h0, h0))
    with pytest.raises(
        ShapeError, match=r"GRU\(.*\): expected initial_state h0 .* = \(1, 6, 4\) .*, got shape \(1, 2, 4\)"
    ):
        gru.apply(p_gru, {}, jnp.ones((6, 2, 3)), initial_state=jnp.zeros((1, 2, 4)))  # batch_first: batch is 6
    with pytest.raises(TypeError, match=r"LSTM\(.*\): initial_state must be a pair \(h0, c0\), got ArrayImpl"):
        lstm.apply(p_lstm, {}, jnp.ones((5, 3)), initial_state=jnp.zeros((2, 4)))
    with pytest.raises(TypeError, match=r"GRU\(.*\): initial_state must be a single array h0, got tuple"):
        gru.apply(p_gru, {}, jnp.ones((5, 3)), initial_state=(jnp.zeros((1, 4)),))
    with pytest.raises(TypeError, match=r"expected a floating-point input, got int32"):
        lstm.apply(p_lstm, {}, jnp.ones((5, 3), jnp.int32))
    with pytest.raises(
        TypeError, match=r"LSTM\(input_size=3, hidden_size=4\)\.apply got unexpected keyword\(s\) \['mask'\]"
    ):
        nn.pure.lstm(3, 4, key=jax.random.key(0))(jnp.ones((5, 3)), mask=None)
    with pytest.raises(ValueError, match=r"RNN: nonlinearity must be 'tanh' or 'relu', got 'sigmoid'"):
        L.RNN(3, 4, nonlinearity="sigmoid")
    for bad in (0, -2, 1.5):
        with pytest.raises(ValueError, match=r"GRU: hidden_size must be a positive int, got"):
            L.GRU(3, bad)
    with pytest.raises(ValueError, match=r"LSTM: num_layers must be a positive int, got 0"):
        L.LSTM(3, 4, num_layers=0)
    with pytest.raises(ValueError, match=r"RNN: dropout must be a probability in \[0, 1\), got 1.0"):
        L.RNN(3, 4, dropout=1.0)
    with pytest.raises(ValueError, match=r"LSTM: batch_first must be a bool, got 1"):
        L.LSTM(3, 4, batch_first=1)
    with pytest.raises(ValueError, match=r"GRU: bidirectional must be a bool, got 'yes'"):
        L.GRU(3, 4, bidirectional="yes")
    with pytest.raises(TypeError, match="proj_size"):  # as torch: a projection only for LSTM
        L.GRU(3, 4, proj_size=2)
    assert L.LSTM(3, 4, dropout=0) == L.LSTM(3, 4) and hash(L.LSTM(3, 4, dropout=0)) == hash(L.LSTM(3, 4))


# --- bidirectional, proj_size and the cells (issue 13) ---------------------------------------


def parity(kind, config, shape, family, hidden=4):
    """Outputs (zero and given initial state), final states and d/d(input, initial state, every
    weight) of sum(w * outputs) + sum(finals), against torch's forward and autograd."""
    module, model = build(kind, hidden_size=hidden, **config)
    x, s0 = data(*shape), initial_states(kind, config, shape, hidden)
    out_size = (2 if config.get("bidirectional") else 1) * (config.get("proj_size") or hidden)
    w = data(*shape[:-1], out_size, seed=7)

    @jax.jit
    def run(params, x, s0):
        model_ = model.replace(params=params)
        out, final = model_(x, initial_state=s0, return_final=True)
        loss = jnp.sum(w * out) + sum(jnp.sum(f) for f in jax.tree.leaves(final))
        return loss, (model_(x, return_final=True), out, final)

    (_, (zero, out, final)), (g_params, g_x, g_s0) = jax.value_and_grad(run, (0, 1, 2), has_aux=True)(
        model.params, x, s0
    )
    with torch.no_grad():
        close(zero, module(torch.from_numpy(x)), family=family)  # initial_state=None means zeros
    xt, st = t(x), to_torch(s0)
    expected_out, expected_final = module(xt, st)
    close(out, expected_out, family=family)
    close(final, expected_final, family=family)
    torch_finals = expected_final if kind == "LSTM" else (expected_final,)
    ((torch.from_numpy(w) * expected_out).sum() + sum(f.sum() for f in torch_finals)).backward()
    close(g_x, xt.grad, family=family)
    close(g_s0, jax.tree.map(lambda s: s.grad, st), family=family)
    assert set(g_params) == {name for name, _ in module.named_parameters()}
    for name, p in module.named_parameters():
        close(g_params[name], p.grad, family=family)


BIDIRECTIONAL = [  # {1, 2 layers} x {unbatched, time-major, batch_first}, each kind twice or more
    ("RNN-relu", {}, (5, 3)),
    ("LSTM", {"num_layers": 2}, (5, 3)),
    ("LSTM", {}, (5, 2, 3)),
    ("GRU", {"num_layers": 2, "bias": False}, (5, 2, 3)),
    ("GRU", {"batch_first": True}, (2, 5, 3)),
    ("RNN-tanh", {"num_layers": 2, "batch_first": True}, (2, 5, 3)),
]


@pytest.mark.parametrize("kind,config,shape", BIDIRECTIONAL, ids=lambda v: str(v))
def test_bidirectional_matches_torch(kind, config, shape):
    """Outputs [forward, reverse] concatenated, h_n (and c_n) stacked as (2 * num_layers, [batch,]
    hidden) in torch's order, and every gradient (the property test below adds forward parity of
    every kind over random sizes, bidirectional or not)."""
    parity(kind, {**config, "bidirectional": True}, shape, "bidirectional")


@pytest.mark.parametrize(
    "config,shape",
    [
        ({"proj_size": 2}, (5, 2, 3)),
        ({"proj_size": 3, "num_layers": 2, "bidirectional": True, "batch_first": True}, (2, 5, 3)),
    ],
    ids=lambda v: str(v),
)
@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
def test_lstm_projection_matches_torch(config, shape):
    """proj_size: h = W_hr (o * tanh(c)) of size proj_size feeds the recurrence and the next layer."""
    parity("LSTM", config, shape, "LSTM proj_size")


CELLS = {
    "RNNCell-tanh": ("RNNCell", {"nonlinearity": "tanh"}),
    "RNNCell-relu": ("RNNCell", {"nonlinearity": "relu"}),
    "GRUCell": ("GRUCell", {}),
    "LSTMCell": ("LSTMCell", {}),
}


@pytest.mark.parametrize("kind", sorted(CELLS))
def test_cells_match_torch(kind):
    """One step, batched and unbatched, with and without hx (torch's zeros), with and without bias:
    h' (or (h', c')) and d/d(input, hx, every weight) of sum(w * outputs)."""
    for bias, batch, with_hx in [(True, (2,), True), (True, (), False), (False, (), True), (False, (3,), False)]:
        cell_parity(kind, bias, batch, with_hx)


def cell_parity(kind, bias, batch, with_hx):
    cls, extra = CELLS[kind]
    pair = cls == "LSTMCell"
    torch.manual_seed(0)
    module = getattr(torch.nn, cls)(3, 4, bias=bias, **extra)
    model = load(getattr(nn.pure, cls[:-4].lower() + "_cell")(3, 4, bias, **extra, key=jax.random.key(0)), module)
    x = data(*batch, 3)
    hx = (data(*batch, 4, seed=1), data(*batch, 4, seed=2)) if pair else data(*batch, 4, seed=1)
    w = (data(*batch, 4, seed=3), data(*batch, 4, seed=4)) if pair else data(*batch, 4, seed=3)

    def loss(params, x, hx):
        y = model.replace(params=params)(x, hx if with_hx else None)  # Model(x, hx) as torch's forward
        return sum(jnp.sum(a * b) for a, b in zip(jax.tree.leaves(w), jax.tree.leaves(y))), y

    (_, y), (g_params, g_x, g_hx) = jax.jit(jax.value_and_grad(loss, (0, 1, 2), has_aux=True))(model.params, x, hx)
    xt, hxt = t(x), to_torch(hx)
    expected = module(xt, hxt if with_hx else None)
    close(y, expected, family="cells")
    expected = expected if pair else (expected,)
    sum((torch.from_numpy(a) * b).sum() for a, b in zip(jax.tree.leaves(w), expected)).backward()
    close(g_x, xt.grad, family="cells")
    if with_hx:
        close(g_hx, jax.tree.map(lambda h: h.grad, hxt), family="cells")
    else:
        assert all(not np.any(np.asarray(g)) for g in jax.tree.leaves(g_hx))
    assert set(g_params) == {name for name, _ in module.named_parameters()}
    for name, p in module.named_parameters():
        close(g_params[name], p.grad, family="cells")


def test_positional_arguments_follow_torch():
    assert L.RNN(3, 4, 2, "relu", False, True, 0.5, True) == L.RNN(
        3, 4, num_layers=2, nonlinearity="relu", bias=False, batch_first=True, dropout=0.5, bidirectional=True
    )
    assert L.LSTM(3, 4, 2, False, True, 0.5, True, 2) == L.LSTM(
        3, 4, num_layers=2, bias=False, batch_first=True, dropout=0.5, bidirectional=True, proj_size=2
    )
    assert L.GRU(3, 4, 1, True, False, 0.0, True) == L.GRU(3, 4, bidirectional=True)
    assert L.RNNCell(3, 4, False, "relu") == L.RNNCell(3, 4, bias=False, nonlinearity="relu")
    assert L.LSTMCell(3, 4, False) == L.LSTMCell(3, 4, bias=False) != L.LSTMCell(3, 4)
    for cls in (L.RNN, L.LSTM, L.RNNCell, L.GRUCell):  # tlean-only numerics are keyword-only
        with pytest.raises(TypeError):
            cls(
                3,
                4,
                *(
                    [1, "tanh", True, False, 0.0, False]
                    if cls is L.RNN
                    else [1, True, False, 0.0, False, 0]
                    if cls is L.LSTM
                    else [True, "tanh"]
                    if cls is L.RNNCell
                    else [True]
                ),
                jnp.float32,
            )


@pytest.mark.parametrize(
    "cls,config",
    [
        ("RNN", {"bidirectional": True, "num_layers": 2}),
        ("GRU", {"bidirectional": True, "bias": False}),
        ("LSTM", {"bidirectional": True, "num_layers": 2, "proj_size": 3}),
        ("LSTM", {"proj_size": 1}),
        ("RNNCell", {}),
        ("GRUCell", {"bias": False}),
        ("LSTMCell", {}),
    ],
    ids=str,
)
def test_new_layers_have_torch_names_shapes_and_init(cls, config):
    """state_dict names and shapes as torch's; every array ~ U(-1/sqrt(hidden), 1/sqrt(hidden))."""
    module = getattr(torch.nn, cls)(5, 8, **config)
    layer = getattr(L, cls)(5, 8, **config)
    shapes = jax.eval_shape(layer.init, jax.random.key(0))[0]
    assert {k: v.shape for k, v in shapes.items()} == {k: tuple(v.shape) for k, v in module.state_dict().items()}
    params = jax.jit(layer.init)(jax.random.key(1))[0]
    for name, value in params.items():
        assert np.abs(np.asarray(value)).max() <= 1 / np.sqrt(8) and np.asarray(value).std() > 0.1, name


@pytest.mark.parametrize("cls", ["RNNCell", "GRUCell", "LSTMCell"])
def test_cell_builders_draw_one_key(cls):
    model = nn.run(5, getattr(nn, cls)(3, 4))
    chex.assert_trees_all_equal(model.params, getattr(L, cls)(3, 4).init(SeedStream(5).fresh()[0])[0])
    assert model.layer == getattr(L, cls)(3, 4) and model.layer.inputs == ("hx",)


def test_bidirectional_is_one_scan_per_layer_and_direction():
    layer = L.LSTM(3, 4, 2, bidirectional=True, proj_size=2)
    params = layer.init(jax.random.key(0))[0]
    jaxpr = jax.make_jaxpr(lambda p, x: layer.apply(p, {}, x)[0])(params, jnp.ones((7, 2, 3)))
    scans = [e.params for e in jaxpr.eqns if e.primitive.name == "scan"]
    assert [(s["length"], s["reverse"]) for s in scans] == [(7, False), (7, True)] * 2


def test_bidirectional_dropout_acts_on_the_concatenated_outputs():
    layer = L.RNN(3, 4, num_layers=2, dropout=0.5, bidirectional=True)
    params = layer.init(jax.random.key(0))[0]
    x, key = data(6, 2, 3), jax.random.key(9)

    @jax.jit
    def both(params, x):  # by hand: layer 0 both ways, inverted dropout on [forward, reverse], layer 1
        first = {k: v for k, v in params.items() if "_l0" in k}
        second = {k.replace("_l1", "_l0"): v for k, v in params.items() if "_l1" in k}
        h = L.RNN(3, 4, bidirectional=True).apply(first, {}, x)[0]
        keep = jax.random.bernoulli(jax.random.fold_in(key, 1), 0.5, h.shape)
        expected = L.RNN(8, 4, bidirectional=True).apply(second, {}, jnp.where(keep, h / 0.5, 0.0))[0]
        return layer.apply(params, {}, x, train=True, key=key)[0], expected

    train_out, expected = both(params, x)
    assert train_out.shape == (6, 2, 8)
    np.testing.assert_allclose(train_out, expected, rtol=1e-6, atol=1e-6)


def test_bad_config_and_input_of_the_new_layers():
    for bad in (4, 5):
        with pytest.raises(ValueError, match=rf"LSTM: proj_size must be smaller than hidden_size=4, got {bad}"):
            L.LSTM(3, 4, proj_size=bad)
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match=r"LSTM: proj_size must be an int >= 0 \(0: no projection\), got"):
            L.LSTM(3, 4, proj_size=bad)
    with pytest.raises(ValueError, match=r"RNNCell: nonlinearity must be 'tanh' or 'relu', got 'gelu'"):
        L.RNNCell(3, 4, nonlinearity="gelu")
    with pytest.raises(ValueError, match=r"GRUCell: hidden_size must be a positive int, got 0"):
        L.GRUCell(3, 0)
    with pytest.raises(ValueError, match=r"LSTMCell: bias must be a bool, got 1"):
        L.LSTMCell(3, 4, 1)

    bi = L.LSTM(3, 4, 2, bidirectional=True, proj_size=2)
    p = bi.init(jax.random.key(0))[0]
    h0, c0 = jnp.zeros((4, 2, 2)), jnp.zeros((4, 2, 4))
    assert bi.apply(p, {}, jnp.ones((5, 2, 3)), initial_state=(h0, c0))[0].shape == (5, 2, 4)
    with pytest.raises(
        ShapeError,
        match=r"LSTM\(.*bidirectional=True, proj_size=2\): expected initial_state h0 "
        r"\(2 \* num_layers, batch, proj_size\) = \(4, 2, 2\) for an input of "
        r"batch \(2,\), got shape \(2, 2, 2\)",
    ):
        bi.apply(p, {}, jnp.ones((5, 2, 3)), initial_state=(h0[:2], c0))
    with pytest.raises(
        ShapeError,
        match=r"expected initial_state c0 \(2 \* num_layers, batch, hidden_size\) = "
        r"\(4, 2, 4\) .*, got shape \(4, 2, 2\)",
    ):
        bi.apply(p, {}, jnp.ones((5, 2, 3)), initial_state=(h0, h0))
    with pytest.raises(
        ShapeError,
        match=r"LSTM\(.*\): expected input \(seq, 3\) or \(seq, batch, input\) with "
        r"input=3, got shape \(5, 2, 4\)",
    ):
        bi.apply(p, {}, jnp.ones((5, 2, 4)))

    cell = L.LSTMCell(3, 4)
    pc = cell.init(jax.random.key(0))[0]
    h = jnp.zeros((2, 4))
    with pytest.raises(
        ShapeError,
        match=r"LSTMCell\(input_size=3, hidden_size=4\): expected input \(3,\) or "
        r"\(batch, 3\), got shape \(2, 5\)",
    ):
        cell.apply(pc, {}, jnp.ones((2, 5)))
    with pytest.raises(ShapeError, match=r"expected input \(3,\) or \(batch, 3\), got shape \(1, 2, 3\)"):
        cell.apply(pc, {}, jnp.ones((1, 2, 3)))
    with pytest.raises(
        ShapeError,
        match=r"LSTMCell\(.*\): expected hx c \(batch, hidden_size\) = \(2, 4\) for an "
        r"input of batch \(2,\), got shape \(3, 4\)",
    ):
        cell.apply(pc, {}, jnp.ones((2, 3)), hx=(h, jnp.zeros((3, 4))))
    with pytest.raises(
        ShapeError,
        match=r"expected hx h \(hidden_size\) = \(4,\) for an input of batch \(\), "
        r"got shape \(2, 4\)",
    ):
        cell.apply(pc, {}, jnp.ones(3), hx=(h, h))  # unbatched input, batched state: refused, as torch
    with pytest.raises(TypeError, match=r"LSTMCell\(.*\): hx must be a pair \(h, c\), got ArrayImpl"):
        cell.apply(pc, {}, jnp.ones((2, 3)), hx=h)
    with pytest.raises(TypeError, match=r"LSTMCell\(.*\): hx must be a pair \(h, c\), got 3 arrays"):
        cell.apply(pc, {}, jnp.ones((2, 3)), hx=(h, h, h))
    gru = L.GRUCell(3, 4)
    pg = gru.init(jax.random.key(0))[0]
    with pytest.raises(TypeError, match=r"GRUCell\(.*\): hx must be a single array h, got tuple"):
        gru.apply(pg, {}, jnp.ones((2, 3)), hx=(h,))
    with pytest.raises(TypeError, match=r"GRUCell\(.*\): expected a floating-point input, got int32"):
        gru.apply(pg, {}, jnp.ones((2, 3)), hx=jnp.zeros((2, 4), jnp.int32))
    with pytest.raises(TypeError, match=r"GRUCell\(.*\)\.apply got unexpected keyword\(s\) \['initial_state'\]"):
        nn.pure.gru_cell(3, 4, key=jax.random.key(0))(jnp.ones((2, 3)), initial_state=h)
