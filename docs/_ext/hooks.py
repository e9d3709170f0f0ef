"""mkdocs hooks: API pages list exactly a module's ``__all__``; README's layer table and CHANGELOG.md are shown.

An API page holds a bare ``::: tlean.x`` line. Most of tlean's modules re-export names
from private files and compute ``__all__`` at import time, which griffe's static reading
cannot follow, so this hook imports the module and writes its public functions and classes
(``__all__`` less submodules, which have pages of their own) into the directive's
``members`` option, and warns (an error under ``--strict``) about a public function or
class without a docstring, which mkdocstrings would render as an empty entry. (mkdocs.yml has griffe read every module by inspection: the ``nn``
builders and many layer classes are made at import time, ``nn.Linear = builder_of(layers.Linear)``.)
"""

from __future__ import annotations

import html
import importlib
import inspect
import logging
import pathlib
import re

log = logging.getLogger(
    "mkdocs.plugins.tlean_docs"
)  # a warning here fails `mkdocs build --strict`

DIRECTIVE = re.compile(r"^::: (tlean[\w.]*)\s*$", re.M)
LAYER_TABLE = "<!-- layer-table -->"
CHANGELOG = "<!-- changelog -->"


def public_members(module_name: str) -> list[str]:
    """The names of ``module_name.__all__`` that are not modules (all public names if it has none)."""
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None)
    if names is None:
        names = [
            n
            for n, v in vars(module).items()
            if not n.startswith("_") and getattr(v, "__module__", None) == module_name
        ]
    return [n for n in names if not inspect.ismodule(getattr(module, n))]


def undocumented(module_name: str) -> list[str]:
    """The public functions and classes of ``module_name`` without a docstring of their own."""
    module = importlib.import_module(module_name)
    missing = []
    for name in public_members(module_name):
        value = getattr(module, name)
        if not (inspect.isclass(value) or inspect.isfunction(value)):
            continue  # constants and layer instances (relu) document through their class
        doc = value.__dict__.get("__doc__") if inspect.isclass(value) else value.__doc__
        if (
            not doc
            or not doc.strip()
            or (inspect.isclass(value) and doc.startswith(f"{value.__name__}("))
        ):
            missing.append(
                name
            )  # (a dataclass without a docstring gets "Name(field, ...)")
    return missing


def _layer_class(value: object) -> type | None:
    """The Layer class an ``nn`` builder or ``nn.pure`` constructor makes, else None."""
    from tlean import Layer

    target = getattr(value, "__wrapped__", None)
    return target if inspect.isclass(target) and issubclass(target, Layer) else None


def _default(value: object) -> str:
    return value.__name__ if inspect.isclass(value) else repr(value)


def _signature(name: str, value: object) -> str:
    parts, star = [], False
    for p in inspect.signature(value).parameters.values():
        if p.kind is p.KEYWORD_ONLY and not star:
            parts.append("*")
            star = True
        if p.kind is p.VAR_POSITIONAL:
            parts.append(f"*{p.name}")
            star = True
            continue
        if p.kind is p.VAR_KEYWORD:
            parts.append(f"**{p.name}")
            continue
        parts.append(
            p.name if p.default is p.empty else f"{p.name}={_default(p.default)}"
        )
    return f"{name}({', '.join(parts)})"


def builder_table(module_name: str) -> str:
    """A table of the module's builders (``nn.Linear``) or constructors (``nn.pure.linear``), linked to their layers."""
    module = importlib.import_module(module_name)
    short = module_name.removeprefix("tlean.")
    rows = []
    for name in public_members(module_name):
        layer = _layer_class(getattr(module, name))
        if layer is not None:
            rows.append(
                f"| `{short}.{_signature(name, getattr(module, name))}` "
                f"| [`layers.{layer.__name__}`][tlean.layers.{layer.__name__}] |"
            )
    what = (
        "a Builder of a Model: `nn.run(seed, nn.X(...))` draws one key if the layer has arrays"
        if short == "nn"
        else "a Model, initialised from `key=` (needed when the layer has arrays)"
    )
    return "\n".join(
        [
            "",
            f"## Layer {'builders' if short == 'nn' else 'constructors'}",
            "",
            f"Each of these takes the layer's arguments and returns {what}. "
            "The layer's page says what it computes, its PyTorch analogue and what differs. "
            "Where tlean's default differs from torch's, the keyword is required here "
            "(`batch_first=` on attention and Transformer layers, `affine=` on `InstanceNorm*d`).",
            "",
            "| call | layer |",
            "| --- | --- |",
            *rows,
            "",
        ]
    )


def _expand(match: re.Match) -> str:
    name = match.group(1)
    if missing := undocumented(name):
        log.warning(
            "%s: public names without a docstring: %s", name, ", ".join(missing)
        )
    module = importlib.import_module(name)
    members = [
        m for m in public_members(name) if _layer_class(getattr(module, m)) is None
    ]
    lines = [
        f"::: {name}",
        "    options:",
        f"      members: [{', '.join(members)}]",
        "      show_root_heading: true",
        "      heading_level: 1",
    ]
    if len(members) < len(public_members(name)):
        lines.append(builder_table(name))
    return "\n".join(lines)


def layer_table(readme: str) -> str:
    """README.md's generated layer table (between its two marker comments), each layer linked to its API entry."""
    begin, end = "<!-- layer table: generated", "<!-- end of layer table -->"
    if begin not in readme or end not in readme:
        raise ValueError(
            f"docs: README.md lost the layer table's markers {begin!r}... and {end!r}"
        )
    start = readme.index("\n", readme.index(begin)) + 1
    table = readme[start : readme.index(end)]

    def link(match: re.Match) -> str:
        call = match.group(2)
        name = call.split("(", 1)[0]
        return (
            f'| <autoref identifier="tlean.layers.{name}" optional>'
            f"<code>{html.escape(call, quote=False)}</code></autoref> |"
        )

    return re.sub(r"^(\| `)([A-Za-z0-9_]+\(.*?\))` \|", link, table, flags=re.M)


def four_space_lists(text: str) -> str:
    """``text`` with its leading indentation doubled outside code fences.

    CHANGELOG.md nests lists by two spaces, as GitHub reads them; Python-Markdown needs four.
    """
    out, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        indent = len(line) - len(line.lstrip(" "))
        out.append(
            line if fenced or not line.strip() else " " * (2 * indent) + line[indent:]
        )
    return "\n".join(out) + "\n"


def on_page_markdown(markdown: str, page, config, files) -> str:
    """Give every bare ``::: tlean.x`` directive its members; insert the layer table and the changelog."""
    root = pathlib.Path(config["config_file_path"]).parent
    if CHANGELOG in markdown:
        markdown = markdown.replace(
            CHANGELOG, four_space_lists((root / "CHANGELOG.md").read_text())
        )
    if LAYER_TABLE in markdown:
        markdown = markdown.replace(
            LAYER_TABLE, layer_table((root / "README.md").read_text())
        )
    return DIRECTIVE.sub(_expand, markdown)
