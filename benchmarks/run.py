"""Run the benchmarks and write the Markdown table and the PNG chart.

Usage::

    python -m benchmarks                       # every model, full sizes (a few minutes)
    python -m benchmarks --quick               # tiny sizes, a smoke test of the harness
    python -m benchmarks --models mlp,tiny     # a subset
    python -m benchmarks --markdown BENCHMARKS.md   # also rewrite BENCHMARKS.md

Models: ``tiny`` (per-call overhead), ``mlp``, ``cnn``, ``transformer``, ``lstm`` and
``compile`` (compile time against depth and sequence length), ``verify`` (certification
against auto_LiRPA: benchmarks/verify_crown.py), ``first_model`` (a fresh process builds
ResNet-18 and GPT-2 small: tlean, PyTorch, flax.nnx, equinox), ``generate`` (greedy
tokens per second against transformers) and ``load`` (``from_pretrained`` of a 124M
checkpoint against transformers'). A model whose tlean layers
do not exist yet is skipped with a note. Results go to ``--out`` (default
``benchmarks/results/``, git-ignored): ``benchmarks.md`` and ``benchmarks.png``.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import pathlib
import sys
import time
from collections.abc import Sequence

from benchmarks import _common, _timing

MODELS = ("tiny", "mlp", "cnn", "transformer", "lstm", "compile", "verify", "first_model", "generate", "load")
MODULES = {"compile": "compile_time", "verify": "verify_crown"}
NAMES = {
    "tlean": "tlean",
    "raw": "raw JAX",
    "nnx": "flax.nnx",
    "linen": "flax.linen",
    "equinox": "equinox",
    "torch": "PyTorch (eager)",
    _common.COPY: "raw JAX again (noise floor)",
}
TRAIN_TARGET, CALL_TARGET, COMPILE_TARGET = 1.03, 1.2, 1.5
# Issue 17's targets for an eager build in a fresh process (seconds beyond the import, wall time:
# "takes no more than"): the first build, and the second with another seed where the issue sets one.
FIRST_MODEL_TARGET = {"first_resnet18": (1.0, 0.2), "first_gpt2": (3.0, None)}
# Two runs of one program differ by a percent or two on a shared machine: "no slower than a
# peer" allows the same 3% as the raw-JAX target does.
PEER_TOLERANCE = 1.03


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few repeats (the smoke test)")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of {','.join(MODELS)}")
    parser.add_argument(
        "--frameworks",
        default=",".join(_common.FRAMEWORKS),
        help="comma-separated subset of tlean,raw,nnx,linen,equinox,torch (raw is always run)",
    )
    parser.add_argument(
        "--rounds", type=int, default=None, help="interleaved rounds per benchmark (default 3 quick, 9 full)"
    )
    parser.add_argument("--out", default="benchmarks/results", help="folder for benchmarks.md and benchmarks.png")
    parser.add_argument("--markdown", default=None, help="also write the full report to this file (e.g. BENCHMARKS.md)")
    parser.add_argument(
        "--clock",
        choices=sorted(_timing.CLOCKS),
        default="wall",
        help="wall time (default), or process CPU time, steadier on a shared machine",
    )
    parser.add_argument("--no-chart", action="store_true", help="skip the PNG chart")
    args = parser.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(args.models) - set(MODELS))
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {list(MODELS)}")
    args.frameworks = [f.strip() for f in args.frameworks.split(",") if f.strip()]
    unknown = sorted(set(args.frameworks) - set(_common.FRAMEWORKS))
    if unknown:
        parser.error(f"unknown framework(s) {unknown}; choose from {list(_common.FRAMEWORKS)}")
    if _common.REFERENCE not in args.frameworks:
        args.frameworks.append(_common.REFERENCE)
    if args.rounds is None:
        args.rounds = 3 if args.quick else 9
    return args


def run_models(args: argparse.Namespace) -> tuple[list[_common.Table], list[str]]:
    """Run each chosen model's benchmark; return the tables and notes on what was skipped."""
    tables, skipped = [], []
    for name in args.models:
        module = importlib.import_module(f"benchmarks.{MODULES.get(name, name)}")
        missing = getattr(module, "missing", lambda: None)()
        if missing:
            skipped.append(f"{name}: skipped, {missing}")
            print(f"[benchmarks] {name}: skipped ({missing})", file=sys.stderr)
            continue
        start = time.perf_counter()
        rounds = args.rounds if name != "compile" else 1
        tables.extend(module.run(args.quick, rounds, args.frameworks))
        print(f"[benchmarks] {name}: {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return tables, skipped


# -- Markdown --------------------------------------------------------------------------
def _fmt(value: float | None, digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def table_markdown(table: _common.Table) -> str:
    if table.kind == "verify":  # tlean.verify against auto_LiRPA: benchmarks/verify_crown.py
        from benchmarks.verify_crown import markdown

        return markdown(table)
    lines = [f"### {table.title}", ""]
    if table.kind in SPEED_TABLES:
        lines += SPEED_TABLES[table.kind](table)
    elif table.kind == "compile":
        lines += ["| configuration | compile (s) | vs first row |", "| --- | ---: | ---: |"]
        lines += [f"| {r.framework} | {_fmt(r.seconds)} | {_fmt(r.ratio)} |" for r in table.rows]
    elif table.kind == "call":
        lines += ["| framework | per call (us) | vs raw JAX |", "| --- | ---: | ---: |"]
        lines += [f"| {NAMES[r.framework]} | {r.seconds * 1e6:.1f} | {_fmt(r.ratio)} |" for r in table.rows]
    else:
        ref = table.row(_common.REFERENCE)
        lines += [
            "| framework | train step (ms) | vs raw JAX | first call (s) | first call vs raw | first loss |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in table.rows:
            first_ratio = r.first_call / ref.first_call if r.first_call and ref.first_call else None
            lines.append(
                f"| {NAMES[r.framework]} | {r.seconds * 1e3:.2f} | {_fmt(r.ratio)} | {_fmt(r.first_call)} "
                f"| {_fmt(first_ratio)} | {r.loss0:.5f} |"
            )
    for note in table.notes:
        lines += ["", note]
    return "\n".join(lines)


def _first_model_rows(table: _common.Table) -> list[str]:
    lines = [
        "| framework | import (s) | first build (s) | first build, CPU (s) | second build (s) | first build vs PyTorch |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in table.rows:
        e = r.extra
        lines.append(
            f"| {NAMES[r.framework]} | {_fmt(e['import'])} | {_fmt(r.seconds)} | {_fmt(e['cpu'])} | "
            f"{_fmt(e['second'])} | {_fmt(r.ratio)} |"
        )
    return lines


def _generate_rows(table: _common.Table) -> list[str]:
    lines = [
        "| batch | tlean (tokens/s) | transformers (tokens/s) | tlean / transformers | tlean first call (s) "
        "| transformers first call (s) | same tokens |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in table.rows:
        e = r.extra
        lines.append(
            f"| {r.framework.split()[-1]} | {r.seconds:.1f} | {e['torch']:.1f} | {_fmt(r.ratio)} | "
            f"{_fmt(r.first_call)} | {_fmt(e['torch_first'])} | {'yes' if e['same'] else 'no'} |"
        )
    return lines


def _load_rows(table: _common.Table) -> list[str]:
    lines = [
        "| library | import (s) | load (s) | load, CPU (s) | load vs transformers |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for r in table.rows:
        name = "tlean" if r.framework == "tlean" else "transformers (PyTorch)"
        lines.append(
            f"| {name} | {_fmt(r.extra['import'])} | {_fmt(r.seconds)} | {_fmt(r.extra['cpu'])} | {_fmt(r.ratio)} |"
        )
    return lines


SPEED_TABLES = {"first_model": _first_model_rows, "generate": _generate_rows, "load": _load_rows}


def first_steps(tables: list[_common.Table]) -> list[str]:
    """A summary of the train tables' first calls (trace + compile + one step), per model, against raw JAX and PyTorch."""
    shown = [t for t in tables if t.kind == "train" and any(r.first_call for r in t.rows)]
    if not shown:
        return []
    frameworks = [f for f in _common.FRAMEWORKS if any(r.framework == f for t in shown for r in t.rows)]
    lines = [
        "### Time to the first step (trace + compile + one step, seconds)",
        "",
        "| model | " + " | ".join(NAMES[f] for f in frameworks) + " | tlean / raw JAX |",
        "| --- | " + " | ".join("---:" for _ in frameworks) + " | ---: |",
    ]
    for t in shown:
        cells = {r.framework: r.first_call for r in t.rows}
        ratio = cells["tlean"] / cells["raw"] if cells.get("tlean") and cells.get("raw") else None
        lines.append(f"| {t.key} | " + " | ".join(_fmt(cells.get(f)) for f in frameworks) + f" | {_fmt(ratio)} |")
    return lines + [""]


def targets(tables: list[_common.Table]) -> list[tuple[str, str, str]]:
    """``(target, measured, met)`` for each of the issue's targets that was measured."""
    out = []
    for t in tables:
        if t.kind in ("train", "call") and any(r.framework == "tlean" for r in t.rows):
            tl = t.row("tlean")
            bound = TRAIN_TARGET if t.kind == "train" else CALL_TARGET
            out.append(
                (f"{t.title}: tlean / raw JAX <= {bound}", f"{tl.ratio:.3f}", "yes" if tl.ratio <= bound else "no")
            )
            peers = [r for r in t.rows if r.framework in ("nnx", "linen", "equinox")]
            if peers:
                fastest = min(peers, key=lambda r: r.ratio)
                ok = tl.ratio <= fastest.ratio * PEER_TOLERANCE
                out.append(
                    (
                        f"{t.title}: tlean no slower than nnx, linen, equinox (within {PEER_TOLERANCE - 1:.0%})",
                        f"tlean {tl.ratio:.3f}, fastest peer {NAMES[fastest.framework]} {fastest.ratio:.3f}",
                        "yes" if ok else "no",
                    )
                )
        elif t.kind == "first_model" and t.key in FIRST_MODEL_TARGET and any(r.framework == "tlean" for r in t.rows):
            tl, (first, second) = t.row("tlean"), FIRST_MODEL_TARGET[t.key]
            out.append(
                (
                    f"{t.title}: tlean's first build <= {first:g} s (wall time)",
                    f"{tl.seconds:.2f} s (process CPU time, all threads: {tl.extra['cpu']:.2f} s)",
                    "yes" if tl.seconds <= first else "no",
                )
            )
            if second is not None:
                out.append(
                    (
                        f"{t.title}: tlean's second build (another seed) <= {second:g} s",
                        f"{tl.extra['second']:.2f} s",
                        "yes" if tl.extra["second"] <= second else "no",
                    )
                )
        elif t.kind == "generate":
            for r in t.rows:
                out.append(
                    (
                        f"{t.title}, {r.framework}: tlean tokens/s >= transformers'",
                        f"{r.ratio:.2f}",
                        "yes" if r.ratio >= 1 else "no",
                    )
                )
        elif t.kind == "compile":
            for r in t.rows[1:]:
                if r.ratio is not None and "unrolled" not in r.framework:
                    out.append(
                        (
                            f"compile: {r.framework} within {COMPILE_TARGET}x of {t.rows[0].framework}",
                            f"{r.ratio:.2f}",
                            "yes" if r.ratio <= COMPILE_TARGET else "no",
                        )
                    )
    return out


def report(tables: list[_common.Table], skipped: list[str], args: argparse.Namespace, info: dict) -> str:
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    command = (
        "python -m benchmarks"
        + (" --quick" if args.quick else "")
        + (f" --clock {args.clock}" if args.clock != "wall" else "")
    )
    lines = [
        "# tlean benchmarks",
        "",
        f"Generated by `{command}` on {when}.",
        "",
        "Machine: " + f"{info['cpu']}, {info['cores']} cores, {info['os']}; {info['backend']}.",
        "",
        "Versions: "
        + ", ".join(f"{k} {info[k]}" for k in ("python", "jax", "flax", "equinox", "optax", "torch"))
        + ".",
        "",
        "Each train step is forward, backward and an Adam update (optax; `torch.optim.Adam` for PyTorch), "
        "jit-compiled in the JAX frameworks and run from the same initial weights in every framework (the "
        "*first loss* column checks that). The raw-JAX reference is the same model written by hand with "
        "dict params, the same algorithm as tlean's (for example a `lax.scan` over the encoder layers). "
        "Each framework is used the way its documentation teaches: tlean, raw JAX and linen with `jax.jit` "
        "on a pure step function, `nnx.jit` with `nnx.Optimizer`, `eqx.filter_jit`, PyTorch eager. "
        f"Frameworks run interleaved: each of {args.rounds} rounds runs every framework's step for about "
        f"{_common.BLOCK_SECONDS} s (one step with `--quick`), in a rotated order, after a warm-up step; a "
        "table gives the median time per step and *vs raw JAX*, the median "
        "over rounds of the ratio within a round (lower is better). *First call* is the first step: "
        "tracing, compilation and one run. "
        + (
            "Times are process CPU time (`--clock cpu`, all threads), which other processes on a shared "
            "machine disturb less than wall time; PyTorch's CPU time includes its worker threads' spinning. "
            if args.clock == "cpu"
            else "Times are wall-clock. "
        )
        + "Ratios, not absolute times, are the result. *raw JAX again* is a second, independent copy of "
        "the reference timed like the others: its distance from 1.00 shows the measurement noise of the run. "
        "Under each train-step table, XLA's cost analysis compares tlean's compiled program with raw JAX's "
        "(noise-free; a `lax.scan` body counts once).",
        "",
        "## Targets",
        "",
        "| target | measured | met |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in targets(tables)]
    lines += ["", "## Results", ""]
    for t in tables:
        lines += [table_markdown(t), ""]
    lines += first_steps(tables)
    if skipped:
        lines += ["## Not measured", ""] + [f"- {s}" for s in skipped] + [""]
    return "\n".join(lines)


# -- chart -----------------------------------------------------------------------------
def chart(tables: list[_common.Table], path: pathlib.Path) -> None:
    """Grouped bars of each framework's time relative to raw JAX, one group per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [t for t in tables if t.kind in ("train", "call")]
    if not shown:
        return
    frameworks = [f for f in _common.FRAMEWORKS if any(r.framework == f for t in shown for r in t.rows)]
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(shown), 4.2))
    width = 0.8 / len(frameworks)
    for i, fw in enumerate(frameworks):
        xs, ys = [], []
        for j, t in enumerate(shown):
            row = next((r for r in t.rows if r.framework == fw), None)
            if row is not None and row.ratio is not None:
                xs.append(j + (i - (len(frameworks) - 1) / 2) * width)
                ys.append(row.ratio)
        ax.bar(xs, ys, width, label=NAMES[fw])
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(shown)), [t.key for t in shown])
    ax.set_ylabel("time / raw JAX (log scale, lower is better)")
    ax.set_title("Train step (and tiny-model call) relative to hand-written JAX")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> str:
    """Run the benchmarks chosen by ``argv``; write and return the Markdown report."""
    args = parse(argv)
    _timing.use_clock(args.clock)
    info = _timing.machine()
    tables, skipped = run_models(args)
    text = report(tables, skipped, args, info)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "benchmarks.md").write_text(text)
    if not args.no_chart:
        chart(tables, out / "benchmarks.png")
    if args.markdown:
        pathlib.Path(args.markdown).write_text(text)
    print(text)
    return text


if __name__ == "__main__":
    main()
