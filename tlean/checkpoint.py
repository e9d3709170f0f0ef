"""Checkpoints of Models, TrainStates and any pytree, on orbax-checkpoint.

``save(path, tree)`` writes a directory exactly at ``path``: orbax's array files
plus ``tlean.json``, which records every leaf (its PyTorch-style name, shape, dtype
and a checksum), the ``repr`` of every Model's layer, the JAX version and any
metadata the caller adds. ``restore(path, like=tree)`` reads it back into the
structure of ``like`` (concrete arrays, or abstract ``jax.ShapeDtypeStruct`` with
shardings, e.g. from ``jax.eval_shape``) after checking structure, shapes, dtypes
and layer configs; everything that differs is listed in one error.

Writes are atomic: the checkpoint is assembled in a hidden sibling directory and
renamed into place only when complete, so a crash mid-save leaves the previous
checkpoint at ``path`` (or, if the crash hits the overwrite itself, in a sibling
that ``restore`` finds) and never a half-written one. A truncated or corrupted
checkpoint raises :class:`CheckpointError`; nothing is returned half-loaded.

PRNG key arrays (such as ``TrainState.key``) are saved as their key data and
re-wrapped with the saved implementation.

>>> import tempfile, jax, jax.numpy as jnp
>>> from tlean import nn, checkpoint
>>> model = nn.run(0, nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)))
>>> path = tempfile.mkdtemp() + "/model"
>>> checkpoint.save(path, model)
>>> restored = checkpoint.restore(path, like=jax.eval_shape(lambda: model))
>>> bool(jnp.array_equal(restored.params[0]["weight"], model.params[0]["weight"]))
True
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import uuid
import warnings
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tlean._model import Model

__all__ = ["CheckpointError", "delete", "read_metadata", "restore", "save"]

FORMAT = 1
_META = "tlean.json"
_TMP = ".tlean-tmp-"
_OLD = ".tlean-old-"


class CheckpointError(ValueError):
    """A checkpoint that cannot be restored: missing, truncated, corrupted or not matching ``like``."""


# -- flattening ------------------------------------------------------------------------


def _is_key(x: Any) -> bool:
    dtype = getattr(x, "dtype", None)
    return dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def _name(path: tuple) -> str:
    """``model.params.0.weight``: the key path with dots, as PyTorch-style names read."""
    return jax.tree_util.keystr(path, simple=True, separator=".") or "(root)"


def _names(paths: list[tuple]) -> list[str]:
    names = [_name(p) for p in paths]
    if len(set(names)) != len(names):  # "0" a dict key and 0 an index would collide: use the unambiguous form
        names = [jax.tree_util.keystr(p) or "(root)" for p in paths]
    return names


def _leaf_kind(leaf: Any) -> str:
    if _is_key(leaf):
        try:
            impl = jax.random.key_impl(leaf)
        except TypeError:  # an abstract key (ShapeDtypeStruct): no public accessor for its implementation
            impl = jax.random.key_impl(jax.random.key(0, impl=leaf.dtype._impl))
        return f"key:{impl}"
    if isinstance(leaf, bool):
        return "python:bool"
    if isinstance(leaf, int):
        return "python:int"
    if isinstance(leaf, float):
        return "python:float"
    return "array"


def _describe(leaf: Any) -> dict:
    """Name-free description of a leaf (concrete or abstract)."""
    kind = _leaf_kind(leaf)
    if kind.startswith("python:"):  # kept exactly, as JSON, in tlean.json
        return {"kind": kind, "shape": [], "dtype": kind[len("python:"):]}
    if not hasattr(leaf, "shape") or not hasattr(leaf, "dtype"):
        raise TypeError(f"cannot checkpoint a leaf of type {type(leaf).__name__}: leaves must be arrays or Python scalars")
    return {"kind": kind, "shape": list(leaf.shape), "dtype": str(leaf.dtype)}


def _layers(tree: Any) -> dict[str, str]:
    """``{path of each Model in tree: repr of its layer}``."""
    found = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: isinstance(x, Model))[0]
    return {_name(p): repr(m.layer) for p, m in found if isinstance(m, Model)}


def _checksum(array: np.ndarray) -> str:
    array = np.ascontiguousarray(array)
    return hashlib.blake2b(array.tobytes(), digest_size=16).hexdigest()


def _storable(leaf: Any) -> Any:
    if _is_key(leaf):
        return jax.random.key_data(leaf)
    if isinstance(leaf, (bool, int, float)):
        return None  # stored in tlean.json
    return leaf


def _host(array: Any) -> np.ndarray | None:
    """The array on the host if this process holds all of it, else ``None`` (no checksum)."""
    if isinstance(array, jax.Array) and not array.is_fully_addressable:
        return None
    return np.asarray(array)


# -- the directory --------------------------------------------------------------------


def _read_meta(path: Path) -> dict:
    file = path / _META
    if not file.is_file():
        raise CheckpointError(f"{path} is not a tlean checkpoint: it has no {_META}")
    try:
        meta = json.loads(file.read_text())
        if not (isinstance(meta, dict) and isinstance(meta.get("leaves"), list) and isinstance(meta.get("format"), int)):
            raise ValueError("it lacks the format or the list of leaves")
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise CheckpointError(f"the checkpoint at {path} is corrupted or truncated: cannot read {_META} ({err})") from None
    if meta["format"] > FORMAT:
        raise CheckpointError(f"the checkpoint at {path} has format {meta['format']}; this tlean reads up to {FORMAT}")
    return meta


def _resolve(path: Path) -> Path:
    """``path``, or the previous checkpoint a save interrupted mid-overwrite left beside it."""
    if path.exists():
        return path
    olds = sorted(path.parent.glob(f".{path.name}{_OLD}*"), key=lambda p: p.stat().st_mtime) if path.parent.is_dir() else []
    olds = [p for p in olds if (p / _META).is_file()]
    if olds:
        warnings.warn(f"no checkpoint at {path}: a save was interrupted while replacing it; restoring the previous "
                      f"checkpoint from {olds[-1]}", stacklevel=3)
        return olds[-1]
    raise FileNotFoundError(f"no checkpoint at {path}")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _path(path: str | os.PathLike) -> Path:
    """``path`` made absolute (orbax refuses relative paths), symlinks kept as given."""
    return Path(os.path.abspath(os.fspath(path)))


def _rename(src: Path, dst: Path) -> None:
    """``os.rename``: atomic on one POSIX filesystem (its own function, so tests can interrupt it)."""
    os.rename(src, dst)


def _checkpointer():
    import orbax.checkpoint as ocp

    return ocp.Checkpointer(ocp.StandardCheckpointHandler())


def save(path: str | os.PathLike, tree: Any, *, metadata: dict | None = None, overwrite: bool = True) -> None:
    """Save a pytree (a Model, a TrainState, any pytree of arrays) as a directory at ``path``.

    The write is atomic: orbax writes the arrays into a hidden temporary sibling,
    ``tlean.json`` is added and flushed, and only then is the directory renamed to
    ``path``. Overwriting renames the old checkpoint aside first and deletes it after
    the new one is in place.

    Args:
      path: the checkpoint directory, used exactly as given (no suffix is added).
      tree: the pytree; leaves are JAX or NumPy arrays, PRNG keys or Python scalars.
      metadata: JSON-serialisable data stored alongside (read it with :func:`read_metadata`).
      overwrite: replace an existing checkpoint at ``path``; ``False`` raises
        ``FileExistsError`` instead. A path that exists but is not a tlean checkpoint
        is never replaced.
    """
    path = _path(path)
    leaves_with_paths, _ = jax.tree_util.tree_flatten_with_path(tree)
    names = _names([p for p, _ in leaves_with_paths])
    leaves = [leaf for _, leaf in leaves_with_paths]
    entries = []
    for name, leaf in zip(names, leaves):
        try:
            entries.append({"name": name, **_describe(leaf)})
        except TypeError as err:
            raise TypeError(f"checkpoint.save: {name}: {err}") from None
    stored = [_storable(leaf) for leaf in leaves]
    for entry, leaf, array in zip(entries, leaves, stored):
        if array is None:
            entry["value"] = leaf
        else:
            host = _host(array)
            entry["checksum"] = None if host is None else _checksum(host)
    meta = {
        "format": FORMAT,
        "jax_version": jax.__version__,
        "layers": _layers(tree),
        "leaves": entries,
        "metadata": metadata if metadata is not None else {},
    }
    text = json.dumps(meta, indent=1)  # fails before anything is written if metadata is not JSON

    if path.exists():
        if not overwrite:
            raise FileExistsError(f"checkpoint.save: {path} exists (pass overwrite=True to replace it)")
        if not (path.is_dir() and (path / _META).is_file()):
            raise FileExistsError(f"checkpoint.save: {path} exists and is not a tlean checkpoint; refusing to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}{_TMP}*"):  # left by an earlier interrupted save
        shutil.rmtree(stale, ignore_errors=True)

    tmp = path.parent / f".{path.name}{_TMP}{uuid.uuid4().hex}"
    old = None
    try:
        arrays = {str(i): a for i, a in enumerate(stored) if a is not None and np.size(a)}
        if arrays:  # orbax refuses zero-size arrays: their shape and dtype in tlean.json are all there is to them
            _checkpointer().save(tmp, arrays)
        else:
            tmp.mkdir()
        with open(tmp / _META, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(tmp)
        if path.exists():
            old = path.parent / f".{path.name}{_OLD}{uuid.uuid4().hex}"
            _rename(path, old)
        _rename(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        if old is not None and old.exists() and not path.exists():
            _rename(old, path)  # put the previous checkpoint back
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for leftover in path.parent.glob(f".{path.name}{_OLD}*"):  # the checkpoint at path is complete now
        shutil.rmtree(leftover, ignore_errors=True)


def read_metadata(path: str | os.PathLike) -> dict:
    """The ``metadata`` dict given to :func:`save` (empty if none)."""
    return _read_meta(_resolve(_path(path)))["metadata"]


def delete(path: str | os.PathLike) -> None:
    """Delete the checkpoint at ``path``; refuses anything that is not a tlean checkpoint."""
    path = _path(path)
    if not (path / _META).is_file():
        raise CheckpointError(f"{path} is not a tlean checkpoint: refusing to delete it")
    shutil.rmtree(path)


def _differences(meta: dict, names: list[str], like_leaves: list, like: Any, check_config: bool) -> list[str]:
    saved = {e["name"]: e for e in meta["leaves"]}
    ours = dict(zip(names, like_leaves))
    diffs = []
    missing = [n for n in names if n not in saved]
    unexpected = [n for n in saved if n not in ours]
    if missing:
        diffs.append(f"in `like` but not in the checkpoint: {missing}")
    if unexpected:
        diffs.append(f"in the checkpoint but not in `like`: {unexpected}")
    for name, leaf in ours.items():
        if name not in saved:
            continue
        want, got = _describe(leaf), saved[name]
        if want["kind"] != got["kind"]:
            diffs.append(f"{name}: `like` has a {want['kind']} leaf, the checkpoint a {got['kind']}")
        if want["shape"] != got["shape"]:
            diffs.append(f"{name}: `like` has shape {tuple(want['shape'])}, the checkpoint {tuple(got['shape'])}")
        if want["dtype"] != got["dtype"]:
            diffs.append(f"{name}: `like` has dtype {want['dtype']}, the checkpoint {got['dtype']}")
    if not missing and not unexpected and [e["name"] for e in meta["leaves"]] != names:
        diffs.append("the leaves are in a different order than in `like`")
    if check_config:
        layers, saved_layers = _layers(like), meta.get("layers", {})
        for where in sorted(set(layers) | set(saved_layers)):
            a, b = layers.get(where), saved_layers.get(where)
            if a != b:
                diffs.append(f"layer config at {where}: `like` has {a or 'no Model'}, the checkpoint {b or 'no Model'}")
    return diffs


def _key_dtype(kind: str) -> Any:
    """The dtype of a key array of the implementation named in ``"key:<impl>"``."""
    return jax.eval_shape(lambda: jax.random.key(0, impl=kind[len("key:"):])).dtype


def _target(entry: dict, leaf: Any) -> jax.ShapeDtypeStruct:
    """The abstract array orbax restores a leaf into, with ``like``'s sharding when it has one."""
    sharding = None if leaf is None or isinstance(leaf, np.ndarray) else getattr(leaf, "sharding", None)
    if sharding is None:
        sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    if entry["kind"].startswith("key:"):
        key = jax.ShapeDtypeStruct(tuple(entry["shape"]), _key_dtype(entry["kind"]))
        data = jax.eval_shape(jax.random.key_data, key)
        return jax.ShapeDtypeStruct(data.shape, data.dtype, sharding=sharding)
    return jax.ShapeDtypeStruct(tuple(entry["shape"]), jnp.dtype(entry["dtype"]), sharding=sharding)


def _finish(entry: dict, array: Any, like_leaf: Any) -> Any:
    kind = entry["kind"]
    if kind.startswith("key:"):
        return jax.random.wrap_key_data(array, impl=kind[len("key:"):])
    if kind.startswith("python:"):
        return {"python:bool": bool, "python:int": int, "python:float": float}[kind](array)
    if isinstance(like_leaf, np.ndarray):
        return np.asarray(array)
    return array


def restore(
    path: str | os.PathLike,
    like: Any = None,
    *,
    check_config: bool = True,
    jax_version: str = "warn",
) -> Any:
    """Read the checkpoint at ``path`` into the structure of ``like``.

    Args:
      path: a directory written by :func:`save`.
      like: a pytree of the same structure: concrete arrays, or abstract
        ``jax.ShapeDtypeStruct`` (``jax.eval_shape(make_model)``); each array is
        restored with the sharding of its ``like`` leaf (single device if it has
        none). ``None`` returns a flat ``{name: array}`` dict of everything saved.
      check_config: compare the ``repr`` of every Model's layer with the saved one
        (``False`` loads weights into a model whose configuration differs in values
        that do not change shapes, e.g. a dropout rate).
      jax_version: what a different saved JAX version does: ``"warn"`` (arrays load
        unchanged, but bit-identical resumption is only promised for one JAX
        version), ``"error"`` or ``"ignore"``.

    Returns:
      A pytree like ``like`` holding the saved arrays.

    Raises:
      FileNotFoundError: nothing at ``path``.
      CheckpointError: the checkpoint does not match ``like`` (every difference in
        structure, shape, dtype and layer config is listed), or it is truncated or
        corrupted (an unreadable file or a checksum that does not match).
    """
    if jax_version not in ("warn", "error", "ignore"):
        raise ValueError(f"restore: jax_version must be 'warn', 'error' or 'ignore', got {jax_version!r}")
    path = _resolve(_path(path))
    meta = _read_meta(path)
    entries = meta["leaves"]

    if like is None:
        names, like_leaves, treedef = [e["name"] for e in entries], [None] * len(entries), None
    else:
        leaves_with_paths, treedef = jax.tree_util.tree_flatten_with_path(like)
        names = _names([p for p, _ in leaves_with_paths])
        like_leaves = [leaf for _, leaf in leaves_with_paths]
        diffs = _differences(meta, names, like_leaves, like, check_config)
        if diffs:
            raise CheckpointError(f"the checkpoint at {path} does not match `like`:\n  " + "\n  ".join(diffs))

    saved_version = meta.get("jax_version")
    if saved_version != jax.__version__ and jax_version != "ignore":
        message = (f"the checkpoint at {path} was written with JAX {saved_version}, this is JAX {jax.__version__}: "
                   "arrays load unchanged, but a resumed run is bit-identical only on the same JAX version")
        if jax_version == "error":
            raise CheckpointError(message)
        warnings.warn(message, stacklevel=2)

    values = [_finish(e, a, leaf) for e, a, leaf in zip(entries, _read_arrays(path, entries, like_leaves), like_leaves)]
    if like is None:
        return dict(zip(names, values))
    return jax.tree_util.tree_unflatten(treedef, values)


def _read_arrays(path: Path, entries: list[dict], like_leaves: list) -> list:
    """Every leaf's stored value (key data for keys), read by orbax and checked against its checksum."""
    targets = {str(i): _target(e, leaf) for i, (e, leaf) in enumerate(zip(entries, like_leaves))
               if not e["kind"].startswith("python:")}
    in_orbax = {i: t for i, t in targets.items() if math.prod(t.shape) > 0}
    try:
        loaded = _checkpointer().restore(path, in_orbax) if in_orbax else {}
    except Exception as err:  # tensorstore and orbax raise many types for damaged files
        raise CheckpointError(
            f"the checkpoint at {path} is truncated or corrupted: orbax could not read it "
            f"({type(err).__name__}: {str(err)[:300]})"
        ) from err
    arrays, bad = [], []
    for i, entry in enumerate(entries):
        i = str(i)
        if i not in targets:  # a Python scalar, kept in tlean.json
            arrays.append(entry["value"])
            continue
        if i not in loaded:  # a zero-size array
            arrays.append(jax.device_put(jnp.zeros(targets[i].shape, targets[i].dtype), targets[i].sharding))
            continue
        array = loaded[i]
        host = _host(array)
        if entry.get("checksum") and host is not None and _checksum(host) != entry["checksum"]:
            bad.append(entry["name"])
        arrays.append(array)
    if bad:
        raise CheckpointError(f"the checkpoint at {path} is corrupted: the checksums of {bad} do not match")
    return arrays
