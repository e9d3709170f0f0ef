"""Certified robustness of the digits MLP 64-32-32-10: normal, IBP and CROWN-IBP training.

Trains the same MLP three ways, then certifies the first ``eval_points`` test digits in
L-infinity balls (inputs scaled to [0, 1], boxes clipped to [0, 1]) with IBP, CROWN and
alpha-CROWN, prints the certified-accuracy table (a digit counts when it is certified with
its true label, which implies it is classified correctly) and saves a PNG of certified
accuracy against eps, and ``results.json``, under ``runs/certify``.

    python -m examples.certify                 # about two minutes on two CPU cores
    python -m examples.certify --steps 300     # a quick look
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from configs.certify import Certify
from examples.digits import load
from tlean import Model, nn, verify

METHODS = ("ibp", "crown", "alpha-crown")


def mlp(hidden: int) -> nn.Builder:
    return nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 10))


def schedule(config: Certify, step):
    """``(eps, beta, kappa)`` at ``step``: eps ramps up, beta and kappa ramp down, then stay."""
    t = jnp.clip(step / max(1, int(config.ramp * config.steps)), 0.0, 1.0)
    return config.train_eps * t, 1.0 - t, 1.0 - (1.0 - config.kappa) * t


def fit(config: Certify, mode: str, x: np.ndarray, y: np.ndarray) -> Model:
    """Train the MLP with ``mode`` in ``("normal", "ibp", "crown-ibp")``; eps/beta/kappa are traced."""
    model = nn.run(config.seed, mlp(config.hidden))
    opt = optax.adam(optax.cosine_decay_schedule(config.lr, config.steps))
    opt_state = opt.init(model.params)

    @jax.jit
    def step(model, opt_state, xb, yb, i):
        eps, beta, kappa = schedule(config, i)

        def loss(params):
            m = model.replace(params=params)
            clean = optax.softmax_cross_entropy_with_integer_labels(m(xb), yb).mean()
            if mode == "normal":
                return clean
            if mode == "ibp":
                robust, _ = verify.ibp_loss(m, xb, yb, eps)
            else:
                robust, _ = verify.crown_ibp_loss(m, xb, yb, eps, beta=beta)
            return kappa * clean + (1 - kappa) * robust

        value, grads = jax.value_and_grad(loss)(model.params)
        updates, opt_state = opt.update(grads, opt_state)
        return model.replace(params=optax.apply_updates(model.params, updates)), opt_state, value

    rng = np.random.default_rng(config.seed)
    for i in range(config.steps):
        idx = rng.integers(0, len(x), config.batch_size)
        model, opt_state, value = step(model, opt_state, x[idx], y[idx], jnp.asarray(i, jnp.float32))
        if (i + 1) % max(1, config.steps // 4) == 0:
            print(f"  {mode:9s} step {i + 1:5d}  loss {float(value):.4f}", flush=True)
    return model


def certified_accuracy(config: Certify, model: Model, x, y, eps: float, method: str) -> float:
    cert = verify.certify(model, x, y, eps, method=method, clip=(0.0, 1.0), steps=config.alpha_steps)
    return float(cert.certified.mean())


def run(config: Certify) -> dict:
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (x_train, y_train), (x_test, y_test) = load(config.test_size, config.seed)
    x_train, x_test = x_train.reshape(-1, 64), x_test.reshape(-1, 64)
    x_eval, y_eval = jnp.asarray(x_test[: config.eval_points]), jnp.asarray(y_test[: config.eval_points])
    eps_list = [float(e) for e in config.eval_eps.split(",")]
    results: dict = {"eps": eps_list, "points": len(y_eval), "models": {}}
    for mode in ("normal", "ibp", "crown-ibp"):
        start = time.perf_counter()
        model = fit(config, mode, x_train, y_train)
        clean = float((model(jnp.asarray(x_test)).argmax(-1) == jnp.asarray(y_test)).mean())
        row = {"clean": clean, "train_s": time.perf_counter() - start}
        for method in METHODS:
            row[method] = [certified_accuracy(config, model, x_eval, y_eval, e, method) for e in eps_list]
        results["models"][mode] = row
    print(table(results))
    plot(results, out / "certified.png")
    (out / "results.json").write_text(json.dumps(results, indent=2))
    return results


def table(results: dict) -> str:
    head = f"{'training':10s} {'clean':>6s} " + " ".join(
        f"{m + '@' + str(e):>17s}" for m in METHODS for e in results["eps"]
    )
    lines = [f"certified accuracy on {results['points']} test digits (L-inf, box clipped to [0, 1])", head]
    for mode, row in results["models"].items():
        cells = " ".join(f"{100 * v:16.1f}%" for m in METHODS for v in row[m])
        lines.append(f"{mode:10s} {100 * row['clean']:5.1f}% {cells}")
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for mode, row in results["models"].items():
        for method, style in zip(METHODS, (":", "--", "-")):
            ax.plot(results["eps"], row[method], style, marker="o", label=f"{mode}, {method}")
    ax.set(xlabel="eps (L-inf, inputs in [0, 1])", ylabel="certified accuracy", ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    config = Certify().override(sys.argv[1:] if argv is None else list(argv))
    return run(config)


if __name__ == "__main__":
    main()
