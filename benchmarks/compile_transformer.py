"""Compile time of a jitted TransformerEncoder train step against depth: scanned vs unrolled.

    python -m benchmarks.compile_transformer [--repeats 3] [--depths 4 16]

The step is forward + backward + an SGD update of a TransformerEncoder (d_model 256, 4 heads,
feed-forward 1024, sequence 128, batch 8) with a mean-pooled linear readout. Each figure is
the median over repeats of tracing, lowering and compiling a fresh ``jax.jit`` of a new
closure (nothing is reused from an earlier compilation), the repeats interleaved across
configurations so a busy patch of a shared machine hits them alike. Parameters are abstract
(``jax.eval_shape``): nothing is initialised or run. The claim checked is that the scanned
stack's compile time does not grow with depth (ratio depth 16 / depth 4 <= 1.5); the unrolled
stack (``scan=False``) is there for contrast.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import jax
import jax.numpy as jnp

from tlean import layers as L

D_MODEL, HEADS, FFN, SEQ, BATCH, CLASSES = 256, 4, 1024, 128, 8, 10


def abstract_inputs(depth: int, scan: bool):
    """The encoder, its abstract params, a readout's and a batch, as ShapeDtypeStructs."""
    encoder = L.TransformerEncoder.of(depth, D_MODEL, HEADS, FFN, dropout=0.1, scan=scan)
    readout = L.Linear(D_MODEL, CLASSES)
    params = jax.eval_shape(lambda k: (encoder.init(k)[0], readout.init(k)[0]), jax.random.key(0))
    x = jax.ShapeDtypeStruct((BATCH, SEQ, D_MODEL), jnp.float32)
    y = jax.ShapeDtypeStruct((BATCH,), jnp.int32)
    return encoder, readout, params, x, y


def make_step(encoder: L.TransformerEncoder, readout: L.Linear):
    """A fresh train step closure: cross-entropy of the pooled encoding, its gradient, an SGD update."""

    def loss(params, x, y, key):
        h, _ = encoder.apply(params[0], {}, x, key=key, train=True)
        logits, _ = readout.apply(params[1], {}, h.mean(axis=1))
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))

    def step(params, x, y, key):
        value, grads = jax.value_and_grad(loss)(params, x, y, key)
        return jax.tree.map(lambda p, g: p - 1e-3 * g, params, grads), value

    return step


def compile_seconds(depth: int, scan: bool) -> tuple[float, float]:
    """(trace + lower seconds, XLA compile seconds) of a fresh jit of the step."""
    encoder, readout, params, x, y = abstract_inputs(depth, scan)
    key = jax.eval_shape(lambda: jax.random.key(0))
    start = time.perf_counter()
    lowered = jax.jit(make_step(encoder, readout)).lower(params, x, y, key)
    traced = time.perf_counter()
    lowered.compile()
    return traced - start, time.perf_counter() - traced


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--depths", type=int, nargs=2, default=(4, 16))
    args = parser.parse_args()
    shallow, deep = args.depths
    configs = [(shallow, True), (deep, True), (shallow, False), (deep, False)]
    compile_seconds(1, True)  # warm JAX up (first-use costs) before timing anything
    times: dict = {c: [] for c in configs}
    for _ in range(args.repeats):
        for config in configs:
            times[config].append(compile_seconds(*config))
    median = {c: tuple(statistics.median(t[i] for t in ts) for i in range(2)) for c, ts in times.items()}
    print(
        f"TransformerEncoder train step (fwd+bwd+SGD), d_model {D_MODEL}, {HEADS} heads, ffn {FFN}, "
        f"seq {SEQ}, batch {BATCH}; median of {args.repeats} fresh compilations"
    )
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, {platform.processor() or platform.machine()}")
    print(
        f"{'stack':<10} {'depth':>5} {'trace+lower s':>14} {'compile s':>10} {'total s':>8} {'vs depth ' + str(shallow):>11}"
    )
    for scan in (True, False):
        base = sum(median[(shallow, scan)])
        for depth in (shallow, deep):
            lower, comp = median[(depth, scan)]
            label = "scan" if scan else "unrolled"
            print(
                f"{label:<10} {depth:>5} {lower:>14.2f} {comp:>10.2f} {lower + comp:>8.2f} {(lower + comp) / base:>10.2f}x"
            )
    ratio = sum(median[(deep, True)]) / sum(median[(shallow, True)])
    print(
        f"scanned depth {deep} / depth {shallow}: {ratio:.2f}x (target <= 1.5x): {'OK' if ratio <= 1.5 else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
