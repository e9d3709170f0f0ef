"""tlean.testing: its checks pass on correct layers (a user-defined composite among them) and fail, with
messages naming what differs, on layers that break them."""

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tlean import Layer, ShapeError, nn, testing
from tlean import layers as L


# -- a user-defined composite with two children, and its torch twin ---------------------------
@dataclass(frozen=True)
class MLP(Layer):
    """fc1 -> exact GELU -> fc2, as a user writes a composite: children are fields, init is derived."""

    fc1: Layer
    fc2: Layer

    def apply(self, params, state, x, *, key=None, train=False):
        c = self.bind(params, state, key=key, train=train)
        return c.fc2(jax.nn.gelu(c.fc1(x), approximate=False)), c.state


class TorchMLP(torch.nn.Module):
    def __init__(self, n_in=4, hidden=8, n_out=3):
        super().__init__()
        self.fc1, self.fc2 = torch.nn.Linear(n_in, hidden), torch.nn.Linear(hidden, n_out)

    def forward(self, x):
        return self.fc2(torch.nn.functional.gelu(self.fc1(x)))


MLP_LAYER = MLP(L.Linear(4, 8), L.Linear(8, 3))


def normal(*shape, seed=1):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def test_a_user_composite_passes_every_check():
    x = normal(3, 4)
    testing.assert_jit_eager_equal(MLP_LAYER, x, train=False)  # no layer inside depends on the mode
    testing.assert_vmap_consistent(MLP_LAYER, normal(2, 3, 4))
    testing.assert_eval_shape(MLP_LAYER, x)
    err = testing.assert_shape_error_at_trace_time(MLP_LAYER, (3, 5))
    assert str(err).startswith("seq.fc1 Linear(in_features=4, out_features=8): expected")
    torch.manual_seed(0)
    errors = testing.assert_torch_parity(MLP_LAYER, TorchMLP(), x, train=False)  # no train-mode layer inside
    assert {
        "eval/output",
        "eval/grad of parameter 'fc1.weight'",
        "eval/grad of parameter 'fc2.bias'",
        "eval/grad of input 0",
    } <= set(errors)
    assert max(errors.values()) < 1e-5


def test_a_builder_and_a_model_are_accepted_as_well():
    torch.manual_seed(0)
    x = normal(2, 5)
    module = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    testing.assert_torch_parity(nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 2)), module, x)
    model = nn.run(3, nn.Sequential(nn.Linear(5, 4), nn.Tanh()))
    assert testing.as_model(model) is model
    testing.assert_jit_eager_equal(model, x, train=False)


@settings(max_examples=2)  # each new shape compiles
@given(testing.inputs(testing.shapes(batch_dims=(0, 2), trailing=(4,), max_side=3)))
def test_strategies_drive_the_checks_on_a_user_composite(x):
    assert x.shape[-1] == 4 and x.dtype == np.float32 and x.ndim <= 3
    testing.assert_eval_shape(MLP_LAYER, x)


@settings(max_examples=10)
@given(
    testing.seeds(),
    testing.dtypes(),
    testing.shapes(batch_dims=(1, 3), trailing=(2, 5)),
    testing.inputs((jax.ShapeDtypeStruct((3,), jnp.int32), (2, 2)), high=4),
)
def test_strategies_draw_what_they_promise(seed, dtype, shape, pair):
    assert 0 <= seed < 2**32 and dtype in (jnp.float32, jnp.bfloat16, jnp.float16)
    assert 3 <= len(shape) <= 5 and shape[-2:] == (2, 5) and all(1 <= d <= 6 for d in shape[:-2])
    ids, x = pair
    assert ids.dtype == np.int32 and ids.shape == (3,) and ((0 <= ids) & (ids < 4)).all()
    assert x.shape == (2, 2) and x.dtype == np.float32


def test_inputs_are_a_function_of_the_drawn_seed():
    drawn = []

    @settings(max_examples=3, database=None)
    @given(testing.inputs((2, 3)))
    def collect(x):
        drawn.append(x)

    collect()
    assert all(a.shape == (2, 3) for a in drawn) and len({a.tobytes() for a in drawn}) == len(drawn)


# -- a deliberately broken layer fails assert_torch_parity naming the parameter ----------------
@dataclass(frozen=True)
class TransposedLinear(L.Linear):
    """A porting bug: torch's weight [out, in] used as [in, out] (shapes agree for a square layer)."""

    def apply(self, params, state, x, *, key=None, train=False):
        return x @ params["weight"] + params["bias"][None, :], state  # x is [batch, in] here


def test_a_wrong_weight_transpose_fails_parity_naming_the_parameter():
    torch.manual_seed(0)
    with pytest.raises(AssertionError) as info:
        testing.assert_torch_parity(TransposedLinear(4, 4), torch.nn.Linear(4, 4), normal(3, 4), train=False)
    message = str(info.value)
    assert "eval/grad of parameter 'weight'" in message and "eval/output" in message
    assert "'bias'" not in message  # its gradient does not depend on the weight: it agrees
    assert "max abs error" in message


def test_a_broken_child_of_a_composite_is_named_by_its_path():
    torch.manual_seed(0)
    broken = MLP(TransposedLinear(4, 4), L.Linear(4, 3))
    with pytest.raises(AssertionError, match=r"grad of parameter 'fc1\.weight'"):
        testing.assert_torch_parity(broken, TorchMLP(4, 4, 3), normal(3, 4), train=False)


def test_a_state_dict_that_does_not_fit_lists_the_keys():
    with pytest.raises(AssertionError, match=r"unexpected keys: \['bias'\]"):
        testing.assert_torch_parity(L.Linear(4, 3, bias=False), torch.nn.Linear(4, 3), normal(2, 4))
    with pytest.raises(AssertionError, match=r"missing keys: \['fc2\.weight', 'fc2\.bias'\]|missing keys: .*fc2"):
        testing.assert_torch_parity(MLP_LAYER, torch.nn.Sequential(), normal(2, 4))


def test_a_torch_tuple_output_needs_the_matching_keyword():
    torch.manual_seed(0)
    module = torch.nn.LSTM(3, 4)
    x = normal(5, 3)
    with pytest.raises(AssertionError, match="output structure differs.*return_final=True"):
        testing.assert_torch_parity(L.LSTM(3, 4), module, x, train=False, grads=False)
    errors = testing.assert_torch_parity(L.LSTM(3, 4), module, x, train=False, kwargs={"return_final": True})
    assert "eval/output[1.0]" in errors and "eval/grad of parameter 'weight_hh_l0'" in errors


def test_train_mode_compares_the_new_state_with_torchs_buffers():
    torch.manual_seed(0)
    module = torch.nn.BatchNorm1d(3)
    errors = testing.assert_torch_parity(L.BatchNorm1d(3), module, normal(6, 3) * 2 + 1)
    assert "train/state 'running_mean'" in errors and errors["train/state 'running_var'"] < 1e-5
    assert float(module.running_mean.abs().sum()) == 0  # the module given is left unchanged

    @dataclass(frozen=True)
    class NoUpdate(L.BatchNorm1d):  # forgets to update the running statistics
        def apply(self, params, state, x, *, key=None, train=False):
            return super().apply(params, state, x, key=key, train=train)[0], state

    with pytest.raises(AssertionError, match="train/state 'running_mean'"):
        testing.assert_torch_parity(NoUpdate(3), module, normal(6, 3) * 2 + 1, grads=False)


# -- each invariant check fails on a layer that violates it ------------------------------------
@dataclass(frozen=True)
class TraceDependent(Layer):
    """Computes something else when traced: jit differs from eager, eval_shape from the real shape."""

    shrink: bool = False

    def apply(self, params, state, x, *, key=None, train=False):
        if isinstance(x, jax.core.Tracer):
            return (x[..., :1] if self.shrink else x + 1.0), state
        return x, state


def test_jit_eager_check_fails_on_a_layer_that_differs_under_jit():
    with pytest.raises(AssertionError, match=r"jit differs from eager:\n.*elements differ, max abs error 1"):
        testing.assert_jit_eager_equal(TraceDependent(), normal(2, 3), train=False)


def test_eval_shape_check_fails_when_eval_shape_mispredicts():
    with pytest.raises(AssertionError, match=r"jax.eval_shape gives"):
        testing.assert_eval_shape(TraceDependent(shrink=True), normal(2, 3))


@jax.custom_batching.custom_vmap
def _doubled_when_batched(x):
    return x


@_doubled_when_batched.def_vmap
def _wrong_rule(axis_size, in_batched, x):
    return 2 * x, in_batched[0]


@dataclass(frozen=True)
class WrongBatchingRule(Layer):
    def apply(self, params, state, x, *, key=None, train=False):
        return _doubled_when_batched(x), state


def test_vmap_check_fails_on_a_wrong_batching_rule():
    testing.assert_vmap_consistent(L.Tanh(), normal(3, 2))
    with pytest.raises(AssertionError, match="vmap differs from a loop at example 0"):
        testing.assert_vmap_consistent(WrongBatchingRule(), normal(3, 2))


@dataclass(frozen=True)
class Broadcasting(Layer):
    """Adds a [1, 4] bias with no shape check: a [n, 1] input broadcasts silently."""

    kind: str = "silent"

    def apply(self, params, state, x, *, key=None, train=False):
        if self.kind == "value-error" and x.shape[-1] != 4:
            raise ValueError("wrong width")
        if self.kind == "anonymous" and x.shape[-1] != 4:
            raise ShapeError("a layer", "input [..., 4]", x.shape)  # does not name the layer
        return x + jnp.ones((1, 4)), state


@pytest.mark.parametrize(
    "kind,message",
    [("silent", "accepted input"), ("value-error", "raised ValueError, not"), ("anonymous", "does not match")],
)
def test_shape_error_check_fails_unless_a_named_shape_error_comes_at_trace_time(kind, message):
    with pytest.raises(AssertionError, match=message):
        testing.assert_shape_error_at_trace_time(Broadcasting(kind), (2, 1))
    err = testing.assert_shape_error_at_trace_time(L.Linear(4, 2), (2, 1), match=r"expected input \[\.\.\., 4\]")
    assert err.got == (2, 1)


def test_trees_close_names_the_leaf():
    with pytest.raises(AssertionError, match=r"output 'b': 1 of 2 elements differ, max abs error 0.5 at index \(1,\)"):
        testing.assert_trees_close({"a": np.zeros(2), "b": np.array([0.0, 0.5])}, {"a": np.zeros(2), "b": np.zeros(2)})
    with pytest.raises(AssertionError, match="structure differs"):
        testing.assert_trees_close((1.0, 2.0), [1.0])
    testing.assert_trees_close(np.array([np.nan, 1.0]), np.array([np.nan, 1.0 + 1e-7]))


def test_strategies_need_sane_arguments():
    with pytest.raises(ValueError, match="batch_dims"):
        testing.shapes(batch_dims=(2, 1))
    with pytest.raises(TypeError, match="input spec"):
        testing.inputs("not a spec")
    with pytest.raises(TypeError, match="Model, Layer or Builder"):
        testing.as_model(st)
