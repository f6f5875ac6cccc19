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
pool_ping_idle     n/a          10 s         10 s         a checkout pings only a connection idle
                                                          for longer; see below
=================  ===========  ===========  ===========  =========================================

herorepo's pre-ping replaces SQLAlchemy's ``pool_pre_ping``, which costs a round trip on every
checkout (three on asyncpg: BEGIN, a ping, ROLLBACK), as much as the query itself. At checkout
it first looks at the driver's socket, for free: a connection the server closed (a restart, a
killed session, ``wait_timeout``) has seen its end of stream and is replaced without a round trip.
Only a connection idle for longer than ``pool_ping_idle`` seconds is also pinged, which catches
connections dropped silently (a firewall or NAT forgetting them). ``pool_ping_idle=0`` pings on
every checkout, as SQLAlchemy does.

SQLite connections also get ``PRAGMA foreign_keys=ON``, a busy timeout, and (for files)
``journal_mode=WAL``. herorepo issues ``BEGIN`` itself, SQLAlchemy's documented fix that makes
SAVEPOINT work on pysqlite/aiosqlite: a unit of work sends ``BEGIN IMMEDIATE`` (``BEGIN`` when
read-only) before its first statement; other transactions send ``BEGIN`` before their first
statement that is not a SELECT, so reads on a plain session cost no extra statement (as with
the sqlite3 module's own transaction handling). ``sqlite+aiosqlite:///:memory:`` keeps one
connection, which is the database: sessions and units of work take turns on it (one waits for
the other, up to ``pool_timeout``), so their transactions never mix; the other pool settings do
not apply.
MySQL connections use ``charset=utf8mb4`` unless the URL names another charset.
A MySQL URL that lists several nodes (a Galera cluster) connects through
:class:`~herorepo._nodes.NodeConnector`, which passes over nodes that are down or not Synced.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
import weakref
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.exc import ArgumentError, DisconnectionError, InvalidatePoolError
from sqlalchemy.exc import TimeoutError as SATimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry, NullPool, PoolResetState
from sqlalchemy.util import await_
from sqlmodel.ext.asyncio.session import AsyncSession

from ._cancel import install_sqlite_stop, interrupt_on_cancel
from ._commit_outcome import install_commit_markers, record_no_commit_outcome
from ._errors import CannotConnectError, ConfigurationError, PoolTimeoutError, show_values
from ._filters import sqlite_casefold, sqlite_like
from ._hosts import listed_hosts, no_host_fits
from ._nodes import NodeConnector
from ._query_tags import QueryTags, install_query_tags
from ._session import GuardedSession
from ._slow_log import install_slow_statement_log
from ._transaction import COMMITTED, install_connection_hooks
from ._translate import translate_driver_error
from ._url import Backend, is_sqlite_memory, redact, resolve_url

if TYPE_CHECKING:
    from collections.abc import Mapping

    from sqlalchemy.engine import URL, Engine

__all__ = ["EngineConfig", "create_engine", "create_sessionmaker", "engine_with_options"]

SQLITE_BEGIN_OPTION = "herorepo_sqlite_begin"
"""Execution option a unit of work sets so SQLite begins at once: "immediate" takes the write
lock at BEGIN, "deferred" sends a plain BEGIN. Without it, BEGIN waits for the first write."""

READ_ONLY_OPTION = "herorepo_read_only"
"""Execution option of a read-only unit of work on SQLite (``PRAGMA query_only``) and MySQL
(``START TRANSACTION READ ONLY``); PostgreSQL has SQLAlchemy's own ``postgresql_readonly``."""

_QUERY_ONLY = "herorepo_query_only"  # in a SQLite connection's info: PRAGMA query_only is on


@dataclass(frozen=True, kw_only=True)
class EngineConfig:
    """Pool and engine settings; ``None`` means "the backend's default" (see the module table).

    Args:
        pool_size: Connections kept open in the pool.
        max_overflow: Extra connections allowed above ``pool_size`` under load.
        pool_timeout: Seconds to wait for a free connection before giving up.
        pool_recycle: Seconds after which a connection is replaced; ``-1`` never.
        pool_pre_ping: Check each connection when it is checked out, and replace it if the
            server has closed it.
        pool_ping_idle: Seconds a pooled connection may sit idle before a checkout also pings
            it with a round trip; ``0`` pings on every checkout.
        echo: Log every SQL statement (through the ``sqlalchemy.engine`` logger).
        sqlite_busy_timeout: Seconds a SQLite writer waits for a lock before failing.
        pgbouncer: PostgreSQL behind PgBouncer in transaction pooling mode: no client-side pool
            (:class:`~sqlalchemy.pool.NullPool`; PgBouncer pools), no statement caches, and a
            unique name for every prepared statement, so that no statement outlives the
            transaction that prepared it. The pool settings above must then be left unset.
        slow_statement: Seconds after which a statement is logged on the ``herorepo.slow``
            logger (WARNING: duration and SQL, no parameters); ``None`` (default) logs none.
        show_values_in_errors: Let error messages, and SQLAlchemy's statement errors and logs,
            show values (parameters, rows, keys asked for). Off by default: values may be
            personal data, and messages reach logs and API responses. Off, the driver's
            exception chained to a herorepo error (its ``__cause__``) has the text that may
            show values replaced too, its class and codes kept. For development.
        query_tags: Append a sqlcommenter comment naming the application, the FastAPI route
            template and the unit of work to every statement (see :class:`QueryTags`);
            ``None`` (default) appends nothing and installs no hook.
        commit_outcome: Record, before each COMMIT of a unit of work that wrote, what the
            outcome can be asked with if the connection is lost during the COMMIT (one round
            trip; on MySQL and MariaDB a row in the ``herorepo_commit_markers`` table, created
            at the first connection). ``False`` records nothing and creates no table: a lost
            COMMIT then raises ``CommitInterruptedError(committed=None)``, which
            ``Database.run()`` does not retry. See docs/reliability.md, "Commit outcome".

    Raises:
        ConfigurationError: a value has the wrong type or is out of range.

    .. versionadded:: 0.1.0
    """

    pool_size: int | None = None
    max_overflow: int | None = None
    pool_timeout: float | None = None
    pool_recycle: int | None = None
    pool_pre_ping: bool | None = None
    pool_ping_idle: float = 10.0
    echo: bool = False
    sqlite_busy_timeout: float = 5.0
    pgbouncer: bool = False
    slow_statement: float | None = None
    show_values_in_errors: bool = False
    query_tags: QueryTags | None = None
    commit_outcome: bool = True

    def __post_init__(self) -> None:
        _check_int("pool_size", self.pool_size, minimum=1)
        _check_int("max_overflow", self.max_overflow, minimum=0)
        _check_int("pool_recycle", self.pool_recycle, minimum=-1)
        _check_seconds("pool_timeout", self.pool_timeout)
        _check_seconds("sqlite_busy_timeout", self.sqlite_busy_timeout)
        _check_seconds("pool_ping_idle", self.pool_ping_idle, zero=True)
        _check_seconds("slow_statement", self.slow_statement, zero=True)
        flags = ("pool_pre_ping", "echo", "pgbouncer", "show_values_in_errors", "commit_outcome")
        for name in flags:
            value = getattr(self, name)
            if value is not None and not isinstance(value, bool):
                raise ConfigurationError(f"{name} must be True or False, got {value!r}.")
        if self.query_tags is not None and not isinstance(self.query_tags, QueryTags):
            raise ConfigurationError(
                "query_tags must be a QueryTags, such as QueryTags(application='billing'), "
                f"got {self.query_tags!r}."
            )
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


class MemorySqlitePool(HeroRepoPool):
    """The pool of one connection behind ``sqlite:///:memory:``: the connection is the database."""

    def _do_get(self) -> ConnectionPoolEntry:
        try:
            return AsyncAdaptedQueuePool._do_get(self)
        except SATimeoutError:
            raise PoolTimeoutError(
                "An in-memory SQLite database has a single connection, and another session or "
                f"unit of work held it for more than {self.timeout():g} s. Close one before "
                "opening the next (a plain session opened inside another in the same task waits "
                "for itself), or use a file database (sqlite+aiosqlite:///app.db) for "
                "concurrent work."
            ) from None


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
            raise CannotConnectError(
                f"Could not connect to the database server: {reason or exc}. Check the host and "
                "port of the URL, and that the server is running."
            ) from exc
        except Exception as exc:
            # asyncpg with several hosts: each answered, and none was a primary (a failover).
            refused = no_host_fits(exc.__cause__ or exc)
            if refused is None:
                raise
            raise refused from exc

    return connect


def _check_int(name: str, value: object, *, minimum: int) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(f"{name} must be a whole number >= {minimum}, got {value!r}.")


def _check_seconds(name: str, value: object, *, zero: bool = False) -> None:
    if value is None:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
        or (value == 0 and not zero)
    ):
        raise ConfigurationError(
            f"{name} must be a number of seconds {'>=' if zero else '>'} 0, got {value!r}."
        )


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
    options: dict[str, Any] = {
        "echo": config.echo,
        "hide_parameters": not config.show_values_in_errors,
        "connect_args": dict(connect_args or {}),
    }
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
        # The one connection is the database. A pool of exactly one makes a second session or
        # unit of work wait for it, where a shared connection would mix their transactions
        # (the second one's rollback would undo the first one's work).
        options.update(
            poolclass=MemorySqlitePool,
            pool_size=1,
            max_overflow=0,
            pool_timeout=config.pool_timeout or 30.0,
            pool_recycle=-1,
        )
    else:
        options.update(config.resolved(backend))
        options["poolclass"] = HeroRepoPool
    # SQLAlchemy's pre-ping pings on every checkout; herorepo's (below) only when needed.
    pre_ping = options.pop("pool_pre_ping", False)
    if backend == "mysql" and "charset" not in resolved.query:
        resolved = resolved.update_query_dict({"charset": "utf8mb4"})
    nodes = listed_hosts(resolved) if backend == "mysql" else None
    connector = None
    if nodes is not None:  # aiomysql takes one host: herorepo picks the node (see _nodes.py)
        connector = NodeConnector(resolved, nodes, options["connect_args"])
        options["async_creator"] = connector

    # herorepo's hook below rolls back at check-in instead, skipping it after a clean COMMIT.
    options["pool_reset_on_return"] = None
    try:
        engine = create_async_engine(resolved, **options)
    except ArgumentError as exc:
        message = str(exc)
        if resolved.password:
            message = message.replace(str(resolved.password), "***")
        raise ConfigurationError(
            f"The database URL {redact(resolved)!r} cannot be used: {message}"
        ) from None
    if connector is not None:
        connector.dialect = engine.sync_engine.dialect
    if config.show_values_in_errors:
        show_values(engine.sync_engine.dialect)
    event.listen(engine.sync_engine, "handle_error", interrupt_on_cancel)
    event.listen(engine.sync_engine, "handle_error", translate_driver_error)
    install_connection_hooks(engine.sync_engine)  # after the translator: it sees herorepo errors
    _install_reset(engine)
    if pre_ping:
        _install_pre_ping(engine, config.pool_ping_idle)
    if config.slow_statement is not None:
        install_slow_statement_log(
            engine.sync_engine, config.slow_statement, show_values=config.show_values_in_errors
        )
    if config.query_tags is not None:
        install_query_tags(engine.sync_engine, config.query_tags)
    if backend == "sqlite":
        _configure_sqlite(engine, memory=is_sqlite_memory(resolved))
    if not config.commit_outcome:
        record_no_commit_outcome(engine.sync_engine)
    if backend == "mysql":
        event.listen(engine.sync_engine, "connect", _make_mysql_strict)
        if config.commit_outcome:
            install_commit_markers(engine.sync_engine)  # a lost COMMIT's outcome can be asked
        event.listen(engine.sync_engine, "begin", _begin_mysql_read_only)
    return engine


_WITH_OPTIONS: weakref.WeakKeyDictionary[Engine, dict[frozenset[tuple[str, Any]], AsyncEngine]] = (
    weakref.WeakKeyDictionary()
)


def engine_with_options(engine: AsyncEngine, options: Mapping[str, Any]) -> AsyncEngine:
    """``engine`` with execution options that every connection it hands out gets, transaction
    after transaction (SQLAlchemy applies them at each checkout and resets them at checkin).

    One per engine and set of options, kept: a unit of work binds its session to it, so that a
    transaction begun after ``commit()`` has the isolation level and read-only mode of the first.
    """
    if not options:
        return engine
    key = frozenset(options.items())
    known = _WITH_OPTIONS.setdefault(engine.sync_engine, {})
    found = known.get(key)
    if found is None:
        found = known[key] = engine.execution_options(**options)
    return found


def _begin_mysql_read_only(connection: Any) -> None:
    # MySQL begins a transaction implicitly at the first statement; this one begins it read-only.
    if connection.get_execution_options().get(READ_ONLY_OPTION):
        connection.exec_driver_sql("START TRANSACTION READ ONLY")


def _install_reset(engine: AsyncEngine) -> None:
    """Roll back a connection as the pool takes it back, unless a COMMIT just ended its work.

    SQLAlchemy's own reset (``pool_reset_on_return="rollback"``) sends a ROLLBACK at every
    check-in, even right after a COMMIT: a round trip on MySQL and a thread hop on SQLite for
    each unit of work. A unit of work whose COMMIT succeeded marks its connections
    (:data:`~herorepo._transaction.COMMITTED`); every other check-in rolls back as before.
    """
    pool = engine.sync_engine.pool
    dialect = engine.sync_engine.dialect

    def reset(dbapi_connection: Any, record: ConnectionPoolEntry, state: PoolResetState) -> None:
        committed = record.info.pop(COMMITTED, False)
        if state.terminate_only or not getattr(state, "asyncio_safe", True):
            return  # the connection is being discarded, or cannot be used here (garbage)
        if committed or state.transaction_was_reset:
            return
        dialect.do_rollback(dbapi_connection)

    # The mark is set after the COMMIT, as the session hands the connection back: the very
    # next check-in takes it (also when the connection is being discarded), so it never
    # outlives that check-in.
    event.listen(pool, "reset", reset)


_BEGIN_WITH = "herorepo_begin_with"
"""Key in a SQLite connection's ``info``: the BEGIN statement its transaction starts with."""

_IDLE_SINCE = "herorepo_idle_since"
"""Key in a pooled connection's ``info``: when it was last checked in (unset while fresh)."""


def _install_pre_ping(engine: AsyncEngine, ping_idle: float) -> None:
    pool = engine.sync_engine.pool
    dialect = engine.sync_engine.dialect

    def mark_idle(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    def check(dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        if _closed_by_server(dbapi_connection):
            # Raising DisconnectionError makes the pool replace this connection and try again.
            raise DisconnectionError("The server closed this pooled connection.")
        since = record.info.get(_IDLE_SINCE)
        if since is None or (ping_idle and time.monotonic() - since < ping_idle):
            return
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as exc:
            if dialect.is_disconnect(exc, dbapi_connection, None):
                # As SQLAlchemy's pre-ping: a dead connection hints the server restarted, so
                # every connection pooled before now is replaced when next checked out.
                raise InvalidatePoolError(f"Pre-ping failed: {exc}") from exc
            raise

    event.listen(pool, "checkin", mark_idle)
    event.listen(pool, "checkout", check)


def _closed_by_server(dbapi_connection: Any) -> bool:
    """Whether the driver has seen the server close this connection, asking nothing of it.

    asyncpg marks a connection closed once its socket has reported the end of stream; aiomysql
    does not, but its stream reader has then reached the end, or holds bytes no query asked for
    (the server's farewell error packet).
    """
    driver: Any = getattr(dbapi_connection, "driver_connection", None)
    is_closed = getattr(driver, "is_closed", None)
    if callable(is_closed):
        return bool(is_closed())
    if not hasattr(driver, "_reader"):
        return False
    reader: Any = driver._reader
    if reader is None:
        return True  # closed on this side
    buffered = getattr(reader, "_buffer", b"")
    return bool(reader.at_eof() or reader.exception() is not None or buffered)


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
        options = connection.get_execution_options()
        # query_only refuses every write of a read-only unit of work, raw SQL included. It stays
        # with the connection, so each transaction sets it when it differs from what it needs.
        read_only = bool(options.get(READ_ONLY_OPTION))
        info = connection.connection.info
        if info.get(_QUERY_ONLY, False) != read_only:
            connection.exec_driver_sql(
                "PRAGMA query_only = 1" if read_only else "PRAGMA query_only = 0"
            )
            info[_QUERY_ONLY] = read_only
        mode = options.get(SQLITE_BEGIN_OPTION)
        if mode is None:
            info.pop(_BEGIN_WITH, None)  # left by a begin that failed before do_begin()
            connection.herorepo_begin_pending = True
        else:  # sent by do_begin() below, right after this hook
            info[_BEGIN_WITH] = "BEGIN IMMEDIATE" if mode == "immediate" else "BEGIN"

    def do_begin(dbapi_connection: Any) -> None:
        # SQLAlchemy calls this right after the "begin" hook, and routes its errors through the
        # engine's error hooks (a busy database becomes herorepo's error; a cancellation
        # discards the connection, whose worker thread still waits out the busy timeout). One
        # thread hop on aiosqlite, where exec_driver_sql() takes three (cursor, execute,
        # close): on SQLite a unit of work's cost is counted in hops.
        statement = dbapi_connection.info.pop(_BEGIN_WITH, None)
        if statement is None:
            return
        try:
            await_(dbapi_connection.driver_connection.execute(statement))
        except ValueError as error:
            # aiosqlite's "no active connection" / "connection closed": a lost connection, as
            # SQLAlchemy's adapter reports it for statements.
            import sqlite3  # only here: importing it costs every process a millisecond

            raise sqlite3.OperationalError(str(error)) from error

    def before_cursor_execute(connection: Any, cursor: Any, statement: str, *_args: Any) -> None:
        # A transaction without a mode begins at its first statement that is not a SELECT:
        # before a write, a SAVEPOINT (which outside BEGIN would start a transaction its
        # RELEASE commits) or DDL. Reads before it run outside the transaction, as on a plain
        # sqlite3 connection; a session that only reads never sends BEGIN.
        if not getattr(connection, "herorepo_begin_pending", False):
            return
        head = statement.lstrip()[:6].upper()
        if head == "SELECT":
            return
        connection.herorepo_begin_pending = False
        if not head.startswith("BEGIN"):
            cursor.execute("BEGIN")

    event.listen(engine.sync_engine, "connect", on_connect)
    event.listen(engine.sync_engine, "begin", on_begin)
    setattr(engine.sync_engine.dialect, "do_begin", do_begin)  # this engine's dialect only  # noqa: B010
    event.listen(engine.sync_engine, "before_cursor_execute", before_cursor_execute)


def create_sessionmaker(
    engine: AsyncEngine, *, info: Mapping[str, Any] | None = None
) -> async_sessionmaker[AsyncSession]:
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
        info=dict(info or {}),
    )
