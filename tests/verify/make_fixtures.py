"""Write the auto_LiRPA fixtures that tests/verify/test_autolirpa.py compares tlean.verify against.

auto_LiRPA cannot be installed by CI (it pins old torch releases), so its bounds are computed
once, here, and saved with the weights and boxes as small .npz files under fixtures/:

- ``mlp.npz``: the digits MLP 64-32-32-10 (ReLU), briefly trained on scikit-learn's digits;
- ``cnn.npz``: a small CNN on the 8x8 digits: Conv2d-BatchNorm2d-ReLU, a residual
  BasicBlock (conv-bn-relu-conv-bn + identity, relu), AvgPool2d, Flatten, Linear, briefly
  trained, evaluated with its running statistics.

For each eps in EPS, the boxes are the L-infinity balls around the first N test digits
clipped to [0, 1]; saved are auto_LiRPA's IBP, CROWN and alpha-CROWN ("CROWN-Optimized",
20 steps, lr 0.5) lower/upper bounds of the margins ``e_y - e_j`` (C matrix), the plain
output bounds by IBP and CROWN, and the certified counts.

Run from the repository root, with auto_LiRPA's source on PYTHONPATH (it also needs the
``graphviz`` and ``appdirs`` Python packages)::

    git clone https://github.com/Verified-Intelligence/auto_LiRPA /tmp/auto_LiRPA
    git -C /tmp/auto_LiRPA checkout a050a3d61f4cb68b108fa7f07dcb3e4d7ef304df
    pip install graphviz==0.20.3 appdirs==1.4.4
    PYTHONPATH=/tmp/auto_LiRPA python tests/verify/make_fixtures.py [--bench]

auto_LiRPA commit: a050a3d61f4cb68b108fa7f07dcb3e4d7ef304df (0.7.1, 2026-05-27), torch 2.13.0 CPU.
``--bench`` also times auto_LiRPA's CROWN on 360 digits with the MLP (printed, not saved).
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
import torch
from torch import nn

AUTO_LIRPA_COMMIT = "a050a3d61f4cb68b108fa7f07dcb3e4d7ef304df"
EPS = (0.01, 0.03)
N = {"mlp": 40, "cnn": 12}
STEPS = 20
LR = 0.5
HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")


class Block(nn.Module):
    """torchvision's BasicBlock without downsampling (the names tlean's BasicBlock loads)."""

    def __init__(self, planes: int):
        super().__init__()
        self.conv1 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + x)


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 10))


def cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        Block(8),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 10),
    )


def digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = (data.data / 16.0).astype(np.float32)
    return train_test_split(x, data.target, test_size=0.2, random_state=0, stratify=data.target)


def train(model: nn.Module, x, y, steps: int) -> nn.Module:
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xt, yt = torch.tensor(x), torch.tensor(y)
    gen = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(xt), (128,), generator=gen)
        loss = nn.functional.cross_entropy(model(xt[idx]), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def margin_C(y: np.ndarray, classes: int = 10) -> torch.Tensor:
    eye = np.eye(classes, dtype=np.float32)
    rows = [[eye[t] - eye[j] for j in range(classes) if j != t] for t in y]
    return torch.tensor(np.array(rows))


def bounds_for(name: str, model: nn.Module, x: np.ndarray, y: np.ndarray, shape: tuple) -> dict:
    from auto_LiRPA import BoundedModule, BoundedTensor
    from auto_LiRPA.perturbations import PerturbationLpNorm

    xt = torch.tensor(x.reshape(len(x), *shape))
    lirpa = BoundedModule(model, torch.zeros_like(xt[:1]), device="cpu")
    out = {"x": xt.numpy(), "y": y.astype(np.int32), "eps": np.array(EPS, np.float32)}
    out.update({f"w:{k}": v.detach().numpy() for k, v in model.state_dict().items()})
    C = margin_C(y)
    out["clean_correct"] = np.array((model(xt).argmax(-1).numpy() == y).sum())
    for i, eps in enumerate(EPS):
        lower, upper = (xt - eps).clamp(0, 1), (xt + eps).clamp(0, 1)
        bx = BoundedTensor(xt, PerturbationLpNorm(norm=np.inf, x_L=lower, x_U=upper))
        for method, key in (("IBP", "ibp"), ("CROWN", "crown"), ("CROWN-Optimized", "alpha-crown")):
            if key == "alpha-crown":
                lirpa.set_bound_opts({"optimize_bound_args": {"iteration": STEPS, "lr_alpha": LR}})
            lb, ub = lirpa.compute_bounds(x=(bx,), method=method, C=C)
            out[f"{key}_lb_{i}"], out[f"{key}_ub_{i}"] = lb.detach().numpy(), ub.detach().numpy()
            out[f"{key}_certified_{i}"] = np.array(int((lb > 0).all(-1).sum()))
            print(f"{name} eps={eps} {key}: certified {int(out[f'{key}_certified_{i}'])}/{len(y)}")
            if key != "alpha-crown":
                lb, ub = lirpa.compute_bounds(x=(bx,), method=method)
                out[f"{key}_out_lb_{i}"], out[f"{key}_out_ub_{i}"] = lb.detach().numpy(), ub.detach().numpy()
    return out


def bench(model: nn.Module, x: np.ndarray, eps: float = 0.01) -> None:
    from auto_LiRPA import BoundedModule, BoundedTensor
    from auto_LiRPA.perturbations import PerturbationLpNorm

    xt = torch.tensor(x[:360])
    lirpa = BoundedModule(model, torch.zeros_like(xt[:1]), device="cpu")
    bx = BoundedTensor(xt, PerturbationLpNorm(norm=np.inf, x_L=(xt - eps).clamp(0, 1), x_U=(xt + eps).clamp(0, 1)))
    lirpa.compute_bounds(x=(bx,), method="CROWN")
    times = []
    for _ in range(5):
        start = time.perf_counter()
        lirpa.compute_bounds(x=(bx,), method="CROWN")
        times.append(time.perf_counter() - start)
    print(f"auto_LiRPA CROWN, MLP, {len(xt)} points: median {1e3 * np.median(times):.1f} ms")


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(2)
    x_train, x_test, y_train, y_test = digits()
    os.makedirs(HERE, exist_ok=True)
    m = train(mlp(), x_train, y_train, 300)
    np.savez_compressed(
        os.path.join(HERE, "mlp.npz"), **bounds_for("mlp", m, x_test[: N["mlp"]], y_test[: N["mlp"]], (64,))
    )
    c = train(cnn(), x_train.reshape(-1, 1, 8, 8), y_train, 200)
    np.savez_compressed(
        os.path.join(HERE, "cnn.npz"), **bounds_for("cnn", c, x_test[: N["cnn"]], y_test[: N["cnn"]], (1, 8, 8))
    )
    if "--bench" in sys.argv:
        bench(m, x_test)


if __name__ == "__main__":
    main()
