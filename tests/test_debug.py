"""check_finite: the debug mode that names the first layer producing NaN or Inf."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tlean import check_finite, nn, seq
from tlean.layers import Lambda, Linear, relu

# The last layer maps -inf back to 0, so the output alone would hide the problem.
NET = seq(Linear(2, 2), Lambda(jnp.abs), Lambda(jnp.negative), seq(relu, Lambda(jnp.log)), Lambda(jnp.exp))
MESSAGE = r"check_finite: seq\[3\]\[1\] Lambda\(fn=log\) produced a non-finite value \(NaN or Inf\)"


@pytest.fixture
def params():
    return NET.init(jax.random.key(0))


def test_off_by_default_and_never_hides_values(params):
    y, _ = NET.apply(*params, jnp.ones((3, 2)))
    np.testing.assert_array_equal(y, 0.0)
    nan_in = NET.apply(*params, jnp.full((1, 2), jnp.nan))[0]
    assert np.isnan(np.asarray(nan_in)).all()  # NaN propagates: nothing is masked


def test_eager_names_the_first_bad_layer(params):
    with check_finite(), pytest.raises(FloatingPointError, match=MESSAGE):
        NET.apply(*params, jnp.ones((3, 2)))


def test_jit_reports_through_a_callback(params):
    with check_finite(), pytest.raises(Exception, match=MESSAGE):
        jax.jit(lambda p, x: NET.apply(p, params[1], x)[0])(params[0], jnp.ones((3, 2))).block_until_ready()


def test_non_finite_input_is_named_as_such(params):
    with check_finite(), pytest.raises(FloatingPointError, match=r"the input to seq\[0\] is already non-finite"):
        NET.apply(*params, jnp.array([[1.0, jnp.inf]]))


def test_finite_models_pass_and_models_work_inside():
    model = nn.run(0, nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)))
    with check_finite():
        y = model(jnp.ones((2, 3)))
        g = jax.jit(jax.grad(lambda m: m(jnp.ones((2, 3))).sum()))(model)
    assert y.shape == (2, 1) and np.isfinite(np.asarray(g.params[0]["weight"])).all()
