"""Verification speed: tlean's jitted IBP, CROWN and alpha-CROWN against auto_LiRPA's, same weights and boxes.

The models are the auto_LiRPA fixtures' digits MLP 64-32-32-10 and CNN (Conv2d, BatchNorm2d,
ReLU, a residual BasicBlock, AvgPool2d, Linear; tests/verify/fixtures), the points the 360
test digits of scikit-learn's digits split (as tests/verify/make_fixtures.py), the boxes
L-infinity balls of radius 0.01 clipped to [0, 1], the spec the margins ``e_y - e_j``. Timed:
one whole certification of the 360 points (tlean: :func:`tlean.verify.certify`, jitted,
compiled first; auto_LiRPA: ``compute_bounds(x, method, C)`` on its BoundedModule, built
first), the median of ``rounds`` calls. alpha-CROWN runs 20 steps, lr 0.5, in both.

auto_LiRPA cannot be installed by CI; when it imports (its source on ``PYTHONPATH`` or in
``$AUTO_LIRPA_SRC``, as make_fixtures.py describes) its figures are measured and written to
``benchmarks/verify_autolirpa.json`` with the machine and the date; otherwise the recorded
figures from that file are shown beside tlean's, marked as recorded::

    PYTHONPATH=/tmp/auto_LiRPA python -m benchmarks.verify_crown [--quick] [--rounds 5]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import sys
import time

import numpy as np

from benchmarks import _common

ROOT = pathlib.Path(__file__).resolve().parents[1]
RECORD = ROOT / "benchmarks" / "verify_autolirpa.json"
FIXTURES = ROOT / "tests" / "verify" / "fixtures"
EPS = 0.01
STEPS, LR = 20, 0.5
METHODS = (("ibp", "IBP"), ("crown", "CROWN"), ("alpha-crown", "CROWN-Optimized"))
SHAPES = {"mlp": (64,), "cnn": (1, 8, 8)}
# tlean bounds the CNN in chunks: CROWN's intermediate bounds of its 8x8x8 pre-activations take
# 512 rows per example, too much memory for all 360 points at once on a small machine.
CHUNK = {"mlp": None, "cnn": 40}
LABELS = {"ibp": "IBP", "crown": "CROWN", "alpha-crown": "alpha-CROWN", "crown-sound": "CROWN, sound=True"}


def digits(n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The digits test split (360 points, inputs in [0, 1]) of make_fixtures.py."""
    sys.path.insert(0, str(ROOT))
    from tests.verify.make_fixtures import digits as split

    _, x, _, y = split()
    return x[:n], y[:n].astype(np.int32)


def weights(name: str) -> dict:
    data = np.load(FIXTURES / f"{name}.npz")
    return {k[2:]: data[k] for k in data.files if k.startswith("w:")}


def tlean_model(name: str):
    from tlean import nn
    from tlean.interop import load_torch_state_dict

    if name == "mlp":
        layer = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 10))
    else:
        layer = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.BasicBlock(8, 8),
            nn.AvgPool2d(2),
            nn.Flatten(),
            nn.Linear(8 * 4 * 4, 10),
        )
    return load_torch_state_dict(nn.run(0, layer), weights(name))


def _median_ms(call, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def time_tlean(name: str, x, y, rounds: int, methods=METHODS, sound: bool = False) -> dict:
    """``{method: {"ms", "compile_s", "certified"}}`` for tlean's jitted certify."""
    import jax
    import jax.numpy as jnp

    from tlean import verify

    model = tlean_model(name)
    xs, ys = jnp.asarray(x.reshape(len(x), *SHAPES[name])), jnp.asarray(y)
    out = {}
    size = CHUNK[name] or len(xs)
    for method, _ in methods:

        def call():
            certified = 0
            for i in range(0, len(xs), size):
                cert = verify.certify(
                    model,
                    xs[i : i + size],
                    ys[i : i + size],
                    EPS,
                    method=method,
                    clip=(0.0, 1.0),
                    steps=STEPS,
                    lr=LR,
                    sound=sound,
                )
                certified += jax.block_until_ready(cert).certified.sum()
            return certified

        start = time.perf_counter()
        cert = call()
        first = time.perf_counter() - start
        out[method] = {"ms": _median_ms(call, rounds), "compile_s": first, "certified": int(cert)}
    return out


def auto_lirpa_available() -> bool:
    src = os.environ.get("AUTO_LIRPA_SRC")
    if src and src not in sys.path:
        sys.path.insert(0, src)
    try:
        import auto_LiRPA  # noqa: F401
    except Exception:
        return False
    return True


def time_auto_lirpa(name: str, x, y, rounds: int) -> dict:
    """``{method: {"ms", "certified"}}`` for auto_LiRPA's compute_bounds on the same model and boxes."""
    import torch
    from auto_LiRPA import BoundedModule, BoundedTensor
    from auto_LiRPA.perturbations import PerturbationLpNorm

    from tests.verify import make_fixtures

    torch.set_num_threads(os.cpu_count() or 1)
    model = (make_fixtures.mlp() if name == "mlp" else make_fixtures.cnn()).eval()
    model.load_state_dict({k: torch.tensor(v) for k, v in weights(name).items()})
    xt = torch.tensor(x.reshape(len(x), *SHAPES[name]))
    lirpa = BoundedModule(model, torch.zeros_like(xt[:1]), device="cpu")
    box = PerturbationLpNorm(norm=np.inf, x_L=(xt - EPS).clamp(0, 1), x_U=(xt + EPS).clamp(0, 1))
    bx = BoundedTensor(xt, box)
    C = make_fixtures.margin_C(y)
    lirpa.set_bound_opts({"optimize_bound_args": {"iteration": STEPS, "lr_alpha": LR}})
    out = {}
    for method, theirs in METHODS:

        def call():
            return lirpa.compute_bounds(x=(bx,), method=theirs, C=C)[0]

        if theirs == "CROWN-Optimized":  # seconds a call: no warm-up, at most 2 rounds
            start = time.perf_counter()
            lb = call()
            times = [time.perf_counter() - start] + [_median_ms(call, 1) / 1e3 for _ in range(min(rounds, 2) - 1)]
            ms = 1e3 * float(np.median(times))
        else:
            lb = call()
            ms = _median_ms(call, rounds)
        out[method] = {"ms": ms, "certified": int((lb > 0).all(-1).sum())}
        print(f"[verify_crown] auto_LiRPA {name} {method}: {ms:.1f} ms", file=sys.stderr)
    return out


def machine() -> dict:
    import jax
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "jax": jax.__version__,
        "torch": torch.__version__,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def measure(quick: bool, rounds: int, models=("mlp", "cnn"), cnn_alpha: bool = True) -> dict:
    """Both sides' figures; auto_LiRPA's measured now (and recorded) or read from the record.

    ``quick`` (the harness smoke test): 8 points, CROWN only, auto_LiRPA never run.
    ``cnn_alpha=False`` leaves out the CNN's alpha-CROWN (minutes per call on two cores).
    """
    x, y = digits(8 if quick else None)
    result = {"points": len(x), "eps": EPS, "tlean": {}, "auto_LiRPA": {}, "auto_LiRPA_source": "recorded"}
    for name in models:
        methods = METHODS[1:2] if quick else METHODS if name != "cnn" or cnn_alpha else METHODS[:2]
        result["tlean"][name] = time_tlean(name, x, y, rounds, methods)
        if not quick and name == "mlp":
            result["tlean"][name]["crown-sound"] = time_tlean(name, x, y, rounds, METHODS[1:2], sound=True)["crown"]
    if not quick and auto_lirpa_available():
        result["auto_LiRPA"] = {name: time_auto_lirpa(name, x, y, rounds) for name in models}
        result["auto_LiRPA_source"] = "measured"
        if not quick:  # merged per model into the record
            record = json.loads(RECORD.read_text()) if RECORD.exists() else {"tlean": {}, "auto_LiRPA": {}}
            record.update({"machine": machine(), "points": len(x), "eps": EPS, "steps": STEPS, "rounds": rounds})
            record["tlean"].update(result["tlean"])
            record["auto_LiRPA"].update(result["auto_LiRPA"])
            RECORD.write_text(json.dumps(record, indent=1) + "\n")
    elif RECORD.exists():
        record = json.loads(RECORD.read_text())
        result["auto_LiRPA"] = record["auto_LiRPA"] if record.get("points") == len(x) else {}
        result["record_machine"] = record["machine"]
    return result


def table(result: dict) -> _common.Table:
    """A ``kind="verify"`` table: ``seconds`` tlean's, ``first_call`` auto_LiRPA's, ``ratio`` theirs / ours,
    ``loss0`` the certified counts ("tlean / auto_LiRPA")."""
    rows = []
    for name, methods in result["tlean"].items():
        for method, mine in methods.items():
            theirs = result["auto_LiRPA"].get(name, {}).get(method)
            label = f"{name.upper()}, {LABELS[method]}"
            a_ms = theirs["ms"] if theirs else None
            counts = f"{mine['certified']} / {theirs['certified']}" if theirs else f"{mine['certified']}"
            rows.append(
                _common.Row(
                    label, mine["ms"] / 1e3, a_ms / mine["ms"] if a_ms else None, a_ms / 1e3 if a_ms else None, counts
                )
            )
    source = result["auto_LiRPA_source"]
    notes = [
        f"{result['points']} digits, L-inf eps {result['eps']} clipped to [0, 1], margins e_y - e_j; "
        f"median wall time of one jitted certification; alpha-CROWN {STEPS} steps. auto_LiRPA 0.7.1: {source}"
        + (
            f" on {result['record_machine']['cpu']}, {result['record_machine']['date']}"
            if source == "recorded" and "record_machine" in result
            else ""
        )
    ]
    title = f"Verification: certify {result['points']} digits (tlean jitted vs auto_LiRPA)"
    return _common.Table("verify", title, "ms", rows, notes, kind="verify")


def run(quick: bool, rounds: int, frameworks=None) -> list[_common.Table]:
    """The harness entry (``python -m benchmarks --models verify``): at most 3 rounds, and the CNN
    without alpha-CROWN (``python -m benchmarks.verify_crown --models cnn`` times it)."""
    models = ("mlp",) if quick else ("mlp", "cnn")
    return [table(measure(quick, min(max(rounds, 1), 3), models, cnn_alpha=False))]


def markdown(t: _common.Table) -> str:
    lines = [
        f"### {t.title}",
        "",
        "| model, method | tlean (ms) | auto_LiRPA (ms) | auto_LiRPA / tlean | certified (tlean / auto_LiRPA) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for r in t.rows:
        theirs = f"{r.first_call * 1e3:.1f}" if r.first_call else ""
        ratio = f"{r.ratio:.2f}" if r.ratio else ""
        lines.append(f"| {r.framework} | {r.seconds * 1e3:.1f} | {theirs} | {ratio} | {r.loss0} |")
    return "\n".join(lines + [""] + t.notes)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.verify_crown", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="8 points, the MLP's CROWN only, auto_LiRPA not run")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--models", default="mlp,cnn", help="comma-separated subset of mlp,cnn")
    args = parser.parse_args(argv)
    models = ("mlp",) if args.quick else tuple(m for m in args.models.split(",") if m)
    print(markdown(table(measure(args.quick, args.rounds, models))))


if __name__ == "__main__":
    main()
