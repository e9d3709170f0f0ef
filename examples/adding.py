"""Example 4: an LSTM and the Mamba-style SSM on the adding problem.

Each input is ``seq_len`` pairs ``(value, marker)`` with values uniform in [0, 1) and
exactly two markers set, one in each half; the target is the sum of the two marked
values. A model that ignores the markers can do no better than predicting 1 (mean
squared error 1/6). The batches are a function of the step (seeded), the test set is
fixed.

    python -m examples.train --config adding_lstm
    python -m examples.train --config adding_mamba
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from configs import Config
from examples import _common
from tlean import Model, nn

TOLERANCE = 0.04  # a prediction within this of the target counts as correct


def make(n: int, seq_len: int, seed) -> tuple[np.ndarray, np.ndarray]:
    """``(x [n, seq_len, 2], y [n, 1])``: the adding problem, from ``numpy.random.default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    values = rng.uniform(size=(n, seq_len)).astype(np.float32)
    first, second = rng.integers(0, seq_len // 2, n), rng.integers(seq_len // 2, seq_len, n)
    markers = np.zeros((n, seq_len), np.float32)
    markers[np.arange(n), first] = 1.0
    markers[np.arange(n), second] = 1.0
    return np.stack([values, markers], axis=-1), (values * markers).sum(axis=1, keepdims=True)


def regression_loss(model: Model, batch, *, key, train):
    """Mean squared error; "accuracy" is the fraction of predictions within ``TOLERANCE``."""
    x, y = batch
    prediction, model = model.forward(x, key=key, train=train)
    error = prediction.astype(jnp.float32) - y
    accuracy = jnp.mean((jnp.abs(error) < TOLERANCE).astype(jnp.float32))
    return jnp.mean(error**2), (model, {"accuracy": accuracy})


def build(config: Config) -> Model:
    """LSTM: ``LSTM -> last step -> Linear``; Mamba: ``Linear -> (Mamba, LayerNorm)* -> last step -> Linear``."""
    h = config.hidden
    if config.model == "lstm":
        body = [nn.LSTM(2, h, num_layers=config.num_layers, batch_first=True)]
    elif config.model == "mamba":
        body = [nn.Linear(2, h)]
        for _ in range(config.num_layers):
            body += [nn.Mamba(h, h, batch_first=True), nn.LayerNorm(h)]
    else:
        raise ValueError(f"adding: model must be 'lstm' or 'mamba', got {config.model!r}")
    return nn.run(config.seed, nn.Sequential(*body, nn.Select(-1, 1), nn.Linear(h, 1)))


def run(config: Config) -> dict:
    """Train, evaluate on the fixed test set, save checkpoint/history/curves; return the results."""
    out = _common.output_dir(config)
    model = build(config)
    print(f"{config.name}: adding problem, sequences of {config.seq_len}, mean-predictor MSE {1 / 6:.4f}")
    _common.show_summary(model, (config.batch_size, config.seq_len, 2), jnp.float32, out)
    test = make(config.test_examples, config.seq_len, [config.seed, 1 << 30])

    def batches(step: int):
        return make(config.batch_size, config.seq_len, [config.seed, step])

    _, results = _common.train_and_report(config, model, regression_loss, batches, [test], out)
    return results
