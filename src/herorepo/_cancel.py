"""Stop the server-side work of a statement whose task was cancelled.

asyncpg answers a cancellation by asking PostgreSQL to cancel the query. The other two drivers
do not: aiosqlite's worker thread would run the statement to its end while holding SQLite's write
lock, and MySQL would run it to its end holding row locks. SQLAlchemy invalidates the
connection either way; this ``handle_error`` hook also interrupts the statement itself.
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
        _interrupt_sqlite(driver)
    elif name in ("mysql", "mariadb"):
        _kill_mysql_query(context, driver)


def _interrupt_sqlite(driver: Any) -> None:
    # sqlite3's interrupt() is the one call that is safe from another thread.
    raw = getattr(driver, "_conn", None)
    if raw is None:
        return
    try:
        raw.interrupt()
    except Exception:  # the connection closed meanwhile
        logger.debug("herorepo: could not interrupt a cancelled SQLite statement", exc_info=True)
        return
    # An interrupted SELECT leaves its transaction (and BEGIN IMMEDIATE's write lock) open; the
    # rollback queues behind it on the connection's worker thread and releases the lock.
    _spawn(_rollback_sqlite(driver))


async def _rollback_sqlite(driver: Any) -> None:
    try:
        await driver.rollback()
    except Exception:  # already closed by SQLAlchemy's invalidation: the lock went with it
        logger.debug("herorepo: rollback after a cancelled SQLite statement", exc_info=True)


def _spawn(coroutine: Any) -> None:
    try:
        task = asyncio.get_running_loop().create_task(coroutine)
    except RuntimeError:
        coroutine.close()
        return
    _pending.add(task)
    task.add_done_callback(_pending.discard)


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
