"""Positions: sinusoidal encoding and RoPE against slow NumPy references written from the formulas,
RoPE's rotation and relativity, exact start_pos shifts, and the learned embedding against torch."""

import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tests.torch_utils import n
from tlean import ShapeError, nn
from tlean import layers as L

# --- slow references, one loop per index of the formulas -------------------------------------


def sinusoidal_reference(seq: int, dim: int, start_pos: int) -> np.ndarray:
    """PE[p, 2i] = sin((start+p) / 10000^(2i/d)), PE[p, 2i+1] = cos(same)."""
    pe = np.zeros((seq, dim))
    for p in range(seq):
        for j in range(dim):
            i = j // 2
            angle = (start_pos + p) / 10000 ** (2 * i / dim)
            pe[p, j] = math.sin(angle) if j % 2 == 0 else math.cos(angle)
    return pe


def rope_reference(x: np.ndarray, start_pos: int, interleaved: bool) -> np.ndarray:
    """Rotate pair i of every vector x[..., p, :] by (start+p) / 10000^(2i/d)."""
    *_, seq, d = x.shape
    flat = x.reshape(-1, seq, d).astype(np.float64)
    out = flat.copy()
    for b in range(flat.shape[0]):
        for p in range(seq):
            for i in range(d // 2):
                a, c = (2 * i, 2 * i + 1) if interleaved else (i, i + d // 2)
                angle = (start_pos + p) / 10000 ** (2 * i / d)
                x0, x1 = flat[b, p, a], flat[b, p, c]
                out[b, p, a] = x0 * math.cos(angle) - x1 * math.sin(angle)
                out[b, p, c] = x0 * math.sin(angle) + x1 * math.cos(angle)
    return out.reshape(x.shape)


# --- sinusoidal ------------------------------------------------------------------------------


@functools.cache
def jitted(layer):
    """One compiled apply per layer and shape; start_pos is traced, so examples do not recompile."""
    return jax.jit(lambda x, s: layer.apply({}, {}, x, start_pos=s)[0])


@given(st.integers(1, 9), st.integers(1, 6), st.integers(0, 200))
def test_sinusoidal_matches_the_formula(dim, seq, start_pos):
    layer = L.SinusoidalPositionalEncoding(dim, max_len=256)
    x = np.random.default_rng(dim).normal(size=(2, 6, dim)).astype(np.float32)[:, :seq]
    y = jitted(layer)(x, start_pos)
    assert not layer.has_params
    reference = np.broadcast_to(sinusoidal_reference(seq, dim, start_pos), x.shape)
    np.testing.assert_allclose(np.asarray(y) - x, reference, atol=2e-5)


def test_sinusoidal_matches_pytorchs_tutorial_encoding():
    """The ``PositionalEncoding`` buffer of PyTorch's Transformer tutorial, built in torch."""
    d, max_len = 16, 50
    position = torch.arange(max_len).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, d, 2) * (-math.log(10000.0) / d))
    pe = torch.zeros(max_len, d)
    pe[:, 0::2] = torch.sin(position * div_term)
    pe[:, 1::2] = torch.cos(position * div_term)
    y, _ = L.SinusoidalPositionalEncoding(d, max_len).apply({}, {}, jnp.zeros((max_len, d)))
    np.testing.assert_allclose(y, n(pe), atol=2e-5)


class StartPosTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_a_traced_start_pos_shifts_exactly(self):
        x = jax.random.normal(jax.random.key(0), (2, 3, 5, 6))
        for layer in (L.SinusoidalPositionalEncoding(6, 32), L.RoPE(6, 32), L.RoPE(6, 32, interleaved=False)):
            long = jnp.concatenate([jnp.zeros((2, 3, 7, 6)), x], axis=2)
            whole = layer.apply({}, {}, long)[0][:, :, 7:]
            shifted = self.variant(lambda x, s: layer.apply({}, {}, x, start_pos=s)[0])(x, 7)
            np.testing.assert_allclose(shifted, whole, rtol=1e-6, atol=1e-6)
            configured = type(layer)(**{**vars(layer), "start_pos": 7}).apply({}, {}, x)[0]
            np.testing.assert_allclose(configured, shifted, rtol=1e-6, atol=1e-6)  # jit may fuse differently


# --- RoPE ------------------------------------------------------------------------------------


@given(st.integers(2, 9), st.integers(1, 5), st.integers(0, 1000), st.booleans())
def test_rope_matches_the_formula_and_is_a_rotation(head_dim, seq, start_pos, interleaved):
    interleaved = interleaved or head_dim % 2 == 1  # the half-split layout needs an even head_dim
    x = np.random.default_rng(seq).normal(size=(2, 3, 5, head_dim)).astype(np.float32)[:, :, :seq]
    y = np.asarray(jitted(L.RoPE(head_dim, max_len=1024, interleaved=interleaved))(x, start_pos))
    np.testing.assert_allclose(y, rope_reference(x, start_pos, interleaved), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(y, axis=-1), np.linalg.norm(x, axis=-1), rtol=1e-5)
    if head_dim % 2:
        np.testing.assert_array_equal(y[..., -1], x[..., -1])  # an odd last element is left alone


def test_rope_config_start_pos_equals_the_apply_keyword():
    x = jax.random.normal(jax.random.key(0), (2, 3, 4, 6))
    configured = L.RoPE(6, max_len=16, start_pos=5).apply({}, {}, x)[0]
    np.testing.assert_allclose(configured, rope_reference(np.asarray(x), 5, True), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(configured, L.RoPE(6, max_len=16).apply({}, {}, x, start_pos=5)[0], rtol=1e-6)


@pytest.mark.parametrize("interleaved", [True, False])
def test_rope_is_relative(interleaved):
    """<R(p) q, R(p') k> depends on p - p' only."""
    rope = L.RoPE(8, max_len=64, interleaved=interleaved)
    q, k = jax.random.normal(jax.random.key(0), (2, 1, 1, 1, 8))

    def score(p, p2):
        rq = rope.apply({}, {}, q, start_pos=p)[0]
        rk = rope.apply({}, {}, k, start_pos=p2)[0]
        return float(jnp.sum(rq * rk))

    for lag in (0, 1, 3, -2):
        scores = [score(p, p - lag) for p in (5, 9, 20)]
        np.testing.assert_allclose(scores, scores[0], rtol=1e-5, atol=1e-5)
    assert abs(score(5, 4) - score(5, 2)) > 1e-3  # and it does depend on the lag


# --- learned ---------------------------------------------------------------------------------


class LearnedParityTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_adds_the_rows_of_a_torch_embedding_by_position(self):
        torch.manual_seed(0)
        pos = torch.nn.Embedding(10, 4)
        model = nn.pure.learned_positional_embedding(10, 4, key=jax.random.key(0))
        model = model.replace(params={"weight": jnp.asarray(n(pos.weight))})
        x = np.random.default_rng(0).normal(size=(2, 6, 4)).astype(np.float32)
        expected = n(torch.from_numpy(x) + pos(torch.arange(3, 9)))
        y = self.variant(lambda m, x, s: m(x, start_pos=s))(model, x, 3)
        np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-6)


def test_learned_traced_start_pos_past_the_table_reads_nan():
    layer = L.LearnedPositionalEmbedding(6, 2)
    params, _ = layer.init(jax.random.key(0))
    y = jax.jit(lambda x, s: layer.apply(params, {}, x, start_pos=s)[0])(jnp.zeros((4, 2)), 4)
    assert np.isfinite(y[:2]).all() and np.isnan(y[2:]).all()
    assert np.asarray(layer.init(jax.random.key(0))[0]["weight"]).shape == (6, 2)


# --- bad input -------------------------------------------------------------------------------


def test_bad_input_and_config():
    rope = L.RoPE(4, max_len=8)
    with pytest.raises(
        ShapeError,
        match=r"RoPE\(head_dim=4, max_len=8\): expected at most 8 positions from "
        r"start_pos=0 \(max_len=8\), got shape \(1, 2, 9, 4\)",
    ):
        rope.apply({}, {}, jnp.ones((1, 2, 9, 4)))
    with pytest.raises(ShapeError, match=r"expected at most 3 positions from start_pos=5"):
        rope.apply({}, {}, jnp.ones((1, 2, 4, 4)), start_pos=5)
    with pytest.raises(ShapeError, match=r"RoPE\(.*\): expected input \[\.\.\., seq, 4\], got shape \(1, 2, 3, 6\)"):
        rope.apply({}, {}, jnp.ones((1, 2, 3, 6)))
    with pytest.raises(ShapeError, match=r"got shape \(4,\)"):
        rope.apply({}, {}, jnp.ones((4,)))
    with pytest.raises(ShapeError, match=r"expected at most 8 positions \(max_len=8\)"):  # traced start_pos
        jax.jit(lambda x, s: rope.apply({}, {}, x, start_pos=s)).lower(jnp.ones((1, 9, 4)), 0)
    with pytest.raises(TypeError, match=r"start_pos must be an integer scalar, got float32\[\]"):
        rope.apply({}, {}, jnp.ones((1, 2, 4)), start_pos=jnp.float32(1))
    with pytest.raises(TypeError, match=r"RoPE\(.*\): expected a floating-point input, got int32"):
        rope.apply({}, {}, jnp.ones((1, 2, 4), jnp.int32))
    with pytest.raises(ValueError, match=r"RoPE: head_dim must be at least 2 \(one pair to rotate\), got 1"):
        L.RoPE(1)
    with pytest.raises(
        ValueError, match=r"RoPE: the half-split layout \(interleaved=False\) needs an even head_dim, got 5"
    ):
        L.RoPE(5, interleaved=False)
    with pytest.raises(ValueError, match=r"SinusoidalPositionalEncoding: start_pos must be an int >= 0, got -1"):
        L.SinusoidalPositionalEncoding(4, start_pos=-1)
    with pytest.raises(ValueError, match=r"SinusoidalPositionalEncoding: max_len must be a positive int, got 0"):
        L.SinusoidalPositionalEncoding(4, max_len=0)
    learned = L.LearnedPositionalEmbedding(4, 2)
    params, _ = learned.init(jax.random.key(0))
    with pytest.raises(
        ShapeError,
        match=r"LearnedPositionalEmbedding\(seq_len=4, dim=2\): expected at most 4 "
        r"positions from start_pos=0 \(max_len=4\), got shape \(3, 5, 2\)",
    ):
        learned.apply(params, {}, jnp.ones((3, 5, 2)))
    with pytest.raises(ValueError, match=r"LearnedPositionalEmbedding: seq_len must be a positive int, got 0"):
        L.LearnedPositionalEmbedding(0, 2)
