"""Dropout: p is the drop probability, train needs a key, eval is the identity."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tlean import layers as L
from tlean import nn


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
