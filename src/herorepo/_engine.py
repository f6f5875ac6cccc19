"""Engine and sessionmaker factory with safe defaults per backend.

Defaults, and why:

=================  ===========  ===========  ===========  =========================================
setting            SQLite file  PostgreSQL   MySQL        why
=================  ===========  ===========  ===========  =========================================
pool_size          5            5            5            SQLAlchemy's default
max_overflow       10           10           10           SQLAlchemy's default
pool_timeout       30 s         30 s         30 s         SQLAlchemy's default
pool_recycle       off          off          1800 s       MySQL drops idle connections after
                                                          ``wait_timeout`` (28800 s by default)
pool_pre_ping      off          on           on           a server restart or a dropped connection
                                                          costs one retry, not a failed request
=================  ===========  ===========  ===========  =========================================

SQLite connections also get ``PRAGMA foreign_keys=ON``, a busy timeout, and (for files)
``journal_mode=WAL``. herorepo issues ``BEGIN`` itself, SQLAlchemy's documented fix that makes
SAVEPOINT work on pysqlite/aiosqlite. ``sqlite+aiosqlite:///:memory:`` uses one shared connection
(a :class:`~sqlalchemy.pool.StaticPool`), so every session of an engine sees the same tables; the
pool settings do not apply there. MySQL connections use ``charset=utf8mb4`` unless the URL names
another charset.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.exc import ArgumentError
from sqlalchemy.exc import TimeoutError as SATimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry, NullPool, StaticPool
from sqlmodel.ext.asyncio.session import AsyncSession

from ._cancel import install_sqlite_stop, interrupt_on_cancel
from ._errors import ConfigurationError, ConnectionLostError, PoolTimeoutError
from ._filters import sqlite_casefold, sqlite_like
from ._session import GuardedSession
from ._translate import translate_driver_error
from ._url import Backend, is_sqlite_memory, redact, resolve_url

if TYPE_CHECKING:
    from collections.abc import Mapping

    from sqlalchemy.engine import URL

__all__ = ["EngineConfig", "create_engine", "create_sessionmaker"]

SQLITE_BEGIN_OPTION = "herorepo_sqlite_begin"
"""Execution option a unit of work sets to "immediate" so SQLite takes the write lock at BEGIN."""


@dataclass(frozen=True, kw_only=True)
class EngineConfig:
    """Pool and engine settings; ``None`` means "the backend's default" (see the module table).

    Args:
        pool_size: Connections kept open in the pool.
        max_overflow: Extra connections allowed above ``pool_size`` under load.
        pool_timeout: Seconds to wait for a free connection before giving up.
        pool_recycle: Seconds after which a connection is replaced; ``-1`` never.
        pool_pre_ping: Test each connection with a cheap round trip when it is checked out.
        echo: Log every SQL statement (through the ``sqlalchemy.engine`` logger).
        sqlite_busy_timeout: Seconds a SQLite writer waits for a lock before failing.
        pgbouncer: PostgreSQL behind PgBouncer in transaction pooling mode: no client-side pool
            (:class:`~sqlalchemy.pool.NullPool`; PgBouncer pools), no statement caches, and a
            unique name for every prepared statement, so that no statement outlives the
            transaction that prepared it. The pool settings above must then be left unset.

    Raises:
        ConfigurationError: a value has the wrong type or is out of range.

    .. versionadded:: 0.1.0
    """

    pool_size: int | None = None
    max_overflow: int | None = None
    pool_timeout: float | None = None
    pool_recycle: int | None = None
    pool_pre_ping: bool | None = None
    echo: bool = False
    sqlite_busy_timeout: float = 5.0
    pgbouncer: bool = False

    def __post_init__(self) -> None:
        _check_int("pool_size", self.pool_size, minimum=1)
        _check_int("max_overflow", self.max_overflow, minimum=0)
        _check_int("pool_recycle", self.pool_recycle, minimum=-1)
        _check_seconds("pool_timeout", self.pool_timeout)
        _check_seconds("sqlite_busy_timeout", self.sqlite_busy_timeout)
        for name in ("pool_pre_ping", "echo", "pgbouncer"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, bool):
                raise ConfigurationError(f"{name} must be True or False, got {value!r}.")
        if self.pgbouncer:
            pooled = [name for name in _POOL_SETTINGS if getattr(self, name) is not None]
            if pooled:
                raise ConfigurationError(
                    f"{', '.join(pooled)} cannot be set with pgbouncer=True: PgBouncer pools the "
                    "connections, and herorepo opens one per session or unit of work."
                )

    def resolved(self, backend: Backend) -> dict[str, Any]:
        """The pool keyword arguments for ``backend``, defaults filled in."""
        defaults: dict[str, Any] = {
            "pool_size": 5,
            "max_overflow": 10,
            "pool_timeout": 30.0,
            "pool_recycle": 1800 if backend == "mysql" else -1,
            "pool_pre_ping": backend != "sqlite",
        }
        given = {f.name: getattr(self, f.name) for f in fields(self) if f.name in defaults}
        return {
            name: default if given[name] is None else given[name]
            for name, default in defaults.items()
        }


_POOL_SETTINGS = ("pool_size", "max_overflow", "pool_timeout", "pool_recycle", "pool_pre_ping")


def _pgbouncer_connect_args() -> dict[str, Any]:
    """asyncpg settings for PgBouncer's transaction pooling (SQLAlchemy's asyncpg docs)."""
    return {
        "statement_cache_size": 0,  # asyncpg's own cache of named statements
        "prepared_statement_cache_size": 0,  # SQLAlchemy's cache in its asyncpg adapter
        # Statements are still prepared, within one transaction; a server connection may have
        # served other clients' statements, so names must never repeat.
        "prepared_statement_name_func": lambda: f"__herorepo_{uuid.uuid4().hex}__",
    }


class HeroRepoPool(AsyncAdaptedQueuePool):
    """SQLAlchemy's async queue pool; raises herorepo errors when it has no connection."""

    def _do_get(self) -> ConnectionPoolEntry:
        try:
            return super()._do_get()
        except SATimeoutError:
            raise PoolTimeoutError(
                f"No database connection became free within {self.timeout():g} s "
                f"(pool_size={self.size()}, max_overflow={self._max_overflow}). Hold sessions "
                "and units of work for shorter times, or raise pool_size / max_overflow."
            ) from None

    def _should_wrap_creator(self, creator: Any) -> Any:
        return _connection_lost_on_connect_failure(super()._should_wrap_creator(creator))


class HeroRepoNullPool(NullPool):
    """SQLAlchemy's NullPool (the PgBouncer profile); a failed connect is ConnectionLostError."""

    def _should_wrap_creator(self, creator: Any) -> Any:
        return _connection_lost_on_connect_failure(super()._should_wrap_creator(creator))


def _connection_lost_on_connect_failure(invoke: Any) -> Any:
    """Wrap a pool's connect function, which every new connection goes through: a first
    connect, a replacement, and the reconnect after a failed pre-ping (a server that is down
    while connections idle). asyncpg lets socket errors through as they are."""

    def connect(record: Any) -> Any:
        try:
            return invoke(record)
        except (OSError, asyncio.TimeoutError) as exc:
            reason = "no answer" if isinstance(exc, asyncio.TimeoutError) else exc.strerror
            raise ConnectionLostError(
                f"Could not connect to the database server: {reason or exc}."
            ) from exc

    return connect


def _check_int(name: str, value: object, *, minimum: int) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(f"{name} must be a whole number >= {minimum}, got {value!r}.")


def _check_seconds(name: str, value: object) -> None:
    if value is None:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigurationError(f"{name} must be a number of seconds > 0, got {value!r}.")


def create_engine(
    url: str | URL,
    config: EngineConfig | None = None,
    *,
    connect_args: Mapping[str, Any] | None = None,
) -> AsyncEngine:
    """Create an async engine for ``url`` with herorepo's defaults for its backend.

    Plain URLs (``postgresql://``, ``mysql://``, ``sqlite:///``) get their async driver. Driver
    errors we can name (integrity violations) are raised as herorepo errors on every path: a
    repository call, a commit, or your own ``session.exec()``.

    Args:
        url: The database URL.
        config: Pool and engine settings; backend defaults when omitted.
        connect_args: Extra keyword arguments for the driver's ``connect()``.

    Returns:
        A ready :class:`~sqlalchemy.ext.asyncio.AsyncEngine`. Dispose it when done.

    Raises:
        ConfigurationError: the URL, driver or a setting cannot be used.

    .. versionadded:: 0.1.0
    """
    config = config or EngineConfig()
    resolved, backend = resolve_url(url)
    options: dict[str, Any] = {"echo": config.echo, "connect_args": dict(connect_args or {})}
    if backend == "sqlite":
        # sqlite3's connect timeout is SQLite's busy timeout: writers wait for the lock.
        options["connect_args"].setdefault("timeout", config.sqlite_busy_timeout)
    if config.pgbouncer:
        if backend != "postgresql":
            raise ConfigurationError(
                f"pgbouncer=True is for PostgreSQL; {redact(resolved)!r} is {backend}."
            )
        options["poolclass"] = HeroRepoNullPool
        options["connect_args"] = {**_pgbouncer_connect_args(), **options["connect_args"]}
    elif backend == "sqlite" and is_sqlite_memory(resolved):
        options["poolclass"] = StaticPool
    else:
        options.update(config.resolved(backend))
        options["poolclass"] = HeroRepoPool
    if backend == "mysql" and "charset" not in resolved.query:
        resolved = resolved.update_query_dict({"charset": "utf8mb4"})

    try:
        engine = create_async_engine(resolved, **options)
    except ArgumentError as exc:
        message = str(exc)
        if resolved.password:
            message = message.replace(str(resolved.password), "***")
        raise ConfigurationError(
            f"The database URL {redact(resolved)!r} cannot be used: {message}"
        ) from None
    event.listen(engine.sync_engine, "handle_error", interrupt_on_cancel)
    event.listen(engine.sync_engine, "handle_error", translate_driver_error)
    if backend == "sqlite":
        _configure_sqlite(engine, memory=is_sqlite_memory(resolved))
    if backend == "mysql":
        event.listen(engine.sync_engine, "connect", _make_mysql_strict)
    return engine


def _make_mysql_strict(dbapi_connection: Any, _record: Any) -> None:
    # Without strict mode MySQL stores a too-long or out-of-range value truncated, with only a
    # warning. Keep the server's other modes (ANSI_QUOTES and friends) as they are.
    cursor = dbapi_connection.cursor()
    cursor.execute(
        "SET SESSION sql_mode = CONCAT_WS(',', NULLIF(@@SESSION.sql_mode, ''), 'STRICT_ALL_TABLES')"
    )
    cursor.close()


def _configure_sqlite(engine: AsyncEngine, *, memory: bool) -> None:
    def on_connect(dbapi_connection: Any, record: Any) -> None:
        # Take transaction control away from the sqlite3 module, which would otherwise
        # COMMIT before a SAVEPOINT; the "begin" hook below emits BEGIN instead.
        dbapi_connection.isolation_level = None
        # Text filters must match the same way as on the server backends.
        dbapi_connection.create_function(
            "herorepo_casefold", 1, sqlite_casefold, deterministic=True
        )
        dbapi_connection.create_function("herorepo_like", 2, sqlite_like, deterministic=True)
        install_sqlite_stop(dbapi_connection, record)  # lets a cancellation stop a statement
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        if not memory:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    def on_begin(connection: Any) -> None:
        immediate = connection.get_execution_options().get(SQLITE_BEGIN_OPTION) == "immediate"
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    event.listen(engine.sync_engine, "connect", on_connect)
    event.listen(engine.sync_engine, "begin", on_begin)


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Create a sessionmaker of SQLModel's ``AsyncSession`` bound to ``engine``.

    Sessions keep loaded objects usable after commit (``expire_on_commit=False``), cannot be
    reused after they are closed, and raise :class:`~herorepo.LazyLoadError` instead of
    ``MissingGreenlet`` when code touches a relationship that was not loaded.

    .. versionadded:: 0.1.0
    """
    return async_sessionmaker(
        engine,
        class_=AsyncSession,
        sync_session_class=GuardedSession,
        expire_on_commit=False,
        close_resets_only=False,
    )
