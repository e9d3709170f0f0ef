"""CNN on NCHW 32x3x32x32: (conv3x3-BatchNorm-ReLU-maxpool2) x 2, flatten, linear; one train step.

BatchNorm runs in training mode (batch statistics, running statistics updated), so every
framework threads its non-trainable state through the step. flax's convolutions are
channels-last: the flax models transpose the NCHW input to NHWC once and back before
flattening (so they share the PyTorch-layout weights), as a port of a PyTorch model does.
tlean's layers take NCHW and compute channels-last on the CPU (``tlean.layers._layout``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from benchmarks import _common

CLASSES = 10


def sizes(quick: bool) -> tuple[int, tuple[int, int], int]:
    """``(batch, (channels of conv1, conv2), image side)``."""
    return (4, (4, 8), 8) if quick else (32, (32, 64), 32)


def tlean_model(channels, side):
    from tlean import nn

    c1, c2 = channels
    return nn.run(
        0,
        nn.Sequential(
            nn.Conv2d(3, c1, 3, padding=1),
            nn.BatchNorm2d(c1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1),
            nn.BatchNorm2d(c2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(c2 * (side // 4) ** 2, CLASSES),
        ),
    )


def setups(quick: bool) -> dict:
    n, channels, side = sizes(quick)
    x, y = _common.batch((n, 3, side, side), CLASSES)
    reference = tlean_model(channels, side)
    w = _common.to_numpy(reference.params)
    conv = [(w[0]["weight"], w[0]["bias"]), (w[4]["weight"], w[4]["bias"])]  # OIHW, [O]
    bn = [(w[1]["weight"], w[1]["bias"]), (w[5]["weight"], w[5]["bias"])]
    fc = (w[9]["weight"], w[9]["bias"])
    tx = _common.optimizer()
    loss = _common.cross_entropy

    def tlean():
        import optax

        model = tlean_model(channels, side)

        def step(model, opt_state, x, y):
            def loss_fn(params):
                logits, new = model.replace(params=params).forward(x, train=True)
                return loss(logits, y), new.state

            (value, state), grads = jax.value_and_grad(loss_fn, has_aux=True)(model.params)
            updates, opt_state = tx.update(grads, opt_state, model.params)
            return model.replace(params=optax.apply_updates(model.params, updates), state=state), opt_state, value

        return _common.jax_stepper(step, (model, tx.init(model.params)), x, y)

    def raw():
        import optax

        params = {
            "conv": [{"w": jnp.asarray(cw), "b": jnp.asarray(cb)} for cw, cb in conv],
            "bn": [{"g": jnp.asarray(g), "b": jnp.asarray(b)} for g, b in bn],
            "fc": {"w": jnp.asarray(fc[0]), "b": jnp.asarray(fc[1])},
        }
        stats = [{"mean": jnp.zeros(c), "var": jnp.ones(c)} for c in channels]

        def forward(params, stats, x):
            new_stats = []
            for cp, bp, st in zip(params["conv"], params["bn"], stats):
                x = lax.conv_general_dilated(
                    x, cp["w"], (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NCHW", "OIHW", "NCHW")
                )
                x = x + cp["b"][None, :, None, None]
                mean = x.mean(axis=(0, 2, 3))
                var = jnp.square(x - mean[None, :, None, None]).mean(axis=(0, 2, 3))
                scale = bp["g"] * lax.rsqrt(var + 1e-5)  # per channel, then one multiply of the image
                x = (x - mean[None, :, None, None]) * scale[None, :, None, None] + bp["b"][None, :, None, None]
                count = x.shape[0] * x.shape[2] * x.shape[3]
                mean, var = lax.stop_gradient(mean), lax.stop_gradient(var)
                new_stats.append(
                    {"mean": 0.9 * st["mean"] + 0.1 * mean, "var": 0.9 * st["var"] + 0.1 * var * (count / (count - 1))}
                )
                x = jax.nn.relu(x)
                x = lax.reduce_window(x, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
            x = x.reshape(x.shape[0], -1)
            return x @ params["fc"]["w"].T + params["fc"]["b"], new_stats

        def step(params, stats, opt_state, x, y):
            def loss_fn(p):
                logits, new_stats = forward(p, stats, x)
                return loss(logits, y), new_stats

            (value, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), stats, opt_state, value

        return _common.jax_stepper(step, (params, stats, tx.init(params)), x, y)

    def nnx():
        from flax import nnx

        class CNN(nnx.Module):
            def __init__(self, rngs):
                c1, c2 = channels
                self.convs = nnx.List(
                    [nnx.Conv(3, c1, (3, 3), padding=1, rngs=rngs), nnx.Conv(c1, c2, (3, 3), padding=1, rngs=rngs)]
                )
                self.norms = nnx.List([nnx.BatchNorm(c, momentum=0.9, epsilon=1e-5, rngs=rngs) for c in channels])
                self.fc = nnx.Linear(c2 * (side // 4) ** 2, CLASSES, rngs=rngs)

            def __call__(self, x):
                x = jnp.transpose(x, (0, 2, 3, 1))
                for conv, norm in zip(self.convs, self.norms):
                    x = nnx.max_pool(jax.nn.relu(norm(conv(x))), (2, 2), (2, 2))
                x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)
                return self.fc(x)

        model = CNN(nnx.Rngs(0))
        for layer, (cw, cb) in zip(model.convs, conv):
            layer.kernel.value, layer.bias.value = jnp.asarray(cw.transpose(2, 3, 1, 0)), jnp.asarray(cb)
        for layer, (g, b) in zip(model.norms, bn):
            layer.scale.value, layer.bias.value = jnp.asarray(g), jnp.asarray(b)
        model.fc.kernel.value, model.fc.bias.value = jnp.asarray(fc[0].T), jnp.asarray(fc[1])
        model.train()
        return _common.nnx_stepper(model, tx, x, y)

    def linen():
        import optax
        from flax import linen as ln

        class CNN(ln.Module):
            @ln.compact
            def __call__(self, x):
                x = jnp.transpose(x, (0, 2, 3, 1))
                for c in channels:
                    x = ln.Conv(c, (3, 3), padding=1)(x)
                    x = ln.BatchNorm(use_running_average=False, momentum=0.9, epsilon=1e-5)(x)
                    x = ln.max_pool(ln.relu(x), (2, 2), (2, 2))
                x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)
                return ln.Dense(CLASSES)(x)

        module = CNN()
        params = {
            f"Conv_{i}": {"kernel": jnp.asarray(cw.transpose(2, 3, 1, 0)), "bias": jnp.asarray(cb)}
            for i, (cw, cb) in enumerate(conv)
        }
        params.update(
            {f"BatchNorm_{i}": {"scale": jnp.asarray(g), "bias": jnp.asarray(b)} for i, (g, b) in enumerate(bn)}
        )
        params["Dense_0"] = {"kernel": jnp.asarray(fc[0].T), "bias": jnp.asarray(fc[1])}
        batch_stats = {f"BatchNorm_{i}": {"mean": jnp.zeros(c), "var": jnp.ones(c)} for i, c in enumerate(channels)}

        def step(params, batch_stats, opt_state, x, y):
            def loss_fn(p):
                logits, updates = module.apply({"params": p, "batch_stats": batch_stats}, x, mutable=["batch_stats"])
                return loss(logits, y), updates["batch_stats"]

            (value, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), batch_stats, opt_state, value

        return _common.jax_stepper(step, (params, batch_stats, tx.init(params)), x, y)

    def equinox():
        import equinox as eqx

        class CNN(eqx.Module):
            convs: list
            norms: list
            fc: eqx.nn.Linear

            def __init__(self, key):
                k = jax.random.split(key, 3)
                c1, c2 = channels
                self.convs = [
                    eqx.nn.Conv2d(3, c1, 3, padding=1, key=k[0]),
                    eqx.nn.Conv2d(c1, c2, 3, padding=1, key=k[1]),
                ]
                self.norms = [eqx.nn.BatchNorm(c, axis_name="batch", momentum=0.9, mode="batch") for c in channels]
                self.fc = eqx.nn.Linear(c2 * (side // 4) ** 2, CLASSES, key=k[2])

            def __call__(self, x, state):  # one CHW image; vmapped over the batch
                pool = eqx.nn.MaxPool2d(2, 2)
                for conv, norm in zip(self.convs, self.norms):
                    x, state = norm(conv(x), state)
                    x = pool(jax.nn.relu(x))
                return self.fc(x.reshape(-1)), state

        model, state = eqx.nn.make_with_state(CNN)(jax.random.key(0))
        model = eqx.tree_at(
            lambda m: [
                m.convs[0].weight,
                m.convs[0].bias,
                m.convs[1].weight,
                m.convs[1].bias,
                m.norms[0].weight,
                m.norms[0].bias,
                m.norms[1].weight,
                m.norms[1].bias,
                m.fc.weight,
                m.fc.bias,
            ],
            model,
            [
                jnp.asarray(a)
                for a in (
                    conv[0][0],
                    conv[0][1][:, None, None],
                    conv[1][0],
                    conv[1][1][:, None, None],
                    bn[0][0],
                    bn[0][1],
                    bn[1][0],
                    bn[1][1],
                    fc[0],
                    fc[1],
                )
            ],
        )
        opt_state = tx.init(eqx.filter(model, eqx.is_array))

        @eqx.filter_jit
        def step(model, state, opt_state, x, y):
            def loss_fn(m):
                logits, new_state = jax.vmap(m, axis_name="batch", in_axes=(0, None), out_axes=(0, None))(x, state)
                return loss(logits, y), new_state

            (value, state), grads = eqx.filter_value_and_grad(loss_fn, has_aux=True)(model)
            updates, opt_state = tx.update(grads, opt_state, eqx.filter(model, eqx.is_array))
            return eqx.apply_updates(model, updates), state, opt_state, value

        return _common.jax_stepper(step, (model, state, opt_state), x, y, jit=lambda f: f)

    def torch():
        import torch

        c1, c2 = channels
        net = torch.nn.Sequential(
            torch.nn.Conv2d(3, c1, 3, padding=1),
            torch.nn.BatchNorm2d(c1),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(c1, c2, 3, padding=1),
            torch.nn.BatchNorm2d(c2),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
            torch.nn.Flatten(),
            torch.nn.Linear(c2 * (side // 4) ** 2, CLASSES),
        )
        state = net.state_dict()
        with torch.no_grad():
            for name, value in reference.named_parameters().items():
                state[name].copy_(torch.from_numpy(np.array(value)))
        return _common.torch_stepper(net, x, y)

    return {"tlean": tlean, "raw": raw, "nnx": nnx, "linen": linen, "equinox": equinox, "torch": torch}


def run(quick: bool, rounds: int, frameworks) -> list[_common.Table]:
    n, channels, side = sizes(quick)
    chosen = {k: v for k, v in setups(quick).items() if k in frameworks}
    c1, c2 = channels
    title = (
        f"CNN on NCHW {n}x3x{side}x{side}: (conv3x3-BN-ReLU-maxpool) x 2 [{c1}, {c2} channels] + linear, "
        "BatchNorm in training mode"
    )
    note = (
        "flax's convolutions are channels-last: the flax models transpose the NCHW input to NHWC once and "
        "back before flattening. tlean takes NCHW and, on the CPU, computes its convolutions, batch norms and "
        "pooling channels-last (XLA removes the transposes between layers; `TLEAN_CHANNELS_LAST=0` turns it "
        "off); raw JAX, equinox and PyTorch compute in NCHW as given."
    )
    return [_common.train_step_table("cnn", title, chosen, rounds=rounds, quick=quick, notes=[note])]
