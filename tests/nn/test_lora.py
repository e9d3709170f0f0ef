"""nn.lora / nn.lora.merge and LoRALinear: exact at init, only adapters train, merge folds them back."""

import pickle

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from tests.torch_utils import load, n, t
from tlean import Model, ShapeError, models, nn, train
from tlean import layers as L
from tlean.interop import to_torch_state_dict


class TorchLoRALinear(torch.nn.Linear):
    """peft's lora.Linear computation with tlean's names: the base's weight/bias, ``lora_A``/``lora_B`` Linears."""

    def __init__(self, in_features, out_features, rank, alpha, bias=True):
        super().__init__(in_features, out_features, bias)
        self.lora_A = torch.nn.Linear(in_features, rank, bias=False)
        self.lora_B = torch.nn.Linear(rank, out_features, bias=False)
        self.scaling = alpha / rank

    def forward(self, x):
        return super().forward(x) + self.scaling * self.lora_B(self.lora_A(x))


def adapter_names(model):
    return {k for k in model.named_parameters() if ".lora_" in k or k.startswith("lora_")}


def leaves_by_name(model):
    return model.named_parameters()


@pytest.mark.parametrize("bias", [True, False])
def test_lora_linear_matches_the_peft_computation_in_torch(bias):
    torch.manual_seed(0)
    tm = TorchLoRALinear(5, 3, rank=2, alpha=6, bias=bias)
    torch.nn.init.normal_(tm.lora_B.weight)  # peft starts B at zero; a trained B makes the update visible
    layer = L.LoRALinear(5, 3, bias, rank=2, alpha=6)
    model = load(Model(layer, *jax.eval_shape(layer.init, jax.random.key(0))), tm)
    assert set(model.named_parameters()) == set(tm.state_dict())
    x = np.random.default_rng(0).normal(size=(4, 2, 5)).astype(np.float32)
    tx = t(x)
    ty = tm(tx)
    ty.sum().backward()
    y, vjp = jax.vjp(lambda p, x: Model(layer, p)(x), model.params, x)
    np.testing.assert_allclose(y, n(ty), atol=1e-6, rtol=1e-6)
    grads, gx = vjp(jnp.ones_like(y))
    for name, p in tm.named_parameters():
        np.testing.assert_allclose(
            Model(layer, grads).named_parameters()[name], n(p.grad), atol=1e-5, rtol=1e-5, err_msg=name
        )
    np.testing.assert_allclose(gx, n(tx.grad), atol=1e-5, rtol=1e-5)
    params = layer.init(jax.random.key(1))[0]  # fresh: B zero, A kaiming-uniform as peft
    assert np.all(params["lora_B"]["weight"] == 0) and 0 < np.abs(params["lora_A"]["weight"]).max() <= 1 / np.sqrt(5)
    linear, merged = layer.merged(model.params)
    np.testing.assert_allclose(Model(linear, merged)(x), y, atol=1e-5, rtol=1e-5)


def mlp():
    return nn.run(0, nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3)))


def trained(model, batch, steps=3):
    optimizer = optax.adam(1e-2)
    state = train.TrainState.create(model, optimizer, key=0)
    step = train.make_train_step(train.classification_loss, optimizer)
    opt_arrays = len(jax.tree.leaves(state.opt_state))
    for _ in range(steps):
        state, _ = step(state, batch)
    return state.model, opt_arrays


def test_sequential_mlp_exact_at_init_only_adapters_train_and_merge_equals():
    base = mlp()
    tuned = nn.lora(base, rank=4, alpha=8, targets=r"0|4", key=1)
    assert adapter_names(tuned) == {"0.lora_A.weight", "0.lora_B.weight", "4.lora_A.weight", "4.lora_B.weight"}
    assert set(tuned.named_parameters()) - adapter_names(tuned) == set(base.named_parameters())
    assert type(tuned.layer[0]) is L.LoRALinear and type(tuned.layer[2]) is L.Linear
    assert tuned.layer != base.layer and tuned.named_parameters()["4.lora_A.weight"].shape == (4, 16)
    x = np.random.default_rng(0).normal(size=(32, 6)).astype(np.float32)
    np.testing.assert_array_equal(tuned(x), base(x))  # exactly: lora_B starts at zero
    np.testing.assert_array_equal(jax.jit(lambda m: m(x))(tuned), jax.jit(lambda m: m(x))(base))

    labels = np.arange(32) % 3
    after, opt_arrays = trained(tuned, (x, labels))
    assert opt_arrays == 2 * 4 + 1  # adam's mu and nu for the four adapter arrays, and its count: none for the base
    before_p, after_p = tuned.named_parameters(), after.named_parameters()
    for name in before_p:
        changed = not np.array_equal(before_p[name], after_p[name])
        assert changed == (name in adapter_names(tuned)), name  # the base is bit for bit unchanged
    assert not np.allclose(after(x), base(x))

    merged = nn.lora.merge(after)
    assert merged.layer == base.layer and merged.frozen == base.frozen == ()
    assert set(merged.named_parameters()) == set(base.named_parameters())
    np.testing.assert_allclose(merged(x), after(x), atol=1e-5, rtol=1e-5)
    np.testing.assert_array_equal(merged.params[2]["weight"], base.params[2]["weight"])  # not a target


def test_gpt_stacked_adapters_exact_at_init_frozen_base_generate_and_merge():
    base = nn.run(0, models.gpt(vocab_size=11, max_len=12, d_model=16, nhead=2, num_layers=2))
    targets = r"encoder\.layers\.\*\.linear[12]|lm_head"
    tuned = nn.lora(base, 2, 4.0, targets=targets, key=jax.random.key(3))
    names = tuned.named_parameters()
    assert names["encoder.layers.*.linear1.lora_A.weight"].shape == (2, 2, 16)  # stacked: [layers, rank, in]
    assert names["encoder.layers.*.linear2.lora_B.weight"].shape == (2, 16, 2)
    assert names["lm_head.lora_B.weight"].shape == (11, 2)
    assert "encoder.layers.1.linear1.lora_A.weight" in to_torch_state_dict(tuned)
    assert tuned.layer != base.layer and tuned.layer == pickle.loads(pickle.dumps(tuned.layer))
    assert hash(tuned.layer) == hash(nn.lora(base, 2, 4.0, targets=targets, key=0).layer)
    assert tuned.layer != nn.lora(base, 4, 4.0, targets=targets, key=0).layer  # another rank: another layer
    ids = np.random.default_rng(0).integers(0, 11, size=(4, 8)).astype(np.int32)
    np.testing.assert_array_equal(tuned(ids), base(ids))  # exactly at init

    trainable = dict(zip(names, jax.tree.leaves(tuned.trainable())))
    assert {k for k, v in trainable.items() if v} == adapter_names(tuned) and len(adapter_names(tuned)) == 6
    state = train.TrainState.create(tuned, optax.adam(1e-3))
    assert len(jax.tree.leaves(state.opt_state)) == 2 * 6 + 1  # adam's moments for the adapters only

    rng = np.random.default_rng(1)  # a trained update: random lora_B
    after = tuned.replace(
        params=jax.tree_util.tree_map_with_path(
            lambda path, a: (
                rng.normal(size=a.shape).astype(np.float32) if "lora_B" in jax.tree_util.keystr(path) else a
            ),
            tuned.params,
        )
    )
    logits = after(ids)
    assert not np.allclose(logits, base(ids), atol=1e-3)
    merged = nn.lora.merge(after)
    assert merged.layer == base.layer and not merged.frozen
    np.testing.assert_allclose(merged(ids), logits, atol=1e-5, rtol=1e-5)
    out = models.generate(after, ids[:, :3], steps=1, key=jax.random.key(0), temperature=0.0)  # greedy, KV cache
    np.testing.assert_array_equal(out[:, 3], np.argmax(logits[:, 2], -1))  # decoding uses the adapters too (causal)


def test_adapters_come_from_the_key_or_the_global_stream():
    base = mlp()
    a = nn.lora(base, 2, targets=["0", "2"], key=5)
    b = nn.lora(base, 2, targets=r"0|2", key=jax.random.key(5))
    jax.tree.map(np.testing.assert_array_equal, a.params, b.params)
    assert not np.array_equal(a.params[0]["lora_A"]["weight"], a.params[2]["lora_A"]["weight"][:, :6])
    nn.manual_seed(7)
    c = nn.lora(base, 2, targets=["0"])
    nn.manual_seed(7)
    d = nn.lora(base, 2, targets=["0"])
    np.testing.assert_array_equal(c.params[0]["lora_A"]["weight"], d.params[0]["lora_A"]["weight"])
    assert a.layer[0] == L.LoRALinear(6, 16, rank=2, alpha=8.0)


def test_errors():
    base = mlp()
    with pytest.raises(
        ValueError,
        match=r"nn.lora: targets 'q_proj' match none of the model's Linears; "
        r"they are \['0', '2', '4'\]",
    ):
        nn.lora(base, 4, targets="q_proj", key=0)
    with pytest.raises(TypeError, match=r"nn.lora: targets must be a regular expression \(str\) or a list"):
        nn.lora(base, 4, targets=3, key=0)
    with pytest.raises(ValueError, match=r"LoRALinear: rank must be a positive int, got 0"):
        nn.lora(base, 0, targets="0", key=0)
    with pytest.raises(ValueError, match=r"LoRALinear: alpha must be a number > 0, got -1"):
        nn.lora(base, 2, -1, targets="0", key=0)
    with pytest.raises(ValueError, match=r"nn.lora.merge: Seq\(.*\) has no LoRALinear to merge"):
        nn.lora.merge(base)
    with pytest.raises(TypeError, match=r"nn.lora takes a tlean Model, got Seq"):
        nn.lora(base.layer, 2, targets="0")
    tuned = nn.lora(base, 2, targets="0", key=0)
    with pytest.raises(
        ShapeError,
        match=r"^seq\[0\] LoRALinear\(in_features=6, out_features=16, rank=2\): "
        r"expected input \[\.\.\., 6\], got shape \(3, 5\)",
    ):
        tuned(jnp.ones((3, 5)))


def test_lora_on_gpt2_conv1d_is_exact_at_init_and_merges_back():
    """transformers' Conv1D (weight [in, out]) is adapted as peft's fan_in_fan_out: y = x W + b + s (x A^T) B^T."""
    base = nn.run(0, models.gpt2(vocab_size=50, n_positions=16, n_embd=16, n_layer=2, n_head=2))
    tuned = nn.lora(base, 4, 8, targets=r".*c_attn", key=1)
    names = {k for k in tuned.named_parameters() if ".lora_" in k}
    assert names == {"transformer.h.*.attn.c_attn.lora_A.weight", "transformer.h.*.attn.c_attn.lora_B.weight"}
    assert tuned.named_parameters()["transformer.h.*.attn.c_attn.lora_B.weight"].shape == (2, 48, 4)
    ids = jnp.arange(10)[None] % 50
    np.testing.assert_array_equal(tuned(ids), base(ids))
    bump = lambda path, x: x + 0.1 if "lora_B" in jax.tree_util.keystr(path) else x
    moved = tuned.replace(params=jax.tree_util.tree_map_with_path(bump, tuned.params))
    merged = nn.lora.merge(moved)
    assert merged.layer == base.layer
    np.testing.assert_allclose(merged(ids), moved(ids), atol=1e-5)
    w = base.named_parameters()["transformer.h.*.attn.c_attn.weight"]
    p = moved.named_parameters()
    delta = 2.0 * np.einsum(
        "lor,lri->lio", p["transformer.h.*.attn.c_attn.lora_B.weight"], p["transformer.h.*.attn.c_attn.lora_A.weight"]
    )
    np.testing.assert_allclose(merged.named_parameters()["transformer.h.*.attn.c_attn.weight"], w + delta, atol=1e-6)
