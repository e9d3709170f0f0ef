"""Every example runs with a tiny config in seconds and its training loss falls; each prints a
model summary and a progress bar and writes a checkpoint, the history and a PNG of its curves.
The command line (``python -m examples.train``) parses overrides and runs the default example."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import configs
from examples import train as cli
from tlean import checkpoint

ROOT = Path(__file__).resolve().parents[2]

TINY = {
    "digits_mlp": {"steps": 30, "batch_size": 32, "hidden": 32, "augment": False, "log_every": 5, "eval_every": 15},
    "digits_cnn": {"steps": 30, "batch_size": 32, "width": 8, "log_every": 5, "eval_every": 15},
    "char_gpt": {"steps": 30, "batch_size": 16, "context": 24, "d_model": 32, "nhead": 2, "num_layers": 1,
                 "log_every": 5, "eval_every": 15, "sample_len": 12, "eval_windows": 16},
    "adding_lstm": {"steps": 30, "batch_size": 32, "seq_len": 10, "hidden": 16, "log_every": 5, "eval_every": 15,
                    "test_examples": 64},
    "adding_mamba": {"steps": 30, "batch_size": 32, "seq_len": 10, "hidden": 16, "log_every": 5, "eval_every": 15,
                     "test_examples": 64},
}


def test_every_config_has_a_tiny_test():
    assert sorted(TINY) == sorted(configs.CONFIGS)


def check_run(name: str, out_dir: Path, results: dict, stdout: str, stderr: str) -> None:
    """What every example run must leave behind: falling loss, history, curves, checkpoints, summary, bar."""
    history = json.loads((out_dir / "history.json").read_text())
    train_losses = [r["loss"] for r in history["train"]]
    assert train_losses[-1] < train_losses[0], train_losses
    assert [r["step"] for r in history["train"]] == [5, 10, 15, 20, 25, 30]
    assert [r["step"] for r in history["eval"]] == [15, 30]
    png = (out_dir / "curves.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    saved = sorted(p.name for p in (out_dir / "checkpoints").iterdir())
    assert saved == ["step_00000015", "step_00000030"]
    assert checkpoint.read_metadata(out_dir / "checkpoints" / "step_00000030")["history"] == history
    assert "total params:" in stdout and (out_dir / "summary.txt").read_text().strip() in stdout
    assert f"{name}:" in stderr and "30/30" in stderr  # the progress bar
    if results:
        assert results["first_train_loss"] == train_losses[0] and results["last_train_loss"] == train_losses[-1]
        assert results["test_loss"] == history["eval"][-1]["loss"]


@pytest.mark.parametrize("name", sorted(set(TINY) - {configs.DEFAULT}))
def test_example_runs_and_its_loss_falls(name, tmp_path, capsys):
    config = configs.get(name).replace(out_dir=str(tmp_path), checkpoint_every=15, **TINY[name])
    results = cli.run(config)
    out, err = capsys.readouterr()
    check_run(name, tmp_path, results, out, err)
    if name == "char_gpt":
        assert results["sample"].startswith(config.prompt) and len(results["sample"]) == len(config.prompt) + 12


def test_main_command_trains_the_default_example(tmp_path):
    """``python -m examples.train`` (the README's command) runs the digits CNN end to end; here shortened."""
    overrides = [f"--{k}={v}" for k, v in TINY[configs.DEFAULT].items()] + ["--checkpoint_every=15"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "examples.train", *overrides],  # default out_dir: runs/digits_cnn
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    check_run(configs.DEFAULT, tmp_path / "runs" / "digits_cnn", {}, proc.stdout, proc.stderr)
    assert "digits_cnn: 1437 training and 360 test digits" in proc.stdout and "BasicBlock" in proc.stdout
    assert re.search(r"final test loss: [0-9.]+  final test accuracy: [0-9.]+%", proc.stdout)


def test_rerun_starts_afresh_unless_resume(tmp_path):
    config = configs.get("digits_mlp").replace(out_dir=str(tmp_path), progress=False, **TINY["digits_mlp"])
    cli.run(config.replace(steps=10))
    fresh = cli.run(config.replace(steps=10))
    assert json.loads((tmp_path / "history.json").read_text())["train"][0]["step"] == 5
    resumed = cli.run(config.replace(steps=20, resume=True, tensorboard=True))
    steps = [r["step"] for r in json.loads((tmp_path / "history.json").read_text())["train"]]
    assert steps == [5, 10, 15, 20]  # the first 10 steps came from the checkpoint
    (events,) = (tmp_path / "tensorboard").glob("events.out.tfevents.*")  # --tensorboard true: fit's log_dir
    assert b"train/loss" in events.read_bytes() and b"eval/accuracy" in events.read_bytes()
    assert resumed["checkpoint"].endswith("step_00000020") and fresh["checkpoint"].endswith("step_00000010")


def test_command_line_overrides(capsys):
    """The overrides of the hand-written parser tyro replaced keep working: --field value, --field=value,
    hyphens, true/false and none in any case."""
    config = cli.parse(["--config", "digits_mlp", "--steps", "10", "--lr=1e-3", "--augment", "false",
                        "--out_dir", "none", "--batch-size", "16"])
    assert (config.name, config.steps, config.lr, config.augment, config.out_dir, config.batch_size) == (
        "digits_mlp", 10, 1e-3, False, None, 16)
    config = cli.parse(["--config=char_gpt", "--progress=False", "--out_dir=runs/x", "--prompt", "none"])
    assert (config.name, config.progress, config.out_dir, config.prompt) == ("char_gpt", False, "runs/x", "none")
    assert cli.parse([]).name == configs.DEFAULT == "digits_cnn"
    capsys.readouterr()
    for argv, message in ((["--stepz", "3"], r"Unrecognized options: --stepz.*Perhaps you meant:.*--steps INT"),
                          (["--steps", "ten"], r"Error parsing --steps: invalid literal for int\(\).*'ten'"),
                          (["--augment", "maybe"], r"invalid choice 'maybe' for argument '--augment'"),
                          (["--steps"], r"Missing value for argument '--steps'")):
        with pytest.raises(SystemExit) as exit_:
            cli.parse(argv)
        assert exit_.value.code == 2
        assert re.search(message, " ".join(capsys.readouterr().err.replace("│", " ").split()), re.S), argv
    with pytest.raises(ValueError, match="no config named 'mnist'"):
        cli.parse(["--config", "mnist"])
    with pytest.raises(SystemExit, match="(?s)no config named 'mnist'.*usage: python -m examples.train"):
        cli.main(["--config", "mnist"])


@pytest.mark.parametrize("name", sorted(configs.CONFIGS))
def test_help_lists_every_field_with_its_default_and_meaning(name, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--config", name, "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.replace("│", " ").split())
    assert "--config NAME picks the example" in text and f"these are the fields of {name}" in text
    config = configs.get(name)
    text = text[text.index(f"these are the fields of {name}"):]
    for field in dataclasses.fields(config):
        shown = re.search(rf" --{field.name} (\S+) (.*?)\(default: (.*?)\)", text)
        assert shown, field.name
        assert shown.group(2).strip(), f"--{field.name} has no help text"  # from the config's Attributes section
        assert shown.group(3) in (str(getattr(config, field.name)), repr(getattr(config, field.name))), field.name


def test_list_shows_every_config(capsys):
    assert cli.main(["--list"]) is None
    out = capsys.readouterr().out
    for name in configs.CONFIGS:
        assert name in out
    assert "digits_cnn (default)" in out
