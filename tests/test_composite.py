"""The composite protocol (DESIGN 1.2): sub-layers as fields, derived init, the one walk that names
leaves, the child-call form, keyword routing, ties, frozen params and the combinators."""

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from tests.torch_utils import n, t
from tlean import Layer, ShapeError, check_finite, models, nn, seq, train
from tlean import layers as L
from tlean.interop import load_torch_state_dict, to_torch_state_dict
from tlean.seed import SeedStream


@dataclass(frozen=True)
class Block(Layer):
    """A user's composite: two Linears, a LayerNorm and a residual add, written with apply only."""

    fc1: Layer
    fc2: Layer
    norm: Layer

    def apply(self, params, state, x, *, key=None, train=False):
        c = self.bind(params, state, key=key, train=train)
        return c.norm(x + c.fc2(jax.nn.relu(c.fc1(x)))), c.state


def block(d=4, hidden=8):
    return Block(L.Linear(d, hidden), L.Linear(hidden, d), L.LayerNorm(d))


class TorchBlock(torch.nn.Module):
    def __init__(self, d=4, hidden=8):
        super().__init__()
        self.fc1, self.fc2, self.norm = torch.nn.Linear(d, hidden), torch.nn.Linear(hidden, d), torch.nn.LayerNorm(d)

    def forward(self, x):
        return self.norm(x + self.fc2(torch.relu(self.fc1(x))))


def test_a_user_composite_loads_torch_by_name_and_matches_outputs_and_gradients():
    torch.manual_seed(0)
    module = TorchBlock()
    with torch.no_grad():
        module.norm.weight.uniform_(0.5, 1.5)
        module.norm.bias.uniform_(-0.5, 0.5)
    model = nn.run(0, nn.build(block()))
    assert sorted(model.named_parameters()) == sorted(module.state_dict())  # no key map
    model = load_torch_state_dict(model, module.state_dict())
    x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    xt = t(x).requires_grad_(True)
    yt = module(xt)
    (yt**2).sum().backward()
    np.testing.assert_allclose(model(x), n(yt), rtol=1e-5, atol=1e-5)
    grads = jax.grad(lambda m, x: (m(x) ** 2).sum(), argnums=(0, 1))(model, jnp.asarray(x))
    np.testing.assert_allclose(grads[1], n(xt.grad), rtol=1e-4, atol=1e-5)
    for name, g in grads[0].named_parameters().items():
        np.testing.assert_allclose(g, n(dict(module.named_parameters())[name].grad), rtol=1e-4, atol=1e-5)
    table = model.summary((3, 4))
    assert "fc1  " in table and "  Linear(in_features=8, out_features=4)" in table
    assert table.splitlines()[-1] == f"total params: {model.num_params():,}"


def test_a_composite_equals_the_named_seq_of_its_fields():
    a, b = L.Linear(4, 8), L.LayerNorm(8)
    key = jax.random.key(3)

    @dataclass(frozen=True)
    class Two(Layer):
        fc1: Layer
        norm: Layer

    composite = Two(a, b).init(key)
    named = seq(fc1=a, norm=b).init(key)
    jax.tree.map(np.testing.assert_array_equal, composite, named)
    # the derived init is SeedStream(key) threaded through the fields in order
    k1, stream = SeedStream(key).fresh()
    _k2, _ = stream.fresh()
    np.testing.assert_array_equal(composite[0]["fc1"]["weight"], a.init(k1)[0]["weight"])


def test_tuple_fields_nest_as_field_i_and_none_fields_are_absent():
    @dataclass(frozen=True)
    class Tower(Layer):
        blocks: tuple
        head: Layer | None = None

        def apply(self, params, state, x, *, key=None, train=False):
            c = self.bind(params, state, key=key, train=train)
            for b in c.blocks:
                x = b(x)
            return (x if self.head is None else c.head(x)), c.state

    tower = Tower((L.Linear(3, 3), L.Dropout(0.5), L.Linear(3, 3)))
    model = nn.run(0, nn.build(tower))
    assert sorted(model.named_parameters()) == ["blocks.0.bias", "blocks.0.weight", "blocks.2.bias", "blocks.2.weight"]
    assert model(jnp.ones((2, 3))).shape == (2, 3)
    # element i of field j gets the dropout key fold_in(fold_in(key, j), i)
    key = jax.random.key(5)
    y = model(jnp.ones((2, 3)), key=key, train=True)
    h = L.Linear(3, 3).apply(model.params["blocks"][0], {}, jnp.ones((2, 3)))[0]
    h = L.Dropout(0.5).apply({}, {}, h, key=jax.random.fold_in(jax.random.fold_in(key, 0), 1), train=True)[0]
    np.testing.assert_allclose(y, L.Linear(3, 3).apply(model.params["blocks"][2], {}, h)[0], rtol=1e-6)


def test_a_child_shape_error_is_located_by_its_full_path():
    model = jax.eval_shape(lambda: nn.run(0, models.resnet18(num_classes=10)))
    bad = model.replace(layer=model.layer)  # the same model; a wrong input width at layer1[0].conv1 via its params
    params = jax.tree.map(lambda s: s, bad.params)
    params["layer1"][0]["conv1"]["weight"] = jax.ShapeDtypeStruct((64, 32, 3, 3), jnp.float32)
    with pytest.raises(
        ShapeError, match=r"^seq\.layer1\[0\]\.conv1 Conv2d\(.*\): expected params weight \[64, 64, 3, 3\]"
    ):
        jax.eval_shape(lambda m, x: m(x), bad.replace(params=params), jax.ShapeDtypeStruct((2, 3, 32, 32), jnp.float32))


def test_summary_rows_of_resnet18_and_gpt_add_up_and_are_indented():
    for model, shape, dtype in (
        (jax.eval_shape(lambda: nn.run(0, models.resnet18(num_classes=10))), (2, 3, 32, 32), jnp.float32),
        (nn.run(0, models.gpt(11, 8, d_model=8, nhead=2, num_layers=3)), (2, 5), jnp.int32),
    ):
        lines = model.summary(shape, dtype).splitlines()
        rows = lines[4:-3]  # below them: a line, total FLOPs, total params
        assert sum(int(r.rsplit(None, 1)[-1].replace(",", "")) for r in rows) == model.num_params()
        nested = [r for r in rows if r.split()[0].count(".") >= 2]
        assert nested and all(r[r.index(" ") :].lstrip(" ") != r[r.index(" ") :] for r in nested)
    gpt_rows = [r.split()[0] for r in rows]
    assert "encoder.layers.*.self_attn" in gpt_rows


def test_stacked_equals_unrolled_copies_in_outputs_and_gradients():
    inner = block(8, 16)  # a composite block: Linear, Linear, LayerNorm and a residual add
    stack = L.Stacked(inner, 6)
    params, state = stack.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (2, 5, 8))

    def by_hand(params, x):
        for i in range(6):
            x = inner.apply(jax.tree.map(lambda a: a[i], params), state, x)[0]
        return x

    loss = lambda f: lambda p, x: (f(p, x) ** 2).sum()
    for scan in (True, False):
        layer = L.Stacked(inner, 6, scan=scan)
        ours = jax.value_and_grad(loss(lambda p, x: layer.apply(p, state, x)[0]), argnums=(0, 1))(params, x)
        theirs = jax.value_and_grad(loss(by_hand), argnums=(0, 1))(params, x)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), ours, theirs)
    # layer i comes from split(key, n)[i]
    one = inner.init(jax.random.split(jax.random.key(0), 6)[4])[0]
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a[4], b), params, one)


def test_stacked_refuses_a_layer_that_changes_shape_or_dtype():
    stack = L.Stacked(L.Linear(4, 3), 2)
    params, state = stack.init(jax.random.key(0))
    with pytest.raises(
        ShapeError, match=r"Stacked\(.*\): expected a layer that maps \(2, 4\) float32 to the same shape"
    ):
        stack.apply(params, state, jnp.ones((2, 4)))
    with pytest.raises(TypeError, match=r"Stacked: layer must be a tlean Layer, got int"):
        L.Stacked(3, 2)


def test_stacked_carries_state_and_names_expand_to_torch_keys():
    stack = L.seq(L.Stacked(L.seq(L.Conv2d(3, 3, 3, padding=1), L.BatchNorm2d(3)), 2))
    model = nn.run(0, nn.build(stack))
    assert model.params[0][0]["weight"].shape == (2, 3, 3, 3, 3)
    _, trained = model.forward(jax.random.normal(jax.random.key(1), (2, 3, 4, 4)), train=True)
    assert trained.state[0][1]["num_batches_tracked"].tolist() == [1, 1]
    keys = sorted(to_torch_state_dict(trained))
    assert "0.1.1.running_mean" in keys and "0.0.0.weight" in keys
    module = torch.nn.Sequential(
        torch.nn.Sequential(
            *[torch.nn.Sequential(torch.nn.Conv2d(3, 3, 3, padding=1), torch.nn.BatchNorm2d(3)) for _ in range(2)]
        )
    )
    assert keys == sorted(module.state_dict())
    module.load_state_dict(to_torch_state_dict(trained, tensors=True))
    back = load_torch_state_dict(model, module.state_dict())
    jax.tree.map(np.testing.assert_array_equal, back.params, trained.params)


def test_residual_and_parallel():
    res = nn.run(0, nn.Residual(nn.Linear(4, 4)))
    x = jnp.arange(8.0).reshape(2, 4)
    np.testing.assert_allclose(res(x), L.Linear(4, 4).apply(res.params["layer"], {}, x)[0] + x, rtol=1e-6)
    # Residual draws one key and starts a stream of its own: the wrapped layer's values change (documented)
    k, _ = SeedStream(0).fresh()
    np.testing.assert_array_equal(
        res.params["layer"]["weight"], L.Linear(4, 4).init(SeedStream(k).fresh()[0])[0]["weight"]
    )
    with pytest.raises(ShapeError, match=r"Residual\(.*\): expected the shortcut's shape \(2, 4\)"):
        nn.run(0, nn.Residual(nn.Linear(4, 3)))(x)
    par = nn.run(0, nn.Parallel(nn.Linear(4, 2), nn.Linear(4, 3), combine="concat"))
    assert par(x).shape == (2, 5) and sorted(par.named_parameters())[0] == "layers.0.bias"
    with pytest.raises(ShapeError, match=r"Parallel\(.*\): expected branch outputs of one shape to add"):
        nn.run(0, nn.Parallel(nn.Linear(4, 2), nn.Linear(4, 3)))(x)
    with pytest.raises(ValueError, match=r"Parallel: dim must be negative"):
        L.Parallel(L.relu, dim=1)


def test_keywords_are_routed_to_the_children_that_take_them():
    enc = L.TransformerEncoder.of(2, 8, 2, 16, 0.0)
    net = seq(enc, L.LayerNorm(8))  # an encoder followed by a final LayerNorm takes a mask
    assert "src_key_padding_mask" in net.keywords and "allow" in net.keywords
    model = nn.run(0, nn.build(net))
    x = jax.random.normal(jax.random.key(1), (2, 5, 8))
    padding = jnp.zeros((2, 5), bool).at[1, 3:].set(True)
    direct = L.LayerNorm(8).apply(
        model.params[1], {}, enc.apply(model.params[0], model.state[0], x, src_key_padding_mask=padding)[0]
    )[0]
    np.testing.assert_allclose(model(x, src_key_padding_mask=padding), direct, rtol=1e-6)
    with pytest.raises(TypeError, match=r"unexpected keyword\(s\) \['memory'\]"):
        model(x, memory=x)
    with pytest.raises(TypeError, match=r"got the keyword 'memory', which none of its children takes"):
        net.apply(model.params, model.state, x, memory=x)
    lstm = nn.run(0, nn.Sequential(nn.LSTM(3, 4), nn.LSTM(4, 4)))
    with pytest.raises(TypeError, match=r"'return_final' carries one layer's value, but 2 layers inside take it"):
        lstm(jnp.ones((5, 3)), return_final=True)
    one = nn.run(0, nn.Sequential(nn.Linear(3, 3), nn.LSTM(3, 4)))
    y, (h, _c) = one(jnp.ones((5, 3)), return_final=True)  # exactly one LSTM, the last child: allowed
    assert y.shape == (5, 4) and h.shape == (1, 4)
    first = nn.run(0, nn.Sequential(nn.LSTM(3, 3), nn.Linear(3, 3)))
    with pytest.raises(TypeError, match=r"only the last child of a seq may take it"):
        first(jnp.ones((5, 3)), return_final=True)


def test_ties_are_one_leaf_with_two_names():
    @dataclass(frozen=True)
    class TiedLM(Layer):
        tok: Layer
        head: Layer
        ties = {"head.weight": "tok.weight"}

        def apply(self, params, state, x, *, key=None, train=False):
            c = self.bind(params, state, key=key, train=train)
            return c.head(c.tok(x)), c.state

    layer = TiedLM(L.Embedding(7, 4), L.Linear(4, 7, bias=False))
    model = nn.run(0, nn.build(layer))
    assert jax.tree.leaves(model.params["head"]) == [] and model.num_params() == 28
    ids = jnp.array([[1, 2, 3]])

    class Torch(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.tok, self.head = torch.nn.Embedding(7, 4), torch.nn.Linear(4, 7, bias=False)
            self.head.weight = self.tok.weight

        def forward(self, x):
            return self.head(self.tok(x))

    module = Torch()
    state_dict = to_torch_state_dict(model, tensors=True)
    assert sorted(state_dict) == ["head.weight", "tok.weight"]
    module.load_state_dict(state_dict)
    out = module(torch.from_numpy(np.asarray(ids)))
    (out**2).sum().backward()
    grads = jax.grad(lambda m: (m(ids) ** 2).sum())(model)
    np.testing.assert_allclose(grads.params["tok"]["weight"], n(module.tok.weight.grad), rtol=1e-5, atol=1e-6)  # summed
    only_alias = {"head.weight": module.tok.weight.detach()}
    np.testing.assert_array_equal(
        load_torch_state_dict(model, only_alias).params["tok"]["weight"], n(module.tok.weight)
    )
    with pytest.raises(ValueError, match=r"conflicting keys: tok.weight and head.weight \(tied: one array\) differ"):
        load_torch_state_dict(
            model, {"tok.weight": np.zeros((7, 4), np.float32), "head.weight": np.ones((7, 4), np.float32)}
        )


def test_init_overrides_reinitialise_matching_leaves_with_keys_from_the_same_stream():
    @dataclass(frozen=True)
    class Normal02(Layer):
        fc: Layer
        init_overrides = {r".*\.weight": lambda k, shape, dtype: 0.02 * jax.random.normal(k, shape, dtype)}

    layer = Normal02(L.Linear(64, 64))
    params, _ = layer.init(jax.random.key(0))
    k_fc, stream = SeedStream(jax.random.key(0)).fresh()
    k_w, _ = stream.fresh()
    np.testing.assert_array_equal(params["fc"]["weight"], 0.02 * jax.random.normal(k_w, (64, 64)))
    np.testing.assert_array_equal(params["fc"]["bias"], L.Linear(64, 64).init(k_fc)[0]["bias"])


def test_frozen_params_are_not_trained_and_have_no_optimiser_state():
    model = nn.run(0, nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))).replace(frozen=(r"0\..*",))
    state = train.TrainState.create(model, optax.adam(0.1))
    assert jax.tree.leaves(state.opt_state[0].mu[0]) == []
    step = train.make_train_step(train.classification_loss, optax.adam(0.1))
    new, _ = step(state, (jnp.ones((5, 3)), jnp.zeros((5,), jnp.int32)))
    np.testing.assert_array_equal(new.model.params[0]["weight"], model.params[0]["weight"])
    assert not np.array_equal(new.model.params[2]["weight"], model.params[2]["weight"])
    assert new.model.frozen == (r"0\..*",)
    with pytest.raises(ValueError, match=r"frozen pattern '\(' is not a regular expression"):
        model.replace(frozen=("(",))


def test_builders_take_builders_as_layer_arguments():
    enc = nn.run(0, nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), 2, nn.LayerNorm(8)))
    assert enc.params["layers"]["linear1"]["weight"].shape == (2, 16, 8) and "norm" in enc.params
    fixed = nn.run(0, nn.Linear(8, 8))
    with pytest.raises(TypeError, match=r"nn.Stacked: got a Model"):
        nn.Stacked(fixed, 2)
    with pytest.raises(TypeError, match=r"holds a fixed Model \(it draws no key\)"):
        nn.Stacked(nn.lift(fixed), 2)


def test_check_finite_names_a_child_of_a_composite():
    @dataclass(frozen=True)
    class Logs(Layer):
        inner: Layer

        def apply(self, params, state, x, *, key=None, train=False):
            c = self.bind(params, state)
            return c.inner(x), c.state

    model = nn.run(0, nn.build(seq(L.Lambda(jnp.negative), Logs(L.Lambda(jnp.log)))))
    with check_finite(), pytest.raises(FloatingPointError, match=r"seq\[1\]\.inner Lambda\(fn=log\) produced"):
        model(jnp.ones((1, 2)))


def test_numeric_fields_are_checked_once_for_every_layer():
    for make in (
        lambda v: L.Linear(2, 2, bias=v),
        lambda v: L.TransformerEncoderBlock(8, 2, norm_first=v),
        lambda v: L.Stacked(L.relu, 2, scan=v),
        lambda v: L.Conv2d(2, 2, 3, bias=v),
        lambda v: L.BatchNorm2d(2, affine=v),
        lambda v: L.MaxPool2d(2, ceil_mode=v),
        lambda v: L.Dropout(0.1, inplace=v),
        lambda v: L.LSTM(2, 2, batch_first=v),
    ):
        with pytest.raises(ValueError, match=r"must be a bool, got 1"):
            make(1)
        make(np.bool_(True))
    assert L.MultiheadAttention(8, 2, np.float32(0.25)).dropout == 0.25
    assert L.LSTM(2, 2, dropout=np.float32(0.25)).dropout == L.Dropout(np.float32(0.25)).p == 0.25
    with pytest.raises(TypeError, match=r"torch dtype.*param_dtype"):
        L.Linear(2, 2, dtype=torch.float32)


def test_the_core_imports_nothing_from_nn():
    import pathlib
    import re

    import tlean

    root = pathlib.Path(tlean.__file__).parent
    for name in ("_core.py", "_model.py", "_walk.py", "_debug.py"):
        assert not re.search(r"^\s*(from|import) tlean\.nn", (root / name).read_text(), re.M), name


def test_any_layer_stacks_mamba_blocks_and_user_composites():
    for inner, shape in ((L.Mamba(4, 4), (6, 2, 4)), (block(4, 8), (3, 4))):
        model = nn.run(0, nn.Stacked(inner, 3))
        x = jax.random.normal(jax.random.key(1), shape)
        by_hand = x
        for i in range(3):
            by_hand = inner.apply(jax.tree.map(lambda a: a[i], model.params), {}, by_hand)[0]
        np.testing.assert_allclose(model(x), by_hand, rtol=1e-5, atol=1e-6)
        assert all(name.startswith("*.") for name in model.named_parameters())


def test_the_one_call_child_form_equals_bind():
    layer = block()
    params, state = layer.init(jax.random.key(0))
    x = jnp.ones((2, 4))
    y, s = layer.child("fc1", params, state, x)
    np.testing.assert_array_equal(y, L.Linear(4, 8).apply(params["fc1"], {}, x)[0])
    assert s == state["fc1"]
    with pytest.raises(AttributeError, match=r"has no child 'fc3'; its children are \['fc1', 'fc2', 'norm'\]"):
        layer.child("fc3", params, state, x)
