"""TorchLean's BugZoo as public properties (tlean.testing.properties), on tlean's layers: each holds for the
correct layer and fails on a layer with the bug it is named after."""

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from tlean import Layer, losses, testing
from tlean import layers as L
from tlean import models as M
from tlean.testing import properties


def normal(*shape, seed=1):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


IDS = jnp.asarray(np.random.default_rng(2).integers(0, 11, size=(2, 6)), jnp.int32)
GPT = M.GPT(11, 8, d_model=8, nhead=2, num_layers=1)
GQA = L.Attention(8, 4, 2, rope=L.RoPE(2, 16), causal=True)


# -- causal masks give the future exactly zero weight ------------------------------------------
@pytest.mark.parametrize(
    "layer,kwargs",
    [
        (L.MultiheadAttention(8, 2), {"is_causal": True}),
        (L.MultiheadAttention(8, 2), {"attn_mask": np.triu(np.ones((5, 5), bool), k=1)}),  # torch's True = blocked
        (L.MultiheadAttention(8, 2, causal=True), {"need_weights": True}),  # the weights' upper triangle is 0
        (GQA, {}),
    ],
    ids=["mha-is_causal", "mha-attn_mask", "mha-causal-weights", "gqa-rope"],
)
def test_causal_mask_gives_the_future_exactly_zero_weight(layer, kwargs):
    properties.causal_mask_zero_future(layer, normal(2, 5, 8), **kwargs)


def test_causal_property_fails_without_the_mask():
    with pytest.raises(AssertionError, match="changing the inputs after position 0 changed the output at positions"):
        properties.causal_mask_zero_future(L.MultiheadAttention(8, 2), normal(2, 5, 8))
    with pytest.raises(AssertionError, match="weights give .* to a future position"):
        properties.causal_mask_zero_future(L.MultiheadAttention(8, 2), normal(2, 5, 8), need_weights=True)


# -- KV-cache decoding equals the full forward -------------------------------------------------
def test_kv_cache_decode_equals_the_full_forward():
    properties.kv_cache_decode_equals_forward(GPT, IDS, GPT.init_cache(2), chunks=(3, 3))  # prefill, then decode
    properties.kv_cache_decode_equals_forward(GQA, normal(2, 4, 8), GQA.init_cache(2, 6), chunks=(2, 2))


@dataclass(frozen=True)
class ForgetfulDecoder(Layer):
    """The classic cache bug: each decoding step starts from an empty cache."""

    attn: Layer

    def apply(self, params, state, x, *, key=None, train=False):
        return self.attn.apply(params["attn"], {}, x)[0], state

    def decode(self, params, cache, x, start_pos):
        fresh = jax.tree.map(jnp.zeros_like, cache)
        return self.attn.decode(params["attn"], fresh, x, start_pos)


def test_kv_cache_property_fails_when_the_cache_is_dropped():
    with pytest.raises(AssertionError, match=r"decoding positions 2\.\.3 \(start_pos=2\) differs"):
        properties.kv_cache_decode_equals_forward(
            ForgetfulDecoder(GQA), normal(2, 4, 8), GQA.init_cache(2, 4), chunks=(2, 2)
        )


# -- RoPE (and the positional encodings) at start_pos equal the next positions -----------------
@pytest.mark.parametrize(
    "layer,shape",
    [
        (L.RoPE(5, max_len=8), (2, 3, 6, 5)),
        (L.RoPE(6, max_len=8, interleaved=False), (2, 6, 6)),
    ],
    ids=["rope-odd", "rope-half-split"],
)
def test_start_pos_equals_the_next_positions(layer, shape):
    properties.start_pos_equals_offset(
        layer, normal(*shape), start_pos=(2, 5)
    )  # a traced start_pos may round the angle 1 ulp apart


@dataclass(frozen=True)
class RoPEIgnoringStartPos(Layer):
    """The bug: the decoding step's token is rotated as if it were at position 0."""

    def apply(self, params, state, x, *, key=None, train=False, start_pos=None):
        return L.RoPE(4, max_len=8).apply({}, {}, x)[0], state


def test_start_pos_property_fails_when_start_pos_is_ignored():
    with pytest.raises(AssertionError, match=r"start_pos=1 \(static\) differs"):
        properties.start_pos_equals_offset(RoPEIgnoringStartPos(), normal(2, 5, 4), start_pos=(1,))


# -- eval-mode layers are batch invariant ------------------------------------------------------
def batchnorm_with_statistics():
    layer = L.BatchNorm2d(3)
    model = testing.as_model(layer)
    state = {**model.state, "running_mean": normal(3, seed=3), "running_var": 1 + normal(3, seed=4) ** 2}
    return model.replace(state=state)


@pytest.mark.parametrize(
    "model,shape",
    [
        (batchnorm_with_statistics(), (4, 3, 5, 5)),
        (L.LayerNorm(6), (4, 6)),
        (L.Linear(5, 3), (4, 2, 5)),
        (L.Conv2d(3, 4, 3, padding=1), (3, 3, 5, 5)),
    ],
    ids=["batchnorm-eval", "layernorm", "linear", "conv2d"],
)
def test_eval_mode_layers_are_batch_invariant(model, shape):
    properties.batch_invariant(model, normal(*shape))


def test_batch_invariance_fails_for_batchnorm_in_train_mode():
    with pytest.raises(AssertionError, match=r"\(train=True\): example 0 alone differs"):
        properties.batch_invariant(batchnorm_with_statistics(), normal(4, 3, 5, 5), train=True)


# -- an all-ignored loss batch is 0, not NaN ---------------------------------------------------
@pytest.mark.parametrize(
    "loss,input",
    [
        (losses.CrossEntropyLoss(ignore_index=-100), normal(4, 5)),
        (losses.NLLLoss(ignore_index=-1), jax.nn.log_softmax(normal(4, 5))),
    ],
    ids=["cross-entropy", "nll"],
)
def test_an_all_ignored_batch_has_loss_zero_not_nan(loss, input):
    target = jnp.full((input.shape[0],) + input.shape[2:], loss.ignore_index, jnp.int32)
    properties.all_ignored_loss_is_zero(loss, input, target)
    # What differs from torch, on purpose: torch's mean over no element is 0/0 = NaN (pytorch#75181).
    torch_loss = getattr(torch.nn, type(loss).__name__)(ignore_index=loss.ignore_index)
    assert torch.isnan(torch_loss(torch.from_numpy(np.array(input)), torch.from_numpy(np.array(target)).long()))


def test_all_ignored_property_fails_for_a_loss_that_divides_by_zero():
    def naive(logits, target):  # mean over the kept elements, 0 / 0 when none is kept
        keep = target != -100
        picked = jnp.take_along_axis(jax.nn.log_softmax(logits), jnp.where(keep, target, 0)[:, None], axis=1)[:, 0]
        return -jnp.sum(jnp.where(keep, picked, 0.0)) / jnp.sum(keep)

    with pytest.raises(AssertionError, match="gives loss nan, expected 0"):
        properties.all_ignored_loss_is_zero(naive, normal(4, 5), jnp.full((4,), -100, jnp.int32))
