"""A griffe extension that makes tlean's docstrings read well as Markdown.

tlean's docstrings are written for ``help()`` and doctest: bare ``>>>`` examples, reST
roles (``:class:`Model```) and ``::`` literal blocks. Markdown would turn ``>>>`` into
nested block quotes and ``[(2, 2)]`` outputs into reference links, so before griffe
parses a docstring this extension

- fences every doctest run (``>>>`` lines, their ``...`` continuations and output) as ``pycon``;
- fences the indented block after a line ending in ``::`` (``python`` if it compiles, else ``text``);
- turns reST roles into links where the target is documented (else code spans), and
  ``:mod:`tlean.x``` into a link to that module's API page;
- escapes a ``>`` that wrapping put at a line start (Markdown would quote the line);
- renames the ``Params:`` section (the layer's arrays; griffe would read it as "Parameters").

The source docstrings are untouched; only what the site renders changes.
"""

from __future__ import annotations

import ast
import inspect
import re

import griffe

API_PAGES = {
    "tlean": "tlean",
    "tlean.layers": "layers",
    "tlean.nn": "nn",
    "tlean.nn.pure": "nn_pure",
    "tlean.seed": "seed",
    "tlean.models": "models",
    "tlean.train": "train",
    "tlean.checkpoint": "checkpoint",
    "tlean.interop": "interop",
    "tlean.parallel": "parallel",
    "tlean.losses": "losses",
    "tlean.verify": "verify",
    "tlean.testing": "testing",
    "tlean.spec": "spec",
}
ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|exc|obj):`~?([^`]+)`")


def _public_prefix(path: str) -> str:
    """``tlean.testing._torch.assert_torch_parity`` -> ``tlean.testing``: the public module an object shows in."""
    parts = []
    for part in path.split(".")[:-1]:
        if part.startswith("_"):
            break
        parts.append(part)
    return ".".join(parts) or "tlean"


def _roles(text: str, where: str, cls: str | None = None) -> str:
    """reST roles as optional cross-references: a link where the target is documented, else code.

    A relative target is looked up in the class ``cls`` (public path, if the docstring
    belongs to a class or its member) and then in the public module of ``where``.
    """

    def one(match: re.Match) -> str:
        target = match.group(1).strip()
        shown = target.rsplit(".", 1)[-1] if "`~" in match.group(0) else target
        if match.group(0).startswith(":mod:") and target in API_PAGES:
            return f"[`{target}`][{target}]"
        if target.startswith("tlean."):
            return f'<autoref identifier="{target}" optional><code>{shown}</code></autoref>'
        in_module = f"{_public_prefix(where)}.{target}"
        if cls is None:
            return f'<autoref identifier="{in_module}" optional><code>{shown}</code></autoref>'
        return f'<autoref identifier="{cls}.{target}" slug="{in_module}" optional><code>{shown}</code></autoref>'

    return ROLE.sub(one, text)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _fence_doctests(lines: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith(">>>"):
            pad = " " * _indent(line)
            if out and out[-1].strip():
                out.append("")
            out.append(f"{pad}```pycon")
            while i < len(lines) and lines[i].strip() and _indent(lines[i]) >= len(pad):
                out.append(lines[i])
                i += 1
            out.append(f"{pad}```")
            if i < len(lines) and lines[i].strip():
                out.append("")
            continue
        out.append(line)
        i += 1
    return out


def _fence_literal_blocks(lines: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.rstrip().endswith("::") and not line.strip().startswith(">>>"):
            base = _indent(line)
            j = i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            block_end = j
            while block_end < len(lines) and (
                not lines[block_end].strip() or _indent(lines[block_end]) > base
            ):
                block_end += 1
            while block_end > j and not lines[block_end - 1].strip():
                block_end -= 1
            if block_end > j:
                inner = min(_indent(ln) for ln in lines[j:block_end] if ln.strip())
                body = [ln[inner:] if ln.strip() else "" for ln in lines[j:block_end]]
                head = line.rstrip()[:-2].rstrip()
                out.append(head + ":" if head.strip() else "")
                out.append("")
                try:
                    ast.parse("\n".join(body))
                    lang = "python"
                except SyntaxError:
                    lang = "text"
                pad = " " * base
                out.append(f"{pad}```{lang}")
                out.extend(pad + ln if ln else "" for ln in body)
                out.append(f"{pad}```")
                i = block_end
                continue
        out.append(line)
        i += 1
    return out


def markdown_docstring(
    text: str, where: str = "tlean.x", cls: str | None = None
) -> str:
    """The docstring ``text`` of the object at path ``where`` (in class ``cls``) rewritten for Markdown."""
    text = _roles(text, where, cls)
    lines = text.splitlines()
    lines = [re.sub(r"^(\s*)Params:\s*$", r"\1Arrays:", ln) for ln in lines]
    lines = _fence_literal_blocks(lines)
    lines = _fence_doctests(lines)
    return "\n".join(_escape_quotes(lines))


def _escape_quotes(lines: list[str]) -> list[str]:
    """Escape a ``>`` that wrapping put at a line start outside code (``must be\n> 0``): no block quote."""
    out, fenced = [], False
    for line in lines:
        if line.lstrip().startswith("```"):
            fenced = not fenced
        out.append(line if fenced else re.sub(r"^(\s*)>", r"\1\\>", line))
    return out


class MarkdownDocstrings(griffe.Extension):
    """Rewrite each docstring once, when griffe has loaded the object."""

    def on_object(self, *, obj: griffe.Object, **kwargs) -> None:
        self._convert(obj)

    def on_package(self, *, pkg: griffe.Module, **kwargs) -> None:
        self._convert(
            pkg
        )  # griffe fires on_object for members only, not for the package loaded

    @staticmethod
    def _convert(obj: griffe.Object) -> None:
        if obj.docstring is not None and not getattr(
            obj.docstring, "_tlean_markdown", False
        ):
            where = f"{obj.path}.x" if obj.is_module else obj.path
            owner = (
                obj
                if obj.is_class
                else obj.parent
                if obj.parent is not None and obj.parent.is_class
                else None
            )
            cls = (
                f"{_public_prefix(owner.path)}.{owner.name}"
                if owner is not None
                else None
            )
            obj.docstring.value = markdown_docstring(obj.docstring.value, where, cls)
            obj.docstring._tlean_markdown = True


class DropForeignAliases(griffe.Extension):
    """Drop members that merely alias another package's objects (``example_dtype = jnp.float32``).

    tlean's pages are read by inspection (its layer classes and ``nn`` builders are made at
    import time), and inspection records such values as aliases into JAX, which griffe
    cannot resolve without loading JAX's whole API. No page documents them as members.
    """

    def _drop(self, obj: griffe.Object) -> None:
        for name, member in list(obj.members.items()):
            if member.is_alias and not member.target_path.startswith("tlean"):
                obj.del_member(name)

    def on_class_members(self, *, cls: griffe.Class, **kwargs) -> None:
        self._drop(cls)

    def on_attribute_instance(self, *, node, attr: griffe.Attribute, **kwargs) -> None:
        """Forget a docstring that inspection took from the value's type (``bias = True`` -> bool's)."""
        value = getattr(node, "obj", None)
        type_doc = getattr(type(value), "__doc__", None)
        if attr.docstring is None or not isinstance(type_doc, str):
            return
        if not str(getattr(type(value), "__module__", "")).startswith("tlean"):
            if attr.docstring.value.strip() == inspect.cleandoc(type_doc):
                attr.docstring = None

    def on_module_members(self, *, mod: griffe.Module, **kwargs) -> None:
        self._drop(mod)
