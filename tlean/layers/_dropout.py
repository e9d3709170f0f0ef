"""Dropout: zero elements (or whole channels) with probability ``p`` in training, identity in evaluation.

One implementation, :class:`_DropoutBase`, draws a keep-mask of a shape that depends on the
variant (every element; one value per channel of an N-d feature map) and combines it with
the input (scaled zeros, or SELU's alpha-dropout affine map). The torch names are thin
subclasses that choose the mask shape and the accepted ranks.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from tlean._core import Layer, ShapeError
from tlean.layers import _util

# -scale * alpha of SELU: the value SELU saturates to, which alpha dropout drops to.
_SELU_SATURATION = 1.0507009873554804934193349852946 * 1.6732632423543772848170429916717


class _DropoutBase(Layer):
    """The shared rule: ``p`` is the drop probability, training needs a key, eval is the identity."""

    p: float
    inplace: bool

    def __post_init__(self):
        name = type(self).__name__
        if isinstance(self.p, bool) or not isinstance(self.p, numbers.Real) or not 0.0 <= self.p < 1.0:
            raise ValueError(f"{name}: p is the probability of dropping and must be in [0, 1), got {self.p!r}")
        _util.set_field(self, "p", float(self.p))
        _util.set_field(self, "inplace", _util.check_flag(name, "inplace", self.inplace))

    def mask_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape of the keep-mask for an input of ``shape`` (broadcast against it)."""
        return shape

    def combine(self, x: jax.Array, keep: jax.Array) -> jax.Array:
        """Inverted dropout: kept values scaled by ``1 / (1 - p)``, dropped ones zero."""
        return jnp.where(keep, x / jnp.asarray(1.0 - self.p, x.dtype), jnp.zeros((), x.dtype))

    def apply(self, params, state, x, *, key=None, train=False):
        _util.check_float(self, x)
        shape = self.mask_shape(jnp.shape(x))  # checks the rank in eval mode too
        if not train or self.p == 0.0:
            return x, state
        if key is None:
            raise ValueError(
                f"{self!r} in train mode needs a dropout key: pass key=jax.random.key(...) "
                "(use a key of its own, never the one used for init), or train=False"
            )
        keep = jax.random.bernoulli(key, 1.0 - self.p, shape)
        return self.combine(x, jnp.broadcast_to(keep, jnp.shape(x))), state


@dataclass(frozen=True)
class Dropout(_DropoutBase):
    """Zero each element with probability ``p`` and scale the rest by ``1 / (1 - p)``.

    ``p`` is the probability of dropping (PyTorch's meaning; stax's ``Dropout(rate)``
    took the keep probability). In training (``train=True``) a ``key`` is required; in
    evaluation the layer is the identity. The expectation of the output equals the
    input.

    PyTorch analogue: ``torch.nn.Dropout(p, inplace)``; the random mask comes from the
    explicit ``key`` rather than a global generator; ``inplace`` is accepted and changes
    nothing (JAX arrays are immutable).

    Args:
      p: drop probability in [0, 1).

    >>> import jax, jax.numpy as jnp
    >>> from tlean.layers import Dropout
    >>> y, _ = Dropout(0.5).apply({}, {}, jnp.ones(4), key=jax.random.key(0), train=True)
    >>> sorted(set(y.tolist())) in ([0.0, 2.0], [0.0], [2.0])
    True
    """

    p: float = 0.5
    inplace: bool = False


class _ChannelDropout(_DropoutBase):
    """Zero whole channels: one keep value per ``(n, c)`` of ``[N, C, *spatial]``, per ``c`` of ``[C, *spatial]``."""

    spatial: int = 0

    def mask_shape(self, shape):
        if len(shape) not in (self.spatial + 1, self.spatial + 2):
            dims = "L" if self.spatial == 1 else ", ".join("DHW"[3 - self.spatial :])
            raise ShapeError(self, f"input [N, C, {dims}] or unbatched [C, {dims}]", shape)
        channels = len(shape) - self.spatial
        return shape[:channels] + (1,) * self.spatial


@dataclass(frozen=True)
class Dropout1d(_ChannelDropout):
    """Zero whole channels of ``[N, C, L]`` (or unbatched ``[C, L]``) with probability ``p``, scale the rest by ``1 / (1 - p)``.

    PyTorch analogue: ``torch.nn.Dropout1d(p, inplace)``: the same mask structure (one
    Bernoulli draw per sample and channel), from an explicit ``key``.
    """

    p: float = 0.5
    inplace: bool = False
    spatial = 1


@dataclass(frozen=True)
class Dropout2d(_ChannelDropout):
    """Zero whole channels of ``[N, C, H, W]`` (or unbatched ``[C, H, W]``) with probability ``p``.

    PyTorch analogue: ``torch.nn.Dropout2d(p, inplace)``. What differs: torch 2.x treats a
    3-D input as ``(N, C, L)`` (with a warning that this will change); here a 3-D input is
    unbatched ``[C, H, W]``, as torch documents it. Use :class:`Dropout1d` for ``[N, C, L]``.

    >>> import jax, jax.numpy as jnp
    >>> from tlean.layers import Dropout2d
    >>> y, _ = Dropout2d(0.5).apply({}, {}, jnp.ones((2, 3, 4, 4)), key=jax.random.key(0), train=True)
    >>> bool(((y == 0).all(axis=(2, 3)) | (y == 2).all(axis=(2, 3))).all())  # whole channels
    True
    """

    p: float = 0.5
    inplace: bool = False
    spatial = 2


@dataclass(frozen=True)
class Dropout3d(_ChannelDropout):
    """Zero whole channels of ``[N, C, D, H, W]`` (or unbatched ``[C, D, H, W]``) with probability ``p``.

    PyTorch analogue: ``torch.nn.Dropout3d(p, inplace)``, the same mask structure.
    """

    p: float = 0.5
    inplace: bool = False
    spatial = 3


class _AlphaMixin:
    p: float  # the dropout layer's field (an annotation only: this mixin is not a dataclass)

    def combine(self, x, keep):
        """``a * (x if kept else -scale * alpha) + b``: keeps SELU's zero mean and unit variance."""
        p, alpha = self.p, _SELU_SATURATION
        a = (1.0 / ((alpha * alpha * p + 1.0) * (1.0 - p))) ** 0.5
        kept = a * x + jnp.asarray(a * alpha * p, x.dtype)
        return jnp.where(keep, kept, jnp.asarray(a * alpha * (p - 1.0), x.dtype)).astype(x.dtype)


@dataclass(frozen=True)
class AlphaDropout(_AlphaMixin, _DropoutBase):
    """Alpha dropout for self-normalising (SELU) networks: keeps zero mean and unit variance.

    A dropped element becomes SELU's saturation value ``-scale * alpha``; then
    ``y = a * x' + b`` with ``a = ((1 - p) (1 + p alpha'^2))^(-1/2)`` and
    ``b = a alpha' p`` (``alpha' = scale * alpha``), as ``torch.nn.AlphaDropout(p, inplace)``.
    Elementwise mask, any shape; the identity in evaluation.
    """

    p: float = 0.5
    inplace: bool = False


@dataclass(frozen=True)
class FeatureAlphaDropout(_AlphaMixin, _DropoutBase):
    """Alpha dropout of whole channels: one draw per ``(n, c)`` of ``[N, C, *]``.

    PyTorch analogue: ``torch.nn.FeatureAlphaDropout(p, inplace)``; as there, the mask
    covers the first two axes of any input of rank >= 2 (a rank-2 input is dropped
    elementwise) and the affine map is :class:`AlphaDropout`'s.
    """

    p: float = 0.5
    inplace: bool = False

    def mask_shape(self, shape):
        if len(shape) < 2:
            raise ShapeError(self, "input [N, C, *] of rank >= 2", shape)
        return shape[:2] + (1,) * (len(shape) - 2)
