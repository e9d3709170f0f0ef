"""tlean.verify.bounds: auto_LiRPA's toy network by hand, soundness on random networks, errors."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tlean import Model, ShapeError, nn, verify
from tlean import layers as L

METHODS = ("ibp", "crown", "alpha-crown")
LONG = os.environ.get("TLEAN_HYPOTHESIS_PROFILE") == "long"


def toy() -> Model:
    """auto_LiRPA's toy example: f(x) = W2 relu(W1 x), true range [-2, 1] on the box below."""
    model = nn.run(0, nn.Sequential(nn.Linear(2, 2, bias=False), nn.ReLU(), nn.Linear(2, 1, bias=False)))
    w1, w2 = jnp.array([[1.0, -1.0], [2.0, -1.0]]), jnp.array([[1.0, -1.0]])
    return model.replace(params=({"weight": w1}, {}, {"weight": w2}))


TOY_LO, TOY_HI = jnp.array([[-1.0, -2.0]]), jnp.array([[2.0, 1.0]])


def test_toy_ibp_is_exactly_minus6_4():
    lb, ub = verify.bounds(toy(), TOY_LO, TOY_HI, method="ibp")
    assert (float(lb[0, 0]), float(ub[0, 0])) == (-6.0, 4.0)


def test_toy_crown_bounds_and_coefficients():
    lb, ub = verify.bounds(toy(), TOY_LO, TOY_HI, method="crown")
    np.testing.assert_allclose([lb[0, 0], ub[0, 0]], [-3.0, 3.0], atol=1e-6)
    lin = verify.linear_bounds(toy(), TOY_LO, TOY_HI)
    np.testing.assert_allclose(lin.lA[0, 0], [-1 / 3, -1 / 3], atol=1e-6)
    np.testing.assert_allclose(lin.lbias[0, 0], -2.0, atol=1e-6)
    np.testing.assert_allclose(lin.uA[0, 0], [-4 / 3, 1 / 3], atol=1e-6)
    np.testing.assert_allclose(lin.ubias[0, 0], 4 / 3, atol=1e-6)


def test_toy_alpha_crown_reaches_upper_2():
    lb, ub = verify.bounds(toy(), TOY_LO, TOY_HI, method="alpha-crown")
    assert float(ub[0, 0]) <= 2.0 + 1e-5
    assert float(lb[0, 0]) >= -3.0 - 1e-5


def test_toy_spec_negates():
    spec = -jnp.ones((1, 1, 1))
    lb, ub = verify.bounds(toy(), TOY_LO, TOY_HI, method="crown", spec=spec)
    np.testing.assert_allclose([lb[0, 0], ub[0, 0]], [-3.0, 3.0], atol=1e-6)


# -- soundness on random networks --------------------------------------------------------------------


def randomise_state(model: Model, key) -> Model:
    """BatchNorm running statistics away from (0, 1), so eval mode is a real affine map."""

    def leaf(path, x):
        name = jax.tree_util.keystr(path)
        k = jax.random.fold_in(key, hash(name) % (2**31))
        if "running_var" in name:
            return jax.random.uniform(k, x.shape, x.dtype, 0.5, 2.0)
        if "running_mean" in name:
            return 0.3 * jax.random.normal(k, x.shape, x.dtype)
        return x

    return model.replace(state=jax.tree_util.tree_map_with_path(leaf, model.state))


ACTS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU}


def build(kind: str, acts: list, seed: int) -> tuple[Model, tuple]:
    a = [ACTS[name]() for name in acts]
    if kind == "mlp":
        layer = nn.Sequential(nn.Linear(3, 6), a[0], nn.Linear(6, 5), a[1], nn.Linear(5, 3))
        shape = (3,)
    else:
        layer = nn.Sequential(
            nn.Conv2d(1, 3, 3, padding=1),
            nn.BatchNorm2d(3),
            a[0],
            nn.BasicBlock(3, 3),
            nn.AvgPool2d(2) if kind == "cnn-avg" else nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(12, 6),
            a[1],
            nn.Linear(6, 3),
        )
        shape = (1, 4, 4)
    model = nn.run(seed, layer)
    return randomise_state(model, jax.random.key(seed)), shape


def points_in(lower, upper, key, n: int = 64):
    """``n`` uniform points and ``n`` random corners of each box, and the two extreme corners."""
    k1, k2 = jax.random.split(key)
    u = jax.random.uniform(k1, (n, *lower.shape))
    corners = jax.random.bernoulli(k2, 0.5, (n, *lower.shape)).astype(lower.dtype)
    t = jnp.concatenate([u, corners, jnp.zeros_like(u[:1]), jnp.ones_like(u[:1])])
    return lower[None] + (upper - lower)[None] * t


# CI draws among two MLPs (one compile per method each); the long profile adds CNNs and
# every activation pair.
ARCHS = [("mlp", ("relu", "tanh")), ("mlp", ("sigmoid", "gelu"))]
LONG_ARCHS = [(k, (a, b)) for k in ("mlp", "cnn-avg", "cnn-max") for a in ACTS for b in ACTS]


@settings(max_examples=60 if LONG else 4)
@given(
    arch=st.sampled_from(LONG_ARCHS if LONG else ARCHS),
    seed=st.integers(0, 2**16),
    eps=st.sampled_from([0.01, 0.1, 0.5]),
)
def test_outputs_lie_within_every_method_bounds(arch, seed, eps):
    check_sound(*arch, seed, eps)


def test_cnn_outputs_lie_within_every_method_bounds():
    """Conv2d, BatchNorm2d (eval, random statistics), a residual BasicBlock, max-pooling, Flatten,
    Tanh, Sigmoid (average pooling: the auto_LiRPA fixtures; every pair: the long profile)."""
    check_sound("cnn-max", ("tanh", "sigmoid"), 3, 0.1)


def test_the_graph_is_traced_channels_first():
    """The CPU's channels-last compute path adds transposes that would cost CROWN a step each: the
    graph is traced as written, with the same bounds."""
    from tlean.layers import _layout
    from tlean.verify import _graph

    model, shape = build("cnn-max", ("tanh", "sigmoid"), 3)
    x = jax.random.normal(jax.random.key(0), (2, *shape))
    with _layout.forced(True):
        graph = _graph.build(model.layer, model.params, model.state, x.shape, x.dtype)
        lb, ub = verify.bounds(model, x - 0.1, x + 0.1, method="crown")
    assert not [node.where for node in graph.nodes if node.prim == "transpose"]
    with _layout.forced(False):
        lb0, ub0 = verify.bounds(model, x - 0.1, x + 0.1, method="crown")
    np.testing.assert_array_equal(lb, lb0)
    np.testing.assert_array_equal(ub, ub0)


def check_sound(kind, acts, seed, eps):
    model, shape = build(kind, acts, seed)
    key = jax.random.key(seed)
    x = jax.random.normal(key, (2, *shape))
    lower, upper = x - eps, x + eps
    ys = jax.vmap(model)(points_in(lower, upper, jax.random.fold_in(key, 1)))
    widths = {}
    for method in METHODS:
        lb, ub = verify.bounds(model, lower, upper, method=method, steps=2)
        tol = 1e-5 * (1 + jnp.abs(ys).max())
        assert bool((ys >= lb[None] - tol).all()), (method, float((lb[None] - ys).max()))
        assert bool((ys <= ub[None] + tol).all()), (method, float((ys - ub[None]).max()))
        widths[method] = ub - lb
    assert bool((widths["alpha-crown"] <= widths["crown"] + 1e-5).all())


@settings(max_examples=40 if LONG else 6)
@given(seed=st.integers(0, 2**16), eps=st.sampled_from([0.01, 0.05, 0.2]))
def test_crown_at_least_as_tight_as_ibp_on_relu_mlps(seed, eps):
    model = nn.run(seed, nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3)))
    x = jax.random.normal(jax.random.key(seed), (3, 4))
    ilb, iub = verify.bounds(model, x - eps, x + eps, method="ibp")
    clb, cub = verify.bounds(model, x - eps, x + eps, method="crown")
    assert bool((clb >= ilb - 1e-5).all()) and bool((cub <= iub + 1e-5).all())


def test_activation_relaxations_are_sound_on_their_intervals():
    """Every relaxation line lies below / above its function on a fine grid of the interval."""
    from tlean.verify._relax import Activation

    rng = np.random.default_rng(0)
    a = rng.uniform(-6, 6, 400).astype(np.float32)
    b = rng.uniform(-6, 6, 400).astype(np.float32)
    lo, hi = jnp.minimum(a, b), jnp.maximum(a, b)
    lo = lo.at[:5].set(hi[:5])  # degenerate intervals too
    t = jnp.linspace(0, 1, 201)[:, None]
    xs = lo[None] + (hi - lo)[None] * t
    for act in [
        Activation("relu"),
        Activation("relu", c=0.5),
        Activation("relu", a=0.1),
        Activation("min", c=1.0),
        Activation("tanh"),
        Activation("logistic"),
        Activation("erf"),
        Activation("erfc"),
        Activation("softplus"),
        Activation("gelu"),
        Activation("gelu", approximate=True),
    ]:
        al, bl, au, bu = jax.jit(act.relax)(lo, hi)
        f = act(xs)
        tol = 2e-6 * (1 + jnp.abs(f))
        assert bool((al[None] * xs + bl[None] <= f + tol).all()), act
        assert bool((au[None] * xs + bu[None] >= f - tol).all()), act
        ilo, ihi = jax.jit(act.interval)(lo, hi)
        assert bool((ilo[None] <= f + tol).all() & (ihi[None] >= f - tol).all()), act


def test_leaky_relu_and_softplus_named_calls():
    """jax.nn.leaky_relu and jax.nn.softplus are recognised as one activation each."""
    layer = L.seq(
        L.Linear(3, 4), L.Lambda(jax.nn.leaky_relu), L.Linear(4, 4), L.Lambda(jax.nn.softplus), L.Linear(4, 2)
    )
    model = Model(layer, *layer.init(jax.random.key(0)))
    x = jax.random.normal(jax.random.key(1), (2, 3))
    ys = jax.vmap(model)(points_in(x - 0.3, x + 0.3, jax.random.key(2)))
    for method in ("ibp", "crown"):
        lb, ub = verify.bounds(model, x - 0.3, x + 0.3, method=method)
        assert bool((ys >= lb[None] - 1e-5).all() & (ys <= ub[None] + 1e-5).all()), method


def test_jit_once_per_shape_and_vmap_equals_loop():
    model = toy()
    lo = jnp.array([[-1.0, -2.0], [0.0, 0.0], [1.0, -1.0]])
    hi = lo + jnp.array([[3.0, 3.0], [0.5, 0.5], [0.1, 0.2]])
    lb, ub = verify.bounds(model, lo, hi, method="crown")
    for i in range(3):
        lbi, ubi = verify.bounds(model, lo[i : i + 1], hi[i : i + 1], method="crown")
        np.testing.assert_allclose(lbi[0], lb[i], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(ubi[0], ub[i], rtol=1e-6, atol=1e-6)
    from tlean.verify import _api

    before = _api._bounds_jit._cache_size()
    verify.bounds(model, lo + 1.0, hi + 1.0, method="crown")
    assert _api._bounds_jit._cache_size() == before


def test_bounds_under_outer_jit():
    model = toy()
    f = jax.jit(lambda m, lo, hi: verify.bounds(m, lo, hi, method="crown"))
    lb, ub = f(model, TOY_LO, TOY_HI)
    np.testing.assert_allclose([lb[0, 0], ub[0, 0]], [-3.0, 3.0], atol=1e-6)


# -- errors ---------------------------------------------------------------------------------------------


def test_lower_above_upper_is_a_value_error():
    with pytest.raises(ValueError, match=r"lower > upper at 1 entries, first at index \(0, 1\)"):
        verify.bounds(toy(), jnp.array([[0.0, 1.0]]), jnp.array([[1.0, 0.0]]))


def test_box_shapes_must_agree():
    with pytest.raises(
        ShapeError, match=r"verify.bounds: expected upper of lower's shape \(1, 2\), got shape \(1, 3\)"
    ):
        verify.bounds(toy(), jnp.zeros((1, 2)), jnp.ones((1, 3)))
    with pytest.raises(ShapeError, match=r"a box \[n, \*input\]"):
        verify.bounds(toy(), jnp.zeros((2,)), jnp.ones((2,)))


def test_box_the_model_refuses_names_the_layer():
    with pytest.raises(ShapeError, match=r"Linear\(in_features=2"):
        verify.bounds(toy(), jnp.zeros((1, 3)), jnp.ones((1, 3)))


def test_unknown_method_and_bad_spec():
    with pytest.raises(ValueError, match="method must be one of"):
        verify.bounds(toy(), TOY_LO, TOY_HI, method="lp")
    with pytest.raises(ShapeError, match=r"spec \[n=1, k, out\]"):
        verify.bounds(toy(), TOY_LO, TOY_HI, spec=jnp.ones((1, 2)))


def test_softmax_is_a_type_error_naming_primitive_and_layer():
    model = nn.run(0, nn.Sequential(nn.Linear(2, 3), nn.Softmax(-1)))
    with pytest.raises(TypeError, match=r"primitive 'exp' at layer '1' has no bound rule"):
        verify.bounds(model, TOY_LO, TOY_HI)


def test_product_of_bounded_values_is_a_type_error():
    model = Model(L.Lambda(lambda x: x * x), {}, {})
    with pytest.raises(TypeError, match=r"primitive 'mul'.*product of two bounded values"):
        verify.bounds(model, TOY_LO, TOY_HI, method="ibp")


def test_not_a_model_is_a_type_error():
    with pytest.raises(TypeError, match="expected a tlean Model"):
        verify.bounds(L.Linear(2, 1), TOY_LO, TOY_HI)


def test_unsupported_primitive_inside_a_nested_seq_names_the_path():
    model = nn.run(0, nn.Sequential(nn.Linear(2, 4), nn.Dropout(0.5), nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))))
    with pytest.raises(TypeError, match=r"primitive 'square' at layer '2/1' has no bound rule"):
        verify.bounds(model, TOY_LO, TOY_HI, method="ibp")
