"""Data-parallel and sharded training on a ``jax.sharding.Mesh``.

Everything here is placement: arrays get a ``NamedSharding`` and the train step is a
``jax.jit`` with ``in_shardings`` and ``out_shardings``. XLA's partitioner inserts the
collectives (the gradient all-reduce of data parallelism, the all-gathers and
reduce-scatters of FSDP); tlean writes none, and there is no ``pmap``.

- **Data parallelism**: a mesh with a ``"data"`` axis, the batch split along it
  (:func:`shard_batch`), parameters replicated (no rules).
- **Parameter sharding** (FSDP-style): rules, an ordered list of ``(regex,
  PartitionSpec)`` matched against PyTorch-style parameter names (``"0.weight"``,
  ``"encoder.layers.*.linear1.weight"``, as ``model.named_parameters()`` prints them),
  first match wins; unmatched arrays are replicated. A spec describes one layer: for the
  leaves of a Stacked layer tlean prepends ``None`` for the stacked layer axis. A pattern must match the whole
  name (``re.fullmatch``), so ``r"1\\.weight"`` does not also catch ``"11.weight"``.
- **Sharded initialisation**: :func:`init_sharded` runs the builder under ``jax.jit``
  with ``out_shardings``, so each device computes only its own shard and the full
  parameters never exist on one device. The values are the same, bit for bit, as
  ``nn.run(seed, builder)`` (JAX's partitionable Threefry).

>>> import jax, optax
>>> from jax.sharding import PartitionSpec as P
>>> from tlean import nn, parallel
>>> mesh = parallel.make_mesh({"data": 1, "fsdp": 1})
>>> rules = [(r".*\\.weight", P("fsdp")), (r".*", P())]
>>> model = parallel.init_sharded(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)), 0, rules, mesh)
>>> model.params[0]["weight"].sharding.spec
P('fsdp',)

A data-parallel / FSDP training loop with :mod:`tlean.train`::

    mesh = parallel.make_mesh({"data": 2, "fsdp": 4})
    state = train.TrainState.create_sharded(builder, 0, optimizer, rules, mesh)
    step = parallel.shard_step(train.make_train_step(train.classification_loss, optimizer),
                               state.shardings(rules, mesh, optimizer), mesh, batch_axis=("data", "fsdp"))
    for x, y in batches:
        state, metrics = step(state, parallel.shard_batch((x, y), mesh, ("data", "fsdp")))

Multi-host launch. Start the same script on every host; ``jax.distributed.initialize``
connects the processes (on Cloud TPU, SLURM and Open MPI it finds the coordinator by
itself; elsewhere pass it), after which ``jax.devices()`` lists every device of every
host and a mesh spans them all::

    import jax
    jax.distributed.initialize(coordinator_address="10.0.0.1:1234",  # host 0's address
                               num_processes=4, process_id=int(os.environ["RANK"]))
    from tlean import nn, parallel, train

    mesh = parallel.make_mesh({"data": -1})              # every device of every host
    state = train.TrainState.create_sharded(builder, 0, optimizer, rules, mesh)  # same seed everywhere
    step = parallel.shard_step(train.make_train_step(loss_fn, optimizer), state.shardings(rules, mesh, optimizer), mesh)
    for local_batch in my_hosts_slice_of_the_data():     # each host loads its own examples
        state, metrics = step(state, parallel.shard_batch(local_batch, mesh))

With several processes :func:`shard_batch` takes each process's *local* part of the
global batch (``jax.make_array_from_process_local_data``); the global batch is their
concatenation in process order. Save such states with :mod:`tlean.checkpoint`
(orbax writes and restores multi-host arrays).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from tlean._model import Model, torch_name

__all__ = [
    "batch_sharding",
    "init_sharded",
    "make_mesh",
    "opt_state_shardings",
    "param_shardings",
    "param_specs",
    "replicated",
    "shard_batch",
    "shard_model",
    "shard_step",
]

Rules = Sequence[tuple[Any, PartitionSpec]]
Axis = str | tuple[str, ...]


# -- meshes ------------------------------------------------------------------------------
def make_mesh(axes: Mapping[str, int] | None = None, *, devices: Sequence[Any] | None = None) -> Mesh:
    """A mesh with named axes, e.g. ``make_mesh({"data": 2, "fsdp": 4})``.

    Args:
      axes: axis name to size, in mesh order; one size may be ``-1`` to take the
        remaining devices. Default ``{"data": -1}``: every device on one data axis.
      devices: the devices to use (default ``jax.devices()``, every device of every
        process); their number must equal the product of the sizes.

    Returns:
      A ``jax.sharding.Mesh`` whose axes are ``AxisType.Auto``: shardings propagate
      through ``jax.jit`` (GSPMD) from the placed inputs and the given ``out_shardings``.

    Raises:
      ValueError: for sizes that are not positive ints (or one ``-1``), or whose
        product is not the number of devices.
    """
    devices = list(jax.devices() if devices is None else devices)
    axes = dict({"data": -1} if axes is None else axes)
    if not axes:
        raise ValueError("make_mesh: give at least one axis, e.g. {'data': -1}")
    for name, size in axes.items():
        if (
            not isinstance(name, str)
            or isinstance(size, bool)
            or not isinstance(size, int)
            or not (size >= 1 or size == -1)
        ):
            raise ValueError(f"make_mesh: axis sizes must be positive ints or -1, got {name!r}: {size!r}")
    free = [name for name, size in axes.items() if size == -1]
    if len(free) > 1:
        raise ValueError(f"make_mesh: at most one axis may have size -1, got {free}")
    known = math.prod(size for size in axes.values() if size != -1)
    if free:
        if len(devices) % known:
            raise ValueError(
                f"make_mesh: {len(devices)} devices do not divide into {axes} (the fixed sizes multiply to {known})"
            )
        axes[free[0]] = len(devices) // known
    if math.prod(axes.values()) != len(devices):
        raise ValueError(
            f"make_mesh: the axis sizes {axes} multiply to {math.prod(axes.values())}, but there are {len(devices)} devices"
        )
    return jax.make_mesh(tuple(axes.values()), tuple(axes), axis_types=(AxisType.Auto,) * len(axes), devices=devices)


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device of ``mesh``."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh, axis: Axis = "data") -> NamedSharding:
    """The leading (batch) axis split over mesh ``axis`` (a name or a tuple of names)."""
    _check_axes(mesh, axis, "batch_sharding")
    return NamedSharding(mesh, PartitionSpec(axis))


def _axis_size(mesh: Mesh, axis: Axis | None) -> int:
    if axis is None:
        return 1
    names = (axis,) if isinstance(axis, str) else tuple(axis)
    return math.prod(mesh.shape[a] for a in names)


def _check_axes(mesh: Mesh, axis: Axis | None, who: str) -> None:
    names = () if axis is None else (axis,) if isinstance(axis, str) else tuple(axis)
    unknown = [a for a in names if a not in mesh.shape]
    if unknown:
        raise ValueError(f"{who}: mesh has no axis {unknown[0]!r}; its axes are {dict(mesh.shape)}")


def shard_batch(batch: Any, mesh: Mesh, axis: Axis = "data") -> Any:
    """Place every array of ``batch`` with its leading axis split over mesh ``axis``.

    Args:
      batch: a pytree of arrays (e.g. ``(x, y)``) sharing a leading batch axis.
      mesh: the mesh.
      axis: the mesh axis (or tuple of axes, e.g. ``("data", "fsdp")``) to split over.

    Returns:
      The batch as global ``jax.Array``\\ s. In a single process this is
      ``jax.device_put``; with several processes each passes its local part and the
      global batch is their concatenation (``jax.make_array_from_process_local_data``).

    Raises:
      ValueError: if an array has no leading axis, or its batch size does not divide
        evenly over the devices of ``axis``; nothing is padded or dropped silently.
    """
    _check_axes(mesh, axis, "shard_batch")
    sharding = NamedSharding(mesh, PartitionSpec(axis))
    size = _axis_size(mesh, axis)
    processes = jax.process_count()

    def place(path, leaf):
        name = torch_name(path) or "the batch"
        if np.ndim(leaf) == 0:
            raise ValueError(f"shard_batch: {name} is a scalar; every array of a batch needs a leading batch axis")
        n = np.shape(leaf)[0] * processes
        if n % size:
            raise ValueError(
                f"shard_batch: {name} has batch size {n} (shape {tuple(np.shape(leaf))}), which does not divide "
                f"evenly over the {size} devices of mesh axis {axis!r}; use a batch size that is a multiple of "
                f"{size} (e.g. drop the last incomplete batch)"
            )
        if processes > 1:
            return jax.make_array_from_process_local_data(sharding, np.asarray(leaf))
        return jax.device_put(leaf, sharding)

    return jax.tree_util.tree_map_with_path(place, batch)


# -- rules -------------------------------------------------------------------------------
def _compile_rules(rules: Rules) -> list[tuple[re.Pattern, PartitionSpec]]:
    compiled = []
    for i, rule in enumerate(rules):
        if not (isinstance(rule, (tuple, list)) and len(rule) == 2):
            raise TypeError(f"rules[{i}] must be a pair (regex, PartitionSpec), got {rule!r}")
        pattern, spec = rule
        if not isinstance(spec, PartitionSpec):
            raise TypeError(f"rules[{i}]: the second item must be a jax.sharding.PartitionSpec, got {spec!r}")
        compiled.append((re.compile(pattern) if isinstance(pattern, str) else pattern, spec))
    return compiled


def _named_leaves(tree: Any) -> list[tuple[str, int, Any]]:
    """``(name, stacked axes, leaf)`` for every leaf; a Model's params and state go by the walk's names.

    A Model contributes ``"0.weight"``, ``"1.running_mean"``, ``"layers.*.linear1.weight"``
    (:meth:`tlean.Model.named_parameters`, with the number of stacked leading axes); a
    Model inside a larger tree is prefixed by its path (``"model.0.weight"`` in a
    TrainState); other leaves are named by their path.
    """
    out = []
    for path, node in jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: isinstance(x, Model))[0]:
        prefix = torch_name(path)
        if isinstance(node, Model):
            for leaf in node.named_leaves():
                out.append((".".join(filter(None, (prefix, leaf.name))), len(leaf.stack), leaf.value))
        else:
            out.append((prefix, 0, node))
    return out


def _spec_for(name: str, rules: list[tuple[re.Pattern, PartitionSpec]]) -> PartitionSpec:
    for pattern, spec in rules:
        if pattern.fullmatch(name):
            return spec
    return PartitionSpec()


def param_specs(tree: Any, rules: Rules) -> Any:
    """A ``PartitionSpec`` for every array of ``tree`` (a Model, params, or a pytree holding Models).

    Each array's PyTorch-style name (see :meth:`tlean.Model.named_parameters`) is
    matched against the rules in order with ``re.fullmatch``; the first match gives
    its spec, and an array no rule matches is replicated (``PartitionSpec()``).

    >>> from jax.sharding import PartitionSpec as P
    >>> from tlean import nn, parallel
    >>> model = nn.run(0, nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)))
    >>> specs = parallel.param_specs(model, [(r"0\\.weight", P("fsdp", None))])
    >>> specs.params[0]["weight"], specs.params[2]["weight"]
    (P('fsdp', None), P())
    """
    compiled = _compile_rules(rules)
    treedef = jax.tree.structure(tree)
    named = _named_leaves(tree)  # visits the leaves in flatten order
    return jax.tree.unflatten(
        treedef, [_stacked_spec(_spec_for(name, compiled), stacked) for name, stacked, _ in named]
    )


def _stacked_spec(spec: PartitionSpec, stacked: int) -> PartitionSpec:
    """A rule's spec describes one layer; a Stacked leaf has ``stacked`` more leading (layer) axes, unsharded."""
    if not stacked or spec == PartitionSpec():
        return spec
    return PartitionSpec(*((None,) * stacked), *spec)


def param_shardings(tree: Any, rules: Rules, mesh: Mesh) -> Any:
    """A ``NamedSharding`` on ``mesh`` for every array of ``tree``, from :func:`param_specs`.

    Each spec is checked against its array: the mesh has the named axes, the spec is
    no longer than the array's rank, and every split dimension divides evenly.

    Raises:
      ValueError: naming the parameter, its shape, the spec and the mesh axes.
    """
    specs = param_specs(tree, rules)
    names = [name for name, _, _ in _named_leaves(tree)]
    leaves, treedef = jax.tree.flatten(tree)
    out = []
    for name, leaf, spec in zip(names, leaves, jax.tree.leaves(specs, is_leaf=lambda s: isinstance(s, PartitionSpec))):
        shape = tuple(np.shape(leaf))
        where = f"param_shardings: {name} (shape {shape}) with {spec}"
        if len(spec) > len(shape):
            raise ValueError(f"{where}: the spec has {len(spec)} entries but the array has rank {len(shape)}")
        for dim, axis in enumerate(spec):
            _check_axes(mesh, axis, where)
            size = _axis_size(mesh, axis)
            if shape[dim] % size:
                raise ValueError(
                    f"{where}: dimension {dim} of size {shape[dim]} does not divide evenly over mesh axis "
                    f"{axis!r} of size {size} (mesh {dict(mesh.shape)})"
                )
        out.append(NamedSharding(mesh, spec))
    return jax.tree.unflatten(treedef, out)


def shard_model(model: Model, rules: Rules, mesh: Mesh) -> Model:
    """``model`` with its arrays placed by ``rules`` on ``mesh`` (for a model that already exists)."""
    if not isinstance(model, Model):
        raise TypeError(f"shard_model takes a tlean Model, got {type(model).__name__}")
    return jax.device_put(model, param_shardings(model, rules, mesh))


def init_sharded(builder: Any, seed: Any, rules: Rules, mesh: Mesh) -> Model:
    """Build ``nn.run(seed, builder)`` directly sharded: under ``jax.jit`` with ``out_shardings``.

    The shapes come from ``jax.eval_shape`` (nothing is computed), the shardings from
    ``rules``, and the jitted initialiser writes each shard on its own device: the
    full parameters are never materialised on one device. The result equals
    ``nn.run(seed, builder)`` bit for bit.

    Args:
      builder: an ``nn`` builder of a Model (``nn.Sequential(...)``).
      seed: an int or a JAX key, as for ``nn.run``.
      rules: the sharding rules (``[]`` replicates everything).
      mesh: the mesh.
    """
    from tlean.seed import as_key, run

    key = as_key(seed)
    build = lambda k: run(k, builder)
    abstract = jax.eval_shape(build, key)
    if not isinstance(abstract, Model):
        raise TypeError(f"init_sharded: the builder must build a tlean Model, got {type(abstract).__name__}")
    shardings = param_shardings(abstract, rules, mesh)
    return jax.jit(build, out_shardings=shardings)(key)


# -- optimiser and train state -------------------------------------------------------------
def opt_state_shardings(optimizer: Any, opt_state: Any, params_shardings: Any, mesh: Mesh) -> Any:
    """Shardings of an optax state: every copy of the params tree in it (Adam's ``mu``,
    ``nu``) is sharded as the params are; everything else (step counts) is replicated.

    Args:
      optimizer: the optax transformation (``optax.tree_map_params`` asks its ``init``
        where the params-shaped parts are).
      opt_state: the optimiser state, concrete or abstract (``jax.eval_shape``).
      params_shardings: the shardings of ``model.params``.
      mesh: the mesh.
    """
    import optax

    whole = replicated(mesh)
    return optax.tree_map_params(
        optimizer, lambda _, sharding: sharding, opt_state, params_shardings, transform_non_params=lambda _: whole
    )


def shard_step(
    step: Callable[[Any, Any], tuple[Any, Any]],
    state_shardings: Any,
    mesh: Mesh,
    *,
    batch_axis: Axis = "data",
    donate: bool = True,
) -> Callable[[Any, Any], tuple[Any, Any]]:
    """``step(state, batch) -> (state, metrics)`` compiled for ``mesh``.

    It is ``jax.jit`` with ``in_shardings=(state_shardings, batch split on
    batch_axis)`` and ``out_shardings=(state_shardings, replicated)``, so the state
    keeps its layout from step to step and the metrics come back whole. ``step`` may
    itself be jitted (e.g. :func:`tlean.train.make_train_step`); XLA's partitioner
    adds the collectives.

    Args:
      step: the train step.
      state_shardings: ``state.shardings(rules, mesh, optimizer)`` of a
        :class:`tlean.train.TrainState` (or any tree of shardings matching the state).
      mesh: the mesh.
      batch_axis: the mesh axis (or axes) the batch is split over.
      donate: donate the input state's buffers (do not use it after the call).
    """
    _check_axes(mesh, batch_axis, "shard_step")
    return jax.jit(
        step,
        in_shardings=(state_shardings, NamedSharding(mesh, PartitionSpec(batch_axis))),
        out_shardings=(state_shardings, replicated(mesh)),
        donate_argnums=(0,) if donate else (),
    )
