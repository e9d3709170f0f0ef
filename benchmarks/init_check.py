"""Fast eager init on this backend: the chunked draws equal ``jax.random``'s bit for bit, and an eager
``nn.run`` equals a jitted one (the seed contract holds per backend; the test suite checks the CPU).

``python -m benchmarks.init_check [--quick]`` prints one JSON line and exits 1 on a mismatch.
"""

from __future__ import annotations

import json
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np


def _same(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and bool((a.view(np.uint8) == b.view(np.uint8)).all())


def main(quick: bool) -> dict:
    from tlean import models, nn
    from tlean.layers import _init

    key, out = jax.random.key(11), {"backend": jax.default_backend(), "device": jax.devices()[0].device_kind}
    draws = []
    for shape, dtype in (((7, 5, 3), jnp.float32), ((3, _init.CHUNK + 5), jnp.float32), ((4099,), jnp.bfloat16)):
        uniform = jnp.asarray(0.37, dtype) * (2 * jax.random.uniform(key, shape, dtype) - 1)
        normal = jax.random.normal(key, shape, dtype) * jnp.asarray(0.02, dtype)
        draws.append(
            _same(_init.uniform(key, shape, 0.37, dtype), uniform)
            and _same(_init.normal(key, shape, 0.02, dtype), normal)
        )
    out["draws_equal_jax_random"] = all(draws)
    builder = models.resnet18(num_classes=10) if not quick else nn.Sequential(nn.Conv2d(3, 4, 3), nn.Linear(4, 2))
    start = time.perf_counter()
    eager = nn.run(0, builder)
    jax.block_until_ready(eager.params)
    out["eager_build_s"] = time.perf_counter() - start
    jitted = jax.jit(lambda s: nn.run(s, builder))(0)
    out["eager_equals_jit"] = all(jax.tree.leaves(jax.tree.map(_same, eager.params, jitted.params)))
    return out


if __name__ == "__main__":
    result = main("--quick" in sys.argv)
    print(json.dumps(result))
    sys.exit(0 if result["draws_equal_jax_random"] and result["eager_equals_jit"] else 1)
