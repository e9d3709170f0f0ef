"""Recurrent layers with PyTorch's equations, gate order and names: RNN, GRU, LSTM.

Every layer runs time-major, ``(seq, input)`` for a single sequence (TorchLean's form) or
``(seq, batch, input)``, or ``(batch, seq, input)`` with ``batch_first=True``. The input
projection ``W_ih x_t + b_ih`` of all timesteps is one matmul; the recurrence is one
``jax.lax.scan`` per layer, so compile time does not grow with the sequence length.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from tlean._core import Layer, ShapeError
from tlean.layers import _init, _util

_NONLINEARITIES = {"tanh": jnp.tanh, "relu": jax.nn.relu}


class _Recurrent(Layer):
    """Shared machinery; a subclass sets ``_gates`` and defines ``_cell``.

    ``_cell(gx, carry, w_hh, b_hh) -> carry`` advances one timestep, where ``gx`` is the
    precomputed ``W_ih x_t + b_ih`` and ``carry`` is ``h`` (or ``(h, c)`` for LSTM).
    """

    _gates = 1
    _pair_state = False  # LSTM's state is (h, c)

    input_size: int
    hidden_size: int
    num_layers: int
    bias: bool
    batch_first: bool
    dropout: float
    dtype: Any
    param_dtype: Any
    precision: Any

    def __post_init__(self):
        name = type(self).__name__
        _util.positive(name, input_size=self.input_size, hidden_size=self.hidden_size, num_layers=self.num_layers)
        for flag in ("bias", "batch_first"):
            if not isinstance(getattr(self, flag), bool):
                raise ValueError(f"{name}: {flag} must be a bool, got {getattr(self, flag)!r}")
        p = self.dropout
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
            raise ValueError(f"{name}: dropout is the probability of dropping and must be in [0, 1), got {p!r}")
        _util.set_field(self, "dropout", float(p))
        _util.numeric_fields(self)

    # -- parameters ------------------------------------------------------------
    def _shapes(self) -> dict[str, tuple[int, ...]]:
        """PyTorch's ``_flat_weights_names`` in PyTorch's order, with their shapes."""
        gh = self._gates * self.hidden_size
        shapes = {}
        for k in range(self.num_layers):
            shapes[f"weight_ih_l{k}"] = (gh, self.input_size if k == 0 else self.hidden_size)
            shapes[f"weight_hh_l{k}"] = (gh, self.hidden_size)
            if self.bias:
                shapes[f"bias_ih_l{k}"] = (gh,)
                shapes[f"bias_hh_l{k}"] = (gh,)
        return shapes

    def init(self, key: jax.Array) -> tuple[dict, dict]:
        shapes = self._shapes()
        bound = _init.fan_in_bound(self.hidden_size)
        keys = jax.random.split(key, len(shapes))
        params = {name: _init.uniform(k, shape, bound, self.param_dtype) for k, (name, shape) in zip(keys, shapes.items())}
        return params, {}

    # -- running ---------------------------------------------------------------
    def apply(
        self,
        params: dict,
        state: dict,
        x: Float[Array, "seq *batch input_size"],
        *,
        key: jax.Array | None = None,
        train: bool = False,
        initial_state: Any = None,
        return_final: bool = False,
    ):
        """Run the recurrence over ``x``.

        Args:
          params: the dict of :meth:`init`, PyTorch's names.
          state: ``{}``.
          x: ``(seq, input_size)``, ``(seq, batch, input_size)``, or ``(batch, seq,
            input_size)`` when ``batch_first``.
          key: dropout key, needed only when ``train`` and ``dropout > 0``.
          train: switches on dropout between stacked layers.
          initial_state: ``h0`` of shape ``(num_layers, hidden_size)`` or ``(num_layers,
            batch, hidden_size)`` (``batch_first`` does not change it), or the pair
            ``(h0, c0)`` for LSTM; zeros when ``None``.
          return_final: if True, ``y`` is ``(outputs, final)`` with ``final`` the last
            ``h`` (``(h, c)`` for LSTM), shaped as ``initial_state``.

        Returns:
          ``(y, state)`` where ``y`` is ``outputs [seq, (batch,) hidden_size]`` (batch
          first when ``batch_first``), or ``(outputs, final)``.
        """
        self._check_input(x)
        batched = x.ndim == 3
        if batched and self.batch_first:
            x = jnp.swapaxes(x, 0, 1)
        batch = x.shape[1:-1]
        dtype = _util.compute_dtype(self.dtype, x, params["weight_ih_l0"])
        h0 = self._initial(initial_state, batch, dtype)
        if train and self.dropout > 0.0 and self.num_layers > 1 and key is None:
            raise ValueError(
                f"{self!r} in train mode needs a dropout key: pass key=jax.random.key(...) "
                "(use a key of its own, never the one used for init), or train=False"
            )
        h = x.astype(dtype)
        finals = []
        for k in range(self.num_layers):
            if k > 0 and train and self.dropout > 0.0:
                keep = jax.random.bernoulli(jax.random.fold_in(key, k), 1.0 - self.dropout, h.shape)
                h = jnp.where(keep, h / jnp.asarray(1.0 - self.dropout, dtype), jnp.zeros((), dtype))
            h, final = self._layer(params, k, h, jax.tree.map(lambda s: s[k], h0), dtype)
            finals.append(final)
        if batched and self.batch_first:
            h = jnp.swapaxes(h, 0, 1)
        if not return_final:
            return h, state
        final = jax.tree.map(lambda *fs: jnp.stack(fs), *finals)
        return (h, final), state

    def _layer(self, params: dict, k: int, x: jax.Array, carry: Any, dtype: Any):
        """One layer over the whole sequence: ``(outputs, final carry)``."""
        cast = lambda name: params[name].astype(dtype)
        gx = jnp.matmul(x, cast(f"weight_ih_l{k}").T, precision=self.precision)  # all timesteps at once
        if self.bias:
            gx = _util.add_bias(gx, cast(f"bias_ih_l{k}"))
        w_hh = cast(f"weight_hh_l{k}")
        b_hh = cast(f"bias_hh_l{k}") if self.bias else None

        def step(carry, gx_t):
            carry = self._cell(gx_t, carry, w_hh, b_hh)
            return carry, (carry[0] if self._pair_state else carry)

        final, outputs = jax.lax.scan(step, carry, gx)
        return outputs, final

    def _hidden(self, h: jax.Array, w_hh: jax.Array, b_hh: jax.Array | None) -> jax.Array:
        """``W_hh h + b_hh``.

        Computed as ``W_hh @ h^T`` and moved back to ``[..., gates]``: the gradient of
        ``W_hh`` that the backward scan accumulates every step then comes out in
        ``W_hh``'s own ``[gates, hidden]`` layout. ``h @ W_hh^T`` gives it transposed,
        and XLA copies the ``[gates, hidden]`` matrix every step (about 10% of an LSTM
        train step on CPU).
        """
        gh = jnp.moveaxis(jnp.tensordot(w_hh, h, axes=(1, h.ndim - 1), precision=self.precision), 0, -1)
        return gh if b_hh is None else _util.add_bias(gh, b_hh)

    # -- checks ----------------------------------------------------------------
    def _check_input(self, x: Any) -> None:
        _util.check_float(self, x)
        order = "(batch, seq, input)" if self.batch_first else "(seq, batch, input)"
        if jnp.ndim(x) not in (2, 3) or jnp.shape(x)[-1] != self.input_size:
            raise ShapeError(
                self, f"input (seq, {self.input_size}) or {order} with input={self.input_size}", jnp.shape(x)
            )

    def _initial(self, initial_state: Any, batch: tuple[int, ...], dtype: Any) -> Any:
        """``initial_state`` checked and cast, or zeros: ``h0`` or ``(h0, c0)``, each ``(num_layers, *batch, hidden)``."""
        shape = (self.num_layers, *batch, self.hidden_size)
        parts = ("h0", "c0") if self._pair_state else ("h0",)
        if initial_state is None:
            zeros = tuple(jnp.zeros(shape, dtype) for _ in parts)
            return zeros if self._pair_state else zeros[0]
        if self._pair_state != isinstance(initial_state, (tuple, list)):
            want = "a pair (h0, c0)" if self._pair_state else "a single array h0"
            raise TypeError(f"{self!r}: initial_state must be {want}, got {type(initial_state).__name__}")
        given = tuple(initial_state) if self._pair_state else (initial_state,)
        if len(given) != len(parts):
            raise TypeError(f"{self!r}: initial_state must be a pair (h0, c0), got {len(given)} arrays")
        for part, value in zip(parts, given):
            if jnp.shape(value) != shape:
                dims = ", ".join(["num_layers", *(["batch"] if batch else []), "hidden_size"])
                raise ShapeError(self, f"initial_state {part} ({dims}) = {shape} for an input of batch {batch}", jnp.shape(value))
            _util.check_float(self, value)
        cast = tuple(jnp.asarray(v).astype(dtype) for v in given)
        return cast if self._pair_state else cast[0]


@dataclass(frozen=True)
class RNN(_Recurrent):
    """Elman RNN: ``h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)``, ``act`` tanh or relu.

    PyTorch analogue: ``torch.nn.RNN`` with the same argument order, equations, names
    (``weight_ih_l{k} [hidden, in]``, ``weight_hh_l{k} [hidden, hidden]``, ``bias_ih_l{k}``,
    ``bias_hh_l{k} [hidden]``) and init: every weight and bias ~ U(-1/sqrt(hidden),
    1/sqrt(hidden)). Layer ``k > 0`` takes layer ``k-1``'s outputs as input. Not
    supported: ``bidirectional`` and packed sequences. ``dropout`` acts on the outputs of
    every layer but the last, in training and with a ``key``, as PyTorch's does.

    Shapes:
      ``(seq, input_size) -> (seq, hidden_size)``; ``(seq, batch, input_size) -> (seq,
      batch, hidden_size)``; with ``batch_first=True`` the batched form is ``(batch, seq,
      ...)``. See :meth:`apply` for ``initial_state`` and ``return_final``.

    >>> import jax, jax.numpy as jnp
    >>> from tlean.layers import RNN
    >>> rnn = RNN(3, 5, nonlinearity="relu")
    >>> params, state = rnn.init(jax.random.key(0))
    >>> sorted(params)
    ['bias_hh_l0', 'bias_ih_l0', 'weight_hh_l0', 'weight_ih_l0']
    >>> (out, h), _ = rnn.apply(params, state, jnp.ones((7, 2, 3)), return_final=True)
    >>> out.shape, h.shape
    ((7, 2, 5), (1, 2, 5))
    """

    input_size: int
    hidden_size: int
    num_layers: int = 1
    nonlinearity: str = "tanh"
    bias: bool = True
    batch_first: bool = False
    dropout: float = 0.0
    dtype: Any = None
    param_dtype: Any = jnp.float32
    precision: Any = None

    def __post_init__(self):
        if self.nonlinearity not in _NONLINEARITIES:
            raise ValueError(f"RNN: nonlinearity must be 'tanh' or 'relu', got {self.nonlinearity!r}")
        super().__post_init__()

    def _cell(self, gx, h, w_hh, b_hh):
        return _NONLINEARITIES[self.nonlinearity](gx + self._hidden(h, w_hh, b_hh))


@dataclass(frozen=True)
class _Gated(_Recurrent):
    input_size: int
    hidden_size: int
    num_layers: int = 1
    bias: bool = True
    batch_first: bool = False
    dropout: float = 0.0
    dtype: Any = None
    param_dtype: Any = jnp.float32
    precision: Any = None


@dataclass(frozen=True)
class GRU(_Gated):
    """Gated recurrent unit with PyTorch's equations and gate order ``r, z, n``::

        r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
        z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
        n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
        h' = (1 - z) * n + z * h

    PyTorch analogue: ``torch.nn.GRU``, same argument order, names (``weight_ih_l{k}
    [3*hidden, in]`` stacking ``W_ir, W_iz, W_in``; ``weight_hh_l{k} [3*hidden, hidden]``;
    ``bias_ih_l{k}``, ``bias_hh_l{k} [3*hidden]``) and init U(-1/sqrt(hidden),
    1/sqrt(hidden)). Shapes, ``dropout`` and the ``apply`` keywords as :class:`RNN`.

    >>> import jax, jax.numpy as jnp
    >>> from tlean.layers import GRU
    >>> gru = GRU(3, 4, num_layers=2, batch_first=True)
    >>> params, state = gru.init(jax.random.key(0))
    >>> params["weight_ih_l1"].shape
    (12, 4)
    >>> gru.apply(params, state, jnp.ones((2, 6, 3)))[0].shape
    (2, 6, 4)
    """

    _gates = 3

    def _cell(self, gx, h, w_hh, b_hh):
        gh = self._hidden(h, w_hh, b_hh)
        x_r, x_z, x_n = jnp.split(gx, 3, axis=-1)
        h_r, h_z, h_n = jnp.split(gh, 3, axis=-1)
        r = jax.nn.sigmoid(x_r + h_r)
        z = jax.nn.sigmoid(x_z + h_z)
        n = jnp.tanh(x_n + r * h_n)
        return (1 - z) * n + z * h


@dataclass(frozen=True)
class LSTM(_Gated):
    """Long short-term memory with PyTorch's equations and gate order ``i, f, g, o``::

        i, f, o = sigmoid(W_i* x + b_i* + W_h* h + b_h*)
        g = tanh(W_ig x + b_ig + W_hg h + b_hg)
        c' = f * c + i * g
        h' = o * tanh(c')

    PyTorch analogue: ``torch.nn.LSTM``, same argument order, names (``weight_ih_l{k}
    [4*hidden, in]``, ``weight_hh_l{k} [4*hidden, hidden]``, ``bias_ih_l{k}``,
    ``bias_hh_l{k} [4*hidden]``) and init U(-1/sqrt(hidden), 1/sqrt(hidden)). The state
    is the pair ``(h, c)``: ``initial_state=(h0, c0)`` and ``return_final=True`` gives
    ``(outputs, (h_n, c_n))``, each ``(num_layers, [batch,] hidden)``, as PyTorch returns
    them. Not supported: ``proj_size``, ``bidirectional``. Shapes as :class:`RNN`.

    >>> import jax, jax.numpy as jnp
    >>> from tlean.layers import LSTM
    >>> lstm = LSTM(3, 4)
    >>> params, state = lstm.init(jax.random.key(0))
    >>> (out, (h, c)), _ = lstm.apply(params, state, jnp.ones((5, 3)), return_final=True)
    >>> out.shape, h.shape, c.shape
    ((5, 4), (1, 4), (1, 4))
    """

    _gates = 4
    _pair_state = True

    def _cell(self, gx, carry, w_hh, b_hh):
        h, c = carry
        gates = gx + self._hidden(h, w_hh, b_hh)
        i, f, g, o = jnp.split(gates, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return h, c
