"""docs/testing.md's files are a pytest project; it runs here on every backend.

The page marks its Python files ``<!-- no-run -->`` for tests/docs, which runs blocks as scripts:
these are a conftest and test modules. A block is a file of the project when its first line names
it (``# conftest.py``).
"""

from __future__ import annotations

import re

import pytest

from ..conftest import backend_url
from ..docs.test_examples import DOCS, code_blocks
from .test_plugin import UNUSED_PLUGINS

FILE_NAME = re.compile(r"^# (?P<name>[\w.-]+\.(?:py|toml))\n")
EXPECTED = {"pyproject.toml", "app.py", "conftest.py", "test_heroes.py"}


def project_files() -> dict[str, str]:
    files: dict[str, str] = {}
    for block in code_blocks(DOCS / "testing.md"):
        named = FILE_NAME.match(block.code)
        if named:
            assert named["name"] not in files, f"testing.md shows {named['name']} twice"
            files[named["name"]] = block.code
    return files


def test_testing_page_shows_the_whole_project() -> None:
    assert set(project_files()) == EXPECTED


def test_testing_page_project_passes(
    pytester: pytest.Pytester, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HEROREPO_TEST_URL", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    for name, code in project_files().items():
        if name == "pyproject.toml":  # stricter than the page: any warning fails the run
            options = f"-p no:cacheprovider {UNUSED_PLUGINS}"
            code += f'filterwarnings = ["error"]\naddopts = "{options}"\n'
        (pytester.path / name).write_text(code, encoding="utf-8")
    url = (
        f"sqlite+aiosqlite:///{pytester.path / 'test.db'}"
        if backend == "sqlite"
        else backend_url(backend)
    )
    result = pytester.runpytest_subprocess("--herorepo-url", url)
    result.assert_outcomes(passed=4)
