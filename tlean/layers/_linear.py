"""Linear layers: ``y = x W^T + b`` on the last axis."""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from tlean._core import Layer, ShapeError
from tlean.layers import _init, _util


@dataclass(frozen=True)
class Linear(Layer):
    """``y = x @ weight.T + bias`` on the last axis of an input of any prefix shape.

    PyTorch analogue: ``torch.nn.Linear``, same names, layout and default init.

    Args:
      in_features: size of the last axis of the input.
      out_features: size of the last axis of the output.
      bias: whether to add a learned bias.
      dtype: computation dtype; ``None`` uses the result type of input and weight.
      param_dtype: storage dtype of the parameters (float32 by default).
      precision: ``jax.lax.Precision`` for the matmul.

    Params:
      ``weight [out_features, in_features]`` and ``bias [out_features]``, both drawn from
      U(-1/sqrt(in_features), 1/sqrt(in_features)) as PyTorch does.

    Shapes:
      ``x [..., in_features] -> y [..., out_features]``.

    >>> import jax, jax.numpy as jnp
    >>> from tlean.layers import Linear
    >>> layer = Linear(3, 2)
    >>> params, state = layer.init(jax.random.key(0))
    >>> layer.apply(params, state, jnp.ones((4, 3)))[0].shape
    (4, 2)
    """

    in_features: int = _util.size()
    out_features: int = _util.size()
    bias: bool = _util.flag(True)
    _: KW_ONLY
    dtype: Any = _util.dtype_field()
    param_dtype: Any = _util.param_dtype_field()
    precision: Any = _util.precision_field()

    def init(self, key: jax.Array) -> tuple[dict, dict]:
        shape = (self.out_features, self.in_features)
        return _init.torch_weight_and_bias(key, shape, self.in_features, self.bias, self.param_dtype), {}

    def apply(self, params: dict, state: dict, x: Float[Array, "*batch in_features"], *, key=None, train=False):
        self._check(x)
        x, weight, bias = _util.promote(self, x, params["weight"], params.get("bias"))
        y = jnp.matmul(x, weight.T, precision=self.precision)
        if bias is not None:
            y = _util.add_bias(y, bias)
        return y, state

    def _check(self, x: Any) -> None:
        _util.check_float(self, x)
        _util.check_features(self, x, self.in_features)


@dataclass(frozen=True)
class LinearVec(Linear):
    """:class:`Linear` on a single vector ``x [in_features] -> [out_features]`` (TorchLean's ``linear``).

    Any other rank is a :class:`~tlean.ShapeError`, where ``Linear`` would accept a batch.
    """

    def _check(self, x: Any) -> None:
        _util.check_float(self, x)
        if jnp.ndim(x) != 1 or jnp.shape(x)[0] != self.in_features:
            raise ShapeError(self, f"a vector [{self.in_features}]", jnp.shape(x))


def linear_vec(in_features: int, out_features: int, bias: bool = True, **kwargs: Any) -> LinearVec:
    """The vector-only linear layer: ``LinearVec(in_features, out_features, bias, ...)``."""
    return LinearVec(in_features, out_features, bias, **kwargs)
