"""tlean.layers._kvcache.attend: jax.nn.dot_product_attention's computation, read from the cache's layout."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tlean.layers import _kvcache


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("heads,kv_heads,mask_heads", [(4, 4, 1), (6, 2, 6), (4, 1, 1)])
def test_attend_equals_dot_product_attention(heads, kv_heads, mask_heads, dtype):
    b, t, s, d = 2, 3, 7, 8
    rng = np.random.default_rng(heads * 10 + kv_heads)  # NumPy inputs: no eager JAX programs to compile
    q, k, v = (rng.normal(size=shape).astype(dtype) for shape in [(b, t, heads, d)] + [(b, s, kv_heads, d)] * 2)
    allowed = rng.random((b, mask_heads, t, s)) < 0.7
    allowed[0, :, 1] = False  # a query with no allowed slot: both average every slot
    cache = {"key": np.swapaxes(k, 1, 2), "value": np.swapaxes(v, 1, 2)}
    ours = jax.jit(_kvcache.attend)(q, cache, allowed)
    theirs = jax.jit(lambda q, k, v, m: jax.nn.dot_product_attention(q, k, v, mask=m, implementation="xla"))(
        q, k, v, allowed
    )
    assert ours.dtype == theirs.dtype == dtype
    tol = 1e-6 if dtype == jnp.float32 else 1e-2
    np.testing.assert_allclose(np.asarray(ours, np.float32), np.asarray(theirs, np.float32), atol=tol, rtol=tol)


def test_write_puts_the_new_positions_at_their_slots():
    cache = _kvcache.empty(2, 5, 3, 4, jnp.float32)
    assert cache["key"].shape == (2, 3, 5, 4)
    k = jnp.arange(2 * 2 * 3 * 4, dtype=jnp.float32).reshape(2, 2, 3, 4) + 1  # [batch, seq=2, heads, head_dim]
    new = _kvcache.write(cache, k, -k, jnp.int32(1), jnp.bool_(True))
    np.testing.assert_array_equal(new["key"][:, :, 1:3], jnp.swapaxes(k, 1, 2))
    np.testing.assert_array_equal(new["value"][:, :, 1:3], -jnp.swapaxes(k, 1, 2))
    assert not np.asarray(new["key"][:, :, [0, 3, 4]]).any()
    untouched = _kvcache.write(cache, k, k, jnp.int32(4), jnp.bool_(False))
    assert not np.asarray(untouched["key"]).any()
