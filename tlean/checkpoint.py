"""Checkpoints of Models, TrainStates and any pytree, on orbax-checkpoint.

``save(path, tree)`` writes a directory exactly at ``path``: orbax's array files
plus ``tlean.json``, which records every leaf (its PyTorch-style name, shape, dtype
and a checksum), the configuration of every Model's layer (in a canonical form
that names functions by their qualified name, never by a memory address, so a
fresh process reads the same), the JAX version and any metadata the caller adds.
``tlean.json`` carries a checksum of its own content, so a changed byte anywhere
in a checkpoint, metadata included, is a :class:`CheckpointError`, never a
silently different value. ``restore(path, like=tree)`` reads it back into the
structure of ``like`` (concrete arrays, or abstract ``jax.ShapeDtypeStruct`` with
shardings, e.g. from ``jax.eval_shape``) after checking structure, shapes, dtypes
and layer configs; everything that differs is listed in one error.

Writes are atomic: the checkpoint is assembled in a hidden sibling directory and
renamed into place only when complete, so a crash mid-save leaves the previous
checkpoint at ``path`` (or, if the crash hits the overwrite itself, in a sibling
that ``restore`` finds) and never a half-written one. A truncated or corrupted
checkpoint raises :class:`CheckpointError`; nothing is returned half-loaded.

PRNG key arrays (such as ``TrainState.key``) are saved as their key data and
re-wrapped with the saved implementation. NumPy leaves come back as NumPy arrays of
the same dtype, 64-bit ones included (JAX without ``jax_enable_x64`` cannot hold
them); arrays of strings or objects are refused by ``save``.

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

import functools
import hashlib
import json
import math
import os
import re
import shutil
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tlean._core import Layer, layer_repr
from tlean._model import Model

__all__ = ["CheckpointError", "clean_debris", "delete", "read_metadata", "restore", "save"]

# 3: a Model's leaves are named by the walk (model.0.weight); 2: tlean.json carries its own
# checksum and canonical layer configs; 1 and 2 are still read
FORMAT = 3
_META = "tlean.json"
_TMP = ".tlean-tmp-"
_OLD = ".tlean-old-"
_DELETING = ".tlean-deleting-"


class CheckpointError(ValueError):
    """A checkpoint that cannot be restored: missing, truncated, corrupted or not matching ``like``."""


# -- flattening ------------------------------------------------------------------------


def _is_key(x: Any) -> bool:
    dtype = getattr(x, "dtype", None)
    return dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key)


def _name(path: tuple) -> str:
    """The key path with dots (``step``, ``opt_state.0.mu.0.weight``)."""
    return jax.tree_util.keystr(path, simple=True, separator=".") or "(root)"


def _names(tree: Any, walk: bool = True) -> list[str]:
    """A name for every leaf of ``tree``, in ``jax.tree.leaves`` order.

    A Model's arrays go by the names the one walk gives them (``model.0.weight``,
    ``model.encoder.layers.*.linear1.weight``: :meth:`tlean.Model.named_parameters`), other
    leaves by their key path. Format-2 checkpoints named every leaf by its key path
    (``model.params.0.weight``): ``walk=False`` gives those names back.
    """
    names = []
    for path, node in jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: walk and isinstance(x, Model))[0]:
        if isinstance(node, Model):
            prefix = _name(path) + "." if path else ""
            names.extend(prefix + leaf.name for leaf in node.named_leaves())
        else:
            names.append(_name(path))
    if len(set(names)) != len(names):  # "0" a dict key and 0 an index would collide: use the unambiguous form
        names = [jax.tree_util.keystr(p) or "(root)" for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]
    return names


def _leaf_kind(leaf: Any) -> str:
    if _is_key(leaf):
        try:
            impl = jax.random.key_impl(leaf)
        except TypeError:  # an abstract key (ShapeDtypeStruct): no public accessor for its implementation
            impl = jax.random.key_impl(jax.random.key(0, impl=leaf.dtype._impl))
        return f"key:{impl}"
    if isinstance(leaf, np.generic):  # np.float64 is a float subclass: keep it a NumPy scalar
        return "array"
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
        return {"kind": kind, "shape": [], "dtype": kind[len("python:") :]}
    if not hasattr(leaf, "shape") or not hasattr(leaf, "dtype"):
        raise TypeError(
            f"cannot checkpoint a leaf of type {type(leaf).__name__}: leaves must be arrays or Python scalars"
        )
    if kind == "array" and not _numeric(leaf.dtype):
        raise TypeError(f"cannot checkpoint an array of dtype {leaf.dtype}: only numbers and booleans are stored")
    return {"kind": kind, "shape": list(leaf.shape), "dtype": str(leaf.dtype)}


def _numeric(dtype: Any) -> bool:
    try:
        return dtype == np.bool_ or bool(jnp.issubdtype(dtype, np.number))
    except TypeError:
        return False


def _layers(tree: Any, render: Callable[[Any], str] | None = None) -> dict[str, str]:
    """``{path of each Model in tree: its layer's configuration}`` (canonical, or as ``render`` writes it)."""
    found = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: isinstance(x, Model))[0]
    return {_name(p): (render or _config)(m.layer) for p, m in found if isinstance(m, Model)}


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _config(value: Any) -> str:
    """A layer configuration as text that is the same in every process: the layer's ``repr``
    (the fields that differ from their defaults), with functions written as
    ``module.qualname``, ``functools.partial`` as its function and arguments, and no
    memory address anywhere."""
    if isinstance(value, Layer):
        return layer_repr(value, _config)
    if isinstance(value, functools.partial):
        parts = [_config(value.func)] + [_config(a) for a in value.args]
        parts += [f"{k}={_config(v)}" for k, v in sorted(value.keywords.items())]
        return f"partial({', '.join(parts)})"
    if isinstance(value, (tuple, list)):
        inner = ", ".join(_config(v) for v in value)
        return f"({inner}{',' if len(value) == 1 else ''})" if isinstance(value, tuple) else f"[{inner}]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_config(k)}: {_config(v)}" for k, v in value.items()) + "}"
    if isinstance(value, np.dtype):
        return value.name
    if not isinstance(value, Layer) and (isinstance(value, type) or callable(value)):
        name = getattr(value, "__qualname__", None) or getattr(value, "__name__", None)
        if isinstance(name, str):
            module = getattr(value, "__module__", None)
            return f"{module}.{name}" if isinstance(module, str) else name
    return _ADDRESS.sub("", repr(value))


def _checksum(array: np.ndarray) -> str:
    array = np.ascontiguousarray(array)
    return hashlib.blake2b(array.tobytes(), digest_size=16).hexdigest()


def _storable(leaf: Any) -> Any:
    if _is_key(leaf):
        return jax.random.key_data(leaf)
    if isinstance(leaf, (bool, int, float)) and not isinstance(leaf, np.generic):
        return None  # stored in tlean.json
    return leaf


def _host(array: Any) -> np.ndarray | None:
    """The array on the host if this process holds all of it, else ``None`` (no checksum)."""
    if isinstance(array, jax.Array) and not array.is_fully_addressable:
        return None
    return np.asarray(array)


# -- the directory --------------------------------------------------------------------


def _meta_checksum(meta: dict) -> str:
    """The checksum of ``tlean.json``'s content (everything but the checksum itself), in a canonical JSON form."""
    body = {k: v for k, v in meta.items() if k != "checksum"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


_KINDS = ("array", "python:bool", "python:int", "python:float")
_PYTHON_TYPES = {"python:bool": (bool,), "python:int": (int,), "python:float": (float, int)}


def _schema_error(meta: dict) -> str | None:
    """What is wrong with the structure of ``tlean.json``'s content, or ``None``."""
    if not isinstance(meta, dict):
        return "it is not a JSON object"
    if not isinstance(meta.get("format"), int) or isinstance(meta.get("format"), bool):
        return "it has no integer 'format'"
    if meta["format"] > FORMAT:
        return None  # a newer format: refused by the caller with its own message
    if not isinstance(meta.get("leaves"), list):
        return "it has no list of 'leaves'"
    for field, kind in (("layers", dict), ("metadata", dict)):
        if not isinstance(meta.get(field, {}), kind):
            return f"its {field!r} is not a {kind.__name__}"
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.get("layers", {}).items()):
        return "its 'layers' are not text"
    if not isinstance(meta.get("jax_version", ""), str):
        return "its 'jax_version' is not text"
    for i, entry in enumerate(meta["leaves"]):
        where = f"leaf {i}"
        if not isinstance(entry, dict):
            return f"{where} is not a JSON object"
        for field in ("name", "kind", "shape", "dtype"):
            if field not in entry:
                return f"{where} has no {field!r} field (fields: {sorted(entry)})"
        name, kind, shape = entry["name"], entry["kind"], entry["shape"]
        if not isinstance(name, str):
            return f"{where}'s name is not text"
        where = f"leaf {name!r}"
        if not isinstance(kind, str) or not (kind in _KINDS or kind.startswith("key:")):
            return f"{where} has an unknown kind {kind!r}"
        if not (
            isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
        ):
            return f"{where} has a shape that is not a list of sizes: {shape!r}"
        if not (entry.get("checksum") is None or isinstance(entry.get("checksum"), str)):
            return f"{where}'s checksum is not text"
        if kind.startswith("python:"):
            value = entry.get("value", None)
            if (
                "value" not in entry
                or isinstance(value, bool) != (kind == "python:bool")
                or not isinstance(value, _PYTHON_TYPES[kind])
            ):
                return f"{where} of kind {kind} has no value of that type (got {value!r})"
            continue
        if kind.startswith("key:"):
            try:
                if str(_key_dtype(kind)) != entry["dtype"]:
                    return f"{where} has dtype {entry['dtype']!r}, not that of its kind {kind!r}"
            except Exception:
                return f"{where} names an unknown PRNG implementation {kind[len('key:') :]!r}"
            continue
        try:
            dtype = np.dtype(jnp.dtype(entry["dtype"]))
        except Exception:
            return f"{where} has an unknown dtype {entry['dtype']!r}"
        if kind == "array" and not _numeric(dtype):
            return f"{where} has a non-numeric dtype {dtype}"
    return None


def _read_meta(path: Path) -> dict:
    file = path / _META
    if not file.is_file():
        raise CheckpointError(f"{path} is not a tlean checkpoint: it has no {_META}")
    try:
        meta = json.loads(file.read_text())
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise CheckpointError(
            f"the checkpoint at {path} is corrupted or truncated: cannot read {_META} ({err})"
        ) from None
    problem = _schema_error(meta)
    if problem is not None:
        raise CheckpointError(f"the checkpoint at {path} is corrupted: {file} is not valid: {problem}")
    if meta["format"] > FORMAT:
        raise CheckpointError(f"the checkpoint at {path} has format {meta['format']}; this tlean reads up to {FORMAT}")
    if meta["format"] >= 2:
        if not isinstance(meta.get("checksum"), str):
            raise CheckpointError(f"the checkpoint at {path} is corrupted: {file} has no checksum of its own")
        if meta["checksum"] != _meta_checksum(meta):
            raise CheckpointError(
                f"the checkpoint at {path} is corrupted: the checksum of {file} does not match its "
                "content (a changed name, value, shape, dtype, layer config or metadata)"
            )
    return meta


def _resolve(path: Path) -> Path:
    """``path``, or the previous checkpoint a save interrupted mid-overwrite left beside it."""
    if path.exists():
        return path
    olds = (
        sorted(path.parent.glob(f".{path.name}{_OLD}*"), key=lambda p: p.stat().st_mtime)
        if path.parent.is_dir()
        else []
    )
    olds = [p for p in olds if (p / _META).is_file()]
    if olds:
        warnings.warn(
            f"no checkpoint at {path}: a save was interrupted while replacing it; restoring the previous "
            f"checkpoint from {olds[-1]}",
            stacklevel=3,
        )
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
    names = _names(tree)
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
            if isinstance(array, jax.Array) and array.is_deleted():
                raise RuntimeError(
                    f"checkpoint.save: {entry['name']} has been deleted (donated to a jitted step?): "
                    "save the state the step returned, not the one it was given"
                )
            host = _host(array)
            entry["checksum"] = None if host is None else _checksum(host)
    metadata = metadata if metadata is not None else {}
    if not isinstance(metadata, dict):
        raise TypeError(f"checkpoint.save: metadata must be a dict, got {type(metadata).__name__}")
    json.dumps(metadata)  # fails before anything is written if metadata is not JSON
    _check_json_exact(metadata, "metadata")
    meta = {
        "format": FORMAT,
        "jax_version": jax.__version__,
        "layers": _layers(tree),
        "leaves": entries,
        "metadata": metadata,
    }
    meta["checksum"] = _meta_checksum(meta)
    text = json.dumps(meta, indent=1)

    if path.exists():
        if not overwrite:
            raise FileExistsError(f"checkpoint.save: {path} exists (pass overwrite=True to replace it)")
        if not (path.is_dir() and (path / _META).is_file()):
            raise FileExistsError(
                f"checkpoint.save: {path} exists and is not a tlean checkpoint; refusing to replace it"
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    for pattern in (_TMP, _DELETING):  # left by an earlier interrupted save or deletion
        for stale in path.parent.glob(f".{path.name}{pattern}*"):
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


def _check_json_exact(value: Any, where: str) -> None:
    """Refuse what JSON would silently change (tuples into lists, int keys into strings)."""
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(
                    f"checkpoint.save: {where} has the key {k!r}; JSON would read it back as the string "
                    f"{json.dumps(k) if not isinstance(k, str) else k!r}: use string keys"
                )
            _check_json_exact(v, f"{where}[{k!r}]")
    elif isinstance(value, tuple):
        raise TypeError(f"checkpoint.save: {where} is a tuple; JSON would read it back as a list: pass a list")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_json_exact(v, f"{where}[{i}]")


def read_metadata(path: str | os.PathLike) -> dict:
    """The ``metadata`` dict given to :func:`save` (empty if none)."""
    return _read_meta(_resolve(_path(path)))["metadata"]


def delete(path: str | os.PathLike) -> None:
    """Delete the checkpoint at ``path``; refuses anything that is not a tlean checkpoint.

    The directory is first renamed to a hidden ``.<name>.tlean-deleting-*`` sibling and
    then removed, so a crash mid-deletion never leaves a half-deleted checkpoint under
    its own name (:func:`clean_debris` removes what is left).
    """
    path = _path(path)
    if not (path / _META).is_file():
        raise CheckpointError(f"{path} is not a tlean checkpoint: refusing to delete it")
    doomed = path.parent / f".{path.name}{_DELETING}{uuid.uuid4().hex}"
    _rename(path, doomed)  # atomic: a crash from here on leaves hidden debris, never a half-deleted checkpoint
    _fsync_dir(path.parent)
    shutil.rmtree(doomed, ignore_errors=True)


def clean_debris(directory: str | os.PathLike) -> list[Path]:
    """Remove what interrupted saves and deletions left in ``directory``; return what was removed.

    Hidden ``.<name>.tlean-tmp-*`` (a save that never finished) and
    ``.<name>.tlean-deleting-*`` (a deletion that never finished) are removed; an
    ``.<name>.tlean-old-*`` is removed only when ``<name>`` holds a complete
    checkpoint again (otherwise it is the one :func:`restore` falls back to).
    """
    directory = _path(directory)
    if not directory.is_dir():
        return []
    removed = []
    for p in directory.iterdir():
        name = p.name
        if not (name.startswith(".") and p.is_dir()):
            continue
        debris = _TMP in name or _DELETING in name
        if not debris and _OLD in name:
            debris = (directory / name[1 : name.index(_OLD)] / _META).is_file()
        if debris:
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


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
        layers = _layers(like, None if meta["format"] >= 2 else repr)  # format 1 recorded repr
        saved_layers = meta.get("layers", {})
        for where in sorted(set(layers) | set(saved_layers)):
            a, b = layers.get(where), saved_layers.get(where)
            if a != b:
                diffs.append(f"layer config at {where}: `like` has {a or 'no Model'}, the checkpoint {b or 'no Model'}")
    return diffs


def _key_dtype(kind: str) -> Any:
    """The dtype of a key array of the implementation named in ``"key:<impl>"``."""
    return jax.eval_shape(lambda: jax.random.key(0, impl=kind[len("key:") :])).dtype


def _on_host(entry: dict, leaf: Any) -> bool:
    """Whether a leaf comes back as a NumPy array: ``like`` has one there, or (``like=None``) JAX
    cannot hold its dtype (64-bit without ``jax_enable_x64``)."""
    if isinstance(leaf, (np.ndarray, np.generic)):
        return True
    if entry["kind"] != "array":
        return False
    dtype = np.dtype(jnp.dtype(entry["dtype"]))
    return leaf is None and jax.dtypes.canonicalize_dtype(dtype) != dtype


def _target(entry: dict, leaf: Any) -> Any:
    """What orbax restores a leaf into: a NumPy array, or an abstract array with ``like``'s sharding."""
    if _on_host(entry, leaf):
        return np.empty(tuple(entry["shape"]), np.dtype(jnp.dtype(entry["dtype"])))
    sharding = None if leaf is None else getattr(leaf, "sharding", None)
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
        return jax.random.wrap_key_data(array, impl=kind[len("key:") :])
    if kind.startswith("python:"):
        return {"python:bool": bool, "python:int": int, "python:float": float}[kind](array)
    if isinstance(like_leaf, np.generic):
        return like_leaf.dtype.type(np.asarray(array)[()])
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
        names = _names(like, walk=meta["format"] >= 3)
        like_leaves = [leaf for _, leaf in leaves_with_paths]
        diffs = _differences(meta, names, like_leaves, like, check_config)
        if diffs:
            raise CheckpointError(f"the checkpoint at {path} does not match `like`:\n  " + "\n  ".join(diffs))

    saved_version = meta.get("jax_version")
    if saved_version != jax.__version__ and jax_version != "ignore":
        message = (
            f"the checkpoint at {path} was written with JAX {saved_version}, this is JAX {jax.__version__}: "
            "arrays load unchanged, but a resumed run is bit-identical only on the same JAX version"
        )
        if jax_version == "error":
            raise CheckpointError(message)
        warnings.warn(message, stacklevel=2)

    values = [_finish(e, a, leaf) for e, a, leaf in zip(entries, _read_arrays(path, entries, like_leaves), like_leaves)]
    if like is None:
        return dict(zip(names, values))
    return jax.tree_util.tree_unflatten(treedef, values)


def _read_arrays(path: Path, entries: list[dict], like_leaves: list) -> list:
    """Every leaf's stored value (key data for keys), read by orbax and checked against its checksum."""
    targets = {
        str(i): _target(e, leaf)
        for i, (e, leaf) in enumerate(zip(entries, like_leaves))
        if not e["kind"].startswith("python:")
    }
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
            target = targets[i]
            arrays.append(
                target
                if isinstance(target, np.ndarray)
                else jax.device_put(jnp.zeros(target.shape, target.dtype), target.sharding)
            )
            continue
        array = loaded[i]
        host = _host(array)
        if host is not None and (host.dtype != targets[i].dtype or host.shape != targets[i].shape):
            bad.append(entry["name"])  # orbax cast it: the bytes cannot be the saved ones
        elif entry.get("checksum") and host is not None and _checksum(host) != entry["checksum"]:
            bad.append(entry["name"])
        arrays.append(array)
    if bad:
        raise CheckpointError(f"the checkpoint at {path} is corrupted: the checksums of {bad} do not match")
    return arrays
