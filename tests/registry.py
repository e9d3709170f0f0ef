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
import numpy as np

from tlean import layers as L
from tlean import models as M


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
    Case("Lambda", lambda: L.Lambda(jnp.tanh), (3, 4)),
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
    Case("Conv2d", lambda: L.Conv2d(3, 4, 3), (2, 3, 6, 6), bad_shapes=((2, 4, 6, 6), (3, 6), (6,), (1, 3, 2, 2))),
    Case("Conv2d-chw-groups-dilation", lambda: L.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2, bias=False),
         (4, 7, 6), bad_shapes=((3, 7, 6), (2, 1, 4, 7, 6), (4, 7, 2))),
    Case("Conv2d-same-dilated", lambda: L.Conv2d(3, 4, 4, padding="same", dilation=2), (2, 3, 5, 5)),
    Case("MaxPool2d", lambda: L.MaxPool2d(2), (2, 3, 4, 4), bad_shapes=((2, 3, 1, 1), (4, 4))),
    Case("MaxPool2d-chw-padded", lambda: L.MaxPool2d(3, stride=2, padding=1), (3, 5, 5)),
    Case("MaxPool2d-dilated", lambda: L.MaxPool2d((3, 2), stride=(1, 2), padding=1, dilation=(2, 1)), (2, 3, 7, 6),
         bad_shapes=((2, 3, 2, 6),)),
    Case("AvgPool2d", lambda: L.AvgPool2d(3, stride=2, padding=1), (2, 3, 5, 5), bad_shapes=((1, 1), (2, 3, 0, 5))),
    Case("AvgPool2d-chw-exclude-pad", lambda: L.AvgPool2d(2, padding=1, count_include_pad=False), (3, 4, 4)),
    Case("GlobalAvgPool", lambda: L.GlobalAvgPool(), (2, 3, 4, 4), bad_shapes=((3, 4), (2, 3, 0, 4))),
    Case("GlobalAvgPool-chw", lambda: L.GlobalAvgPool(), (3, 4, 4)),
    Case("BatchNorm2d", lambda: L.BatchNorm2d(3), (2, 3, 4, 4), bad_shapes=((2, 4, 4, 4), (3, 4, 4))),
    Case("BatchNorm2d-cumulative-no-affine", lambda: L.BatchNorm2d(3, momentum=None, affine=False), (2, 3, 4, 4)),
    Case("BatchNorm2d-batch-stats-only", lambda: L.BatchNorm2d(3, track_running_stats=False), (2, 3, 4, 4)),
    Case("InstanceNorm2d", lambda: L.InstanceNorm2d(3), (2, 3, 4, 4), bad_shapes=((2, 4, 4, 4), (2, 3, 1, 1), (4, 4))),
    Case("InstanceNorm2d-chw-no-affine", lambda: L.InstanceNorm2d(3, affine=False), (3, 4, 4)),
    Case("BasicBlock", lambda: L.BasicBlock(4, 4), (2, 4, 5, 5), bad_shapes=((2, 3, 5, 5), (4, 5, 5))),
    Case("BasicBlock-projection", lambda: L.BasicBlock(4, 8, stride=2), (2, 4, 6, 6)),
    # --- sequence (issue 4) ---
    Case("Embedding-ids", lambda: L.Embedding(7, 4), (3, 5), integer_input=7),
    Case("LearnedPositionalEmbedding", lambda: L.LearnedPositionalEmbedding(6, 4), (2, 5, 4),
         bad_shapes=((2, 7, 4), (2, 5, 3), (4,))),
    Case("SinusoidalPositionalEncoding", lambda: L.SinusoidalPositionalEncoding(4, max_len=8), (2, 5, 4),
         bad_shapes=((2, 9, 4), (2, 5, 3), (4,))),
    Case("SinusoidalPositionalEncoding-odd-start", lambda: L.SinusoidalPositionalEncoding(5, 8, start_pos=3), (2, 5, 5),
         bad_shapes=((2, 6, 5),)),
    Case("RoPE", lambda: L.RoPE(4, max_len=8), (2, 3, 5, 4), bad_shapes=((2, 3, 9, 4), (2, 3, 5, 5), (4,))),
    Case("RoPE-odd", lambda: L.RoPE(5, max_len=8, start_pos=2), (2, 3, 5, 5)),
    Case("RoPE-half-split", lambda: L.RoPE(6, max_len=8, interleaved=False), (2, 3, 5, 6)),
    Case("MultiheadAttention", lambda: L.MultiheadAttention(8, 2), (2, 5, 8), bad_shapes=((2, 5, 7), (8,), (1, 2, 5, 8))),
    Case("MultiheadAttention-causal-dropout", lambda: L.MultiheadAttention(8, 2, causal=True, dropout=0.3), (2, 5, 8)),
    Case("MultiheadAttention-mask-nobias", lambda: L.MultiheadAttention(8, 4, bias=False), (2, 5, 8),
         apply_kwargs={"mask": np.tril(np.ones((5, 5), bool))}),
    Case("MultiheadAttention-key-padding", lambda: L.MultiheadAttention(8, 2), (2, 5, 8), vmappable=False,
         apply_kwargs={"key_padding_mask": np.array([[False] * 5, [False] * 3 + [True] * 2])}),
    Case("TransformerEncoderBlock", lambda: L.TransformerEncoderBlock(8, 2, 16), (2, 5, 8), bad_shapes=((2, 5, 6),)),
    Case("TransformerEncoderBlock-prenorm-gelu-causal",
         lambda: L.TransformerEncoderBlock(8, 2, 16, 0.2, "gelu", norm_first=True, causal=True), (2, 5, 8)),
    Case("TransformerEncoder", lambda: L.TransformerEncoder(2, 8, 2, 16), (2, 5, 8), bad_shapes=((2, 5, 6), (8,))),
    Case("TransformerEncoder-unrolled", lambda: L.TransformerEncoder(2, 8, 2, 16, norm_first=True, scan=False), (2, 5, 8)),
    Case("GPT", lambda: M.GPT(11, 8, d_model=8, nhead=2), (2, 6), integer_input=11, vmappable=False,
         bad_shapes=((2, 9), (6,))),
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
