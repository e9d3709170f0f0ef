"""Embedding and EmbeddingBag against torch.nn: ids by gather, one-hot and soft distributions by matmul,
padding_idx, max_norm, scale_grad_by_freq, bags by offsets."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tests.torch_utils import load, n, t
from tlean import ShapeError, nn
from tlean import layers as L


class EmbeddingParityTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_ids_match_torch_in_value_and_weight_gradient(self):
        torch.manual_seed(0)
        tm = torch.nn.Embedding(10, 4)
        model = load(nn.pure.embedding(10, 4, key=jax.random.key(0)), tm)
        ids = np.array([[1, 2, 9, 0, 2], [3, 3, 7, 5, 1]])
        cot = np.random.default_rng(0).normal(size=(2, 5, 4)).astype(np.float32)
        y = self.variant(lambda m, i: m(i))(model, ids)
        yt = tm(torch.from_numpy(ids))
        np.testing.assert_allclose(y, n(yt), rtol=1e-6, atol=1e-6)
        (yt * torch.from_numpy(cot)).sum().backward()
        g = self.variant(jax.grad(lambda m, i: (m(i) * cot).sum()))(model, ids)
        np.testing.assert_allclose(g.params["weight"], n(tm.weight.grad), atol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    def test_one_hot_and_soft_distributions_are_a_matmul_with_the_same_weight(self):
        torch.manual_seed(1)
        tm = torch.nn.Embedding(6, 3)
        model = load(nn.pure.embedding(6, 3, key=jax.random.key(0)), tm)
        ids = np.array([[0, 5, 2], [4, 4, 1]])
        one_hot = np.asarray(jax.nn.one_hot(ids, 6))
        apply = self.variant(lambda m, x: m(x))
        np.testing.assert_allclose(apply(model, one_hot), n(tm(torch.from_numpy(ids))), rtol=1e-6, atol=1e-6)
        logits = np.random.default_rng(1).normal(size=(2, 3, 6)).astype(np.float32)
        soft = np.asarray(jax.nn.softmax(logits, axis=-1))
        st_ = t(soft)
        yt = st_ @ tm.weight
        np.testing.assert_allclose(apply(model, soft), n(yt), rtol=1e-5, atol=1e-6)
        yt.sum().backward()
        gx, gm = self.variant(jax.grad(lambda x, m: m(x).sum(), argnums=(0, 1)))(soft, model)
        np.testing.assert_allclose(gx, n(st_.grad), atol=1e-5)
        np.testing.assert_allclose(gm.params["weight"], n(tm.weight.grad), atol=1e-5)


@given(st.sampled_from([1, 7]), st.sampled_from([1, 3]), st.sampled_from([(), (4,), (2, 3)]), st.integers(0, 99))
def test_ids_path_equals_one_hot_path(vocab, dim, batch_shape, seed):
    layer = L.Embedding(vocab, dim)
    params, state = layer.init(jax.random.key(seed))
    ids = jax.random.randint(jax.random.key(seed + 1), tuple(batch_shape), 0, vocab)
    by_ids = layer.apply(params, state, ids)[0]
    by_matmul = layer.apply(params, state, jax.nn.one_hot(ids, vocab))[0]
    assert by_ids.shape == tuple(batch_shape) + (dim,)
    np.testing.assert_allclose(by_ids, by_matmul, rtol=1e-6, atol=1e-6)


def test_default_init_is_standard_normal_like_torch():
    w = np.asarray(L.Embedding(500, 64).init(jax.random.key(0))[0]["weight"])
    assert w.shape == (500, 64) and w.dtype == np.float32
    assert abs(w.mean()) < 0.02 and abs(w.std() - 1.0) < 0.02
    torch.manual_seed(0)
    np.testing.assert_allclose(w.std(), torch.nn.Embedding(500, 64).weight.detach().numpy().std(), rtol=0.03)


def test_out_of_range_ids_give_nan_rows_never_a_clamped_or_wrapped_row():
    layer = L.Embedding(5, 3)
    params, state = layer.init(jax.random.key(0))
    ids = jnp.array([0, 4, 5, -1, 100])
    y = np.asarray(jax.jit(lambda p, i: layer.apply(p, state, i)[0])(params, ids))
    np.testing.assert_array_equal(y[:2], np.asarray(params["weight"])[[0, 4]])
    assert np.isnan(y[2:]).all()  # 5 and 100 are past the end; -1 would wrap to row 4 with NumPy indexing
    g = jax.grad(lambda p: jnp.nansum(layer.apply(p, state, ids)[0]))(params)["weight"]
    np.testing.assert_array_equal(np.asarray(g), np.array([[1.0] * 3, [0.0] * 3, [0.0] * 3, [0.0] * 3, [1.0] * 3]))


@pytest.mark.parametrize("param_dtype", [jnp.float32, jnp.bfloat16])
def test_dtypes(param_dtype):
    layer = L.Embedding(5, 3, param_dtype=param_dtype)
    params, state = layer.init(jax.random.key(0))
    assert params["weight"].dtype == param_dtype
    assert layer.apply(params, state, jnp.array([1, 2]))[0].dtype == param_dtype
    assert layer.apply(params, state, jnp.ones((2, 5), jnp.float32))[0].dtype == jnp.float32
    assert L.Embedding(5, 3, dtype=jnp.bfloat16).apply(params, state, jnp.array([1]))[0].dtype == jnp.bfloat16


def test_bad_input_and_config():
    layer = L.Embedding(10, 4)
    params, state = layer.init(jax.random.key(0))
    with pytest.raises(
        ShapeError,
        match=r"Embedding\(num_embeddings=10, embedding_dim=4\): expected a distribution "
        r"\[\.\.\., 10\], got shape \(2, 9\)",
    ):
        layer.apply(params, state, jnp.ones((2, 9)))
    with pytest.raises(
        TypeError, match=r"Embedding\(.*\): expected integer ids or a floating-point distribution .*got bool"
    ):
        layer.apply(params, state, jnp.ones((2, 10), bool))
    with pytest.raises(ValueError, match=r"Embedding: num_embeddings must be a positive int, got 0"):
        L.Embedding(0, 4)
    with pytest.raises(ValueError, match=r"Embedding: embedding_dim must be a positive int, got 2.5"):
        L.Embedding(3, 2.5)
    with pytest.raises(ValueError, match=r"Embedding: param_dtype must be a floating dtype"):
        L.Embedding(3, 2, param_dtype=jnp.int32)


# --- padding_idx, max_norm, scale_grad_by_freq; EmbeddingBag (issue 13) -------------------------


def _compare(module, model, ids, **forward):
    """Outputs and weight gradients of a torch embedding module and a tlean Model on the same ids."""
    cot = np.random.default_rng(3).normal(size=(*module(torch.from_numpy(ids), **forward).shape,)).astype(np.float32)
    module.zero_grad()
    yt = module(torch.from_numpy(ids), **forward)
    (yt * torch.from_numpy(cot)).sum().backward()
    tlean_forward = {k: (np.asarray(v.detach()) if isinstance(v, torch.Tensor) else v) for k, v in forward.items()}
    y, g = jax.jit(lambda m: (m(ids, **tlean_forward), jax.grad(lambda m: (m(ids, **tlean_forward) * cot).sum())(m)))(
        model
    )
    np.testing.assert_allclose(y, n(yt), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(g.params["weight"], n(module.weight.grad), atol=1e-5, rtol=1e-5)
    return y


EMBEDDING_CASES = [
    ((10, 4), {"padding_idx": 0}),
    ((10, 4, -1), {}),
    ((10, 4, 3, 1.5), {}),
    ((10, 4), {"max_norm": 1.0, "norm_type": 1.0}),
    ((10, 4), {"scale_grad_by_freq": True}),
    ((10, 4, 2, 2.0, 3.0, True), {}),
]


@pytest.mark.parametrize("args,kwargs", EMBEDDING_CASES, ids=lambda v: str(v).replace(" ", ""))
def test_embedding_options_match_torch(args, kwargs):
    torch.manual_seed(0)
    module = torch.nn.Embedding(*args, **kwargs)
    with torch.no_grad():
        module.weight.mul_(2)  # rows of norm ~4: max_norm bites
        if module.padding_idx is not None:
            module.weight[module.padding_idx] = 0.5  # a loaded non-zero padding row is returned as stored
    model = load(
        nn.pure.embedding(*args, **kwargs, key=jax.random.key(0)), module
    )  # before torch renormalises in place
    stored = np.asarray(model.params["weight"]).copy()
    ids = np.array([[1, 2, 9, 0, 2], [3, 3, 7, 5, 1]])
    _compare(module, model, ids)
    np.testing.assert_array_equal(model.params["weight"], stored)  # functional: the table is never modified


def test_padding_row_is_zero_at_init_and_gets_no_gradient():
    layer = L.Embedding(6, 3, padding_idx=-2)
    assert layer.padding_idx == 4  # torch's rule for a negative index
    params, state = layer.init(jax.random.key(0))
    np.testing.assert_array_equal(params["weight"][4], 0)
    assert (np.asarray(params["weight"])[[0, 1, 2, 3, 5]] != 0).all()
    ids = jnp.array([4, 4, 1])
    g = jax.grad(lambda p: layer.apply(p, state, ids)[0].sum())(params)["weight"]
    np.testing.assert_array_equal(g[4], 0)
    g = jax.grad(lambda p: layer.apply(p, state, jax.nn.one_hot(ids, 6))[0].sum())(params)[
        "weight"
    ]  # distributions too
    np.testing.assert_array_equal(g[4], 0)
    np.testing.assert_array_equal(g[1], 1)


def test_max_norm_rows_are_renormalised_in_the_output():
    layer = L.Embedding(4, 3, max_norm=1.0)
    params = {"weight": jnp.array([[3.0, 4.0, 0.0], [0.1, 0.0, 0.0], [0.0, 0.0, 2.0], [1.0, 0.0, 0.0]])}
    y = np.asarray(layer.apply(params, {}, jnp.array([0, 1, 2]))[0])
    np.testing.assert_allclose(np.linalg.norm(y, axis=-1), [1.0, 0.1, 1.0], rtol=1e-6)
    np.testing.assert_allclose(y[0], [0.6, 0.8, 0.0], rtol=1e-6)


BAG_CASES = [
    ({"mode": "sum"}, (np.array([[1, 2, 4], [4, 3, 2]]),), {}),
    ({"mode": "mean"}, (np.array([[1, 2, 4], [4, 3, 2]]),), {}),
    ({"mode": "max"}, (np.array([[1, 2, 4], [4, 3, 2]]),), {}),
    ({"mode": "sum"}, (np.array([1, 2, 4, 5, 4, 3, 2, 9]),), {"offsets": np.array([0, 3, 3, 5])}),
    ({"mode": "mean"}, (np.array([1, 2, 4, 5, 4, 3, 2, 9]),), {"offsets": np.array([0, 3, 3, 5])}),
    ({"mode": "max"}, (np.array([1, 2, 4, 5, 4, 3, 2, 9]),), {"offsets": np.array([0, 2, 6])}),
    (
        {"mode": "mean", "include_last_offset": True},
        (np.array([1, 2, 4, 5, 4, 3, 2, 9]),),
        {"offsets": np.array([0, 3, 5, 8])},
    ),
    (
        {"mode": "sum"},
        (np.array([1, 2, 4, 5, 4, 3]),),
        {"offsets": np.array([0, 2]), "per_sample_weights": np.linspace(-1, 2, 6, dtype=np.float32)},
    ),
    ({"mode": "mean", "padding_idx": 2}, (np.array([[1, 2, 4], [2, 2, 2], [4, 3, 2]]),), {}),
    (
        {"mode": "max", "padding_idx": 4, "max_norm": 1.0},
        (np.array([1, 2, 4, 5, 4, 3]),),
        {"offsets": np.array([0, 2])},
    ),
]


@pytest.mark.parametrize(
    "kwargs,inputs,forward", BAG_CASES, ids=[f"{k}-{f.keys()}".replace(" ", "") for k, _, f in BAG_CASES]
)
def test_embedding_bag_matches_torch(kwargs, inputs, forward):
    torch.manual_seed(0)
    module = torch.nn.EmbeddingBag(10, 3, **kwargs)
    model = load(nn.pure.embedding_bag(10, 3, **kwargs, key=jax.random.key(0)), module)
    torch_forward = {k: torch.from_numpy(v) for k, v in forward.items()}
    if "per_sample_weights" in torch_forward:
        torch_forward["per_sample_weights"].requires_grad_(False)
    y = _compare(module, model, *inputs, **torch_forward)
    if "offsets" in forward:  # Model(x, *others) takes torch's forward order
        np.testing.assert_array_equal(jax.jit(lambda m, *a: m(*a))(model, *inputs, *forward.values()), y)


def test_embedding_bag_per_sample_weights_gradient_and_empty_bags():
    torch.manual_seed(1)
    module = torch.nn.EmbeddingBag(6, 2, mode="sum")
    model = load(nn.pure.embedding_bag(6, 2, mode="sum", key=jax.random.key(0)), module)
    ids, offsets = np.array([1, 2, 3, 5]), np.array([0, 0, 3])
    w = np.array([0.5, -1.0, 2.0, 1.5], np.float32)
    wt = t(w)
    yt = module(torch.from_numpy(ids), torch.from_numpy(offsets), per_sample_weights=wt)
    yt.sum().backward()
    g = jax.jit(jax.grad(lambda w: model(ids, offsets=offsets, per_sample_weights=w).sum()))(w)
    np.testing.assert_allclose(g, n(wt.grad), rtol=1e-6)
    np.testing.assert_array_equal(model(ids, offsets=offsets, per_sample_weights=w)[0], 0)  # an empty bag is zeros


def test_embedding_options_and_bag_inputs_are_checked():
    with pytest.raises(ValueError, match=r"Embedding: sparse=True is not supported: JAX gradients are dense arrays"):
        L.Embedding(3, 2, sparse=True)
    with pytest.raises(ValueError, match=r"Embedding: padding_idx must be an int in \[-3, 3\), got 3"):
        L.Embedding(3, 2, padding_idx=3)
    with pytest.raises(ValueError, match=r"Embedding: max_norm must be a number > 0 or None, got -1"):
        L.Embedding(3, 2, max_norm=-1)
    with pytest.raises(ValueError, match=r"EmbeddingBag: mode must be 'sum', 'mean' or 'max', got 'min'"):
        L.EmbeddingBag(3, 2, mode="min")
    with pytest.raises(
        TypeError, match=r"Embedding\(.*scale_grad_by_freq=True\): scale_grad_by_freq needs integer ids"
    ):
        L.Embedding(3, 2, scale_grad_by_freq=True).apply({"weight": jnp.ones((3, 2))}, {}, jnp.ones((1, 3)))
    with pytest.raises(ValueError, match=r"EmbeddingBag: scale_grad_by_freq=True is not supported"):
        L.EmbeddingBag(3, 2, scale_grad_by_freq=True)
    bag = L.EmbeddingBag(5, 2)
    params, state = bag.init(jax.random.key(0))
    with pytest.raises(
        ShapeError,
        match=r"EmbeddingBag\(num_embeddings=5, embedding_dim=2\): expected offsets \[B\] \(integers\) with a 1-D input, got offsets None",
    ):
        bag.apply(params, state, jnp.array([1, 2]))
    with pytest.raises(
        ShapeError,
        match=r"expected offsets=None with a 2-D input \[B, L\] \(each row a bag\), got offsets of shape \(2,\)",
    ):
        bag.apply(params, state, jnp.ones((2, 2), jnp.int32), offsets=jnp.array([0, 1]))
    with pytest.raises(ShapeError, match=r"expected input \[B, L\] or \[n\] with offsets, got shape \(1, 2, 2\)"):
        bag.apply(params, state, jnp.ones((1, 2, 2), jnp.int32))
    with pytest.raises(ValueError, match=r"per_sample_weights needs mode='sum', got mode='mean'"):
        bag.apply(params, state, jnp.ones((2, 2), jnp.int32), per_sample_weights=jnp.ones((2, 2)))
    with pytest.raises(TypeError, match=r"EmbeddingBag\(.*\): expected integer ids, got float32"):
        bag.apply(params, state, jnp.ones((2, 2)))
    assert L.EmbeddingBag.inputs == ("offsets", "per_sample_weights")
