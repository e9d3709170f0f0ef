"""PyTorch interop: torch.nn models trained a few steps in PyTorch load into the matching tlean
Model and give the same outputs (and BatchNorm updates); to_torch_state_dict round-trips;
missing, unexpected and mis-shaped keys are listed by name."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from tlean import nn
from tlean.interop import load_torch_state_dict, to_torch_state_dict


class LSTMOutputs(torch.nn.LSTM):
    """torch.nn.LSTM returns (outputs, (h, c)); inside a Sequential keep the outputs (same param names)."""

    def forward(self, x):
        return super().forward(x)[0]


def train_torch(module, inputs, targets, steps=3):
    """A few SGD steps in PyTorch (train mode: BatchNorm statistics move too)."""
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    module.train()
    for _ in range(steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(module(inputs), targets)
        loss.backward()
        optimizer.step()
    return module


def shaped(builder):
    """A Model with the builder's structure whose arrays are placeholders (only shapes matter)."""
    model = jax.eval_shape(lambda: nn.run(0, builder))
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), model)


def test_trained_torch_cnn_loads_and_matches():
    torch.manual_seed(0)
    module = torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3, padding=1),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.Conv2d(4, 4, 3, stride=2, bias=False),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(36, 8),
        torch.nn.LayerNorm(8),
        torch.nn.Linear(8, 3),
    )
    x = torch.randn(6, 2, 8, 8)
    train_torch(module, x, torch.randn(6, 3))
    model = load_torch_state_dict(
        shaped(
            nn.Sequential(
                nn.Conv2d(2, 4, 3, padding=1),
                nn.BatchNorm2d(4),
                nn.ReLU(),
                nn.Conv2d(4, 4, 3, stride=2, bias=False),
                nn.BatchNorm2d(4),
                nn.ReLU(),
                nn.Flatten(),
                nn.Linear(36, 8),
                nn.LayerNorm(8),
                nn.Linear(8, 3),
            )
        ),
        module.state_dict(),
    )
    assert int(model.state[1]["num_batches_tracked"]) == 3 and model.state[1]["num_batches_tracked"].dtype == jnp.int32
    xj = jnp.asarray(x.numpy())
    with jax.default_matmul_precision("highest"):
        module.eval()
        np.testing.assert_allclose(model(xj), module(x).detach().numpy(), rtol=1e-5, atol=1e-5)
        module.train()  # one more training forward: batch statistics and the running-stat update agree
        y, updated = model.forward(xj, train=True)
        np.testing.assert_allclose(y, module(x).detach().numpy(), rtol=1e-5, atol=1e-5)
    for name, value in to_torch_state_dict(updated).items():
        np.testing.assert_allclose(value, module.state_dict()[name].numpy(), rtol=1e-5, atol=1e-6, err_msg=name)


def test_trained_torch_lstm_loads_and_matches():
    torch.manual_seed(1)
    module = torch.nn.Sequential(torch.nn.Linear(3, 5), LSTMOutputs(5, 6, num_layers=2), torch.nn.Linear(6, 2))
    x = torch.randn(7, 4, 3)  # (seq, batch, features), PyTorch's default layout
    train_torch(module, x, torch.randn(7, 4, 2))
    model = load_torch_state_dict(
        shaped(nn.Sequential(nn.Linear(3, 5), nn.LSTM(5, 6, num_layers=2), nn.Linear(6, 2))), module.state_dict()
    )
    assert sorted(model.named_parameters()) == sorted(k for k, _ in module.named_parameters())
    with jax.default_matmul_precision("highest"):
        np.testing.assert_allclose(model(jnp.asarray(x.numpy())), module(x).detach().numpy(), rtol=1e-5, atol=1e-5)


def test_torch_transformer_encoder_loads_into_the_stacked_layers():
    torch.manual_seed(2)
    block = torch.nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0, batch_first=True)
    module = torch.nn.TransformerEncoder(block, num_layers=3, enable_nested_tensor=False)
    x = torch.randn(2, 5, 8)
    train_torch(module, x, torch.randn(2, 5, 8), steps=2)
    model = load_torch_state_dict(
        shaped(nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, 0.0, batch_first=True), 3)),
        module.state_dict(),
    )
    assert model.params["layers"]["linear1"]["weight"].shape == (3, 16, 8)
    module.eval()
    with jax.default_matmul_precision("highest"):
        np.testing.assert_allclose(model(jnp.asarray(x.numpy())), module(x).detach().numpy(), rtol=1e-5, atol=1e-5)
    exported = to_torch_state_dict(model)
    assert sorted(exported) == sorted(module.state_dict())
    for name, value in exported.items():
        np.testing.assert_array_equal(value, module.state_dict()[name].numpy())


def test_to_torch_state_dict_round_trips():
    model = nn.run(
        3,
        nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(8, 4), nn.LayerNorm(4)),
    )
    _, model = model.forward(jnp.ones((3, 1, 4, 4)), train=True)  # non-trivial running statistics
    module = torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3),
        torch.nn.BatchNorm2d(2),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 4),
        torch.nn.LayerNorm(4),
    )
    tensors = to_torch_state_dict(model, tensors=True)
    assert tensors["1.num_batches_tracked"].dtype == torch.int64
    module.load_state_dict(tensors)  # strict: every key present, none extra
    module.eval()
    x = np.random.default_rng(0).normal(size=(2, 1, 4, 4)).astype(np.float32)
    with jax.default_matmul_precision("highest"):
        np.testing.assert_allclose(
            model(jnp.asarray(x)), module(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-6
        )
    back = load_torch_state_dict(model, module.state_dict())
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(model)):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    assert to_torch_state_dict(model).keys() == to_torch_state_dict(back).keys()


def test_bfloat16_tensors_and_params():
    module = torch.nn.Linear(3, 2).to(torch.bfloat16)
    model = load_torch_state_dict(nn.run(0, nn.Linear(3, 2)), module.state_dict())
    assert model.params["weight"].dtype == jnp.float32
    np.testing.assert_array_equal(model.params["weight"], module.weight.detach().float().numpy())
    half = nn.pure.linear(3, 2, param_dtype=jnp.bfloat16, key=jax.random.key(0))
    tensors = to_torch_state_dict(half, tensors=True)
    assert tensors["weight"].dtype == torch.bfloat16
    np.testing.assert_array_equal(tensors["weight"].float().numpy(), np.asarray(half.params["weight"], np.float32))


def test_missing_unexpected_and_misshaped_keys_are_listed_together():
    model = nn.run(0, nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)))
    state_dict = to_torch_state_dict(model)
    state_dict.pop("2.bias")
    state_dict["2.weight"] = np.zeros((2, 5), np.float32)
    state_dict["3.weight"] = np.zeros((1,), np.float32)
    with pytest.raises(ValueError) as err:
        load_torch_state_dict(model, state_dict)
    message = str(err.value)
    assert "missing keys: ['2.bias']" in message
    assert "unexpected keys: ['3.weight']" in message
    assert "2.weight: expected shape (2, 4), got (2, 5)" in message


def test_stacked_layers_list_each_missing_layer():
    model = shaped(nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), 2))
    state_dict = to_torch_state_dict(model)
    state_dict = {k: v for k, v in state_dict.items() if not k.startswith("layers.1.")}
    state_dict["layers.2.norm1.weight"] = np.ones(8, np.float32)
    with pytest.raises(ValueError, match=r"missing keys: \['layers.1.") as err:
        load_torch_state_dict(model, state_dict)
    assert "unexpected keys: ['layers.2.norm1.weight']" in str(err.value)


def test_resnet_names_match_torchvision_layout():
    """Composite layers (BasicBlock's named parts) keep torchvision's keys, in and out."""
    from tlean import models

    model = jax.eval_shape(lambda: nn.run(0, models.resnet18(num_classes=10)))
    names = set(to_torch_state_dict(jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), model)))
    for key in (
        "conv1.weight",
        "bn1.running_var",
        "layer1.0.conv1.weight",
        "layer2.0.downsample.0.weight",
        "layer2.0.downsample.1.num_batches_tracked",
        "fc.bias",
    ):
        assert key in names
    assert not any("layers." in k for k in names)


def test_gpt_exports_its_encoder_layers_one_by_one():
    """A stacked TransformerEncoder nested in a model (GPT's encoder) is found by name and split per layer."""
    from tlean.models import gpt

    model = shaped(gpt(vocab_size=11, max_len=8, d_model=8, nhead=2, num_layers=2))
    exported = to_torch_state_dict(model)
    assert exported["encoder.layers.1.linear1.weight"].shape == (32, 8)
    assert "encoder.layers.linear1.weight" not in exported
    assert {"tok_emb.weight", "pos_emb.weight", "ln_f.weight", "lm_head.weight"} <= set(exported)
    reloaded = load_torch_state_dict(model, {k: v + 1 for k, v in exported.items()})
    np.testing.assert_array_equal(
        reloaded.params["encoder"]["layers"]["linear1"]["weight"],
        model.params["encoder"]["layers"]["linear1"]["weight"] + 1,
    )
