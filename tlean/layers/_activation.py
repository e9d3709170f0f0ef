"""Activations: every activation of ``torch.nn``, with torch's arguments, names and defaults.

The parameter-free elementwise ones are made by one small factory (stax's ``elementwise``):
:func:`_elementwise` turns a formula and torch's constructor arguments into a frozen
dataclass layer. The softmax family, GELU, GLU, PReLU (a learned weight) and RReLU (random
slopes in training) are written out.

torch's ``inplace`` flag is accepted wherever torch has it, for its signature: JAX arrays are
immutable, so the result is always a new array and the input is never overwritten.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from typing import Any

import jax
import jax.numpy as jnp

from tlean._core import Layer, ShapeError
from tlean.layers import _util

_REQUIRED = dataclasses.MISSING


class _Activation(Layer):
    """A parameter-free layer ``y = fn(x)`` that keeps the input's shape and dtype.

    Subclasses whose function is only defined on floats (all but ReLU and Identity)
    refuse integer input with a TypeError rather than truncate the result.
    """

    float_only = True

    def fn(self, x: jax.Array) -> jax.Array:
        raise NotImplementedError

    def apply(self, params, state, x, *, key=None, train=False):
        x = jnp.asarray(x)
        if self.float_only:
            _util.check_float(self, x)
        return self.fn(x), state


def _number(layer_name: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{layer_name}: {name} must be a number, got {value!r}")
    return float(value)


def _elementwise(
    name: str,
    formula: str,
    fn: Callable[..., jax.Array],
    *fields: tuple[str, Any],
    float_only: bool = True,
    check: Callable[..., str | None] | None = None,
    example: bool = True,
) -> type[_Activation]:
    """A frozen-dataclass activation ``name`` computing ``fn(x, *field_values)``.

    ``fields`` are torch's constructor arguments in torch's order as ``(name, default)``
    (``_REQUIRED`` for none); ``inplace`` is a bool, every other field a number (stored as
    float). ``check(*values)`` returns an error text for a bad combination, or None.
    """
    numeric = tuple(f for f, _ in fields if f != "inplace")

    def post_init(self):
        for f in numeric:
            _util.set_field(self, f, _number(name, f, getattr(self, f)))
        if "inplace" in self.__dataclass_fields__:
            _util.set_field(self, "inplace", _util.check_flag(name, "inplace", self.inplace))
        problem = check(*(getattr(self, f) for f in numeric)) if check else None
        if problem:
            raise ValueError(f"{name}: {problem}")

    def apply_fn(self, x):
        return fn(x, *(getattr(self, f) for f in numeric))

    args = ", ".join(f"{f}={d!r}" if d is not _REQUIRED else f for f, d in fields)
    doc = (
        f"``y = {formula}``, elementwise; keeps the input's shape and dtype.\n\n"
        f"PyTorch analogue: ``torch.nn.{name}({args})``, same arguments and defaults"
        f"{' (``inplace`` is accepted and changes nothing: JAX arrays are immutable)' if 'inplace' in dict(fields) else ''}."
        f"{'' if float_only else ' Integer input is computed exactly.'}\n\nShapes: any ``x [...] -> y [...]``.\n"
    )
    if example and all(d is not _REQUIRED for _, d in fields):
        doc += (
            f"\n>>> import jax.numpy as jnp\n>>> from tlean.layers import {name}\n"
            f">>> {name}().apply({{}}, {{}}, jnp.zeros((2, 3)))[0].shape\n(2, 3)\n"
        )
    spec = [(f, Any) if d is _REQUIRED else (f, Any, dataclasses.field(default=d)) for f, d in fields]
    cls = dataclasses.make_dataclass(
        name,
        spec,
        bases=(_Activation,),
        frozen=True,
        namespace={
            "__post_init__": post_init,
            "fn": apply_fn,
            "float_only": float_only,
            "__doc__": doc,
            "__module__": __name__,
            "__qualname__": name,
        },
    )
    return cls


_INPLACE = ("inplace", False)

ReLU = _elementwise("ReLU", "max(x, 0)", lambda x: jax.nn.relu(x), _INPLACE, float_only=False)
ReLU6 = _elementwise("ReLU6", "min(max(x, 0), 6)", lambda x: jnp.clip(x, 0, 6), _INPLACE)
LeakyReLU = _elementwise(
    "LeakyReLU",
    "x if x > 0 else negative_slope * x",
    lambda x, s: jnp.where(x > 0, x, x * s),
    ("negative_slope", 0.01),
    _INPLACE,
)
ELU = _elementwise(
    "ELU",
    "x if x > 0 else alpha * (exp(x) - 1)",
    lambda x, a: jnp.where(x > 0, x, a * jnp.expm1(jnp.minimum(x, 0))),
    ("alpha", 1.0),
    _INPLACE,
)
SELU = _elementwise("SELU", "scale * (max(0, x) + min(0, alpha * (exp(x) - 1)))", lambda x: jax.nn.selu(x), _INPLACE)
CELU = _elementwise(
    "CELU",
    "max(0, x) + min(0, alpha * (exp(x / alpha) - 1))",
    lambda x, a: jnp.where(x > 0, x, a * jnp.expm1(jnp.minimum(x, 0) / a)),
    ("alpha", 1.0),
    _INPLACE,
    check=lambda a: "alpha must not be 0" if a == 0 else None,
)
SiLU = _elementwise("SiLU", "x * sigmoid(x)", lambda x: jax.nn.silu(x), _INPLACE)
Mish = _elementwise("Mish", "x * tanh(softplus(x))", lambda x: x * jnp.tanh(jax.nn.softplus(x)), _INPLACE)
Hardswish = _elementwise(
    "Hardswish", "x * min(max(x + 3, 0), 6) / 6", lambda x: x * jnp.clip(x + 3, 0, 6) / 6, _INPLACE
)
Hardsigmoid = _elementwise("Hardsigmoid", "min(max(x + 3, 0), 6) / 6", lambda x: jnp.clip(x + 3, 0, 6) / 6, _INPLACE)
Hardtanh = _elementwise(
    "Hardtanh",
    "min(max(x, min_val), max_val)",
    lambda x, lo, hi: jnp.clip(x, lo, hi),
    ("min_val", -1.0),
    ("max_val", 1.0),
    _INPLACE,
    check=lambda lo, hi: None if hi > lo else f"max_val must be > min_val, got min_val={lo!r}, max_val={hi!r}",
)
Hardshrink = _elementwise(
    "Hardshrink",
    "0 if -lambd <= x <= lambd else x",
    lambda x, lam: jnp.where((x >= -lam) & (x <= lam), jnp.zeros((), x.dtype), x),
    ("lambd", 0.5),
)
Softshrink = _elementwise(
    "Softshrink",
    "x - clip(x, -lambd, lambd)",
    lambda x, lam: x - jnp.clip(x, -lam, lam),
    ("lambd", 0.5),
    check=lambda lam: None if lam >= 0 else f"lambd must be >= 0, got {lam!r}",
)
Softplus = _elementwise(
    "Softplus",
    "log(1 + exp(beta * x)) / beta, or x where beta * x > threshold",
    lambda x, b, t: jnp.where(x * b > t, x, jax.nn.softplus(x * b) / b),
    ("beta", 1.0),
    ("threshold", 20.0),
    check=lambda b, t: "beta must not be 0" if b == 0 else None,
)
Softsign = _elementwise("Softsign", "x / (1 + |x|)", lambda x: x / (1 + jnp.abs(x)))
Tanh = _elementwise("Tanh", "tanh(x)", lambda x: jnp.tanh(x))
Sigmoid = _elementwise("Sigmoid", "1 / (1 + exp(-x))", lambda x: jax.nn.sigmoid(x))
LogSigmoid = _elementwise("LogSigmoid", "log(sigmoid(x))", lambda x: jax.nn.log_sigmoid(x))
Tanhshrink = _elementwise("Tanhshrink", "x - tanh(x)", lambda x: x - jnp.tanh(x))
Threshold = _elementwise(
    "Threshold",
    "value if x <= threshold else x (NaN stays NaN)",
    lambda x, t, v: jnp.where(x <= t, jnp.asarray(v, x.dtype), x),
    ("threshold", _REQUIRED),
    ("value", _REQUIRED),
    _INPLACE,
)


@dataclass(frozen=True)
class Identity(_Activation):
    """``y = x``, for any dtype. PyTorch analogue: ``torch.nn.Identity``."""

    float_only = False

    def fn(self, x):
        return x


@dataclass(frozen=True)
class GELU(_Activation):
    """``y = x * Phi(x)``, exact (``"none"``, with erf) or the ``"tanh"`` approximation.

    PyTorch analogue: ``torch.nn.GELU(approximate=...)``; note that ``jax.nn.gelu``
    defaults to the tanh form, while this layer, like PyTorch, defaults to the exact one.
    """

    approximate: str = "none"

    def __post_init__(self):
        if self.approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {self.approximate!r}")

    def fn(self, x):
        return jax.nn.gelu(x, approximate=self.approximate == "tanh")


class _AlongDim(_Activation):
    """A function of the input along one axis ``dim``, computed in float32 (or wider)."""

    dim: Any

    def __post_init__(self):
        name = type(self).__name__
        if self.dim is None:
            raise ValueError(
                f"{name}: dim=None (torch's deprecated implicit-dim rule) is not supported; "
                f"pass the axis, e.g. {name}(dim=-1)"
            )
        _util.integers(name, dim=self.dim)

    def along(self, h: jax.Array, axis: int) -> jax.Array:
        raise NotImplementedError

    def fn(self, x):
        if not -x.ndim <= self.dim < x.ndim:
            raise ShapeError(self, f"an input with an axis {self.dim}", x.shape)
        return self.along(x.astype(jnp.promote_types(x.dtype, jnp.float32)), self.dim).astype(x.dtype)


@dataclass(frozen=True)
class Softmax(_AlongDim):
    """``y = exp(x) / sum(exp(x))`` along ``dim``, computed in float32, returned in the input dtype.

    PyTorch analogue: ``torch.nn.Softmax(dim)``; PyTorch's implicit ``dim=None`` is
    deprecated, so here ``dim`` defaults to the last axis and ``dim=None`` is refused.

    >>> import jax.numpy as jnp
    >>> from tlean.layers import Softmax
    >>> Softmax(0).apply({}, {}, jnp.zeros(2))[0]
    Array([0.5, 0.5], dtype=float32)
    """

    dim: int = -1

    def along(self, h, axis):
        return jax.nn.softmax(h, axis=axis)


@dataclass(frozen=True)
class Softmin(_AlongDim):
    """``y = softmax(-x)`` along ``dim``. PyTorch analogue: ``torch.nn.Softmin(dim)``; ``dim`` as in :class:`Softmax`."""

    dim: int = -1

    def along(self, h, axis):
        return jax.nn.softmax(-h, axis=axis)


@dataclass(frozen=True)
class LogSoftmax(_AlongDim):
    """``y = x - logsumexp(x)`` along ``dim``. PyTorch analogue: ``torch.nn.LogSoftmax(dim)``; ``dim`` as in :class:`Softmax`."""

    dim: int = -1

    def along(self, h, axis):
        return jax.nn.log_softmax(h, axis=axis)


@dataclass(frozen=True)
class Softmax2d(_Activation):
    """Softmax over the channels of ``[N, C, H, W]`` or unbatched ``[C, H, W]`` (axis -3). ``torch.nn.Softmax2d``."""

    def fn(self, x):
        if x.ndim not in (3, 4):
            raise ShapeError(self, "input [N, C, H, W] or unbatched [C, H, W]", x.shape)
        return jax.nn.softmax(x.astype(jnp.promote_types(x.dtype, jnp.float32)), axis=-3).astype(x.dtype)


@dataclass(frozen=True)
class GLU(_Activation):
    """Gated linear unit: split ``x`` in halves ``a, b`` along ``dim``, ``y = a * sigmoid(b)``.

    PyTorch analogue: ``torch.nn.GLU(dim=-1)``. Shapes: ``[..., 2n, ...] -> [..., n, ...]``;
    an odd size along ``dim`` is a :class:`~tlean.ShapeError`.
    """

    dim: int = -1

    def __post_init__(self):
        _util.integers("GLU", dim=self.dim)

    def fn(self, x):
        if not -x.ndim <= self.dim < x.ndim or x.shape[self.dim] % 2:
            raise ShapeError(self, f"an even size along axis {self.dim}", x.shape)
        a, b = jnp.split(x, 2, axis=self.dim)
        return a * jax.nn.sigmoid(b)


def _channel_axis(layer: Layer, x: jax.Array, n: int) -> Callable[[jax.Array], jax.Array]:
    """A per-channel ``[n]`` vector laid along axis 1 of ``x`` (torch's channel axis; a rank < 2 input is one channel)."""
    channels = x.shape[1] if x.ndim >= 2 else 1
    if n not in (1, channels):
        raise ShapeError(layer, f"{n} channels on axis 1 (an input of rank < 2 has one)", x.shape)
    return lambda v: v.reshape((1,) * x.ndim) if n == 1 else v.reshape((1, n) + (1,) * (x.ndim - 2))


@dataclass(frozen=True)
class PReLU(Layer):
    """``y = x if x > 0 else weight[c] * x``, with a learned slope per channel (or one shared).

    PyTorch analogue: ``torch.nn.PReLU(num_parameters=1, init=0.25)``: the same ``weight
    [num_parameters]`` filled with ``init``, applied along axis 1 (the channels) of an
    input of rank >= 2; an input of rank < 2 has a single channel, so it needs
    ``num_parameters=1``, as in torch.

    Args:
      num_parameters: 1 (one shared slope) or the number of channels C.
      init: initial value of every slope.
      param_dtype: storage dtype of ``weight`` (torch's factory ``dtype``).
      dtype: computation dtype; ``None`` uses the result type of input and weight.

    >>> import jax, jax.numpy as jnp
    >>> from tlean.layers import PReLU
    >>> layer = PReLU()
    >>> params, state = layer.init(None)
    >>> layer.apply(params, state, jnp.array([-2.0, 3.0]))[0]
    Array([-0.5,  3. ], dtype=float32)
    """

    num_parameters: int = 1
    init_value: float = dataclasses.field(default=0.25)
    _: KW_ONLY
    dtype: Any = _util.checked(_util.check_dtype, None)
    param_dtype: Any = _util.checked(_util.check_param_dtype, jnp.float32)

    def __init__(
        self,
        num_parameters: int = 1,
        init: float = 0.25,
        *,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        init_value: float | None = None,
    ):
        # torch names the initial value ``init``, which a dataclass field cannot be called here
        # (it would shadow ``Layer.init``): it is stored as ``init_value`` (also accepted, so
        # ``dataclasses.replace`` works).
        _util.set_field(self, "num_parameters", num_parameters)
        _util.set_field(self, "init_value", init if init_value is None else init_value)
        _util.set_field(self, "dtype", dtype)
        _util.set_field(self, "param_dtype", param_dtype)
        self.__post_init__()

    def __repr__(self) -> str:
        return Layer.__repr__(self).replace("init_value=", "init=")  # torch's name for it

    def __post_init__(self):
        _util.positive("PReLU", num_parameters=self.num_parameters)
        _util.set_field(self, "init_value", _number("PReLU", "init", self.init_value))
        _util.numeric_fields(self)

    def init(self, key):
        return {"weight": jnp.full((self.num_parameters,), self.init_value, self.param_dtype)}, {}

    def apply(self, params, state, x, *, key=None, train=False):
        _util.check_float(self, x)
        lay = _channel_axis(self, x, self.num_parameters)
        dtype = _util.compute_dtype(self.dtype, x, params["weight"])
        x = x.astype(dtype)
        return jnp.where(x > 0, x, lay(params["weight"].astype(dtype)) * x), state


@dataclass(frozen=True)
class RReLU(Layer):
    """Randomised leaky ReLU: ``y = x if x >= 0 else a * x``.

    In evaluation ``a = (lower + upper) / 2`` for every element; in training
    (``train=True``, a ``key`` required) each element draws its own ``a ~ U(lower,
    upper)``, as torch does with its global generator.

    PyTorch analogue: ``torch.nn.RReLU(lower=1/8, upper=1/3, inplace=False)`` (``inplace``
    accepted, changes nothing).

    Shapes: any ``x [...] -> y [...]``.
    """

    lower: float = 1.0 / 8
    upper: float = 1.0 / 3
    inplace: bool = False

    def __post_init__(self):
        _util.set_field(self, "lower", _number("RReLU", "lower", self.lower))
        _util.set_field(self, "upper", _number("RReLU", "upper", self.upper))
        _util.set_field(self, "inplace", _util.check_flag("RReLU", "inplace", self.inplace))
        if not self.lower <= self.upper:
            raise ValueError(f"RReLU: lower must be <= upper, got lower={self.lower!r}, upper={self.upper!r}")

    def apply(self, params, state, x, *, key=None, train=False):
        _util.check_float(self, x)
        if not train:
            slope = jnp.asarray((self.lower + self.upper) / 2, x.dtype)
        elif key is None:
            raise ValueError(
                f"{self!r} in train mode needs a key for its random slopes: pass key=jax.random.key(...), "
                "or train=False for the fixed slope (lower + upper) / 2"
            )
        else:
            u = jax.random.uniform(key, x.shape, jnp.promote_types(x.dtype, jnp.float32))
            slope = (self.lower + (self.upper - self.lower) * u).astype(x.dtype)
        return jnp.where(x >= 0, x, x * slope), state


identity = Identity()
relu = ReLU()
relu6 = ReLU6()
leaky_relu = LeakyReLU()
elu = ELU()
selu = SELU()
celu = CELU()
gelu = GELU()
silu = SiLU()
mish = Mish()
hardswish = Hardswish()
hardsigmoid = Hardsigmoid()
hardtanh = Hardtanh()
hardshrink = Hardshrink()
softshrink = Softshrink()
softplus = Softplus()
softsign = Softsign()
tanh = Tanh()
sigmoid = Sigmoid()
log_sigmoid = LogSigmoid()
tanhshrink = Tanhshrink()
softmax = Softmax()
softmin = Softmin()
log_softmax = LogSoftmax()
glu = GLU()
