"""Measurements of the scale-out tests, for docs/scaling-out.md.

Tests record what they measured with the ``measured`` fixture, per module. With
HEROREPO_SCALING_DOCS=1 set, a run in which every test passed writes them into
docs/scaling-out.md, between the ``scaling-figures:NAME`` markers (NAME: the module without
``test_``): ``HEROREPO_SCALING_DOCS=1 pytest tests/scaling``.
"""

from __future__ import annotations

import os
import platform
import re
from datetime import date
from importlib.metadata import version
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[2] / "docs" / "scaling-out.md"

_MEASURED: dict[str, dict[str, str]] = {}


class Measured:
    def __init__(self, section: str) -> None:
        self._rows = _MEASURED.setdefault(section, {})

    def __call__(self, name: str, value: str) -> None:
        self._rows[name] = value


@pytest.fixture
def measured(request: pytest.FixtureRequest) -> Measured:
    return Measured(request.module.__name__.rpartition(".")[2].removeprefix("test_"))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("HEROREPO_SCALING_DOCS") != "1" or exitstatus != 0:
        return
    text = PAGE.read_text(encoding="utf-8")
    for section, rows in _MEASURED.items():
        start, end = f"<!-- scaling-figures:{section} -->", f"<!-- /scaling-figures:{section} -->"
        lines = [
            start,
            f"Measured on {date.today().isoformat()} by `tests/scaling/test_{section}.py` on "
            f"loopback ({os.cpu_count()} cores, Python {platform.python_version()}, SQLAlchemy "
            f"{version('sqlalchemy')}, asyncpg {version('asyncpg')}, aiomysql "
            f"{version('aiomysql')}):",
            "",
            "| measurement | result |",
            "|---|---|",
            *(f"| {name} | {value} |" for name, value in rows.items()),
            end,
        ]
        pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.DOTALL)
        text = pattern.sub(lambda _, lines=lines: "\n".join(lines), text)
    PAGE.write_text(text, encoding="utf-8")
