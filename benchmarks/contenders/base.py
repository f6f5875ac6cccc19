"""The adapter interface every contender implements, and what they share.

A contender is one way of writing the same data access: the raw driver with hand-written SQL,
SQLAlchemy Core, hand-written SQLModel ``AsyncSession`` code, herorepo, advanced-alchemy's
repository, fastcrud. Each workload is one method; a contender that has no API for a workload
leaves the method alone and the base raises :class:`Unsupported` (reported as "n/a").

Every method does the whole operation as an application would for one request: take a
connection or session, run the statements, commit where the workload says so, give the
connection back. Inputs are plain values and dicts (what an API handler receives); each contender
turns them into whatever its API takes, and that conversion is part of its cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

PAGE_SIZE = 100
"""Rows per page for the list, keyset and offset workloads."""

STREAM_BATCH = 1000
"""Rows per batch (partition, fetch, prefetch) when streaming."""

MIN_AGE = 30
"""The list workload's filter: heroes aged at least this, sorted by (unique) name."""


class Unsupported(Exception):
    """The contender has no API for this workload."""


@dataclass
class Env:
    """Where a contender runs: the backend and its SQLAlchemy URL."""

    backend: str  # "sqlite", "postgres" or "mysql"
    url: str
    sqlite_path: str | None = None


@dataclass
class UowArgs:
    """The three writes of the unit-of-work workload."""

    new: dict[str, Any]
    update_id: int
    secret_name: str
    delete_id: int


@dataclass
class Contender:
    """Base of every contender: holds the environment and counts the SQL statements sent."""

    env: Env
    statements: int = field(default=0, init=False)
    begins: int = field(default=0, init=False)
    """BEGINs sent through the cursor (herorepo on SQLite); reported apart from statements."""

    key: ClassVar[str] = ""
    label: ClassVar[str] = ""
    family: ClassVar[str] = ""  # "raw" for the driver baselines, "sqlalchemy" for the rest

    async def open(self) -> None:
        """Connect: create the engine or pool. Not timed."""

    async def close(self) -> None:
        """Dispose of the engine or pool. Not timed."""

    def count_statements(self, engine: AsyncEngine) -> None:
        """Count every statement ``engine`` sends through a cursor, leaving out ``BEGIN``.

        Transaction control is sent outside the cursor by most drivers (asyncpg and aiomysql
        begin and commit through driver calls, sqlite3 begins implicitly), so counting
        herorepo's explicit SQLite ``BEGIN`` / ``BEGIN IMMEDIATE`` would count something the
        others also send, unseen. Those are counted in ``begins`` instead; SAVEPOINTs count as
        statements.
        """

        def before_cursor_execute(*args: Any) -> None:
            statement: str = args[2]
            if statement.lstrip()[:5].upper() == "BEGIN":
                self.begins += 1
            else:
                self.statements += 1

        event.listen(engine.sync_engine, "before_cursor_execute", before_cursor_execute)

    # --- the workloads -------------------------------------------------------------------------

    async def get_by_pk(self, ident: int) -> Any:
        """Read one hero by primary key (no transaction of its own: read and give back)."""
        raise Unsupported

    async def list_page(self) -> Sequence[Any]:
        """Heroes aged >= MIN_AGE, ordered by name (unique: a total order), first PAGE_SIZE rows."""
        raise Unsupported

    async def insert_one(self, row: dict[str, Any]) -> Any:
        """Insert one hero, commit, and have its generated id and server default."""
        raise Unsupported

    async def bulk_insert(self, rows: list[dict[str, Any]]) -> Any:
        """Insert all ``rows`` into the bulk table and commit."""
        raise Unsupported

    async def update_one(self, ident: int, secret_name: str) -> Any:
        """Set one hero's secret_name and commit."""
        raise Unsupported

    async def delete_one(self, ident: int) -> None:
        """Delete one hero by primary key and commit."""
        raise Unsupported

    async def keyset_cursor(self, after_id: int) -> Any:
        """Return this contender's cursor for "the rows after id ``after_id``". Not timed."""
        return after_id

    async def keyset_page(self, cursor: Any) -> Sequence[Any]:
        """The PAGE_SIZE rows of the large table after ``cursor`` (None: the first page)."""
        raise Unsupported

    async def offset_page(self, offset: int) -> Sequence[Any]:
        """The PAGE_SIZE rows of the large table after skipping ``offset`` rows by id."""
        raise Unsupported

    async def teams_with_heroes(self) -> Sequence[Any]:
        """Every team (100) with its heroes, eagerly loaded."""
        raise Unsupported

    async def stream(self, last_id: int) -> int:
        """Walk the large table's rows with id <= ``last_id`` in id order; return how many."""
        raise Unsupported

    async def unit_of_work(self, args: UowArgs) -> None:
        """Insert one hero, update another, delete a third, in one committed transaction."""
        raise Unsupported


def supports(contender: Contender, method: str) -> bool:
    """Whether ``contender`` overrides ``method`` (otherwise the workload is n/a for it)."""
    return getattr(type(contender), method) is not getattr(Contender, method)
