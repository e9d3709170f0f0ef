"""Activations against torch.nn."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from tests.torch_utils import load, n, t
from tlean import ShapeError, nn
from tlean import layers as L

PAIRS = [
    (nn.pure.relu(), torch.nn.ReLU()),
    (nn.pure.gelu(), torch.nn.GELU()),
    (nn.pure.gelu("tanh"), torch.nn.GELU(approximate="tanh")),
    (nn.pure.silu(), torch.nn.SiLU()),
    (nn.pure.tanh(), torch.nn.Tanh()),
    (nn.pure.sigmoid(), torch.nn.Sigmoid()),
    (nn.pure.softmax(-1), torch.nn.Softmax(dim=-1)),
    (nn.pure.softmax(0), torch.nn.Softmax(dim=0)),
    (nn.pure.identity(), torch.nn.Identity()),
]


class ActivationParityTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_values_and_gradients_match_torch(self):
        x = np.random.default_rng(0).normal(scale=3, size=(4, 7)).astype(np.float32)
        for model, module in PAIRS:
            y = self.variant(lambda m, x: m(x))(model, x)
            xt = t(x)
            yt = module(xt)
            np.testing.assert_allclose(y, n(yt), atol=1e-6, rtol=1e-5, err_msg=repr(model.layer))
            w = np.linspace(-1, 1, x.size, dtype=np.float32).reshape(x.shape)
            (yt * torch.from_numpy(w)).sum().backward()
            g = self.variant(jax.grad(lambda x, m: (m(x) * w).sum()))(x, model)
            np.testing.assert_allclose(g, n(xt.grad), atol=1e-6, rtol=1e-5, err_msg=repr(model.layer))


def test_activations_keep_dtype_and_softmax_computes_in_float32():
    x = jnp.linspace(-3, 3, 12, dtype=jnp.bfloat16).reshape(3, 4)
    for layer in (L.relu, L.gelu, L.silu, L.tanh, L.sigmoid, L.softmax, L.identity):
        assert layer.apply({}, {}, x)[0].dtype == jnp.bfloat16
    y = L.softmax.apply({}, {}, x)[0]
    ref = jax.nn.softmax(x.astype(jnp.float32), -1).astype(jnp.bfloat16)
    np.testing.assert_array_equal(np.asarray(y, np.float32), np.asarray(ref, np.float32))


def test_bad_config_and_input():
    with pytest.raises(ValueError, match=r"GELU: approximate must be 'none' or 'tanh', got 'exact'"):
        L.GELU("exact")
    with pytest.raises(ShapeError, match=r"Softmax\(dim=2\): expected an input with an axis 2, got shape \(3, 4\)"):
        L.Softmax(2).apply({}, {}, jnp.ones((3, 4)))
    assert not L.relu.has_params and L.relu == L.ReLU()


def test_integer_input_is_refused_where_it_would_truncate():
    ints = jnp.array([1, 2, 3])
    for layer in (L.softmax, L.gelu, L.silu, L.sigmoid, L.tanh):
        with pytest.raises(TypeError, match=r"expected a floating-point input, got int32"):
            layer.apply({}, {}, ints)
    np.testing.assert_array_equal(L.relu.apply({}, {}, jnp.array([-1, 2]))[0], [0, 2])  # ReLU is exact on ints
    with pytest.raises(ShapeError, match=r"Softmax\(\): expected an input with an axis -1, got shape \(\)"):
        L.softmax.apply({}, {}, jnp.float32(1.0))


# --- every activation of torch.nn (issue 13) ---------------------------------------------------

SNAKE = {
    "ReLU": "relu",
    "ReLU6": "relu6",
    "LeakyReLU": "leaky_relu",
    "RReLU": "rrelu",
    "ELU": "elu",
    "SELU": "selu",
    "CELU": "celu",
    "GELU": "gelu",
    "SiLU": "silu",
    "Mish": "mish",
    "Hardswish": "hardswish",
    "Hardsigmoid": "hardsigmoid",
    "Hardtanh": "hardtanh",
    "Hardshrink": "hardshrink",
    "Softshrink": "softshrink",
    "Softplus": "softplus",
    "Softsign": "softsign",
    "Tanh": "tanh",
    "Sigmoid": "sigmoid",
    "LogSigmoid": "log_sigmoid",
    "Softmax": "softmax",
    "Softmin": "softmin",
    "LogSoftmax": "log_softmax",
    "Softmax2d": "softmax2d",
    "Tanhshrink": "tanhshrink",
    "Threshold": "threshold",
    "GLU": "glu",
    "Identity": "identity",
}

# (torch name, positional args, keyword args, input shape): the same arguments build both modules.
TORCH_CASES = [
    ("ReLU", (), {}, (4, 6)),
    ("ReLU", (True,), {}, (6,)),
    ("ReLU6", (), {}, (4, 6)),
    ("LeakyReLU", (), {}, (4, 6)),
    ("LeakyReLU", (0.2,), {}, (2, 3, 4)),
    ("LeakyReLU", (), {"negative_slope": -0.5}, (4, 6)),
    ("RReLU", (), {}, (4, 6)),
    ("RReLU", (0.1, 0.3), {}, (4, 6)),
    ("ELU", (), {}, (4, 6)),
    ("ELU", (0.5,), {}, (4, 6)),
    ("SELU", (), {}, (4, 6)),
    ("CELU", (), {}, (4, 6)),
    ("CELU", (2.0,), {}, (4, 6)),
    ("GELU", (), {}, (4, 6)),
    ("GELU", ("tanh",), {}, (4, 6)),
    ("SiLU", (), {}, (4, 6)),
    ("Mish", (), {}, (4, 6)),
    ("Hardswish", (), {}, (4, 6)),
    ("Hardsigmoid", (), {}, (4, 6)),
    ("Hardtanh", (), {}, (4, 6)),
    ("Hardtanh", (-2.0, 0.5), {}, (4, 6)),
    ("Hardshrink", (), {}, (4, 6)),
    ("Hardshrink", (1.0,), {}, (4, 6)),
    ("Softshrink", (), {}, (4, 6)),
    ("Softshrink", (0.2,), {}, (4, 6)),
    ("Softplus", (), {}, (4, 6)),
    ("Softplus", (2.0, 1.0), {}, (4, 6)),
    ("Softplus", (), {"beta": -1.0}, (4, 6)),
    ("Softsign", (), {}, (4, 6)),
    ("Tanh", (), {}, (4, 6)),
    ("Sigmoid", (), {}, (4, 6)),
    ("LogSigmoid", (), {}, (4, 6)),
    ("Softmax", (-1,), {}, (4, 6)),
    ("Softmax", (0,), {}, (4, 6)),
    ("Softmax", (), {"dim": 1}, (2, 3, 4)),
    ("Softmin", (1,), {}, (4, 6)),
    ("Softmin", (-2,), {}, (2, 3, 4)),
    ("LogSoftmax", (-1,), {}, (4, 6)),
    ("LogSoftmax", (0,), {}, (4, 6)),
    ("Softmax2d", (), {}, (2, 3, 4, 4)),
    ("Softmax2d", (), {}, (3, 4, 4)),
    ("Tanhshrink", (), {}, (4, 6)),
    ("Threshold", (0.1, 20.0), {}, (4, 6)),
    ("Threshold", (-0.5, -2.0, False), {}, (4, 6)),
    ("GLU", (), {}, (4, 6)),
    ("GLU", (0,), {}, (4, 6)),
    ("GLU", (1,), {}, (2, 4, 3)),
    ("Identity", (), {}, (4, 6)),
]


def _case_id(case):
    name, args, kwargs, shape = case
    return f"{name}{args}{kwargs or ''}{list(shape)}".replace(" ", "")


@pytest.mark.parametrize("case", TORCH_CASES, ids=[_case_id(c) for c in TORCH_CASES])
def test_every_activation_matches_torch_built_from_the_same_arguments(case):
    name, args, kwargs, shape = case
    model = getattr(nn.pure, SNAKE[name])(*args, **kwargs)
    module = getattr(torch.nn, name)(*args, **kwargs).eval()  # RReLU: eval is the fixed slope
    assert not model.layer.has_params and type(model.layer).__name__ == name
    x = np.random.default_rng(len(args)).normal(scale=3, size=shape).astype(np.float32)
    xt = t(x)
    yt = module(xt * 1)  # a non-leaf copy, which torch's inplace=True may overwrite
    w = np.random.default_rng(7).normal(size=yt.shape).astype(np.float32)
    (yt * torch.from_numpy(w)).sum().backward()
    y, g = jax.jit(lambda x: (model(x), jax.grad(lambda x: (model(x) * w).sum())(x)))(x)  # one compile, not one per op
    assert y.shape == tuple(yt.shape) and y.dtype == jnp.float32
    np.testing.assert_allclose(y, n(yt), atol=2e-6, rtol=2e-5)
    np.testing.assert_allclose(g, n(xt.grad), atol=2e-6, rtol=2e-5)


def test_every_activation_of_torch_nn_has_a_layer_a_builder_and_a_pure_constructor():
    names = set(SNAKE) | {"PReLU"}
    for name in names:
        assert issubclass(getattr(L, name), L.Layer), name
        assert callable(getattr(nn, name)) and callable(getattr(nn.pure, SNAKE.get(name, "prelu"))), name
    torch_activations = {
        "ReLU",
        "ReLU6",
        "LeakyReLU",
        "PReLU",
        "RReLU",
        "ELU",
        "SELU",
        "CELU",
        "GELU",
        "SiLU",
        "Mish",
        "Hardswish",
        "Hardsigmoid",
        "Hardtanh",
        "Hardshrink",
        "Softshrink",
        "Softplus",
        "Softsign",
        "Tanh",
        "Sigmoid",
        "LogSigmoid",
        "Softmax",
        "Softmin",
        "LogSoftmax",
        "Tanhshrink",
        "Threshold",
        "GLU",
    }
    assert torch_activations <= names


@pytest.mark.parametrize(
    "args,shape", [((), (4, 6)), ((3,), (2, 3, 5)), ((3, 0.1), (4, 3)), ((1, -0.3), (5,)), ((), ())], ids=str
)
def test_prelu_outputs_and_gradients_match_torch(args, shape):
    module = torch.nn.PReLU(*args)
    with torch.no_grad():
        module.weight.copy_(torch.linspace(-0.5, 0.7, module.weight.numel()))
    model = load(nn.pure.prelu(*args, key=jax.random.key(0)), module)
    x = np.random.default_rng(1).normal(scale=2, size=shape).astype(np.float32)
    xt = t(x)
    yt = module(xt)
    y = jax.jit(lambda m, x: m(x))(model, x)
    np.testing.assert_allclose(y, n(yt), atol=1e-6, rtol=1e-6)
    w = np.random.default_rng(2).normal(size=shape).astype(np.float32)
    (yt * torch.from_numpy(w)).sum().backward()
    gx, gm = jax.jit(jax.grad(lambda x, m: (m(x) * w).sum(), argnums=(0, 1)))(x, model)
    np.testing.assert_allclose(gx, n(xt.grad), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(gm.params["weight"], n(module.weight.grad), atol=1e-5, rtol=1e-5)


def test_prelu_init_layout_and_errors():
    params, state = L.PReLU(3, 0.1).init(jax.random.key(0))
    np.testing.assert_array_equal(params["weight"], n(torch.nn.PReLU(3, 0.1).weight))
    assert state == {} and params["weight"].dtype == jnp.float32
    assert L.PReLU(2, param_dtype=jnp.bfloat16).init(None)[0]["weight"].dtype == jnp.bfloat16
    layer = L.PReLU(3)
    with pytest.raises(
        ShapeError, match=r"PReLU\(num_parameters=3\): expected 3 channels on axis 1 .*got shape \(2, 4, 5\)"
    ):
        layer.apply(layer.init(None)[0], {}, jnp.ones((2, 4, 5)))
    with pytest.raises(ShapeError, match=r"got shape \(3,\)"):  # a vector is one channel, as in torch
        layer.apply(layer.init(None)[0], {}, jnp.ones(3))
    with pytest.raises(ValueError, match=r"PReLU: num_parameters must be a positive int, got 0"):
        L.PReLU(0)
    with pytest.raises(ValueError, match=r"PReLU: init must be a number, got 'a'"):
        L.PReLU(1, "a")


def test_rrelu_train_draws_a_slope_per_element_in_lower_upper():
    layer = L.RReLU(0.1, 0.3)
    x = -jnp.ones((200, 50))
    y, _ = layer.apply({}, {}, x, key=jax.random.key(0), train=True)
    slopes = np.asarray(-y)
    assert slopes.min() >= 0.1 and slopes.max() <= 0.3 and abs(slopes.mean() - 0.2) < 0.005
    assert len(np.unique(slopes)) > 1000  # one draw per element
    yt = n(torch.nn.RReLU(0.1, 0.3).train()(-torch.ones(200, 50)))  # torch's draws: same law
    assert abs(-yt.mean() - slopes.mean()) < 0.005 and abs(yt.std() - slopes.std()) < 0.005
    np.testing.assert_array_equal(layer.apply({}, {}, jnp.ones(3), key=jax.random.key(0), train=True)[0], jnp.ones(3))
    np.testing.assert_allclose(
        layer.apply({}, {}, x)[0], -0.2 * np.ones((200, 50)), rtol=1e-6
    )  # eval: (lower + upper) / 2
    with pytest.raises(ValueError, match=r"RReLU\(lower=0.1, upper=0.3\) in train mode needs a key"):
        layer.apply({}, {}, x, train=True)
    with pytest.raises(ValueError, match=r"RReLU: lower must be <= upper, got lower=0.5, upper=0.25"):
        L.RReLU(0.5, 0.25)


def test_new_activations_keep_dtype_and_refuse_integers():
    x = jnp.linspace(-3, 3, 16, dtype=jnp.bfloat16).reshape(4, 2, 2)
    for name, args, kwargs, _ in TORCH_CASES:
        if name == "Softmax2d":
            continue
        layer = getattr(L, name)(*args, **kwargs)
        assert jax.eval_shape(lambda x: layer.apply({}, {}, x)[0], x).dtype == jnp.bfloat16, name
        if name not in ("ReLU", "Identity"):
            with pytest.raises(TypeError, match=rf"{name}\(.*\): expected a floating-point input, got int32"):
                jax.eval_shape(lambda x: layer.apply({}, {}, x), jax.ShapeDtypeStruct((4, 2), jnp.int32))


def test_activation_config_errors_name_the_layer_and_value():
    with pytest.raises(ValueError, match=r"Hardtanh: max_val must be > min_val, got min_val=1.0, max_val=0.0"):
        L.Hardtanh(1, 0)
    with pytest.raises(ValueError, match=r"CELU: alpha must not be 0"):
        L.CELU(0.0)
    with pytest.raises(ValueError, match=r"Softshrink: lambd must be >= 0, got -1.0"):
        L.Softshrink(-1)
    with pytest.raises(ValueError, match=r"LeakyReLU: negative_slope must be a number, got 'x'"):
        L.LeakyReLU("x")
    with pytest.raises(ValueError, match=r"ReLU: inplace must be a bool, got 1"):
        L.ReLU(1)
    with pytest.raises(TypeError, match=r"threshold"):
        L.Threshold()
    for cls in (L.Softmax, L.Softmin, L.LogSoftmax):
        with pytest.raises(
            ValueError, match=rf"{cls.__name__}: dim=None \(torch's deprecated implicit-dim rule\) is not supported"
        ):
            cls(None)
    with pytest.raises(ShapeError, match=r"GLU\(\): expected an even size along axis -1, got shape \(2, 5\)"):
        L.glu.apply({}, {}, jnp.ones((2, 5)))
    with pytest.raises(
        ShapeError, match=r"Softmax2d\(\): expected input \[N, C, H, W\] or unbatched \[C, H, W\], got shape \(2, 3\)"
    ):
        L.Softmax2d().apply({}, {}, jnp.ones((2, 3)))
    assert L.LeakyReLU(np.float32(0.5)) == L.LeakyReLU(0.5) and hash(L.ELU(1)) == hash(L.ELU(1.0))
    assert repr(L.Threshold(0.1, 2)) == "Threshold(threshold=0.1, value=2.0)" and repr(L.ReLU6()) == "ReLU6()"


def test_nn_softmax_family_requires_dim_because_torch_defaults_to_its_legacy_rule():
    for name, snake in (("Softmax", "softmax"), ("Softmin", "softmin"), ("LogSoftmax", "log_softmax")):
        with pytest.raises(
            TypeError,
            match=rf"nn.{name}: pass dim= explicitly: torch.nn.{name}'s default is dim=None, "
            rf"tlean.layers.{name}'s is dim=-1",
        ):
            getattr(nn, name)()
        with pytest.raises(TypeError, match=rf"nn.pure.{snake}: pass dim= explicitly"):
            getattr(nn.pure, snake)()
        assert getattr(nn.pure, snake)(0).layer == getattr(L, name)(dim=0) and getattr(L, name)().dim == -1
