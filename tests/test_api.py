"""The public API: every exported name imports and is documented."""

import importlib

import pytest

MODULES = [
    "tlean",
    "tlean.layers",
    "tlean.nn",
    "tlean.nn.pure",
    "tlean.seed",
    "tlean.interop",
    "tlean.models",
    "tlean.train",
    "tlean.checkpoint",
    "tlean.parallel",
    "tlean.losses",
    "tlean.verify",
    "tlean.testing",
    "tlean.testing.properties",
]


@pytest.mark.parametrize("module_name", MODULES)
def test_every_exported_name_is_documented(module_name):
    module = importlib.import_module(module_name)
    assert module.__doc__
    assert list(module.__all__) == sorted(module.__all__)
    for name in module.__all__:
        value = getattr(module, name)
        if (
            isinstance(value, (int, float, str))
            or type(value).__module__.startswith("tlean.layers")
            or value is getattr(module, "annotations", None)
        ):
            continue  # constants and layer instances (relu, flatten) document through their class
        assert getattr(value, "__doc__", None), f"{module_name}.{name} has no docstring"


def test_every_layer_has_a_builder_and_a_pure_constructor():
    from tlean import layers, nn

    classes = [
        getattr(layers, n)
        for n in layers.__all__
        if isinstance(getattr(layers, n), type)
        and issubclass(getattr(layers, n), layers.Layer)
        and n not in ("Layer", "Seq")
    ]
    for cls in classes:
        assert callable(getattr(nn, cls.__name__, None)), f"nn.{cls.__name__} is missing"
    pure_targets = {getattr(nn.pure, n).__wrapped__ for n in nn.pure.__all__}
    missing = [c.__name__ for c in classes if c not in pure_targets]
    assert not missing, f"nn.pure lacks constructors for {missing}"


def test_submodules_are_reachable_from_the_package():
    import tlean

    for name in ("checkpoint", "interop", "losses", "models", "parallel", "spec", "testing", "train", "verify"):
        assert getattr(tlean, name).__name__ == f"tlean.{name}"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        tlean.nope
