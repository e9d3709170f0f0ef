"""Time to the first model: a fresh Python process imports a framework and builds ResNet-18 or a
GPT-2-small-shaped model eagerly (tlean, PyTorch, flax.nnx, equinox).

Each figure comes from its own subprocess (``python -m benchmarks.first_model child ...``),
as a user's script starts: *import* is importing the framework (and the model code), *first
build* the first eager construction with random initial values (blocked until every array
is computed), *second build* another construction in the same process with another seed
(what is left once every program is compiled), *CPU* the process CPU time of the first
build (all threads; steadier than wall time on a shared machine). ResNet-18 is torchvision's
(11.7M parameters, 1000 classes); GPT-2 small is transformers' default ``GPT2Config``
(124M, tied LM head): PyTorch builds ``transformers.GPT2LMHeadModel``, tlean
``models.gpt2()``, flax.nnx and equinox the same shapes written with their layers (a Python
list of blocks, as their users write them). ``--quick`` builds tiny versions.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

from benchmarks import _common

FRAMEWORKS = ("tlean", "torch", "nnx", "equinox")
MODELS = ("resnet18", "gpt2")


def sizes(quick: bool) -> dict:
    """The two models' shapes: full (the real ones) or tiny (``--quick``)."""
    if quick:
        return {
            "resnet18": {"widths": (64, 128, 256, 512), "blocks": 1, "classes": 10},
            "gpt2": {"vocab": 97, "ctx": 16, "d": 16, "layers": 2, "heads": 2},
        }
    return {
        "resnet18": {"widths": (64, 128, 256, 512), "blocks": 2, "classes": 1000},
        "gpt2": {"vocab": 50257, "ctx": 1024, "d": 768, "layers": 12, "heads": 12},
    }


# -- the builders, one per framework and model (run in the child process) -------------------
def _tlean(model: str, s: dict):
    from tlean import models, nn

    if model == "resnet18":
        if s["blocks"] == 2:
            builder = models.resnet18(num_classes=s["classes"])
        else:  # the tiny version: one block per stage
            from tlean.layers import BasicBlock

            builder = nn.build(models.ResNet(block=BasicBlock, layers=(1, 1, 1, 1), num_classes=s["classes"]))
        return lambda seed: nn.run(seed, builder)
    builder = models.gpt2(
        vocab_size=s["vocab"], n_positions=s["ctx"], n_embd=s["d"], n_layer=s["layers"], n_head=s["heads"]
    )
    return lambda seed: nn.run(seed, builder)


def _torch(model: str, s: dict):
    import torch

    if model == "gpt2":
        import transformers

        config = transformers.GPT2Config(
            vocab_size=s["vocab"], n_positions=s["ctx"], n_embd=s["d"], n_layer=s["layers"], n_head=s["heads"]
        )

        def build(seed):
            torch.manual_seed(seed)
            return transformers.GPT2LMHeadModel(config)

        return build
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
            self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
            self.downsample = (
                nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                if stride != 1 or cin != cout
                else None
            )

    def build(seed):
        torch.manual_seed(seed)
        w = s["widths"]
        layers = [nn.Conv2d(3, w[0], 7, 2, 3, bias=False), nn.BatchNorm2d(w[0])]
        cin = w[0]
        for i, c in enumerate(w):
            for j in range(s["blocks"]):
                layers.append(Block(cin, c, 2 if i > 0 and j == 0 else 1))
                cin = c
        net = nn.Sequential(*layers, nn.Linear(cin, s["classes"]))
        for m in net.modules():  # torchvision's init: kaiming normal convolutions
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        return net

    return build


def _nnx(model: str, s: dict):
    import jax
    from flax import nnx

    if model == "resnet18":

        class Block(nnx.Module):
            def __init__(self, cin, cout, stride, rngs):
                self.conv1 = nnx.Conv(cin, cout, (3, 3), strides=stride, padding=1, use_bias=False, rngs=rngs)
                self.bn1 = nnx.BatchNorm(cout, rngs=rngs)
                self.conv2 = nnx.Conv(cout, cout, (3, 3), padding=1, use_bias=False, rngs=rngs)
                self.bn2 = nnx.BatchNorm(cout, rngs=rngs)
                if stride != 1 or cin != cout:
                    self.down = nnx.Conv(cin, cout, (1, 1), strides=stride, use_bias=False, rngs=rngs)
                    self.down_bn = nnx.BatchNorm(cout, rngs=rngs)

        class ResNet(nnx.Module):
            def __init__(self, rngs):
                w = s["widths"]
                self.conv1 = nnx.Conv(3, w[0], (7, 7), strides=2, padding=3, use_bias=False, rngs=rngs)
                self.bn1 = nnx.BatchNorm(w[0], rngs=rngs)
                blocks, cin = [], w[0]
                for i, c in enumerate(w):
                    for j in range(s["blocks"]):
                        blocks.append(Block(cin, c, 2 if i > 0 and j == 0 else 1, rngs))
                        cin = c
                self.blocks = nnx.List(blocks)
                self.fc = nnx.Linear(cin, s["classes"], rngs=rngs)

        return lambda seed: ResNet(nnx.Rngs(seed))

    init = jax.nn.initializers.normal(0.02)

    class GPTBlock(nnx.Module):
        def __init__(self, d, rngs):
            self.ln_1, self.ln_2 = nnx.LayerNorm(d, rngs=rngs), nnx.LayerNorm(d, rngs=rngs)
            self.c_attn = nnx.Linear(d, 3 * d, kernel_init=init, rngs=rngs)
            self.c_proj = nnx.Linear(d, d, kernel_init=init, rngs=rngs)
            self.c_fc = nnx.Linear(d, 4 * d, kernel_init=init, rngs=rngs)
            self.mlp_proj = nnx.Linear(4 * d, d, kernel_init=init, rngs=rngs)

    class GPT(nnx.Module):
        def __init__(self, rngs):
            d = s["d"]
            self.wte = nnx.Embed(s["vocab"], d, embedding_init=init, rngs=rngs)
            self.wpe = nnx.Embed(s["ctx"], d, embedding_init=init, rngs=rngs)
            self.h = nnx.List([GPTBlock(d, rngs) for _ in range(s["layers"])])
            self.ln_f = nnx.LayerNorm(d, rngs=rngs)

    return lambda seed: GPT(nnx.Rngs(seed))


def _equinox(model: str, s: dict):
    import equinox as eqx
    import jax

    if model == "resnet18":

        def block(cin, cout, stride, key):
            k = jax.random.split(key, 3)
            parts = [
                eqx.nn.Conv2d(cin, cout, 3, stride, 1, use_bias=False, key=k[0]),
                eqx.nn.BatchNorm(cout, "batch"),
                eqx.nn.Conv2d(cout, cout, 3, 1, 1, use_bias=False, key=k[1]),
                eqx.nn.BatchNorm(cout, "batch"),
            ]
            if stride != 1 or cin != cout:
                parts += [
                    eqx.nn.Conv2d(cin, cout, 1, stride, use_bias=False, key=k[2]),
                    eqx.nn.BatchNorm(cout, "batch"),
                ]
            return parts

        def build(seed):
            w = s["widths"]
            keys = iter(jax.random.split(jax.random.key(seed), 4 * s["blocks"] + 2))
            layers, cin = (
                [eqx.nn.Conv2d(3, w[0], 7, 2, 3, use_bias=False, key=next(keys)), eqx.nn.BatchNorm(w[0], "batch")],
                w[0],
            )
            for i, c in enumerate(w):
                for j in range(s["blocks"]):
                    layers += block(cin, c, 2 if i > 0 and j == 0 else 1, next(keys))
                    cin = c
            layers.append(eqx.nn.Linear(cin, s["classes"], key=next(keys)))
            return eqx.nn.make_with_state(lambda: layers)()

        return build

    def normal(key, shape):
        return 0.02 * jax.random.normal(key, shape)

    def build(seed):  # GPT-2's N(0, 0.02) matrices put in with eqx.tree_at, as equinox teaches
        d = s["d"]
        keys = iter(jax.random.split(jax.random.key(seed), 8 * s["layers"] + 2))
        parts = [
            eqx.nn.Embedding(weight=normal(next(keys), (s["vocab"], d))),
            eqx.nn.Embedding(weight=normal(next(keys), (s["ctx"], d))),
        ]
        for _ in range(s["layers"]):
            for fan_in, fan_out in ((d, 3 * d), (d, d), (d, 4 * d), (4 * d, d)):
                linear = eqx.nn.Linear(fan_in, fan_out, key=next(keys))
                parts.append(eqx.tree_at(lambda m: m.weight, linear, normal(next(keys), (fan_out, fan_in))))
            parts += [eqx.nn.LayerNorm(d), eqx.nn.LayerNorm(d)]
        parts.append(eqx.nn.LayerNorm(d))
        return parts

    return build


BUILDERS = {"tlean": _tlean, "torch": _torch, "nnx": _nnx, "equinox": _equinox}


def _count(value) -> int:
    """The number of parameters and buffers (array elements) of a built model, in any framework."""
    if hasattr(value, "num_params") and hasattr(value, "state"):  # a tlean Model
        import jax

        return sum(a.size for a in jax.tree.leaves((value.params, value.state)) if a.dtype.kind == "f")
    if hasattr(value, "state_dict"):  # torch: parameters (a tied one once) and float buffers (running statistics)
        buffers = [
            b
            for name, b in value.named_buffers()
            if b.is_floating_point() and not name.endswith(("attn.bias", "masked_bias"))
        ]
        return sum(p.numel() for p in value.parameters()) + sum(b.numel() for b in buffers)
    import equinox as eqx
    import jax

    try:
        from flax import nnx

        if isinstance(value, nnx.Module):
            value = nnx.state(value)
    except ImportError:
        pass
    return sum(a.size for a in jax.tree.leaves(eqx.filter(value, eqx.is_inexact_array)))


def _block(value) -> None:
    if hasattr(value, "state_dict"):  # torch computes eagerly
        return
    import jax

    try:
        from flax import nnx

        if isinstance(value, nnx.Module):
            value = nnx.state(value)
    except ImportError:
        pass
    jax.block_until_ready(jax.tree.leaves(value))


def child(framework: str, model: str, quick: bool) -> dict:
    """Import, build twice, and return the figures (run in a fresh process)."""
    start = time.perf_counter()
    build = BUILDERS[framework](model, sizes(quick)[model])
    imported = time.perf_counter() - start
    wall, cpu = time.perf_counter(), time.process_time()
    first = build(0)
    _block(first)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    again = time.perf_counter()
    _block(build(1))
    again = time.perf_counter() - again
    return {"import": imported, "first": wall, "cpu": cpu, "second": again, "params": _count(first)}


def measure(framework: str, model: str, quick: bool) -> dict:
    """:func:`child` in a fresh ``python`` process (the current interpreter), as a user's script starts."""
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.first_model", "child", framework, model, str(int(quick))],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"first_model {framework} {model} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(quick: bool, rounds: int, frameworks) -> list[_common.Table]:
    chosen = [f for f in FRAMEWORKS if f in frameworks]
    rounds = 1 if quick else min(rounds, 3)
    tables = []
    for model in MODELS:
        figures: dict[str, list[dict]] = {f: [] for f in chosen}
        for r in range(rounds):  # frameworks interleaved, in a rotated order each round
            order = chosen[r % len(chosen) :] + chosen[: r % len(chosen)]
            for framework in order:
                figures[framework].append(measure(framework, model, quick))
        rows = []
        for framework in chosen:
            runs = figures[framework]
            median = {k: statistics.median(run[k] for run in runs) for k in ("import", "first", "cpu", "second")}
            rows.append(_common.Row(framework, median["first"], None, median["import"], None))
            rows[-1].extra = {**median, "params": runs[0]["params"]}
        ref = next((r for r in rows if r.framework == "torch"), None)
        for row in rows:
            row.ratio = row.seconds / ref.seconds if ref else None
        s = sizes(quick)[model]
        title = (
            f"Time to the first model: ResNet-18 ({'1000' if not quick else s['classes']} classes)"
            if model == "resnet18"
            else f"Time to the first model: GPT-2 small shape (vocab {s['vocab']}, {s['layers']} layers, d {s['d']})"
        )
        counts = {r.framework: r.extra["params"] for r in rows}
        notes = [
            f"Median of {rounds} fresh process(es) per framework. Parameter and buffer counts: "
            + ", ".join(f"{_NAMES[f]} {n:,}" for f, n in counts.items())
            + "."
        ]
        tables.append(_common.Table(f"first_{model}", title, "s", rows, notes, kind="first_model"))
    return tables


_NAMES = {"tlean": "tlean", "torch": "PyTorch", "nnx": "flax.nnx", "equinox": "equinox"}


if __name__ == "__main__" and len(sys.argv) == 5 and sys.argv[1] == "child":
    print(json.dumps(child(sys.argv[2], sys.argv[3], bool(int(sys.argv[4])))))
