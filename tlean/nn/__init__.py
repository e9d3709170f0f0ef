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
from tlean.nn._sequential import Sequential as Sequential
from tlean.seed import Builder as Builder
from tlean.seed import SeedStream as SeedStream
from tlean.seed import fresh as fresh
from tlean.seed import lift as lift
from tlean.seed import run as run

AvgPool2d = _builder_of(_layers.AvgPool2d)
BasicBlock = _builder_of(_layers.BasicBlock)
BatchNorm2d = _builder_of(_layers.BatchNorm2d)
Conv2d = _builder_of(_layers.Conv2d)
Dropout = _builder_of(_layers.Dropout)
Embedding = _builder_of(_layers.Embedding)
Flatten = _builder_of(_layers.Flatten)
GELU = _builder_of(_layers.GELU)
GRU = _builder_of(_layers.GRU)
GlobalAvgPool = _builder_of(_layers.GlobalAvgPool)
Identity = _builder_of(_layers.Identity)
InstanceNorm2d = _builder_of(_layers.InstanceNorm2d)
LSTM = _builder_of(_layers.LSTM)
Lambda = _builder_of(_layers.Lambda)
LayerNorm = _builder_of(_layers.LayerNorm)
LearnedPositionalEmbedding = _builder_of(_layers.LearnedPositionalEmbedding)
Linear = _builder_of(_layers.Linear)
LinearVec = _builder_of(_layers.LinearVec)
Mamba = _builder_of(_layers.Mamba)
MaxPool2d = _builder_of(_layers.MaxPool2d)
Mean = _builder_of(_layers.Mean)
MultiheadAttention = _builder_of(_layers.MultiheadAttention)
RMSNorm = _builder_of(_layers.RMSNorm)
RNN = _builder_of(_layers.RNN)
ReLU = _builder_of(_layers.ReLU)
RoPE = _builder_of(_layers.RoPE)
Select = _builder_of(_layers.Select)
SiLU = _builder_of(_layers.SiLU)
Sigmoid = _builder_of(_layers.Sigmoid)
SinusoidalPositionalEncoding = _builder_of(_layers.SinusoidalPositionalEncoding)
Softmax = _builder_of(_layers.Softmax)
Sum = _builder_of(_layers.Sum)
Tanh = _builder_of(_layers.Tanh)
TransformerEncoder = _builder_of(_layers.TransformerEncoder)
TransformerEncoderBlock = _builder_of(_layers.TransformerEncoderBlock)

__all__ = sorted(name for name in dir() if not name.startswith("_"))
