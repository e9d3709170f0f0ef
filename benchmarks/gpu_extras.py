"""What the GPU run adds to the CPU tables: bfloat16 train steps (tlean against raw JAX) and
attention through ``jax.nn.dot_product_attention(implementation=...)`` (``"cudnn"``, the fused
kernel, against ``"xla"``), in tlean's MultiheadAttention and by hand.

bfloat16: the weights stay float32 and the computation runs in bfloat16 (tlean's
``dtype=jnp.bfloat16``; raw JAX casts the weights and the input once per step), the usual
mixed-precision setup; the loss is float32. Attention: one train step (forward, backward,
Adam) of a causal self-attention layer, bfloat16, batch first. ``"cudnn"`` exists on NVIDIA
GPUs only: elsewhere its rows are left out with a note. Run as ``python -m benchmarks.gpu_extras
[--quick] [--out DIR]``; it prints Markdown and writes ``gpu_extras.json`` / ``.md`` into DIR.
"""

from __future__ import annotations

import argparse
import itertools
import json
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import _common, _timing

BF16 = jnp.bfloat16


def _mlp_bf16(quick: bool) -> _common.Table:
    from benchmarks import mlp
    from tlean import nn

    widths, n = mlp.sizes(quick)
    x, y = _common.batch((n, widths[0]), widths[-1])
    tx = _common.optimizer()

    def build(dtype):
        layers = []
        for i, (a, b) in enumerate(itertools.pairwise(widths)):
            layers.append(nn.Linear(a, b, dtype=dtype))
            if i < len(widths) - 2:
                layers.append(nn.ReLU())
        return nn.run(0, nn.Sequential(*layers))

    w = _common.to_numpy(build(None).params)
    linears = [p for p in w if p]

    def raw(dtype):
        params = [{"w": jnp.asarray(p["weight"]), "b": jnp.asarray(p["bias"])} for p in linears]

        def forward(params, x):
            h = x.astype(dtype)
            for i, p in enumerate(params):
                h = h @ p["w"].astype(dtype).T + p["b"].astype(dtype)
                if i < len(params) - 1:
                    h = jax.nn.relu(h)
            return h

        return lambda: _common.pure_stepper(forward, params, tx, x, y)

    setups = {"tlean": lambda: _common.tlean_stepper(build(BF16), tx, x, y), "raw": raw(BF16)}
    title = f"bfloat16 compute: MLP {'-'.join(map(str, widths))}, batch {n}"
    return _common.train_step_table("mlp_bf16", title, setups, rounds=1 if quick else 5, quick=quick)


def _transformer_bf16(quick: bool) -> _common.Table:
    from benchmarks import transformer
    from tlean import nn

    s = transformer.sizes(quick)
    d, heads = s["d"], s["heads"]
    hd = d // heads
    x, y = _common.batch((s["batch"], s["seq"], d), transformer.CLASSES)
    tx = _common.optimizer()

    def build(dtype):
        return nn.run(
            0,
            nn.Sequential(
                nn.TransformerEncoder(
                    nn.TransformerEncoderLayer(d, heads, s["ff"], 0.0, batch_first=True, dtype=dtype), s["layers"]
                ),
                nn.Mean(1),
                nn.Linear(d, transformer.CLASSES, dtype=dtype),
            ),
        )

    w = _common.to_numpy(build(None).params)
    params = {"layers": jax.tree.map(jnp.asarray, w[0]["layers"]), "head": jax.tree.map(jnp.asarray, w[2])}

    def raw():
        def layer_norm(h, p):
            f = h.astype(jnp.float32)  # statistics in float32, as tlean (and torch) compute them
            mean = f.mean(-1, keepdims=True)
            var = jnp.square(f - mean).mean(-1, keepdims=True)
            return ((f - mean) * jax.lax.rsqrt(var + 1e-5) * p["weight"] + p["bias"]).astype(BF16)

        def block(h, p):
            p = jax.tree.map(lambda a: a.astype(BF16), p) | {"norm1": p["norm1"], "norm2": p["norm2"]}
            a = p["self_attn"]
            b, n, _ = h.shape
            qkv = h @ a["in_proj_weight"].T + a["in_proj_bias"]
            q, k, v = (t.reshape(b, n, heads, hd) for t in jnp.split(qkv, 3, axis=-1))
            o = jax.nn.dot_product_attention(q, k, v).reshape(b, n, d)
            h = layer_norm(h + o @ a["out_proj"]["weight"].T + a["out_proj"]["bias"], p["norm1"])
            f = jax.nn.relu(h @ p["linear1"]["weight"].T + p["linear1"]["bias"])
            return layer_norm(h + f @ p["linear2"]["weight"].T + p["linear2"]["bias"], p["norm2"])

        def forward(params, x):
            h, _ = jax.lax.scan(lambda h, p: (block(h, p), None), x.astype(BF16), params["layers"])
            head = jax.tree.map(lambda a: a.astype(BF16), params["head"])
            return h.mean(1) @ head["weight"].T + head["bias"]

        return _common.pure_stepper(forward, params, tx, x, y)

    setups = {"tlean": lambda: _common.tlean_stepper(build(BF16), tx, x, y), "raw": raw}
    title = (
        f"bfloat16 compute: Transformer encoder, {s['layers']} layers, d_model {d}, {heads} heads, "
        f"seq {s['seq']}, batch {s['batch']}"
    )
    return _common.train_step_table("transformer_bf16", title, setups, rounds=1 if quick else 5, quick=quick)


def _attention(quick: bool) -> _common.Table:
    from tlean import nn

    batch, seq, d, heads = (2, 16, 32, 4) if quick else (8, 1024, 768, 12)
    x, _ = _common.batch((batch, seq, d), 2)
    target = jnp.asarray(np.random.default_rng(1).standard_normal((batch, seq, d)), BF16)
    tx = _common.optimizer()
    cudnn = jax.default_backend() == "gpu"  # cuDNN's fused attention: NVIDIA GPUs (JAX's "gpu" backend is CUDA here)
    impls = ["xla", "cudnn"] if cudnn else ["xla"]

    def tlean(impl):
        model = nn.run(
            0, nn.MultiheadAttention(d, heads, batch_first=True, dtype=BF16, causal=True, implementation=impl)
        )

        def step(model, opt_state, x, t):
            def loss_fn(params):
                y = model.replace(params=params)(x)
                return jnp.mean(jnp.square(y.astype(jnp.float32) - t))

            value, grads = jax.value_and_grad(loss_fn)(model.params)
            updates, opt_state = tx.update(grads, opt_state, model.params)
            import optax

            return model.replace(params=optax.apply_updates(model.params, updates)), opt_state, value

        return lambda: _common.jax_stepper(step, (model, tx.init(model.params)), x.astype(np.float32), target)

    def raw(impl):
        rng = np.random.default_rng(0)
        params = {
            "qkv": jnp.asarray(rng.standard_normal((d, 3 * d), np.float32) / np.sqrt(d)),
            "out": jnp.asarray(rng.standard_normal((d, d), np.float32) / np.sqrt(d)),
        }

        def step(params, opt_state, x, t):
            def loss_fn(p):
                qkv = x.astype(BF16) @ p["qkv"].astype(BF16)
                q, k, v = (a.reshape(batch, seq, heads, d // heads) for a in jnp.split(qkv, 3, -1))
                o = jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation=impl).reshape(batch, seq, d)
                return jnp.mean(jnp.square((o @ p["out"].astype(BF16)).astype(jnp.float32) - t))

            import optax

            value, grads = jax.value_and_grad(loss_fn)(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, value

        return lambda: _common.jax_stepper(step, (params, tx.init(params)), x, target)

    calls, first = {}, {}
    for impl in impls:
        for who, make in (("tlean", tlean), ("raw", raw)):
            name = f"{who} {impl}"
            call = make(impl)()
            start = _timing.clock()
            _timing.block(call())
            first[name] = _timing.clock() - start
            calls[name] = call
    inner = {n: 1 if quick else _timing.repeats_for(c, _common.BLOCK_SECONDS) for n, c in calls.items()}
    timing = _timing.interleave(calls, rounds=1 if quick else 5, inner=inner)
    rows = [_common.Row(n, timing.median(n), timing.ratio(n, "raw xla"), first[n]) for n in calls]
    notes = [
        f"Causal self-attention train step, bfloat16, batch {batch}, seq {seq}, d_model {d}, {heads} heads; "
        "ratio against raw JAX with implementation='xla'."
    ]
    if not cudnn:
        notes.append(f"implementation='cudnn' needs an NVIDIA GPU; this run is on {jax.default_backend()}: left out.")
    return _common.Table(
        "attention", "Attention implementations (jax.nn.dot_product_attention)", "ms", rows, notes, kind="attention"
    )


def markdown(table: _common.Table) -> str:
    lines = [f"### {table.title}", ""]
    if table.kind == "attention":
        lines += ["| implementation | step (ms) | vs raw JAX xla | first call (s) |", "| --- | ---: | ---: | ---: |"]
        lines += [f"| {r.framework} | {r.seconds * 1e3:.3f} | {r.ratio:.3f} | {r.first_call:.2f} |" for r in table.rows]
    else:
        lines += [
            "| framework | train step (ms) | vs raw JAX | first call (s) | first loss |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        lines += [
            f"| {r.framework} | {r.seconds * 1e3:.3f} | {r.ratio:.3f} | {r.first_call:.2f} | {r.loss0:.5f} |"
            for r in table.rows
        ]
    return "\n".join(lines + [""] + table.notes)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_extras", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--parts", default="mlp_bf16,transformer_bf16,attention")
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    parts = {"mlp_bf16": _mlp_bf16, "transformer_bf16": _transformer_bf16, "attention": _attention}
    device = f"{jax.default_backend()}: {jax.devices()[0].device_kind}"
    texts, records = [f"## GPU extras on {device} (jax {jax.__version__})", ""], []
    for name in args.parts.split(","):
        try:
            table = parts[name](args.quick)
        except Exception as err:  # one part failing must not lose the others
            texts += [f"### {name}: failed", "", f"`{type(err).__name__}: {str(err)[:500]}`", ""]
            print(f"[gpu_extras] {name} failed: {err!r}", file=sys.stderr)
            continue
        table.notes = [
            note.replace(
                "**Warning: the first losses differ",
                "(bfloat16: the first losses agree to bfloat16 rounding, not exactly; they differ",
            ).replace("the frameworks are not training the same model.**", "the two round in different places.)")
            for note in table.notes
        ]
        texts += [markdown(table), ""]
        records.append(
            {
                "key": table.key,
                "title": table.title,
                "notes": table.notes,
                "rows": [
                    {
                        "name": r.framework,
                        "seconds": r.seconds,
                        "ratio": r.ratio,
                        "first_call": r.first_call,
                        "loss0": r.loss0,
                    }
                    for r in table.rows
                ],
            }
        )
        (out / "gpu_extras.md").write_text("\n".join(texts))
        (out / "gpu_extras.json").write_text(
            json.dumps({"device": device, "jax": jax.__version__, "tables": records}, indent=1)
        )
    print("\n".join(texts))


if __name__ == "__main__":
    main()
