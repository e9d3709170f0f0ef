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

import jax.numpy as jnp
import numpy as np
import pytest

import configs
from examples import train as cli
from tlean import checkpoint, models, nn
from tlean.layers import LoRALinear

ROOT = Path(__file__).resolve().parents[2]

TINY = {
    "digits_mlp": {"steps": 30, "batch_size": 32, "hidden": 32, "augment": False, "log_every": 5, "eval_every": 15},
    "digits_cnn": {"steps": 30, "batch_size": 32, "width": 8, "log_every": 5, "eval_every": 15},
    "char_gpt": {
        "steps": 30,
        "batch_size": 16,
        "context": 24,
        "d_model": 32,
        "nhead": 2,
        "num_layers": 1,
        "log_every": 5,
        "eval_every": 15,
        "sample_len": 12,
        "eval_windows": 16,
    },
    "adding_lstm": {
        "steps": 30,
        "batch_size": 32,
        "seq_len": 10,
        "hidden": 16,
        "log_every": 5,
        "eval_every": 15,
        "test_examples": 64,
    },
    "adding_mamba": {
        "steps": 30,
        "batch_size": 32,
        "seq_len": 10,
        "hidden": 16,
        "log_every": 5,
        "eval_every": 15,
        "test_examples": 64,
    },
    "finetune": {
        "steps": 30,
        "batch_size": 8,
        "context": 16,
        "d_model": 16,
        "nhead": 2,
        "num_layers": 1,
        "family": "llama",
        "lora_rank": 2,
        "lr": 3e-2,
        "log_every": 5,
        "eval_every": 15,
        "sample_len": 6,
        "eval_windows": 8,
    },
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
    if name == "finetune":
        check_finetune_with_lora(config, results, out)


def check_finetune_with_lora(config, results, out):
    """From scratch (a tiny llama) with LoRA on q_proj/v_proj: the base is bit-identical after training, the
    adapters moved, the held-out loss fell, and the directory written holds the merged model."""
    from examples import finetune

    assert results["test_loss"] < results["loss_before"]
    assert results["sample"].startswith(config.prompt) and len(results["sample"]) == len(config.prompt) + 6
    assert "training 128 of" in out and "LoRA rank 2" in out and "saved (LoRA merged)" in out
    base = finetune.build(config)[0].named_parameters()
    initial = finetune.add_lora(config, finetune.build(config)[0], "llama").named_parameters()
    tuned = results["model"].named_parameters()
    adapters = {k for k in tuned if ".lora_" in k}
    assert adapters == {f"model.layers.*.self_attn.{p}_proj.lora_{m}.weight" for p in "qv" for m in "AB"}
    assert set(tuned) - adapters == set(base)
    for name in base:
        np.testing.assert_array_equal(tuned[name], base[name], err_msg=name)  # frozen: not one bit moved
    for name in adapters:
        assert not np.array_equal(tuned[name], initial[name]), name
    saved = models.from_pretrained(results["saved"])
    assert saved.layer == nn.lora.merge(results["model"]).layer
    ids = jnp.arange(12, dtype=jnp.int32)[None] * 7 % 256
    np.testing.assert_allclose(saved(ids), results["model"](ids), atol=1e-5, rtol=1e-5)


def test_main_command_trains_the_default_example(tmp_path):
    """``python -m examples.train`` (the README's command) runs the digits CNN end to end; here shortened."""
    overrides = [f"--{k}={v}" for k, v in TINY[configs.DEFAULT].items()] + ["--checkpoint_every=15"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-m", "examples.train", *overrides],  # default out_dir: runs/digits_cnn
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
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
    config = cli.parse(
        [
            "--config",
            "digits_mlp",
            "--steps",
            "10",
            "--lr=1e-3",
            "--augment",
            "false",
            "--out_dir",
            "none",
            "--batch-size",
            "16",
        ]
    )
    assert (config.name, config.steps, config.lr, config.augment, config.out_dir, config.batch_size) == (
        "digits_mlp",
        10,
        1e-3,
        False,
        None,
        16,
    )
    config = cli.parse(["--config=char_gpt", "--progress=False", "--out_dir=runs/x", "--prompt", "none"])
    assert (config.name, config.progress, config.out_dir, config.prompt) == ("char_gpt", False, "runs/x", "none")
    assert cli.parse([]).name == configs.DEFAULT == "digits_cnn"
    capsys.readouterr()
    for argv, message in (
        (["--stepz", "3"], r"Unrecognized options: --stepz.*Perhaps you meant:.*--steps INT"),
        (["--steps", "ten"], r"Error parsing --steps: invalid literal for int\(\).*'ten'"),
        (["--augment", "maybe"], r"invalid choice 'maybe' for argument '--augment'"),
        (["--steps"], r"Missing value for argument '--steps'"),
    ):
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
    text = text[text.index(f"these are the fields of {name}") :]
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


# -- the fine-tuning example (examples/finetune.py) -----------------------------------------------
FINETUNE = {
    "steps": 6,
    "batch_size": 4,
    "context": 16,
    "d_model": 16,
    "nhead": 2,
    "num_layers": 1,
    "log_every": 3,
    "eval_every": 6,
    "checkpoint_every": 6,
    "sample_len": 4,
    "eval_windows": 4,
    "progress": False,
}


def test_finetune_from_a_pretrained_gpt2_directory(tmp_path, capsys):
    """A directory written by models.save_pretrained (a tiny random GPT-2 with a vocabulary of 100, so the bytes
    fold modulo 100) fine-tunes in full; the loss falls and the directory written back has the trained weights."""
    source = tmp_path / "gpt2"
    base = nn.run(1, models.gpt2(vocab_size=100, n_positions=24, n_embd=16, n_layer=1, n_head=2))
    models.save_pretrained(base, source)
    config = configs.get("finetune").replace(
        out_dir=str(tmp_path / "run"), from_pretrained=str(source), lr=1e-2, **FINETUNE
    )
    results = cli.run(config)
    out = capsys.readouterr().out
    assert f"gpt2 {source}" in out and "vocabulary 100 (bytes folded modulo it)" in out and "training 5," in out
    assert results["family"] == "gpt2" and results["test_loss"] < results["loss_before"]
    assert all(0 <= ord(c) < 128 or c == "\ufffd" for c in results["sample"])
    saved = models.from_pretrained(results["saved"])
    assert saved.layer == base.layer
    for name, value in saved.named_parameters().items():
        np.testing.assert_array_equal(value, results["model"].named_parameters()[name], err_msg=name)
    assert not np.array_equal(
        saved.named_parameters()["transformer.wte.weight"], base.named_parameters()["transformer.wte.weight"]
    )


def test_finetune_refuses_other_families_and_unadaptable_targets(tmp_path):
    bert = tmp_path / "bert"  # what save_pretrained writes as config.json; the example stops before the weights
    bert.mkdir()
    (bert / "config.json").write_text(
        json.dumps(
            {
                **models.BertConfig(hidden_size=8, num_attention_heads=2).to_hf(),
                "model_type": "bert",
                "architectures": ["BertForMaskedLM"],
            }
        )
    )
    config = configs.get("finetune").replace(out_dir=str(tmp_path / "run"), **FINETUNE)
    with pytest.raises(
        ValueError,
        match=r"holds a 'bert' model; this example fine-tunes causal language models "
        r"of the families \['gpt2', 'llama'\]",
    ):
        cli.run(config.replace(from_pretrained=str(bert)))
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        cli.run(config.replace(from_pretrained=str(tmp_path)))
    with pytest.raises(ValueError, match=r"--lora_rank must be >= 0 \(0 fine-tunes every parameter\), got -1"):
        cli.run(config.replace(lora_rank=-1))
    with pytest.raises(ValueError, match=r"--family must be one of \['gpt2', 'llama'\], got 'vit'"):
        cli.run(config.replace(family="vit"))
    if "fan_in_fan_out" not in {f.name for f in dataclasses.fields(LoRALinear)}:  # until nn.lora adapts Conv1D
        with pytest.raises(
            ValueError,
            match=r"(?s)--lora_targets '\.\*c_attn': nn\.lora: targets .* match none of "
            r"the model's Linears.*GPT-2's c_attn/c_proj/c_fc are Conv1D layers",
        ):
            cli.run(config.replace(lora_rank=2))
