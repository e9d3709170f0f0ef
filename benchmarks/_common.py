"""What every model benchmark shares: data, the optimiser, the loss, weight copying, and the
loop that compiles, times and tabulates one model in every framework.

Every framework trains the same model from the same initial values: the tlean model is
built first and its weights are copied into the others (transposed where flax stores
``kernel [in, out]``), so the first loss agrees across frameworks, which
:func:`train_step_table` records as a check that the models really are the same.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks import _timing

LEARNING_RATE = 1e-3
REFERENCE = "raw"
COPY = "raw-copy"  # the reference built and timed a second time, to show the measurement noise
FRAMEWORKS = ("tlean", "raw", "nnx", "linen", "equinox", "torch")
BLOCK_SECONDS = 0.3  # each framework's timed block per round lasts about this long


def optimizer() -> optax.GradientTransformation:
    """Adam, the same in every JAX framework (torch uses ``torch.optim.Adam`` with the same defaults)."""
    return optax.adam(LEARNING_RATE)


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy over integer labels, in float32."""
    return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels).mean()


def batch(shape: tuple[int, ...], classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A fixed random batch: float32 inputs of ``shape`` and integer labels in ``[0, classes)``."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape, dtype=np.float32)
    y = rng.integers(0, classes, size=(shape[0],)).astype(np.int32)
    return x, y


def to_numpy(tree: Any) -> Any:
    """Every leaf as a float32 NumPy array (to copy weights between frameworks)."""
    return jax.tree.map(lambda a: np.asarray(a, dtype=np.float32), tree)


def jax_stepper(step: Callable, state: tuple, *data: Any, jit: Callable = jax.jit) -> _timing.Call:
    """A zero-argument call running ``state = step(*state, *data)[:-1]`` and returning the loss.

    ``step(*state, *data) -> (*new_state, loss)`` is compiled once with ``jit``; the
    state is carried between calls in a closure, as a training loop carries it.
    """
    compiled = jit(step)
    data = tuple(jnp.asarray(d) for d in data)
    box = [tuple(state)]

    def call():
        *new_state, loss = compiled(*box[0], *data)
        box[0] = tuple(new_state)
        return loss

    if hasattr(compiled, "lower"):
        call.cost = lambda: cost(compiled.lower(*box[0], *data).compile())
    return call


def tlean_step(tx: optax.GradientTransformation) -> Callable:
    """tlean's train step ``(model, opt_state, x, y) -> (model, opt_state, loss)``, as
    :mod:`tlean.train` does it: differentiate ``model.params``, update them with ``tx``.

    A new closure on every call, so a fresh ``jax.jit`` of it shares no cache."""

    def step(model, opt_state, x, y):
        def loss_fn(params):
            return cross_entropy(model.replace(params=params)(x), y)

        value, grads = jax.value_and_grad(loss_fn)(model.params)
        updates, opt_state = tx.update(grads, opt_state, model.params)
        return model.replace(params=optax.apply_updates(model.params, updates)), opt_state, value

    return step


def tlean_stepper(model: Any, tx: optax.GradientTransformation, x: Any, y: Any) -> _timing.Call:
    """:func:`jax_stepper` of :func:`tlean_step` for a stateless tlean Model."""
    return jax_stepper(tlean_step(tx), (model, tx.init(model.params)), x, y)


def pure_stepper(forward: Callable, params: Any, tx: optax.GradientTransformation, x: Any, y: Any) -> _timing.Call:
    """:func:`jax_stepper` for a stateless model given as ``forward(params, x) -> logits``
    (raw JAX, flax.linen): one jitted step of loss, gradient and ``tx``'s update."""

    def step(params, opt_state, x, y):
        value, grads = jax.value_and_grad(lambda p: cross_entropy(forward(p, x), y))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    return jax_stepper(step, (params, tx.init(params)), x, y)


def nnx_stepper(model: Any, tx: optax.GradientTransformation, x: Any, y: Any) -> _timing.Call:
    """A zero-argument call running one ``nnx.jit`` training step of a flax.nnx model with
    ``nnx.Optimizer``, as flax's documentation teaches, and returning the loss."""
    from flax import nnx

    opt = nnx.Optimizer(model, tx, wrt=nnx.Param)

    @nnx.jit
    def step(model, opt, x, y):
        value, grads = nnx.value_and_grad(lambda m: cross_entropy(m(x), y))(model)
        opt.update(model, grads)
        return value

    data = jnp.asarray(x), jnp.asarray(y)
    return lambda: step(model, opt, *data)


def equinox_stepper(model: Any, tx: optax.GradientTransformation, x: Any, y: Any, in_axes: int = 0) -> _timing.Call:
    """A zero-argument call running one ``eqx.filter_jit`` training step of a stateless
    equinox model, vmapped over the batch axis ``in_axes`` as equinox teaches, and
    returning the loss."""
    import equinox as eqx

    @eqx.filter_jit
    def step(model, opt_state, x, y):
        value, grads = eqx.filter_value_and_grad(lambda m: cross_entropy(jax.vmap(m, in_axes=in_axes)(x), y))(model)
        updates, opt_state = tx.update(grads, opt_state, eqx.filter(model, eqx.is_array))
        return eqx.apply_updates(model, updates), opt_state, value

    return jax_stepper(step, (model, tx.init(eqx.filter(model, eqx.is_array))), x, y, jit=lambda f: f)


def cost(compiled: Any) -> tuple[float, float]:
    """``(flops, bytes accessed)`` of a compiled XLA program, from XLA's cost analysis."""
    analysis = compiled.cost_analysis()
    analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
    return float(analysis.get("flops", float("nan"))), float(analysis.get("bytes accessed", float("nan")))


def torch_stepper(module: Any, x: np.ndarray, y: np.ndarray, loss_fn: Callable | None = None) -> _timing.Call:
    """A zero-argument call running one eager PyTorch training step (Adam) and returning the loss."""
    import torch

    opt = torch.optim.Adam(module.parameters(), lr=LEARNING_RATE)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y).long()
    loss_fn = loss_fn or torch.nn.functional.cross_entropy
    module.train()

    def call():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(module(tx), ty)
        loss.backward()
        opt.step()
        return loss.detach()

    return call


@dataclass
class Row:
    """One framework's figures for one benchmark."""

    framework: str
    seconds: float  # median seconds per step (or per call)
    ratio: float | None  # median paired ratio against the reference
    first_call: float | None = None  # seconds of the first call: trace + compile + one step
    loss0: float | None = None  # the first loss, to check that the models agree
    extra: dict = field(default_factory=dict)  # further figures of the first-model, generate and load tables


@dataclass
class Table:
    """The result of one benchmark: a title, what was measured, and one row per framework."""

    key: str
    title: str
    unit: str  # "ms" or "us"
    rows: list[Row]
    notes: list[str] = field(default_factory=list)
    kind: str = "train"  # "train", "call", "compile", "first_model", "generate", "load" or "verify"

    def row(self, framework: str) -> Row:
        return next(r for r in self.rows if r.framework == framework)


def train_step_table(
    key: str,
    title: str,
    setups: dict[str, Callable[[], _timing.Call]],
    rounds: int,
    quick: bool,
    notes: list[str] | None = None,
) -> Table:
    """Build, compile and time every framework's train step for one model.

    Each setup builds its model and returns a call that runs one step and returns the
    loss. The first call is timed on its own (trace + compile + one step); then all
    frameworks are timed interleaved (:func:`_timing.interleave`), each round running
    every framework's step for about :data:`BLOCK_SECONDS` (one step when ``quick``).
    """
    calls, first, loss0 = {}, {}, {}
    if REFERENCE in setups:  # a second, independent copy of the reference: its ratio is the noise floor
        setups = {**setups, COPY: setups[REFERENCE]}
    for name, setup in setups.items():
        call = setup()
        start = _timing.clock()
        loss = _timing.block(call())
        first[name] = _timing.clock() - start
        loss0[name] = float(np.asarray(loss))
        calls[name] = call
    notes = list(notes or [])
    if REFERENCE in loss0:
        differ = {k: v for k, v in loss0.items() if abs(v - loss0[REFERENCE]) > 1e-4 * max(1.0, abs(loss0[REFERENCE]))}
        if differ:
            notes.append(
                f"**Warning: the first losses differ from raw JAX's ({loss0[REFERENCE]:.6f}): {differ}; "
                "the frameworks are not training the same model.**"
            )
    if "tlean" in calls and REFERENCE in calls and hasattr(calls["tlean"], "cost"):
        (f_t, b_t), (f_r, b_r) = calls["tlean"].cost(), calls[REFERENCE].cost()
        notes.insert(
            0,
            f"XLA's cost analysis of the compiled steps, tlean / raw JAX: {f_t / f_r:.4f} x the flops, "
            f"{b_t / b_r:.4f} x the bytes accessed.",
        )
    inner = {name: 1 if quick else _timing.repeats_for(call, BLOCK_SECONDS) for name, call in calls.items()}
    timing = _timing.interleave(calls, rounds=rounds, inner=inner)
    rows = []
    for name in setups:
        ratio = timing.ratio(name, REFERENCE) if REFERENCE in setups else None
        rows.append(Row(name, timing.median(name), ratio, first[name], loss0[name]))
    return Table(key, title, "ms", rows, notes)
