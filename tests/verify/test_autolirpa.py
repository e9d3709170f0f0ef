"""tlean.verify against auto_LiRPA on the same weights and boxes (fixtures from make_fixtures.py).

The fixtures hold a digits MLP 64-32-32-10 and a small CNN (Conv2d, BatchNorm2d, ReLU, a residual
BasicBlock, AvgPool2d, Flatten, Linear) with auto_LiRPA's IBP, CROWN and alpha-CROWN bounds of
the margins ``e_y - e_j`` on L-infinity boxes clipped to [0, 1], and its certified counts.
"""

import os

import jax.numpy as jnp
import numpy as np
import pytest

from tlean import nn, verify
from tlean.interop import load_torch_state_dict

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
RTOL = 1e-5


def layer(name: str):
    if name == "mlp":
        return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 10))
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.BasicBlock(8, 8),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 10),
    )


def load(name: str):
    data = dict(np.load(os.path.join(HERE, f"{name}.npz")))
    model = nn.run(0, layer(name))
    model = load_torch_state_dict(model, {k[2:]: v for k, v in data.items() if k.startswith("w:")})
    return model, data


def box(data, i):
    x, eps = jnp.asarray(data["x"]), float(data["eps"][i])
    return jnp.clip(x - eps, 0.0, 1.0), jnp.clip(x + eps, 0.0, 1.0)


def close(got, want, what):
    """Equal within RTOL relative (absolute for bounds below 1 in magnitude: float32 sums)."""
    err = float(np.max(np.abs(np.asarray(got) - want) / np.maximum(np.abs(want), 1.0)))
    assert err <= RTOL, f"{what}: max relative error {err:.2e}"
    return err


@pytest.mark.parametrize("name", ["mlp", "cnn"])
@pytest.mark.parametrize("method", ["ibp", "crown"])
def test_margin_bounds_and_certified_counts_equal_auto_lirpa(name, method):
    model, data = load(name)
    y = jnp.asarray(data["y"])
    assert int((model(jnp.asarray(data["x"])).argmax(-1) == y).sum()) == int(data["clean_correct"])
    spec = verify.margin_spec(y, 10)
    for i in range(len(data["eps"])):
        lower, upper = box(data, i)
        lb, ub = verify.bounds(model, lower, upper, method=method, spec=spec)
        close(lb, data[f"{method}_lb_{i}"], f"{name} {method} lb eps#{i}")
        close(ub, data[f"{method}_ub_{i}"], f"{name} {method} ub eps#{i}")
        cert = verify.certify(model, data["x"], y, float(data["eps"][i]), method=method, clip=(0.0, 1.0))
        assert int(cert.certified.sum()) == int(data[f"{method}_certified_{i}"])


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_output_bounds_equal_auto_lirpa(name):
    model, data = load(name)
    for method in ("ibp", "crown"):
        lower, upper = box(data, 1)
        lb, ub = verify.bounds(model, lower, upper, method=method)
        close(lb, data[f"{method}_out_lb_1"], f"{name} {method} output lb")
        close(ub, data[f"{method}_out_ub_1"], f"{name} {method} output ub")


@pytest.mark.parametrize("name,n", [("mlp", 40), ("cnn", 2)])
def test_alpha_crown_as_tight_as_auto_lirpa_or_within_1_percent(name, n):
    """Same steps (20) and learning rate (0.5); both eps in one batch (the CNN on 2 digits, for time)."""
    model, data = load(name)
    boxes = [box(data, i) for i in range(len(data["eps"]))]
    lower = jnp.concatenate([lo[:n] for lo, _ in boxes])
    upper = jnp.concatenate([hi[:n] for _, hi in boxes])
    spec = jnp.concatenate([verify.margin_spec(jnp.asarray(data["y"][:n]), 10)] * len(boxes))
    lb, ub = verify.bounds(model, lower, upper, method="alpha-crown", spec=spec, steps=20, lr=0.5)
    want_l = np.concatenate([data[f"alpha-crown_lb_{i}"][:n] for i in range(len(boxes))])
    want_u = np.concatenate([data[f"alpha-crown_ub_{i}"][:n] for i in range(len(boxes))])
    width = want_u - want_l
    assert float(np.max(np.asarray(want_l - lb) / width)) <= 0.01
    assert float(np.max(np.asarray(ub - want_u) / width)) <= 0.01
    crown_l = np.concatenate([data[f"crown_lb_{i}"][:n] for i in range(len(boxes))])
    assert bool((np.asarray(lb) >= crown_l - 1e-4).all())
    if n == len(data["y"]):
        for i in range(len(boxes)):
            certified = int((lb[i * n : (i + 1) * n] > 0).all(-1).sum())
            assert certified >= int(data[f"alpha-crown_certified_{i}"])
