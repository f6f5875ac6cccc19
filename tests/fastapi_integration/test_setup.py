"""The FastAPI integration without a database: refusals at definition time, and what it imports."""

from __future__ import annotations

import subprocess
import sys

import pytest
from sqlmodel import SQLModel

from herorepo import ConfigurationError, Repository
from herorepo.integrations.fastapi import repository


class NotATable(SQLModel):
    name: str


def test_repository_refuses_what_it_cannot_build() -> None:
    with pytest.raises(ConfigurationError, match="takes a table model"):
        repository(NotATable)
    with pytest.raises(ConfigurationError, match="names no model"):
        repository(Repository)
    with pytest.raises(ConfigurationError, match="takes a table model"):
        repository(42)  # type: ignore[call-overload]


def test_core_never_imports_fastapi() -> None:
    code = (
        "import sys, herorepo, herorepo.testing\n"
        "assert 'fastapi' not in sys.modules, 'herorepo imported FastAPI'\n"
        "assert 'httpx' not in sys.modules, 'herorepo imported httpx'\n"
    )
    subprocess.run([sys.executable, "-W", "error", "-c", code], check=True, timeout=60)


def test_pytest_entry_point_loads_no_fixtures() -> None:
    """pytest imports the entry point in every run: it must not pull in the fixtures."""
    code = (
        "import sys, herorepo._pytest_entry\n"
        "assert 'herorepo.testing' not in sys.modules\n"
        "assert 'pytest_asyncio' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-W", "error", "-c", code], check=True, timeout=60)
