"""Fault injection for tlean.checkpoint and fit's checkpoints: a flipped bit or a truncation in any file
(tlean.json included), a process killed in the middle of a deletion or of fit's rotation, and a restore
in a fresh process. Every case ends with the saved data intact or a CheckpointError, never a silently
different value."""

from __future__ import annotations

import functools
import gc
import json
import logging
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tlean import checkpoint, layers, nn, train
from tlean.checkpoint import CheckpointError

ROOT = Path(__file__).resolve().parents[1]

# A corrupted file leaves orbax's background readers to be collected with the exception they raised.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture(autouse=True)
def quiet_abandoned_readers():
    """asyncio logs each of those exceptions ("Task exception was never retrieved") when the task is
    collected: collect them here, with the log muted, rather than at exit."""
    logger = logging.getLogger("asyncio")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    gc.collect()
    logger.setLevel(level)


def as_bytes(tree):
    out = []
    for leaf in jax.tree.leaves(tree):
        if isinstance(leaf, (bool, int, float)):
            out.append(repr((type(leaf), leaf)).encode())
        else:
            key = jax.dtypes.issubdtype(jnp.result_type(leaf), jax.dtypes.prng_key)
            array = np.asarray(jax.random.key_data(leaf) if key else leaf)
            out.append(repr((array.dtype, array.shape)).encode() + array.tobytes())
    return out


def saved_tree():
    """Every kind of leaf save accepts: float32/bf16 JAX arrays, a key, NumPy 64-bit arrays and Python scalars."""
    state = train.TrainState.create(
        nn.run(0, nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))), optax.adam(1e-3), key=3
    )
    return {
        "state": state,
        "half": jnp.arange(4, dtype=jnp.bfloat16),
        "f64": np.linspace(0, 1, 5),
        "i64": np.arange(3, dtype=np.int64) * 2**40,
        "epoch": 12,
        "lr": 0.25,
        "done": False,
    }


def flip_bit(file: Path, position: int) -> None:
    data = bytearray(file.read_bytes())
    data[position] ^= 0x04
    file.write_bytes(bytes(data))


def test_a_flipped_bit_or_a_truncation_in_any_file_is_an_error_or_harmless(tmp_path):
    tree = saved_tree()
    checkpoint.save(tmp_path / "good", tree, metadata={"epoch": 12})
    want = as_bytes(tree)
    assert as_bytes(checkpoint.restore(tmp_path / "good", like=tree)) == want  # undamaged: every leaf exactly
    files = sorted(p.relative_to(tmp_path / "good") for p in (tmp_path / "good").rglob("*") if p.is_file())
    assert Path("tlean.json") in files and len(files) >= 5
    outcomes = {"error": 0, "intact": 0}
    for i, rel in enumerate(files):
        size = (tmp_path / "good" / rel).stat().st_size
        damages = [("flip", p) for p in sorted({0, size // 2, size - 2}) if 0 <= p < size]
        damages.append(("truncate", size // 2))
        for j, (how, where) in enumerate(damages):
            path = tmp_path / f"bad{i}_{j}"
            shutil.copytree(tmp_path / "good", path)
            if how == "flip":
                flip_bit(path / rel, where)
            else:
                (path / rel).write_bytes((path / rel).read_bytes()[:where])
            try:
                restored = checkpoint.restore(path, like=tree)
                metadata = checkpoint.read_metadata(path)
            except CheckpointError:
                outcomes["error"] += 1
            else:  # the damage missed everything that is read: the data must be exactly the saved data
                assert as_bytes(restored) == want, (rel, how, where)
                assert metadata == {"epoch": 12}, (rel, how, where)
                outcomes["intact"] += 1
            shutil.rmtree(path)
    assert outcomes["error"] >= 10  # most damage is detected; what is not detected changed nothing


def test_every_byte_of_tlean_json_is_covered(tmp_path):
    """A flipped bit anywhere in tlean.json's text: a field name, a digit of a Python scalar, a layer
    config, the metadata, the checksum itself. (Before: a bare KeyError, or a silently wrong epoch.)"""
    tree = {"model": nn.run(0, nn.Sequential(nn.Linear(2, 3))), "epoch": 12, "lr": 0.25}
    checkpoint.save(tmp_path / "good", tree, metadata={"note": "x"})
    text = (tmp_path / "good" / "tlean.json").read_text()
    for where in ['"name"', '"epoch"', "12", "0.25", '"kind"', '"shape"', "Linear", '"note"', '"checksum"']:
        position = text.index(where) + len(where) // 2
        for bit in (0x01, 0x02):
            path = tmp_path / "bad"
            shutil.copytree(tmp_path / "good", path)
            data = bytearray(text.encode())
            data[position] ^= bit
            (path / "tlean.json").write_bytes(bytes(data))
            with pytest.raises(CheckpointError, match="corrupted"):
                checkpoint.restore(path, like=tree)
            shutil.rmtree(path)


def _run(script: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], cwd=ROOT, capture_output=True, text=True, timeout=180
    )


FIT = """
    import numpy as np, optax, os, shutil
    from tlean import nn, train
    optimizer = optax.sgd(0.1)
    x = np.linspace(-1, 1, 32, dtype=np.float32).reshape(8, 4)
    data = train.Minibatches((x, (x[:, 0] > 0).astype(np.int32)), 4)
    def fit(directory, steps):
        state = train.TrainState.create(nn.run(0, nn.Sequential(nn.Linear(4, 2))), optimizer, key=1)
        return train.fit(state, train.classification_loss, optimizer, data, steps=steps,
                         checkpoints=train.CheckpointConfig(directory, every=1, keep=1),
                         log=train.LogConfig(progress=False))[0]
"""


@pytest.mark.parametrize("crash", ["after_rename", "mid_rmtree"])
def test_fit_killed_while_rotating_resumes_and_cleans_up(tmp_path, crash):
    """kill -9 while fit deletes its oldest checkpoint: the newest survives, the next fit resumes from it and
    removes the debris, and no later save refuses. (Before: a half-deleted step_N made every later save fail.)"""
    script = (
        FIT
        + f"""
    real = shutil.rmtree
    def rmtree(path, *a, **k):
        if {crash!r} == "mid_rmtree":
            for entry in sorted(os.scandir(path), key=lambda e: e.name, reverse=True)[:2]:  # tlean.json first
                real(entry.path) if entry.is_dir() else os.remove(entry.path)
        os._exit(9)
    fit({str(tmp_path)!r}, 1)          # step_1
    shutil.rmtree = rmtree
    fit({str(tmp_path)!r}, 2)          # saves step_2, then dies deleting step_1
    """
    )
    proc = _run(script)
    assert proc.returncode == 9, proc.stderr[-3000:]
    assert (tmp_path / "step_00000002" / "tlean.json").is_file()
    assert train.latest_checkpoint(tmp_path).name == "step_00000002"
    optimizer = optax.sgd(0.1)
    x = np.linspace(-1, 1, 32, dtype=np.float32).reshape(8, 4)
    data = train.Minibatches((x, (x[:, 0] > 0).astype(np.int32)), 4)
    state = train.TrainState.create(nn.run(0, nn.Sequential(nn.Linear(4, 2))), optimizer, key=1)
    state, _ = train.fit(
        state,
        train.classification_loss,
        optimizer,
        data,
        steps=4,
        checkpoints=train.CheckpointConfig(tmp_path, every=1, keep=1),
        log=train.LogConfig(progress=False),
    )
    assert int(state.step) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_00000004"]


def test_restore_in_a_fresh_process_with_partial_and_function_configs(tmp_path):
    """Layer configs holding a functools.partial or a function are recorded without memory addresses, so a
    new process restores them (before: the partial's repr held an address and the config check failed)."""
    build = lambda: nn.run(
        0,
        nn.Sequential(
            nn.Linear(3, 4),
            nn.build(layers.Lambda(functools.partial(jnp.clip, min=0.0))),
            nn.build(layers.Lambda(jnp.tanh)),
        ),
    )
    model = build()
    checkpoint.save(tmp_path / "m", {"model": model, "f64": np.linspace(0, 1, 3)})
    assert "0x" not in (tmp_path / "m" / "tlean.json").read_text()
    proc = _run(f"""
        import functools, jax.numpy as jnp, numpy as np
        from tlean import checkpoint, layers, nn
        model = nn.run(0, nn.Sequential(nn.Linear(3, 4), nn.build(layers.Lambda(functools.partial(jnp.clip, min=0.0))),
                                        nn.build(layers.Lambda(jnp.tanh))))
        out = checkpoint.restore({str(tmp_path / "m")!r}, like={{"model": model, "f64": np.zeros(3)}})
        assert out["f64"].dtype == np.float64 and out["f64"].tolist() == [0.0, 0.5, 1.0], out["f64"]
        print(np.asarray(out["model"].params[0]["weight"]).tobytes().hex())
    """)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[-1] == np.asarray(model.params[0]["weight"]).tobytes().hex()
    other = nn.run(
        0,
        nn.Sequential(
            nn.Linear(3, 4),
            nn.build(layers.Lambda(functools.partial(jnp.clip, min=1.0))),
            nn.build(layers.Lambda(jnp.tanh)),
        ),
    )
    with pytest.raises(
        CheckpointError,
        match=r"layer config at model: `like` has .*partial\(jax\.numpy\.clip, "
        r"min=1\.0\).*, the checkpoint .*min=0\.0",
    ):
        checkpoint.restore(tmp_path / "m", like={"model": other, "f64": np.zeros(3)})


def test_a_format_1_checkpoint_still_restores(tmp_path):
    """Checkpoints written before tlean.json had its own checksum (format 1, layers as repr) still read."""
    model = nn.run(0, nn.Sequential(nn.Linear(2, 3), nn.ReLU()))
    checkpoint.save(tmp_path / "m", model)
    meta = json.loads((tmp_path / "m" / "tlean.json").read_text())
    meta["format"] = 1
    for entry in meta["leaves"]:  # formats 1 and 2 named a Model's leaves by their key path
        entry["name"] = "params." + entry["name"]
    meta["layers"] = {"(root)": repr(model.layer)}
    del meta["checksum"]
    (tmp_path / "m" / "tlean.json").write_text(json.dumps(meta))
    assert as_bytes(checkpoint.restore(tmp_path / "m", like=model)) == as_bytes(model)
    meta["leaves"][0]["nbme"] = meta["leaves"][0].pop("name")  # no checksum there, but the schema is checked
    (tmp_path / "m" / "tlean.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"tlean.json is not valid: leaf 0 has no 'name' field"):
        checkpoint.restore(tmp_path / "m", like=model)
