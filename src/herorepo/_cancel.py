"""Stop the server-side work of a statement whose task was cancelled.

asyncpg answers a cancellation by asking PostgreSQL to cancel the query. The other two drivers
do not: aiosqlite's worker thread would run the statement to its end while holding SQLite's write
lock, and MySQL would run it to its end holding row locks. SQLAlchemy invalidates the
connection either way; this ``handle_error`` hook also stops the statement itself (SQLite: a
progress-handler flag, then a rollback; MySQL: ``KILL QUERY`` from a second connection).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.engine import ExceptionContext

logger = logging.getLogger("herorepo")

# Kill tasks in flight, kept referenced until they finish.
_pending: set[asyncio.Task[None]] = set()


def interrupt_on_cancel(context: ExceptionContext) -> None:
    if not isinstance(context.original_exception, asyncio.CancelledError):
        return
    connection = context.connection
    if connection is None:
        return
    try:
        driver: Any = connection.connection.driver_connection
    except Exception:  # already invalidated: nothing left to interrupt
        return
    if not context.is_disconnect:
        # SQLAlchemy will reuse this connection: interrupting or rolling it back later could hit
        # the next unit of work's statements. (2.1 always discards a connection cut by a cancel.)
        return
    name = context.dialect.name
    if name == "sqlite":
        _stop_sqlite(driver, connection.connection.info.get(SQLITE_STOP_KEY))
    elif name in ("mysql", "mariadb"):
        _kill_mysql_query(context, driver)


# --- SQLite ---------------------------------------------------------------------------------------

SQLITE_STOP_KEY = "herorepo_sqlite_stop"


class SqliteStop:
    """A per-connection flag that SQLite's progress handler reads while a statement runs.

    Why not ``sqlite3.Connection.interrupt()``: when the statement has already finished but is
    still active (an INSERT ... RETURNING or a SELECT with rows left, as happens when the
    cancellation lands between execute and fetch), SQLite keeps the interrupt pending and it
    stops the ROLLBACK instead. The connection is then closed with its transaction open, and
    SQLite keeps such a connection's write lock until the garbage collector finalizes its last
    statement: every writer after it waits and fails. A progress handler runs only inside a
    running statement, and the flag is cleared before the rollback.
    """

    __slots__ = ("requested",)

    def __init__(self) -> None:
        self.requested = False

    def __call__(self) -> int:
        return 1 if self.requested else 0  # non-zero aborts the running statement


def install_sqlite_stop(dbapi_connection: Any, record: Any) -> None:
    """Give a new aiosqlite connection its stop flag (a ``connect`` event hook)."""
    stop = SqliteStop()

    def install(driver: Any) -> Any:  # aiosqlite.Connection
        return driver.set_progress_handler(stop, 1000)

    dbapi_connection.run_async(install)
    record.info[SQLITE_STOP_KEY] = stop


def _stop_sqlite(driver: Any, stop: SqliteStop | None) -> None:
    raw = getattr(driver, "_conn", None)
    if raw is None or stop is None:
        return
    stop.requested = True
    # The rollback queues behind the statement on the connection's worker thread (and before
    # SQLAlchemy's close), and releases the write lock that BEGIN IMMEDIATE took.
    _spawn(_rollback_sqlite(driver, raw, stop))


async def _rollback_sqlite(driver: Any, raw: Any, stop: SqliteStop) -> None:
    def clear_and_roll_back() -> None:
        stop.requested = False
        raw.rollback()

    try:
        await driver._execute(clear_and_roll_back)
    except Exception:  # already closed by SQLAlchemy's invalidation: the lock went with it
        logger.debug("herorepo: rollback after a cancelled SQLite statement", exc_info=True)


# --- shared ---------------------------------------------------------------------------------------


def _spawn(coroutine: Any) -> None:
    try:
        task = asyncio.get_running_loop().create_task(coroutine)
    except RuntimeError:
        coroutine.close()
        return
    _pending.add(task)
    task.add_done_callback(_pending.discard)


# --- MySQL ----------------------------------------------------------------------------------------


def _kill_mysql_query(context: ExceptionContext, driver: Any) -> None:
    try:
        thread_id = int(driver.thread_id())
    except Exception:
        return
    if context.engine is None:
        return
    args, kwargs = context.dialect.create_connect_args(context.engine.url)
    _spawn(_kill(thread_id, args, kwargs))


async def _kill(thread_id: int, args: Any, kwargs: Any) -> None:
    aiomysql: Any = importlib.import_module("aiomysql")  # only reached on MySQL

    try:
        killer = await aiomysql.connect(*args, **kwargs)
        try:
            async with killer.cursor() as cursor:
                await cursor.execute("KILL QUERY %s", (thread_id,))
        finally:
            killer.close()
    except Exception:  # the statement may have ended by itself meanwhile
        logger.debug("herorepo: could not stop a cancelled MySQL statement", exc_info=True)
