"""The API reference is generated from docstrings: every public name must have one.

docs/reference/*.md render ``herorepo``, ``herorepo.integrations.fastapi`` and
``herorepo.testing`` with mkdocstrings; ``nox -s docs`` builds them in strict mode. This test
keeps the pages from silently showing a bare signature for a new name.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest

PUBLIC_MODULES = ["herorepo", "herorepo.integrations.fastapi", "herorepo.testing"]
REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "reference"


def undocumented(module_name: str) -> list[str]:
    module = importlib.import_module(module_name)
    missing: list[str] = []
    for name in module.__all__:
        obj = getattr(module, name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        if not (obj.__doc__ or "").strip():
            missing.append(name)
        if inspect.isclass(obj):
            missing.extend(
                f"{name}.{attr}"
                for attr, member in vars(obj).items()
                if not attr.startswith("_")
                and inspect.isfunction(member)
                and not (member.__doc__ or "").strip()
            )
    return missing


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_public_names_have_docstrings(module_name: str) -> None:
    assert undocumented(module_name) == []


def test_reference_pages_render_every_public_module() -> None:
    directives = {
        line.removeprefix(":::").strip()
        for page in REFERENCE.glob("*.md")
        for line in page.read_text(encoding="utf-8").splitlines()
        if line.startswith(":::")
    }
    assert directives == set(PUBLIC_MODULES)
