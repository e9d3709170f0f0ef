"""Properties that catch the bugs ported models have (TorchLean's BugZoo), as reusable checks.

Each function runs a model on inputs you give and raises ``AssertionError`` saying what
broke; it returns ``None`` when the property holds.

- :func:`causal_mask_zero_future`: a causal layer gives exactly zero weight to the future;
- :func:`kv_cache_decode_equals_forward`: decoding with a KV cache equals the full forward;
- :func:`start_pos_equals_offset`: a position encoding at ``start_pos`` equals the same
  positions of a longer sequence (RoPE at ``start_pos`` is the next position);
- :func:`batch_invariant`: in eval mode every example's output is independent of the rest of
  the batch (BatchNorm's running statistics, LayerNorm, Linear, Conv);
- :func:`all_ignored_loss_is_zero`: a batch whose targets are all ignored has loss 0 and zero
  gradients, not NaN.

>>> import jax
>>> from tlean import layers as L
>>> from tlean.testing import properties
>>> properties.batch_invariant(L.LayerNorm(4), jax.random.normal(jax.random.key(1), (3, 4)))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tlean.testing._compare import as_model, assert_trees_close, difference

__all__ = [
    "all_ignored_loss_is_zero",
    "batch_invariant",
    "causal_mask_zero_future",
    "kv_cache_decode_equals_forward",
    "start_pos_equals_offset",
]


def _take(a: Any, axis: int, start: int, stop: int) -> Any:
    return jax.lax.slice_in_dim(jnp.asarray(a), start, stop, axis=axis)


def _changed(x: jax.Array) -> jax.Array:
    """Every element of ``x`` changed: ids moved by one (kept >= 0), floats mapped to ``1.5 - 2x``."""
    if jnp.issubdtype(x.dtype, jnp.integer):
        return jnp.where(x > 0, x - 1, x + 1).astype(x.dtype)
    return (1.5 - 2 * x).astype(x.dtype)


def _output(out: Any) -> Any:
    return out[0] if isinstance(out, tuple) else out


def causal_mask_zero_future(
    model: Any, x: Any, *, seq_axis: int = 1, positions: Sequence[int] | None = None, grads: bool = True, **kwargs: Any
) -> None:
    """Assert that output position ``t`` does not depend on inputs after ``t``, exactly.

    For each split ``t`` the inputs after ``t`` are replaced by different values: the
    outputs up to ``t`` must stay equal bit for bit, and (with ``grads``, for
    floating-point ``x``) the gradient of the outputs up to ``t`` with respect to the inputs
    after ``t`` must be exactly zero: masked positions get weight 0, not a small number
    (a ``-1e4`` bias or a mask applied after the softmax fails). If the model returns
    ``(y, weights)`` (``need_weights=True``), the weights above the diagonal must be 0.

    Args:
      model: a Model, Layer or Builder (as :func:`tlean.testing.assert_jit_eager_equal`), in eval mode.
      x: the input ``[batch, seq, ...]`` (float features or integer ids).
      seq_axis: the sequence axis of the input and of the output.
      positions: the splits ``t`` to try (default the first, middle and second-to-last).
      grads: also check that the gradient to the future is exactly zero.
      **kwargs: keywords that make the layer causal (``is_causal=True``, ``attn_mask=...``).

    Raises:
      AssertionError: naming the split and the output position that saw the future.
    """
    model = as_model(model)
    x = jnp.asarray(x)
    length = x.shape[seq_axis]
    positions = sorted({0, length // 2, length - 2} - {-1}) if positions is None else list(positions)
    run = jax.jit(lambda x: model(x, **kwargs))
    out = run(x)
    y, weights = out if isinstance(out, tuple) else (out, None)
    if weights is not None:
        future = np.triu(np.ones(np.shape(weights)[-2:], bool), k=1)
        leaked = np.asarray(weights)[..., future]
        if np.any(leaked != 0):
            raise AssertionError(
                f"causal_mask_zero_future: {model.layer!r}: the attention weights give "
                f"{float(np.max(np.abs(leaked))):.3g} (not 0) to a future position"
            )
    index = jnp.arange(length).reshape([-1 if a == seq_axis % x.ndim else 1 for a in range(x.ndim)])

    @jax.jit
    def gradient(x: jax.Array, t: jax.Array) -> jax.Array:
        """The gradient of the sum of the outputs at positions <= t (one compilation for every t)."""

        def past_sum(x):
            y = _output(model(x, **kwargs))
            shape = [-1 if a == seq_axis % y.ndim else 1 for a in range(y.ndim)]
            return jnp.sum(jnp.where(jnp.arange(y.shape[seq_axis]).reshape(shape) <= t, y, 0))

        return jax.grad(past_sum)(x)

    for t in positions:
        future = index > t
        y2 = run(jnp.where(future, _changed(x), x))
        y2 = _output(y2)
        past, past2 = _take(y, seq_axis, 0, t + 1), _take(y2, seq_axis, 0, t + 1)
        if not np.array_equal(np.asarray(past), np.asarray(past2)):
            bad = np.nonzero(
                np.any(
                    np.asarray(past) != np.asarray(past2),
                    axis=tuple(a for a in range(past.ndim) if a != seq_axis % past.ndim),
                )
            )[0]
            raise AssertionError(
                f"causal_mask_zero_future: {model.layer!r}: changing the inputs after position {t} "
                f"changed the output at positions {bad.tolist()} (<= {t}): "
                f"{difference(past2, past, rtol=0, atol=0)}"
            )
        if grads and jnp.issubdtype(x.dtype, jnp.floating):
            leak = np.asarray(jnp.where(future, gradient(x, jnp.int32(t)), 0))
            if np.any(leak != 0):
                raise AssertionError(
                    f"causal_mask_zero_future: {model.layer!r}: the outputs up to position {t} have "
                    f"a gradient of up to {float(np.max(np.abs(leak))):.3g} (not exactly 0) with "
                    "respect to later inputs"
                )


def kv_cache_decode_equals_forward(
    model: Any,
    x: Any,
    cache: Any,
    *,
    chunks: Sequence[int] | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    **kwargs: Any,
) -> None:
    """Assert that decoding ``x`` chunk by chunk through a KV cache gives the full forward's output.

    The layer's ``decode(params, cache, x_chunk, start_pos) -> (y_chunk, cache)`` runs
    jitted with a traced ``start_pos`` (one compilation per chunk size, as a generation
    loop runs it); the chunks' outputs, concatenated on axis 1, must equal
    ``model(x, **kwargs)`` (the causal forward) in eval mode.

    Args:
      model: a Model, Layer or Builder whose layer has ``decode`` (Attention,
        MultiheadAttention, the transformer blocks, GPT).
      x: the whole input ``[batch, seq, ...]``.
      cache: an empty cache for it (``layer.init_cache(...)``; its signature differs per layer).
      chunks: the chunk sizes in order, adding up to ``seq`` (default: prefill half, then one
        position at a time).
      rtol, atol: the tolerance (the cached computation attends over ``max_len`` positions).
      **kwargs: keywords for the full forward (``is_causal=True`` for a layer not built causal).

    Raises:
      AssertionError: naming the chunk (its ``start_pos``) whose output differs.
    """
    model = as_model(model)
    x = jnp.asarray(x)
    length = x.shape[1]
    prefill = max(length // 2, 1)
    sizes = [prefill] + [1] * (length - prefill) if chunks is None else list(chunks)
    if sum(sizes) != length:
        raise ValueError(f"kv_cache_decode_equals_forward: chunks {sizes} must add up to seq={length}")
    full = jax.jit(lambda m, x: m(x, **kwargs))(model, x)
    decode = jax.jit(model.layer.decode)
    start = 0
    for size in sizes:
        y, cache = decode(model.params, cache, x[:, start : start + size], jnp.asarray(start, jnp.int32))
        assert_trees_close(
            y,
            full[:, start : start + size],
            rtol=rtol,
            atol=atol,
            what="output",
            context=f"kv_cache_decode_equals_forward: {model.layer!r}: decoding positions "
            f"{start}..{start + size - 1} (start_pos={start}) differs from the full forward",
        )
        start += size


def start_pos_equals_offset(
    model: Any,
    x: Any,
    *,
    start_pos: Sequence[int] | None = None,
    seq_axis: int = -2,
    rtol: float = 1e-6,
    atol: float = 1e-6,
    **kwargs: Any,
) -> None:
    """Assert that a position-dependent layer at ``start_pos=s`` equals positions ``s..`` of the whole sequence.

    ``model(x[s:], start_pos=s)`` (along ``seq_axis``) must equal ``model(x)[s:]``, with
    ``s`` static and traced (under ``jax.jit``): RoPE or a positional encoding applied to the
    one new token of a decoding step sees that token's real position.

    Args:
      model: a Model, Layer or Builder whose ``apply`` takes ``start_pos`` (RoPE,
        SinusoidalPositionalEncoding, LearnedPositionalEmbedding, Attention).
      x: the whole input (positions from 0).
      start_pos: the offsets to try (default 1, the middle and the last position, ``seq - 1``:
        one new token after the rest).
      seq_axis: the sequence axis of input and output (RoPE's ``[..., seq, head_dim]``: -2).
      rtol, atol: the tolerance.
      **kwargs: further keywords of the layer's ``apply``.

    Raises:
      AssertionError: naming the ``start_pos`` whose output differs.
    """
    model = as_model(model)
    x = jnp.asarray(x)
    length = x.shape[seq_axis]
    offsets = sorted({1, length // 2, length - 1} - {0}) if start_pos is None else start_pos
    full = model(x, **kwargs)
    traced = jax.jit(lambda x, s: model(x, start_pos=s, **kwargs))
    for s in offsets:
        tail = _take(x, seq_axis, s, length)
        want = _take(full, seq_axis, s, length)
        for how, got in (("static", model(tail, start_pos=s, **kwargs)), ("traced", traced(tail, jnp.int32(s)))):
            assert_trees_close(
                got,
                want,
                rtol=rtol,
                atol=atol,
                what="output",
                context=f"start_pos_equals_offset: {model.layer!r}: start_pos={s} ({how}) differs from "
                f"positions {s}.. of the whole sequence",
            )


def batch_invariant(
    model: Any,
    x: Any,
    *others: Any,
    batch_axis: int = 0,
    train: bool = False,
    rtol: float = 1e-6,
    atol: float = 1e-6,
    **kwargs: Any,
) -> None:
    """Assert that each example's output does not depend on the other examples of its batch.

    Every example run alone (a batch of one) and the batch run in reverse order must give
    the batch's outputs. Eval-mode layers have this property (BatchNorm uses its running
    statistics); BatchNorm in training mode does not, which is how a model left in train
    mode at evaluation is caught.

    Args:
      model: a Model, Layer or Builder.
      x: a batch with at least two examples on ``batch_axis``.
      *others: further inputs, batched the same way.
      batch_axis: the batch axis of the inputs and outputs.
      train: the mode (default eval).
      rtol, atol: the tolerance (a batch of one may take another matmul kernel).
      **kwargs: keywords of the layer's ``apply``.

    Raises:
      AssertionError: naming the example whose output changes with its batch.
    """
    model = as_model(model)
    inputs = tuple(jnp.asarray(a) for a in (x, *others))
    size = inputs[0].shape[batch_axis]
    if size < 2:
        raise ValueError(f"batch_invariant: needs a batch of at least two examples, got {size}")
    run = lambda *xs: model(*xs, train=train, key=jax.random.key(0), **kwargs)
    y = run(*inputs)
    for i in range(size):
        alone = run(*(_take(a, batch_axis, i, i + 1) for a in inputs))
        assert_trees_close(
            alone,
            jax.tree.map(lambda v, i=i: _take(v, batch_axis, i, i + 1), y),
            rtol=rtol,
            atol=atol,
            what="output",
            context=f"batch_invariant: {model.layer!r} (train={train}): example {i} "
            f"alone differs from example {i} in its batch of {size}",
        )
    order = jnp.arange(size)[::-1]
    flipped = run(*(jnp.take(a, order, axis=batch_axis) for a in inputs))
    assert_trees_close(
        flipped,
        jax.tree.map(lambda v: jnp.take(v, order, axis=batch_axis), y),
        rtol=rtol,
        atol=atol,
        what="output",
        context=f"batch_invariant: {model.layer!r} (train={train}): reversing the batch does not reverse the outputs",
    )


def all_ignored_loss_is_zero(loss: Any, input: Any, target: Any, *others: Any) -> None:
    """Assert that a batch whose every target is ignored has loss exactly 0 and zero, finite gradients.

    torch gives NaN here for ``reduction="mean"`` (0 / 0, pytorch#75181); a NaN loss in one
    batch of padding would poison the whole training run, so tlean's losses divide by
    ``max(n, 1)``. Checked eagerly and under ``jax.jit``.

    Args:
      loss: a loss callable, ``loss(input, target, *others) -> scalar`` (a
        :mod:`tlean.losses` instance such as ``CrossEntropyLoss(ignore_index=-100)``).
      input: the predictions (logits), floating point.
      target: targets that are all ignored (every one ``ignore_index``, or weights all 0).
      *others: further arguments of the loss.

    Raises:
      AssertionError: giving the value or gradient that is not zero.
    """
    input = jnp.asarray(input)
    for how, fn in (
        ("eager", jax.value_and_grad(lambda i: loss(i, target, *others))),
        ("jit", jax.jit(jax.value_and_grad(lambda i: loss(i, target, *others)))),
    ):
        value, grad = fn(input)
        if not float(value) == 0.0:
            raise AssertionError(
                f"all_ignored_loss_is_zero: {loss!r} ({how}): an all-ignored batch gives loss "
                f"{float(value)}, expected 0"
            )
        grad = np.asarray(grad, np.float32)
        if not np.all(grad == 0):
            raise AssertionError(
                f"all_ignored_loss_is_zero: {loss!r} ({how}): an all-ignored batch gives gradients "
                f"up to {float(np.nanmax(np.abs(grad))) if not np.isnan(grad).all() else 'nan'} "
                f"(NaN: {bool(np.isnan(grad).any())}), expected exactly 0"
            )
