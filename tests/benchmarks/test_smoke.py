"""The benchmark harness runs on tiny sizes and writes its table and chart (never a timed assertion).

The CLI is run in a subprocess as a user runs it (``python -m benchmarks --quick``) on
the tiny-model and MLP benchmarks (the other families take minutes to compile on a
small machine); every framework's first loss must agree, since they train the same
model from the same weights. The report's target checks are tested on made-up figures.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np

from benchmarks import _common, run

ROOT = Path(__file__).resolve().parents[2]


def _rows(markdown: str, heading: str) -> dict[str, list[str]]:
    """The rows of the table under the heading that starts with ``heading``: framework -> cells."""
    section = markdown.split(f"### {heading}", 1)[1].split("###", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] not in ("framework", "configuration") and not cells[0].startswith("---"):
            rows[cells[0]] = cells[1:]
    return rows


def test_quick_cli_run_writes_table_and_chart(tmp_path):
    out = tmp_path / "results"
    doc = tmp_path / "BENCHMARKS.md"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--models",
            "tiny,mlp",
            "--rounds",
            "2",
            "--out",
            str(out),
            "--markdown",
            str(doc),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = (out / "benchmarks.md").read_text()
    assert doc.read_text() == text
    assert text.startswith("# tlean benchmarks") and f"jax {jax.__version__}" in text
    assert (out / "benchmarks.png").stat().st_size > 1000
    names = set(run.NAMES.values())
    tiny = _rows(text, "Tiny model")
    mlp = _rows(text, "MLP 32-64-64-10")
    assert set(tiny) == names and set(mlp) == names
    assert tiny["raw JAX"][1] == "1.00" and mlp["raw JAX"][1] == "1.00"
    assert all(float(cells[0]) > 0 for cells in mlp.values())
    first_losses = [float(cells[-1]) for cells in mlp.values()]
    np.testing.assert_allclose(first_losses, first_losses[0], rtol=1e-4)  # the same model everywhere
    assert re.search(r"\| MLP 32-64-64-10, batch 8: tlean / raw JAX <= 1.03 \| \d+\.\d{3} \| (yes|no) \|", text)


def test_report_checks_the_targets():
    rows = [
        _common.Row("tlean", 1.02e-3, 1.02, 1.0, 2.3),
        _common.Row("raw", 1e-3, 1.0, 1.0, 2.3),
        _common.Row("linen", 0.995e-3, 0.995, 1.0, 2.3),
    ]
    train = _common.Table("mlp", "MLP", "ms", rows)
    call = _common.Table(
        "tiny", "Tiny", "us", [_common.Row("tlean", 9e-6, 1.25), _common.Row("raw", 8e-6, 1.0)], kind="call"
    )
    compiled = _common.Table(
        "compile",
        "Compile",
        "s",
        [
            _common.Row("depth 4", 2.0, 1.0),
            _common.Row("depth 16", 2.2, 1.1),
            _common.Row("depth 16, unrolled", 9.0, 4.5),
        ],
        kind="compile",
    )
    targets = run.targets([train, call, compiled])
    assert ("MLP: tlean / raw JAX <= 1.03", "1.020", "yes") in targets
    assert (
        "MLP: tlean no slower than nnx, linen, equinox (within 3%)",
        "tlean 1.020, fastest peer flax.linen 0.995",
        "yes",
    ) in targets  # 1.02 <= 0.995 * 1.03
    slow = _common.Table("mlp", "MLP", "ms", [rows[0], rows[1], _common.Row("linen", 0.9e-3, 0.9, 1.0, 2.3)])
    assert run.targets([slow])[1][2] == "no"
    assert ("Tiny: tlean / raw JAX <= 1.2", "1.250", "no") in targets
    assert ("compile: depth 16 within 1.5x of depth 4", "1.10", "yes") in targets
    assert not any("unrolled" in t[0] for t in targets)  # the contrast row is not a target
    table = run.table_markdown(train)
    assert "| tlean | 1.02 | 1.02 | 1.00 | 1.00 | 2.30000 |" in table


def test_quick_cli_runs_the_first_model_generate_and_load_benchmarks(tmp_path):
    """Issue 17's benchmarks at tiny sizes: fresh-process builds, greedy generation against transformers
    (same tokens), from_pretrained against transformers; the report states the targets."""
    out = tmp_path / "results"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--models",
            "first_model,generate,load",
            "--frameworks",
            "tlean,torch",
            "--out",
            str(out),
            "--no-chart",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = (out / "benchmarks.md").read_text()
    resnet = _rows(text, "Time to the first model: ResNet-18")
    gpt = _rows(text, "Time to the first model: GPT-2")
    assert set(resnet) == set(gpt) == {"tlean", "PyTorch (eager)"}
    assert all(float(cells[1]) > 0 and float(cells[2]) > 0 for cells in [*resnet.values(), *gpt.values()])
    assert resnet["PyTorch (eager)"][-1] == "1.00"
    counts = re.findall(r"Parameter and buffer counts: tlean ([\d,]+), PyTorch ([\d,]+)\.", text)
    assert len(counts) == 2 and all(a == b for a, b in counts)  # the same models in both frameworks
    for family in ("GPT-2 shape", "Llama shape"):
        section = text.split(f"### Greedy generation, {family}", 1)[1].split("###", 1)[0]
        row = [line for line in section.splitlines() if line.startswith("| 2 |")]
        assert len(row) == 1 and row[0].rstrip().endswith("| yes |")  # greedy tokens equal transformers'
    load = text.split("### from_pretrained", 1)[1].split("###", 1)[0]
    assert "| tlean |" in load and "| transformers (PyTorch) |" in load
    assert re.search(
        r"\| Time to the first model: ResNet-18 .*: tlean's first build <= 1 s \(wall time\) \| \d+\.\d\d s "
        r"\(process CPU time, all threads: \d+\.\d\d s\) \| (yes|no) \|",
        text,
    )
    assert re.search(
        r"\| Time to the first model: ResNet-18 .*: tlean's second build .* <= 0.2 s \| \d+\.\d\d s \|", text
    )
    assert "### Time to the first step" not in text  # no train tables were run


def test_peer_builders_of_the_first_model_benchmark_build_the_same_shapes():
    """flax.nnx and equinox build the tiny GPT-2 with tlean's parameter count (in process, no timing)."""
    from benchmarks import first_model
    from tlean import models, nn

    s = first_model.sizes(True)["gpt2"]
    tlean = jax.eval_shape(
        lambda: nn.run(
            0,
            models.gpt2(
                vocab_size=s["vocab"], n_positions=s["ctx"], n_embd=s["d"], n_layer=s["layers"], n_head=s["heads"]
            ),
        )
    ).num_params()
    counts = {fw: first_model.child(fw, "gpt2", True)["params"] for fw in ("nnx", "equinox")}
    assert counts == {"nnx": tlean, "equinox": tlean}


def test_first_step_summary_reads_the_train_tables():
    rows = [
        _common.Row("tlean", 1e-3, 1.0, 1.5, 2.3),
        _common.Row("raw", 1e-3, 1.0, 1.2, 2.3),
        _common.Row("torch", 1e-3, 1.0, 0.05, 2.3),
    ]
    lines = run.first_steps([_common.Table("mlp", "MLP", "ms", rows)])
    assert "| mlp | 1.50 | 1.20 | 0.05 | 1.25 |" in lines
