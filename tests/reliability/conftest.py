"""Figures of the fault suite, for docs/reliability.md.

Tests add what they did to the ``figures`` fixture (per backend). With
HEROREPO_RELIABILITY_REPORT=path set, the totals are written there at the end of the run: a
Markdown table when the path ends in ``.md``, JSON otherwise.
``HEROREPO_RELIABILITY_REPORT=figures.md pytest tests/reliability``
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict

import pytest

from herorepo import Database

from ..conftest import backend_url

_FIGURES: defaultdict[str, Counter[str]] = defaultdict(Counter)


class Figures:
    def __init__(self, backend: str) -> None:
        self._counter = _FIGURES[backend]

    def add(self, name: str, amount: int = 1) -> None:
        self._counter[name] += amount


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Figures:
    callspec = getattr(request.node, "callspec", None)
    params = callspec.params if callspec else {}
    backend = next(
        (
            str(params[k])
            for k in ("backend", "write_backend", "server_backend", "throwaway_backend")
            if k in params
        ),
        "sqlite",
    )
    return Figures(backend)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = os.environ.get("HEROREPO_RELIABILITY_REPORT")
    if path and _FIGURES:
        with open(path, "w", encoding="utf-8") as out:
            if path.endswith(".md"):
                out.write(markdown_table(_FIGURES))
            else:
                json.dump({k: dict(v) for k, v in sorted(_FIGURES.items())}, out, indent=2)


def markdown_table(figures: dict[str, Counter[str]]) -> str:
    backends = [b for b in ("sqlite", "postgres", "mysql") if b in figures]
    names = sorted({name for counter in figures.values() for name in counter})
    lines = [
        "| | " + " | ".join(backends) + " |",
        "|---|" + "---:|" * len(backends),
    ]
    for name in names:
        cells = [str(figures[b][name]) if name in figures[b] else "" for b in backends]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def impatient_database(db: Database) -> Database:
    """A second database on ``db``'s server whose sessions give up on a row lock quickly.

    A pool of its own: a session setting changed on the shared pool would stay with its
    connection for later tests. PostgreSQL waits 200 ms, MariaDB one second (its shortest).
    """
    if db.backend == "postgresql":
        return Database(
            backend_url("postgres"), connect_args={"server_settings": {"lock_timeout": "200"}}
        )
    return Database(
        backend_url("mysql"),
        connect_args={"init_command": "SET SESSION innodb_lock_wait_timeout = 1"},
    )
