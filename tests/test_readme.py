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
