"""Embedding against torch.nn.Embedding: ids by gather, one-hot and soft distributions by matmul."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tlean import ShapeError, nn
from tlean import layers as L
from tests.torch_utils import load, n, t


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
    with pytest.raises(ShapeError, match=r"Embedding\(num_embeddings=10, embedding_dim=4\): expected a distribution "
                                         r"\[\.\.\., 10\], got shape \(2, 9\)"):
        layer.apply(params, state, jnp.ones((2, 9)))
    with pytest.raises(TypeError, match=r"Embedding\(.*\): expected integer ids or a floating-point distribution .*got bool"):
        layer.apply(params, state, jnp.ones((2, 10), bool))
    with pytest.raises(ValueError, match=r"Embedding: num_embeddings must be a positive int, got 0"):
        L.Embedding(0, 4)
    with pytest.raises(ValueError, match=r"Embedding: embedding_dim must be a positive int, got 2.5"):
        L.Embedding(3, 2.5)
    with pytest.raises(ValueError, match=r"Embedding: param_dtype must be a floating dtype"):
        L.Embedding(3, 2, param_dtype=jnp.int32)
