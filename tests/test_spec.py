"""The references of tlean.spec are themselves right: each agrees with PyTorch in float64."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tlean import spec

rng = np.random.default_rng(0)


def T(x):
    return torch.from_numpy(np.asarray(x, np.float64))


def sd(module):
    return {k: v.detach().numpy().astype(np.float64) for k, v in module.double().state_dict().items()}


def close(a, b):
    np.testing.assert_allclose(a, b.detach().numpy() if isinstance(b, torch.Tensor) else b, rtol=1e-10, atol=1e-10)


def test_linear_and_activations():
    m = torch.nn.Linear(4, 3).double()
    x = rng.normal(size=(2, 5, 4))
    close(spec.linear(sd(m), x), m(T(x)))
    close(spec.relu(x), F.relu(T(x)))
    close(spec.gelu(x), F.gelu(T(x)))
    close(spec.gelu(x, "tanh"), F.gelu(T(x), approximate="tanh"))
    close(spec.silu(x), F.silu(T(x)))
    close(spec.sigmoid(x), torch.sigmoid(T(x)))
    close(spec.tanh(x), torch.tanh(T(x)))
    close(spec.softmax(x, 1), torch.softmax(T(x), 1))


def test_norms():
    x = rng.normal(size=(2, 3, 4, 4))
    ln = torch.nn.LayerNorm((4, 4)).double()
    torch.nn.init.normal_(ln.weight)
    close(spec.layer_norm(sd(ln), x, normalized_ndim=2), ln(T(x)))
    rms = torch.nn.RMSNorm(4, eps=1e-6).double()
    torch.nn.init.normal_(rms.weight)
    close(spec.rms_norm(sd(rms), x), rms(T(x)))
    inorm = torch.nn.InstanceNorm2d(3, affine=True).double()
    torch.nn.init.normal_(inorm.weight)
    close(spec.instance_norm2d(sd(inorm), x), inorm(T(x)))
    bn = torch.nn.BatchNorm2d(3).double()
    params = {k: v for k, v in sd(bn).items() if k in ("weight", "bias")}
    state = {k: v for k, v in sd(bn).items() if k not in ("weight", "bias")}
    for _ in range(2):
        y, state = spec.batch_norm2d(params, state, x, train=True)
        close(y, bn(T(x)))
    close(state["running_var"], bn.running_var)
    bn.eval()
    close(spec.batch_norm2d(params, state, x, train=False)[0], bn(T(x)))


@pytest.mark.parametrize(
    "stride,padding,dilation,groups",
    [((1, 1), (0, 0), (1, 1), 1), ((2, 1), (1, 2), (1, 2), 1), ((1, 1), (1, 1), (1, 1), 2)],
)
def test_conv_and_pooling(stride, padding, dilation, groups):
    x = rng.normal(size=(2, 4, 6, 5))
    conv = torch.nn.Conv2d(4, 6, (3, 2), stride, padding, dilation, groups).double()
    close(spec.conv2d(sd(conv), x, stride, padding, dilation, groups), conv(T(x)))
    close(spec.max_pool2d(x, (3, 3), (2, 2), (1, 1)), F.max_pool2d(T(x), 3, 2, 1))
    close(spec.avg_pool2d(x, (2, 3), (1, 2), (1, 1)), F.avg_pool2d(T(x), (2, 3), (1, 2), (1, 1)))
    close(spec.global_avg_pool(x), F.adaptive_avg_pool2d(T(x), 1).flatten(1))


def test_embedding_and_attention():
    emb = torch.nn.Embedding(7, 3).double()
    ids = rng.integers(0, 7, size=(2, 4))
    close(spec.embedding(sd(emb)["weight"], ids), emb(torch.from_numpy(ids)))
    close(spec.embedding_soft(sd(emb)["weight"], np.eye(7)[ids]), emb(torch.from_numpy(ids)))
    mha = torch.nn.MultiheadAttention(8, 2, batch_first=True).double()
    w = sd(mha)
    params = {
        "in_proj_weight": w["in_proj_weight"],
        "in_proj_bias": w["in_proj_bias"],
        "out_proj": {"weight": w["out_proj.weight"], "bias": w["out_proj.bias"]},
    }
    x = rng.normal(size=(2, 5, 8))
    allowed = rng.random((5, 5)) < 0.6
    np.fill_diagonal(allowed, True)
    expected = mha(T(x), T(x), T(x), attn_mask=torch.from_numpy(~allowed), need_weights=False)[0]
    close(spec.multihead_attention(params, x, 2, allowed), expected)
    blocked = allowed.copy()
    blocked[2] = False  # a query with no key: torch gives NaN, TorchLean (and tlean) all-zero weights
    out = spec.multihead_attention(params, x, 2, blocked)
    close(out[:, 2], np.broadcast_to(params["out_proj"]["bias"], (2, 8)))


def test_recurrences():
    x = rng.normal(size=(6, 3))
    for kind, ref in [("RNN", spec.rnn), ("GRU", spec.gru), ("LSTM", spec.lstm)]:
        module = getattr(torch.nn, kind)(3, 4).double()
        out, _ = module(T(x))
        close(ref(sd(module), x)[0], out)
    relu_rnn = torch.nn.RNN(3, 4, nonlinearity="relu").double()
    h0 = rng.normal(size=(1, 4))
    out, h = relu_rnn(T(x), T(h0))
    ours, last = spec.rnn(sd(relu_rnn), x, h0[0], nonlinearity="relu")
    close(ours, out)
    close(last, h[0])


def test_positions_from_the_formula():
    pe = spec.sinusoidal(5, 6, start_pos=3)
    assert np.isclose(pe[1, 4], np.sin(4 / 10000 ** (4 / 6))) and np.isclose(pe[1, 5], np.cos(4 / 10000 ** (4 / 6)))
    x = rng.normal(size=(1, 1, 4, 5))
    y = spec.rope(x, start_pos=2)
    np.testing.assert_allclose(np.linalg.norm(y, axis=-1), np.linalg.norm(x, axis=-1))
    np.testing.assert_array_equal(y[..., -1], x[..., -1])  # odd last element unchanged
    theta = 3 / 10000 ** (2 / 5)
    a, b = x[0, 0, 1, 2], x[0, 0, 1, 3]
    np.testing.assert_allclose(
        y[0, 0, 1, 2:4], [a * np.cos(theta) - b * np.sin(theta), a * np.sin(theta) + b * np.cos(theta)]
    )
    assert np.allclose(spec.dropout_expectation(x, 0.3), x)
