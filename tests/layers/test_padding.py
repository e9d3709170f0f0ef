"""Zero/Constant/Reflection/Replication/CircularPad 1d/2d/3d against torch.nn: outputs and input gradients
over int and per-side paddings (torch's order, last axis first), negative (cropping) paddings, batched and
unbatched inputs; padding too large for the input is a ShapeError naming the layer."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from tests.torch_utils import n, t
from tlean import ShapeError, nn
from tlean import layers as L

KINDS = ["Zero", "Constant", "Reflection", "Replication", "Circular"]


def make(kind, dims, padding, module):
    args = (padding, 1.5) if kind == "Constant" else (padding,)
    return getattr(module, f"{kind}Pad{dims}d")(*args)


def pad_parity(layer, torch_layer, shape):
    rng = np.random.default_rng(len(shape))
    x = rng.normal(size=shape).astype(np.float32)
    xt = t(x)
    yt = torch_layer(xt)
    y, vjp = jax.vjp(jax.jit(lambda x: layer.apply({}, {}, x)[0]), jnp.asarray(x))
    assert y.shape == tuple(yt.shape)
    np.testing.assert_array_equal(y, n(yt))  # a copy of input values: exact
    g = rng.normal(size=y.shape).astype(np.float32)
    (yt * torch.from_numpy(g)).sum().backward()
    np.testing.assert_allclose(vjp(jnp.asarray(g))[0], n(xt.grad), atol=1e-6, rtol=1e-6)


# (dims, padding, input shape); every kind runs every row
CONFIGS = [
    (1, 2, (2, 3, 5)),
    (1, (0, 3), (3, 4)),
    (1, (-1, 2), (1, 2, 5)),
    (2, 1, (2, 2, 3, 4)),
    (2, (2, 0, 1, 3), (2, 4, 5)),
    (2, (1, -1, 0, 2), (1, 1, 4, 3)),
    (3, 1, (1, 2, 2, 3, 3)),
    (3, (1, 0, 0, 2, 2, 1), (2, 3, 3, 4)),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dims,padding,shape", CONFIGS, ids=[f"{c[0]}d-{c[1]}-{len(c[2])}" for c in CONFIGS])
def test_padding_matches_torch(kind, dims, padding, shape):
    pad_parity(make(kind, dims, padding, L), make(kind, dims, padding, torch.nn), shape)


def test_constant_padding_takes_any_rank_as_torch():
    for layer, module, shape in [
        (L.ZeroPad2d(1), torch.nn.ZeroPad2d(1), (3, 3)),
        (L.ConstantPad1d(2, -1.0), torch.nn.ConstantPad1d(2, -1.0), (4,)),
        (L.ZeroPad1d((1, 2)), torch.nn.ZeroPad1d((1, 2)), (1, 1, 2, 3)),
    ]:
        pad_parity(layer, module, shape)


def test_padding_is_stored_in_torchs_order_and_configs_normalise():
    assert L.ZeroPad2d(1).padding == (1, 1, 1, 1) and L.ZeroPad2d([1, 2, 3, 4]) == L.ZeroPad2d((1, 2, 3, 4))
    assert L.ZeroPad2d((1, 2, 3, 4)).pads == ((3, 4), (1, 2))  # (top, bottom) then (left, right)
    assert repr(L.ReflectionPad1d(2)) == "ReflectionPad1d(padding=(2, 2))"
    assert repr(L.ConstantPad3d(1, 0.5)) == "ConstantPad3d(padding=(1, 1, 1, 1, 1, 1), value=0.5)"
    assert not L.ReplicationPad2d(1).has_params and nn.pure.circular_pad1d(1).layer == L.CircularPad1d(1)
    assert nn.run(0, nn.ConstantPad2d(1, 2.0)).layer == L.ConstantPad2d((1, 1, 1, 1), 2.0)
    y, _ = L.ConstantPad1d(1, 7).apply({}, {}, jnp.zeros((1, 2), jnp.int32))  # integer inputs are fine, as in torch
    assert y.dtype == jnp.int32 and y.tolist() == [[7, 0, 0, 7]]


def test_bad_padding_configuration_is_a_value_error_naming_the_layer():
    with pytest.raises(
        ValueError,
        match=r"ZeroPad2d: padding must be an int or a tuple of 4 ints \(last axis first, as "
        r"torch.nn.functional.pad\), got \(1, 2\)",
    ):
        L.ZeroPad2d((1, 2))
    with pytest.raises(ValueError, match=r"ReflectionPad1d: padding must be an int or a tuple of 2 ints"):
        L.ReflectionPad1d(1.5)
    with pytest.raises(ValueError, match=r"ConstantPad1d: value must be a number, got 'x'"):
        L.ConstantPad1d(1, "x")


def test_padding_too_large_for_the_input_is_a_shape_error_naming_the_layer():
    with pytest.raises(
        ShapeError,
        match=r"ReflectionPad2d\(padding=\(3, 3, 1, 1\)\): expected an input whose padded axes fit the "
        r"reflect padding \(\(1, 1\), \(3, 3\)\) \(each padding smaller than the size\), got shape \(1, 4, 3\)",
    ):
        L.ReflectionPad2d((3, 3, 1, 1)).apply({}, {}, jnp.ones((1, 4, 3)))
    with pytest.raises(RuntimeError, match="Padding size should be less than"):  # torch refuses it too
        torch.nn.ReflectionPad2d((3, 3, 1, 1))(torch.ones(1, 4, 3))
    with pytest.raises(
        ShapeError, match=r"CircularPad1d\(.*\): expected .* \(each padding at most the size\), got shape \(2, 3\)"
    ):
        L.CircularPad1d(4).apply({}, {}, jnp.ones((2, 3)))
    with pytest.raises(ShapeError, match=r"ZeroPad1d\(.*\): expected .*size after cropping of at least 0"):
        L.ZeroPad1d((-2, -2)).apply({}, {}, jnp.ones((2, 3)))
    with pytest.raises(
        ShapeError,
        match=r"ReplicationPad3d\(.*\): expected input \[N, C, D, H, W\] or unbatched \[C, D, H, W\], got shape \(3, 3\)",
    ):
        L.ReplicationPad3d(1).apply({}, {}, jnp.ones((3, 3)))
