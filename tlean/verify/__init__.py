"""Neural-network verification on tlean models: IBP, CROWN and alpha-CROWN bounds, certificates.

What it computes:

- :func:`bounds`: lower and upper bounds of ``model(x)`` (or ``spec @ model(x)``) over a box
  ``lower <= x <= upper``, by ``method="ibp"`` (interval bound propagation), ``"crown"``
  (CROWN's backward linear relaxation; every pre-activation bounded by CROWN first, as
  auto_LiRPA's default) or ``"alpha-crown"`` (the lower ReLU slopes of every backward pass
  optimised with optax's Adam, as auto_LiRPA's ``CROWN-Optimized``; never looser than CROWN).
- :func:`linear_bounds`: CROWN's linear functions of ``x`` themselves (``lA x + lbias <= f(x)``).
- :func:`certify`: top-1 robustness in an L-infinity ball, margins ``e_y - e_j``, box clipped to
  the data range on request; a :class:`Certificate`.
- :func:`ibp_loss`, :func:`crown_ibp_loss`: certified-training losses ``(loss, new_state)``;
  in train mode BatchNorm uses the clean batch's statistics, held constant in the bounds.

How: the model is traced with :func:`jax.make_jaxpr` (``apply(params, state, x, train=False)``:
BatchNorm's running statistics, Dropout the identity) and its equations are walked, inlining
``jit``, ``custom_jvp``/``custom_vjp`` and other calls, so the glue inside any composite is
bounded too. What does not depend on ``x`` is evaluated; the rest is:

- linear, propagated exactly: ``dot_general``, ``conv_general_dilated``, ``add``/``sub``, ``neg``,
  ``mul``/``div`` by constants, ``reshape``, ``transpose``, ``squeeze``, ``expand_dims``,
  ``broadcast_in_dim``, ``slice``, ``dynamic_slice``/``gather`` at constant indices,
  ``concatenate``, ``pad``, ``select_n`` with a constant predicate, ``reduce_sum``,
  ``reduce_window_sum`` (average pooling), ``cumsum``, ``rev``, ``convert_element_type``,
  ``copy``, ``stop_gradient``; IBP by centre and radius (``|W|`` for the radius), CROWN's
  backward pass by :func:`jax.linear_transpose`;
- relaxed: ``max(x, c)``/``min(x, c)`` (ReLU, clamps) and leaky ReLU with CROWN's adaptive
  triangle, tanh, logistic (sigmoid), erf/erfc, softplus and GELU (recognised from
  ``x * Phi(x)``) by tangents and chords (see :mod:`tlean.verify._relax`);
- monotone: max-pooling (``reduce_window_max``), ``reduce_max``, ``max`` of two bounded values:
  exact intervals, constant bounds in CROWN.

Anything else (softmax's ``exp``, a product or quotient of two bounded values, a gather indexed
by a bounded value) raises a ``TypeError`` naming the primitive and the layer path from the
equation's ``name_stack`` (``seq`` indices, e.g. ``'1'``, and composites' field names).

Every function is jitted (one compile per model and batch shape) and works one example at a
time, vmapped over the batch. By default bounds are computed in the model's float dtype and
bound the real-number function up to rounding (auto_LiRPA's default too): a float32 output can
escape them by its rounding error (a long dot product of cancelling terms is off by far more
than an ulp). ``sound=True`` (:func:`bounds`, :func:`certify`, :func:`linear_bounds`) bounds
the float32 computation itself: dots and convolutions run at ``Precision.HIGHEST`` and every
result is widened by the rounding-error bound ``gamma_n |W| |x|`` (``n`` the contraction
length, ``gamma_n = n u / (1 - n u)``, ``u = 2^-24``), activations by their measured float32
error, every bound rounded outward by one ulp; CROWN's backward pass and concretisation
account for their own rounding too (where each term enters: :mod:`tlean.verify._bounds`).
On the digits MLP the sound bounds are 0.05% (IBP) and 0.13% (CROWN) wider on average.

Equality with auto_LiRPA 0.7.1 (same weights, boxes and margins) is tested on a digits MLP and
a CNN with BatchNorm and a residual block: IBP and CROWN bounds within 1e-5 relative, identical
certified counts; alpha-CROWN at least as tight within 1% of the width (tests/verify).

PyTorch analogue: ``auto_LiRPA.BoundedModule(model, x).compute_bounds(x=(BoundedTensor(x, ptb),),
method="IBP" | "CROWN" | "CROWN-Optimized", C=spec)``.
"""

from tlean.verify._api import LinearBounds as LinearBounds
from tlean.verify._api import bounds as bounds
from tlean.verify._api import linear_bounds as linear_bounds
from tlean.verify._certify import Certificate as Certificate
from tlean.verify._certify import certify as certify
from tlean.verify._certify import crown_ibp_loss as crown_ibp_loss
from tlean.verify._certify import ibp_loss as ibp_loss
from tlean.verify._certify import margin_spec as margin_spec

__all__ = [
    "Certificate",
    "LinearBounds",
    "bounds",
    "certify",
    "crown_ibp_loss",
    "ibp_loss",
    "linear_bounds",
    "margin_spec",
]
