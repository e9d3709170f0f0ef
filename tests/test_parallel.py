"""tlean.parallel: data-parallel and FSDP training on 8 CPU devices, checked against one device.

The multi-device checks run in a subprocess started with
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` (the flag must be set before jax
is imported, and this test process has already imported it). The subprocess runs
:func:`_worker`, which trains the same model the same way on one device, data-parallel
on a ``{"data": 8}`` mesh and FSDP-sharded on a ``{"data": 2, "fsdp": 4}`` mesh, and
writes what it saw to a JSON file that the tests below read.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from tlean import nn, parallel

ROOT = Path(__file__).resolve().parents[1]
STEPS = 4
FSDP_RULES = [(r".*\.weight", P("fsdp", None)), (r"[03]\.bias", P("fsdp"))]


def _builder():
    # Dropout checks that the dropout keys, too, do not depend on the sharding.
    return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.25), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 4))


def _batches():
    rng = np.random.default_rng(0)
    return [
        (rng.standard_normal((16, 8)).astype(np.float32), rng.integers(0, 4, 16).astype(np.int32)) for _ in range(STEPS)
    ]


def _spec(array) -> list:
    """A NamedSharding's spec as JSON: one entry per dimension (None, a name, or a list of names)."""
    return [list(a) if isinstance(a, tuple) else a for a in array.sharding.spec]


def _worker(out_path: str) -> None:
    """Run in the 8-device subprocess: train, record losses, shardings and errors."""
    import optax

    from tlean import train

    optimizer = optax.adam(1e-2)
    loss_fn = train.classification_loss
    batches = _batches()
    result = {"devices": jax.device_count()}

    state = train.TrainState.create(nn.run(0, _builder()), optimizer, key=1)
    step = train.make_train_step(loss_fn, optimizer)
    losses = []
    for batch in batches:
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"]))
    result["single"] = losses
    result["single_params"] = [np.asarray(leaf).tolist() for leaf in jax.tree.leaves(state.model.params)]

    setups = {
        "dp": ({"data": 8}, [], "data"),
        "fsdp": ({"data": 2, "fsdp": 4}, FSDP_RULES, ("data", "fsdp")),
    }
    for name, (axes, rules, batch_axis) in setups.items():
        mesh = parallel.make_mesh(axes)
        state = train.TrainState.create_sharded(_builder(), 0, optimizer, rules, mesh, key=1)
        shardings = state.shardings(rules, mesh, optimizer)
        step = parallel.shard_step(train.make_train_step(loss_fn, optimizer), shardings, mesh, batch_axis=batch_axis)
        initial = {
            "weight0": _spec(state.model.params[0]["weight"]),
            "weight0_shard": list(state.model.params[0]["weight"].addressable_shards[0].data.shape),
            "bias0": _spec(state.model.params[0]["bias"]),
            "bias3": _spec(state.model.params[3]["bias"]),
            "bias5": _spec(state.model.params[5]["bias"]),
            "mu_weight0": _spec(state.opt_state[0].mu[0]["weight"]),
            "count": _spec(state.opt_state[0].count),
        }
        losses = []
        for batch in batches:
            sharded = parallel.shard_batch(batch, mesh, batch_axis)
            if not losses:
                result[f"{name}_batch"] = [_spec(sharded[0]), list(sharded[0].addressable_shards[0].data.shape)]
            state, metrics = step(state, sharded)
            losses.append(float(metrics["loss"]))
        result[name] = losses
        result[f"{name}_initial"] = initial
        result[f"{name}_after"] = {
            "weight0": _spec(state.model.params[0]["weight"]),
            "mu_weight0": _spec(state.opt_state[0].mu[0]["weight"]),
        }
        result[f"{name}_params"] = [np.asarray(leaf).tolist() for leaf in jax.tree.leaves(state.model.params)]

    mesh = parallel.make_mesh({"data": 2, "fsdp": 4})
    sharded = parallel.init_sharded(_builder(), 0, FSDP_RULES, mesh)
    eager = nn.run(0, _builder())
    result["init_sharded_equal"] = all(
        bool((np.asarray(a) == np.asarray(b)).all()) for a, b in zip(jax.tree.leaves(sharded), jax.tree.leaves(eager))
    )
    result["init_sharded_shard"] = list(sharded.params[3]["weight"].addressable_shards[0].data.shape)

    errors = {}
    for label, fn in {
        "indivisible_batch": lambda: parallel.shard_batch(
            (np.zeros((12, 8), np.float32), np.zeros((12,), np.int32)), parallel.make_mesh({"data": 8})
        ),
        "indivisible_batch_2d": lambda: parallel.shard_batch(
            (np.zeros((12, 3)),), parallel.make_mesh({"data": 2, "fsdp": 4}), ("data", "fsdp")
        ),
        "indivisible_param": lambda: parallel.param_shardings(
            nn.run(0, nn.Linear(3, 6)), [(r"weight", P("fsdp"))], parallel.make_mesh({"data": 2, "fsdp": 4})
        ),
        "unknown_axis": lambda: parallel.param_shardings(
            nn.run(0, nn.Linear(4, 8)), [(r"weight", P("model"))], parallel.make_mesh({"data": 8})
        ),
        "bad_mesh": lambda: parallel.make_mesh({"data": 3}),
    }.items():
        try:
            fn()
            errors[label] = None
        except ValueError as err:
            errors[label] = str(err)
    result["errors"] = errors
    Path(out_path).write_text(json.dumps(result))


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("parallel") / "result.json"
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    code = "import sys; from tests.test_parallel import _worker; _worker(sys.argv[1])"
    proc = subprocess.run(
        [sys.executable, "-c", code, str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    if proc.returncode != 0:
        pytest.fail(f"the 8-device worker failed:\n{proc.stderr[-4000:]}")
    return json.loads(out.read_text())


def test_worker_sees_eight_devices(results):
    assert results["devices"] == 8


@pytest.mark.parametrize("name", ["dp", "fsdp"])
def test_loss_trajectory_matches_single_device(results, name):
    # Only the order of the reductions differs between the layouts: float tolerance.
    np.testing.assert_allclose(results[name], results["single"], rtol=1e-5, atol=1e-6)
    assert results["single"][0] != results["single"][-1]  # the model did train
    for got, want in zip(results[f"{name}_params"], results["single_params"]):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)


def test_data_parallel_replicates_params_and_splits_batch(results):
    assert results["dp_initial"]["weight0"] == []  # P(): replicated
    assert results["dp_initial"]["weight0_shard"] == [32, 8]
    assert results["dp_batch"] == [["data"], [2, 8]]  # 16 examples over 8 devices


def test_fsdp_params_land_with_the_requested_shardings(results):
    initial = results["fsdp_initial"]
    assert initial["weight0"] == ["fsdp", None]
    assert initial["weight0_shard"] == [8, 8]  # [32, 8] split 4 ways on dim 0
    assert initial["bias0"] == ["fsdp"] and initial["bias3"] == ["fsdp"]
    assert initial["bias5"] == []  # no rule matches "5.bias": replicated
    assert initial["mu_weight0"] == ["fsdp", None]  # Adam's moments follow their params
    assert initial["count"] == []
    assert results["fsdp_after"] == {"weight0": ["fsdp", None], "mu_weight0": ["fsdp", None]}
    assert results["fsdp_batch"] == [[["data", "fsdp"]], [2, 8]]


def test_init_sharded_equals_eager_init_bit_for_bit(results):
    assert results["init_sharded_equal"]
    assert results["init_sharded_shard"] == [4, 32]  # 3.weight [16, 32] split 4 ways


def test_errors_are_clear(results):
    errors = results["errors"]
    assert (
        "batch size 12" in errors["indivisible_batch"]
        and "8 devices of mesh axis 'data'" in errors["indivisible_batch"]
    )
    assert "multiple of 8" in errors["indivisible_batch_2d"] and "('data', 'fsdp')" in errors["indivisible_batch_2d"]
    assert "weight (shape (6, 3))" in errors["indivisible_param"] and "size 6" in errors["indivisible_param"]
    assert "no axis 'model'" in errors["unknown_axis"]
    assert "multiply to 3, but there are 8 devices" in errors["bad_mesh"]


# -- single-device checks (this process) ---------------------------------------------------
def test_param_specs_first_match_wins_and_fullmatch():
    model = nn.run(0, nn.Sequential(*[nn.Linear(2, 2) for _ in range(12)]))
    rules = [(r"1\.weight", P("a")), (r".*\.weight", P("b")), (r"1\.bias", P("c"))]
    specs = parallel.param_specs(model, rules)
    assert specs.params[1]["weight"] == P("a")
    assert specs.params[11]["weight"] == P("b")  # "1\.weight" must match the whole name
    assert specs.params[1]["bias"] == P("c")
    assert specs.params[0]["bias"] == P()


def test_param_specs_of_plain_params_and_nested_models():
    model = nn.run(0, nn.Sequential(nn.Linear(2, 2)))
    assert parallel.param_specs(model.params, [(r"0\.weight", P("x"))])[0]["weight"] == P("x")
    nested = {"model": model}
    assert parallel.param_specs(nested, [(r"model\.0\.weight", P("x"))])["model"].params[0]["weight"] == P("x")


def test_bad_rules_raise():
    model = nn.run(0, nn.Linear(2, 2))
    with pytest.raises(TypeError, match="must be a jax.sharding.PartitionSpec"):
        parallel.param_specs(model, [("weight", ("fsdp",))])
    with pytest.raises(TypeError, match=r"rules\[0\] must be a pair"):
        parallel.param_specs(model, ["weight"])
    mesh = parallel.make_mesh({"data": 1})
    with pytest.raises(ValueError, match=r"weight \(shape \(2, 2\)\).*3 entries but the array has rank 2"):
        parallel.param_shardings(model, [("weight", P("data", None, None))], mesh)


def test_make_mesh_sizes():
    n = jax.device_count()
    assert dict(parallel.make_mesh().shape) == {"data": n}
    assert dict(parallel.make_mesh({"data": -1, "fsdp": 1}).shape) == {"data": n, "fsdp": 1}
    with pytest.raises(ValueError, match="at most one axis may have size -1"):
        parallel.make_mesh({"a": -1, "b": -1})
    with pytest.raises(ValueError, match="positive ints or -1"):
        parallel.make_mesh({"data": 0})


def test_scalar_in_batch_raises():
    with pytest.raises(ValueError, match="is a scalar"):
        parallel.shard_batch((np.zeros(()),), parallel.make_mesh())
