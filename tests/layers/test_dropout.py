"""Dropout, Dropout1d/2d/3d, AlphaDropout, FeatureAlphaDropout: p is the drop probability, train needs a key,
eval is the identity; statistics and mask structure against torch (not torch's RNG)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tests.torch_utils import n
from tlean import ShapeError, nn
from tlean import layers as L


class DropoutTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_eval_is_identity_and_train_scales_kept_values(self):
        model = nn.pure.dropout(0.25)
        x = jax.random.normal(jax.random.key(0), (64, 64))
        np.testing.assert_array_equal(self.variant(lambda m, x: m(x))(model, x), x)
        y = self.variant(lambda m, x, k: m(x, key=k, train=True))(model, x, jax.random.key(1))
        kept = np.asarray(y) != 0
        np.testing.assert_allclose(np.asarray(y)[kept], np.asarray(x)[kept] / 0.75, rtol=1e-6)
        assert abs(1 - kept.mean() - 0.25) < 0.03  # p is the drop probability, not the keep one


@given(st.floats(0.05, 0.9), st.integers(0, 1000))
def test_expectation_is_preserved(p, seed):
    x = jnp.ones((20000,))
    y, _ = L.Dropout(p).apply({}, {}, x, key=jax.random.key(seed), train=True)
    dropped = float((y == 0).mean())
    assert abs(dropped - p) < 0.03
    assert abs(float(y.mean()) - 1.0) < 0.1


def test_key_needed_and_config_errors():
    with pytest.raises(ValueError, match=r"Dropout\(p=0.1\) in train mode needs a dropout key"):
        L.Dropout(0.1).apply({}, {}, jnp.ones(3), train=True)
    np.testing.assert_array_equal(L.Dropout(0.0).apply({}, {}, jnp.ones(3), train=True)[0], jnp.ones(3))
    for p in (1.0, -0.1, 1.5, "0.1", True):
        with pytest.raises(ValueError, match=r"Dropout: p is the probability of dropping and must be in \[0, 1\)"):
            L.Dropout(p)
    with pytest.raises(TypeError, match=r"Dropout\(p=0.3\): expected a floating-point input, got int32"):
        L.Dropout(0.3).apply({}, {}, jnp.ones(4, jnp.int32), key=jax.random.key(0), train=True)
    same = L.Dropout(0.3).apply({}, {}, jnp.ones(100), key=jax.random.key(4), train=True)[0]
    again = L.Dropout(0.3).apply({}, {}, jnp.ones(100), key=jax.random.key(4), train=True)[0]
    np.testing.assert_array_equal(same, again)


# --- channel dropout and alpha dropout (issue 13) ----------------------------------------------


def _channels_all_or_nothing(y, x, scale, spatial):
    """Every channel (the trailing ``spatial`` axes) is either all zero or all ``x * scale``."""
    axes = tuple(range(y.ndim - spatial, y.ndim))
    zero = (y == 0).all(axis=axes)
    kept = np.isclose(y, x * scale, rtol=1e-6).all(axis=axes)
    assert (zero ^ kept).all()
    return zero


@pytest.mark.parametrize(
    "name,spatial,shape",
    [
        ("Dropout1d", 1, (40, 50, 3)),
        ("Dropout1d", 1, (500, 4)),
        ("Dropout2d", 2, (40, 50, 2, 3)),
        ("Dropout2d", 2, (500, 2, 2)),
        ("Dropout3d", 3, (40, 50, 2, 1, 2)),
        ("Dropout3d", 3, (500, 2, 1, 2)),
    ],
)
def test_channel_dropout_drops_whole_channels_with_probability_p_like_torch(name, spatial, shape):
    p = 0.3
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32) + 3  # no zeros of its own
    model = getattr(nn.pure, name.lower())(p)
    y = np.asarray(jax.jit(lambda m, x, k: m(x, key=k, train=True))(model, x, jax.random.key(1)))
    dropped = _channels_all_or_nothing(y, x, 1 / (1 - p), spatial)
    assert dropped.shape == shape[: len(shape) - spatial] and abs(dropped.mean() - p) < 0.03
    np.testing.assert_array_equal(model(x), x)  # eval: identity
    if len(shape) == spatial + 2 or name == "Dropout3d":  # torch's rules agree here (3-D Dropout2d: see below)
        yt = n(getattr(torch.nn, name)(p).train()(torch.from_numpy(x)))
        dropped_t = _channels_all_or_nothing(yt, x, 1 / (1 - p), spatial)
        assert abs(dropped_t.mean() - dropped.mean()) < 0.05


def test_channel_dropout_ranks_and_the_3d_dropout2d_rule():
    with pytest.raises(
        ShapeError, match=r"Dropout1d\(p=0.2\): expected input \[N, C, L\] or unbatched \[C, L\], got shape \(3,\)"
    ):
        L.Dropout1d(0.2).apply({}, {}, jnp.ones(3), key=jax.random.key(0), train=True)
    with pytest.raises(
        ShapeError, match=r"Dropout2d\(\): expected input \[N, C, H, W\] or unbatched \[C, H, W\], got shape \(2, 3\)"
    ):
        L.Dropout2d().apply({}, {}, jnp.ones((2, 3)))  # also in eval mode: the shape is checked at trace time
    with pytest.raises(
        ShapeError, match=r"Dropout3d\(\): expected input \[N, C, D, H, W\] or unbatched \[C, D, H, W\]"
    ):
        L.Dropout3d().apply({}, {}, jnp.ones((2, 3, 4)))
    # A 3-D input to Dropout2d is unbatched [C, H, W] here (torch's documented meaning); torch 2.x
    # still treats it as [N, C, L] with a warning: whole [H, W] planes drop here, rows there.
    y = np.asarray(L.Dropout2d(0.5).apply({}, {}, jnp.ones((64, 3, 5)), key=jax.random.key(2), train=True)[0])
    assert ((y == 0).all(axis=(1, 2)) | (y == 2).all(axis=(1, 2))).all()


@pytest.mark.parametrize("name", ["AlphaDropout", "FeatureAlphaDropout"])
@pytest.mark.parametrize("p", [0.2, 0.5])
def test_alpha_dropout_matches_torch_given_torch_mask_and_keeps_mean_and_variance(name, p):
    shape = (200, 30, 4)
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    module = getattr(torch.nn, name)(p).train()
    yt = n(module(torch.from_numpy(x)))
    layer = getattr(L, name)(p)
    dropped_value = layer.combine(jnp.zeros(()), jnp.zeros((), bool))
    keep = ~np.isclose(yt, float(dropped_value), rtol=0, atol=1e-6)
    if name == "FeatureAlphaDropout":  # torch's mask covers (N, C); recover it per channel
        keep = keep.any(axis=-1, keepdims=True)
    mine = layer.combine(jnp.asarray(x), jnp.broadcast_to(keep, shape))
    np.testing.assert_allclose(mine, yt, atol=1e-6, rtol=1e-6)  # the same affine map as torch, given torch's mask
    y = np.asarray(layer.apply({}, {}, x, key=jax.random.key(3), train=True)[0])
    assert abs(y.mean()) < 0.05 and abs(y.std() - 1) < 0.05  # self-normalising: mean 0, variance 1 kept
    assert abs((y == float(dropped_value)).mean() - p) < 0.03
    if name == "FeatureAlphaDropout":
        assert ((y == float(dropped_value)).all(-1) | (y != float(dropped_value)).all(-1)).all()
    np.testing.assert_array_equal(layer.apply({}, {}, x)[0], x)


def test_new_dropouts_share_the_config_rules():
    for cls, shape in (
        (L.Dropout1d, (2, 3, 4)),
        (L.Dropout2d, (3, 4, 4)),
        (L.Dropout3d, (3, 4, 4, 4)),
        (L.AlphaDropout, (3,)),
        (L.FeatureAlphaDropout, (3, 4)),
    ):
        with pytest.raises(
            ValueError, match=rf"{cls.__name__}: p is the probability of dropping and must be in \[0, 1\)"
        ):
            cls(1.0)
        with pytest.raises(ValueError, match=rf"{cls.__name__}: inplace must be a bool, got 1"):
            cls(0.5, 1)
        with pytest.raises(ValueError, match=rf"{cls.__name__}\(\) in train mode needs a dropout key"):
            cls().apply({}, {}, jnp.ones(shape), train=True)
        assert not cls().has_params and cls(0.5, True) == cls(0.5, True)
    assert L.Dropout(0.2, True).p == 0.2  # torch's Dropout(p, inplace) positionally
