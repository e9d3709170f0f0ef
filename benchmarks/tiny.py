"""Per-call overhead on a tiny model (Linear 16->16, batch 1), where the framework dominates.

What is timed is one call of the jitted forward pass, blocking on its result: the cost of
flattening the model's pytree, looking up the compiled executable and dispatching it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import _common, _timing

FEATURES = 16


def setups() -> dict:
    from tlean import nn

    model = nn.run(0, nn.Linear(FEATURES, FEATURES))
    w, b = np.asarray(model.params["weight"]), np.asarray(model.params["bias"])
    x_np = np.random.default_rng(0).standard_normal((1, FEATURES), dtype=np.float32)
    x = jnp.asarray(x_np)

    def tlean():
        forward = jax.jit(lambda m, x: m(x))
        return lambda: forward(model, x)

    def raw():
        params = {"weight": jnp.asarray(w), "bias": jnp.asarray(b)}
        forward = jax.jit(lambda p, x: x @ p["weight"].T + p["bias"])
        return lambda: forward(params, x)

    def nnx():
        from flax import nnx

        lin = nnx.Linear(FEATURES, FEATURES, rngs=nnx.Rngs(0))
        lin.kernel.value, lin.bias.value = jnp.asarray(w.T), jnp.asarray(b)
        forward = nnx.jit(lambda m, x: m(x))
        return lambda: forward(lin, x)

    def linen():
        from flax import linen as ln

        module = ln.Dense(FEATURES)
        variables = {"params": {"kernel": jnp.asarray(w.T), "bias": jnp.asarray(b)}}
        forward = jax.jit(module.apply)
        return lambda: forward(variables, x)

    def equinox():
        import equinox as eqx

        lin = eqx.nn.Linear(FEATURES, FEATURES, key=jax.random.key(0))
        lin = eqx.tree_at(lambda m: (m.weight, m.bias), lin, (jnp.asarray(w), jnp.asarray(b)))
        forward = eqx.filter_jit(lambda m, x: jax.vmap(m)(x))
        return lambda: forward(lin, x)

    def torch():
        import torch

        lin = torch.nn.Linear(FEATURES, FEATURES)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w))
            lin.bias.copy_(torch.from_numpy(b))
        tx = torch.from_numpy(x_np)

        def call():
            with torch.no_grad():
                return lin(tx)

        return call

    return {"tlean": tlean, "raw": raw, "nnx": nnx, "linen": linen, "equinox": equinox, "torch": torch}


def run(quick: bool, rounds: int, frameworks) -> list[_common.Table]:
    made = setups()
    calls = {name: setup() for name, setup in made.items() if name in frameworks}
    calls[_common.COPY] = made[_common.REFERENCE]()
    outputs = {name: np.asarray(_timing.block(call())) for name, call in calls.items()}
    inner = {name: 20 if quick else _timing.repeats_for(call, 0.1) for name, call in calls.items()}
    timing = _timing.interleave_latency(calls, rounds=rounds, inner=inner)
    rows = [
        _common.Row(name, timing.median(name), timing.ratio(name, _common.REFERENCE), None, float(outputs[name].sum()))
        for name in calls
    ]
    title = f"Tiny model: Linear {FEATURES}->{FEATURES}, batch 1, jitted forward call"
    return [_common.Table("tiny", title, "us", rows, kind="call")]
