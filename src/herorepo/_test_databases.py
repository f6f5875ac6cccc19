"""Scratch databases for test runs: one per pytest-xdist worker, created empty and dropped after.

:func:`worker_database` derives the scratch database's name from the configured one, so the
configured database itself is never created, emptied or dropped. On PostgreSQL and MySQL it runs
``CREATE DATABASE`` and ``DROP DATABASE`` through the configured URL (its user needs the right to
create databases); on SQLite the scratch database is a file next to the configured one, and an
in-memory database, private to its process already, is used as it is.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from ._errors import ConfigurationError
from ._url import Backend, parse_url, redact, resolve_url

# Names are checked before they reach SQL, and quoted there as well.
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_SUFFIX = re.compile(r"[A-Za-z0-9_]+\Z")
# Longer names are refused: PostgreSQL would cut them short, which could make two names one.
_MAX_LENGTH: dict[Backend, int] = {"postgresql": 63, "mysql": 64}


@asynccontextmanager
async def worker_database(url: str | URL, suffix: str) -> AsyncGenerator[str, None]:
    """Yield the URL of a new, empty database of its own for ``suffix``; drop it at the end.

    The new database is named after the one ``url`` names, plus ``_`` and ``suffix``: ``test``
    and ``"gw0"`` give ``test_gw0``. On PostgreSQL and MySQL it is created with ``CREATE
    DATABASE`` through ``url`` (on MySQL with the same character set and collation), after
    dropping a database of that name left behind by a run that crashed, and dropped with ``DROP
    DATABASE`` when the block ends (on PostgreSQL 13 and later ``WITH (FORCE)``, which closes
    connections still open to it). On SQLite it is a file next to the configured one
    (``tests.db`` gives ``tests_gw0.db``), deleted before and after; an in-memory database is
    private to its process already, and its URL is yielded as it is. The database ``url`` names
    is never created, changed or dropped.

    The plugin gives each pytest-xdist worker its database this way; use it for scratch databases
    of your own::

        async with worker_database("postgresql+asyncpg://app@localhost/test", "gw0") as url:
            async with Database(url) as db:  # on the database test_gw0
                await db.create_all()

    Args:
        url: the configured database; its user must be allowed to create databases (PostgreSQL:
            ``CREATEDB``; MySQL: the ``CREATE`` and ``DROP`` privileges on the new name).
        suffix: letters, digits and underscores, such as a pytest-xdist worker id.

    Returns:
        An async context manager that yields the new database's URL (with its password).

    Raises:
        ConfigurationError: ``suffix`` or the new name is not a plain identifier (letters,
            digits and underscores, at most 63 characters on PostgreSQL and 64 on MySQL), the URL
            names no database, or the server refused to create or drop it (the message says
            which right is missing).

    .. versionadded:: 0.1.0
    """
    given: object = suffix  # checked as if untyped: it often comes from the environment
    if not isinstance(given, str) or not _SUFFIX.match(given):
        raise ConfigurationError(
            f"The suffix of a worker database must be letters, digits and underscores, got "
            f"{given!r}."
        )
    parsed = parse_url(url)
    resolved, backend = resolve_url(parsed)
    if backend == "sqlite":
        async with _sqlite_file(url, parsed, suffix) as worker_url:
            yield worker_url
        return
    base = parsed.database
    if not base:
        raise ConfigurationError(
            f"The URL {redact(parsed)!r} names no database, so there is none to name a worker "
            "database after: add one, as in postgresql+asyncpg://user@host/test."
        )
    name = f"{base}_{suffix}"
    if not _NAME.match(name) or len(name) > _MAX_LENGTH[backend]:
        raise ConfigurationError(
            f"Cannot name a worker database {name!r}: a worker database name must be letters, "
            f"digits and underscores, not starting with a digit, and at most "
            f"{_MAX_LENGTH[backend]} characters. Configure a database with such a name."
        )
    engine = create_async_engine(resolved, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        async with engine.connect() as admin:
            await _drop(admin, backend, name, leftover=True)
            await _create(admin, backend, name, base)
        try:
            yield parsed.set(database=name).render_as_string(hide_password=False)
        finally:
            async with engine.connect() as admin:
                await _drop(admin, backend, name, leftover=False)
    finally:
        await engine.dispose()


async def _create(admin: AsyncConnection, backend: Backend, name: str, base: str) -> None:
    statement = f"CREATE DATABASE {_quote(admin, name)}"
    if backend == "mysql":  # the same text rules as the configured database
        row = (
            await admin.execute(
                text(
                    "SELECT default_character_set_name, default_collation_name "
                    "FROM information_schema.schemata WHERE schema_name = :base"
                ),
                {"base": base},
            )
        ).first()
        if row is not None and all(_NAME.match(str(value)) for value in row):
            statement += f" CHARACTER SET {row[0]} COLLATE {row[1]}"
    try:
        await admin.execute(text(statement))
    except DBAPIError as exc:
        raise _refused("create", admin, backend, name, exc) from exc


async def _drop(admin: AsyncConnection, backend: Backend, name: str, *, leftover: bool) -> None:
    statement = f"DROP DATABASE IF EXISTS {_quote(admin, name)}"
    if backend == "mysql":  # fail instead of waiting for locks of another session for a year
        await admin.execute(text("SET SESSION lock_wait_timeout = 10"))
    elif not leftover and _version(admin) >= (13,):
        statement += " WITH (FORCE)"  # our own database: close what the tests left open
    try:
        await admin.execute(text(statement))
    except DBAPIError as exc:
        raise _refused("drop", admin, backend, name, exc) from exc


def _version(admin: AsyncConnection) -> tuple[int, ...]:
    info: tuple[object, ...] = admin.dialect.server_version_info or ()
    return tuple(part for part in info if isinstance(part, int))


def _refused(
    verb: str, admin: AsyncConnection, backend: Backend, name: str, exc: DBAPIError
) -> ConfigurationError:
    right = (
        "the CREATEDB attribute (ALTER ROLE ... CREATEDB)"
        if backend == "postgresql"
        else f"the CREATE and DROP privileges on `{name}`"
    )
    lines = str(exc.orig).strip().splitlines()
    reason = lines[0] if lines else type(exc.orig).__name__
    return ConfigurationError(
        f"Could not {verb} the database {name!r} through {redact(admin.engine.url)!r}: {reason}. "
        f"A database of its own per test worker needs {right} for the user of the configured "
        "URL: grant it, or run the tests without pytest-xdist's -n. (Another test run that "
        "uses the same database name at the same time makes this fail too.)"
    )


def _quote(admin: AsyncConnection, name: str) -> str:
    if not _NAME.match(name):  # never reached: names are checked first
        raise ConfigurationError(f"Refusing to use {name!r} as a database name.")
    return admin.dialect.identifier_preparer.quote_identifier(name)


_SQLITE_COMPANIONS = ("", "-journal", "-wal", "-shm")


@asynccontextmanager
async def _sqlite_file(url: str | URL, parsed: URL, suffix: str) -> AsyncGenerator[str, None]:
    database = parsed.database or ""
    if (
        database in ("", ":memory:")
        or parsed.query.get("mode") == "memory"
        or "mode=memory" in database
    ):
        # Private to its process already: the URL as given.
        yield url if isinstance(url, str) else url.render_as_string(hide_password=False)
        return
    if database.startswith("file:"):
        raise ConfigurationError(
            "A worker database on SQLite needs the database file as a plain path, not a file: "
            f"URI: {redact(parsed)!r}."
        )
    path = Path(database)
    worker = path.with_name(f"{path.stem}_{suffix}{path.suffix}")
    _remove(worker)  # left behind by a run that crashed
    try:
        yield parsed.set(database=str(worker)).render_as_string(hide_password=False)
    finally:
        _remove(worker)


def _remove(path: Path) -> None:
    for companion in _SQLITE_COMPANIONS:
        path.with_name(path.name + companion).unlink(missing_ok=True)
