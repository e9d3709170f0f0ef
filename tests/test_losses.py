"""tlean.losses against torch.nn's losses: values and input gradients, every reduction and option."""

from __future__ import annotations

import os
import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import tlean
from tlean import ShapeError, losses

REDUCTIONS = ("none", "mean", "sum")
MAX_ERR: dict[str, float] = {}


@pytest.fixture(scope="module", autouse=True)
def _print_errors():
    """``TLEAN_PRINT_LOSS_ERRORS=1 pytest -s`` prints the largest error against torch per loss."""
    yield
    if os.environ.get("TLEAN_PRINT_LOSS_ERRORS"):
        for name, err in sorted(MAX_ERR.items()):
            print(f"{name:24s} {err:.3g}")


def compare(ours, theirs, args, grad_args=(0,), *, rtol=2e-5, atol=2e-6, cotangent_seed=0):
    """Compare ``ours(*jax arrays)`` with ``theirs(*torch tensors)``: value and gradients of ``args[i]``.

    ``ours`` is a tlean loss (its name is recorded), or a pair ``(name, function)``.
    """
    name, fn = (type(ours).__name__, ours) if not isinstance(ours, tuple) else ours
    tensors = [torch.tensor(np.asarray(a)) for a in args]
    for i in grad_args:
        tensors[i].requires_grad_(True)
    expected = theirs(*tensors)
    cot = np.random.default_rng(cotangent_seed).normal(size=tuple(expected.shape)).astype(np.float32)

    @jax.jit
    def value_and_grads(*arrays):  # one compilation per case; jit == eager is tested on its own
        def partial(*xs):
            full = list(arrays)
            for i, x in zip(grad_args, xs):
                full[i] = x
            return fn(*full)

        out, vjp = jax.vjp(partial, *[arrays[i] for i in grad_args])
        return out, vjp(jnp.asarray(cot))

    if grad_args:
        got, grads = value_and_grads(*[jnp.asarray(a) for a in args])
    else:
        got = fn(*[jnp.asarray(a) for a in args])
    assert got.shape == tuple(expected.shape)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got), expected.detach().numpy(), rtol=rtol, atol=atol)
    err = float(np.max(np.abs(np.asarray(got) - expected.detach().numpy()), initial=0.0))
    if grad_args:
        expected.backward(torch.tensor(cot))
        for i, g in zip(grad_args, grads):
            want = tensors[i].grad.numpy()
            np.testing.assert_allclose(np.asarray(g), want, rtol=rtol, atol=atol)
            err = max(err, float(np.max(np.abs(np.asarray(g) - want), initial=0.0)))
    MAX_ERR[name] = max(MAX_ERR.get(name, 0.0), err)
    return got


def normal(rng, *shape, scale=1.0):
    return (scale * rng.normal(size=shape)).astype(np.float32)


def tw(x):
    return None if x is None else torch.tensor(np.asarray(x))


# -- cross-entropy and NLL ---------------------------------------------------------------------------

class_shapes = st.tuples(
    st.integers(0, 4),  # batch N (0 = unbatched)
    st.integers(2, 5),  # classes C
    st.lists(st.integers(1, 3), max_size=2),  # extra dims d1, ...
)


def class_case(rng, n, c, extra):
    shape = (c,) if n == 0 else (n, c, *extra)
    target_shape = () if n == 0 else (n, *extra)
    return normal(rng, *shape, scale=2.0), rng.integers(0, c, size=target_shape)


@given(
    class_shapes,
    st.sampled_from(REDUCTIONS),
    st.booleans(),
    st.sampled_from([0.0, 0.25, 1.0]),
    st.sampled_from([-100, 1]),
    st.integers(0, 2**31 - 1),
)
def test_cross_entropy_index_targets_match_torch(shapes, reduction, weighted, smoothing, ignore_index, seed):
    rng = np.random.default_rng(seed)
    x, y = class_case(rng, *shapes)
    c = shapes[1]
    if y.ndim and ignore_index == -100:
        y = np.where(rng.random(y.shape) < 0.3, -100, y)  # some ignored targets
    weight = rng.uniform(0.2, 2.0, size=c).astype(np.float32) if weighted else None
    args = dict(ignore_index=ignore_index, reduction=reduction, label_smoothing=smoothing)
    if np.all(y == ignore_index) and reduction == "mean":
        y = np.zeros_like(y)  # torch's all-ignored mean is NaN: tested on its own below
    compare(losses.CrossEntropyLoss(weight, **args), torch.nn.CrossEntropyLoss(tw(weight), **args), (x, y))


@given(class_shapes, st.sampled_from(REDUCTIONS), st.booleans(), st.sampled_from([0.0, 0.3]), st.integers(0, 2**31 - 1))
def test_cross_entropy_probability_targets_match_torch(shapes, reduction, weighted, smoothing, seed):
    rng = np.random.default_rng(seed)
    x, _ = class_case(rng, *shapes)
    axis = 0 if x.ndim == 1 else 1
    probs = np.asarray(jax.nn.softmax(normal(rng, *x.shape, scale=2.0), axis=axis))
    weight = rng.uniform(0.2, 2.0, size=shapes[1]).astype(np.float32) if weighted else None
    args = dict(reduction=reduction, label_smoothing=smoothing)
    compare(losses.CrossEntropyLoss(weight, **args), torch.nn.CrossEntropyLoss(tw(weight), **args), (x, probs))


@given(class_shapes, st.sampled_from(REDUCTIONS), st.booleans(), st.integers(0, 2**31 - 1))
def test_nll_matches_torch(shapes, reduction, weighted, seed):
    rng = np.random.default_rng(seed)
    x, y = class_case(rng, *shapes)
    logp = np.asarray(jax.nn.log_softmax(x, axis=0 if x.ndim == 1 else 1))
    if y.ndim:
        y = np.where(rng.random(y.shape) < 0.3, 7, y)
        if reduction == "mean" and np.all(y == 7):
            y[...] = 0
    weight = rng.uniform(0.2, 2.0, size=shapes[1]).astype(np.float32) if weighted else None
    args = dict(ignore_index=7, reduction=reduction)
    compare(losses.NLLLoss(weight, **args), torch.nn.NLLLoss(tw(weight), **args), (logp, y))


@pytest.mark.parametrize(
    "make",
    [
        lambda w: losses.CrossEntropyLoss(w),
        lambda w: losses.CrossEntropyLoss(w, label_smoothing=0.2),
        lambda w: losses.NLLLoss(w),
    ],
)
@pytest.mark.parametrize("weighted", [False, True])
def test_all_ignored_batch_gives_zero_value_and_gradient(make, weighted, rng):
    weight = jnp.array([1.0, 2.0, 0.5]) if weighted else None
    loss = make(weight)
    x = jnp.asarray(normal(rng, 4, 3))
    y = jnp.full((4,), -100)
    value, grad = jax.value_and_grad(lambda x: loss(x, y))(x)
    assert float(value) == 0.0
    assert np.all(np.asarray(grad) == 0.0)
    jitted = jax.jit(jax.value_and_grad(lambda x, y: loss(x, y)))(x, y)
    assert float(jitted[0]) == 0.0 and np.all(np.isfinite(np.asarray(jitted[1])))
    # zero weights on every present class: the weighted mean is 0 / 0, also 0 here
    zero = make(jnp.zeros(3))
    assert float(zero(x, jnp.array([0, 1, 2, -100]))) == 0.0


def test_cross_entropy_out_of_range_index_raises_eagerly_and_is_nan_under_jit():
    loss = losses.CrossEntropyLoss()
    x, y = jnp.zeros((2, 3)), jnp.array([0, 3])
    with pytest.raises(ValueError, match=r"CrossEntropyLoss\(\): expected class indices in \[0, 3\) .*got \[3\]"):
        loss(x, y)
    assert np.isnan(float(jax.jit(loss)(x, y)))
    assert np.isnan(float(jax.jit(losses.NLLLoss())(x, jnp.array([-1, 0]))))


# -- pointwise losses ---------------------------------------------------------------------------------

POINTWISE = [
    (lambda r: losses.MSELoss(reduction=r), lambda r: torch.nn.MSELoss(reduction=r)),
    (lambda r: losses.L1Loss(reduction=r), lambda r: torch.nn.L1Loss(reduction=r)),
    *[
        (
            lambda r, b=b: losses.SmoothL1Loss(reduction=r, beta=b),
            lambda r, b=b: torch.nn.SmoothL1Loss(reduction=r, beta=b),
        )
        for b in (0.0, 0.5, 1.0, 2.0)
    ],
    *[(lambda r, d=d: losses.HuberLoss(r, d), lambda r, d=d: torch.nn.HuberLoss(r, d)) for d in (0.5, 1.0, 2.5)],
]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("ours,theirs", POINTWISE)
@pytest.mark.parametrize("shape", [(), (5,), (2, 3, 4)])
def test_regression_losses_match_torch(ours, theirs, reduction, shape, rng):
    x, y = normal(rng, *shape, scale=2.0), normal(rng, *shape, scale=2.0)
    compare(ours(reduction), theirs(reduction), (x, y), grad_args=(0, 1))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weight_shape", [None, (3,), (4, 1), (4, 3)])
def test_bce_matches_torch(reduction, weight_shape, rng):
    x = rng.uniform(0.02, 0.98, size=(4, 3)).astype(np.float32)
    y = rng.uniform(0, 1, size=(4, 3)).astype(np.float32)
    weight = None if weight_shape is None else rng.uniform(0.1, 2, size=weight_shape).astype(np.float32)
    compare(losses.BCELoss(weight, reduction=reduction), torch.nn.BCELoss(tw(weight), reduction=reduction), (x, y))


def test_bce_clamps_the_log_at_minus_100_as_torch():
    x, y = np.array([0.0, 1.0, 0.0, 1.0], np.float32), np.array([1.0, 0.0, 0.0, 1.0], np.float32)
    compare(losses.BCELoss(reduction="none"), torch.nn.BCELoss(reduction="none"), (x, y), grad_args=())


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(
    "weight_shape,pos_weight_shape", [(None, None), ((3,), None), (None, (3,)), ((4, 1), (3,)), (None, (1,))]
)
def test_bce_with_logits_matches_torch(reduction, weight_shape, pos_weight_shape, rng):
    x, y = normal(rng, 4, 3, scale=4.0), rng.uniform(0, 1, size=(4, 3)).astype(np.float32)
    w = None if weight_shape is None else rng.uniform(0.1, 2, size=weight_shape).astype(np.float32)
    pw = None if pos_weight_shape is None else rng.uniform(0.1, 4, size=pos_weight_shape).astype(np.float32)
    compare(
        losses.BCEWithLogitsLoss(w, reduction=reduction, pos_weight=pw),
        torch.nn.BCEWithLogitsLoss(tw(w), reduction=reduction, pos_weight=tw(pw)),
        (x, y),
        grad_args=(0, 1),
    )


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides the total loss")
@pytest.mark.parametrize("reduction", [*REDUCTIONS, "batchmean"])
@pytest.mark.parametrize("log_target", [False, True])
@pytest.mark.parametrize("shape", [(5,), (3, 4)])
def test_kl_div_matches_torch(reduction, log_target, shape, rng):
    x = np.asarray(jax.nn.log_softmax(normal(rng, *shape)))
    target = np.array(jax.nn.softmax(normal(rng, *shape)))
    if log_target:
        target = np.log(target)
    else:
        target.flat[0] = 0.0  # a zero target contributes 0, not NaN
    compare(
        losses.KLDivLoss(reduction=reduction, log_target=log_target),
        torch.nn.KLDivLoss(reduction=reduction, log_target=log_target),
        (x, target),
    )


# -- pairwise losses ----------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("margin", [0.0, 0.4, -0.3])
@pytest.mark.parametrize("batch", [0, 6])
def test_cosine_embedding_matches_torch(reduction, margin, batch, rng):
    shape = (batch, 5) if batch else (5,)
    x1, x2 = normal(rng, *shape), normal(rng, *shape)
    y = rng.choice(np.array([1, -1]), size=shape[:-1])
    compare(
        losses.CosineEmbeddingLoss(margin, reduction=reduction),
        torch.nn.CosineEmbeddingLoss(margin, reduction=reduction),
        (x1, x2, y),
        grad_args=(0, 1),
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("margin", [0.0, 0.5])
@pytest.mark.parametrize("shape", [(), (7,)])
def test_margin_ranking_matches_torch(reduction, margin, shape, rng):
    x1, x2 = normal(rng, *shape), normal(rng, *shape)
    y = rng.choice(np.array([1.0, -1.0], np.float32), size=shape)
    compare(
        losses.MarginRankingLoss(margin, reduction=reduction),
        torch.nn.MarginRankingLoss(margin, reduction=reduction),
        (x1, x2, y),
        grad_args=(0, 1),
    )


@given(
    st.sampled_from(REDUCTIONS),
    st.sampled_from([0.5, 1.0, 3.0]),
    st.sampled_from([1.0, 1.5, 2.0, 3.0]),
    st.sampled_from([1e-6, 0.1]),
    st.booleans(),
    st.integers(0, 5),
    st.integers(0, 2**31 - 1),
)
def test_triplet_margin_matches_torch(reduction, margin, p, eps, swap, batch, seed):
    rng = np.random.default_rng(seed)
    shape = (batch, 4) if batch else (4,)
    a, pos, neg = normal(rng, *shape), normal(rng, *shape), normal(rng, *shape)
    compare(
        losses.TripletMarginLoss(margin, p, eps, swap, reduction=reduction),
        torch.nn.TripletMarginLoss(margin, p, eps, swap, reduction=reduction),
        (a, pos, neg),
        grad_args=(0, 1, 2),
        rtol=5e-5,
        atol=5e-6,
    )


# -- CTC ----------------------------------------------------------------------------------------------


def ctc_case(rng, time=12, batch=3, classes=5, max_target=4, blank=0):
    logp = np.asarray(jax.nn.log_softmax(normal(rng, time, batch, classes, scale=2.0), axis=-1))
    labels = [c for c in range(classes) if c != blank]
    targets = rng.choice(labels, size=(batch, max_target))
    targets[0, 1] = targets[0, 0]  # a repeat needs a blank between
    target_lengths = np.array([max_target, 0, 2][:batch])
    input_lengths = np.array([time, time - 3, 5][:batch])
    return logp, targets, input_lengths, target_lengths


@pytest.mark.parametrize("reduction,blank", [("none", 0), ("mean", 4), ("sum", 2)])
def test_ctc_matches_torch(reduction, blank, rng):
    logp, targets, input_lengths, target_lengths = ctc_case(rng, blank=blank)
    args = (logp, targets, input_lengths, target_lengths)
    ours, theirs = losses.CTCLoss(blank, reduction), torch.nn.CTCLoss(blank, reduction)
    # gradients w.r.t. log_probs for two reductions (a CTC gradient compiles slowly), values for all
    compare(ours, theirs, args, grad_args=(0,) if reduction != "sum" else (), rtol=5e-5, atol=5e-6)


def _ctc_of_logits(loss, logits, *rest):
    return loss(jax.nn.log_softmax(logits, axis=-1), *rest)


def test_ctc_gradient_through_log_softmax_matches_torch(rng):
    logp, targets, input_lengths, target_lengths = ctc_case(rng)
    logits = normal(rng, *logp.shape, scale=2.0)
    compare(
        ("CTCLoss", lambda *a: _ctc_of_logits(losses.CTCLoss(), *a)),
        lambda z, *rest: torch.nn.CTCLoss()(F.log_softmax(z, dim=-1), *rest),
        (logits, targets, input_lengths, target_lengths),
        rtol=5e-5,
        atol=5e-6,
    )


def test_ctc_impossible_alignment_is_inf_or_zero_with_zero_infinity(rng):
    logp, targets, input_lengths, target_lengths = ctc_case(rng)
    input_lengths = np.array([4, 9, 5])  # sample 0 needs 5 frames (4 labels and a repeat)
    args = (logp, targets, input_lengths, target_lengths)
    for reduction in REDUCTIONS:
        value = np.asarray(losses.CTCLoss(reduction=reduction)(*map(jnp.asarray, args)))
        assert np.isinf(value).any()
        assert np.isinf(torch.nn.CTCLoss(reduction=reduction)(*map(torch.tensor, args)).detach().numpy()).any()
        compare(
            losses.CTCLoss(0, reduction, True),
            torch.nn.CTCLoss(0, reduction, True),
            args,
            grad_args=(0,) if reduction == "mean" else (),
            rtol=5e-5,
            atol=5e-6,
        )


def test_ctc_concatenated_targets_eager_only_and_unbatched(rng):
    logp, targets, input_lengths, target_lengths = ctc_case(rng)
    flat = np.concatenate([row[:n] for row, n in zip(targets, target_lengths)])
    loss = losses.CTCLoss(reduction="none")
    got = compare(
        loss,
        torch.nn.CTCLoss(reduction="none"),
        (logp, flat, input_lengths, target_lengths),
        grad_args=(),
        rtol=5e-5,
        atol=5e-6,
    )
    np.testing.assert_allclose(got, loss(logp, targets, input_lengths, target_lengths), rtol=1e-6)
    with pytest.raises(TypeError, match=r"CTCLoss.*concatenated 1-D targets need concrete target_lengths.*padded"):
        jax.jit(loss)(logp, flat, input_lengths, target_lengths)
    with pytest.raises(ShapeError, match=r"CTCLoss.*sum\(target_lengths\) = 6, got shape \(5,\)"):
        loss(logp, flat[:5], input_lengths, target_lengths)
    with pytest.raises(
        ValueError, match=re.escape("CTCLoss(reduction='none'): expected target_lengths in [0, S=4], got [5, 0, 2]")
    ):
        loss(logp, targets, input_lengths, np.array([5, 0, 2]))
    with pytest.raises(ValueError, match=re.escape("expected input_lengths in [0, T=12], got [13, 9, 5]")):
        loss(logp, targets, np.array([13, 9, 5]), target_lengths)
    # unbatched: (T, C) log-probs, (S,) targets, scalar lengths
    compare(
        losses.CTCLoss(),
        torch.nn.CTCLoss(),
        (logp[:, 0], targets[0], np.array(12), np.array(4)),
        grad_args=(),
        rtol=5e-5,
        atol=5e-6,
    )


# -- pytrees, jit, dtypes -----------------------------------------------------------------------------


def test_losses_are_pytrees_with_array_options_as_children():
    w, pw = jnp.array([1.0, 2.0, 3.0]), jnp.array([0.5, 1.0, 2.0])
    assert jax.tree.leaves(losses.CrossEntropyLoss(w, label_smoothing=0.1)) == [w]
    assert jax.tree.leaves(losses.BCEWithLogitsLoss(w, pos_weight=pw)) == [w, pw]
    assert jax.tree.leaves(losses.TripletMarginLoss(2.0, swap=True)) == []
    doubled = jax.tree.map(lambda a: 2 * a, losses.CrossEntropyLoss(w, ignore_index=3, label_smoothing=0.1))
    assert doubled.ignore_index == 3 and doubled.label_smoothing == 0.1
    np.testing.assert_array_equal(doubled.weight, 2 * w)

    traces = []

    @jax.jit
    def step(loss, x, y):
        traces.append(1)
        return loss(x, y)

    x, y = jnp.asarray(normal(np.random.default_rng(0), 4, 3)), jnp.array([0, 1, 2, 1])
    first = step(losses.CrossEntropyLoss(w), x, y)
    second = step(losses.CrossEntropyLoss(2 * w + 1), x, y)
    assert len(traces) == 1 and float(first) != float(second)
    step(losses.CrossEntropyLoss(w, label_smoothing=0.2), x, y)  # static config: a new trace
    assert len(traces) == 2
    step(losses.BCEWithLogitsLoss(pos_weight=pw), x, jnp.ones((4, 3)) / 2)
    step(losses.BCEWithLogitsLoss(pos_weight=pw + 1), x, jnp.ones((4, 3)) / 2)
    assert len(traces) == 3


def _calls():
    rng = np.random.default_rng(1)
    x, probs = normal(rng, 4, 3), np.asarray(jax.nn.softmax(normal(rng, 4, 3)))
    y = np.array([0, 2, -100, 1])
    logp, targets, input_lengths, target_lengths = ctc_case(rng)
    trio = (normal(rng, 4, 3), normal(rng, 4, 3), normal(rng, 4, 3))
    return [
        (losses.CrossEntropyLoss(jnp.array([1.0, 2.0, 3.0]), label_smoothing=0.1), (x, y)),
        (losses.CrossEntropyLoss(reduction="none"), (x, probs)),
        (losses.NLLLoss(), (np.asarray(jax.nn.log_softmax(x)), y)),
        (losses.MSELoss(), (x, probs)),
        (losses.L1Loss(reduction="sum"), (x, probs)),
        (losses.SmoothL1Loss(beta=0.5), (x, probs)),
        (losses.HuberLoss(delta=0.3), (x, probs)),
        (losses.BCELoss(), (probs, probs)),
        (losses.BCEWithLogitsLoss(pos_weight=jnp.array([2.0, 1.0, 0.5])), (x, probs)),
        (losses.KLDivLoss(reduction="batchmean"), (np.asarray(jax.nn.log_softmax(x)), probs)),
        (losses.CosineEmbeddingLoss(0.2), (trio[0], trio[1], np.array([1, -1, 1, -1]))),
        (losses.MarginRankingLoss(0.1), (x[:, 0], x[:, 1], np.array([1.0, -1.0, 1.0, -1.0], np.float32))),
        (losses.TripletMarginLoss(swap=True), trio),
        (losses.CTCLoss(zero_infinity=True), (logp, targets, input_lengths, target_lengths)),
    ]


@pytest.mark.parametrize("loss,args", _calls(), ids=lambda v: type(v).__name__ if isinstance(v, losses._Loss) else "")
def test_jit_equals_eager_and_bfloat16_reduces_in_float32(loss, args):
    args = [jnp.asarray(a) for a in args]
    eager = loss(*args)
    np.testing.assert_allclose(jax.jit(lambda loss, *a: loss(*a))(loss, *args), eager, rtol=1e-6, atol=1e-7)
    low = [a.astype(jnp.bfloat16) if jnp.issubdtype(a.dtype, jnp.floating) else a for a in args]
    result = loss(*low)
    assert result.dtype == jnp.float32
    high = loss(*[a.astype(jnp.float32) if a.dtype == jnp.bfloat16 else a for a in low])
    np.testing.assert_allclose(result, high, rtol=1e-6, atol=1e-6)


def test_constructor_arguments_follow_torch_positionally_and_legacy_reduction(rng):
    x, y = normal(rng, 5, 4), rng.integers(0, 4, size=5)
    w = rng.uniform(0.5, 2, size=4).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = torch.nn.CrossEntropyLoss(tw(w), None, 2, None, "sum", 0.1)
    compare(losses.CrossEntropyLoss(jnp.asarray(w), None, 2, None, "sum", 0.1), theirs, (x, y))
    for size_average, reduce, expected in [(False, None, "sum"), (None, False, "none"), (True, True, "mean")]:
        with pytest.warns(DeprecationWarning, match=f"use reduction='{expected}'"):
            ours = losses.MSELoss(size_average, reduce)
        assert ours.reduction == expected
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = torch.nn.MSELoss(size_average, reduce)
        assert theirs.reduction == expected
    assert losses.TripletMarginLoss(2.0, 1.0, 0.0, True).swap
    assert (
        repr(losses.CrossEntropyLoss(jnp.ones(3), label_smoothing=0.1))
        == "CrossEntropyLoss(weight=float32[3], label_smoothing=0.1)"
    )


# -- errors ------------------------------------------------------------------------------------------


def test_bad_configuration_is_refused_with_the_loss_named():
    with pytest.raises(
        ValueError, match=r"CrossEntropyLoss: reduction must be one of \('none', 'mean', 'sum'\), got 'avg'"
    ):
        losses.CrossEntropyLoss(reduction="avg")
    with pytest.raises(ValueError, match=r"MSELoss: reduction must be one of .*got 'batchmean'"):
        losses.MSELoss(reduction="batchmean")
    assert losses.KLDivLoss(reduction="batchmean").reduction == "batchmean"
    with pytest.raises(
        ValueError, match=r"CrossEntropyLoss\(.*\): label_smoothing must be a float in \[0, 1\], got 1.5"
    ):
        losses.CrossEntropyLoss(label_smoothing=1.5)
    with pytest.raises(ValueError, match=r"SmoothL1Loss\(.*\): beta must be a float >= 0, got -1"):
        losses.SmoothL1Loss(beta=-1)
    with pytest.raises(ValueError, match=r"HuberLoss\(.*\): delta must be a float > 0, got 0"):
        losses.HuberLoss(delta=0)
    with pytest.raises(ValueError, match=r"TripletMarginLoss\(.*\): margin must be a float > 0, got 0.0"):
        losses.TripletMarginLoss(0.0)
    with pytest.raises(TypeError, match=r"NLLLoss\(.*\): ignore_index must be an int, got 0.5"):
        losses.NLLLoss(ignore_index=0.5)


def test_bad_inputs_are_refused_at_trace_time():
    ce = losses.CrossEntropyLoss(jnp.ones(4))
    x = jnp.zeros((2, 3))
    with pytest.raises(ShapeError, match=re.escape("expected weight of shape (3,), one per class, got shape (4,)")):
        jax.jit(ce)(x, jnp.array([0, 1]))
    with pytest.raises(
        ShapeError,
        match=re.escape(
            "CrossEntropyLoss(): expected target of shape (2,) (class indices) or (2, 3) (class probabilities), got shape (3,)"
        ),
    ):
        jax.jit(losses.CrossEntropyLoss())(x, jnp.array([0, 1, 2]))
    with pytest.raises(TypeError, match=r"CrossEntropyLoss\(\): expected integer class indices as target, got float32"):
        losses.CrossEntropyLoss()(x, jnp.array([0.0, 1.0]))
    with pytest.raises(
        TypeError, match=r"CrossEntropyLoss\(\): expected floating class probabilities .* \(2, 3\), got int32"
    ):
        losses.CrossEntropyLoss()(x, jnp.zeros((2, 3), jnp.int32))
    with pytest.raises(TypeError, match=r"NLLLoss\(\): expected input to be a floating array, got int32"):
        losses.NLLLoss()(jnp.zeros((2, 3), jnp.int32), jnp.array([0, 1]))
    with pytest.raises(
        ShapeError, match=re.escape("MSELoss(): expected target of the input's shape (2, 3), got shape (3,)")
    ):
        losses.MSELoss()(x, jnp.zeros(3))
    with pytest.raises(
        ShapeError, match=re.escape("expected weight broadcastable to the input's shape (2, 3), got shape (2,)")
    ):
        losses.BCELoss(jnp.ones(2))(x + 0.5, x)
    with pytest.raises(ShapeError, match=re.escape("expected target of shape (2,), got shape (3,)")):
        losses.CosineEmbeddingLoss()(x, x, jnp.ones(3))
    with pytest.raises(
        ShapeError, match=re.escape("TripletMarginLoss(): expected negative of the anchor's shape (2, 3)")
    ):
        losses.TripletMarginLoss()(x, x, jnp.zeros((2, 4)))
    with pytest.raises(
        ShapeError, match=re.escape("CTCLoss(): expected log_probs of shape (T, N, C) or (T, C), got shape (3,)")
    ):
        losses.CTCLoss()(jnp.zeros(3), jnp.zeros((1, 1), jnp.int32), 3, 1)
    with pytest.raises(ShapeError, match=re.escape("CTCLoss(): expected input_lengths of shape (2,), got shape ()")):
        losses.CTCLoss()(jnp.zeros((5, 2, 3)), jnp.zeros((2, 1), jnp.int32), 5, jnp.array([1, 1]))


def test_module_is_exposed_and_documented():
    assert tlean.losses is losses and "losses" in tlean.__all__
    assert list(losses.__all__) == sorted(losses.__all__)
    for name in losses.__all__:
        assert getattr(losses, name).__doc__, name
