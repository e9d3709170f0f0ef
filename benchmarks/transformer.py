"""A 4-layer Transformer encoder (d_model 256, 4 heads, feed-forward 1024, seq 128, batch 8).

``torch.nn.TransformerEncoderLayer`` semantics (post-norm, ReLU), dropout 0 so that every
framework computes the same function; mean over the sequence, then a linear classifier.
tlean runs the layers with ``lax.scan`` (its default) and so does the raw-JAX reference;
the flax and equinox models loop over their layers in Python, as their users write them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import _common

CLASSES = 10


def sizes(quick: bool) -> dict:
    if quick:
        return {"layers": 2, "d": 16, "heads": 2, "ff": 32, "seq": 8, "batch": 2}
    return {"layers": 4, "d": 256, "heads": 4, "ff": 1024, "seq": 128, "batch": 8}


def tlean_builder(s: dict, scan: bool = True):
    from tlean import nn

    return nn.Sequential(
        nn.TransformerEncoder(
            nn.TransformerEncoderLayer(s["d"], s["heads"], s["ff"], 0.0, batch_first=True), s["layers"], scan=scan
        ),
        nn.Mean(1),
        nn.Linear(s["d"], CLASSES),
    )


def setups(quick: bool) -> dict:
    from tlean import nn

    s = sizes(quick)
    d, heads, hd = s["d"], s["heads"], s["d"] // s["heads"]
    x, y = _common.batch((s["batch"], s["seq"], d), CLASSES)
    reference = nn.run(0, tlean_builder(s))
    w = _common.to_numpy(reference.params)
    stacked, head = w[0]["layers"], w[2]
    blocks = [jax.tree.map(lambda a: a[i], stacked) for i in range(s["layers"])]  # torch layout, per layer
    tx = _common.optimizer()

    def tlean():
        model = nn.run(0, tlean_builder(s))
        return _common.tlean_stepper(model, tx, x, y)

    def raw():

        params = {"layers": jax.tree.map(jnp.asarray, stacked), "head": jax.tree.map(jnp.asarray, head)}

        def layer_norm(h, p):
            mean = h.mean(-1, keepdims=True)
            var = jnp.square(h - mean).mean(-1, keepdims=True)
            return (h - mean) * jax.lax.rsqrt(var + 1e-5) * p["weight"] + p["bias"]

        def block(h, p):
            a = p["self_attn"]
            b, n, _ = h.shape
            qkv = h @ a["in_proj_weight"].T + a["in_proj_bias"]
            q, k, v = (t.reshape(b, n, heads, hd) for t in jnp.split(qkv, 3, axis=-1))
            logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(hd).astype(np.float32)
            o = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(logits, axis=-1), v).reshape(b, n, d)
            h = layer_norm(h + o @ a["out_proj"]["weight"].T + a["out_proj"]["bias"], p["norm1"])
            f = jax.nn.relu(h @ p["linear1"]["weight"].T + p["linear1"]["bias"])
            f = f @ p["linear2"]["weight"].T + p["linear2"]["bias"]
            return layer_norm(h + f, p["norm2"])

        def forward(params, x):
            h, _ = jax.lax.scan(lambda h, p: (block(h, p), None), x, params["layers"])
            return h.mean(1) @ params["head"]["weight"].T + params["head"]["bias"]

        return _common.pure_stepper(forward, params, tx, x, y)

    def split_qkv(blk):
        a = blk["self_attn"]
        ws = np.split(a["in_proj_weight"], 3)  # [E, E] each, torch (out, in)
        bs = np.split(a["in_proj_bias"], 3)
        return ws, bs, a["out_proj"]["weight"], a["out_proj"]["bias"]

    def nnx():
        from flax import nnx

        class Block(nnx.Module):
            def __init__(self, rngs):
                self.attn = nnx.MultiHeadAttention(heads, d, decode=False, rngs=rngs)
                self.linear1 = nnx.Linear(d, s["ff"], rngs=rngs)
                self.linear2 = nnx.Linear(s["ff"], d, rngs=rngs)
                self.norm1 = nnx.LayerNorm(d, epsilon=1e-5, rngs=rngs)
                self.norm2 = nnx.LayerNorm(d, epsilon=1e-5, rngs=rngs)

            def __call__(self, h):
                h = self.norm1(h + self.attn(h))
                return self.norm2(h + self.linear2(jax.nn.relu(self.linear1(h))))

        class Net(nnx.Module):
            def __init__(self, rngs):
                self.blocks = nnx.List([Block(rngs) for _ in range(s["layers"])])
                self.head = nnx.Linear(d, CLASSES, rngs=rngs)

            def __call__(self, h):
                for blk in self.blocks:
                    h = blk(h)
                return self.head(h.mean(1))

        model = Net(nnx.Rngs(0))
        for mod, blk in zip(model.blocks, blocks):
            ws, bs, wo, bo = split_qkv(blk)
            for lin, wq, bq in zip((mod.attn.query, mod.attn.key, mod.attn.value), ws, bs):
                lin.kernel.value = jnp.asarray(wq.T.reshape(d, heads, hd))
                lin.bias.value = jnp.asarray(bq.reshape(heads, hd))
            mod.attn.out.kernel.value = jnp.asarray(wo.T.reshape(heads, hd, d))
            mod.attn.out.bias.value = jnp.asarray(bo)
            for name in ("linear1", "linear2"):
                getattr(mod, name).kernel.value = jnp.asarray(blk[name]["weight"].T)
                getattr(mod, name).bias.value = jnp.asarray(blk[name]["bias"])
            for name in ("norm1", "norm2"):
                getattr(mod, name).scale.value = jnp.asarray(blk[name]["weight"])
                getattr(mod, name).bias.value = jnp.asarray(blk[name]["bias"])
        model.head.kernel.value, model.head.bias.value = jnp.asarray(head["weight"].T), jnp.asarray(head["bias"])
        return _common.nnx_stepper(model, tx, x, y)

    def linen():
        from flax import linen as ln

        class Block(ln.Module):
            @ln.compact
            def __call__(self, h):
                h = ln.LayerNorm(epsilon=1e-5, name="norm1")(h + ln.MultiHeadDotProductAttention(heads, name="attn")(h))
                f = ln.Dense(d, name="linear2")(ln.relu(ln.Dense(s["ff"], name="linear1")(h)))
                return ln.LayerNorm(epsilon=1e-5, name="norm2")(h + f)

        class Net(ln.Module):
            @ln.compact
            def __call__(self, h):
                for i in range(s["layers"]):
                    h = Block(name=f"block{i}")(h)
                return ln.Dense(CLASSES, name="head")(h.mean(1))

        module = Net()
        params = {"head": {"kernel": jnp.asarray(head["weight"].T), "bias": jnp.asarray(head["bias"])}}
        for i, blk in enumerate(blocks):
            ws, bs, wo, bo = split_qkv(blk)
            attn = {
                n: {"kernel": jnp.asarray(wq.T.reshape(d, heads, hd)), "bias": jnp.asarray(bq.reshape(heads, hd))}
                for n, wq, bq in zip(("query", "key", "value"), ws, bs)
            }
            attn["out"] = {"kernel": jnp.asarray(wo.T.reshape(heads, hd, d)), "bias": jnp.asarray(bo)}
            p = {"attn": attn}
            for n in ("linear1", "linear2"):
                p[n] = {"kernel": jnp.asarray(blk[n]["weight"].T), "bias": jnp.asarray(blk[n]["bias"])}
            for n in ("norm1", "norm2"):
                p[n] = {"scale": jnp.asarray(blk[n]["weight"]), "bias": jnp.asarray(blk[n]["bias"])}
            params[f"block{i}"] = p

        return _common.pure_stepper(lambda p, x: module.apply({"params": p}, x), params, tx, x, y)

    def equinox():
        import equinox as eqx

        class Block(eqx.Module):
            attn: eqx.nn.MultiheadAttention
            linear1: eqx.nn.Linear
            linear2: eqx.nn.Linear
            norm1: eqx.nn.LayerNorm
            norm2: eqx.nn.LayerNorm

            def __init__(self, key):
                k = jax.random.split(key, 3)
                self.attn = eqx.nn.MultiheadAttention(
                    heads,
                    d,
                    use_query_bias=True,
                    use_key_bias=True,
                    use_value_bias=True,
                    use_output_bias=True,
                    key=k[0],
                )
                self.linear1 = eqx.nn.Linear(d, s["ff"], key=k[1])
                self.linear2 = eqx.nn.Linear(s["ff"], d, key=k[2])
                self.norm1, self.norm2 = eqx.nn.LayerNorm(d, eps=1e-5), eqx.nn.LayerNorm(d, eps=1e-5)

            def __call__(self, h):  # one sequence [seq, d]
                h = jax.vmap(self.norm1)(h + self.attn(h, h, h))
                f = jax.vmap(self.linear2)(jax.nn.relu(jax.vmap(self.linear1)(h)))
                return jax.vmap(self.norm2)(h + f)

        class Net(eqx.Module):
            blocks: list
            head: eqx.nn.Linear

            def __init__(self, key):
                k = jax.random.split(key, s["layers"] + 1)
                self.blocks = [Block(k[i]) for i in range(s["layers"])]
                self.head = eqx.nn.Linear(d, CLASSES, key=k[-1])

            def __call__(self, h):
                for blk in self.blocks:
                    h = blk(h)
                return self.head(h.mean(0))

        model = Net(jax.random.key(0))
        for i, blk in enumerate(blocks):
            ws, bs, wo, bo = split_qkv(blk)
            arrays = [*ws, *bs, wo, bo] + [
                blk[n][p] for n in ("linear1", "linear2", "norm1", "norm2") for p in ("weight", "bias")
            ]
            model = eqx.tree_at(
                lambda m, i=i: [
                    m.blocks[i].attn.query_proj.weight,
                    m.blocks[i].attn.key_proj.weight,
                    m.blocks[i].attn.value_proj.weight,
                    m.blocks[i].attn.query_proj.bias,
                    m.blocks[i].attn.key_proj.bias,
                    m.blocks[i].attn.value_proj.bias,
                    m.blocks[i].attn.output_proj.weight,
                    m.blocks[i].attn.output_proj.bias,
                    m.blocks[i].linear1.weight,
                    m.blocks[i].linear1.bias,
                    m.blocks[i].linear2.weight,
                    m.blocks[i].linear2.bias,
                    m.blocks[i].norm1.weight,
                    m.blocks[i].norm1.bias,
                    m.blocks[i].norm2.weight,
                    m.blocks[i].norm2.bias,
                ],
                model,
                [jnp.asarray(a) for a in arrays],
            )
        model = eqx.tree_at(
            lambda m: (m.head.weight, m.head.bias), model, (jnp.asarray(head["weight"]), jnp.asarray(head["bias"]))
        )
        return _common.equinox_stepper(model, tx, x, y)

    def torch():
        import torch

        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                layer = torch.nn.TransformerEncoderLayer(d, heads, s["ff"], dropout=0.0, batch_first=True)
                self.encoder = torch.nn.TransformerEncoder(layer, s["layers"], enable_nested_tensor=False)
                self.head = torch.nn.Linear(d, CLASSES)

            def forward(self, h):
                return self.head(self.encoder(h).mean(1))

        net = Net()
        state = net.state_dict()
        with torch.no_grad():
            for i, blk in enumerate(blocks):
                for path, leaf in jax.tree_util.tree_flatten_with_path(blk)[0]:
                    name = "encoder.layers.{}.{}".format(i, ".".join(str(getattr(p, "key", p)) for p in path))
                    state[name].copy_(torch.from_numpy(np.array(leaf)))
            state["head.weight"].copy_(torch.from_numpy(np.array(head["weight"])))
            state["head.bias"].copy_(torch.from_numpy(np.array(head["bias"])))
        return _common.torch_stepper(net, x, y)

    return {"tlean": tlean, "raw": raw, "nnx": nnx, "linen": linen, "equinox": equinox, "torch": torch}


def run(quick: bool, rounds: int, frameworks) -> list[_common.Table]:
    s = sizes(quick)
    chosen = {k: v for k, v in setups(quick).items() if k in frameworks}
    title = (
        f"Transformer encoder: {s['layers']} layers, d_model {s['d']}, {s['heads']} heads, feed-forward {s['ff']}, "
        f"seq {s['seq']}, batch {s['batch']}"
    )
    note = (
        "Post-norm ReLU blocks as `torch.nn.TransformerEncoderLayer`, dropout 0. tlean and raw JAX scan "
        "over the stacked layers; flax and equinox loop over their layers in Python."
    )
    return [_common.train_step_table("transformer", title, chosen, rounds=rounds, quick=quick, notes=[note])]
