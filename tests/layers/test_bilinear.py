"""Bilinear against torch.nn.Bilinear: two inputs, one weight [out, in1, in2]."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from tests.torch_utils import load, n, t
from tlean import ShapeError, nn
from tlean import layers as L


@pytest.mark.parametrize(
    "args,shape", [((3, 2, 4), (5,)), ((3, 2, 4, False), (2, 5)), ((1, 4, 2), ()), ((3, 3, 1), (2, 2, 3))], ids=str
)
def test_outputs_and_gradients_match_torch(args, shape):
    torch.manual_seed(0)
    module = torch.nn.Bilinear(*args)
    model = load(nn.pure.bilinear(*args, key=jax.random.key(0)), module)
    rng = np.random.default_rng(1)
    x1 = rng.normal(size=shape + (args[0],)).astype(np.float32)
    x2 = rng.normal(size=shape + (args[1],)).astype(np.float32)
    t1, t2 = t(x1), t(x2)
    yt = module(t1, t2)
    cot = rng.normal(size=tuple(yt.shape)).astype(np.float32)
    (yt * torch.from_numpy(cot)).sum().backward()
    loss = lambda m, a, b: (m(a, b) * cot).sum()  # Model(x, x2): the second input positionally, as torch
    y = jax.jit(lambda m, a, b: m(a, input2=b))(model, x1, x2)
    gm, g1, g2 = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(model, x1, x2)
    np.testing.assert_allclose(y, n(yt), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(g1, n(t1.grad), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(g2, n(t2.grad), atol=1e-5, rtol=1e-5)
    for name, p in module.named_parameters():
        np.testing.assert_allclose(gm.params[name], n(p.grad), atol=1e-5, rtol=1e-5)


def test_init_follows_torch_bounds_and_layout():
    params, _ = jax.jit(L.Bilinear(16, 3, 5).init)(jax.random.key(0))
    assert params["weight"].shape == (5, 16, 3) and params["bias"].shape == (5,)
    bound = 1 / np.sqrt(16)  # torch: U(-1/sqrt(in1_features), ...) for weight and bias
    assert np.abs(params["weight"]).max() <= bound and np.abs(params["weight"]).max() > 0.9 * bound
    assert np.abs(params["bias"]).max() <= bound
    assert set(jax.eval_shape(L.Bilinear(2, 3, 4, False).init, jax.random.key(0))[0]) == {"weight"}
    assert (
        jax.eval_shape(L.Bilinear(2, 3, 4, True, param_dtype=jnp.bfloat16).init, jax.random.key(0))[0]["weight"].dtype
        == jnp.bfloat16
    )


def test_bad_inputs_name_the_layer():
    layer = L.Bilinear(3, 2, 4)
    params, state = layer.init(jax.random.key(0))
    with pytest.raises(
        ShapeError,
        match=r"Bilinear\(in1_features=3, in2_features=2, out_features=4\): expected input2 with the "
        r"batch shape of x \(5,\), got shape \(1, 2\)",
    ):
        layer.apply(params, state, jnp.ones((5, 3)), input2=jnp.ones((1, 2)))
    with pytest.raises(ShapeError, match=r"expected input2 \[\.\.\., 2\], got shape \(5, 3\)"):
        layer.apply(params, state, jnp.ones((5, 3)), input2=jnp.ones((5, 3)))
    with pytest.raises(ShapeError, match=r"expected input \[\.\.\., 3\], got shape \(5, 2\)"):
        layer.apply(params, state, jnp.ones((5, 2)), input2=jnp.ones((5, 2)))
    with pytest.raises(TypeError, match=r"Bilinear\(.*\): needs its second input"):
        layer.apply(params, state, jnp.ones((5, 3)))
    with pytest.raises(TypeError, match=r"expected a floating-point input, got int32"):
        layer.apply(params, state, jnp.ones((5, 3)), input2=jnp.ones((5, 2), jnp.int32))
    with pytest.raises(ValueError, match=r"Bilinear: out_features must be a positive int, got 0"):
        L.Bilinear(3, 2, 0)
    assert L.Bilinear.inputs == ("input2",) and "input2" in layer.keywords
