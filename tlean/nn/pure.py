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

dropout = _pure_of(_layers.Dropout, "dropout")
flatten = _pure_of(_layers.Flatten, "flatten")
gelu = _pure_of(_layers.GELU, "gelu")
gru = _pure_of(_layers.GRU, "gru")
identity = _pure_of(_layers.Identity, "identity")
lambda_ = _pure_of(_layers.Lambda, "lambda_")
layer_norm = _pure_of(_layers.LayerNorm, "layer_norm")
linear = _pure_of(_layers.Linear, "linear")
linear_vec = _pure_of(_layers.LinearVec, "linear_vec")
lstm = _pure_of(_layers.LSTM, "lstm")
mamba = _pure_of(_layers.Mamba, "mamba")
mean = _pure_of(_layers.Mean, "mean")
relu = _pure_of(_layers.ReLU, "relu")
rms_norm = _pure_of(_layers.RMSNorm, "rms_norm")
rnn = _pure_of(_layers.RNN, "rnn")
select = _pure_of(_layers.Select, "select")
sigmoid = _pure_of(_layers.Sigmoid, "sigmoid")
silu = _pure_of(_layers.SiLU, "silu")
softmax = _pure_of(_layers.Softmax, "softmax")
sum = _pure_of(_layers.Sum, "sum")
tanh = _pure_of(_layers.Tanh, "tanh")

__all__ = sorted(name for name in dir() if not name.startswith("_"))
