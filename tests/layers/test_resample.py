"""Upsample, PixelShuffle and PixelUnshuffle against torch.nn: outputs and input gradients over every mode,
size and scale_factor (integer, fractional, per axis, recompute_scale_factor), align_corners, 1-3 spatial axes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from tests.torch_utils import n, t
from tlean import ShapeError, nn
from tlean import layers as L

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # torch's notes on recompute_scale_factor


def torch_vjp_of_forward(module, x, g):
    """``J^T g`` with ``J`` read off torch's forward applied to every basis vector: the gradient of what
    torch computes, for the cases where torch's own backward disagrees with its forward."""
    size = x.size
    basis = np.eye(size, dtype=np.float32).reshape((size * x.shape[0],) + x.shape[1:])
    jacobian = n(module(torch.from_numpy(basis))).reshape(size, -1)
    return (jacobian @ g.reshape(-1)).reshape(x.shape)


def parity(layer, module, shape, atol=1e-5, grad_from_forward=False):
    rng = np.random.default_rng(sum(shape))
    x = rng.normal(size=shape).astype(np.float32)
    xt = t(x)
    yt = module(xt)
    y, vjp = jax.vjp(jax.jit(lambda x: layer.apply({}, {}, x)[0]), jnp.asarray(x))
    assert y.shape == tuple(yt.shape), (y.shape, tuple(yt.shape))
    np.testing.assert_allclose(y, n(yt), atol=atol, rtol=1e-5)
    g = rng.normal(size=y.shape).astype(np.float32)
    if grad_from_forward:
        expected = torch_vjp_of_forward(module, x, g)
    else:
        (yt * torch.from_numpy(g)).sum().backward()
        expected = n(xt.grad)
    np.testing.assert_allclose(vjp(jnp.asarray(g))[0], expected, atol=atol, rtol=1e-5)


def torch_backward_disagrees(mode, shape, factors):
    """torch's 1-d/3-d nearest forward samples ``floor(i / f)`` on an axis whose size ``floor(S * f)`` stays S
    (f != 1), but its backward treats the axis as copied (``torch.autograd.gradcheck`` fails there)."""
    factors = factors if isinstance(factors, tuple) else (factors,) * (len(shape) - 2)
    return mode == "nearest" and len(shape) != 4 and any(int(s * f) == s and f != 1 for s, f in zip(shape[2:], factors))


SHAPES = {
    "nearest": [(1, 2, 5), (1, 2, 4, 5), (1, 1, 3, 4, 2)],
    "nearest-exact": [(2, 1, 5, 3)],
    "area": [(1, 2, 7, 5)],
    "linear": [(2, 2, 5)],
    "bilinear": [(1, 2, 4, 5)],
    "bicubic": [(1, 2, 5, 4)],
    "trilinear": [(1, 1, 3, 4, 2)],
}
SIZES = [
    dict(scale_factor=2),
    dict(scale_factor=1.2),
    dict(scale_factor=0.6, recompute_scale_factor=True),
    dict(size=7),
]
CORNERS = [dict(scale_factor=1.7), dict(size=3)]
CASES = [
    (mode, shape, None, kw)
    for mode, shapes in SHAPES.items()
    for shape in shapes
    for kw in SIZES
    if not (mode == "area" and "recompute_scale_factor" in kw)
]
CASES += [
    (mode, SHAPES[mode][0], True, kw) for mode in ("linear", "bilinear", "bicubic", "trilinear") for kw in CORNERS
]


@pytest.mark.parametrize(
    "mode,shape,align_corners,kw",
    CASES,
    ids=[f"{m}-{len(s) - 2}d-ac{ac}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for m, s, ac, kw in CASES],
)
def test_upsample_matches_torch(mode, shape, align_corners, kw):
    broken = (
        "scale_factor" in kw
        and "recompute_scale_factor" not in kw
        and torch_backward_disagrees(mode, shape, kw["scale_factor"])
    )
    parity(
        L.Upsample(mode=mode, align_corners=align_corners, **kw),
        torch.nn.Upsample(mode=mode, align_corners=align_corners, **kw),
        shape,
        grad_from_forward=broken,
    )


def test_torchs_nearest_backward_disagrees_with_its_forward_and_ours_follows_the_forward():
    x = torch.randn(1, 1, 4, dtype=torch.float64, requires_grad=True)
    up = torch.nn.Upsample(scale_factor=1.2)
    assert not torch.autograd.gradcheck(up, (x,), raise_exception=False)  # if torch fixes this, drop grad_from_forward
    parity(L.Upsample(scale_factor=1.2), up, (1, 2, 4), grad_from_forward=True)


@pytest.mark.parametrize(
    "mode,shape,factors",
    [
        ("nearest", (1, 1, 4, 5), (1.2, 1.5)),
        ("bilinear", (1, 2, 4, 5), (1.2, 0.75)),
        ("bicubic", (1, 1, 4, 4), (1.25, 2.0)),
        ("trilinear", (1, 1, 4, 3, 2), (1.1, 1.0, 2.5)),
        ("nearest", (1, 1, 4, 2, 3), (1.2, 1.6, 1.0)),
    ],
)
def test_upsample_per_axis_scale_factors_and_equal_sizes_match_torch(mode, shape, factors):
    """An axis whose size does not change (floor(4 * 1.2) = 4) follows torch's forward kernels: 2-d nearest and
    the linear modes copy it, 1-d/3-d nearest still sample at floor(i / 1.2)."""
    parity(
        L.Upsample(scale_factor=factors, mode=mode),
        torch.nn.Upsample(scale_factor=factors, mode=mode),
        shape,
        grad_from_forward=torch_backward_disagrees(mode, shape, factors),
    )
    parity(L.Upsample(size=shape[2:], mode=mode), torch.nn.Upsample(size=shape[2:], mode=mode), shape)


def test_nearest_uses_torchs_floor_rule_and_takes_integer_label_maps():
    x = jnp.arange(4.0).reshape(1, 1, 4)
    assert L.Upsample(size=6).apply({}, {}, x)[0].tolist() == [[[0.0, 0.0, 1.0, 2.0, 2.0, 3.0]]]  # floor(i * 4 / 6)
    assert L.Upsample(size=6, mode="nearest-exact").apply({}, {}, x)[0].tolist() == [[[0.0, 1.0, 1.0, 2.0, 3.0, 3.0]]]
    labels = jnp.array([[[[1, 2], [3, 4]]]], jnp.int32)
    y, _ = L.Upsample(scale_factor=2).apply({}, {}, labels)
    assert y.dtype == jnp.int32 and y[0, 0].tolist() == [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]
    with pytest.raises(TypeError, match=r"Upsample\(.*\): expected a floating-point input, got int32"):
        L.Upsample(scale_factor=2, mode="bilinear").apply({}, {}, labels)


@pytest.mark.parametrize("r,shape", [(2, (2, 8, 3, 2)), (3, (9, 2, 1)), (2, (2, 1, 4, 3, 2))])
def test_pixel_shuffle_and_unshuffle_match_torch_and_invert_each_other(r, shape):
    parity(L.PixelShuffle(r), torch.nn.PixelShuffle(r), shape, atol=0)
    up, _ = L.PixelShuffle(r).apply({}, {}, jnp.ones(shape))
    parity(L.PixelUnshuffle(r), torch.nn.PixelUnshuffle(r), up.shape, atol=0)
    x = jnp.asarray(np.random.default_rng(0).normal(size=shape), jnp.float32)
    np.testing.assert_array_equal(L.PixelUnshuffle(r).apply({}, {}, L.PixelShuffle(r).apply({}, {}, x)[0])[0], x)


def test_configs_normalise_and_builders_exist():
    assert L.Upsample(scale_factor=2) == L.Upsample(None, 2.0) and L.Upsample(scale_factor=2).scale_factor == 2.0
    assert (
        L.Upsample(size=[4, 5]).size == (4, 5)
        and repr(L.Upsample(size=3, mode="bicubic")) == "Upsample(size=3, mode='bicubic')"
    )
    assert L.Upsample(None, (2, 1.5), "bilinear", True).align_corners is True
    assert (
        nn.pure.upsample(scale_factor=2).layer == L.Upsample(scale_factor=2.0) and nn.pure.pixel_shuffle(2).params == {}
    )
    assert nn.run(0, nn.PixelUnshuffle(2)).layer == L.PixelUnshuffle(2)


def test_bad_configuration_is_a_value_error_naming_the_layer():
    cases = [
        (dict(scale_factor=0), r"Upsample: scale_factor must be a number > 0 or a tuple of them, got 0"),
        (dict(scale_factor=(2, 0.0)), r"Upsample: scale_factor must be a number > 0"),
        (dict(), r"Upsample: give exactly one of size and scale_factor, got size=None, scale_factor=None"),
        (dict(size=4, scale_factor=2), r"Upsample: give exactly one of size and scale_factor"),
        (dict(size=0), r"Upsample: size must be an int >= 1 or a tuple of them, got 0"),
        (dict(scale_factor=2, mode="cubic"), r"Upsample: mode must be one of 'nearest', .*, got 'cubic'"),
        (
            dict(scale_factor=2, align_corners=True),
            r"Upsample: align_corners can only be set with the interpolating modes",
        ),
        (
            dict(size=4, recompute_scale_factor=True),
            r"Upsample: recompute_scale_factor is not meaningful with an explicit size",
        ),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            L.Upsample(**kwargs)
    with pytest.raises(ValueError, match=r"PixelShuffle: upscale_factor must be a positive int, got 0"):
        L.PixelShuffle(0)
    with pytest.raises(ValueError, match=r"PixelUnshuffle: downscale_factor must be a positive int, got 1.5"):
        L.PixelUnshuffle(1.5)


def test_bad_input_is_a_shape_error_naming_the_layer():
    with pytest.raises(
        ShapeError,
        match=r"Upsample\(scale_factor=2.0, mode='bilinear'\): expected input \[N, C, H, W\] "
        r"\(mode='bilinear'; batched only, as torch\), got shape \(3, 4, 4, 4, 4\)",
    ):
        L.Upsample(scale_factor=2, mode="bilinear").apply({}, {}, jnp.ones((3, 4, 4, 4, 4)))
    with pytest.raises(
        ShapeError,
        match=r"Upsample\(.*\): expected an input with 2 spatial axes, one per entry of size, got shape \(1, 1, 4\)",
    ):
        L.Upsample(size=(2, 3)).apply({}, {}, jnp.ones((1, 1, 4)))
    with pytest.raises(
        ShapeError, match=r"Upsample\(.*\): expected an input giving an output size >= 1 .*\(this one gives \(0,\)\)"
    ):
        L.Upsample(scale_factor=0.1).apply({}, {}, jnp.ones((1, 1, 4)))
    with pytest.raises(RuntimeError, match="should be greater than 0"):  # torch refuses it too
        torch.nn.Upsample(scale_factor=0.1)(torch.ones(1, 1, 4))
    with pytest.raises(
        ShapeError,
        match=r"PixelShuffle\(upscale_factor=2\): expected input \[\*, C \* 4, H, W\] .*, got shape \(1, 6, 2, 2\)",
    ):
        L.PixelShuffle(2).apply({}, {}, jnp.ones((1, 6, 2, 2)))
    with pytest.raises(
        ShapeError,
        match=r"PixelUnshuffle\(downscale_factor=2\): expected input \[\*, C, H \* 2, W \* 2\] .*, got shape \(1, 3, 4\)",
    ):
        L.PixelUnshuffle(2).apply({}, {}, jnp.ones((1, 3, 4)))
