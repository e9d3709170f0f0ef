"""Recurrent layers with PyTorch's equations, gate order and names: RNN, GRU, LSTM and their cells.

Every sequence layer runs time-major, ``(seq, input)`` for a single sequence (TorchLean's
form) or ``(seq, batch, input)``, or ``(batch, seq, input)`` with ``batch_first=True``. The
input projection ``W_ih x_t + b_ih`` of all timesteps is one matmul; the recurrence is one
``jax.lax.scan`` per layer and direction (the reverse direction scans with
``reverse=True``), so compile time does not grow with the sequence length. The cells
(RNNCell, GRUCell, LSTMCell) are one step of the same maths.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from tlean._core import Layer, ShapeError
from tlean.layers import _init, _util

_NONLINEARITIES = {"tanh": jnp.tanh, "relu": jax.nn.relu}


def _matvec(w: jax.Array, h: jax.Array, precision: Any) -> jax.Array:
    """``h @ w.T`` on the last axis, computed as ``w @ h^T`` and moved back to ``[..., out]``.

    In a scan, the gradient of ``w`` that the backward pass accumulates every step then
    comes out in ``w``'s own ``[out, in]`` layout; ``h @ w.T`` gives it transposed and XLA
    copies the matrix every step (about 10% of an LSTM train step on CPU).
    """
    return jnp.moveaxis(jnp.tensordot(w, h, axes=(1, h.ndim - 1), precision=precision), 0, -1)


# -- the maths of one step, shared by the sequence layers and the cells ------------------------
# ``_cell(gx, carry, w) -> carry``: ``gx`` is ``W_ih x_t + b_ih``, ``carry`` is ``h`` (``(h, c)``
# for LSTM), ``w`` holds ``weight_hh``, ``bias_hh`` (or None) and, for a projected LSTM, ``weight_hr``.
class _RNNMaths:
    if TYPE_CHECKING:  # fields of the layer this maths is mixed into
        nonlinearity: str
        precision: Any

    _gates = 1
    _pair_state = False

    def _hidden(self, h: jax.Array, w: dict) -> jax.Array:
        """``W_hh h + b_hh``."""
        gh = _matvec(w["weight_hh"], h, self.precision)
        return gh if w["bias_hh"] is None else _util.add_bias(gh, w["bias_hh"])

    def _cell(self, gx, h, w):
        return _NONLINEARITIES[self.nonlinearity](gx + self._hidden(h, w))

    def _check_nonlinearity(self) -> None:
        if self.nonlinearity not in _NONLINEARITIES:
            raise ValueError(f"{type(self).__name__}: nonlinearity must be 'tanh' or 'relu', got {self.nonlinearity!r}")


class _GRUMaths(_RNNMaths):
    _gates = 3

    def _cell(self, gx, h, w):
        x_r, x_z, x_n = jnp.split(gx, 3, axis=-1)
        h_r, h_z, h_n = jnp.split(self._hidden(h, w), 3, axis=-1)
        r = jax.nn.sigmoid(x_r + h_r)
        z = jax.nn.sigmoid(x_z + h_z)
        n = jnp.tanh(x_n + r * h_n)
        return (1 - z) * n + z * h


class _LSTMMaths(_RNNMaths):
    _gates = 4
    _pair_state = True

    def _cell(self, gx, carry, w):
        h, c = carry
        i, f, g, o = jnp.split(gx + self._hidden(h, w), 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        if w.get("weight_hr") is not None:
            h = _matvec(w["weight_hr"], h, self.precision)  # h_t = W_hr (o * tanh(c_t))
        return h, c


# -- the sequence layers -------------------------------------------------------------------------
class _Fields(Layer):
    """What the recurrent layers and cells share: the fields each subclass declares and the ``_*Maths``
    mixin's hooks (annotations for type checkers only; not fields of this base)."""

    if TYPE_CHECKING:  # fields every subclass declares (not fields of this base)
        input_size: int
        hidden_size: int
        bias: bool
        dtype: Any
        param_dtype: Any
        precision: Any
        # from the ``_*Maths`` mixin
        _gates: int
        _pair_state: bool
        _cell: Callable[..., Any]
        _check_nonlinearity: Callable[[], None]


class _Recurrent(_Fields):
    """Shared machinery of RNN, GRU and LSTM; the maths comes from a ``_*Maths`` mixin."""

    if TYPE_CHECKING:
        num_layers: int
        batch_first: bool
        dropout: float
        bidirectional: bool

    proj_size = 0  # LSTM overrides it with a field

    def __post_init__(self):
        if getattr(self, "nonlinearity", None) is not None:
            self._check_nonlinearity()

    @property
    def _directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def _out_size(self) -> int:
        """Size of ``h``: ``proj_size`` when the LSTM projects, else ``hidden_size``."""
        return self.proj_size or self.hidden_size

    # -- parameters ------------------------------------------------------------
    def _shapes(self) -> dict[str, tuple[int, ...]]:
        """PyTorch's ``_flat_weights_names`` in PyTorch's order, with their shapes."""
        gh, out = self._gates * self.hidden_size, self._out_size
        shapes = {}
        for k in range(self.num_layers):
            for suffix in (f"_l{k}", f"_l{k}_reverse")[: self._directions]:
                shapes["weight_ih" + suffix] = (gh, self.input_size if k == 0 else out * self._directions)
                shapes["weight_hh" + suffix] = (gh, out)
                if self.bias:
                    shapes["bias_ih" + suffix] = (gh,)
                    shapes["bias_hh" + suffix] = (gh,)
                if self.proj_size:
                    shapes["weight_hr" + suffix] = (self.proj_size, self.hidden_size)
        return shapes

    def init(self, key: jax.Array) -> tuple[dict, dict]:
        shapes = self._shapes()
        bound = _init.fan_in_bound(self.hidden_size)
        keys = jax.random.split(key, len(shapes))
        params = {
            name: _init.uniform(k, shape, bound, self.param_dtype) for k, (name, shape) in zip(keys, shapes.items())
        }
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
          initial_state: ``h0`` of shape ``(D * num_layers, [batch,] H_out)`` (``batch_first``
            does not change it), or the pair ``(h0, c0)`` for LSTM with ``c0`` of shape
            ``(D * num_layers, [batch,] hidden_size)``, where ``D`` is 2 when
            ``bidirectional`` else 1 and ``H_out`` is ``proj_size`` if set else
            ``hidden_size``, as PyTorch's ``h_0``/``c_0``; zeros when ``None``.
          return_final: if True, ``y`` is ``(outputs, final)`` with ``final`` the last
            ``h`` (``(h, c)`` for LSTM), shaped as ``initial_state``: layer ``k``'s
            forward direction at index ``D * k``, its reverse direction at ``D * k + 1``.

        Returns:
          ``(y, state)`` where ``y`` is ``outputs [seq, (batch,) D * H_out]`` (batch first
          when ``batch_first``; a bidirectional layer concatenates the forward and the
          reverse outputs on the last axis), or ``(outputs, final)``.
        """
        self._check_input(x)
        batched = x.ndim == 3
        if batched and self.batch_first:
            x = jnp.swapaxes(x, 0, 1)
        batch = x.shape[1:-1]
        dtype = _util.compute_dtype(self.dtype, x, params["weight_ih_l0"])
        s0 = self._initial(initial_state, batch, dtype)
        if train and self.dropout > 0.0 and self.num_layers > 1 and key is None:
            raise ValueError(
                f"{self!r} in train mode needs a dropout key: pass key=jax.random.key(...) "
                "(use a key of its own, never the one used for init), or train=False"
            )
        h = x.astype(dtype)
        finals = []
        for k in range(self.num_layers):
            if k > 0 and train and self.dropout > 0.0 and key is not None:  # key checked above
                keep = jax.random.bernoulli(jax.random.fold_in(key, k), 1.0 - self.dropout, h.shape)
                h = jnp.where(keep, h / jnp.asarray(1.0 - self.dropout, dtype), jnp.zeros((), dtype))
            outputs = []
            for d, suffix in enumerate((f"_l{k}", f"_l{k}_reverse")[: self._directions]):
                i = self._directions * k + d
                carry = jax.tree.map(operator.itemgetter(i), s0)
                out, final = self._scan(params, suffix, h, carry, dtype, reverse=d == 1)
                outputs.append(out)
                finals.append(final)
            h = outputs[0] if len(outputs) == 1 else jnp.concatenate(outputs, axis=-1)
        if batched and self.batch_first:
            h = jnp.swapaxes(h, 0, 1)
        if not return_final:
            return h, state
        final = jax.tree.map(lambda *fs: jnp.stack(fs), *finals)
        return (h, final), state

    def _scan(self, params: dict, suffix: str, x: jax.Array, carry: Any, dtype: Any, reverse: bool):
        """One layer in one direction over the whole sequence: ``(outputs, final carry)``."""
        cast = lambda name: params[name + suffix].astype(dtype)
        gx = jnp.matmul(x, cast("weight_ih").T, precision=self.precision)  # all timesteps at once
        if self.bias:
            gx = _util.add_bias(gx, cast("bias_ih"))
        w = {
            "weight_hh": cast("weight_hh"),
            "bias_hh": cast("bias_hh") if self.bias else None,
            "weight_hr": cast("weight_hr") if self.proj_size else None,
        }

        def step(carry, gx_t):
            carry = self._cell(gx_t, carry, w)
            return carry, (carry[0] if self._pair_state else carry)

        final, outputs = jax.lax.scan(step, carry, gx, reverse=reverse)
        return outputs, final

    # -- checks ----------------------------------------------------------------
    def _check_input(self, x: Any) -> None:
        _util.check_float(self, x)
        order = "(batch, seq, input)" if self.batch_first else "(seq, batch, input)"
        if jnp.ndim(x) not in (2, 3) or jnp.shape(x)[-1] != self.input_size:
            raise ShapeError(
                self, f"input (seq, {self.input_size}) or {order} with input={self.input_size}", jnp.shape(x)
            )

    def _initial(self, initial_state: Any, batch: tuple[int, ...], dtype: Any) -> Any:
        """``initial_state`` checked and cast, or zeros: ``h0`` or ``(h0, c0)``, ``(D * num_layers, *batch, size)``."""
        rows = self._directions * self.num_layers
        rows_name = "2 * num_layers" if self.bidirectional else "num_layers"
        parts = {"h0": (self._out_size, "proj_size" if self.proj_size else "hidden_size")}
        if self._pair_state:
            parts["c0"] = (self.hidden_size, "hidden_size")
        if initial_state is None:
            zeros = tuple(jnp.zeros((rows, *batch, size), dtype) for size, _ in parts.values())
            return zeros if self._pair_state else zeros[0]
        if self._pair_state != isinstance(initial_state, (tuple, list)):
            want = "a pair (h0, c0)" if self._pair_state else "a single array h0"
            raise TypeError(f"{self!r}: initial_state must be {want}, got {type(initial_state).__name__}")
        given = tuple(initial_state) if self._pair_state else (initial_state,)
        if len(given) != len(parts):
            raise TypeError(f"{self!r}: initial_state must be a pair (h0, c0), got {len(given)} arrays")
        for (part, (size, size_name)), value in zip(parts.items(), given):
            shape = (rows, *batch, size)
            if jnp.shape(value) != shape:
                dims = ", ".join([rows_name, *(["batch"] if batch else []), size_name])
                expected = f"initial_state {part} ({dims}) = {shape} for an input of batch {batch}"
                raise ShapeError(self, expected, jnp.shape(value))
            _util.check_float(self, value)
        cast = tuple(jnp.asarray(v).astype(dtype) for v in given)
        return cast if self._pair_state else cast[0]


@dataclass(frozen=True)
class RNN(_RNNMaths, _Recurrent):
    """Elman RNN: ``h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)``, ``act`` tanh or relu.

    PyTorch analogue: ``torch.nn.RNN`` with the same positional arguments (``input_size,
    hidden_size, num_layers, nonlinearity, bias, batch_first, dropout, bidirectional``),
    equations, names (``weight_ih_l{k} [hidden, in]``, ``weight_hh_l{k} [hidden, hidden]``,
    ``bias_ih_l{k}``, ``bias_hh_l{k} [hidden]``, and ``..._l{k}_reverse`` for the reverse
    direction of a bidirectional layer) and init: every weight and bias ~
    U(-1/sqrt(hidden), 1/sqrt(hidden)). Layer ``k > 0`` takes layer ``k-1``'s outputs
    (both directions concatenated) as input. ``dropout`` acts on the outputs of every
    layer but the last, in training and with a ``key``, as PyTorch's does. Not supported:
    packed sequences. tlean-only, keyword-only: ``dtype``, ``param_dtype``, ``precision``.

    Shapes:
      ``(seq, input_size) -> (seq, D * hidden_size)``; ``(seq, batch, input_size) ->
      (seq, batch, D * hidden_size)``, ``D = 2`` when ``bidirectional``; with
      ``batch_first=True`` the batched form is ``(batch, seq, ...)``. See :meth:`apply`
      for ``initial_state`` and ``return_final``.

    >>> import jax, jax.numpy as jnp
    >>> from tlean.layers import RNN
    >>> rnn = RNN(3, 5, nonlinearity="relu", bidirectional=True)
    >>> params, state = rnn.init(jax.random.key(0))
    >>> sorted(params)[:4]
    ['bias_hh_l0', 'bias_hh_l0_reverse', 'bias_ih_l0', 'bias_ih_l0_reverse']
    >>> (out, h), _ = rnn.apply(params, state, jnp.ones((7, 2, 3)), return_final=True)
    >>> out.shape, h.shape
    ((7, 2, 10), (2, 2, 5))
    """

    input_size: int = _util.size()
    hidden_size: int = _util.size()
    num_layers: int = _util.size(1)
    nonlinearity: str = "tanh"
    bias: bool = _util.flag(True)
    batch_first: bool = _util.flag(False)
    dropout: float = _util.probability(0.0)
    bidirectional: bool = _util.flag(False)
    _: KW_ONLY
    dtype: Any = _util.dtype_field()
    param_dtype: Any = _util.param_dtype_field()
    precision: Any = _util.precision_field()


@dataclass(frozen=True)
class GRU(_GRUMaths, _Recurrent):
    """Gated recurrent unit with PyTorch's equations and gate order ``r, z, n``::

        r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
        z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
        n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
        h' = (1 - z) * n + z * h

    PyTorch analogue: ``torch.nn.GRU``, same positional arguments (``input_size,
    hidden_size, num_layers, bias, batch_first, dropout, bidirectional``), names
    (``weight_ih_l{k} [3*hidden, in]`` stacking ``W_ir, W_iz, W_in``; ``weight_hh_l{k}
    [3*hidden, hidden]``; ``bias_ih_l{k}``, ``bias_hh_l{k} [3*hidden]``; ``_reverse`` for
    the reverse direction) and init U(-1/sqrt(hidden), 1/sqrt(hidden)). Shapes,
    ``dropout``, ``bidirectional`` and the ``apply`` keywords as :class:`RNN`.

    >>> import jax, jax.numpy as jnp
    >>> from tlean.layers import GRU
    >>> gru = GRU(3, 4, num_layers=2, batch_first=True)
    >>> params, state = gru.init(jax.random.key(0))
    >>> params["weight_ih_l1"].shape
    (12, 4)
    >>> gru.apply(params, state, jnp.ones((2, 6, 3)))[0].shape
    (2, 6, 4)
    """

    input_size: int = _util.size()
    hidden_size: int = _util.size()
    num_layers: int = _util.size(1)
    bias: bool = _util.flag(True)
    batch_first: bool = _util.flag(False)
    dropout: float = _util.probability(0.0)
    bidirectional: bool = _util.flag(False)
    _: KW_ONLY
    dtype: Any = _util.dtype_field()
    param_dtype: Any = _util.param_dtype_field()
    precision: Any = _util.precision_field()


@dataclass(frozen=True)
class LSTM(_LSTMMaths, _Recurrent):
    """Long short-term memory with PyTorch's equations and gate order ``i, f, g, o``::

        i, f, o = sigmoid(W_i* x + b_i* + W_h* h + b_h*)
        g = tanh(W_ig x + b_ig + W_hg h + b_hg)
        c' = f * c + i * g
        h' = o * tanh(c')            (h' = W_hr (o * tanh(c')) when proj_size > 0)

    PyTorch analogue: ``torch.nn.LSTM``, same positional arguments (``input_size,
    hidden_size, num_layers, bias, batch_first, dropout, bidirectional, proj_size``), names
    (``weight_ih_l{k} [4*hidden, in]``, ``weight_hh_l{k} [4*hidden, H_out]``,
    ``bias_ih_l{k}``, ``bias_hh_l{k} [4*hidden]``, ``weight_hr_l{k} [proj_size, hidden]``
    when projecting; ``_reverse`` for the reverse direction) and init U(-1/sqrt(hidden),
    1/sqrt(hidden)). ``H_out`` is ``proj_size`` when it is > 0, else ``hidden_size``;
    ``proj_size`` must be smaller than ``hidden_size``. The state is the pair ``(h, c)``:
    ``initial_state=(h0, c0)`` and ``return_final=True`` gives ``(outputs, (h_n, c_n))``,
    ``h_n`` of shape ``(D * num_layers, [batch,] H_out)`` and ``c_n`` ``(D * num_layers,
    [batch,] hidden_size)``, as PyTorch returns them. Shapes as :class:`RNN`, with
    ``H_out`` for ``hidden_size``.

    >>> import jax, jax.numpy as jnp
    >>> from tlean.layers import LSTM
    >>> lstm = LSTM(3, 4, bidirectional=True, proj_size=2)
    >>> params, state = lstm.init(jax.random.key(0))
    >>> params["weight_hr_l0_reverse"].shape
    (2, 4)
    >>> (out, (h, c)), _ = lstm.apply(params, state, jnp.ones((5, 3)), return_final=True)
    >>> out.shape, h.shape, c.shape
    ((5, 4), (2, 2), (2, 4))
    """

    input_size: int = _util.size()
    hidden_size: int = _util.size()
    num_layers: int = _util.size(1)
    bias: bool = _util.flag(True)
    batch_first: bool = _util.flag(False)
    dropout: float = _util.probability(0.0)
    bidirectional: bool = _util.flag(False)
    proj_size: int = 0
    _: KW_ONLY
    dtype: Any = _util.dtype_field()
    param_dtype: Any = _util.param_dtype_field()
    precision: Any = _util.precision_field()

    def __post_init__(self):
        super().__post_init__()
        p = self.proj_size
        if not _util.is_int(p) or p < 0:
            raise ValueError(f"LSTM: proj_size must be an int >= 0 (0: no projection), got {p!r}")
        if p >= self.hidden_size:
            raise ValueError(f"LSTM: proj_size must be smaller than hidden_size={self.hidden_size}, got {p}")
        _util.set_field(self, "proj_size", int(p))


# -- the cells -----------------------------------------------------------------------------------
class _Cell(_Fields):
    """Shared machinery of RNNCell, GRUCell and LSTMCell: one step on ``x`` and ``hx``."""

    inputs = ("hx",)  # Model(x, hx) maps the second positional input onto hx, as torch's forward

    def __post_init__(self):
        if getattr(self, "nonlinearity", None) is not None:
            self._check_nonlinearity()

    def init(self, key: jax.Array) -> tuple[dict, dict]:
        gh = self._gates * self.hidden_size
        shapes: dict[str, tuple[int, ...]] = {"weight_ih": (gh, self.input_size), "weight_hh": (gh, self.hidden_size)}
        if self.bias:
            shapes.update(bias_ih=(gh,), bias_hh=(gh,))
        bound = _init.fan_in_bound(self.hidden_size)
        keys = jax.random.split(key, len(shapes))
        params = {
            name: _init.uniform(k, shape, bound, self.param_dtype) for k, (name, shape) in zip(keys, shapes.items())
        }
        return params, {}

    def apply(
        self,
        params: dict,
        state: dict,
        x: Float[Array, "*batch input_size"],
        *,
        hx: Any = None,
        key: jax.Array | None = None,
        train: bool = False,
    ):
        """One step: ``(h', state)``, or ``((h', c'), state)`` for LSTMCell.

        Args:
          params: the dict of :meth:`init`, PyTorch's names.
          state: ``{}``.
          x: ``(input_size,)`` or ``(batch, input_size)``.
          hx: ``h`` of shape ``([batch,] hidden_size)`` (the pair ``(h, c)`` for
            LSTMCell), batched as ``x``; zeros when ``None``, as torch's ``hx``.
          key, train: unused (no dropout).

        Returns:
          ``h'`` (LSTMCell: ``(h', c')``), each ``([batch,] hidden_size)``.
        """
        _util.check_float(self, x)
        if jnp.ndim(x) not in (1, 2) or jnp.shape(x)[-1] != self.input_size:
            raise ShapeError(self, f"input ({self.input_size},) or (batch, {self.input_size})", jnp.shape(x))
        dtype = _util.compute_dtype(self.dtype, x, params["weight_ih"])
        carry = self._hx(hx, jnp.shape(x)[:-1], dtype)
        cast = lambda name: params[name].astype(dtype)
        gx = jnp.matmul(x.astype(dtype), cast("weight_ih").T, precision=self.precision)
        if self.bias:
            gx = _util.add_bias(gx, cast("bias_ih"))
        w = {"weight_hh": cast("weight_hh"), "bias_hh": cast("bias_hh") if self.bias else None}
        return self._cell(gx, carry, w), state

    def _hx(self, hx: Any, batch: tuple[int, ...], dtype: Any) -> Any:
        """``hx`` checked and cast, or zeros: ``h`` or ``(h, c)``, each ``(*batch, hidden_size)``."""
        shape = (*batch, self.hidden_size)
        parts = ("h", "c") if self._pair_state else ("h",)
        if hx is None:
            zeros = tuple(jnp.zeros(shape, dtype) for _ in parts)
            return zeros if self._pair_state else zeros[0]
        if self._pair_state != isinstance(hx, (tuple, list)) or (self._pair_state and len(hx) != 2):
            want = "a pair (h, c)" if self._pair_state else "a single array h"
            got = f"{len(hx)} arrays" if self._pair_state and isinstance(hx, (tuple, list)) else type(hx).__name__
            raise TypeError(f"{self!r}: hx must be {want}, got {got}")
        given = tuple(hx) if self._pair_state else (hx,)
        for part, value in zip(parts, given):
            if jnp.shape(value) != shape:
                dims = "batch, hidden_size" if batch else "hidden_size"
                raise ShapeError(self, f"hx {part} ({dims}) = {shape} for an input of batch {batch}", jnp.shape(value))
            _util.check_float(self, value)
        cast = tuple(jnp.asarray(v).astype(dtype) for v in given)
        return cast if self._pair_state else cast[0]


_CELL_DOC = """{summary}

    PyTorch analogue: ``torch.nn.{name}({args})``, same names and layouts
    (``weight_ih [{g}*hidden, input_size]``, ``weight_hh [{g}*hidden, hidden]``, ``bias_ih``,
    ``bias_hh [{g}*hidden]``) and init U(-1/sqrt(hidden), 1/sqrt(hidden)). Called as
    ``apply(params, state, x, hx=...)`` (``Model(x, hx)`` as torch's ``forward(input, hx)``);
    ``hx=None`` starts from zeros. tlean-only, keyword-only: ``dtype``, ``param_dtype``,
    ``precision``.

    Shapes:
      ``x (input_size,)`` or ``(batch, input_size)``; ``h`` (and ``c``) ``([batch,] hidden_size)``.

    >>> import jax, jax.numpy as jnp
    >>> from tlean.layers import {name}
    >>> cell = {name}(3, 4)
    >>> params, state = cell.init(jax.random.key(0))
    >>> jax.tree.map(jnp.shape, cell.apply(params, state, jnp.ones((2, 3)))[0])
    {example}
    """


@dataclass(frozen=True)
class RNNCell(_RNNMaths, _Cell):
    __doc__ = _CELL_DOC.format(
        summary="One step of :class:`RNN`: ``h' = act(W_ih x + b_ih + W_hh h + b_hh)``, ``act`` tanh or relu.",
        name="RNNCell",
        args="input_size, hidden_size, bias, nonlinearity",
        g=1,
        example="(2, 4)",
    )

    input_size: int = _util.size()
    hidden_size: int = _util.size()
    bias: bool = _util.flag(True)
    nonlinearity: str = "tanh"
    _: KW_ONLY
    dtype: Any = _util.dtype_field()
    param_dtype: Any = _util.param_dtype_field()
    precision: Any = _util.precision_field()


@dataclass(frozen=True)
class GRUCell(_GRUMaths, _Cell):
    __doc__ = _CELL_DOC.format(
        summary="One step of :class:`GRU` (gate order ``r, z, n``, PyTorch's equations).",
        name="GRUCell",
        args="input_size, hidden_size, bias",
        g=3,
        example="(2, 4)",
    )

    input_size: int = _util.size()
    hidden_size: int = _util.size()
    bias: bool = _util.flag(True)
    _: KW_ONLY
    dtype: Any = _util.dtype_field()
    param_dtype: Any = _util.param_dtype_field()
    precision: Any = _util.precision_field()


@dataclass(frozen=True)
class LSTMCell(_LSTMMaths, _Cell):
    __doc__ = _CELL_DOC.format(
        summary="One step of :class:`LSTM` (gate order ``i, f, g, o``); ``hx=(h, c)``, returns ``(h', c')``.",
        name="LSTMCell",
        args="input_size, hidden_size, bias",
        g=4,
        example="((2, 4), (2, 4))",
    )

    input_size: int = _util.size()
    hidden_size: int = _util.size()
    bias: bool = _util.flag(True)
    _: KW_ONLY
    dtype: Any = _util.dtype_field()
    param_dtype: Any = _util.param_dtype_field()
    precision: Any = _util.precision_field()
