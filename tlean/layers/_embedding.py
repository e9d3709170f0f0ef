"""Token embeddings: a table ``weight [num_embeddings, embedding_dim]`` read by id or by distribution."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Integer

from tlean._core import Layer
from tlean.layers import _util


@dataclass(frozen=True)
class Embedding(Layer):
    """Look up rows of ``weight [num_embeddings, embedding_dim]``, by id or by distribution.

    Two inputs share the one table:

    - integer ids ``[...] -> [..., embedding_dim]``, a gather (``torch.nn.Embedding``);
    - a float one-hot or soft distribution over the vocabulary ``[..., num_embeddings]
      -> [..., embedding_dim]``, the matmul ``x @ weight`` (TorchLean's form, which makes
      the output differentiable in the token distribution). For one-hot rows both agree.

    PyTorch analogue: ``torch.nn.Embedding(num_embeddings, embedding_dim)``; same name and
    layout, same init (``weight ~ N(0, 1)``). Not supported: ``padding_idx``, ``max_norm``,
    sparse gradients.

    Ids outside ``[0, num_embeddings)`` cannot be checked at trace time (their values are
    not known then): where PyTorch raises ``IndexError``, the gather here uses
    ``mode="fill"`` and returns a row of NaN for such an id (negative ids included, which
    NumPy-style indexing would otherwise wrap), so a bad id is never silently clamped into
    a valid row; its gradient into ``weight`` is zero.

    Args:
      num_embeddings: vocabulary size.
      embedding_dim: size of each embedding vector.
      dtype: computation (output) dtype; ``None`` uses the result type of the weight
        (ids) or of input and weight (distributions).
      param_dtype: storage dtype of ``weight``.
      precision: ``jax.lax.Precision`` of the distribution matmul.

    >>> import jax, jax.numpy as jnp
    >>> from tlean.layers import Embedding
    >>> emb = Embedding(10, 4)
    >>> params, state = emb.init(jax.random.key(0))
    >>> ids = jnp.array([[1, 2, 3]])
    >>> emb.apply(params, state, ids)[0].shape
    (1, 3, 4)
    >>> one_hot = jax.nn.one_hot(ids, 10)
    >>> bool(jnp.allclose(emb.apply(params, state, one_hot)[0], emb.apply(params, state, ids)[0]))
    True
    """

    num_embeddings: int
    embedding_dim: int
    dtype: Any = None
    param_dtype: Any = jnp.float32
    precision: Any = None

    def __post_init__(self):
        _util.positive("Embedding", num_embeddings=self.num_embeddings, embedding_dim=self.embedding_dim)
        _util.numeric_fields(self)

    def init(self, key: jax.Array) -> tuple[dict, dict]:
        shape = (self.num_embeddings, self.embedding_dim)
        return {"weight": jax.random.normal(key, shape, self.param_dtype)}, {}

    def apply(self, params: dict, state: dict, x: Integer[Array, "*batch"] | Float[Array, "*batch vocab"], *,
              key=None, train=False):
        weight = params["weight"]
        dtype = getattr(x, "dtype", None)
        if dtype is not None and jnp.issubdtype(dtype, jnp.integer):
            ids = jnp.where(x < 0, self.num_embeddings, x)  # negative ids are out of range, not wrapped
            out_dtype = _util.compute_dtype(self.dtype, weight)
            return jnp.take(weight.astype(out_dtype), ids, axis=0, mode="fill", fill_value=jnp.nan), state
        if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(
                f"{self!r}: expected integer ids or a floating-point distribution over the vocabulary, "
                f"got {dtype if dtype is not None else type(x).__name__}"
            )
        _util.check_features(self, x, self.num_embeddings, "a distribution")
        out_dtype = _util.compute_dtype(self.dtype, x, weight)
        y = jnp.matmul(x.astype(out_dtype), weight.astype(out_dtype), precision=self.precision)
        return y, state
