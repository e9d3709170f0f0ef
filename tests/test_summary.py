"""Model.summary's FLOPs column: XLA's cost analysis of each row's layer, each FLOP counted in one row, the
total the sum of the rows."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import pytest

from tlean import Layer, nn, seq
from tlean import layers as L


def table(model, shape, dtype=jnp.float32):
    """``([(path, flops or None, params)], total FLOPs, total params)`` parsed from the summary text."""
    lines = model.summary(shape, dtype).splitlines()
    header = lines[2].split()
    assert header[-2:] == ["FLOPs", "params"], header
    rows = []
    for line in lines[4:-3]:
        parts = line.split()
        flops = None if parts[-2] == "-" else int(parts[-2].replace(",", ""))
        rows.append((parts[0], flops, int(parts[-1].replace(",", ""))))
    assert set(lines[-3]) == {"-"}
    assert lines[-2].startswith("total FLOPs: ") and lines[-1].startswith("total params: ")
    return rows, int(lines[-2].split(": ")[1].replace(",", "")), int(lines[-1].split(": ")[1].replace(",", ""))


def xla_flops(fn, *args):
    return int(jax.jit(fn).lower(*args).cost_analysis()["flops"])


@pytest.mark.parametrize("batch, n_in, n_out", [(5, 4, 8), (3, 16, 2), (1, 7, 7)])
def test_linear_flops_are_a_matmul_and_a_bias_and_rows_add_up(batch, n_in, n_out):
    model = jax.eval_shape(
        lambda: nn.run(0, nn.Sequential(nn.Linear(n_in, n_out), nn.ReLU(), nn.Linear(n_out, 3, bias=False)))
    )
    rows, total, params = table(model, (batch, n_in))
    assert [(p, f) for p, f, _ in rows] == [
        ("0", 2 * batch * n_in * n_out + batch * n_out),  # x @ W.T: a multiply and an add per term; + bias
        ("1", batch * n_out),  # ReLU: one max per element
        ("2", 2 * batch * n_out * 3),  # no bias
    ]
    assert total == sum(f for _, f, _ in rows) and params == model.num_params()


def test_a_composite_row_counts_only_its_own_ops_and_a_stacked_child_every_copy():
    """A residual block's row holds its addition and ReLU (its children's rows hold theirs); a Stacked child,
    which XLA would cost once (a loop body), counts once per copy; the total is the whole network's cost."""

    @dataclass(frozen=True)
    class Block(Layer):
        fc1: Layer
        fc2: Layer

        def apply(self, params, state, x, *, key=None, train=False):
            c = self.bind(params, state, key=key, train=train)
            return x + c.fc2(jax.nn.relu(c.fc1(x))), c.state

    batch, d = 3, 4
    net = seq(L.Linear(2, d), L.Stacked(Block(L.Linear(d, 8), L.Linear(8, d)), 3))
    model = jax.eval_shape(lambda: nn.run(0, nn.build(net)))  # summary needs shapes only
    rows, total, _ = table(model, (batch, 2))
    flops = {p: f for p, f, _ in rows}
    assert flops["1.*.fc1"] == 3 * (2 * batch * d * 8 + batch * 8)
    assert flops["1.*.fc2"] == 3 * (2 * batch * 8 * d + batch * d)
    assert flops["1.*"] == 3 * (batch * 8 + batch * d)  # the ReLU and the residual add, per copy
    assert flops["1"] == 0  # Stacked adds no arithmetic of its own
    assert total == sum(flops.values())
    # the same network unrolled, costed whole by XLA
    block = Block(L.Linear(d, 8), L.Linear(8, d))
    unrolled = seq(L.Linear(2, d), block, block, block)
    params, state = jax.eval_shape(unrolled.init, jax.random.key(0))
    x = jax.ShapeDtypeStruct((batch, 2), jnp.float32)
    assert total == xla_flops(lambda p, s, v: unrolled.apply(p, s, v)[0], params, state, x)


def test_a_single_layer_model_has_one_row_and_a_dropout_costs_nothing():
    model = nn.run(0, nn.build(L.Conv2d(2, 3, 3, padding=1)))
    rows, total, _ = table(model, (1, 2, 5, 5))
    params, state = jax.eval_shape(L.Conv2d(2, 3, 3, padding=1).init, jax.random.key(0))
    x = jax.ShapeDtypeStruct((1, 2, 5, 5), jnp.float32)
    expected = xla_flops(lambda p, s, v: L.Conv2d(2, 3, 3, padding=1).apply(p, s, v)[0], params, state, x)
    assert [f for _, f, _ in rows] == [expected] == [total]
    assert expected >= 2 * 3 * 2 * 9 * 9  # at least the interior's multiply-adds (padding may be counted)
    rows, total, _ = table(nn.run(0, nn.Sequential(nn.Dropout(0.5), nn.Linear(2, 2))), (4, 2))
    assert rows[0][1] == 0 and total == rows[1][1] == 2 * 4 * 2 * 2 + 4 * 2


def test_flops_false_leaves_the_column_out_and_keeps_the_old_table():
    model = jax.eval_shape(lambda: nn.run(0, nn.Sequential(nn.Linear(4, 8), nn.ReLU())))
    lines = model.summary((2, 4), flops=False).splitlines()
    assert lines[2].split() == ["#", "layer", "output", "shape", "params"]
    assert lines[4].split()[-3:] == ["(2,", "8)", "40"] and lines[-1] == "total params: 40"
    assert not any("FLOPs" in line for line in lines)
    assert len({len(lines[1]), len(lines[3]), len(lines[-2])}) == 1 and len(lines[1]) == len(lines[4].rstrip())
