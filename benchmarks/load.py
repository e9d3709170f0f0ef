"""Checkpoint loading: ``tlean.models.from_pretrained`` against transformers' ``from_pretrained``
on the same local directory (a random GPT-2-small-shaped model, 124M parameters, float32
``model.safetensors`` written by transformers' ``save_pretrained``).

Each figure comes from a fresh process (``python -m benchmarks.load child ...``): *import*
is importing the library, *load* reading the directory into a ready model (every array
computed), *CPU* the process CPU time of the load. ``--quick`` uses a tiny GPT-2.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks import _common

FRAMEWORKS = ("tlean", "torch")


def config(quick: bool) -> dict:
    if quick:
        return dict(vocab_size=97, n_positions=32, n_embd=16, n_layer=2, n_head=2)
    return dict(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12)


def missing() -> str | None:
    """Why this benchmark cannot run (tlean.models.from_pretrained or transformers absent), or None."""
    try:
        from tlean.models import from_pretrained  # noqa: F401
    except ImportError as err:
        return f"tlean.models.from_pretrained does not exist yet ({err})"
    try:
        import transformers  # noqa: F401
    except ImportError:
        return "transformers is not installed"
    return None


def child(framework: str, folder: str) -> dict:
    """Import and load once (run in a fresh process)."""
    start = time.perf_counter()
    if framework == "tlean":
        import jax

        from tlean import models

        def load():
            model = models.from_pretrained(folder)
            jax.block_until_ready(jax.tree.leaves(model.params))
            return sum(a.size for a in jax.tree.leaves(model.params))
    else:
        import transformers

        def load():
            model = transformers.AutoModelForCausalLM.from_pretrained(folder)
            return sum(p.numel() for p in model.parameters())

    imported = time.perf_counter() - start
    wall, cpu = time.perf_counter(), time.process_time()
    count = load()
    return {"import": imported, "load": time.perf_counter() - wall, "cpu": time.process_time() - cpu, "params": count}


def _measure(framework: str, folder: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.load", "child", framework, folder],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"load {framework} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(quick: bool, rounds: int, frameworks) -> list[_common.Table]:
    import torch
    import transformers

    rounds = 1 if quick else min(rounds, 3)
    cfg = config(quick)
    with tempfile.TemporaryDirectory() as folder:
        torch.manual_seed(0)
        transformers.GPT2LMHeadModel(transformers.GPT2Config(**cfg)).save_pretrained(folder)
        figures = {f: [] for f in FRAMEWORKS}
        for r in range(rounds):
            for framework in FRAMEWORKS if r % 2 == 0 else FRAMEWORKS[::-1]:
                figures[framework].append(_measure(framework, folder))
    rows = []
    for framework in FRAMEWORKS:
        runs = figures[framework]
        median = {k: statistics.median(run[k] for run in runs) for k in ("import", "load", "cpu")}
        rows.append(_common.Row(framework, median["load"], None, median["import"]))
        rows[-1].extra = {**median, "params": runs[0]["params"]}
    for row in rows:
        row.ratio = row.seconds / rows[1].seconds
    title = f"from_pretrained of a GPT-2 shape checkpoint ({rows[1].extra['params']:,} parameters, float32 safetensors)"
    notes = [
        f"Median of {rounds} fresh process(es) per library; transformers {transformers.__version__} on "
        f"PyTorch {torch.__version__}."
    ]
    return [_common.Table("load_gpt2", title, "s", rows, notes, kind="load")]


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "child":
    print(json.dumps(child(sys.argv[2], sys.argv[3])))
