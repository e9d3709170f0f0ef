"""CosineSimilarity and PairwiseDistance against torch.nn: two inputs, broadcast as torch does."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from tests.torch_utils import n, t
from tlean import ShapeError, nn
from tlean import layers as L

CASES = [
    ("CosineSimilarity", (), {}, (4, 5), (4, 5)),
    ("CosineSimilarity", (0,), {}, (5,), (5,)),
    ("CosineSimilarity", (-1, 1e-3), {}, (2, 3, 4), (3, 4)),
    ("CosineSimilarity", (1,), {"eps": 0.5}, (2, 3, 4), (1, 3, 1)),
    ("PairwiseDistance", (), {}, (4, 5), (4, 5)),
    ("PairwiseDistance", (1.0,), {}, (4, 5), (5,)),
    ("PairwiseDistance", (3.0, 1e-3, True), {}, (2, 3, 4), (2, 3, 4)),
    ("PairwiseDistance", (float("inf"),), {}, (4, 5), (4, 5)),
    ("PairwiseDistance", (0.5,), {"keepdim": True}, (5,), (5,)),
    ("PairwiseDistance", (), {}, (6,), (6,)),
]


@pytest.mark.parametrize("name,args,kwargs,s1,s2", CASES, ids=lambda v: str(v).replace(" ", ""))
def test_outputs_and_gradients_match_torch(name, args, kwargs, s1, s2):
    snake = {"CosineSimilarity": "cosine_similarity", "PairwiseDistance": "pairwise_distance"}[name]
    model = getattr(nn.pure, snake)(*args, **kwargs)
    module = getattr(torch.nn, name)(*args, **kwargs)
    rng = np.random.default_rng(0)
    x1, x2 = rng.normal(size=s1).astype(np.float32), rng.normal(size=s2).astype(np.float32)
    t1, t2 = t(x1), t(x2)
    yt = module(t1, t2)
    cot = rng.normal(size=tuple(yt.shape)).astype(np.float32)
    (yt * torch.from_numpy(cot)).sum().backward()
    y, (g1, g2) = jax.jit(
        lambda a, b: (model(a, b), jax.grad(lambda a, b: (model(a, x2=b) * cot).sum(), (0, 1))(a, b))
    )(x1, x2)
    assert y.shape == tuple(yt.shape)
    np.testing.assert_allclose(y, n(yt), atol=1e-6, rtol=1e-5)
    np.testing.assert_allclose(g1, n(t1.grad), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(g2, n(t2.grad), atol=1e-5, rtol=1e-5)


def test_cosine_similarity_clamps_each_norm_and_a_zero_vector_has_finite_gradients():
    a = np.zeros((2, 3), np.float32)
    a[1] = [1e-3, 0, 0]
    b = np.ones((2, 3), np.float32)
    layer = L.CosineSimilarity(1, 1e-2)
    y = layer.apply({}, {}, a, x2=b)[0]
    np.testing.assert_allclose(
        y, n(torch.nn.CosineSimilarity(1, 1e-2)(torch.from_numpy(a), torch.from_numpy(b))), rtol=1e-6
    )
    g = jax.jit(jax.grad(lambda a: layer.apply({}, {}, a, x2=b)[0].sum()))(a)
    assert np.isfinite(np.asarray(g)).all()
    ta = t(a)
    torch.nn.CosineSimilarity(1, 1e-2)(ta, torch.from_numpy(b)).sum().backward()
    np.testing.assert_allclose(g, n(ta.grad), atol=1e-5)


def test_pairwise_distance_p0_and_minus_inf():
    x1, x2 = np.array([[1.0, 2.0, 3.0]], np.float32), np.array([[1.0, 0.0, 5.0]], np.float32)
    for p in (0.0, float("-inf")):
        y = L.PairwiseDistance(p, 0.0).apply({}, {}, x1, x2=x2)[0]
        np.testing.assert_allclose(y, n(torch.nn.PairwiseDistance(p, 0.0)(torch.from_numpy(x1), torch.from_numpy(x2))))


def test_bad_inputs_and_config():
    with pytest.raises(
        ShapeError, match=r"PairwiseDistance\(\): expected x2 broadcastable with x \(4, 5\), got shape \(3, 5\)"
    ):
        L.PairwiseDistance().apply({}, {}, jnp.ones((4, 5)), x2=jnp.ones((3, 5)))
    with pytest.raises(ShapeError, match=r"CosineSimilarity\(\): expected inputs with an axis 1, got shape \(5,\)"):
        L.CosineSimilarity().apply({}, {}, jnp.ones(5), x2=jnp.ones(5))
    with pytest.raises(TypeError, match=r"CosineSimilarity\(\): needs its second input"):
        L.CosineSimilarity().apply({}, {}, jnp.ones((2, 5)))
    with pytest.raises(TypeError, match=r"PairwiseDistance\(\): expected a floating-point input, got int32"):
        L.PairwiseDistance().apply({}, {}, jnp.ones(5), x2=jnp.ones(5, jnp.int32))
    with pytest.raises(ValueError, match=r"PairwiseDistance: p must be >= 0 or -inf, got -1.0"):
        L.PairwiseDistance(-1)
    with pytest.raises(ValueError, match=r"CosineSimilarity: eps must be a number >= 0, got -1"):
        L.CosineSimilarity(1, -1)
    assert L.PairwiseDistance.inputs == L.CosineSimilarity.inputs == ("x2",)
    assert (
        L.CosineSimilarity().apply({}, {}, jnp.ones((2, 3), jnp.bfloat16), x2=jnp.ones((2, 3), jnp.bfloat16))[0].dtype
        == jnp.bfloat16
    )
