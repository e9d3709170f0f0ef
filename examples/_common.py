"""What every example does around its model: summary, optimiser, fit, checkpoint, curves."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optax

from configs import Config
from tlean import Model, checkpoint, train


def optimizer(config: Config) -> optax.GradientTransformation:
    """AdamW with global-norm clipping, a 5% linear warm-up and cosine decay to zero."""
    warmup = max(1, config.steps // 20)
    schedule = optax.warmup_cosine_decay_schedule(0.0, config.lr, warmup, max(config.steps, warmup + 1))
    return optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(schedule, weight_decay=config.weight_decay))


def output_dir(config: Config) -> Path:
    """The run's output directory; without ``resume`` its old checkpoints are removed first."""
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "checkpoints"
    if not config.resume and ckpt.is_dir():
        for old in ckpt.iterdir():
            if (old / "tlean.json").is_file():
                checkpoint.delete(old)
    return out


def show_summary(model: Model, input_shape: tuple[int, ...], dtype: Any, out: Path) -> None:
    """Print the model's summary table and keep a copy in ``out/summary.txt``."""
    text = model.summary(input_shape, dtype=dtype)
    print(text, flush=True)
    (out / "summary.txt").write_text(text + "\n")


def plot_history(history: train.History, path: Path, title: str) -> None:
    """Loss and accuracy against steps, training and evaluation, as a PNG (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for split, style in (("train", "-"), ("eval", "o-")):
        for ax, metric in ((ax_loss, "loss"), (ax_acc, "accuracy")):
            steps, values = history.series(metric, split)
            if steps:
                ax.plot(steps, values, style, label=split, markersize=4)
    ax_loss.set(xlabel="step", ylabel="loss", title="loss")
    ax_loss.set_yscale("log")
    ax_acc.set(xlabel="step", ylabel="accuracy", title="accuracy", ylim=(0, 1.02))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def train_and_report(
    config: Config,
    model: Model,
    loss_fn: Callable,
    batches: Callable[[int], Any],
    eval_data: list,
    out: Path,
) -> tuple[train.TrainState, dict]:
    """Fit, then save the final checkpoint, the history (JSON) and the curves (PNG).

    Returns:
      ``(state, results)`` with the final evaluation metrics, the first and last
      logged training losses, the wall time and the paths written.
    """
    opt = optimizer(config)
    state = train.TrainState.create(model, opt, key=config.seed + 1)
    start = time.perf_counter()
    state, history = train.fit(
        state,
        loss_fn,
        opt,
        batches,
        steps=config.steps,
        eval=train.EvalConfig(eval_data, every=config.eval_every),
        checkpoints=train.CheckpointConfig(out / "checkpoints", every=config.checkpoint_every, resume=config.resume),
        log=train.LogConfig(
            every=config.log_every,
            progress=config.progress,
            desc=config.name,
            log_dir=out / "tensorboard" if config.tensorboard else None,
        ),
    )
    seconds = time.perf_counter() - start
    (out / "history.json").write_text(json.dumps(history.to_dict(), indent=1))
    plot_history(history, out / "curves.png", f"{config.name}: {config.steps} steps")
    final = history.eval[-1] if history.eval else train.evaluate(loss_fn, state.model, eval_data)
    results = {
        "test_loss": final["loss"],
        "test_accuracy": final.get("accuracy"),
        "first_train_loss": history.train[0]["loss"] if history.train else None,
        "last_train_loss": history.train[-1]["loss"] if history.train else None,
        "train_seconds": seconds,
        "checkpoint": str(train.latest_checkpoint(out / "checkpoints")),
        "curves": str(out / "curves.png"),
    }
    return state, results
