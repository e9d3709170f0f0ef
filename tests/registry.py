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
    Case(
        "Conv2d-chw-groups-dilation",
        lambda: L.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2, bias=False),
        (4, 7, 6),
        bad_shapes=((3, 7, 6), (2, 1, 4, 7, 6), (4, 7, 2)),
    ),
    Case("Conv2d-same-dilated", lambda: L.Conv2d(3, 4, 4, padding="same", dilation=2), (2, 3, 5, 5)),
    Case("MaxPool2d", lambda: L.MaxPool2d(2), (2, 3, 4, 4), bad_shapes=((2, 3, 1, 1), (4, 4))),
    Case("MaxPool2d-chw-padded", lambda: L.MaxPool2d(3, stride=2, padding=1), (3, 5, 5)),
    Case(
        "MaxPool2d-dilated",
        lambda: L.MaxPool2d((3, 2), stride=(1, 2), padding=1, dilation=(2, 1)),
        (2, 3, 7, 6),
        bad_shapes=((2, 3, 2, 6),),
    ),
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
    Case(
        "LearnedPositionalEmbedding",
        lambda: L.LearnedPositionalEmbedding(6, 4),
        (2, 5, 4),
        bad_shapes=((2, 7, 4), (2, 5, 3), (4,)),
    ),
    Case(
        "SinusoidalPositionalEncoding",
        lambda: L.SinusoidalPositionalEncoding(4, max_len=8),
        (2, 5, 4),
        bad_shapes=((2, 9, 4), (2, 5, 3), (4,)),
    ),
    Case(
        "SinusoidalPositionalEncoding-odd-start",
        lambda: L.SinusoidalPositionalEncoding(5, 8, start_pos=3),
        (2, 5, 5),
        bad_shapes=((2, 6, 5),),
    ),
    Case("RoPE", lambda: L.RoPE(4, max_len=8), (2, 3, 5, 4), bad_shapes=((2, 3, 9, 4), (2, 3, 5, 5), (4,))),
    Case("RoPE-odd", lambda: L.RoPE(5, max_len=8, start_pos=2), (2, 3, 5, 5)),
    Case("RoPE-half-split", lambda: L.RoPE(6, max_len=8, interleaved=False), (2, 3, 5, 6)),
    Case(
        "RoPE-llama3-scaling",
        lambda: L.RoPE(8, 16, interleaved=False, base=5e5, scaling=L.RopeScaling("llama3", 8.0, 1.0, 4.0, 4)),
        (2, 3, 5, 8),
    ),
    Case(
        "MultiheadAttention", lambda: L.MultiheadAttention(8, 2), (2, 5, 8), bad_shapes=((2, 5, 7), (8,), (1, 2, 5, 8))
    ),
    Case("MultiheadAttention-causal-dropout", lambda: L.MultiheadAttention(8, 2, causal=True, dropout=0.3), (2, 5, 8)),
    Case(
        "MultiheadAttention-allow-nobias",
        lambda: L.MultiheadAttention(8, 4, bias=False),
        (2, 5, 8),
        apply_kwargs={"allow": np.tril(np.ones((5, 5), bool))},
    ),
    Case(
        "MultiheadAttention-seq-first",
        lambda: L.MultiheadAttention(8, 2, 0.2, batch_first=False),
        (5, 2, 8),
        vmappable=False,
    ),
    Case(
        "MultiheadAttention-key-padding",
        lambda: L.MultiheadAttention(8, 2),
        (2, 5, 8),
        vmappable=False,
        apply_kwargs={"key_padding_mask": np.array([[False] * 5, [False] * 3 + [True] * 2])},
    ),
    Case("TransformerEncoderBlock", lambda: L.TransformerEncoderBlock(8, 2, 16), (2, 5, 8), bad_shapes=((2, 5, 6),)),
    Case(
        "TransformerEncoderBlock-prenorm-gelu-causal",
        lambda: L.TransformerEncoderBlock(8, 2, 16, 0.2, "gelu", norm_first=True, causal=True),
        (2, 5, 8),
    ),
    Case(
        "TransformerEncoderBlock-seq-first",
        lambda: L.TransformerEncoderBlock(8, 2, 16, 0.1, "relu", 1e-5, False),
        (5, 2, 8),
        vmappable=False,
    ),
    Case("TransformerEncoder", lambda: L.TransformerEncoder.of(2, 8, 2, 16), (2, 5, 8), bad_shapes=((2, 5, 6), (8,))),
    Case(
        "TransformerEncoder-unrolled-final-norm",
        lambda: L.TransformerEncoder.of(2, 8, 2, 16, norm_first=True, final_norm=True, scan=False),
        (2, 5, 8),
    ),
    # cross-attention, decoders, Transformer (issue 13)
    Case(
        "MultiheadAttention-cross-kdim-vdim-bias-kv-zero-attn",
        lambda: L.MultiheadAttention(8, 2, 0.2, True, True, True, 6, 3),
        (2, 5, 8),
        vmappable=False,
        apply_kwargs={
            "kv": (
                np.random.default_rng(1).normal(size=(2, 4, 6)).astype(np.float32),
                np.random.default_rng(2).normal(size=(2, 4, 3)).astype(np.float32),
            )
        },
        bad_shapes=((2, 5, 7), (1, 2, 5, 8)),
    ),
    Case(
        "MultiheadAttention-need-weights-per-head",
        lambda: L.MultiheadAttention(8, 2, causal=True),
        (2, 5, 8),
        vmappable=False,
        apply_kwargs={"need_weights": True, "average_attn_weights": False},
    ),
    Case(
        "TransformerDecoderLayer",
        lambda: L.TransformerDecoderLayer(8, 2, 16),
        (2, 5, 8),
        vmappable=False,
        apply_kwargs={
            "memory": np.random.default_rng(3).normal(size=(2, 4, 8)).astype(np.float32),
            "tgt_is_causal": True,
        },
        bad_shapes=((2, 5, 6), (3, 5, 8)),
    ),
    Case(
        "TransformerDecoderLayer-prenorm-gelu-seq-first",
        lambda: L.TransformerDecoderLayer(8, 2, 16, 0.2, "gelu", 1e-5, False, True),
        (5, 2, 8),
        vmappable=False,
        apply_kwargs={"memory": np.random.default_rng(4).normal(size=(4, 2, 8)).astype(np.float32)},
    ),
    Case(
        "TransformerDecoder",
        lambda: L.TransformerDecoder(L.TransformerDecoderLayer(8, 2, 16), 2, L.LayerNorm(8)),
        (2, 5, 8),
        vmappable=False,
        apply_kwargs={"memory": np.random.default_rng(5).normal(size=(2, 4, 8)).astype(np.float32)},
        bad_shapes=((2, 5, 6),),
    ),
    Case(
        "Transformer",
        lambda: L.Transformer(8, 2, 1, 1, 16),
        (2, 4, 8),
        vmappable=False,
        apply_kwargs={"tgt": np.random.default_rng(6).normal(size=(2, 5, 8)).astype(np.float32), "tgt_is_causal": True},
        bad_shapes=((2, 4, 6), (3, 4, 8)),
    ),
    Case(
        "Attention-gqa-rope-causal",
        lambda: L.Attention(8, 4, 2, rope=L.RoPE(2, 16), causal=True),
        (2, 5, 8),
        bad_shapes=((2, 5, 6), (5, 8), (2, 17, 8)),
    ),
    Case(
        "Attention-mqa-head-dim-bias-allow",
        lambda: L.Attention(8, 2, 1, 6, True, False),
        (2, 5, 8),
        apply_kwargs={"allow": np.tril(np.ones((5, 5), bool))},
    ),
    Case("GatedFeedForward", lambda: L.GatedFeedForward(8, 12), (2, 5, 8), bad_shapes=((2, 5, 6), ())),
    Case("GatedFeedForward-geglu-bias", lambda: L.GatedFeedForward(8, 12, "gelu_tanh", True), (3, 8)),
    # --- composites and combinators (issue 12) ---
    Case("Stacked-linear", lambda: L.Stacked(L.Linear(5, 5), 3), (4, 5), bad_shapes=((4, 6),)),
    Case(
        "Stacked-unrolled-seq", lambda: L.Stacked(L.seq(L.Linear(5, 5), L.Dropout(0.2), L.tanh), 2, scan=False), (4, 5)
    ),
    Case("Stacked-batchnorm-state", lambda: L.Stacked(L.BatchNorm2d(3), 2), (2, 3, 4, 4)),
    Case("Residual", lambda: L.Residual(L.seq(L.Linear(5, 5), L.relu)), (4, 5), bad_shapes=((4, 6),)),
    Case("Residual-projection", lambda: L.Residual(L.Linear(5, 3), shortcut=L.Linear(5, 3, bias=False)), (4, 5)),
    Case("Parallel-add", lambda: L.Parallel(L.Linear(5, 3), L.seq(L.Linear(5, 3), L.Dropout(0.1))), (4, 5)),
    Case(
        "Parallel-concat",
        lambda: L.Parallel(L.Linear(5, 3), L.Identity(), combine="concat"),
        (4, 5),
        bad_shapes=((4, 6),),
    ),
    Case(
        "GPT",
        lambda: M.GPT(11, 8, d_model=8, nhead=2),
        (2, 6),
        integer_input=11,
        vmappable=False,
        bad_shapes=((2, 9), (6,)),
    ),
    # --- model zoo: GPT-2 (issue 14) ---
    Case("Conv1D", lambda: M.Conv1D(3, 5), (2, 4, 5), bad_shapes=((4, 6), ())),
    # --- model zoo: ResNet-50's Bottleneck, LoRA (issue 14) ---
    Case(
        "Bottleneck-projection-groups",
        lambda: L.Bottleneck(4, 2, stride=2, groups=2, base_width=128),
        (2, 4, 6, 6),
        bad_shapes=((2, 8, 6, 6), (4, 6, 6)),
    ),
    Case("LoRALinear", lambda: L.LoRALinear(5, 3, rank=2, alpha=4.0), (2, 4, 5), bad_shapes=((4, 6), ())),
    # --- recurrent (issue 5) ---
    Case("RNN", lambda: L.RNN(3, 4), (5, 3), bad_shapes=((5, 4), (3,), (2, 5, 2, 3))),
    Case("RNN-relu-batched", lambda: L.RNN(3, 4, nonlinearity="relu"), (5, 2, 3), bad_shapes=((5, 2, 4),)),
    Case("GRU", lambda: L.GRU(3, 4), (5, 3), bad_shapes=((5, 2),)),
    Case("GRU-2-layers-batch-first", lambda: L.GRU(3, 4, num_layers=2, batch_first=True), (2, 5, 3)),
    Case("LSTM", lambda: L.LSTM(3, 4), (5, 3), bad_shapes=((5, 4), (1, 1, 1, 3))),
    Case("LSTM-batched-nobias", lambda: L.LSTM(3, 4, bias=False, dtype=jnp.float32), (5, 2, 3)),
    Case(
        "LSTM-2-layers-final",
        lambda: L.LSTM(3, 4, num_layers=2),
        (5, 2, 3),
        apply_kwargs={"return_final": True},
        vmappable=False,
    ),
    Case("Mamba", lambda: L.Mamba(3, 6), (7, 3), bad_shapes=((7, 4), (3,))),
    Case("Mamba-batched", lambda: L.Mamba(3, 6), (7, 2, 3)),
    Case("Mamba-sequential-batch-first", lambda: L.Mamba(3, 6, batch_first=True, mode="sequential"), (2, 7, 3)),
    Case("RNN-bidirectional-2-layers", lambda: L.RNN(3, 4, 2, bidirectional=True), (5, 2, 3), bad_shapes=((5, 2, 8),)),
    Case("GRU-bidirectional-batch-first", lambda: L.GRU(3, 4, batch_first=True, bidirectional=True), (2, 5, 3)),
    Case("LSTM-proj", lambda: L.LSTM(3, 4, proj_size=2), (5, 2, 3), bad_shapes=((5, 2, 2),)),
    Case(
        "LSTM-bidirectional-proj-final",
        lambda: L.LSTM(3, 4, 2, bidirectional=True, proj_size=3),
        (5, 3),
        apply_kwargs={"return_final": True},
        vmappable=False,
    ),
    Case("RNNCell", lambda: L.RNNCell(3, 4), (2, 3), bad_shapes=((2, 4), (1, 2, 3), ())),
    Case("RNNCell-relu-unbatched-nobias", lambda: L.RNNCell(3, 4, False, "relu"), (3,)),
    Case(
        "GRUCell-hx",
        lambda: L.GRUCell(3, 4),
        (2, 3),
        apply_kwargs={"hx": np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)},
        bad_shapes=((2, 2),),
    ),
    Case("LSTMCell", lambda: L.LSTMCell(3, 4), (2, 3), vmappable=False, bad_shapes=((2, 5), (3, 2, 3))),
    Case(
        "LSTMCell-hx-unbatched",
        lambda: L.LSTMCell(3, 4, bias=False),
        (3,),
        vmappable=False,
        apply_kwargs={"hx": (np.full(4, 0.5, np.float32), np.full(4, -0.5, np.float32))},
    ),
    # --- breadth: convolution, transposed convolution, pooling, resampling, padding (issue 13) ---
    Case("Conv1d", lambda: L.Conv1d(3, 4, 3, 2, 1), (2, 3, 7), bad_shapes=((2, 4, 7), (3, 7, 7, 7), (1, 3, 0))),
    Case(
        "Conv1d-chw-circular-groups",
        lambda: L.Conv1d(4, 2, 3, padding=2, groups=2, padding_mode="circular"),
        (4, 5),
        bad_shapes=((4, 1),),
    ),
    Case(
        "Conv2d-reflect-same",
        lambda: L.Conv2d(2, 3, 3, padding="same", padding_mode="reflect"),
        (2, 2, 4, 5),
        bad_shapes=((2, 2, 1, 5), (2, 3, 4, 5)),
    ),
    Case(
        "Conv3d",
        lambda: L.Conv3d(2, 3, (2, 3, 2), padding=(0, 1, 0)),
        (2, 2, 3, 4, 3),
        bad_shapes=((2, 2, 1, 4, 3), (2, 3, 4, 3, 3), (2, 4, 3)),
    ),
    Case("ConvTranspose1d", lambda: L.ConvTranspose1d(3, 2, 3, 2, 1, 1), (2, 3, 5), bad_shapes=((2, 2, 5), (3,))),
    Case(
        "ConvTranspose2d",
        lambda: L.ConvTranspose2d(4, 2, (3, 2), (2, 1), 1, (1, 0), 2, True, 1),
        (2, 4, 3, 4),
        bad_shapes=((2, 3, 3, 4), (4, 3), (1, 1, 4, 3, 4)),
    ),
    Case("ConvTranspose3d", lambda: L.ConvTranspose3d(2, 2, 2, stride=2), (1, 2, 2, 3, 2), bad_shapes=((1, 2, 2, 3),)),
    Case("MaxPool1d-ceil", lambda: L.MaxPool1d(2, 3, 1, ceil_mode=True), (2, 3, 7), bad_shapes=((7,), (2, 3, 0))),
    Case("MaxPool2d-ceil-dilated", lambda: L.MaxPool2d(2, 2, 1, 2, ceil_mode=True), (2, 2, 5, 6)),
    Case("MaxPool3d", lambda: L.MaxPool3d(2), (2, 2, 4, 4, 5), bad_shapes=((2, 2, 1, 4, 5), (4, 5))),
    Case("AvgPool1d", lambda: L.AvgPool1d(3, 2, 1, True, False), (2, 3, 8), bad_shapes=((8,),)),
    Case("AvgPool2d-ceil-divisor", lambda: L.AvgPool2d(3, 2, 1, True, True, 4), (3, 5, 6)),
    Case(
        "AvgPool3d", lambda: L.AvgPool3d((2, 3, 2), padding=(1, 1, 0)), (2, 2, 3, 4, 3), bad_shapes=((2, 2, 3, 4, 1),)
    ),
    Case("AdaptiveAvgPool1d", lambda: L.AdaptiveAvgPool1d(3), (2, 3, 7), bad_shapes=((7,), (2, 3, 0))),
    Case("AdaptiveAvgPool2d", lambda: L.AdaptiveAvgPool2d((None, 3)), (2, 2, 5, 7), bad_shapes=((5, 7),)),
    Case("AdaptiveAvgPool3d", lambda: L.AdaptiveAvgPool3d(2), (2, 3, 4, 5), bad_shapes=((3, 4, 5),)),
    Case("AdaptiveMaxPool1d", lambda: L.AdaptiveMaxPool1d(4), (3, 7), bad_shapes=((7,),)),
    Case("AdaptiveMaxPool2d", lambda: L.AdaptiveMaxPool2d((2, 3)), (2, 2, 5, 4), bad_shapes=((2, 2, 5, 4, 1, 1),)),
    Case("AdaptiveMaxPool3d", lambda: L.AdaptiveMaxPool3d((1, None, 2)), (2, 2, 3, 4, 5)),
    Case("Upsample-nearest", lambda: L.Upsample(scale_factor=2), (2, 3, 4, 5), bad_shapes=((4, 5), (1, 1, 1, 1, 1, 1))),
    Case(
        "Upsample-bilinear-size",
        lambda: L.Upsample((5, 7), mode="bilinear", align_corners=True),
        (2, 3, 4, 4),
        bad_shapes=((3, 4, 4), (2, 3, 4)),
        vmappable=False,
    ),
    Case("Upsample-bicubic", lambda: L.Upsample(scale_factor=1.5, mode="bicubic"), (2, 2, 4, 3), vmappable=False),
    Case("PixelShuffle", lambda: L.PixelShuffle(2), (2, 8, 3, 2), bad_shapes=((2, 6, 3, 2), (8, 3))),
    Case("PixelUnshuffle", lambda: L.PixelUnshuffle(2), (2, 2, 4, 6), bad_shapes=((2, 2, 3, 6), (4, 6))),
    Case("ZeroPad2d", lambda: L.ZeroPad2d((1, 2, 0, 1)), (2, 3, 4, 4), bad_shapes=((4,),)),
    Case("ConstantPad1d-crop", lambda: L.ConstantPad1d((-1, 2), 0.5), (2, 3, 5), bad_shapes=((2, 3, 0),)),
    Case("ConstantPad3d", lambda: L.ConstantPad3d(1, -1.0), (2, 2, 2, 3)),
    Case("ReflectionPad1d", lambda: L.ReflectionPad1d(2), (2, 3, 5), bad_shapes=((2, 3, 2), (5,))),
    Case(
        "ReflectionPad2d", lambda: L.ReflectionPad2d((1, 0, 2, 1)), (3, 4, 4), bad_shapes=((3, 2, 4), (1, 1, 1, 4, 4))
    ),
    Case("ReflectionPad3d", lambda: L.ReflectionPad3d(1), (1, 2, 3, 3, 2), bad_shapes=((1, 2, 1, 3, 2),)),
    Case("ReplicationPad1d", lambda: L.ReplicationPad1d((0, 3)), (3, 4), bad_shapes=((4,),)),
    Case("ReplicationPad2d", lambda: L.ReplicationPad2d(1), (2, 2, 3, 3), bad_shapes=((3,),)),
    Case("ReplicationPad3d", lambda: L.ReplicationPad3d((1, 0, 0, 1, 1, 0)), (2, 2, 2, 2)),
    Case("CircularPad1d", lambda: L.CircularPad1d(2), (2, 3, 4), bad_shapes=((2, 3, 1),)),
    Case("CircularPad2d", lambda: L.CircularPad2d((1, 1, 0, 2)), (2, 3, 3)),
    Case("CircularPad3d", lambda: L.CircularPad3d(1), (1, 1, 2, 2, 2), bad_shapes=((2, 2),)),
    Case("ZeroPad1d", lambda: L.ZeroPad1d(1), (2, 3)),
    Case("ZeroPad3d", lambda: L.ZeroPad3d((0, 1, 1, 0, 0, 1)), (1, 2, 2, 2)),
    Case("ConstantPad2d", lambda: L.ConstantPad2d(1, 2.0), (2, 3, 3)),
    # --- breadth: activations, dropout, norms, embeddings, bilinear, distances (issue 13) ---
    Case("ReLU6", lambda: L.ReLU6(), (3, 4)),
    Case("LeakyReLU", lambda: L.LeakyReLU(0.2), (3, 4)),
    Case("PReLU-channels", lambda: L.PReLU(4, 0.1), (3, 4, 5), bad_shapes=((3, 5, 5), (4,))),
    Case("RReLU", lambda: L.RReLU(0.1, 0.3), (3, 4)),
    Case("ELU", lambda: L.ELU(0.5), (3, 4)),
    Case("SELU", lambda: L.SELU(), (3, 4)),
    Case("CELU", lambda: L.CELU(2.0), (3, 4)),
    Case("Mish", lambda: L.Mish(), (3, 4)),
    Case("Hardswish", lambda: L.Hardswish(), (3, 4)),
    Case("Hardsigmoid", lambda: L.Hardsigmoid(), (3, 4)),
    Case("Hardtanh", lambda: L.Hardtanh(-2.0, 1.5), (3, 4)),
    Case("Hardshrink", lambda: L.Hardshrink(0.3), (3, 4)),
    Case("Softshrink", lambda: L.Softshrink(0.3), (3, 4)),
    Case("Softplus", lambda: L.Softplus(2.0, 5.0), (3, 4)),
    Case("Softsign", lambda: L.Softsign(), (3, 4)),
    Case("LogSigmoid", lambda: L.LogSigmoid(), (3, 4)),
    Case("Softmin", lambda: L.Softmin(1), (3, 4), bad_shapes=((4,),)),
    Case("LogSoftmax", lambda: L.LogSoftmax(-1), (3, 4), bad_shapes=((),)),
    Case("Softmax2d", lambda: L.Softmax2d(), (2, 3, 4, 4), bad_shapes=((3, 4),)),
    Case("Tanhshrink", lambda: L.Tanhshrink(), (3, 4)),
    Case("Threshold", lambda: L.Threshold(0.1, 2.0), (3, 4)),
    Case("GLU", lambda: L.GLU(), (3, 4), bad_shapes=((3, 5),)),
    Case("Dropout1d", lambda: L.Dropout1d(0.3), (2, 3, 5), bad_shapes=((5,),)),
    Case("Dropout2d", lambda: L.Dropout2d(0.3), (2, 3, 4, 4), bad_shapes=((4, 4),)),
    Case("Dropout3d", lambda: L.Dropout3d(0.3), (2, 3, 2, 2, 2), bad_shapes=((2, 2, 2),)),
    Case("AlphaDropout", lambda: L.AlphaDropout(0.2), (4, 6)),
    Case("FeatureAlphaDropout", lambda: L.FeatureAlphaDropout(0.2), (2, 3, 4), bad_shapes=((4,),)),
    Case("BatchNorm1d", lambda: L.BatchNorm1d(3), (4, 3), bad_shapes=((4, 5), (3,), (2, 3, 4, 4))),
    Case("BatchNorm1d-3d-no-bias", lambda: L.BatchNorm1d(3, 1e-3, 0.2, bias=False), (4, 3, 5)),
    Case("BatchNorm3d", lambda: L.BatchNorm3d(3), (2, 3, 2, 2, 2), bad_shapes=((2, 3, 2, 2), (2, 4, 2, 2, 2))),
    Case(
        "InstanceNorm1d-running-stats",
        lambda: L.InstanceNorm1d(3, track_running_stats=True),
        (2, 3, 5),
        bad_shapes=((2, 4, 5), (5,)),
    ),
    Case(
        "InstanceNorm3d-no-affine",
        lambda: L.InstanceNorm3d(2, affine=False),
        (2, 2, 2, 3, 2),
        bad_shapes=((2, 2, 1, 1, 1),),
    ),
    Case("GroupNorm", lambda: L.GroupNorm(2, 4), (3, 4, 5), bad_shapes=((3, 6, 5), (4,))),
    Case("GroupNorm-2d-input", lambda: L.GroupNorm(4, 4, affine=False), (3, 4)),
    Case("LocalResponseNorm", lambda: L.LocalResponseNorm(3), (2, 4, 5), bad_shapes=((2, 4),)),
    Case("Embedding-padding-max-norm", lambda: L.Embedding(7, 4, padding_idx=0, max_norm=1.0), (3, 5), integer_input=7),
    Case("EmbeddingBag", lambda: L.EmbeddingBag(7, 4), (3, 5), integer_input=7, bad_shapes=((1, 3, 5),)),
    Case("EmbeddingBag-max-padding", lambda: L.EmbeddingBag(7, 4, mode="max", padding_idx=2), (3, 5), integer_input=7),
    Case(
        "Bilinear",
        lambda: L.Bilinear(5, 3, 4),
        (2, 5),
        apply_kwargs={"input2": np.ones((2, 3), np.float32)},
        bad_shapes=((2, 4), (1, 5)),
    ),
    Case(
        "CosineSimilarity",
        lambda: L.CosineSimilarity(-1),
        (3, 4),
        apply_kwargs={"x2": np.linspace(-1, 1, 4, dtype=np.float32)},
        bad_shapes=((3, 5),),
    ),
    Case(
        "PairwiseDistance",
        lambda: L.PairwiseDistance(3.0),
        (3, 4),
        apply_kwargs={"x2": np.linspace(-1, 1, 4, dtype=np.float32)},
        bad_shapes=((3, 5),),
    ),
    Case("Unflatten", lambda: L.Unflatten(1, (2, -1)), (3, 4), bad_shapes=((3, 5), (4,))),
]
