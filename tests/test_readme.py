"""The README's Python examples run as written (those that need no data of their own)."""

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
NEEDS_DATA = ("x_test", "torch_module")  # snippets that show an API on the reader's own data


def test_readme_has_examples():
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("index", [i for i, b in enumerate(BLOCKS) if not any(n in b for n in NEEDS_DATA)])
def test_readme_example_runs(index):
    namespace: dict = {}
    exec(compile(BLOCKS[index], f"README.md block {index}", "exec"), namespace)


def test_the_layer_table_is_generated_from_the_registry():
    from tests import layer_table

    assert layer_table.section(README.read_text()) == layer_table.render(), (
        "README.md's layer table differs from the registry: run `python -m tests.layer_table`"
    )


def test_every_public_layer_has_a_registry_case():
    from tests import layer_table
    from tlean import layers

    public = {
        getattr(layers, n)
        for n in layers.__all__
        if isinstance(getattr(layers, n), type) and issubclass(getattr(layers, n), layers.Layer)
    }
    covered = set(layer_table.layer_classes())
    missing = sorted(c.__name__ for c in public - covered - {layers.Layer})
    assert not missing, f"layers without a registry case in tests/registry.py: {missing}"
    assert len(covered) >= 100
