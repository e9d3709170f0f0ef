"""Examples 1 and 2: an MLP and a small ResNet-style CNN on scikit-learn's handwritten digits.

The 1797 8x8 digits ship with scikit-learn (no download). 20% are held out, stratified
by class; pixel values are scaled to [0, 1].

    python -m examples.train --config digits_mlp
    python -m examples.train --config digits_cnn     # the default
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from configs import Config
from examples import _common
from tlean import Model, nn, train


def load(test_size: float = 0.2, seed: int = 0) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """``((x_train, y_train), (x_test, y_test))``: images ``[n, 1, 8, 8]`` float32 in [0, 1], labels int32."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y.astype(np.int32), test_size=test_size, random_state=seed, stratify=y
    )
    return (x_train, y_train), (x_test, y_test)


def shifted(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The images and their four one-pixel shifts (zero filled), labels repeated."""
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    views = [x] + [padded[:, :, 1 + dy : 9 + dy, 1 + dx : 9 + dx] for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0))]
    return np.concatenate(views), np.concatenate([y] * len(views))


def mlp(hidden: int, dropout: float) -> nn.Builder:
    """Flatten, then two hidden ReLU layers with dropout, then 10 logits."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(64, hidden),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, 10),
    )


def cnn(width: int) -> nn.Builder:
    """A ResNet in miniature: stem conv + BatchNorm, two BasicBlocks, global pooling, classifier."""
    return nn.Sequential(
        stem=nn.Conv2d(1, width, 3, padding=1, bias=False),
        bn=nn.BatchNorm2d(width),
        relu=nn.ReLU(),
        block1=nn.BasicBlock(width, width),
        block2=nn.BasicBlock(width, 2 * width, stride=2),
        pool=nn.GlobalAvgPool(),
        fc=nn.Linear(2 * width, 10),
    )


def build(config: Config) -> Model:
    """The Model the config asks for, initialised from ``config.seed``."""
    if config.model == "mlp":
        return nn.run(config.seed, mlp(config.hidden, config.dropout))
    if config.model == "cnn":
        return nn.run(config.seed, cnn(config.width))
    raise ValueError(f"digits: model must be 'mlp' or 'cnn', got {config.model!r}")


def run(config: Config) -> dict:
    """Train, evaluate on the held-out digits, save checkpoint/history/curves; return the results."""
    out = _common.output_dir(config)
    (x_train, y_train), (x_test, y_test) = load(config.test_size)
    if config.augment:
        x_train, y_train = shifted(x_train, y_train)
    model = build(config)
    print(f"{config.name}: {len(x_train)} training and {len(x_test)} test digits")
    _common.show_summary(model, (config.batch_size, 1, 8, 8), jnp.float32, out)
    batches = train.Minibatches((x_train, y_train), config.batch_size, seed=config.seed)
    _, results = _common.train_and_report(
        config, model, train.classification_loss, batches, train.eval_batches((x_test, y_test), 512), out
    )
    return results
