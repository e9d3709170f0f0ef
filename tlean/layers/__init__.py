"""Pure layers: frozen dataclasses with ``init(key) -> (params, state)`` and
``apply(params, state, x, *, key=None, train=False) -> (y, state)``.

Parameter-free layers are also plain values (``relu``, ``flatten``, ...).
"""

from tlean._core import Layer as Layer
from tlean._core import Seq as Seq
from tlean._core import seq as seq
from tlean.layers._activation import GELU as GELU
from tlean.layers._activation import Identity as Identity
from tlean.layers._activation import ReLU as ReLU
from tlean.layers._activation import SiLU as SiLU
from tlean.layers._activation import Sigmoid as Sigmoid
from tlean.layers._activation import Softmax as Softmax
from tlean.layers._activation import Tanh as Tanh
from tlean.layers._activation import gelu as gelu
from tlean.layers._activation import identity as identity
from tlean.layers._activation import relu as relu
from tlean.layers._activation import sigmoid as sigmoid
from tlean.layers._activation import silu as silu
from tlean.layers._activation import softmax as softmax
from tlean.layers._activation import tanh as tanh
from tlean.layers._attention import MultiheadAttention as MultiheadAttention
from tlean.layers._blocks import BasicBlock as BasicBlock
from tlean.layers._conv import Conv2d as Conv2d
from tlean.layers._dropout import Dropout as Dropout
from tlean.layers._embedding import Embedding as Embedding
from tlean.layers._linear import Linear as Linear
from tlean.layers._linear import LinearVec as LinearVec
from tlean.layers._linear import linear_vec as linear_vec
from tlean.layers._norm import BatchNorm2d as BatchNorm2d
from tlean.layers._norm import InstanceNorm2d as InstanceNorm2d
from tlean.layers._norm import LayerNorm as LayerNorm
from tlean.layers._norm import RMSNorm as RMSNorm
from tlean.layers._pool import AvgPool2d as AvgPool2d
from tlean.layers._pool import GlobalAvgPool as GlobalAvgPool
from tlean.layers._pool import MaxPool2d as MaxPool2d
from tlean.layers._position import LearnedPositionalEmbedding as LearnedPositionalEmbedding
from tlean.layers._position import RoPE as RoPE
from tlean.layers._position import SinusoidalPositionalEncoding as SinusoidalPositionalEncoding
from tlean.layers._recurrent import GRU as GRU
from tlean.layers._recurrent import LSTM as LSTM
from tlean.layers._recurrent import RNN as RNN
from tlean.layers._shape import Flatten as Flatten
from tlean.layers._shape import Lambda as Lambda
from tlean.layers._shape import Mean as Mean
from tlean.layers._shape import Select as Select
from tlean.layers._shape import Sum as Sum
from tlean.layers._shape import flatten as flatten
from tlean.layers._shape import flatten_batch as flatten_batch
from tlean.layers._ssm import Mamba as Mamba
from tlean.layers._transformer import TransformerEncoder as TransformerEncoder
from tlean.layers._transformer import TransformerEncoderBlock as TransformerEncoderBlock

__all__ = sorted(name for name in dir() if not name.startswith("_"))
