"""An LSTM (seq 64, batch 16, input 128, hidden 256), last step -> linear classifier; one train step.

Time-major input ``(seq, batch, input)``, PyTorch's equations and gate order. tlean and
the raw-JAX reference compute the input projection of all steps in one matmul and scan
the recurrence (``lax.scan``); flax runs ``nnx.RNN`` / ``linen.RNN`` over its
``OptimizedLSTMCell``, equinox scans its ``LSTMCell`` vmapped over the batch, PyTorch
runs ``torch.nn.LSTM``. flax and equinox keep one bias per gate; they get
``bias_ih + bias_hh``, the same function.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import _common

CLASSES = 10


def sizes(quick: bool) -> dict:
    if quick:
        return {"seq": 6, "batch": 2, "input": 8, "hidden": 16}
    return {"seq": 64, "batch": 16, "input": 128, "hidden": 256}


def tlean_builder(s: dict):
    from tlean import nn

    return nn.Sequential(nn.LSTM(s["input"], s["hidden"]), nn.Select(-1, 0), nn.Linear(s["hidden"], CLASSES))


def setups(quick: bool, s: dict | None = None) -> dict:
    from tlean import nn

    s = s or sizes(quick)
    H = s["hidden"]
    x, y = _common.batch((s["seq"], s["batch"], s["input"]), CLASSES)
    y = np.random.default_rng(1).integers(0, CLASSES, size=(s["batch"],)).astype(np.int32)
    reference = nn.run(0, tlean_builder(s))
    w = _common.to_numpy(reference.params)
    w_ih, w_hh, b_ih, b_hh = (w[0][k] for k in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"))
    head = w[2]
    tx = _common.optimizer()

    def tlean():
        model = nn.run(0, tlean_builder(s))
        return _common.tlean_stepper(model, tx, x, y)

    def raw():

        params = {"w_ih": w_ih, "w_hh": w_hh, "b_ih": b_ih, "b_hh": b_hh, "head": head}
        params = jax.tree.map(jnp.asarray, params)

        def forward(p, x):
            gx = x @ p["w_ih"].T + p["b_ih"]

            def cell(carry, gx_t):
                h, c = carry
                gh = (p["w_hh"] @ h.T).T  # W_hh's gradient accumulates in its own layout (see tlean's _hidden)
                i, f, g, o = jnp.split(gx_t + gh + p["b_hh"], 4, axis=-1)
                c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
                h = jax.nn.sigmoid(o) * jnp.tanh(c)
                return (h, c), h

            zeros = jnp.zeros((x.shape[1], H), x.dtype)
            (h, _), _ = jax.lax.scan(cell, (zeros, zeros), gx)
            return h @ p["head"]["weight"].T + p["head"]["bias"]

        return _common.pure_stepper(forward, params, tx, x, y)

    def nnx():
        from flax import nnx

        class Net(nnx.Module):
            def __init__(self, rngs):
                self.rnn = nnx.RNN(nnx.OptimizedLSTMCell(s["input"], H, rngs=rngs), time_major=True)
                self.head = nnx.Linear(H, CLASSES, rngs=rngs)

            def __call__(self, x):
                return self.head(self.rnn(x)[-1])

        model = Net(nnx.Rngs(0))
        cell = model.rnn.cell
        cell.dense_i.kernel.value = jnp.asarray(w_ih.T)
        cell.dense_h.kernel.value = jnp.asarray(w_hh.T)
        cell.dense_h.bias.value = jnp.asarray(b_ih + b_hh)
        model.head.kernel.value, model.head.bias.value = jnp.asarray(head["weight"].T), jnp.asarray(head["bias"])
        return _common.nnx_stepper(model, tx, x, y)

    def linen():
        from flax import linen as ln

        class Net(ln.Module):
            @ln.compact
            def __call__(self, x):
                h = ln.RNN(ln.OptimizedLSTMCell(H, name="cell"), time_major=True)(x)
                return ln.Dense(CLASSES, name="head")(h[-1])

        module = Net()
        gates = dict(zip("ifgo", range(4)))
        cell = {}
        for g, k in gates.items():
            rows = slice(k * H, (k + 1) * H)
            cell[f"i{g}"] = {"kernel": jnp.asarray(w_ih[rows].T)}
            cell[f"h{g}"] = {"kernel": jnp.asarray(w_hh[rows].T), "bias": jnp.asarray((b_ih + b_hh)[rows])}
        params = {"cell": cell, "head": {"kernel": jnp.asarray(head["weight"].T), "bias": jnp.asarray(head["bias"])}}
        shapes = jax.eval_shape(module.init, jax.random.key(0), jnp.asarray(x))["params"]
        if jax.tree.structure(shapes) != jax.tree.structure(params):
            raise RuntimeError(f"the linen LSTM's params changed layout: {jax.tree.map(jnp.shape, shapes)}")

        return _common.pure_stepper(lambda p, x: module.apply({"params": p}, x), params, tx, x, y)

    def equinox():
        import equinox as eqx

        class Net(eqx.Module):
            cell: eqx.nn.LSTMCell
            head: eqx.nn.Linear

            def __init__(self, key):
                k1, k2 = jax.random.split(key)
                self.cell = eqx.nn.LSTMCell(s["input"], H, key=k1)
                self.head = eqx.nn.Linear(H, CLASSES, key=k2)

            def __call__(self, x):  # one sequence [seq, input]
                def scan_fn(carry, x_t):
                    carry = self.cell(x_t, carry)
                    return carry, None

                zeros = jnp.zeros((H,), x.dtype)
                (h, _), _ = jax.lax.scan(scan_fn, (zeros, zeros), x)
                return self.head(h)

        model = Net(jax.random.key(0))
        model = eqx.tree_at(
            lambda m: (m.cell.weight_ih, m.cell.weight_hh, m.cell.bias, m.head.weight, m.head.bias),
            model,
            tuple(jnp.asarray(a) for a in (w_ih, w_hh, b_ih + b_hh, head["weight"], head["bias"])),
        )
        return _common.equinox_stepper(model, tx, x, y, in_axes=1)

    def torch():
        import torch

        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.lstm = torch.nn.LSTM(s["input"], H)
                self.head = torch.nn.Linear(H, CLASSES)

            def forward(self, x):
                return self.head(self.lstm(x)[0][-1])

        net = Net()
        with torch.no_grad():
            for name, value in (
                ("weight_ih_l0", w_ih),
                ("weight_hh_l0", w_hh),
                ("bias_ih_l0", b_ih),
                ("bias_hh_l0", b_hh),
            ):
                getattr(net.lstm, name).copy_(torch.from_numpy(np.array(value)))
            net.head.weight.copy_(torch.from_numpy(np.array(head["weight"])))
            net.head.bias.copy_(torch.from_numpy(np.array(head["bias"])))
        return _common.torch_stepper(net, x, y)

    return {"tlean": tlean, "raw": raw, "nnx": nnx, "linen": linen, "equinox": equinox, "torch": torch}


def run(quick: bool, rounds: int, frameworks) -> list[_common.Table]:
    s = sizes(quick)
    chosen = {k: v for k, v in setups(quick).items() if k in frameworks}
    title = f"LSTM: seq {s['seq']}, batch {s['batch']}, input {s['input']}, hidden {s['hidden']}, last step -> linear"
    note = (
        "tlean and raw JAX project the inputs of all steps in one matmul and scan the recurrence; flax's "
        "`OptimizedLSTMCell` projects each step's input inside the scan; equinox vmaps its `LSTMCell` over the "
        "batch inside `lax.scan`. The raw reference classifies the final carry; tlean's `Select(-1, 0)` takes "
        "the last row of the stacked outputs."
    )
    return [_common.train_step_table("lstm", title, chosen, rounds=rounds, quick=quick, notes=[note])]
