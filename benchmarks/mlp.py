"""MLP 784-1024-1024-10 with ReLU, batch 256: one train step (forward, backward, Adam)."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import _common


def sizes(quick: bool) -> tuple[tuple[int, ...], int]:
    """Layer widths and the batch size."""
    return ((32, 64, 64, 10), 8) if quick else ((784, 1024, 1024, 10), 256)


def tlean_model(widths):
    from tlean import nn

    layers = []
    for i, (a, b) in enumerate(itertools.pairwise(widths)):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.run(0, nn.Sequential(*layers))


def linears(model) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(weight [out, in], bias [out])`` of every Linear in order, as NumPy arrays."""
    return [(np.asarray(p["weight"]), np.asarray(p["bias"])) for p in model.params if p]


def setups(quick: bool) -> dict:
    widths, n = sizes(quick)
    x, y = _common.batch((n, widths[0]), widths[-1])
    weights = linears(tlean_model(widths))
    tx = _common.optimizer()

    def tlean():
        return _common.tlean_stepper(tlean_model(widths), tx, x, y)

    def raw():

        params = [{"w": jnp.asarray(w), "b": jnp.asarray(b)} for w, b in weights]

        def forward(params, x):
            for i, p in enumerate(params):
                x = x @ p["w"].T + p["b"]
                if i < len(params) - 1:
                    x = jax.nn.relu(x)
            return x

        return _common.pure_stepper(forward, params, tx, x, y)

    def nnx():
        from flax import nnx

        class MLP(nnx.Module):
            def __init__(self, rngs):
                self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in itertools.pairwise(widths)])

            def __call__(self, x):
                for i, layer in enumerate(self.layers):
                    x = layer(x)
                    if i < len(self.layers) - 1:
                        x = jax.nn.relu(x)
                return x

        model = MLP(nnx.Rngs(0))
        for layer, (w, b) in zip(model.layers, weights):
            layer.kernel.value = jnp.asarray(w.T)
            layer.bias.value = jnp.asarray(b)
        return _common.nnx_stepper(model, tx, x, y)

    def linen():
        from flax import linen as ln

        class MLP(ln.Module):
            @ln.compact
            def __call__(self, x):
                for i, b in enumerate(widths[1:]):
                    x = ln.Dense(b)(x)
                    if i < len(widths) - 2:
                        x = ln.relu(x)
                return x

        module = MLP()
        params = {
            "params": {
                f"Dense_{i}": {"kernel": jnp.asarray(w.T), "bias": jnp.asarray(b)} for i, (w, b) in enumerate(weights)
            }
        }

        return _common.pure_stepper(module.apply, params, tx, x, y)

    def equinox():
        import equinox as eqx

        keys = jax.random.split(jax.random.key(0), len(weights))
        layers = []
        for i, ((w, b), k) in enumerate(zip(weights, keys)):
            lin = eqx.nn.Linear(w.shape[1], w.shape[0], key=k)
            lin = eqx.tree_at(lambda m: (m.weight, m.bias), lin, (jnp.asarray(w), jnp.asarray(b)))
            layers.append(lin)
            if i < len(weights) - 1:
                layers.append(eqx.nn.Lambda(jax.nn.relu))
        model = eqx.nn.Sequential(layers)
        return _common.equinox_stepper(model, tx, x, y)

    def torch():
        import torch

        mods = []
        for i, (w, b) in enumerate(weights):
            lin = torch.nn.Linear(w.shape[1], w.shape[0])
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(w))
                lin.bias.copy_(torch.from_numpy(b))
            mods.append(lin)
            if i < len(weights) - 1:
                mods.append(torch.nn.ReLU())
        return _common.torch_stepper(torch.nn.Sequential(*mods), x, y)

    return {"tlean": tlean, "raw": raw, "nnx": nnx, "linen": linen, "equinox": equinox, "torch": torch}


def run(quick: bool, rounds: int, frameworks) -> list[_common.Table]:
    widths, n = sizes(quick)
    chosen = {k: v for k, v in setups(quick).items() if k in frameworks}
    title = f"MLP {'-'.join(map(str, widths))}, batch {n}"
    return [_common.train_step_table("mlp", title, chosen, rounds=rounds, quick=quick)]
