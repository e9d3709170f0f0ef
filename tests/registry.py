"""One registry of every layer with an example input: drives the invariants all layers share
(tests/layers/test_invariants.py): jit equals eager, vmap over a leading axis equals a loop,
the output shape equals jax.eval_shape, bfloat16 input runs, equal configs hash equal, and
``has_params`` agrees with ``init``.

Each layer family adds its cases in its own section below.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jax.numpy as jnp

from tlean import layers as L


@dataclass(frozen=True)
class Case:
    """A layer, a constructor giving an equal copy of it, and an example input shape."""

    name: str
    make: Any  # zero-argument callable returning the layer (called twice: equal configs)
    input_shape: tuple[int, ...]
    dtype: Any = jnp.float32
    integer_input: int | None = None  # inputs are ids in [0, integer_input) when set
    apply_kwargs: dict = field(default_factory=dict)
    vmappable: bool = True  # False when the layer needs its exact input rank
    bf16: bool = True
    bad_shapes: tuple = ()  # input shapes that must raise tlean.ShapeError at trace time


CASES: list[Case] = [
    # --- foundation (issue 2) ---
    Case("Linear", lambda: L.Linear(5, 3), (4, 5), bad_shapes=((4, 6), (), (5, 4))),
    Case("Linear-3d-nobias", lambda: L.Linear(5, 3, bias=False), (2, 4, 5)),
    Case("LinearVec", lambda: L.LinearVec(5, 3), (5,), vmappable=False, bad_shapes=((1, 5), (4,))),
    Case("ReLU", lambda: L.ReLU(), (3, 4)),
    Case("GELU", lambda: L.GELU(), (3, 4)),
    Case("GELU-tanh", lambda: L.GELU("tanh"), (3, 4)),
    Case("SiLU", lambda: L.SiLU(), (3, 4)),
    Case("Tanh", lambda: L.Tanh(), (3, 4)),
    Case("Sigmoid", lambda: L.Sigmoid(), (3, 4)),
    Case("Softmax", lambda: L.Softmax(-1), (3, 4), bad_shapes=((),)),
    Case("Identity", lambda: L.Identity(), (3, 4)),
    Case("Flatten", lambda: L.Flatten(), (2, 3, 4), bad_shapes=((3,),)),
    Case("Flatten-0", lambda: L.Flatten(0), (2, 3, 4), vmappable=False),
    Case("Sum", lambda: L.Sum(-1), (2, 3)),
    Case("Mean", lambda: L.Mean(-1), (2, 3), bad_shapes=((),)),
    Case("Select", lambda: L.Select(-1, -2), (2, 3, 4), bad_shapes=((4,), (2, 0, 4))),
    Case("Dropout", lambda: L.Dropout(0.3), (4, 6)),
    Case("Seq", lambda: L.seq(L.Linear(5, 8), L.relu, L.Dropout(0.1), L.Linear(8, 2)), (3, 5), bad_shapes=((3, 4),)),
    Case("Seq-named", lambda: L.seq(fc=L.Linear(5, 4), act=L.tanh), (3, 5)),
    Case("LayerNorm", lambda: L.LayerNorm(6), (3, 6), bad_shapes=((3, 5), ())),
    Case("LayerNorm-2d", lambda: L.LayerNorm((2, 3), eps=1e-3), (4, 2, 3), bad_shapes=((4, 3, 2), (3,))),
    Case("RMSNorm", lambda: L.RMSNorm(6), (3, 6), bad_shapes=((3, 5),)),
    # --- vision (issue 3) ---
    # --- sequence (issue 4) ---
    # --- recurrent (issue 5) ---
    Case("RNN", lambda: L.RNN(3, 4), (5, 3), bad_shapes=((5, 4), (3,), (2, 5, 2, 3))),
    Case("RNN-relu-batched", lambda: L.RNN(3, 4, nonlinearity="relu"), (5, 2, 3), bad_shapes=((5, 2, 4),)),
    Case("GRU", lambda: L.GRU(3, 4), (5, 3), bad_shapes=((5, 2),)),
    Case("GRU-2-layers-batch-first", lambda: L.GRU(3, 4, num_layers=2, batch_first=True), (2, 5, 3)),
    Case("LSTM", lambda: L.LSTM(3, 4), (5, 3), bad_shapes=((5, 4), (1, 1, 1, 3))),
    Case("LSTM-batched-nobias", lambda: L.LSTM(3, 4, bias=False, dtype=jnp.float32), (5, 2, 3)),
    Case("LSTM-2-layers-final", lambda: L.LSTM(3, 4, num_layers=2), (5, 2, 3),
         apply_kwargs={"return_final": True}, vmappable=False),
    Case("Mamba", lambda: L.Mamba(3, 6), (7, 3), bad_shapes=((7, 4), (3,))),
    Case("Mamba-batched", lambda: L.Mamba(3, 6), (7, 2, 3)),
    Case("Mamba-sequential-batch-first", lambda: L.Mamba(3, 6, batch_first=True, mode="sequential"), (2, 7, 3)),
]
