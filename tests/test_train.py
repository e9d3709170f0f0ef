"""tlean.train: the train step equals the update done by hand, compiles once, donates,
threads state and dropout keys; evaluate, Minibatches, fit (history, eval, checkpoints, resume)."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tlean import Layer, Model, checkpoint, nn, seq, train
from tlean.layers import Dropout, Linear, relu
from tlean.train import classification_loss


@dataclass(frozen=True)
class RunningMean(Layer):
    """A stateful test layer: ``y = x * scale``; in training it counts batches (int32) and
    tracks the running mean of x (float32), as BatchNorm does with its statistics."""

    features: int

    def init(self, key):
        return {"scale": jnp.ones((self.features,))}, {
            "count": jnp.zeros((), jnp.int32),
            "mean": jnp.zeros((self.features,)),
        }

    def apply(self, params, state, x, *, key=None, train=False):
        if train:
            state = {"count": state["count"] + 1, "mean": 0.9 * state["mean"] + 0.1 * x.mean(0)}
        return x * params["scale"][None, :], state


def make_model(seed=0, dropout=0.0):
    layers = [nn.Linear(4, 16), nn.ReLU()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    return nn.run(seed, nn.Sequential(*layers, nn.Linear(16, 3)))


def data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 1).astype(np.int32)
    return x, y


def test_train_step_equals_the_update_done_by_hand():
    model = make_model(dropout=0.5)
    optimizer = optax.adam(1e-2)
    state = train.TrainState.create(model, optimizer, key=7)
    batch = data(16)
    # by hand, before the step donates the state's buffers
    next_key, dropout_key = jax.random.split(state.key)

    @jax.jit
    def by_hand(model, opt_state, batch):
        def loss(params):
            logits = model.replace(params=params)(batch[0], key=dropout_key, train=True)
            return optax.softmax_cross_entropy_with_integer_labels(logits, batch[1]).mean()

        value, grads = jax.value_and_grad(loss)(model.params)
        updates, opt_state = optimizer.update(grads, opt_state, model.params)
        return value, optax.apply_updates(model.params, updates), opt_state

    want_loss, want_params, want_opt = by_hand(model, state.opt_state, batch)
    want_key = jax.random.key_data(next_key)
    state, metrics = train.make_train_step(train.classification_loss, optimizer)(state, batch)
    assert int(state.step) == 1
    np.testing.assert_array_equal(jax.random.key_data(state.key), want_key)
    np.testing.assert_allclose(metrics["loss"], want_loss, rtol=1e-6)
    for got, want in zip(
        jax.tree.leaves((state.model.params, state.opt_state)), jax.tree.leaves((want_params, want_opt))
    ):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_dropout_key_is_fresh_at_every_step():
    """Same params and batch, two successive keys: the dropout masks (hence the losses) differ."""
    optimizer = optax.sgd(0.0)  # params never move, so only the dropout key changes the loss
    state = train.TrainState.create(make_model(dropout=0.5), optimizer, key=3)
    step = train.make_train_step(train.classification_loss, optimizer)
    losses = []
    for _ in range(3):
        state, metrics = step(state, data(16))
        losses.append(float(metrics["loss"]))
    assert len(set(losses)) == 3


def test_train_step_traces_and_compiles_once(caplog):
    traces = []

    def loss_fn(model, batch, *, key, train):
        traces.append(1)  # runs only while tracing
        return classification_loss(model, batch, key=key, train=train)

    model = nn.run(
        0, nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 3), nn.build(RunningMean(3)))
    )
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(optax.cosine_decay_schedule(1e-2, 10)))
    state = train.TrainState.create(model, optimizer, key=0)
    step = train.make_train_step(loss_fn, optimizer)
    minibatches = train.Minibatches(data(64), 8)
    state, _ = step(state, minibatches(0))
    caplog.set_level(logging.WARNING)
    with jax.log_compiles(True):
        for i in range(1, 6):
            state, _ = step(state, minibatches(i))
    compiled = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Compiling jit(step)")]
    assert compiled == []
    assert len(traces) == 1
    assert step._cache_size() == 1
    assert int(state.step) == 6


def test_train_step_donates_the_state():
    optimizer = optax.sgd(0.1)
    state = train.TrainState.create(make_model(), optimizer)
    step = train.make_train_step(train.classification_loss, optimizer)
    weight = state.model.params[0]["weight"]
    new_state, _ = step(state, data(8))
    if jax.default_backend() == "cpu" or weight.is_deleted():
        assert weight.is_deleted()
    kept = train.make_train_step(train.classification_loss, optimizer, donate=False)
    weight = new_state.model.params[0]["weight"]
    kept(new_state, data(8))
    assert not weight.is_deleted()


def test_the_users_model_and_state_stay_usable_after_create_step_and_fit():
    """The train step donates the state it trains, but never arrays the caller holds: create copies the model
    (and key), fit copies the state. (Before: "Array has been deleted" on the user's model and state.)"""
    model, key = make_model(), jax.random.key(5)
    x, y = data(8)
    before = np.asarray(model(x))
    optimizer = optax.sgd(0.1)
    state = train.TrainState.create(model, optimizer, key=key)
    step = train.make_train_step(classification_loss, optimizer)
    state, _ = step(state, (x, y))
    np.testing.assert_array_equal(model(x), before)  # the user's model, untouched
    assert jax.random.key_data(key).shape == (2,)
    fresh = train.TrainState.create(model, optimizer, key=1)
    trained, _ = train.fit(
        fresh, classification_loss, optimizer, lambda i: (x, y), steps=2, log=train.LogConfig(progress=False)
    )
    assert int(trained.step) == 2 and int(fresh.step) == 0
    np.testing.assert_array_equal(fresh.model(x), before)  # the state given to fit, still usable
    again, _ = step(fresh, (x, y))  # and trainable
    assert int(again.step) == 1


def test_an_opt_state_from_another_optimizer_or_model_is_named():
    model = make_model()
    batch = data(8)
    sgd_state = train.TrainState.create(model, optax.sgd(0.1))
    with pytest.raises(
        TypeError,
        match=r"opt_state does not come from this optimizer and model: optimizer.init\("
        r"model.params\) gives \(ScaleByAdamState, EmptyState\) with 9 arrays, the "
        r"state holds \(EmptyState, EmptyState\) with 0 arrays",
    ):
        train.make_train_step(classification_loss, optax.adam(1e-2), donate=False)(sgd_state, batch)
    other = train.TrainState.create(
        nn.run(0, nn.Sequential(nn.Linear(4, 9), nn.ReLU(), nn.Linear(9, 3))), optax.adam(1e-2)
    )
    mixed = train.TrainState.create(model, optax.adam(1e-2)).replace(opt_state=other.opt_state)
    with pytest.raises(
        ValueError,
        match=r"opt_state does not match the model's params \(was it made for another "
        r"model\?\): opt_state\[0\]\.mu\[0\]\['bias'\]: expected float32\[16\], "
        r"got float32\[9\]",
    ):
        train.make_train_step(classification_loss, optax.adam(1e-2), donate=False)(mixed, batch)


def test_state_is_threaded_and_only_params_are_differentiated():
    """The int32 counter and running mean advance as the layer says; the optimiser sees params only."""
    model = nn.run(0, nn.Sequential(nn.Linear(4, 3), nn.build(RunningMean(3))))
    optimizer = optax.sgd(0.1)
    state = train.TrainState.create(model, optimizer)
    step = train.make_train_step(train.classification_loss, optimizer, donate=False)
    x, y = data(8)
    mean = np.zeros(3, np.float32)
    for _ in range(2):
        mean = 0.9 * mean + 0.1 * np.asarray(state.model[0](x)).mean(0)
        state, _ = step(state, (x, y))
    running = state.model.state[1]
    assert running["count"].dtype == jnp.int32 and int(running["count"]) == 2
    np.testing.assert_allclose(running["mean"], mean, rtol=1e-6)
    assert jax.tree.structure(state.opt_state) == jax.tree.structure(optimizer.init(model.params))
    assert not np.allclose(state.model.params[1]["scale"], 1.0)  # the stateful layer's params train too


def test_loss_fn_contract_errors():
    optimizer = optax.sgd(0.1)
    state = train.TrainState.create(make_model(), optimizer)
    batch = data(8)

    def bare_loss(model, batch, *, key, train):
        return model(batch[0]).sum()

    with pytest.raises(TypeError, match=r"must return \(loss, \(model, metrics\)\)"):
        train.make_train_step(bare_loss, optimizer)(state, batch)

    def vector_loss(model, batch, *, key, train):
        logits, model = model.forward(batch[0], train=train)
        return logits.sum(-1), (model, {})

    with pytest.raises(TypeError, match=r"scalar loss, got shape \(8,\)"):
        train.make_train_step(vector_loss, optimizer, donate=False)(state, batch)

    def other_layer(model, batch, *, key, train):
        logits, _ = model.forward(batch[0], train=train)
        return logits.sum(), (Model(relu, {}, {}), {})

    with pytest.raises(TypeError, match="a model of a different layer"):
        train.make_train_step(other_layer, optimizer, donate=False)(state, batch)

    def vector_metric(model, batch, *, key, train):
        logits, model = model.forward(batch[0], train=train)
        return logits.sum(), (model, {"per_example": logits.sum(-1)})

    with pytest.raises(TypeError, match="metric 'per_example' must be a scalar"):
        train.make_train_step(vector_metric, optimizer, donate=False)(state, batch)

    with pytest.raises(TypeError, match="takes a tlean Model"):
        train.TrainState.create(state.model.params, optimizer)


def test_evaluate_weights_batches_by_size():
    model = make_model()
    x, y = data(10)
    got = train.evaluate(train.classification_loss, model, train.eval_batches((x, y), 4))  # 4 + 4 + 2
    logits = model(x)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    np.testing.assert_allclose(got["loss"], float(loss), rtol=1e-5)
    np.testing.assert_allclose(got["accuracy"], float(np.mean(np.argmax(logits, -1) == y)), rtol=1e-6)
    with pytest.raises(ValueError, match="no batches"):
        train.evaluate(train.classification_loss, model, [])


def test_evaluate_uses_eval_mode():
    """Dropout is off and the state is not touched in evaluation."""
    model = nn.run(0, nn.Sequential(nn.Linear(4, 3), nn.Dropout(0.9), nn.build(RunningMean(3))))
    x, y = data(8)
    got = train.evaluate(train.classification_loss, model, [(x, y)])
    loss = optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()
    np.testing.assert_allclose(got["loss"], float(loss), rtol=1e-6)


def test_minibatches_cover_each_epoch_and_depend_only_on_the_step():
    x = np.arange(10)
    batches = train.Minibatches((x, -x), batch_size=3, seed=5)
    assert batches.steps_per_epoch == 3
    epoch0 = np.concatenate([batches(i)[0] for i in range(3)])
    assert len(set(epoch0.tolist())) == 9  # one example left over, dropped
    again = train.Minibatches((x, -x), batch_size=3, seed=5)
    for step in (7, 2, 4, 0):
        np.testing.assert_array_equal(batches(step)[0], again(step)[0])
        np.testing.assert_array_equal(batches(step)[1], -batches(step)[0])
    assert not np.array_equal(np.concatenate([batches(i)[0] for i in range(3, 6)]), epoch0)
    with pytest.raises(ValueError, match="batch_size must be an int in \\[1, 10\\], got 11"):
        train.Minibatches((x,), 11)
    with pytest.raises(ValueError, match="share their leading length"):
        train.Minibatches((x, x[:5]), 2)


def test_fit_trains_evaluates_logs_and_checkpoints(tmp_path, capsys):
    x, y = data(128)
    optimizer = optax.adam(1e-2)
    state = train.TrainState.create(make_model(), optimizer, key=1)
    before = train.evaluate(train.classification_loss, state.model, [(x, y)])["loss"]
    state, history = train.fit(
        state,
        train.classification_loss,
        optimizer,
        train.Minibatches((x, y), 32),
        steps=40,
        eval=train.EvalConfig([(x, y)], every=20),
        checkpoints=train.CheckpointConfig(tmp_path, every=10, keep=2),
        log=train.LogConfig(every=10, desc="unit-fit"),
    )
    assert int(state.step) == 40
    assert [r["step"] for r in history.train] == [10, 20, 30, 40]
    assert [r["step"] for r in history.eval] == [20, 40]
    assert history.train[-1]["loss"] < history.train[0]["loss"]
    assert history.eval[-1]["loss"] < before
    assert all(r["examples_per_sec"] > 0 for r in history.train)
    steps, acc = history.series("accuracy", "eval")
    assert steps == [20, 40] and all(0 <= a <= 1 for a in acc)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_00000030", "step_00000040"]
    assert train.latest_checkpoint(tmp_path).name == "step_00000040"
    saved = checkpoint.read_metadata(tmp_path / "step_00000040")["history"]
    assert saved == history.to_dict()
    assert "unit-fit" in capsys.readouterr().err  # the progress bar


def _leaves(state):
    return [
        np.asarray(jax.random.key_data(v) if jax.dtypes.issubdtype(v.dtype, jax.dtypes.prng_key) else v)
        for v in jax.tree.leaves(state)
    ]


def conv_model(seed=0):
    """BatchNorm (int32 and float state) and Dropout (keys) in one small model on 1x4x4 images."""
    return nn.run(
        seed,
        nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.3), nn.Flatten(), nn.Linear(64, 3)
        ),
    )


def image_data(n=64, seed=0):
    x, y = data(n, seed)
    return np.tile(x, (1, 4)).reshape(n, 1, 4, 4), y


def test_batchnorm_model_trains_with_one_compilation():
    traces = []

    def loss_fn(model, batch, *, key, train):
        traces.append(1)
        return classification_loss(model, batch, key=key, train=train)

    model = conv_model()
    optimizer = optax.sgd(0.05, momentum=0.9)
    state = train.TrainState.create(model, optimizer, key=0)
    step = train.make_train_step(loss_fn, optimizer)
    batches = train.Minibatches(image_data(), 16)
    for i in range(4):
        state, _ = step(state, batches(i))
    assert len(traces) == 1 and step._cache_size() == 1
    bn = state.model.state[1]
    assert bn["num_batches_tracked"].dtype == jnp.int32 and int(bn["num_batches_tracked"]) == 4
    assert not np.allclose(bn["running_mean"], 0.0) and not np.allclose(bn["running_var"], 1.0)
    assert jax.tree.structure(state.opt_state) == jax.tree.structure(optimizer.init(model.params))


def test_fit_resumes_bit_identically(tmp_path):
    """Stop at step 12, resume from the checkpoint to 30: the same state, bit for bit, as 30 straight
    (BatchNorm statistics, dropout keys, optimiser moments included)."""
    x, y = image_data(96)
    optimizer = optax.adam(3e-3)
    fresh = lambda: train.TrainState.create(conv_model(), optimizer, key=4)
    kwargs = dict(
        loss_fn=train.classification_loss,
        optimizer=optimizer,
        train_data=train.Minibatches((x, y), 16, seed=2),
        log=train.LogConfig(every=6, progress=False),
    )
    straight, _ = train.fit(fresh(), steps=30, **kwargs)
    _first, _ = train.fit(fresh(), steps=12, checkpoints=train.CheckpointConfig(tmp_path, every=6), **kwargs)
    assert train.latest_checkpoint(tmp_path).name == "step_00000012"
    resumed, history = train.fit(fresh(), steps=30, checkpoints=tmp_path, **kwargs)
    assert int(resumed.step) == 30
    for a, b in zip(_leaves(straight), _leaves(resumed)):
        np.testing.assert_array_equal(a, b)
    assert [r["step"] for r in history.train] == [6, 12, 18, 24, 30]  # history carried over
    # a finished run resumes to itself without training
    again, _ = train.fit(fresh(), steps=30, checkpoints=train.CheckpointConfig(tmp_path), **kwargs)
    for a, b in zip(_leaves(resumed), _leaves(again)):
        np.testing.assert_array_equal(a, b)


def _tiny_fit(directory, steps, **kwargs):
    optimizer = optax.sgd(0.1)
    state = train.TrainState.create(nn.run(0, nn.Sequential(nn.Linear(4, 2))), optimizer, key=1)
    return train.fit(
        state,
        classification_loss,
        optimizer,
        train.Minibatches(data(8), 4),
        steps=steps,
        checkpoints=train.CheckpointConfig(directory, **kwargs),
        log=train.LogConfig(progress=False),
    )[0]


def test_fit_without_resume_refuses_a_directory_that_holds_a_run(tmp_path):
    """(Before: resume=False, keep_checkpoints=1 saved its step_2 and then deleted it as "the oldest".)"""
    _tiny_fit(tmp_path, 6)
    with pytest.raises(
        FileExistsError,
        match=r"holds checkpoints of an earlier run \(the newest is step_00000006\); "
        r"with resume=False fit does not mix two runs",
    ):
        _tiny_fit(tmp_path, 2, resume=False, keep=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_00000006"]


def test_fit_rotates_only_its_own_runs_checkpoints(tmp_path):
    _tiny_fit(tmp_path, 4, every=2, keep=5)  # run A: step 2 and 4
    checkpoint.save(tmp_path / "step_00000003", {"x": jnp.ones(2)}, metadata={"run": "someone else"})
    _tiny_fit(tmp_path, 8, every=2, keep=2)  # resumes run A from step 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_00000003", "step_00000006", "step_00000008"]
    runs = {checkpoint.read_metadata(tmp_path / n).get("run") for n in ("step_00000006", "step_00000008")}
    assert len(runs) == 1 and None not in runs  # one run id, carried over by the resume


def test_a_half_deleted_checkpoint_is_skipped_and_cleaned(tmp_path):
    """A step_N left without tlean.json by a crash mid-deletion (an older tlean deleted in place) is not the
    latest checkpoint and is removed by the next fit. (Before: every later save refused "not a tlean checkpoint".)"""
    _tiny_fit(tmp_path, 2, every=1)
    (tmp_path / "step_00000001" / "tlean.json").unlink()
    shutil.copytree(tmp_path / "step_00000001", tmp_path / "step_00000009")
    assert train.latest_checkpoint(tmp_path).name == "step_00000002"
    (tmp_path / "step_00000007").mkdir()
    (tmp_path / "step_00000007" / "notes.txt").write_text("mine")
    with pytest.warns(UserWarning, match=r"step_00000007 is not a tlean checkpoint .* left as it is"):
        state = _tiny_fit(tmp_path, 4, every=1)
    assert int(state.step) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_00000003", "step_00000004", "step_00000007"]


def test_fit_argument_errors():
    optimizer = optax.sgd(0.1)
    state = train.TrainState.create(make_model(), optimizer)
    batches = train.Minibatches(data(16), 4)
    with pytest.raises(ValueError, match="steps must be an int >= 0, got -1"):
        train.fit(state, train.classification_loss, optimizer, batches, steps=-1)
    with pytest.raises(ValueError, match="EvalConfig: every must be a positive int or None, got 0"):
        train.EvalConfig([data(4)], every=0)
    with pytest.raises(TypeError, match="EvalConfig: data must be a sequence of batches"):
        train.EvalConfig(None)
    with pytest.raises(ValueError, match="LogConfig: every must be a positive int, got None"):
        train.LogConfig(every=None)
    with pytest.raises(TypeError, match="LogConfig: log_dir must be a path or None, got int"):
        train.LogConfig(log_dir=3)
    with pytest.raises(ValueError, match="CheckpointConfig: keep must be a positive int, got 0"):
        train.CheckpointConfig("ckpt", keep=0)
    with pytest.raises(ValueError, match="CheckpointConfig: every must be a positive int or None, got True"):
        train.CheckpointConfig("ckpt", every=True)
    with pytest.raises(TypeError, match="CheckpointConfig: resume must be a bool, got 'no'"):
        train.CheckpointConfig("ckpt", resume="no")
    with pytest.raises(TypeError, match="fit: log must be a LogConfig or None, got dict"):
        train.fit(state, train.classification_loss, optimizer, batches, steps=1, log={"every": 1})
    with pytest.raises(TypeError, match="function of the step"):
        train.fit(state, train.classification_loss, optimizer, [data(4)], steps=1)
    # what failed with AttributeError ("'Model' object has no attribute 'step'") or range()'s message
    with pytest.raises(TypeError, match=r"fit takes a TrainState \(TrainState.create\(model, optimizer\)\), got Model"):
        train.fit(state.model, train.classification_loss, optimizer, batches, steps=1)
    with pytest.raises(TypeError, match=r"the train step takes a TrainState .*, got Model"):
        train.make_train_step(train.classification_loss, optimizer)(state.model, data(4))
    with pytest.raises(ValueError, match=r"eval_batches: batch_size must be a positive int, got 0"):
        train.eval_batches(data(4), 0)


def test_fit_old_keywords_still_work_with_a_deprecation_warning(tmp_path):
    """tlean 0.1's fit(eval_data=, eval_every=, log_every=, checkpoint_dir=, ...) gives the same run as the
    configs, for one release, and warns with the new spelling."""
    x, y = data(32)
    optimizer = optax.sgd(0.1)
    fresh = lambda: train.TrainState.create(make_model(), optimizer, key=1)
    args = (train.classification_loss, optimizer, train.Minibatches((x, y), 8))
    with pytest.warns(
        DeprecationWarning,
        match=r"checkpoint_dir=checkpoints.dir, checkpoint_every=checkpoints.every, "
        r"eval_data=eval.data, eval_every=eval.every.*log_every=log.every",
    ):
        old, old_history = train.fit(
            fresh(),
            *args,
            steps=4,
            eval_data=[(x, y)],
            eval_every=2,
            log_every=2,
            checkpoint_dir=tmp_path / "old",
            checkpoint_every=2,
            keep_checkpoints=1,
            progress=False,
        )
    new, new_history = train.fit(
        fresh(),
        *args,
        steps=4,
        eval=train.EvalConfig([(x, y)], every=2),
        checkpoints=train.CheckpointConfig(tmp_path / "new", every=2, keep=1),
        log=train.LogConfig(every=2, progress=False),
    )
    for a, b in zip(_leaves(old), _leaves(new)):
        np.testing.assert_array_equal(a, b)
    assert [r["step"] for r in old_history.eval] == [r["step"] for r in new_history.eval] == [2, 4]
    assert sorted(p.name for p in (tmp_path / "old").iterdir()) == ["step_00000004"]
    with (
        pytest.warns(DeprecationWarning),
        pytest.raises(ValueError, match="eval_every must be a positive int or None, got 0"),
    ):
        train.fit(fresh(), *args, steps=1, eval_every=0)
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="keep must be a positive int, got 0"):
        train.fit(fresh(), *args, steps=1, keep_checkpoints=0)
    with pytest.raises(TypeError, match=r"pass log= or the old keywords \['every'\], not both"):
        train.fit(fresh(), *args, steps=1, log=train.LogConfig(), log_every=2)
    with pytest.raises(
        TypeError,
        match=r"unexpected keyword arguments \['chekpoint_dir'\]; it takes steps=, "
        r"eval=EvalConfig",
    ):
        train.fit(fresh(), *args, steps=1, chekpoint_dir="x")


def _tensorboard_scalars(log_dir):
    """``{tag: [(step, value)]}`` read back from the event files in ``log_dir`` (TFRecord framing: a
    length, its CRC, the Event proto, its CRC), with tensorboardX's own Event proto."""
    import struct

    from tensorboardX.proto import event_pb2

    found = {}
    for file in sorted(log_dir.glob("events.out.tfevents.*")):
        raw, i = file.read_bytes(), 0
        while i < len(raw):
            (length,) = struct.unpack("<Q", raw[i : i + 8])
            event = event_pb2.Event.FromString(raw[i + 12 : i + 12 + length])
            i += 12 + length + 4
            for value in event.summary.value:
                found.setdefault(value.tag, []).append((event.step, value.simple_value))
    return found


def test_fit_writes_tensorboard_scalars(tmp_path, capsys):
    """LogConfig(log_dir=...) writes every logged value (train loss, metrics, throughput; eval metrics) as
    TensorBoard scalars at its step, the same numbers as the history (float32 in the event file), and the
    progress bar still shows the loss and the throughput."""
    x, y = data(64)
    optimizer = optax.adam(1e-2)
    state = train.TrainState.create(make_model(), optimizer, key=1)
    _, history = train.fit(
        state,
        train.classification_loss,
        optimizer,
        train.Minibatches((x, y), 16),
        steps=6,
        eval=train.EvalConfig([(x, y)], every=3),
        log=train.LogConfig(every=2, desc="tb-fit", log_dir=tmp_path / "tb"),
    )
    scalars = _tensorboard_scalars(tmp_path / "tb")
    assert sorted(scalars) == ["eval/accuracy", "eval/loss", "train/accuracy", "train/examples_per_sec", "train/loss"]
    for split, rows in (("train", history.train), ("eval", history.eval)):
        for name in rows[0]:
            if name != "step":
                assert [s for s, _ in scalars[f"{split}/{name}"]] == [r["step"] for r in rows]
                np.testing.assert_allclose(
                    [v for _, v in scalars[f"{split}/{name}"]], [r[name] for r in rows], rtol=1e-6
                )
    assert [s for s, _ in scalars["eval/loss"]] == [3, 6] and [s for s, _ in scalars["train/loss"]] == [2, 4, 6]
    err = capsys.readouterr().err
    assert "tb-fit" in err and "loss=" in err and "ex_per_s=" in err


def test_fit_without_tensorboardx_says_what_to_install(tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_tensorboardx(name, *args, **kwargs):
        if name.startswith("tensorboardX"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboardx)
    optimizer = optax.sgd(0.1)
    state = train.TrainState.create(make_model(), optimizer)
    with pytest.raises(ImportError, match=r"tensorboardX, which is not installed: pip install 'tlean\[examples\]'"):
        train.fit(
            state,
            train.classification_loss,
            optimizer,
            train.Minibatches(data(8), 4),
            steps=1,
            log=train.LogConfig(log_dir=tmp_path, progress=False),
        )
    assert not list(tmp_path.iterdir())


def test_seq_of_layers_trains_through_the_pure_tier():
    """A Model built from layers (not the nn shim) trains the same way."""
    net = seq(Linear(4, 8), relu, Dropout(0.1), Linear(8, 3))
    params, state = net.init(jax.random.key(0))
    optimizer = optax.sgd(0.1)
    ts = train.TrainState.create(Model(net, params, state), optimizer)
    step = train.make_train_step(train.classification_loss, optimizer)
    losses = []
    for i in range(20):
        ts, metrics = step(ts, data(32))
        losses.append(float(metrics["loss"]))
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("module", [train, checkpoint])
def test_public_api_is_documented(module):
    assert module.__doc__ and list(module.__all__) == sorted(module.__all__)
    for name in module.__all__:
        assert getattr(module, name).__doc__, f"{module.__name__}.{name} has no docstring"
