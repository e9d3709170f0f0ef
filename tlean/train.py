"""Training: a ``TrainState`` pytree, a jitted train step that compiles once, ``evaluate`` and ``fit``.

Losses and optimisers come from optax. One function describes the objective and is
used both for training and for evaluation::

    def loss_fn(model, batch, *, key, train):
        x, labels = batch
        logits, model = model.forward(x, key=key, train=train)    # BatchNorm state threads through
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        return loss, (model, {"accuracy": jnp.mean(logits.argmax(-1) == labels)})

It returns ``(loss, (model, metrics))``: the scalar loss, the model with its updated
state (BatchNorm running statistics; unchanged when ``train=False``) and a dict of
scalar metrics. :func:`classification_loss` is this function, ready made.

>>> import jax, jax.numpy as jnp, optax
>>> from tlean import nn, train
>>> model = nn.run(0, nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)))
>>> optimizer = optax.adam(1e-2)
>>> state = train.TrainState.create(model, optimizer, key=1)
>>> step = train.make_train_step(train.classification_loss, optimizer)
>>> batch = (jnp.ones((16, 4)), jnp.zeros((16,), jnp.int32))
>>> state, metrics = step(state, batch)
>>> int(state.step), sorted(metrics)
(1, ['accuracy', 'loss'])
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import shutil
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from tlean._model import Model, combine
from tlean.seed import as_key

__all__ = [
    "CheckpointConfig",
    "EvalConfig",
    "History",
    "LogConfig",
    "Minibatches",
    "TrainState",
    "classification_loss",
    "eval_batches",
    "evaluate",
    "fit",
    "latest_checkpoint",
    "make_train_step",
]

LossFn = Callable[..., tuple[jax.Array, tuple[Model, dict]]]


@functools.partial(jax.tree_util.register_dataclass, data_fields=["model", "opt_state", "step", "key"], meta_fields=[])
@dataclasses.dataclass(frozen=True)
class TrainState:
    """Everything a training run carries from step to step, as one pytree.

    Attributes:
      model: the :class:`tlean.Model` (params and state, e.g. BatchNorm statistics).
      opt_state: the optax optimiser state of ``model.params``.
      step: the number of steps taken, an int32 scalar array.
      key: the PRNG key the train step splits a fresh dropout key from at every step.

    It is a pytree (key paths ``model.params.0.weight``, ``opt_state...``, ``step``,
    ``key``), so it passes through ``jax.jit`` and :mod:`tlean.checkpoint` saves and
    restores it whole.

    Donation: the train step of :func:`make_train_step` donates the state it is given
    (its buffers are reused for the new state, so a state passed to ``step`` must not
    be used again). :meth:`create` copies the model's arrays, so the model you passed
    in stays usable after any number of steps; :func:`fit` copies the state it is
    given, so that state stays usable too.
    """

    model: Model
    opt_state: Any
    step: jax.Array
    key: jax.Array

    @classmethod
    def create(cls, model: Model, optimizer: optax.GradientTransformation, *, key: Any = 0) -> TrainState:
        """A fresh state at step 0.

        The state holds copies of ``model``'s arrays (and of ``key``), so the train
        step, which donates the state's buffers, never deletes arrays the caller still
        holds: ``model`` stays usable. (The copy costs one model's memory until the
        caller drops ``model``.)

        Args:
          model: the model to train.
          optimizer: the optax transformation; its state is ``optimizer.init`` of the
            trainable params (never the model's state, nor the params its ``frozen``
            filter names: they have no optimiser state).
          key: seed of the dropout keys (an int or a JAX key). Use a key of its own, not
            the one the model was initialised from.
        """
        if not isinstance(model, Model):
            raise TypeError(f"TrainState.create takes a tlean Model, got {type(model).__name__}")
        model = _copy(model)
        opt_state = _copy_aliases(optimizer.init(model.partition()[0]), jax.tree.leaves(model))
        return cls(model, opt_state, jnp.zeros((), jnp.int32), _copy(as_key(key)))

    def replace(self, **fields: Any) -> TrainState:
        """A copy with some fields replaced."""
        return dataclasses.replace(self, **fields)

    def shardings(self, rules: Any, mesh: Any, optimizer: optax.GradientTransformation) -> TrainState:
        """The state's layout on ``mesh`` (a TrainState of ``NamedSharding``\\ s, for
        :func:`tlean.parallel.shard_step`): the model by the sharding ``rules``, the optimiser
        state like the params it mirrors, the step count and key replicated. The state may be
        abstract (``jax.eval_shape``)."""
        from tlean import parallel

        model = parallel.param_shardings(self.model, rules, mesh)
        trainable = jax.tree.map(
            lambda s, t: None if t is None else s, model.params, self.model.partition()[0], is_leaf=lambda v: v is None
        )
        whole = parallel.replicated(mesh)
        return self.replace(
            model=model,
            opt_state=parallel.opt_state_shardings(optimizer, self.opt_state, trainable, mesh),
            step=whole,
            key=whole,
        )

    @classmethod
    def create_sharded(
        cls, builder: Any, seed: Any, optimizer: optax.GradientTransformation, rules: Any, mesh: Any, *, key: Any = 0
    ) -> TrainState:
        """``TrainState.create(nn.run(seed, builder), optimizer, key=key)``, built directly sharded.

        As :func:`tlean.parallel.init_sharded`: the model and the optimiser state are
        computed under ``jax.jit`` with ``out_shardings`` (:meth:`shardings`) and never
        materialised on one device; the values equal the unsharded ones bit for bit.
        """
        from tlean.seed import run

        build = lambda k, dk: cls.create(run(k, builder), optimizer, key=dk)
        seed_key, dropout_key = as_key(seed), as_key(key)
        shardings = jax.eval_shape(build, seed_key, dropout_key).shardings(rules, mesh, optimizer)
        return jax.jit(build, out_shardings=shardings)(seed_key, dropout_key)


def _copy(tree: Any) -> Any:
    """``tree`` with every JAX array copied (each occurrence its own buffer), so donating it
    deletes nothing the caller holds; NumPy arrays and Python values are left as they are
    (jit copies them to the device anyway)."""
    return jax.tree.map(lambda x: jnp.copy(x) if isinstance(x, jax.Array) else x, tree)


def _copy_aliases(tree: Any, taken: list) -> Any:
    """``tree`` with a copy of every JAX array that is also in ``taken`` or earlier in ``tree``: a
    donated pytree must not hold one buffer twice (an optimiser state may hold the params themselves)."""
    seen = {id(x) for x in taken}

    def own(x):
        if isinstance(x, jax.Array) and id(x) in seen:
            return jnp.copy(x)
        seen.add(id(x))
        return x

    return jax.tree.map(own, tree)


def _optimizer_structure(tree: Any) -> str:
    """The optimiser-state types in ``tree``, e.g. ``(ScaleByAdamState, EmptyState)``."""
    if hasattr(tree, "_fields"):  # optax states are NamedTuples
        return type(tree).__name__
    if isinstance(tree, (tuple, list)):
        return "(" + ", ".join(_optimizer_structure(t) for t in tree) + ("," if len(tree) == 1 else "") + ")"
    if isinstance(tree, dict):
        return "{" + ", ".join(f"{k!r}: {_optimizer_structure(v)}" for k, v in tree.items()) + "}"
    return type(tree).__name__


def _check_state(state: Any, where: str) -> None:
    if not isinstance(state, TrainState):
        raise TypeError(f"{where} takes a TrainState (TrainState.create(model, optimizer)), got {type(state).__name__}")


def _check_opt_state(optimizer: optax.GradientTransformation, params: Any, opt_state: Any) -> None:
    """Raise, naming ``opt_state``, unless it has the structure, shapes and dtypes of ``optimizer.init(params)``."""
    want = jax.eval_shape(optimizer.init, params)
    if jax.tree.structure(want) != jax.tree.structure(opt_state):
        raise TypeError(
            f"opt_state does not come from this optimizer and model: optimizer.init(model.params) gives "
            f"{_optimizer_structure(want)} with {len(jax.tree.leaves(want))} arrays, the state holds "
            f"{_optimizer_structure(opt_state)} with {len(jax.tree.leaves(opt_state))} arrays. Build the state "
            "with TrainState.create(model, optimizer) using the optimizer given here"
        )
    wrong = []
    for (path, w), g in zip(jax.tree_util.tree_flatten_with_path(want)[0], jax.tree.leaves(opt_state)):
        if (tuple(w.shape), jnp.dtype(w.dtype)) != (tuple(jnp.shape(g)), jnp.result_type(g)):
            wrong.append(
                f"opt_state{jax.tree_util.keystr(path)}: expected {jnp.dtype(w.dtype).name}{list(w.shape)}, "
                f"got {jnp.result_type(g).name}{list(jnp.shape(g))}"
            )
    if wrong:
        more = f" (and {len(wrong) - 5} more)" if len(wrong) > 5 else ""
        raise ValueError(
            "opt_state does not match the model's params (was it made for another model?): "
            + "; ".join(wrong[:5])
            + more
        )


def classification_loss(model: Model, batch: tuple, *, key: jax.Array | None, train: bool):
    """Softmax cross-entropy of integer labels, with accuracy as a metric.

    ``batch`` is ``(inputs, labels)``; the model maps inputs to logits ``[..., classes]``
    and ``labels`` are integers of shape ``[...]`` (so it serves per-token language
    modelling too). The loss is the mean over all label positions, computed in float32.

    Returns:
      ``(loss, (model, {"accuracy": ...}))``, the model carrying its updated state.
    """
    inputs, labels = batch
    logits, model = model.forward(inputs, key=key, train=train)
    logits = logits.astype(jnp.float32)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    accuracy = jnp.mean((jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32))
    return loss, (model, {"accuracy": accuracy})


def _signature(tree: Any) -> tuple:
    return jax.tree.structure(tree), tuple((jnp.shape(x), jnp.result_type(x)) for x in jax.tree.leaves(tree))


def _call_loss(loss_fn: LossFn, model: Model, batch: Any, key: jax.Array | None, train: bool):
    out = loss_fn(model, batch, key=key, train=train)
    if not (
        isinstance(out, tuple)
        and len(out) == 2
        and isinstance(out[1], tuple)
        and len(out[1]) == 2
        and isinstance(out[1][0], Model)
        and isinstance(out[1][1], dict)
    ):
        raise TypeError(
            f"loss_fn must return (loss, (model, metrics)) with the model from model.forward(...) and a dict of "
            f"scalar metrics, got {jax.tree.map(lambda x: getattr(x, 'shape', x), out)!r}"
        )
    loss, (new_model, metrics) = out
    if jnp.shape(loss) != ():
        raise TypeError(f"loss_fn must return a scalar loss, got shape {jnp.shape(loss)}: reduce it (e.g. .mean())")
    if new_model.layer != model.layer:
        raise TypeError(
            f"loss_fn returned a model of a different layer ({new_model.layer!r}, expected {model.layer!r}): "
            "return the model that model.forward(...) gave back"
        )
    if _signature(new_model.state) != _signature(model.state):
        raise TypeError(
            "loss_fn returned a model whose state changed structure, shape or dtype; the train step would "
            f"recompile at every step. Before: {_signature(model.state)[1]}, after: {_signature(new_model.state)[1]}"
        )
    for name, value in metrics.items():
        if jnp.shape(value) != ():
            raise TypeError(f"metric {name!r} must be a scalar, got shape {jnp.shape(value)}")
    return loss, new_model, metrics


def make_train_step(loss_fn: LossFn, optimizer: optax.GradientTransformation, *, donate: bool = True):
    """A jitted ``step(state, batch) -> (state, metrics)``: one optimiser update.

    The step splits ``state.key`` into the next state's key and this step's dropout
    key, calls ``loss_fn(model, batch, key=dropout_key, train=True)``, differentiates
    the loss with respect to ``model.params`` only (its trainable partition: the leaves
    its ``frozen`` filter names pass through unchanged; the model's state, which may hold
    integers such as ``num_batches_tracked``, is carried through as ``loss_fn``
    returned it), applies the optax update and increments ``state.step``.

    The state's buffers are donated (``donate=True``): the input state must not be
    used after the call (the model given to :meth:`TrainState.create` is a separate
    copy and stays usable). ``state.opt_state`` must come from ``optimizer`` and this
    model: anything else is an error naming ``opt_state`` at trace time. The
    returned state has exactly the structure, shapes and dtypes of the input, so the
    step compiles once and never again for batches of the same shape (a test counts
    traces). ``loss_fn`` must not change the model's
    layer or the structure of its state: that is a ``TypeError`` at trace time.

    Args:
      loss_fn: ``loss_fn(model, batch, *, key, train) -> (loss, (model, metrics))``.
      optimizer: the optax transformation the state's ``opt_state`` came from.
      donate: donate the input state's buffers to the output (saves memory).

    Returns:
      The jitted step. ``metrics`` holds ``"loss"`` and the metrics of ``loss_fn`` as
      float32 scalars (device arrays: fetching them waits for the step).
    """

    def step(state: TrainState, batch: Any):
        _check_state(state, "the train step")
        next_key, dropout_key = jax.random.split(state.key)
        model = state.model
        trainable, frozen = model.partition()  # only the trainable partition is differentiated and optimised
        _check_opt_state(optimizer, trainable, state.opt_state)

        def objective(trainable):
            params = combine(trainable, frozen)
            loss, new_model, metrics = _call_loss(loss_fn, model.replace(params=params), batch, dropout_key, True)
            return loss, (new_model.state, metrics)

        (loss, (new_model_state, metrics)), grads = jax.value_and_grad(objective, has_aux=True)(trainable)
        updates, opt_state = optimizer.update(grads, state.opt_state, trainable)
        params = combine(optax.apply_updates(trainable, updates), frozen)
        metrics = {"loss": loss, **metrics}
        new_state = TrainState(model.replace(params=params, state=new_model_state), opt_state, state.step + 1, next_key)
        return new_state, {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}

    return jax.jit(step, donate_argnums=(0,) if donate else ())


@functools.lru_cache(maxsize=64)
def _eval_step(loss_fn: LossFn):
    def step(model: Model, batch: Any):
        loss, _, metrics = _call_loss(loss_fn, model, batch, None, False)
        return {k: jnp.asarray(v, jnp.float32) for k, v in {"loss": loss, **metrics}.items()}

    return jax.jit(step)


def _batch_size(batch: Any) -> int:
    leaves = jax.tree.leaves(batch)
    if not leaves or jnp.ndim(leaves[0]) == 0:
        raise ValueError("a batch must hold arrays with a leading batch axis")
    return int(jnp.shape(leaves[0])[0])


def evaluate(loss_fn: LossFn, model: Model, batches: Iterable[Any]) -> dict[str, float]:
    """Mean loss and metrics of ``model`` in evaluation mode (``train=False``, no key).

    Each batch's values are weighted by its size (the leading axis of its first
    array), so a smaller last batch counts for what it holds. The evaluation step is
    jitted once per ``loss_fn`` and batch shape.

    Args:
      loss_fn: the same function as for training (see the module docstring).
      model: the model to evaluate; its state is not changed.
      batches: an iterable of batches, e.g. :func:`eval_batches` of the test set.

    Returns:
      ``{"loss": ..., **metrics}`` as Python floats.
    """
    step = _eval_step(loss_fn)
    sizes, results = [], []
    for batch in batches:
        sizes.append(_batch_size(batch))
        results.append(step(model, batch))  # dispatched asynchronously, fetched once below
    if not sizes:
        raise ValueError("evaluate got no batches")
    results = jax.device_get(results)
    weights = np.asarray(sizes, np.float64) / sum(sizes)
    return {k: float(np.dot(weights, [r[k] for r in results])) for k in results[0]}


class Minibatches:
    """Shuffled minibatches as a function of the step: ``batches(step) -> batch``.

    Epoch ``e`` visits the examples in the order of a permutation drawn from
    ``numpy.random.default_rng([seed, e])``, so the batch of a step depends only on
    the step and the seed: a run resumed from a checkpoint sees exactly the batches
    an uninterrupted run would. The last incomplete batch of each epoch is dropped
    (every batch has the same shape, so the train step compiles once).

    Args:
      arrays: a tuple (or any pytree) of arrays with the same leading length.
      batch_size: examples per batch, at most the number of examples.
      seed: the shuffling seed.

    >>> import numpy as np
    >>> batches = Minibatches((np.arange(10), np.arange(10) * 2), batch_size=4)
    >>> x, y = batches(0)
    >>> x.shape, bool((y == 2 * x).all()), batches.steps_per_epoch
    ((4,), True, 2)
    """

    def __init__(self, arrays: Any, batch_size: int, *, seed: int = 0):
        leaves = jax.tree.leaves(arrays)
        lengths = {len(a) for a in leaves}
        if len(lengths) != 1:
            raise ValueError(f"Minibatches: arrays must share their leading length, got lengths {sorted(lengths)}")
        (self.num_examples,) = lengths
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= self.num_examples:
            raise ValueError(f"Minibatches: batch_size must be an int in [1, {self.num_examples}], got {batch_size!r}")
        self.arrays = jax.tree.map(np.asarray, arrays)
        self.batch_size, self.seed = batch_size, seed
        self.steps_per_epoch = self.num_examples // batch_size
        self._order: tuple[int, np.ndarray] | None = None

    def _permutation(self, epoch: int) -> np.ndarray:
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, np.random.default_rng([self.seed, epoch]).permutation(self.num_examples))
        return self._order[1]

    def __call__(self, step: int) -> Any:
        epoch, i = divmod(int(step), self.steps_per_epoch)
        index = self._permutation(epoch)[i * self.batch_size : (i + 1) * self.batch_size]
        return jax.tree.map(lambda a: a[index], self.arrays)


def eval_batches(arrays: Any, batch_size: int) -> list:
    """The examples in order, in batches of ``batch_size`` (the last one may be smaller).

    >>> import numpy as np
    >>> [x.shape for x, _ in eval_batches((np.zeros((5, 2)), np.zeros(5)), 2)]
    [(2, 2), (2, 2), (1, 2)]
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"eval_batches: batch_size must be a positive int, got {batch_size!r}")
    leaves = jax.tree.leaves(arrays)
    if not leaves:
        raise ValueError("eval_batches: arrays holds no array")
    n = len(leaves[0])
    return [jax.tree.map(lambda a, i=i: np.asarray(a)[i : i + batch_size], arrays) for i in range(0, n, batch_size)]


@dataclasses.dataclass
class History:
    """What :func:`fit` recorded: one dict per logged interval and per evaluation.

    Attributes:
      train: ``{"step", "loss", <metrics>..., "examples_per_sec"}`` averaged over each
        interval of ``log_every`` steps (``step`` is the step count at its end).
      eval: ``{"step", "loss", <metrics>...}`` from :func:`evaluate` on the eval data.
    """

    train: list[dict] = dataclasses.field(default_factory=list)
    eval: list[dict] = dataclasses.field(default_factory=list)

    def series(self, name: str, split: str = "train") -> tuple[list[int], list[float]]:
        """``(steps, values)`` of one metric, e.g. ``history.series("accuracy", "eval")``."""
        rows = [r for r in getattr(self, split) if name in r]
        return [r["step"] for r in rows], [r[name] for r in rows]

    def to_dict(self) -> dict:
        """Plain JSON-serialisable data (what checkpoints store)."""
        return {"train": list(self.train), "eval": list(self.eval)}

    @classmethod
    def from_dict(cls, data: dict) -> History:
        """The inverse of :meth:`to_dict`."""
        return cls(list(data.get("train", [])), list(data.get("eval", [])))


_STEP_DIR = re.compile(r"^step_(\d+)$")


_ORBAX_FILES = {
    "_CHECKPOINT_METADATA",
    "_METADATA",
    "_sharding",
    "array_metadatas",
    "commit_success.txt",
    "d",
    "descriptor",
    "manifest.ocdbt",
}


def _steps(directory: Path) -> list[tuple[int, Path]]:
    """Every ``step_<n>`` directory, complete or not, by step."""
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _STEP_DIR.match(p.name)) and p.is_dir()]
    return sorted(found)


def _checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """The complete ``step_<n>`` checkpoints (with their ``tlean.json``), by step."""
    return [(n, p) for n, p in _steps(directory) if (p / "tlean.json").is_file()]


def latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    """The newest complete ``step_<n>`` checkpoint :func:`fit` wrote in ``directory``, or ``None``.

    A ``step_<n>`` directory without ``tlean.json`` (what a crash in the middle of
    deleting one left) is not a checkpoint and is skipped.
    """
    found = _checkpoints(Path(directory))
    return found[-1][1] if found else None


def _clean_debris(directory: Path) -> None:
    """Remove what interrupted saves and deletions left in ``directory``: tlean's hidden temporary
    directories, and ``step_<n>`` directories without ``tlean.json`` that hold nothing but orbax's
    files. Anything else stays (with a warning if it is a ``step_<n>`` directory)."""
    from tlean import checkpoint

    checkpoint.clean_debris(directory)
    for _, path in _steps(directory):
        if (path / "tlean.json").is_file():
            continue
        names = {p.name for p in path.iterdir()}
        if all(n in _ORBAX_FILES or n.startswith("ocdbt.process_") for n in names):
            shutil.rmtree(path, ignore_errors=True)  # a checkpoint half deleted by a crash
        else:
            warnings.warn(
                f"fit: {path} is not a tlean checkpoint (no tlean.json) and holds files that are not "
                "orbax's: left as it is, and ignored",
                stacklevel=3,
            )


def _run_of(path: Path) -> str | None:
    """The run id :func:`fit` recorded in a checkpoint (``None``: none, or unreadable)."""
    from tlean import checkpoint

    try:
        run = checkpoint.read_metadata(path).get("run")
    except (checkpoint.CheckpointError, OSError):
        return None
    return run if isinstance(run, str) else None


def _start_run(state: TrainState, checkpoints: CheckpointConfig | None) -> tuple[TrainState, History, str, list]:
    """``(state, history, run id, this run's checkpoints)``: resumed from the newest checkpoint in the
    checkpoint folder (``resume=True``), or a new run on a copy of ``state`` (the caller keeps theirs: the
    step donates)."""
    from tlean import checkpoint

    if checkpoints is None:
        return _copy(state), History(), uuid.uuid4().hex, []
    directory = Path(checkpoints.dir)
    _clean_debris(directory)
    last = latest_checkpoint(directory)
    if last is not None and not checkpoints.resume:
        raise FileExistsError(
            f"fit: {directory} holds checkpoints of an earlier run (the newest is {last.name}); with resume=False "
            "fit does not mix two runs in one directory: pass CheckpointConfig(..., resume=True) to continue "
            "that run, or give an empty folder (or delete those checkpoints with tlean.checkpoint.delete)"
        )
    if last is None:
        return _copy(state), History(), uuid.uuid4().hex, []
    state = checkpoint.restore(last, like=state)
    history = History.from_dict(checkpoint.read_metadata(last).get("history", {}))
    run = _run_of(last) or uuid.uuid4().hex  # a checkpoint of an older tlean has no run id: its run is new
    return state, history, run, [p for _, p in _checkpoints(directory) if _run_of(p) == run]


def _rotate(ours: list[Path], path: Path, keep: int) -> None:
    """Record ``path`` (just written) among this run's checkpoints ``ours`` and delete all but the newest
    ``keep`` of them; ``path`` itself is never deleted, nor anything not in ``ours``.

    Why not orbax's ``CheckpointManager`` (re-examined with orbax-checkpoint 0.12.8; tlean uses orbax for
    the array files, through :mod:`tlean.checkpoint`, but keeps this rotation):

    * ``CheckpointManager.save(step)`` returns ``False`` and writes nothing when ``step`` is not above the
      newest step in its folder (``should_save``), so a new run in a folder holding a later step of another
      run loses its checkpoints silently;
    * ``max_to_keep`` counts every step in the folder: a new run with ``max_to_keep=1`` deleted the two
      checkpoints of the earlier run on its first save;
    * deletion is ``rmtree`` in place (unless ``todelete_subdir``, which never frees the space), and a step
      folder left half-deleted by a crash is still listed by ``all_steps()``/``latest_step()``, so a resume
      would pick a broken checkpoint; tlean renames a checkpoint aside before deleting it and skips and
      cleans ``step_<n>`` folders without ``tlean.json``.

    One manager per run sub-folder (``dir/run-<id>/``) avoids the first two, not the third, and changes the
    layout users and the crash tests rely on (``dir/step_<n>``).
    """
    from tlean import checkpoint

    ours[:] = sorted({*ours, path}, key=lambda p: int(p.name[len("step_") :]))  # step_<n>: _steps listed them
    for old in [p for p in ours[:-keep] if p != path]:
        if old.exists():
            checkpoint.delete(old)
        ours.remove(old)


def _positive(owner: str, name: str, value: Any, optional: bool = False) -> None:
    if (value is not None or not optional) and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{owner}: {name} must be a positive int{' or None' if optional else ''}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """What :func:`fit` evaluates on, and how often.

    Attributes:
      data: batches to evaluate on: a sequence (e.g. :func:`eval_batches`), or a function
        returning an iterable of batches (called at each evaluation).
      every: evaluate every this many steps (and always at the end); ``None``: only at the end.
    """

    data: Sequence[Any] | Callable[[], Iterable[Any]]
    every: int | None = None

    def __post_init__(self):
        if self.data is None or isinstance(self.data, (str, bytes)):
            raise TypeError(
                f"EvalConfig: data must be a sequence of batches or a function returning them, "
                f"got {type(self.data).__name__}"
            )
        _positive("EvalConfig", "every", self.every, optional=True)


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
    """Where and how often :func:`fit` saves checkpoints, and whether it resumes.

    Attributes:
      dir: the folder of this run's ``step_<n>`` checkpoints.
      every: save every this many steps (and always at the end); ``None``: only at the end.
      keep: how many of this run's newest checkpoints to keep (the one just written always is;
        other runs' checkpoints are never deleted).
      resume: continue from the newest checkpoint in ``dir`` if there is one; ``False``:
        ``dir`` must hold no checkpoint (``FileExistsError`` otherwise: runs are never mixed).
    """

    dir: str | os.PathLike
    every: int | None = None
    keep: int = 2
    resume: bool = True

    def __post_init__(self):
        if not isinstance(self.dir, (str, os.PathLike)):
            raise TypeError(f"CheckpointConfig: dir must be a path, got {type(self.dir).__name__}")
        _positive("CheckpointConfig", "every", self.every, optional=True)
        _positive("CheckpointConfig", "keep", self.keep)
        if not isinstance(self.resume, (bool, np.bool_)):
            raise TypeError(f"CheckpointConfig: resume must be a bool, got {self.resume!r}")


@dataclasses.dataclass(frozen=True)
class LogConfig:
    """How :func:`fit` reports: metric logs, the progress bar and TensorBoard.

    Attributes:
      every: steps between logs (each log is the mean over its interval).
      progress: show a tqdm progress bar (on stderr) with the loss and examples per second.
      desc: the progress bar's label.
      log_dir: also write TensorBoard scalars here (``train/<metric>``,
        ``train/examples_per_sec``, ``eval/<metric>``, at the step), with tensorboardX
        (``pip install tlean[examples]``); ``None``: no event files.
    """

    every: int = 10
    progress: bool = True
    desc: str = "train"
    log_dir: str | os.PathLike | None = None

    def __post_init__(self):
        _positive("LogConfig", "every", self.every)
        if self.log_dir is not None and not isinstance(self.log_dir, (str, os.PathLike)):
            raise TypeError(f"LogConfig: log_dir must be a path or None, got {type(self.log_dir).__name__}")


_OLD_KEYWORDS = {  # fit's keywords before 0.2 -> (config, field)
    "eval_data": ("eval", "data"),
    "eval_every": ("eval", "every"),
    "log_every": ("log", "every"),
    "progress": ("log", "progress"),
    "desc": ("log", "desc"),
    "checkpoint_dir": ("checkpoints", "dir"),
    "checkpoint_every": ("checkpoints", "every"),
    "keep_checkpoints": ("checkpoints", "keep"),
    "resume": ("checkpoints", "resume"),
}


def _from_old_keywords(old: dict, eval: Any, checkpoints: Any, log: Any) -> tuple[Any, Any, Any]:
    """The configs that fit's old keywords (``eval_data=``, ``checkpoint_dir=``, ...) spell, with a
    ``DeprecationWarning`` naming the new spelling."""
    unknown = sorted(set(old) - set(_OLD_KEYWORDS))
    if unknown:
        raise TypeError(
            f"fit got unexpected keyword arguments {unknown}; it takes steps=, eval=EvalConfig(...), "
            "checkpoints=CheckpointConfig(...) and log=LogConfig(...)"
        )
    groups: dict[str, dict] = {"eval": {}, "checkpoints": {}, "log": {}}
    for name, value in old.items():
        group, field = _OLD_KEYWORDS[name]
        groups[group][field] = value
    given = {"eval": eval, "checkpoints": checkpoints, "log": log}
    for group, fields in groups.items():
        if fields and given[group] is not None:
            raise TypeError(f"fit: pass {group}= or the old keywords {sorted(fields)}, not both")
    spelled = ", ".join(f"{k}={_OLD_KEYWORDS[k][0]}.{_OLD_KEYWORDS[k][1]}" for k in sorted(old))
    warnings.warn(
        f"fit's keywords {sorted(old)} are deprecated and go in the next release: pass "
        f"eval=EvalConfig(...), checkpoints=CheckpointConfig(...), log=LogConfig(...) ({spelled})",
        DeprecationWarning,
        stacklevel=3,
    )
    if groups["eval"] and groups["eval"].get("data") is not None:
        eval = EvalConfig(**groups["eval"])
    elif groups["eval"].get("every") is not None:
        _positive("fit", "eval_every", groups["eval"]["every"], optional=True)
    if groups["checkpoints"] and groups["checkpoints"].get("dir") is not None:
        checkpoints = CheckpointConfig(**groups["checkpoints"])
    elif groups["checkpoints"]:  # the old fit checked these even without a folder
        CheckpointConfig(".", **{k: v for k, v in groups["checkpoints"].items() if k != "dir"})
    if groups["log"]:
        log = LogConfig(**groups["log"])
    return eval, checkpoints, log


class _Reporter:
    """fit's logging: metrics stay on the device until a log, then their means and the throughput go into
    the history, onto the progress bar and (with ``log_dir``) into TensorBoard event files."""

    def __init__(self, config: LogConfig, history: History, start: int, steps: int):
        self.config, self.history = config, history
        self.pending: list = []
        self.examples, self.tick = 0, time.perf_counter()
        self.bar = self.writer = None
        if config.log_dir is not None:
            self.writer = _summary_writer(config.log_dir)
        if config.progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=steps, initial=min(start, steps), desc=config.desc, dynamic_ncols=True)

    def step(self, metrics: dict, examples: int) -> None:
        self.pending.append(metrics)
        self.examples += examples
        if self.bar is not None:
            self.bar.update(1)

    def log(self, step: int) -> None:
        values = jax.device_get(self.pending)
        now = time.perf_counter()
        row = {"step": step, **{k: float(np.mean([m[k] for m in values])) for k in values[0]}}
        row["examples_per_sec"] = self.examples / max(now - self.tick, 1e-9)
        self.history.train.append(row)
        self._scalars("train", row)
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{row['loss']:.4f}", ex_per_s=f"{row['examples_per_sec']:.0f}")
        self.pending, self.examples, self.tick = [], 0, now

    def evaluated(self, row: dict) -> None:
        self.history.eval.append(row)
        self._scalars("eval", row)

    def _scalars(self, split: str, row: dict) -> None:
        if self.writer is not None:
            for name, value in row.items():
                if name != "step":
                    self.writer.add_scalar(f"{split}/{name}", value, row["step"])

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()


def _summary_writer(log_dir: str | os.PathLike) -> Any:
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise ImportError(
            "fit: LogConfig(log_dir=...) writes TensorBoard scalars with tensorboardX, which is not "
            "installed: pip install 'tlean[examples]' (or tensorboardX)"
        ) from None
    return SummaryWriter(os.fspath(log_dir))


def _save(checkpoints: CheckpointConfig, state: TrainState, history: History, run: str, ours: list) -> None:
    """Save ``state`` and the history as ``step_<n>`` of this run, then rotate this run's checkpoints."""
    from tlean import checkpoint

    path = Path(checkpoints.dir) / f"step_{int(state.step):08d}"
    checkpoint.save(path, state, metadata={"history": history.to_dict(), "run": run})
    _rotate(ours, path, checkpoints.keep)


def _evaluate(loss_fn: LossFn, eval: EvalConfig, state: TrainState, reporter: _Reporter) -> None:
    batches = eval.data() if callable(eval.data) else eval.data
    reporter.evaluated({"step": int(state.step), **evaluate(loss_fn, state.model, batches)})


def _due(every: int | None, done: int, steps: int) -> bool:
    """Whether a periodic action falls on step ``done`` (the end has its own, once)."""
    return every is not None and done % every == 0 and done != steps


def _loop(
    state: TrainState,
    step_fn: Callable,
    train_data: Callable[[int], Any],
    steps: int,
    loss_fn: LossFn,
    eval: EvalConfig | None,
    checkpoints: CheckpointConfig | None,
    log: LogConfig,
    reporter: _Reporter,
    run: str,
    ours: list,
) -> TrainState:
    """The steps from ``state.step`` to ``steps``, with the periodic logs, evaluations and checkpoints."""
    for step in range(int(state.step), steps):
        batch = train_data(step)
        state, metrics = step_fn(state, batch)
        reporter.step(metrics, _batch_size(batch))
        done = step + 1
        if done % log.every == 0 or done == steps:
            reporter.log(done)
        if eval is not None and _due(eval.every, done, steps):
            _evaluate(loss_fn, eval, state, reporter)
        if checkpoints is not None and _due(checkpoints.every, done, steps):
            _save(checkpoints, state, reporter.history, run, ours)
    return state


def fit(
    state: TrainState,
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    train_data: Callable[[int], Any],
    *,
    steps: int,
    eval: EvalConfig | None = None,
    checkpoints: CheckpointConfig | str | os.PathLike | None = None,
    log: LogConfig | None = None,
    **old_keywords: Any,
) -> tuple[TrainState, History]:
    """Train until ``state.step == steps``, with a progress bar, evaluation, checkpoints and logs.

    Each step calls the train step of :func:`make_train_step` on ``train_data(step)``.
    Metrics stay on the device between logs; every ``log.every`` steps their means and
    the throughput (examples per second) go into the history, onto the tqdm progress
    bar and, with ``log.log_dir``, into TensorBoard event files. Every ``eval.every``
    steps and at the end, :func:`evaluate` runs on ``eval.data``. Every
    ``checkpoints.every`` steps and at the end, the state and the history are saved to
    ``checkpoints.dir/step_<n>``; of this run's checkpoints the newest
    ``checkpoints.keep`` are kept (the one just written always is), and checkpoints of
    other runs are never deleted. What a crash left behind in the folder (a save or a
    deletion cut short) is cleaned up at the start.

    With ``resume=True`` and a checkpoint in the folder, training continues from the
    newest one, as the same run; with ``resume=False`` the folder must hold no
    checkpoint (``FileExistsError``: two runs are never mixed). ``state`` is copied
    before training, so the caller's state stays usable (the train step donates the
    buffers of the state it trains). Because ``train_data`` is a function of the step
    (see :class:`Minibatches`) and the dropout keys come from the state, the resumed
    run is bit for bit the run that never stopped. ``steps`` counts all steps, so a
    run that already reached it returns at once.

    The keywords of tlean 0.1 (``eval_data``, ``eval_every``, ``log_every``,
    ``checkpoint_dir``, ``checkpoint_every``, ``keep_checkpoints``, ``resume``,
    ``progress``, ``desc``) still work for this release, with a ``DeprecationWarning``.

    Args:
      state: the starting :class:`TrainState` (also the template a checkpoint is restored into).
      loss_fn: ``loss_fn(model, batch, *, key, train) -> (loss, (model, metrics))``.
      optimizer: the optax transformation that made ``state.opt_state``.
      train_data: ``train_data(step) -> batch``.
      steps: the total number of steps to reach.
      eval: an :class:`EvalConfig`; ``None``: no evaluation.
      checkpoints: a :class:`CheckpointConfig` (a path is ``CheckpointConfig(path)``);
        ``None``: no checkpoints.
      log: a :class:`LogConfig`; ``None``: ``LogConfig()`` (a log every 10 steps, a
        progress bar, no TensorBoard).

    Returns:
      ``(state, history)``.

    >>> import numpy as np, optax
    >>> from tlean import nn
    >>> x = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    >>> y = (x[:, 0] > 0).astype(np.int32)
    >>> state = TrainState.create(nn.run(0, nn.Sequential(nn.Linear(4, 2))), optax.adam(0.05))
    >>> state, history = fit(state, classification_loss, optax.adam(0.05), Minibatches((x, y), 16), steps=20,
    ...                      eval=EvalConfig(eval_batches((x, y), 32)), log=LogConfig(every=10, progress=False))
    >>> [r["step"] for r in history.train], history.eval[-1]["accuracy"] > 0.8
    ([10, 20], True)
    """
    if old_keywords:
        eval, checkpoints, log = _from_old_keywords(old_keywords, eval, checkpoints, log)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"fit: steps must be an int >= 0, got {steps!r}")
    if isinstance(checkpoints, (str, os.PathLike)):
        checkpoints = CheckpointConfig(checkpoints)
    log = LogConfig() if log is None else log
    for name, value, kind in (
        ("eval", eval, EvalConfig),
        ("checkpoints", checkpoints, CheckpointConfig),
        ("log", log, LogConfig),
    ):
        if value is not None and not isinstance(value, kind):
            raise TypeError(f"fit: {name} must be a {kind.__name__} or None, got {type(value).__name__}")
    _check_state(state, "fit")
    if not callable(train_data):
        raise TypeError("fit: train_data must be a function of the step, e.g. Minibatches(arrays, batch_size)")

    state, history, run, ours = _start_run(state, checkpoints)
    start = int(state.step)
    reporter = _Reporter(log, history, start, steps)
    try:
        state = _loop(
            state,
            make_train_step(loss_fn, optimizer),
            train_data,
            steps,
            loss_fn,
            eval,
            checkpoints,
            log,
            reporter,
            run,
            ours,
        )
        if start < steps:  # the end: one evaluation and one checkpoint
            if eval is not None:
                _evaluate(loss_fn, eval, state, reporter)
            if checkpoints is not None:
                _save(checkpoints, state, history, run, ours)
    finally:
        reporter.close()
    return state, history
