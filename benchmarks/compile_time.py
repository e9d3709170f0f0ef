"""Compile time against depth and sequence length: the scanned TransformerEncoder at depth 4
and 16, the LSTM at sequence length 64 and 512 (tlean's train step, forward + backward + Adam).

Each figure is the median over repeats of tracing, lowering and compiling a fresh
``jax.jit`` of the step (a new function object every time, so no cache is reused); the
repeats are interleaved across configurations. An unrolled encoder (``scan=False``) is
compiled once for contrast: its compile time grows with depth.
"""

from __future__ import annotations

import statistics

import jax
import jax.numpy as jnp

from benchmarks import _common, _timing
from benchmarks import lstm as lstm_bench
from benchmarks import transformer as transformer_bench


def _transformer(layers: int, scan: bool, quick: bool):
    from tlean import nn

    s = dict(transformer_bench.sizes(quick), layers=layers)
    model = nn.run(0, transformer_bench.tlean_builder(s, scan=scan))
    x, y = _common.batch((s["batch"], s["seq"], s["d"]), transformer_bench.CLASSES)
    return model, x, y


def _lstm(seq: int, quick: bool):
    from tlean import nn

    s = dict(lstm_bench.sizes(quick), seq=seq)
    model = nn.run(0, lstm_bench.tlean_builder(s))
    x, y = _common.batch((s["seq"], s["batch"], s["input"]), lstm_bench.CLASSES)
    return model, x, y[: s["batch"]]


def compile_seconds(model, x, y) -> float:
    """Seconds to trace, lower and compile a fresh jit of tlean's train step for ``model``."""
    tx = _common.optimizer()
    step = _common.tlean_step(tx)  # a new closure: nothing cached from earlier calls
    args = (model, tx.init(model.params), jnp.asarray(x), jnp.asarray(y))
    start = _timing.clock()
    jax.jit(step).lower(*args).compile()
    return _timing.clock() - start


def _table(key: str, title: str, configs: dict, repeats: int, contrast: dict | None = None) -> _common.Table:
    """Interleaved repeats of each configuration; ``contrast`` configurations are compiled once."""
    built = {label: make() for label, make in configs.items()}
    times = {label: [] for label in configs}
    for _ in range(repeats):
        for label, (model, x, y) in built.items():
            times[label].append(compile_seconds(model, x, y))
    for label, make in (contrast or {}).items():
        times[label] = [compile_seconds(*make())]
    medians = {label: statistics.median(ts) for label, ts in times.items()}
    first = next(iter(medians.values()))
    rows = [_common.Row(label, seconds, seconds / first) for label, seconds in medians.items()]
    return _common.Table(
        key,
        title,
        "s",
        rows,
        kind="compile",
        notes=[f"Median of {repeats} fresh compilations of tlean's jitted train step."],
    )


def run(quick: bool, rounds: int, frameworks) -> list[_common.Table]:
    repeats = 1 if quick else 3
    shallow, deep = (1, 4) if quick else (4, 16)
    short, long = (6, 48) if quick else (64, 512)
    transformer = _table(
        "compile-transformer",
        f"Compile time: TransformerEncoder train step, depth {shallow} vs {deep}",
        {
            f"depth {shallow}, scan": lambda: _transformer(shallow, True, quick),
            f"depth {deep}, scan": lambda: _transformer(deep, True, quick),
        },
        repeats,
        contrast={f"depth {deep}, unrolled (scan=False), compiled once": lambda: _transformer(deep, False, quick)},
    )
    lstm = _table(
        "compile-lstm",
        f"Compile time: LSTM train step, sequence length {short} vs {long}",
        {f"seq {short}": lambda: _lstm(short, quick), f"seq {long}": lambda: _lstm(long, quick)},
        repeats,
    )
    return [transformer, lstm]
