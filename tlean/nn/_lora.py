"""``nn.lora(model, rank, alpha, targets=...)``: LoRA adapters on a model's Linears, the base frozen; ``nn.lora.merge``.

The model's layer tree is rewritten: each targeted :class:`~tlean.layers.Linear` becomes a
:class:`~tlean.layers.LoRALinear` (the same base names plus ``lora_A.weight`` and
``lora_B.weight``), wherever it sits (in a Seq, a composite's field, a tuple field, inside
a :class:`~tlean.layers.Stacked` layer, whose adapters are stacked too). A composite whose
child is replaced is rebuilt from its configuration where the child comes from a
configuration field (``dataclasses.replace``), and is otherwise copied with the new child
as an instance of a subclass that compares (and hashes) by its children too, so a layer
with adapters never equals the layer without them (jit and the shape caches tell them apart).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax

from tlean._core import Layer, Seq
from tlean._model import Model
from tlean.layers._combinators import Parallel
from tlean.layers._linear import Linear
from tlean.layers._lora import LoRALinear
from tlean.seed import as_key

__all__ = ["ADAPTERS", "FREEZE_BASE", "lora", "merge"]

#: Parameter names of the adapters (``re.fullmatch``): ``...lora_A.weight`` and ``...lora_B.weight``.
ADAPTERS = r"(?:.*\.)?lora_[AB]\.weight"
#: The ``frozen`` pattern :func:`lora` adds to the Model: every parameter that is not an adapter.
FREEZE_BASE = rf"(?!{ADAPTERS}$).*"


# -- walking and rewriting the layer tree ------------------------------------------------------
def _found(
    layer: Layer, kind: type | tuple[type, ...], where: tuple = (), name: tuple = (), stack: tuple = ()
) -> Iterator[tuple[tuple, str, tuple, Layer]]:
    """``(params path, name, stacked axis sizes, layer)`` of every layer of exactly type ``kind``, in walk order."""
    if type(layer) in (kind if isinstance(kind, tuple) else (kind,)):
        yield where, ".".join(map(str, name)), stack, layer
        return
    stacked = layer.stacked()
    if stacked is not None:
        yield from _found(stacked[0], kind, where, name + ("*",), stack + (stacked[1],))
        return
    for key, child in layer.children():
        for i, c in enumerate(child) if isinstance(child, tuple) else [(None, child)]:
            sub = (key,) if i is None else (key, i)
            yield from _found(c, kind, where + sub, name + sub, stack)


def _rewrite(layer: Any, kind: type | tuple[type, ...], fn: Callable[[str, Any], Layer], name: tuple = ()) -> Layer:
    """``layer`` with every layer of type ``kind`` replaced by ``fn(name, it)`` (the same object where nothing changes)."""
    if type(layer) in (kind if isinstance(kind, tuple) else (kind,)):
        return fn(".".join(map(str, name)), layer)
    stacked = layer.stacked()
    if stacked is not None:
        inner = _rewrite(stacked[0], kind, fn, name + ("*",))
        return layer if inner is stacked[0] else dataclasses.replace(layer, layer=inner)
    swaps = {}
    for key, child in layer.children():
        if isinstance(child, tuple):
            new = tuple(_rewrite(c, kind, fn, name + (key, i)) for i, c in enumerate(child))
            changed = any(a is not b for a, b in zip(new, child))
        else:
            new = _rewrite(child, kind, fn, name + (key,))
            changed = new is not child
        if changed:
            swaps[key] = new
    return _with_children(layer, swaps) if swaps else layer


def _inner(layer: Any) -> Any:
    stacked = layer.stacked() if isinstance(layer, Layer) else None
    return layer if stacked is None else stacked[0]


def _with_children(layer: Any, swaps: dict) -> Layer:
    """``layer`` with the children in ``swaps`` (child name -> new child) replaced."""
    base = getattr(layer, "_lora_base", layer)
    swaps = {**getattr(layer, "_lora_swaps", {}), **swaps}
    if isinstance(base, Seq):
        return Seq(tuple(swaps.get(k, c) for k, c in base.children()), base.names)
    if isinstance(base, Parallel):
        return Parallel(*swaps["layers"], combine=base.combine, dim=base.dim)
    swaps = {k: v for k, v in swaps.items() if v != getattr(base, k)}
    if not swaps:
        return base
    fields = {f.name: f for f in dataclasses.fields(base)}
    changes = {}
    for key, new in swaps.items():
        if fields[key].init:
            changes[key] = new
            continue
        old = getattr(base, key)  # a child built from config: rebuild it from an updated config field, if one holds it
        for f in fields.values():
            if f.init and f.metadata.get("child", True) is False and getattr(base, f.name) == _inner(old):
                changes[f.name] = _inner(new)
    if changes:
        try:
            rebuilt = dataclasses.replace(base, **changes)
        except (TypeError, ValueError):
            rebuilt = None
        if rebuilt is not None and all(getattr(rebuilt, k) == v for k, v in swaps.items()):
            return rebuilt
    copy = object.__new__(_adapted_type(type(base)))
    copy.__dict__.update(base.__dict__)
    for key, new in swaps.items():
        object.__setattr__(copy, key, new)
    object.__setattr__(copy, "_lora_base", base)
    object.__setattr__(copy, "_lora_swaps", swaps)
    return copy


_ADAPTED: dict[type, type] = {}


def _adapted_type(cls: type) -> type:
    """A subclass of ``cls`` for copies with replaced children: equal when the base config and the children are."""
    if cls not in _ADAPTED:
        _ADAPTED[cls] = type(
            cls.__name__,
            (cls,),
            {
                "__module__": cls.__module__,
                "__qualname__": cls.__qualname__,
                "__doc__": cls.__doc__,
                "__eq__": _adapted_eq,
                "__hash__": _adapted_hash,
                "__reduce__": _adapted_reduce,
            },
        )
    return _ADAPTED[cls]


def _adapted_eq(self: Any, other: Any) -> bool:
    return type(other) is type(self) and self._lora_base == other._lora_base and self.children() == other.children()


def _adapted_hash(self: Any) -> int:
    return hash((self._lora_base, self.children()))


def _adapted_reduce(self: Any) -> tuple:
    return _with_children, (self._lora_base, self._lora_swaps)


# -- params -------------------------------------------------------------------------------------
def _at(tree: Any, where: tuple) -> Any:
    for part in where:
        tree = tree[part]
    return tree


def _put(tree: Any, where: tuple, value: Any) -> Any:
    if not where:
        return value
    head, rest = where[0], where[1:]
    new = _put(tree[head], rest, value)
    if isinstance(tree, tuple):
        return tree[:head] + (new,) + tree[head + 1 :]
    return {**tree, head: new}


def _matcher(targets: Any) -> Callable[[str], bool]:
    if isinstance(targets, str):
        try:
            pattern = re.compile(targets)
        except re.error as err:
            raise ValueError(f"nn.lora: targets {targets!r} is not a regular expression: {err}") from None
        return lambda name: pattern.fullmatch(name) is not None
    if isinstance(targets, Sequence) and targets and all(isinstance(t, str) for t in targets):
        names = tuple(targets)
        return lambda name: any(name == t or name.endswith("." + t) for t in names)
    raise TypeError(f"nn.lora: targets must be a regular expression (str) or a list of Linear names, got {targets!r}")


# -- the public functions -----------------------------------------------------------------------
def lora(model: Model, rank: int = 8, alpha: float = 8.0, *, targets: str | Sequence[str], key: Any = None) -> Model:
    """``model`` with LoRA adapters on the Linears ``targets`` names, and everything else frozen.

    Each matching :class:`~tlean.layers.Linear` becomes a :class:`~tlean.layers.LoRALinear`
    that keeps the Linear's arrays under the same names and adds ``lora_A.weight [rank,
    in]`` (U(-1/sqrt(in), 1/sqrt(in)), peft's kaiming-uniform) and ``lora_B.weight [out,
    rank]`` (zeros), scaled by ``alpha / rank``; transformers' ``Conv1D`` (GPT-2's ``c_attn``,
    ``c_proj``, ``c_fc``, weight ``[in, out]``) is adapted the same way with
    ``fan_in_fan_out=True``, as peft does; so the new model computes exactly what
    ``model`` computes until ``lora_B`` is trained. Linears inside a
    :class:`~tlean.layers.Stacked` layer (a scanned encoder) get stacked adapters
    (``encoder.layers.*.linear1.lora_A.weight [num_layers, rank, in]``).

    The returned Model's ``frozen`` filter gains :data:`FREEZE_BASE` (every parameter but
    the adapters), so :func:`tlean.train.make_train_step` trains only the adapters and
    keeps no optimiser state for the rest. Parameter names of the base are unchanged, so
    the base model's checkpoint (or a ``from_pretrained`` directory) still names them;
    the adapters are the only new names. PyTorch analogue: peft's
    ``get_peft_model(model, LoraConfig(r=rank, lora_alpha=alpha, target_modules=...))``.

    Args:
      model: any Model (a Sequential, a composite such as ``models.gpt``).
      rank: the rank ``r`` of each update.
      alpha: the update is scaled by ``alpha / rank`` (peft's ``lora_alpha``).
      targets: which Linears: a regular expression matched (``re.fullmatch``) against the
        Linear's module path as :meth:`Model.named_parameters` spells it without the
        final ``.weight`` (``"encoder.layers.*.linear1"``, ``"2"`` in a Sequential,
        ``".*(linear1|linear2)"``), or a list of names, each matching a path equal to it
        or ending in ``"." + name`` (peft's ``target_modules`` list).
      key: the key of the adapters' initial values (an int or a JAX key); ``None`` draws
        one from the global seed stream (:func:`tlean.nn.next_seed`, eager only). The
        ``i``-th adapted Linear (in walk order) draws from ``jax.random.split(key, n)[i]``.

    Returns:
      The adapted Model (its layer compares unequal to ``model.layer``).

    Raises:
      ValueError: ``targets`` matches no Linear (the message lists the Linears there are).

    >>> import jax, jax.numpy as jnp
    >>> from tlean import nn
    >>> base = nn.run(0, nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)))
    >>> tuned = nn.lora(base, rank=2, alpha=4, targets=r"0|2", key=1)
    >>> sorted(n for n, t in zip(tuned.named_parameters(), jax.tree.leaves(tuned.trainable())) if t)
    ['0.lora_A.weight', '0.lora_B.weight', '2.lora_A.weight', '2.lora_B.weight']
    >>> bool(jnp.all(tuned(jnp.ones((3, 4))) == base(jnp.ones((3, 4)))))
    True
    >>> nn.lora.merge(tuned).layer == base.layer
    True
    """
    if not isinstance(model, Model):
        raise TypeError(f"nn.lora takes a tlean Model, got {type(model).__name__}")
    adapted = LoRALinear(1, 1, rank=rank, alpha=alpha)  # checks rank and alpha, naming the layer
    matches = _matcher(targets)
    from tlean.models._gpt2 import Conv1D  # tlean.models imports tlean.nn

    found = list(_found(model.layer, (Linear, Conv1D)))
    chosen = [(where, name, stack, layer) for where, name, stack, layer in found if matches(name)]
    if not chosen:
        available = [name for _, name, _, _ in found]
        raise ValueError(
            f"nn.lora: targets {targets!r} match none of the model's Linears; they are {available} "
            f"(targets is matched with re.fullmatch against these names)"
        )
    if key is None:
        from tlean.nn._global import next_seed

        key = next_seed()
    keys = jax.random.split(as_key(key), len(chosen))
    chosen_names = {name for _, name, _, _ in chosen}

    def adapt(name: str, linear: Any) -> Layer:
        if name not in chosen_names:
            return linear
        numerics = dict(dtype=linear.dtype, param_dtype=linear.param_dtype, precision=linear.precision)
        if isinstance(linear, Conv1D):  # transformers' Conv1D: weight [in, out], always a bias (peft's fan_in_fan_out)
            return LoRALinear(
                linear.nx, linear.nf, True, rank=adapted.rank, alpha=adapted.alpha, fan_in_fan_out=True, **numerics
            )
        return LoRALinear(
            linear.in_features, linear.out_features, linear.bias, rank=adapted.rank, alpha=adapted.alpha, **numerics
        )

    layer = _rewrite(model.layer, (Linear, Conv1D), adapt)
    params = model.params
    new_layers = {name: lyr for _, name, _, lyr in _found(layer, LoRALinear)}
    for k, (where, name, stack, _) in zip(keys, chosen):
        params = _put(params, where, {**_at(params, where), **new_layers[name].adapter_init(k, stack)})
    frozen = model.frozen + (FREEZE_BASE,) if FREEZE_BASE not in model.frozen else model.frozen
    return Model(layer, params, model.state, frozen=frozen)


def merge(model: Model) -> Model:
    """A plain model: every :class:`~tlean.layers.LoRALinear` folded back into a Linear.

    ``weight + (alpha / rank) * lora_B @ lora_A`` becomes the Linear's weight (stacked
    adapters fold slice by slice), the adapters are dropped and :data:`FREEZE_BASE` leaves
    the ``frozen`` filter. Its outputs equal the adapted model's up to float rounding, and
    where :func:`lora` replaced children, the layer equals the original one again (peft's
    ``merge_and_unload``).

    Raises:
      ValueError: the model has no LoRALinear, or one whose weight is tied to another
        parameter (folding would change that parameter too).
    """
    if not isinstance(model, Model):
        raise TypeError(f"nn.lora.merge takes a tlean Model, got {type(model).__name__}")
    found = list(_found(model.layer, LoRALinear))
    if not found:
        raise ValueError(f"nn.lora.merge: {model.layer!r} has no LoRALinear to merge")
    params = model.params
    for where, name, _, layer in found:
        own = _at(params, where)
        if "weight" not in own:
            raise ValueError(
                f"nn.lora.merge: {name}'s weight is tied to another parameter; folding its update "
                f"would change that one too"
            )
        params = _put(params, where, layer.merged(own)[1])
    layer = _rewrite(model.layer, LoRALinear, lambda name, lyr: lyr.base)
    return Model(layer, params, model.state, frozen=tuple(p for p in model.frozen if p != FREEZE_BASE))


lora.merge = merge  # nn.lora.merge(model)
lora.ADAPTERS = ADAPTERS
lora.FREEZE_BASE = FREEZE_BASE
