"""Measurements of the scale-out tests, for docs/scaling-out.md.

Tests record what they measured with the ``measured`` fixture. With HEROREPO_SCALING_DOCS=1 set,
the end of the run writes them into docs/scaling-out.md, between the ``scaling-figures`` markers:
``HEROREPO_SCALING_DOCS=1 pytest tests/scaling``. Nothing is written when a test failed.
"""

from __future__ import annotations

import os
import platform
import re
from datetime import date
from pathlib import Path

import asyncpg
import pytest
import sqlalchemy

PAGE = Path(__file__).resolve().parents[2] / "docs" / "scaling-out.md"
START, END = "<!-- scaling-figures:start -->", "<!-- scaling-figures:end -->"

_MEASURED: dict[str, str] = {}


class Measured:
    def __call__(self, name: str, value: str) -> None:
        _MEASURED[name] = value


@pytest.fixture
def measured() -> Measured:
    return Measured()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("HEROREPO_SCALING_DOCS") != "1" or not _MEASURED or exitstatus != 0:
        return
    lines = [
        START,
        f"Measured on {date.today().isoformat()} by `tests/scaling` on loopback ({os.cpu_count()} "
        f"cores, Python {platform.python_version()}, SQLAlchemy {sqlalchemy.__version__}, "
        f"asyncpg {asyncpg.__version__}):",
        "",
        "| measurement | result |",
        "|---|---|",
        *(f"| {name} | {value} |" for name, value in sorted(_MEASURED.items())),
        END,
    ]
    text = PAGE.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.DOTALL)
    PAGE.write_text(pattern.sub(lambda _: "\n".join(lines), text), encoding="utf-8")
