"""Bilinear: ``y = x1^T A x2 + b``, two inputs meeting in one weight tensor."""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from tlean._core import Layer, ShapeError
from tlean.layers import _init, _util


@dataclass(frozen=True)
class Bilinear(Layer):
    """``y[..., o] = sum_ij input1[..., i] * weight[o, i, j] * input2[..., j] + bias[o]``.

    Called with two inputs: ``apply(params, state, x, *, input2)`` (torch's forward
    ``(input1, input2)``; ``Model(x, x2)`` maps the second positional input onto ``input2``).
    Both must have the same leading (batch) shape, any number of axes including none, as in
    torch (no broadcasting).

    PyTorch analogue: ``torch.nn.Bilinear(in1_features, in2_features, out_features, bias)``,
    same names, layout and init: ``weight [out_features, in1_features, in2_features]`` and
    ``bias [out_features]`` drawn from U(-1/sqrt(in1_features), 1/sqrt(in1_features)).

    Args:
      in1_features: size of the last axis of ``x``.
      in2_features: size of the last axis of ``input2``.
      out_features: size of the last axis of the output.
      bias: whether to add a learned bias.
      dtype: computation dtype; ``None`` uses the result type of inputs and weight.
      param_dtype: storage dtype of the parameters (torch's factory ``dtype``).
      precision: ``jax.lax.Precision`` for the contraction.

    Shapes: ``x [..., in1], input2 [..., in2] -> y [..., out]``.

    >>> import jax, jax.numpy as jnp
    >>> from tlean.layers import Bilinear
    >>> layer = Bilinear(3, 2, 4)
    >>> params, state = layer.init(jax.random.key(0))
    >>> layer.apply(params, state, jnp.ones((5, 3)), input2=jnp.ones((5, 2)))[0].shape
    (5, 4)
    """

    in1_features: int
    in2_features: int
    out_features: int
    bias: bool = True
    _: KW_ONLY
    dtype: Any = _util.checked(_util.check_dtype, None)
    param_dtype: Any = _util.checked(_util.check_param_dtype, jnp.float32)
    precision: Any = _util.checked(_util.check_precision, None)

    inputs = ("input2",)  # Model(x, ...) maps further positional inputs onto these keywords

    def __post_init__(self):
        _util.positive(
            "Bilinear", in1_features=self.in1_features, in2_features=self.in2_features, out_features=self.out_features
        )
        _util.numeric_fields(self)

    def init(self, key: jax.Array) -> tuple[dict, dict]:
        shape = (self.out_features, self.in1_features, self.in2_features)
        return _init.torch_weight_and_bias(key, shape, self.in1_features, self.bias, self.param_dtype), {}

    def apply(
        self,
        params: dict,
        state: dict,
        x: Float[Array, "*batch in1"],
        *,
        input2: Float[Array, "*batch in2"] | None = None,
        key=None,
        train=False,
    ):
        if input2 is None:
            raise TypeError(f"{self!r}: needs its second input: apply(params, state, x, input2=...) or model(x, x2)")
        _util.check_float(self, x)
        _util.check_float(self, input2)
        _util.check_features(self, x, self.in1_features)
        _util.check_features(self, input2, self.in2_features, "input2")
        if jnp.shape(x)[:-1] != jnp.shape(input2)[:-1]:
            raise ShapeError(self, f"input2 with the batch shape of x {jnp.shape(x)[:-1]}", jnp.shape(input2))
        dtype = _util.compute_dtype(self.dtype, x, input2, params["weight"])
        y = jnp.einsum(
            "...i,oij,...j->...o",
            x.astype(dtype),
            params["weight"].astype(dtype),
            input2.astype(dtype),
            precision=self.precision,
        )
        if self.bias:
            y = _util.add_bias(y, params["bias"].astype(dtype))
        return y, state
