"""Flatten, Sum, Mean, Select against torch."""

import chex
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from tests.torch_utils import n
from tlean import ShapeError, nn
from tlean import layers as L


class ShapeLayersTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_flatten_matches_torch(self):
        x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
        for start, end in [(1, -1), (0, -1), (1, 2), (2, 3), (-3, -2), (0, 0)]:
            y = self.variant(lambda m, x: m(x))(nn.pure.flatten(start, end), x)
            np.testing.assert_array_equal(y, n(torch.nn.Flatten(start, end)(torch.from_numpy(x))))
        np.testing.assert_array_equal(L.flatten.apply({}, {}, x)[0], x.reshape(-1))
        np.testing.assert_array_equal(L.flatten_batch.apply({}, {}, x)[0], x.reshape(2, -1))

    @chex.variants(with_jit=True, without_jit=True)
    def test_reductions_match_torch(self):
        x = np.random.default_rng(0).normal(size=(2, 3, 4)).astype(np.float32)
        xt = torch.from_numpy(x)
        run = self.variant(lambda m, x: m(x))
        np.testing.assert_allclose(run(nn.pure.sum(), x), n(torch.sum(xt)), rtol=1e-5)
        np.testing.assert_allclose(run(nn.pure.sum(1, keepdim=True), x), n(torch.sum(xt, 1, keepdim=True)), rtol=1e-5)
        np.testing.assert_allclose(run(nn.pure.mean(-1), x), n(torch.mean(xt, -1)), rtol=1e-5)
        np.testing.assert_array_equal(run(nn.pure.select(-1, 1), x), n(torch.select(xt, 1, -1)))


def test_errors_name_the_layer():
    x = jnp.ones((2, 3))
    with pytest.raises(
        ShapeError, match=r"Flatten\(start_dim=3\): expected an input with axis start_dim=3, got rank 2"
    ):
        L.Flatten(3).apply({}, {}, x)
    with pytest.raises(ShapeError, match=r"start_dim <= end_dim"):
        L.Flatten(1, 0).apply({}, {}, x)
    with pytest.raises(
        ShapeError, match=r"Select\(index=3, dim=1\): expected axis 1 longer than index 3, got shape \(2, 3\)"
    ):
        L.Select(3, 1).apply({}, {}, x)
    with pytest.raises(ShapeError, match=r"Mean\(dim=2\)"):
        L.Mean(2).apply({}, {}, x)
    with pytest.raises(TypeError, match="Lambda: fn must be callable"):
        L.Lambda(3)


@pytest.mark.parametrize(
    "dim,size,shape",
    [
        (1, (2, 3), (4, 6)),
        (-1, (2, -1), (4, 6)),
        (0, (1, 4), (4, 6)),
        (1, [3, 1, 2], (2, 6, 5)),
        (-2, (-1,), (2, 6, 5)),
        (1, (0, 3), (2, 0, 1)),
    ],
    ids=str,
)
def test_unflatten_matches_torch(dim, size, shape):
    x = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)
    y = nn.pure.unflatten(dim, size)(x)
    np.testing.assert_array_equal(y, n(torch.nn.Unflatten(dim, size)(torch.from_numpy(x))))
    np.testing.assert_array_equal(
        nn.pure.flatten(dim % x.ndim, dim % x.ndim + len(size) - 1)(y), x
    )  # Flatten undoes it


def test_unflatten_errors_name_the_layer():
    with pytest.raises(
        ShapeError,
        match=r"Unflatten\(dim=1, unflattened_size=\(2, 4\)\): expected axis 1 of length 8 "
        r"\(the product of \(2, 4\)\), got shape \(3, 6\)",
    ):
        L.Unflatten(1, (2, 4)).apply({}, {}, jnp.ones((3, 6)))
    with pytest.raises(ShapeError, match=r"expected axis 1 of a length divisible by 4, got shape \(3, 6\)"):
        L.Unflatten(1, (4, -1)).apply({}, {}, jnp.ones((3, 6)))
    with pytest.raises(ShapeError, match=r"Unflatten\(dim=2, .*\): expected an input with axis dim=2, got rank 2"):
        L.Unflatten(2, (1, 1)).apply({}, {}, jnp.ones((3, 6)))
    with pytest.raises(
        ValueError, match=r"Unflatten: unflattened_size must hold sizes >= 0 and at most one -1, got \(-1, -1\)"
    ):
        L.Unflatten(1, (-1, -1))
    with pytest.raises(
        ValueError, match=r"Unflatten: unflattened_size must be a non-empty tuple or list of ints, got 3"
    ):
        L.Unflatten(1, 3)
    assert L.Unflatten(1, [2, 3]) == L.Unflatten(1, (2, 3)) and hash(L.Unflatten(1, [2, 3])) == hash(
        L.Unflatten(1, (2, 3))
    )
