"""tlean.layers._layout: the channels-last compute path on the CPU gives what the channels-first one gives.

The torch parity tests run on this CPU, so they check the channels-last path; these tests tie the
channels-first path (what other backends run) to it: outputs, new state and gradients of every
parameter and of the input, for each layer that switches layout, jitted.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tlean import layers as L
from tlean import nn
from tlean.layers import _layout
from tlean.testing import assert_trees_close

CASES = [
    ("conv1d-groups-dilated", L.Conv1d(4, 6, 3, stride=2, padding=2, dilation=2, groups=2), (2, 4, 11)),
    ("conv2d-reflect-unbatched", L.Conv2d(3, 5, (3, 2), padding=1, padding_mode="reflect"), (3, 7, 6)),
    ("conv2d-same-nobias", L.Conv2d(3, 4, 3, padding="same", bias=False), (2, 3, 6, 5)),
    ("conv3d", L.Conv3d(2, 3, 2, stride=(1, 2, 1)), (2, 2, 4, 5, 3)),
    ("convtranspose2d", L.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2), (2, 4, 5, 4)),
    ("convtranspose1d-unbatched", L.ConvTranspose1d(3, 2, 4, stride=3), (3, 6)),
    ("batchnorm1d-seq", L.BatchNorm1d(4), (3, 4, 5)),
    ("batchnorm2d", L.BatchNorm2d(3), (2, 3, 4, 5)),
    ("batchnorm3d-no-affine", L.BatchNorm3d(2, affine=False, momentum=None), (2, 2, 3, 2, 3)),
    ("maxpool2d-ceil-dilated", L.MaxPool2d(3, 2, 1, dilation=1, ceil_mode=True), (2, 3, 8, 7)),
    ("maxpool2d-dilated-unbatched", L.MaxPool2d(2, 1, dilation=2), (3, 6, 6)),
    ("avgpool1d-exclude-pad", L.AvgPool1d(3, 2, 1, count_include_pad=False), (2, 3, 9)),
    ("avgpool3d-divisor", L.AvgPool3d(2, divisor_override=3), (2, 2, 4, 4, 4)),
]


def _run(layer, params, state, x, train):
    def loss(params, x):
        y, new = layer.apply(params, state, x, train=train)
        weights = jnp.cos(jnp.arange(y.size, dtype=y.dtype)).reshape(y.shape)
        return jnp.sum(y * weights), (y, new)

    (_, (y, new)), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(params, x)
    return y, new, grads


# train=True and False differ only for the batch norms (batch vs running statistics).
PARAMS = [(*case, train) for case in CASES for train in ((True, False) if "batchnorm" in case[0] else (False,))]


@pytest.mark.parametrize(
    "name,layer,shape,train", PARAMS, ids=[f"{p[0]}-{'train' if p[3] else 'eval'}" for p in PARAMS]
)
def test_channels_last_equals_channels_first(name, layer, shape, train):
    params, state = layer.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), shape)
    with _layout.forced(True):
        last = _run(layer, params, state, x, train)
    with _layout.forced(False):
        first = _run(layer, params, state, x, train)
    for what, a, b in zip(("output", "state", "gradient"), last, first):
        assert_trees_close(a, b, rtol=1e-5, atol=1e-5, what=what, context=name)


def test_a_network_is_the_same_in_both_layouts():
    """Conv-BN-ReLU-pool stages and a residual block: the transposes between layers cancel, the values stay."""
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.BasicBlock(8, 8),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 4),
    )
    model = nn.run(0, net)
    x = jax.random.normal(jax.random.key(2), (2, 3, 8, 8))
    with _layout.forced(True):
        last = _run(model.layer, model.params, model.state, x, True)
    with _layout.forced(False):
        first = _run(model.layer, model.params, model.state, x, True)
    assert_trees_close(last, first, rtol=1e-5, atol=1e-5)


def test_the_rule(monkeypatch):
    monkeypatch.delenv("TLEAN_CHANNELS_LAST", raising=False)
    assert _layout.enabled() == (jax.default_backend() == "cpu")
    for value, expected in (("1", True), ("0", False)):
        monkeypatch.setenv("TLEAN_CHANNELS_LAST", value)
        assert _layout.enabled() is expected
    with _layout.forced(not expected):
        assert _layout.enabled() is (not expected)
    assert _layout.enabled() is expected


def test_to_last_and_back():
    x = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    np.testing.assert_array_equal(_layout.to_last(x, 1), np.moveaxis(x, 1, -1))
    np.testing.assert_array_equal(_layout.to_first(_layout.to_last(x, 0), 0), x)
