"""tlean.checkpoint: bit-exact round trips, `like` checks that list what differs, clear errors on
truncated or corrupted checkpoints, atomic saves that an interruption cannot damage, and
resume-from-checkpoint equal to a run that never stopped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tlean import Model, checkpoint, nn, train
from tlean.checkpoint import CheckpointError

ROOT = Path(__file__).resolve().parents[1]


def make_model(seed=0, hidden=8, act=None):
    return nn.run(seed, nn.Sequential(nn.Linear(4, hidden), act or nn.ReLU(), nn.Dropout(0.2), nn.Linear(hidden, 3)))


def leaves(tree):
    return [
        np.asarray(jax.random.key_data(v) if jax.dtypes.issubdtype(jnp.result_type(v), jax.dtypes.prng_key) else v)
        for v in jax.tree.leaves(tree)
    ]


def assert_bit_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(leaves(a), leaves(b)):
        assert x.dtype == y.dtype and x.shape == y.shape
        assert x.tobytes() == y.tobytes()


def data_file(path: Path) -> Path:
    """The largest array data file of a checkpoint (orbax's OCDBT data)."""
    files = [p for p in path.rglob("*") if p.is_file() and p.parent.name == "d"]
    return max(files, key=lambda p: p.stat().st_size)


def edit_meta(path: Path, change) -> None:
    """Change tlean.json as a newer tlean or another JAX would have written it (its checksum recomputed)."""
    meta_file = path / "tlean.json"
    meta = json.loads(meta_file.read_text())
    change(meta)
    meta["checksum"] = checkpoint._meta_checksum(meta)
    meta_file.write_text(json.dumps(meta))


def test_model_round_trip_is_bit_exact_and_written_exactly_at_path(tmp_path):
    model = make_model()
    path = tmp_path / "model"
    checkpoint.save(path, model)
    assert path.is_dir() and (path / "tlean.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no suffix, no leftovers
    restored = checkpoint.restore(path, like=model)
    assert isinstance(restored, Model) and restored.layer == model.layer
    assert_bit_equal(restored, model)


def test_relative_paths_work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = make_model()
    checkpoint.save("runs/model", model)  # orbax itself accepts only absolute paths
    assert (tmp_path / "runs" / "model" / "tlean.json").is_file()
    assert_bit_equal(checkpoint.restore("runs/model", like=model), model)
    assert checkpoint.read_metadata("runs/model") == {}
    checkpoint.delete("runs/model")
    assert not (tmp_path / "runs" / "model").exists()


def test_train_state_round_trip_with_keys_and_abstract_like(tmp_path):
    optimizer = optax.adamw(1e-3)
    state = train.TrainState.create(make_model(), optimizer, key=jax.random.key(5, impl="rbg"))
    state, _ = train.make_train_step(train.classification_loss, optimizer, donate=False)(
        state, (jnp.ones((4, 4)), jnp.zeros((4,), jnp.int32))
    )
    checkpoint.save(tmp_path / "state", state)
    abstract = jax.eval_shape(lambda: state)
    restored = checkpoint.restore(tmp_path / "state", like=abstract)
    assert_bit_equal(restored, state)
    assert restored.key.dtype == state.key.dtype  # the rbg implementation survives
    assert restored.step.dtype == jnp.int32 and int(restored.step) == 1
    assert restored.model.params[0]["weight"].sharding == jax.sharding.SingleDeviceSharding(jax.devices()[0])


def test_any_pytree_round_trips(tmp_path):
    tree = {
        "bf16": jnp.arange(6, dtype=jnp.bfloat16).reshape(2, 3),
        "int8": np.arange(-3, 3, dtype=np.int8),
        "scalars": (3, 2.5, True),
        "empty": jnp.zeros((0, 4)),
        "nested": [jnp.float32(1.5), {"x": jnp.ones((2, 2), jnp.float16)}],
    }
    checkpoint.save(tmp_path / "tree", tree)
    restored = checkpoint.restore(tmp_path / "tree", like=tree)
    assert restored["scalars"] == (3, 2.5, True) and type(restored["scalars"][0]) is int
    assert isinstance(restored["int8"], np.ndarray)
    assert_bit_equal(restored, tree)
    flat = checkpoint.restore(tmp_path / "tree")  # like=None: everything by name
    assert sorted(flat) == sorted(
        ["bf16", "empty", "int8", "nested.0", "nested.1.x", "scalars.0", "scalars.1", "scalars.2"]
    )
    np.testing.assert_array_equal(flat["int8"], tree["int8"])


def test_numpy_64_bit_leaves_round_trip_exactly(tmp_path):
    """float64/int64 NumPy leaves (which JAX without x64 cannot hold) come back as NumPy arrays of their
    dtype, with like or without. (Before: saved fine, then every restore failed "checksums do not match".)"""
    tree = {
        "f64": np.linspace(0, 1, 7),
        "i64": np.arange(3, dtype=np.int64) * 2**40,
        "u64": np.uint64(2**63 + 1),
        "scalar": np.float64(1 / 3),
        "empty": np.zeros((0, 2), np.int64),
    }
    checkpoint.save(tmp_path / "t", tree)
    restored = checkpoint.restore(tmp_path / "t", like=tree)
    assert type(restored["u64"]) is np.uint64 and type(restored["scalar"]) is np.float64
    assert_bit_equal(restored, tree)
    flat = checkpoint.restore(tmp_path / "t")  # like=None: what JAX cannot hold stays NumPy
    assert flat["f64"].dtype == np.float64 and flat["i64"].dtype == np.int64
    assert flat["i64"].tolist() == tree["i64"].tolist() and flat["f64"].tobytes() == tree["f64"].tobytes()
    with pytest.raises(TypeError, match=r"checkpoint.save: names: cannot checkpoint an array of dtype <U1"):
        checkpoint.save(tmp_path / "s", {"names": np.array(["a", "b"])})
    assert not (tmp_path / "s").exists()  # refused before anything was written


def test_metadata_that_json_would_change_is_refused(tmp_path):
    with pytest.raises(TypeError, match=r"metadata has the key 1; JSON would read it back as the string"):
        checkpoint.save(tmp_path / "m", {}, metadata={1: "one"})
    with pytest.raises(TypeError, match=r"metadata\['shape'\] is a tuple; JSON would read it back as a list"):
        checkpoint.save(tmp_path / "m", {}, metadata={"shape": (2, 3)})
    assert not (tmp_path / "m").exists()
    checkpoint.save(tmp_path / "m", {}, metadata={"loss": [float("nan"), 1.5], "ok": None})
    got = checkpoint.read_metadata(tmp_path / "m")
    assert np.isnan(got["loss"][0]) and got["loss"][1] == 1.5 and got["ok"] is None


def test_delete_is_atomic_and_debris_is_cleaned(tmp_path, monkeypatch):
    """A deletion cut short leaves a hidden .<name>.tlean-deleting-* directory, never a half-deleted
    checkpoint under its own name; clean_debris removes it (and a save's leftover temporary)."""
    checkpoint.save(tmp_path / "m", make_model())
    monkeypatch.setattr(checkpoint.shutil, "rmtree", lambda *a, **k: None)  # "crash" before the files go
    checkpoint.delete(tmp_path / "m")
    monkeypatch.undo()
    assert not (tmp_path / "m").exists()
    (tmp_path / ".n.tlean-tmp-0").mkdir()
    removed = checkpoint.clean_debris(tmp_path)
    assert sorted(p.name[:18] for p in removed) == [".m.tlean-deleting-", ".n.tlean-tmp-0"]
    assert list(tmp_path.iterdir()) == []


def test_saving_a_donated_state_is_a_clear_error(tmp_path):
    optimizer = optax.sgd(0.1)
    state = train.TrainState.create(make_model(), optimizer)
    train.make_train_step(train.classification_loss, optimizer)(state, (jnp.ones((4, 4)), jnp.zeros((4,), jnp.int32)))
    with pytest.raises(
        RuntimeError,
        match=r"checkpoint.save: model.0.bias has been deleted \(donated to a "
        r"jitted step\?\): save the state the step returned",
    ):
        checkpoint.save(tmp_path / "s", state)
    assert not (tmp_path / "s").exists()


def test_empty_tree_and_metadata(tmp_path):
    checkpoint.save(tmp_path / "empty", {}, metadata={"note": "nothing", "steps": [1, 2]})
    assert checkpoint.restore(tmp_path / "empty", like={}) == {}
    assert checkpoint.read_metadata(tmp_path / "empty") == {"note": "nothing", "steps": [1, 2]}
    with pytest.raises(TypeError, match="not JSON serializable"):
        checkpoint.save(tmp_path / "bad", {}, metadata={"x": object()})
    assert not (tmp_path / "bad").exists()
    with pytest.raises(TypeError, match="x: cannot checkpoint a leaf of type str"):
        checkpoint.save(tmp_path / "bad", {"x": "text"})


def test_mismatched_like_lists_every_difference(tmp_path):
    checkpoint.save(tmp_path / "m", make_model())
    wider = make_model(hidden=9)
    with pytest.raises(CheckpointError, match=r"0\.weight: `like` has shape \(9, 4\), the checkpoint \(8, 4\)") as err:
        checkpoint.restore(tmp_path / "m", like=wider)
    message = str(err.value)
    assert "3.weight: `like` has shape (3, 9), the checkpoint (3, 8)" in message
    assert "0.bias" in message
    assert "layer config at (root)" in message  # Linear(4, 9) differs from Linear(4, 8)

    half = make_model()
    half = half.replace(params=jax.tree.map(lambda p: p.astype(jnp.bfloat16), half.params))
    with pytest.raises(CheckpointError, match="0.weight: `like` has dtype bfloat16, the checkpoint float32"):
        checkpoint.restore(tmp_path / "m", like=half)

    deeper = nn.run(0, nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 3), nn.Linear(3, 3)))
    with pytest.raises(CheckpointError, match=r"in `like` but not in the checkpoint: \['4.bias', '4.weight'\]"):
        checkpoint.restore(tmp_path / "m", like=deeper)
    with pytest.raises(CheckpointError, match=r"in the checkpoint but not in `like`: \['3.bias', '3.weight'\]"):
        checkpoint.restore(tmp_path / "m", like=nn.run(0, nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.2))))


def test_layer_config_is_checked_even_when_shapes_agree(tmp_path):
    checkpoint.save(tmp_path / "m", make_model())
    tanh = make_model(act=nn.Tanh())
    with pytest.raises(
        CheckpointError, match=r"layer config at \(root\): `like` has Seq\(.*Tanh\(\).*, the checkpoint Seq\(.*ReLU\(\)"
    ):
        checkpoint.restore(tmp_path / "m", like=tanh)
    restored = checkpoint.restore(tmp_path / "m", like=tanh, check_config=False)  # weights into a new config
    assert restored.layer == tanh.layer
    assert_bit_equal(restored.params, make_model().params)


def test_jax_version_is_checked(tmp_path):
    model = make_model()
    checkpoint.save(tmp_path / "m", model)
    edit_meta(tmp_path / "m", lambda meta: meta.update(jax_version="0.0.1"))
    with pytest.warns(UserWarning, match=f"written with JAX 0.0.1, this is JAX {jax.__version__}"):
        assert_bit_equal(checkpoint.restore(tmp_path / "m", like=model), model)
    with pytest.raises(CheckpointError, match="written with JAX 0.0.1"):
        checkpoint.restore(tmp_path / "m", like=model, jax_version="error")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        checkpoint.restore(tmp_path / "m", like=model, jax_version="ignore")
    with pytest.raises(ValueError, match="jax_version must be"):
        checkpoint.restore(tmp_path / "m", like=model, jax_version="strict")


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # orbax leaves a coroutine unawaited
def test_truncated_and_corrupted_checkpoints_raise_clear_errors(tmp_path):
    model = nn.run(0, nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 3)))
    checkpoint.save(tmp_path / "good", model)
    import shutil

    def damaged(name, damage):
        path = tmp_path / name
        shutil.copytree(tmp_path / "good", path)
        damage(path)
        return path

    def truncate(file):
        with open(file, "r+b") as f:
            f.truncate(file.stat().st_size // 2)

    def flip(file):
        with open(file, "r+b") as f:
            f.seek(file.stat().st_size // 2)
            byte = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([byte[0] ^ 0x01]))

    with pytest.raises(CheckpointError, match="truncated or corrupted: orbax could not read it"):
        checkpoint.restore(damaged("truncated", lambda p: truncate(data_file(p))), like=model)
    with pytest.raises(CheckpointError, match="corrupted"):  # a flipped bit: decoding fails or the checksum differs
        checkpoint.restore(damaged("flipped", lambda p: flip(data_file(p))), like=model)
    with pytest.raises(CheckpointError, match="truncated or corrupted: orbax could not read it"):
        checkpoint.restore(damaged("no-data", lambda p: data_file(p).unlink()), like=model)
    with pytest.raises(CheckpointError, match="corrupted or truncated: cannot read tlean.json"):
        checkpoint.restore(damaged("meta", lambda p: truncate(p / "tlean.json")), like=model)
    with pytest.raises(CheckpointError, match="is not a tlean checkpoint: it has no tlean.json"):
        checkpoint.restore(damaged("no-meta", lambda p: (p / "tlean.json").unlink()), like=model)
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        checkpoint.restore(tmp_path / "missing", like=model)


# A simulated crash or a corrupted file leaves orbax's background readers to be collected
# with the exception they were raising; pytest would print those as unraisable warnings.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_checksum_catches_a_flip_that_decodes(tmp_path):
    """Corruption that the storage layer cannot see (a changed value) is still refused."""
    model = make_model()
    checkpoint.save(tmp_path / "m", model)
    # as if the stored bytes of this leaf had changed (and tlean.json's own checksum had not noticed)
    edit_meta(tmp_path / "m", lambda meta: meta["leaves"][1].update(checksum="0" * 32))
    with pytest.raises(CheckpointError, match=r"corrupted: the checksums of \['0.weight'\] do not match"):
        checkpoint.restore(tmp_path / "m", like=model)


def _old_and_new(tmp_path):
    old, new = make_model(seed=0), make_model(seed=1)
    checkpoint.save(tmp_path / "ckpt", old, metadata={"which": "old"})
    return old, new


def test_interrupted_save_while_writing_arrays_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    old, new = _old_and_new(tmp_path)
    real_save = checkpoint._checkpointer().__class__.save

    def crash_midway(self, directory, *args, **kwargs):
        real_save(self, directory, *args, **kwargs)  # the arrays are written...
        raise KeyboardInterrupt  # ...and the process is interrupted before tlean.json

    monkeypatch.setattr(checkpoint._checkpointer().__class__, "save", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(tmp_path / "ckpt", new)
    monkeypatch.undo()
    assert_bit_equal(checkpoint.restore(tmp_path / "ckpt", like=old), old)
    assert checkpoint.read_metadata(tmp_path / "ckpt") == {"which": "old"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # the partial write was cleaned up


# A simulated crash or a corrupted file leaves orbax's background readers to be collected
# with the exception they were raising; pytest would print those as unraisable warnings.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_interrupted_overwrite_between_renames_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    old, new = _old_and_new(tmp_path)
    real_rename = checkpoint._rename
    calls = []

    def rename_then_crash(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # old moved aside, new not yet in place
            raise KeyboardInterrupt
        real_rename(src, dst)

    monkeypatch.setattr(checkpoint, "_rename", rename_then_crash)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(tmp_path / "ckpt", new)
    monkeypatch.undo()
    assert_bit_equal(checkpoint.restore(tmp_path / "ckpt", like=old), old)  # put back by the save's cleanup
    checkpoint.save(tmp_path / "ckpt", new)  # and a later save completes normally
    assert_bit_equal(checkpoint.restore(tmp_path / "ckpt", like=new), new)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_killed_save_leaves_the_old_checkpoint_loadable(tmp_path):
    """A process killed outright (no cleanup runs) in the middle of an overwrite."""
    old, new = _old_and_new(tmp_path)
    for crash_point in ("before_meta", "between_renames"):
        script = textwrap.dedent(f"""
            import os
            from tlean import checkpoint, nn
            new = nn.run(1, nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 3)))
            if {crash_point!r} == "before_meta":
                cls = checkpoint._checkpointer().__class__
                real = cls.save
                def save(self, *a, **k):
                    real(self, *a, **k)
                    os._exit(9)
                cls.save = save
            else:
                real = checkpoint._rename
                calls = []
                def rename(src, dst):
                    calls.append(1)
                    if len(calls) == 2:
                        os._exit(9)
                    real(src, dst)
                checkpoint._rename = rename
            checkpoint.save({str(tmp_path / "ckpt")!r}, new)
        """)
        proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 9, proc.stderr
        if crash_point == "between_renames":
            assert not (tmp_path / "ckpt").exists()
            with pytest.warns(UserWarning, match="a save was interrupted while replacing it"):
                restored = checkpoint.restore(tmp_path / "ckpt", like=old)
        else:
            restored = checkpoint.restore(tmp_path / "ckpt", like=old)
        assert_bit_equal(restored, old)
    checkpoint.save(tmp_path / "ckpt", new)  # the next save cleans up what the crashes left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    assert_bit_equal(checkpoint.restore(tmp_path / "ckpt", like=new), new)


def test_save_refuses_to_replace_what_is_not_a_checkpoint(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a tlean checkpoint; refusing to replace it"):
        checkpoint.save(tmp_path / "notes", make_model())
    with pytest.raises(CheckpointError, match="refusing to delete it"):
        checkpoint.delete(tmp_path / "notes")
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me"
    checkpoint.save(tmp_path / "m", make_model())
    with pytest.raises(FileExistsError, match="pass overwrite=True"):
        checkpoint.save(tmp_path / "m", make_model(), overwrite=False)
    checkpoint.delete(tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_resume_from_checkpoint_equals_an_uninterrupted_run(tmp_path):
    optimizer = optax.adam(1e-2)
    x = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    batches = train.Minibatches((x, (x[:, 0] > 0).astype(np.int32)), 16)
    fresh = lambda: train.TrainState.create(make_model(), optimizer, key=2)
    step = train.make_train_step(train.classification_loss, optimizer)

    straight = fresh()
    for i in range(10):
        straight, _ = step(straight, batches(i))

    state = fresh()
    for i in range(4):
        state, _ = step(state, batches(i))
    checkpoint.save(tmp_path / "mid", state)
    del state  # the process "stops" here
    resumed = checkpoint.restore(tmp_path / "mid", like=jax.eval_shape(fresh))
    for i in range(int(resumed.step), 10):
        resumed, _ = step(resumed, batches(i))
    assert_bit_equal(resumed, straight)


def test_restore_places_arrays_with_the_shardings_of_like(tmp_path):
    """On 4 CPU devices, an abstract `like` with NamedShardings restores sharded arrays."""
    script = textwrap.dedent(f"""
        import os
        os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
        import jax, numpy as np
        from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
        from tlean import checkpoint, nn
        model = nn.run(0, nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)))
        checkpoint.save({str(tmp_path / "m")!r}, model)
        mesh = Mesh(np.array(jax.devices()), ("data",))
        like = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=NamedSharding(
            mesh, P("data") if a.shape[0] % 4 == 0 else P())), model)
        restored = checkpoint.restore({str(tmp_path / "m")!r}, like=like)
        w = restored.params[0]["weight"]
        assert w.sharding == NamedSharding(mesh, P("data")), w.sharding
        assert len(w.addressable_shards) == 4 and w.addressable_shards[0].data.shape == (4, 8)
        np.testing.assert_array_equal(np.asarray(w), np.asarray(model.params[0]["weight"]))
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]
