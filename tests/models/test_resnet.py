"""resnet18 against a torch ResNet-18 with torchvision's module names (torchvision is not installed)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from tlean import Builder, Model, ShapeError, models, nn
from tests.layers.test_blocks import TorchBasicBlock, randomise_norms
from tests.torch_utils import load, n


class TorchResNet18(torch.nn.Module):
    """torchvision.models.resnet18's modules and forward, written out with the same names."""

    def __init__(self, num_classes=1000, in_channels=3):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(64)
        self.relu = torch.nn.ReLU(inplace=True)
        self.maxpool = torch.nn.MaxPool2d(3, stride=2, padding=1)
        widths = [(64, 64, 1), (64, 128, 2), (128, 256, 2), (256, 512, 2)]
        for i, (inplanes, planes, stride) in enumerate(widths, 1):
            setattr(self, f"layer{i}", torch.nn.Sequential(TorchBasicBlock(inplanes, planes, stride), TorchBasicBlock(planes, planes)))
        self.avgpool = torch.nn.AdaptiveAvgPool2d((1, 1))
        self.fc = torch.nn.Linear(512, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def shapes(builder):
    """The Model a builder makes, with ShapeDtypeStructs for arrays: nothing is initialised."""
    return jax.eval_shape(lambda: nn.run(0, builder))


def test_parameter_count_equals_torchvisions():
    assert isinstance(models.resnet18(), Builder)
    assert shapes(models.resnet18()).num_params() == 11_689_512  # torchvision's resnet18()
    assert sum(p.numel() for p in TorchResNet18().parameters()) == 11_689_512  # the reference is faithful
    torch_10 = sum(p.numel() for p in TorchResNet18(10, in_channels=1).parameters())
    assert shapes(models.resnet18(num_classes=10, in_channels=1)).num_params() == torch_10 == 11_175_370


def test_state_dict_loads_by_name_and_outputs_match_in_eval_and_train():
    torch.manual_seed(0)
    tm = randomise_norms(TorchResNet18(num_classes=10))
    model = load(shapes(models.resnet18(num_classes=10)), tm)
    assert set(model.named_parameters()) | set(model.named_buffers()) == set(tm.state_dict())
    assert "layer2.0.downsample.1.running_var" in model.named_buffers() and "fc.bias" in model.named_parameters()
    x = np.random.default_rng(0).normal(size=(2, 3, 64, 64)).astype(np.float32)  # layer4 sees 2 x 2: 8 values per channel

    both = jax.jit(lambda m, x: (m(x), m.forward(x, train=True)))
    y_eval, (y_train, trained) = both(model, x)
    with torch.no_grad():
        np.testing.assert_allclose(y_eval, n(tm.eval()(torch.from_numpy(x))), atol=1e-4, rtol=1e-4)
        np.testing.assert_allclose(y_train, n(tm.train()(torch.from_numpy(x))), atol=1e-4, rtol=1e-4)
    buffers = trained.named_buffers()
    for name, buffer in tm.named_buffers():  # torch's buffers now hold the statistics of its train step
        np.testing.assert_allclose(buffers[name], n(buffer), atol=1e-5, rtol=1e-4, err_msg=name)


def test_errors_name_the_child_where_they_happen():
    model = shapes(models.resnet18(num_classes=10))
    forward = lambda train: (lambda m, x: m.forward(x, train=train))
    with pytest.raises(ShapeError, match=r"^seq\.conv1 Conv2d\(in_channels=3, .*\): expected input \[N, 3, H, W\] .*got shape \(2, 1, 32, 32\)"):
        jax.eval_shape(forward(False), model, jax.ShapeDtypeStruct((2, 1, 32, 32), jnp.float32))
    with pytest.raises(ShapeError, match=r"^seq\.layer4\[0\]\.bn1 BatchNorm2d\(num_features=512\): expected more than one value "
                                         r"per channel in training \(N \* H \* W > 1\), got shape \(1, 512, 1, 1\)"):
        jax.eval_shape(forward(True), model, jax.ShapeDtypeStruct((1, 3, 32, 32), jnp.float32))
    out = jax.eval_shape(forward(False), model, jax.ShapeDtypeStruct((1, 3, 32, 32), jnp.float32))
    assert out[0].shape == (1, 10)


def test_the_layer_and_the_builder_agree():
    layer = models.resnet18_layer(num_classes=7, in_channels=2)
    assert layer.names == ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool", "fc")
    assert shapes(models.resnet18(7, 2)).layer == layer
    assert isinstance(shapes(models.resnet18(7, 2)), Model)
