"""The documentation site: every public name has a docstring, every code block runs, the site builds.

- Each public module's ``__all__`` (the modules with an API page) holds only documented
  functions and classes: mkdocstrings renders a missing docstring as an empty entry
  without failing, so this test is what fails.
- Every ```python block of ``docs/*.md`` runs, page by page in order, in one namespace
  per page, as a reader would paste them. A block opened as ```{.python .no-test} is
  shown but not run (for code that needs several hosts or the reader's own data); such
  blocks are explicit and few.
- ``mkdocs build --strict`` (broken references, missing pages, bad links) passes.
"""

import importlib
import inspect
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
API_MODULES = [
    "tlean",
    "tlean.layers",
    "tlean.nn",
    "tlean.nn.pure",
    "tlean.seed",
    "tlean.models",
    "tlean.train",
    "tlean.checkpoint",
    "tlean.interop",
    "tlean.parallel",
    "tlean.losses",
    "tlean.verify",
    "tlean.testing",
    "tlean.testing.properties",
    "tlean.spec",
]
FENCE = re.compile(r"^```(python|\{\.python \.no-test\})[^\n]*\n(.*?)^```\s*$", re.S | re.M)
PAGES = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.glob("*.md"))


def _blocks(page: str) -> list[tuple[bool, str]]:
    """``(runs, code)`` for each Python block of ``page``, in order."""
    return [(lang == "python", code) for lang, code in FENCE.findall((DOCS / page).read_text())]


def _public(module_name: str) -> list[tuple[str, object]]:
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None)
    if names is None:  # tlean.spec: its public functions
        names = [
            n
            for n, v in vars(module).items()
            if not n.startswith("_") and getattr(v, "__module__", None) == module_name
        ]
    return [(n, getattr(module, n)) for n in names]


def _has_own_docstring(obj: object) -> bool:
    """Whether ``obj`` has a non-empty docstring written for it (not inherited or generated)."""
    doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else getattr(obj, "__doc__", None)
    if not doc or not doc.strip():
        return False
    # dataclasses write "Name(field, ...)" into a class without a docstring
    return not (inspect.isclass(obj) and doc.startswith(f"{obj.__name__}("))


@pytest.mark.parametrize("module_name", API_MODULES)
def test_every_public_function_and_class_has_a_docstring(module_name):
    module = importlib.import_module(module_name)
    assert (module.__doc__ or "").strip(), f"{module_name} has no module docstring"
    public = _public(module_name)
    assert public, f"{module_name} exports nothing"
    offenders = [
        n
        for n, v in public
        if (inspect.isclass(v) or inspect.isfunction(v) or (callable(v) and hasattr(v, "__wrapped__")))
        and not _has_own_docstring(v)
    ]
    assert not offenders, f"{module_name}: public names without a docstring of their own: {offenders}"


def test_the_docstring_check_catches_an_undocumented_name():
    import dataclasses

    @dataclasses.dataclass(frozen=True)
    class Bare:
        n: int

    def bare():
        pass

    assert not _has_own_docstring(Bare) and not _has_own_docstring(bare)
    assert _has_own_docstring(_has_own_docstring)


def test_the_site_build_warns_about_an_undocumented_name(monkeypatch):
    """docs/_ext/hooks.py makes ``mkdocs build --strict`` itself fail on a missing docstring."""
    import dataclasses
    import importlib.util
    import types

    spec = importlib.util.spec_from_file_location("tlean_docs_hooks", DOCS / "_ext" / "hooks.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)

    fake = types.ModuleType("tlean_docs_fake")

    @dataclasses.dataclass(frozen=True)
    class Bare:
        n: int

    def documented():
        """Has a docstring."""

    fake.Bare, fake.documented, fake.__all__ = Bare, documented, ["Bare", "documented"]
    monkeypatch.setitem(sys.modules, "tlean_docs_fake", fake)
    assert hooks.undocumented("tlean_docs_fake") == ["Bare"]
    assert all(hooks.undocumented(m) == [] for m in API_MODULES)


def test_every_public_module_has_an_api_page():
    pages = {p.read_text().strip() for p in (DOCS / "api").glob("*.md")}
    directives = {
        line.removeprefix("::: ").strip() for page in pages for line in page.splitlines() if line.startswith("::: ")
    }
    assert directives == set(API_MODULES), f"API pages differ from the public modules: {directives ^ set(API_MODULES)}"
    nav = (ROOT / "mkdocs.yml").read_text()
    missing = [p for p in PAGES + [f"api/{q.name}" for q in (DOCS / "api").glob("*.md")] if p not in nav]
    assert not missing, f"pages not in mkdocs.yml's nav: {missing}"


def test_the_guides_have_code_and_skips_are_rare():
    blocks = [b for page in PAGES for b in _blocks(page)]
    assert sum(runs for runs, _ in blocks) >= 15
    assert sum(not runs for runs, _ in blocks) <= 3


@pytest.mark.parametrize("page", [p for p in PAGES if any(runs for runs, _ in _blocks(p))])
def test_the_code_blocks_of_a_page_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    namespace: dict = {"__name__": f"docs_{page[:-3].replace('-', '_')}"}
    for index, (runs, code) in enumerate(_blocks(page)):
        if runs:
            exec(compile(code, f"docs/{page} python block {index}", "exec"), namespace)


def test_mkdocs_build_strict(tmp_path):
    mkdocs = shutil.which("mkdocs", path=str(pathlib.Path(sys.executable).parent)) or shutil.which("mkdocs")
    if mkdocs is None:
        pytest.skip("mkdocs is not installed: pip install -e '.[docs]' to build the site")
    result = subprocess.run(
        [mkdocs, "build", "--strict", "-q", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert (tmp_path / "site" / "api" / "layers" / "index.html").read_text().count("doc-heading") > 100
