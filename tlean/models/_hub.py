"""Hugging Face directories: ``from_pretrained`` / ``save_pretrained`` over one registry of families.

Each family module (``_gpt2``, ``_llama``, ``_bert``, ``_vit``) defines one :class:`Family`
record named ``FAMILY``; :data:`FAMILIES` maps transformers' ``model_type`` to the module,
imported only when a directory of that type is read, so a family whose module does not
exist yet is simply not supported. tlean never downloads: the directory must be local.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tlean._core import init_shapes
from tlean._model import Model
from tlean._walk import named_leaves
from tlean.interop import load_torch_state_dict
from tlean.layers._util import check_param_dtype

__all__ = ["FAMILIES", "Family", "family", "from_pretrained", "save_pretrained", "supported"]


@dataclasses.dataclass(frozen=True)
class Family:
    """What tlean needs to know to read and write one transformers model family.

    Attributes:
      model_type: transformers' ``config.json`` ``model_type`` (``"gpt2"``).
      config: the family's frozen config dataclass; it has ``from_hf(dict) -> config``
        (a classmethod reading ``config.json``'s fields, refusing values tlean does not
        support with a ``ValueError`` naming the field) and ``to_hf() -> dict``.
      layer: ``config -> Layer``, the model whose walk names equal transformers' keys.
        :func:`from_pretrained` passes ``dtype=`` and ``param_dtype=`` as keywords when
        ``layer`` takes them (a layer class with tlean's numeric fields does); otherwise
        the loaded arrays are cast to ``param_dtype``. The layer keeps the config as its
        ``config`` field, so :func:`save_pretrained` can write it back.
      architecture: the transformers class name written to ``config.json``'s
        ``architectures`` (``"GPT2LMHeadModel"``).
      base_prefix: the base model's prefix (``"transformer."``); hub checkpoints of the
        bare base model omit it.
      ignore: regexes of keys transformers saves or reads but tlean has no leaf for
        (non-persistent buffers such as ``attn.bias``, ``rotary_emb.inv_freq``), matched
        with ``re.search`` as transformers' ``_keys_to_ignore_on_load_unexpected``.
    """

    model_type: str
    config: type
    layer: Callable[..., Any]
    architecture: str
    base_prefix: str = ""
    ignore: tuple[str, ...] = ()


#: ``model_type`` -> the module defining its ``FAMILY`` (imported on first use).
FAMILIES: dict[str, str] = {
    "gpt2": "tlean.models._gpt2",
    "llama": "tlean.models._llama",
    "bert": "tlean.models._bert",
    "vit": "tlean.models._vit",
}

_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def _load_family(model_type: str) -> Family | None:
    module_name = FAMILIES.get(model_type)
    if module_name is None:
        return None
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name == module_name:  # the family is not written yet; any other missing module is a real error
            return None
        raise
    return module.FAMILY


def supported() -> list[str]:
    """The ``model_type``\\ s whose family module is present, sorted."""
    return sorted(t for t in FAMILIES if _load_family(t) is not None)


def family(model_type: Any) -> Family:
    """The :class:`Family` of a ``model_type``; a ``ValueError`` listing the supported ones otherwise."""
    found = _load_family(model_type) if isinstance(model_type, str) else None
    if found is None:
        raise ValueError(f"model_type {model_type!r} is not supported by tlean.models; supported: {supported()}")
    return found


# -- reading ---------------------------------------------------------------------------------
def from_pretrained(path: str | Path, *, param_dtype: Any = None, dtype: Any = None) -> Any:
    """The Model of a local Hugging Face directory (``config.json`` + weights).

    Reads ``config.json`` (its ``model_type`` picks the family: gpt2, and llama / bert /
    vit where tlean has them) and the weights from ``model.safetensors`` (read with
    safetensors' NumPy API: torch is not needed), a sharded
    ``model.safetensors.index.json``, or ``pytorch_model.bin`` (then torch is imported and
    reads it with ``weights_only=True``). Keys may carry the family's base prefix
    (``transformer.``) or not, whichever the model has, the family's non-persistent buffers (``attn.bias``) are
    ignored, and tied keys (``lm_head.weight``) may be present (equal) or absent. Missing,
    unexpected and mis-shaped tensors are all listed in one ``ValueError``.

    Args:
      path: the directory. Nothing is downloaded: a missing directory or file is a
        ``FileNotFoundError`` naming it.
      param_dtype: the storage dtype (transformers' ``dtype`` / ``torch_dtype``); ``None``
        is transformers' ``"auto"``: the ``dtype`` recorded in ``config.json``, else that of
        the stored tensors.
      dtype: the computation dtype (``None``: the result type of inputs and params).

    Returns:
      A :class:`~tlean.Model` whose logits equal transformers' for the same directory.
    """
    path = Path(path)
    config_file = path / "config.json"
    if not path.is_dir():
        raise FileNotFoundError(
            f"from_pretrained: {str(path)!r} is not a directory (tlean reads local Hugging Face "
            f"directories and never downloads)"
        )
    if not config_file.is_file():
        raise FileNotFoundError(f"from_pretrained: {str(config_file)!r} does not exist")
    hf_config = json.loads(config_file.read_text())
    fam = family(hf_config.get("model_type"))
    config = fam.config.from_hf(hf_config)
    weights_file, state_dict = _read_weights(path)
    if param_dtype is None:
        param_dtype = _recorded_dtype(hf_config) or _stored_dtype(state_dict) or jnp.float32
    param_dtype = _as_dtype(param_dtype)
    layer, cast = _make_layer(fam, config, dtype, param_dtype)
    state_dict = _normalise_keys(fam, state_dict, layer)
    abstract = Model(layer, *init_shapes(layer))
    try:
        model = load_torch_state_dict(abstract, state_dict)
    except ValueError as err:
        raise ValueError(f"from_pretrained({str(path)!r}): {weights_file.name}: {err}") from None
    if cast:
        model = model.replace(
            params=jax.tree.map(
                lambda a: a.astype(param_dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, model.params
            )
        )
    return model


def _read_weights(path: Path) -> tuple[Path, dict[str, Any]]:
    for name in _WEIGHTS:
        file = path / name
        if file.is_file():
            break
    else:
        raise FileNotFoundError(f"from_pretrained: {str(path)!r} holds none of {list(_WEIGHTS)}")
    if name.endswith(".index.json"):
        shards = sorted(set(json.loads(file.read_text())["weight_map"].values()))
        state_dict: dict[str, Any] = {}
        for shard in shards:
            if not (path / shard).is_file():
                raise FileNotFoundError(f"from_pretrained: {str(path / shard)!r} (listed in {name}) does not exist")
            state_dict.update(_read_file(path / shard))
        return file, state_dict
    return file, _read_file(file)


def _read_file(file: Path) -> dict[str, Any]:
    if file.suffix == ".safetensors":
        import ml_dtypes  # noqa: F401  (registers bfloat16 with NumPy before safetensors reads it)
        from safetensors import safe_open

        with safe_open(str(file), framework="np") as f:
            return {k: f.get_tensor(k) for k in f.keys()}
    import torch  # only for a pickled checkpoint

    return dict(torch.load(str(file), map_location="cpu", weights_only=True))


def _recorded_dtype(hf_config: dict) -> Any:
    value = hf_config.get("dtype") or hf_config.get("torch_dtype")
    if isinstance(value, str) and value != "auto":
        return value.removeprefix("torch.")
    return None


def _stored_dtype(state_dict: dict) -> Any:
    for value in state_dict.values():
        name = str(value.dtype).removeprefix("torch.")
        if name in ("float16", "bfloat16", "float32", "float64"):
            return name
    return None


def _as_dtype(param_dtype: Any) -> Any:
    return check_param_dtype("from_pretrained", "param_dtype", param_dtype)


def _make_layer(fam: Family, config: Any, dtype: Any, param_dtype: Any) -> tuple[Any, bool]:
    """The family's layer with the numerics it takes; ``cast`` says the params must be cast afterwards."""
    try:
        takes = inspect.signature(fam.layer).parameters
    except (TypeError, ValueError):
        takes = {}
    options = {k: v for k, v in (("dtype", dtype), ("param_dtype", param_dtype)) if k in takes}
    if dtype is not None and "dtype" not in options:
        raise TypeError(f"from_pretrained: the {fam.model_type} model takes no dtype")
    return fam.layer(config, **options), "param_dtype" not in options


def _normalise_keys(fam: Family, state_dict: dict[str, Any], layer: Any) -> dict[str, Any]:
    """Drop the ignored keys; add the base prefix where the checkpoint is the bare base model, or strip
    it where the tlean model is the base model and the checkpoint has a head around it."""
    ignore = [re.compile(p) for p in fam.ignore]
    known = {
        name
        for leaf in named_leaves(layer, *init_shapes(layer))
        for n in (leaf.name, *leaf.aliases)
        for name in leaf.torch_names(n)
    }
    out = {}
    for key, value in state_dict.items():
        if any(p.search(key) for p in ignore):
            continue
        prefix = fam.base_prefix
        if key not in known and prefix and prefix + key in known:
            key = prefix + key
        elif key not in known and prefix and key.startswith(prefix) and key[len(prefix) :] in known:
            key = key[len(prefix) :]
        out[key] = value
    return out


# -- writing ---------------------------------------------------------------------------------
def _family_of(model: Any) -> Family:
    config = getattr(getattr(model, "layer", None), "config", None)
    module = sys.modules.get(type(config).__module__) if config is not None else None
    fam = getattr(module, "FAMILY", None)
    if not isinstance(fam, Family) or not isinstance(config, fam.config):
        raise TypeError(
            f"save_pretrained needs a Model of a tlean.models family ({supported()}) whose layer carries "
            f"its config, got {model!r}"
        )
    return fam


def save_pretrained(model: Any, path: str | Path) -> None:
    """Write ``model`` as a Hugging Face directory that transformers' ``from_pretrained`` loads.

    ``config.json`` holds ``model_type``, ``architectures``, the config's fields and the
    parameter dtype (``dtype``, and ``torch_dtype`` for transformers before 4.56);
    ``model.safetensors`` holds every array under transformers' keys, each stacked layer
    split into its ``h.{i}`` keys, a tied array once (under its canonical name).

    Args:
      model: a Model of a ``tlean.models`` family (``models.gpt2``, or one from
        :func:`from_pretrained`).
      path: the directory (created if needed; files in it are overwritten).
    """
    from safetensors.numpy import save_file

    fam = _family_of(model)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, np.ndarray] = {}
    for leaf in model.named_leaves():
        for key, (_, value) in zip(leaf.torch_names(), leaf.unstack()):
            tensors[key] = np.ascontiguousarray(np.asarray(value))
    floating = [v.dtype for v in tensors.values() if jnp.issubdtype(v.dtype, jnp.floating)]
    dtype_name = jnp.dtype(floating[0]).name if floating else "float32"
    config = {
        **model.layer.config.to_hf(),
        "model_type": fam.model_type,
        "architectures": [fam.architecture],
        "dtype": dtype_name,
        "torch_dtype": dtype_name,
    }
    save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})
    (path / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
