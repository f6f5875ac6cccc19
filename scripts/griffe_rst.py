"""A griffe extension: render herorepo's reStructuredText-flavoured docstrings as Markdown.

herorepo's docstrings follow the style guide (Google sections, SQLAlchemy-like roles such as
``:class:`~herorepo.UnitOfWork```, ``.. versionadded::`` and ``::`` literal blocks, simple RST
tables in module docstrings). mkdocstrings renders Markdown, so this extension rewrites those
constructs when the docs are built; the library's docstrings stay as they are.

- A role naming a public herorepo object becomes a cross-reference, which ``mkdocs build
  --strict`` checks; any other role becomes inline code.
- ``.. versionadded:: X`` becomes "Added in version X."
- A paragraph ending in ``::`` followed by an indented block becomes a fenced Python block.
- A simple table (rows between ``====`` rules) becomes a Markdown table.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?P<kind>class|meth|func|attr|data|mod|exc|obj):`(?P<body>[^`]+)`")
TITLED = re.compile(r"^(?P<title>.+?)\s*<(?P<target>[^>]+)>$")
VERSION = re.compile(r"^(?P<indent>\s*)\.\. versionadded:: (?P<version>\S+)\s*$")
RULE = re.compile(r"^=+( +=+)+\s*$")

# Modules whose __all__ names are documented in the API reference.
PUBLIC_MODULES = ("herorepo", "herorepo.integrations.fastapi", "herorepo.testing")


def _public_names(pkg: griffe.Module) -> dict[str, str]:
    """Map each documented name to its public path: ``Repository`` -> ``herorepo.Repository``.

    Read from the modules' ``__all__`` as griffe found them, without importing anything (the
    testing module imports pytest, which the docs build does not need).
    """
    names: dict[str, str] = {}
    for module_name in PUBLIC_MODULES:
        relative = module_name.removeprefix(pkg.path).lstrip(".")
        module = pkg[relative] if relative else pkg
        for name in module.exports or ():
            names.setdefault(str(name), f"{module_name}.{name}")
    return names


class RstToMarkdown(griffe.Extension):
    """Rewrite every docstring of the package once it is loaded."""

    def __init__(self) -> None:
        super().__init__()
        self.public: dict[str, str] = {}
        self.public_paths: set[str] = set()

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if pkg.path != "herorepo":
            return
        self.public = _public_names(pkg)
        self.public_paths = set(self.public.values())
        self._visit(pkg)

    def _visit(self, obj: griffe.Object) -> None:
        if obj.docstring is not None:
            obj.docstring.value = self.convert(obj.docstring.value, obj)
        for member in obj.members.values():
            if not isinstance(member, griffe.Alias):  # re-exports are visited where defined
                self._visit(member)

    # --- conversion ------------------------------------------------------------------------------

    def convert(self, text: str, obj: griffe.Object) -> str:
        lines = text.splitlines()
        lines = self._tables(lines)
        lines = self._literal_blocks(lines)
        out: list[str] = []
        for line in lines:
            version = VERSION.match(line)
            if version:
                out.append(f"{version['indent']}*Added in version {version['version']}.*")
                continue
            out.append(ROLE.sub(lambda match: self._role(match, obj), line))
        return "\n".join(out)

    def _role(self, match: re.Match[str], obj: griffe.Object) -> str:
        kind, body = match["kind"], match["body"]
        titled = TITLED.match(body)
        title, target = (titled["title"], titled["target"]) if titled else (None, body)
        target = target.removeprefix("~")
        shown = title or target.rsplit(".", 1)[-1]
        if kind in ("meth", "func") and not shown.endswith(")"):
            shown += "()"
        path = self._resolve(target, obj)
        if path is None:
            return f"`{shown}`"
        return f"[`{shown}`][{path}]"

    def _resolve(self, target: str, obj: griffe.Object) -> str | None:
        """The public path of ``target`` as seen from ``obj``, or None if it is not public."""
        if target in self.public_paths:
            return target
        if target.startswith("herorepo."):
            owner, _, member = target.rpartition(".")
            return target if owner in self.public_paths and member else None
        head, _, rest = target.partition(".")
        if head in self.public:
            return f"{self.public[head]}.{rest}" if rest else self.public[head]
        # An unqualified method name: a member of the class the docstring belongs to.
        cls = obj if obj.is_class else obj.parent
        if cls is not None and cls.is_class and cls.name in self.public and target in cls.members:
            return f"{self.public[cls.name]}.{target}"
        return None

    @staticmethod
    def _literal_blocks(lines: list[str]) -> list[str]:
        out: list[str] = []
        index = 0
        while index < len(lines):
            line = lines[index]
            if not line.rstrip().endswith("::"):
                out.append(line)
                index += 1
                continue
            indent = len(line) - len(line.lstrip())
            stripped = line.rstrip()[:-2].rstrip()
            if stripped.strip():
                out.append(stripped + ":")
            index += 1
            block: list[str] = []
            while index < len(lines) and (
                not lines[index].strip() or len(lines[index]) - len(lines[index].lstrip()) > indent
            ):
                block.append(lines[index])
                index += 1
            while block and not block[-1].strip():
                block.pop()
            body = [b for b in block if b.strip()]
            if not body:
                continue
            depth = min(len(b) - len(b.lstrip()) for b in body)
            pad = " " * indent
            if out and out[-1].strip():
                out.append("")
            out.append(f"{pad}```python")
            out.extend(f"{pad}{b[depth:]}" if b.strip() else "" for b in block)
            while out[-1] == "":
                out.pop()
            out.append(f"{pad}```")
            out.append("")
        return out

    @staticmethod
    def _tables(lines: list[str]) -> list[str]:
        out: list[str] = []
        index = 0
        while index < len(lines):
            if not RULE.match(lines[index]):
                out.append(lines[index])
                index += 1
                continue
            rule = lines[index]
            spans = [(m.start(), m.end()) for m in re.finditer(r"=+", rule)]
            rules = [index]
            end = index + 1
            while end < len(lines) and len(rules) < 3:
                if RULE.match(lines[end]):
                    rules.append(end)
                end += 1
            if len(rules) < 3:
                out.append(lines[index])
                index += 1
                continue

            header = _rows(lines[rules[0] + 1 : rules[1]], spans)
            body = _rows(lines[rules[1] + 1 : rules[2]], spans)
            for row in header[:1]:
                out.append("| " + " | ".join(row) + " |")
                out.append("|" + "---|" * len(row))
            for row in body:
                out.append("| " + " | ".join(row) + " |")
            index = rules[2] + 1
        return out


def _cells(line: str, spans: list[tuple[int, int]]) -> list[str]:
    found: list[str] = []
    for number, (start, stop) in enumerate(spans):
        last = number == len(spans) - 1
        found.append(line[start : None if last else stop].strip())
    return found


def _rows(lines: list[str], spans: list[tuple[int, int]]) -> list[list[str]]:
    """The rows of a simple table; a line with an empty first cell continues the row above."""
    result: list[list[str]] = []
    for line in lines:
        if not line.strip():
            continue
        values = _cells(line, spans)
        if result and not values[0]:
            result[-1] = [
                f"{old} {new}".strip() for old, new in zip(result[-1], values, strict=True)
            ]
        else:
            result.append(values)
    return result
