"""LoRA (Hu et al. 2021): a Linear plus a trainable low-rank update, ``y = x W^T + b + (alpha / r) (x A^T) B^T``."""

from __future__ import annotations

import numbers
from dataclasses import KW_ONLY, dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from tlean._core import Layer
from tlean.layers import _init, _util
from tlean.layers._linear import Linear


def check_alpha(layer_name: str, name: str, value: Any) -> float:
    """A real number > 0 (LoRA's ``alpha``), as a Python float."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not float(value) > 0:
        raise ValueError(f"{layer_name}: {name} must be a number > 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class LoRALinear(Layer):
    """A :class:`Linear` with a low-rank adapter: ``y = x @ weight.T + bias + (alpha / rank) * (x @ A.T) @ B.T``.

    PyTorch analogue: peft's ``lora.Linear`` (``LoraConfig(r=rank, lora_alpha=alpha)``):
    the same ``lora_A [rank, in_features]`` (kaiming-uniform with ``a = sqrt(5)``, i.e.
    U(-1/sqrt(in_features), 1/sqrt(in_features))) and ``lora_B [out_features, rank]``
    (zeros, so the layer starts equal to its base), scale ``alpha / rank``. What differs:
    the base keeps its own names (``q_proj.weight``, not peft's
    ``q_proj.base_layer.weight``), so a checkpoint of the base model loads unchanged; no
    ``lora_dropout``, ``use_rslora`` or DoRA. :func:`tlean.nn.lora` puts it in place of
    the Linears of a model and freezes everything but the adapters.

    Args:
      in_features, out_features, bias: as for :class:`Linear`.
      rank: the rank ``r`` of the update (keyword-only).
      alpha: the update is scaled by ``alpha / rank`` (keyword-only; peft's ``lora_alpha``).
      fan_in_fan_out: the base weight is stored ``[in_features, out_features]`` (transformers'
        ``Conv1D``, GPT-2's projections; peft's option of the same name): ``y = x @ weight + ...``,
        and :attr:`base` is that Conv1D (keyword-only).
      dtype, param_dtype, precision: as for :class:`Linear`.

    Params:
      ``weight [out_features, in_features]`` and ``bias [out_features]`` (as Linear,
      from the first of ``jax.random.split(key)``), ``lora_A.weight [rank, in_features]``
      (from the second), ``lora_B.weight [out_features, rank]`` (zeros).

    Shapes:
      ``x [..., in_features] -> y [..., out_features]``.

    >>> import jax, jax.numpy as jnp
    >>> from tlean.layers import LoRALinear
    >>> layer = LoRALinear(3, 2, rank=4, alpha=8)
    >>> params, state = layer.init(jax.random.key(0))
    >>> params["lora_A"]["weight"].shape, params["lora_B"]["weight"].shape, layer.scaling
    ((4, 3), (2, 4), 2.0)
    >>> layer.apply(params, state, jnp.ones((5, 3)))[0].shape
    (5, 2)
    """

    in_features: int = _util.size()
    out_features: int = _util.size()
    bias: bool = _util.flag(True)
    _: KW_ONLY
    rank: int = _util.size(8)
    alpha: float = _util.checked(check_alpha, 8.0)
    fan_in_fan_out: bool = _util.flag(False)
    dtype: Any = _util.dtype_field()
    param_dtype: Any = _util.param_dtype_field()
    precision: Any = _util.precision_field()

    @property
    def scaling(self) -> float:
        """``alpha / rank``, the factor of the low-rank update."""
        return self.alpha / self.rank

    @property
    def base(self) -> Layer:
        """The layer this one adapts (the same config without the adapter): a Linear, or with
        ``fan_in_fan_out`` transformers' ``Conv1D`` (weight ``[in_features, out_features]``)."""
        numerics = dict(dtype=self.dtype, param_dtype=self.param_dtype, precision=self.precision)
        if self.fan_in_fan_out:
            from tlean.models._gpt2 import Conv1D  # tlean.models imports tlean.layers

            return Conv1D(self.out_features, self.in_features, **numerics)
        return Linear(self.in_features, self.out_features, self.bias, **numerics)

    def init(self, key: jax.Array) -> tuple[dict, dict]:
        k_base, k_adapter = jax.random.split(key)
        params, _ = self.base.init(k_base)
        return {**params, **self.adapter_init(k_adapter)}, {}

    def adapter_init(self, key: jax.Array, stack: tuple[int, ...] = ()) -> dict:
        """Fresh ``{"lora_A": {"weight"}, "lora_B": {"weight"}}``, with leading ``stack`` axes (a Stacked layer's)."""
        bound = _init.fan_in_bound(self.in_features)
        a = _init.uniform(key, (*stack, self.rank, self.in_features), bound, self.param_dtype)
        b = jnp.zeros((*stack, self.out_features, self.rank), self.param_dtype)
        return {"lora_A": {"weight": a}, "lora_B": {"weight": b}}

    def apply(self, params: dict, state: dict, x: Float[Array, "*batch in_features"], *, key=None, train=False):
        _util.check_float(self, x)
        _util.check_features(self, x, self.in_features)
        x, weight, bias, a, b = _util.promote(
            self, x, params["weight"], params.get("bias"), params["lora_A"]["weight"], params["lora_B"]["weight"]
        )
        y = jnp.matmul(x, weight if self.fan_in_fan_out else weight.T, precision=self.precision)
        if bias is not None:
            y = _util.add_bias(y, bias)
        update = jnp.matmul(jnp.matmul(x, a.T, precision=self.precision), b.T, precision=self.precision)
        return y + jnp.asarray(self.scaling, y.dtype) * update, state

    def merged(self, params: dict) -> tuple[Layer, dict]:
        """``(base Linear, its params)`` with the update folded in: ``weight + (alpha / rank) * B @ A``.

        Works on stacked params too (leading axes of a Stacked layer). The sum is computed
        in float32 (or the weight's wider dtype) and stored in the weight's dtype.
        """
        weight = params["weight"]
        wide = jnp.promote_types(weight.dtype, jnp.float32)
        delta = jnp.matmul(
            params["lora_B"]["weight"].astype(wide),
            params["lora_A"]["weight"].astype(wide),
            precision=jax.lax.Precision.HIGHEST,
        )
        if self.fan_in_fan_out:
            delta = jnp.swapaxes(delta, -1, -2)
        merged = {"weight": (weight.astype(wide) + jnp.asarray(self.scaling, wide) * delta).astype(weight.dtype)}
        if "bias" in params:
            merged["bias"] = params["bias"]
        return self.base, merged
