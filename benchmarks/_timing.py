"""Timing utilities shared by every benchmark: interleaved rounds, medians, paired ratios.

Every framework's step is wrapped as a zero-argument callable that runs one step and
returns what to block on. :func:`first_call` times the first call (trace + compile + one
run); :func:`interleave` then times all frameworks round by round, each round in a
rotated order, so that a slow patch of a shared machine hits every framework alike.
Ratios are taken within a round (paired) and the median over rounds is reported.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax

Call = Callable[[], Any]

#: The clock the timings read: wall time (``time.perf_counter``, the default), or the
#: process's CPU time (``time.process_time``, all threads), which a machine shared with
#: other busy processes disturbs less (``python -m benchmarks --clock cpu``).
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = time.perf_counter


def use_clock(name: str) -> None:
    """Time with the ``"wall"`` or ``"cpu"`` clock from now on."""
    global clock
    clock = CLOCKS[name]


def block(value: Any) -> Any:
    """Wait until every array in ``value`` is computed (JAX arrays and torch tensors alike)."""
    return jax.block_until_ready(value)


def first_call(call: Call) -> float:
    """Seconds taken by the first call of ``call``, blocking on its result (trace, compile, run)."""
    start = clock()
    block(call())
    return clock() - start


@dataclass
class Timing:
    """Per-round seconds per call for each framework, in the order the frameworks were given."""

    seconds: dict[str, list[float]] = field(default_factory=dict)

    def median(self, name: str) -> float:
        return statistics.median(self.seconds[name])

    def ratio(self, name: str, reference: str) -> float:
        """The median over rounds of ``name``'s time divided by ``reference``'s in the same round."""
        return statistics.median(a / b for a, b in zip(self.seconds[name], self.seconds[reference]))


def repeats_for(call: Call, seconds: float) -> int:
    """How many calls of ``call`` take about ``seconds`` (at least one), from one timed call."""
    start = clock()
    block(call())
    return max(1, round(seconds / max(clock() - start, 1e-9)))


def interleave(
    calls: dict[str, Call], rounds: int, inner: int | dict[str, int], warmup: int = 1, block_each: bool = False
) -> Timing:
    """Time each call ``inner`` times per round for ``rounds`` rounds, frameworks interleaved.

    Round ``r`` visits the frameworks starting from the ``r``-th (a rotation), so no
    framework always runs first or right after a particular other one. Each timed
    block ends with ``block_until_ready``, so asynchronous dispatch cannot hide work;
    with ``block_each`` every call is waited for (the latency of one call).
    ``inner`` may differ per framework (a dict), e.g. so that each block lasts about
    as long (:func:`repeats_for`); the result is always per call.
    """
    names = list(calls)
    inner = inner if isinstance(inner, dict) else dict.fromkeys(names, inner)
    for name in names:
        for _ in range(warmup):
            block(calls[name]())
    timing = Timing({name: [] for name in names})
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            call, n = calls[name], inner[name]
            start = clock()
            for _ in range(n):
                out = call()
                if block_each:
                    block(out)
            block(out)
            timing.seconds[name].append((clock() - start) / n)
    return timing


def interleave_latency(calls: dict[str, Call], rounds: int, inner: int | dict[str, int], warmup: int = 20) -> Timing:
    """As :func:`interleave`, but blocking after every call: the latency of one call."""
    return interleave(calls, rounds, inner, warmup, block_each=True)


def machine() -> dict[str, str]:
    """What the numbers were measured on: CPU, cores, JAX backend and library versions."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "jax": jax.__version__,
        "backend": f"{jax.default_backend()} ({jax.devices()[0].device_kind}, {jax.device_count()} device(s))",
    }
    for module in ("flax", "equinox", "optax", "torch"):
        try:
            info[module] = __import__(module).__version__
        except ImportError:
            info[module] = "not installed"
    return info
