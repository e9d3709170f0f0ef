"""Testing tlean layers, yours and tlean's own: hypothesis strategies, invariant checks, torch parity.

tlean's own test suite uses exactly these functions (one registry of every layer drives
them), so a layer you write is held to the same standard as the built-in ones. They need
the test dependencies (``pip install tlean[test]``: hypothesis, and torch for
:func:`assert_torch_parity`), imported only when used.

**Checks** (each raises ``AssertionError`` saying what differs, by how much, and where):

- :func:`assert_jit_eager_equal`: the same output and new state eagerly and under ``jax.jit``;
- :func:`assert_vmap_consistent`: ``jax.vmap`` over a leading axis equals a loop;
- :func:`assert_eval_shape`: ``jax.eval_shape`` predicts the output's and ``init``'s shapes and dtypes;
- :func:`assert_shape_error_at_trace_time`: a bad input is a :class:`tlean.ShapeError` naming
  the layer, raised while tracing (nothing compiles);
- :func:`assert_torch_parity`: outputs, new state and gradients (of every parameter, by
  torch's name, and of the inputs) equal a ``torch.nn`` module's, given its state_dict, in
  eval and train mode;
- :mod:`tlean.testing.properties`: the BugZoo properties (causal masks give the future exactly
  zero weight, KV-cache decoding equals the full forward, RoPE at ``start_pos`` is the next
  position, eval-mode batch invariance, an all-ignored loss batch is 0 not NaN).

**Strategies** (hypothesis): :func:`seeds`, :func:`keys`, :func:`dtypes`, :func:`shapes`
(batch axes then the fixed axes a layer needs) and :func:`inputs` (arrays for an input spec).

A model argument may be a :class:`tlean.Model`, a Layer (initialised from
``jax.random.key(0)``) or a Builder (run from seed 0); :func:`as_model` does that.

Testing a layer of your own, a composite with two children::

    from dataclasses import dataclass

    import jax
    import torch
    from hypothesis import given
    from tlean import Layer, testing
    from tlean import layers as L


    @dataclass(frozen=True)
    class MLP(Layer):                       # torch: fc1 -> GELU -> fc2
        fc1: Layer
        fc2: Layer

        def apply(self, params, state, x, *, key=None, train=False):
            c = self.bind(params, state, key=key, train=train)
            return c.fc2(jax.nn.gelu(c.fc1(x), approximate=False)), c.state


    class TorchMLP(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = torch.nn.Linear(4, 8), torch.nn.Linear(8, 2)

        def forward(self, x):
            return self.fc2(torch.nn.functional.gelu(self.fc1(x)))


    mlp = MLP(L.Linear(4, 8), L.Linear(8, 2))


    @given(testing.inputs(testing.shapes(trailing=(4,))))
    def test_mlp_invariants(x):
        testing.assert_jit_eager_equal(mlp, x)
        testing.assert_eval_shape(mlp, x)


    def test_mlp_matches_torch():
        x = jax.random.normal(jax.random.key(1), (3, 4))
        testing.assert_torch_parity(mlp, TorchMLP(), x)      # loads torch's state_dict by name
        testing.assert_shape_error_at_trace_time(mlp, (3, 5))  # seq.fc1 Linear(...): expected ...

The same in a few lines:

>>> import jax
>>> from tlean import layers as L, testing
>>> net = L.seq(L.Linear(4, 8), L.relu, L.Linear(8, 2))
>>> x = jax.random.normal(jax.random.key(1), (3, 4))
>>> testing.assert_jit_eager_equal(net, x, train=False)
>>> testing.assert_vmap_consistent(net, x[:, None])
>>> err = testing.assert_shape_error_at_trace_time(net, (3, 5))
>>> str(err).split(":")[0]
'seq[0] Linear(in_features=4, out_features=8)'
"""

from tlean.testing import properties as properties
from tlean.testing._checks import assert_eval_shape as assert_eval_shape
from tlean.testing._checks import assert_jit_eager_equal as assert_jit_eager_equal
from tlean.testing._checks import assert_shape_error_at_trace_time as assert_shape_error_at_trace_time
from tlean.testing._checks import assert_vmap_consistent as assert_vmap_consistent
from tlean.testing._compare import as_model as as_model
from tlean.testing._compare import assert_trees_close as assert_trees_close
from tlean.testing._strategies import dtypes as dtypes
from tlean.testing._strategies import inputs as inputs
from tlean.testing._strategies import keys as keys
from tlean.testing._strategies import seeds as seeds
from tlean.testing._strategies import shapes as shapes
from tlean.testing._torch import assert_torch_parity as assert_torch_parity
from tlean.testing._torch import from_torch as from_torch
from tlean.testing._torch import to_numpy as to_numpy
from tlean.testing._torch import to_torch as to_torch

__all__ = [
    "as_model",
    "assert_eval_shape",
    "assert_jit_eager_equal",
    "assert_shape_error_at_trace_time",
    "assert_torch_parity",
    "assert_trees_close",
    "assert_vmap_consistent",
    "dtypes",
    "from_torch",
    "inputs",
    "keys",
    "properties",
    "seeds",
    "shapes",
    "to_numpy",
    "to_torch",
]
