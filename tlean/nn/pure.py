"""Explicit-key constructors: ``nn.pure.linear(784, 256, key=k)`` returns a Model.

A layer with parameters needs ``key=``; a parameter-free one takes none. Compose the
Models with ``>>``:

>>> import jax
>>> from tlean import nn
>>> k1, k2 = jax.random.split(jax.random.key(0))
>>> net = nn.pure.linear(4, 8, key=k1) >> nn.pure.relu() >> nn.pure.linear(8, 2, key=k2)
>>> len(net)
3
"""

from tlean import layers as _layers
from tlean.nn._build import pure_of as _pure_of

avg_pool2d = _pure_of(_layers.AvgPool2d, "avg_pool2d")
basic_block = _pure_of(_layers.BasicBlock, "basic_block")
batch_norm2d = _pure_of(_layers.BatchNorm2d, "batch_norm2d")
conv2d = _pure_of(_layers.Conv2d, "conv2d")
dropout = _pure_of(_layers.Dropout, "dropout")
embedding = _pure_of(_layers.Embedding, "embedding")
flatten = _pure_of(_layers.Flatten, "flatten")
gelu = _pure_of(_layers.GELU, "gelu")
global_avg_pool = _pure_of(_layers.GlobalAvgPool, "global_avg_pool")
gru = _pure_of(_layers.GRU, "gru")
identity = _pure_of(_layers.Identity, "identity")
instance_norm2d = _pure_of(_layers.InstanceNorm2d, "instance_norm2d")
lambda_ = _pure_of(_layers.Lambda, "lambda_")
layer_norm = _pure_of(_layers.LayerNorm, "layer_norm")
learned_positional_embedding = _pure_of(_layers.LearnedPositionalEmbedding, "learned_positional_embedding")
linear = _pure_of(_layers.Linear, "linear")
linear_vec = _pure_of(_layers.LinearVec, "linear_vec")
lstm = _pure_of(_layers.LSTM, "lstm")
mamba = _pure_of(_layers.Mamba, "mamba")
max_pool2d = _pure_of(_layers.MaxPool2d, "max_pool2d")
mean = _pure_of(_layers.Mean, "mean")
multihead_attention = _pure_of(_layers.MultiheadAttention, "multihead_attention")
relu = _pure_of(_layers.ReLU, "relu")
rms_norm = _pure_of(_layers.RMSNorm, "rms_norm")
rnn = _pure_of(_layers.RNN, "rnn")
rope = _pure_of(_layers.RoPE, "rope")
select = _pure_of(_layers.Select, "select")
sigmoid = _pure_of(_layers.Sigmoid, "sigmoid")
silu = _pure_of(_layers.SiLU, "silu")
sinusoidal_positional_encoding = _pure_of(_layers.SinusoidalPositionalEncoding, "sinusoidal_positional_encoding")
softmax = _pure_of(_layers.Softmax, "softmax")
sum = _pure_of(_layers.Sum, "sum")
tanh = _pure_of(_layers.Tanh, "tanh")
transformer_encoder = _pure_of(_layers.TransformerEncoder, "transformer_encoder")
transformer_encoder_block = _pure_of(_layers.TransformerEncoderBlock, "transformer_encoder_block")

__all__ = sorted(name for name in dir() if not name.startswith("_"))
