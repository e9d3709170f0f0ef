"""The PyTorch-style shim: ``nn.Linear(...)`` etc. are Builders of Models.

>>> from tlean import nn
>>> model = nn.run(0, nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10)))
>>> model.num_params()
203530

Every layer has a CamelCase builder here (PyTorch's name where PyTorch has the layer)
and a snake_case explicit-key constructor in :mod:`tlean.nn.pure`.
"""

from tlean import layers as _layers
from tlean._model import Model as Model
from tlean.nn import pure as pure
from tlean.nn._build import build as build
from tlean.nn._build import builder_of as _builder_of
from tlean.nn._global import fresh_seed as fresh_seed
from tlean.nn._global import manual_seed as manual_seed
from tlean.nn._global import next_seed as next_seed
from tlean.nn._global import run_global as run_global
from tlean.nn._global import with_model as with_model
from tlean.nn._lora import lora as lora
from tlean.nn._sequential import Sequential as Sequential
from tlean.seed import Builder as Builder
from tlean.seed import SeedStream as SeedStream
from tlean.seed import fresh as fresh
from tlean.seed import lift as lift
from tlean.seed import run as run

AvgPool2d = _builder_of(_layers.AvgPool2d)
BasicBlock = _builder_of(_layers.BasicBlock)
Bottleneck = _builder_of(_layers.Bottleneck)
BatchNorm2d = _builder_of(_layers.BatchNorm2d)
Conv2d = _builder_of(_layers.Conv2d)
Dropout = _builder_of(_layers.Dropout)
Embedding = _builder_of(_layers.Embedding)
Flatten = _builder_of(_layers.Flatten)
GELU = _builder_of(_layers.GELU)
GRU = _builder_of(_layers.GRU)
GlobalAvgPool = _builder_of(_layers.GlobalAvgPool)
Identity = _builder_of(_layers.Identity)
LSTM = _builder_of(_layers.LSTM)
Lambda = _builder_of(_layers.Lambda)
LayerNorm = _builder_of(_layers.LayerNorm)
LearnedPositionalEmbedding = _builder_of(_layers.LearnedPositionalEmbedding)
Linear = _builder_of(_layers.Linear)
LinearVec = _builder_of(_layers.LinearVec)
LoRALinear = _builder_of(_layers.LoRALinear)
Mamba = _builder_of(_layers.Mamba)
MaxPool2d = _builder_of(_layers.MaxPool2d)
Mean = _builder_of(_layers.Mean)
_BATCH_FIRST = (("batch_first", False),)  # attention/Transformer: torch's default batch_first=False, tlean's True
MultiheadAttention = _builder_of(_layers.MultiheadAttention, require=_BATCH_FIRST)
RMSNorm = _builder_of(_layers.RMSNorm)
RNN = _builder_of(_layers.RNN)
GRUCell = _builder_of(_layers.GRUCell)
LSTMCell = _builder_of(_layers.LSTMCell)
RNNCell = _builder_of(_layers.RNNCell)
ReLU = _builder_of(_layers.ReLU)
RoPE = _builder_of(_layers.RoPE)
Select = _builder_of(_layers.Select)
SiLU = _builder_of(_layers.SiLU)
Sigmoid = _builder_of(_layers.Sigmoid)
SinusoidalPositionalEncoding = _builder_of(_layers.SinusoidalPositionalEncoding)
Sum = _builder_of(_layers.Sum)
Tanh = _builder_of(_layers.Tanh)
TransformerEncoder = _builder_of(_layers.TransformerEncoder)
TransformerEncoderBlock = _builder_of(_layers.TransformerEncoderBlock, require=_BATCH_FIRST)
TransformerEncoderLayer = _builder_of(_layers.TransformerEncoderBlock, "TransformerEncoderLayer", require=_BATCH_FIRST)
TransformerDecoderLayer = _builder_of(_layers.TransformerDecoderLayer, require=_BATCH_FIRST)
TransformerDecoder = _builder_of(_layers.TransformerDecoder)
Transformer = _builder_of(_layers.Transformer, require=_BATCH_FIRST)
Attention = _builder_of(_layers.Attention)
GatedFeedForward = _builder_of(_layers.GatedFeedForward)
Stacked = _builder_of(_layers.Stacked)
Residual = _builder_of(_layers.Residual)
Parallel = _builder_of(_layers.Parallel)

_AFFINE = (("affine", False),)  # InstanceNorm: torch's default affine=False, tlean's True (DESIGN 2.1)
_DIM = (("dim", None),)  # softmax family: torch's implicit dim=None (a legacy rule), tlean's dim=-1
Softmax = _builder_of(_layers.Softmax, require=_DIM)
# --- breadth: convolution, transposed convolution, pooling, resampling, padding (issue 13) ---
Conv1d = _builder_of(_layers.Conv1d)
Conv3d = _builder_of(_layers.Conv3d)
ConvTranspose1d = _builder_of(_layers.ConvTranspose1d)
ConvTranspose2d = _builder_of(_layers.ConvTranspose2d)
ConvTranspose3d = _builder_of(_layers.ConvTranspose3d)
MaxPool1d = _builder_of(_layers.MaxPool1d)
MaxPool3d = _builder_of(_layers.MaxPool3d)
AvgPool1d = _builder_of(_layers.AvgPool1d)
AvgPool3d = _builder_of(_layers.AvgPool3d)
AdaptiveAvgPool1d = _builder_of(_layers.AdaptiveAvgPool1d)
AdaptiveAvgPool2d = _builder_of(_layers.AdaptiveAvgPool2d)
AdaptiveAvgPool3d = _builder_of(_layers.AdaptiveAvgPool3d)
AdaptiveMaxPool1d = _builder_of(_layers.AdaptiveMaxPool1d)
AdaptiveMaxPool2d = _builder_of(_layers.AdaptiveMaxPool2d)
AdaptiveMaxPool3d = _builder_of(_layers.AdaptiveMaxPool3d)
Upsample = _builder_of(_layers.Upsample)
PixelShuffle = _builder_of(_layers.PixelShuffle)
PixelUnshuffle = _builder_of(_layers.PixelUnshuffle)
ZeroPad1d = _builder_of(_layers.ZeroPad1d)
ZeroPad2d = _builder_of(_layers.ZeroPad2d)
ZeroPad3d = _builder_of(_layers.ZeroPad3d)
ConstantPad1d = _builder_of(_layers.ConstantPad1d)
ConstantPad2d = _builder_of(_layers.ConstantPad2d)
ConstantPad3d = _builder_of(_layers.ConstantPad3d)
ReflectionPad1d = _builder_of(_layers.ReflectionPad1d)
ReflectionPad2d = _builder_of(_layers.ReflectionPad2d)
ReflectionPad3d = _builder_of(_layers.ReflectionPad3d)
ReplicationPad1d = _builder_of(_layers.ReplicationPad1d)
ReplicationPad2d = _builder_of(_layers.ReplicationPad2d)
ReplicationPad3d = _builder_of(_layers.ReplicationPad3d)
CircularPad1d = _builder_of(_layers.CircularPad1d)
CircularPad2d = _builder_of(_layers.CircularPad2d)
CircularPad3d = _builder_of(_layers.CircularPad3d)

# --- breadth: activations, dropout, norms, embeddings, bilinear, distances (issue 13) ---
AlphaDropout = _builder_of(_layers.AlphaDropout)
BatchNorm1d = _builder_of(_layers.BatchNorm1d)
BatchNorm3d = _builder_of(_layers.BatchNorm3d)
Bilinear = _builder_of(_layers.Bilinear)
CELU = _builder_of(_layers.CELU)
CosineSimilarity = _builder_of(_layers.CosineSimilarity)
Dropout1d = _builder_of(_layers.Dropout1d)
Dropout2d = _builder_of(_layers.Dropout2d)
Dropout3d = _builder_of(_layers.Dropout3d)
ELU = _builder_of(_layers.ELU)
EmbeddingBag = _builder_of(_layers.EmbeddingBag)
FeatureAlphaDropout = _builder_of(_layers.FeatureAlphaDropout)
GLU = _builder_of(_layers.GLU)
GroupNorm = _builder_of(_layers.GroupNorm)
Hardshrink = _builder_of(_layers.Hardshrink)
Hardsigmoid = _builder_of(_layers.Hardsigmoid)
Hardswish = _builder_of(_layers.Hardswish)
Hardtanh = _builder_of(_layers.Hardtanh)
InstanceNorm1d = _builder_of(_layers.InstanceNorm1d, require=_AFFINE)
InstanceNorm2d = _builder_of(_layers.InstanceNorm2d, require=_AFFINE)
InstanceNorm3d = _builder_of(_layers.InstanceNorm3d, require=_AFFINE)
LeakyReLU = _builder_of(_layers.LeakyReLU)
LocalResponseNorm = _builder_of(_layers.LocalResponseNorm)
LogSigmoid = _builder_of(_layers.LogSigmoid)
LogSoftmax = _builder_of(_layers.LogSoftmax, require=_DIM)
Mish = _builder_of(_layers.Mish)
PReLU = _builder_of(_layers.PReLU)
PairwiseDistance = _builder_of(_layers.PairwiseDistance)
RReLU = _builder_of(_layers.RReLU)
ReLU6 = _builder_of(_layers.ReLU6)
SELU = _builder_of(_layers.SELU)
Softmax2d = _builder_of(_layers.Softmax2d)
Softmin = _builder_of(_layers.Softmin, require=_DIM)
Softplus = _builder_of(_layers.Softplus)
Softshrink = _builder_of(_layers.Softshrink)
Softsign = _builder_of(_layers.Softsign)
Tanhshrink = _builder_of(_layers.Tanhshrink)
Threshold = _builder_of(_layers.Threshold)
Unflatten = _builder_of(_layers.Unflatten)

__all__ = sorted(name for name in dir() if not name.startswith("_"))
