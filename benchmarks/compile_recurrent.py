"""Compile time of a jitted forward+backward of the recurrent layers at two sequence lengths.

The time loop is ``lax.scan`` (RNN/GRU/LSTM, Mamba ``mode="sequential"``) or
``lax.associative_scan`` (Mamba ``mode="parallel"``), so compile time should not grow
with the sequence length (O(log seq) levels for the associative scan). Prints a table of
trace+lower and compile times (median of ``--repeats`` fresh jits) and the ratio of the
long to the short sequence.

    python benchmarks/compile_recurrent.py [--short 64] [--long 512] [--hidden 256] [--batch 16] [--only LSTM]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp

from tlean import layers as L


def compile_seconds(layer, seq: int, batch: int) -> tuple[float, float]:
    """(trace+lower, compile) seconds of a fresh ``jit(value_and_grad(sum of outputs))``."""
    params, state = layer.init(jax.random.key(0))
    x = jax.ShapeDtypeStruct((seq, batch, layer.input_size), jnp.float32)

    def loss(p, x):  # a fresh function each call: nothing is reused from a cache
        return jnp.sum(layer.apply(p, state, x)[0])

    step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
    t0 = time.perf_counter()
    lowered = step.lower(params, x)
    t1 = time.perf_counter()
    lowered.compile()
    return t1 - t0, time.perf_counter() - t1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", type=int, default=64)
    parser.add_argument("--long", type=int, default=512)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--input", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", nargs="*", help="layer names to run (default: all), e.g. LSTM 'Mamba (parallel)'")
    args = parser.parse_args()
    h, i = args.hidden, args.input
    layers = {
        "LSTM": L.LSTM(i, h),
        "GRU": L.GRU(i, h),
        "RNN": L.RNN(i, h),
        "LSTM x2 layers": L.LSTM(i, h, num_layers=2),
        "Mamba (parallel)": L.Mamba(i, h),
        "Mamba (sequential)": L.Mamba(i, h, mode="sequential"),
    }
    if args.only:
        layers = {name: layers[name] for name in args.only}
    print(
        f"jit(value_and_grad) compile time, hidden={h}, input={i}, batch={args.batch}, "
        f"median of {args.repeats}, backend={jax.default_backend()}, jax {jax.__version__}"
    )
    head = f"| layer | trace+lower {args.short} | compile {args.short} | trace+lower {args.long} | compile {args.long} | ratio total {args.long}/{args.short} |"
    print(head)
    print("|" + " --- |" * 6)
    times = {(name, seq): [] for name in layers for seq in (args.short, args.long)}
    for _ in range(args.repeats):  # interleaved, so drift in machine load hits both lengths alike
        for name, layer in layers.items():
            for seq in (args.short, args.long):
                times[name, seq].append(compile_seconds(layer, seq, args.batch))
    for name in layers:
        (ls, cs), (ll, cl) = (
            [statistics.median(ts) for ts in zip(*times[name, seq])] for seq in (args.short, args.long)
        )
        print(
            f"| {name} | {ls * 1e3:.0f} ms | {cs * 1e3:.0f} ms | {ll * 1e3:.0f} ms | {cl * 1e3:.0f} ms | {(ll + cl) / (ls + cs):.2f} |"
        )


if __name__ == "__main__":
    main()
