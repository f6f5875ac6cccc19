"""Whether a COMMIT whose connection was lost committed: asked of the server, never guessed.

A connection can break after the server received COMMIT and before its reply arrived. The
server then committed or not, and the client cannot tell from the error. A unit of work that
wrote records, just before its COMMIT, what it needs to ask afterwards, and asks on a new
connection when the COMMIT's connection is lost:

* PostgreSQL: the transaction id, from ``pg_current_xact_id_if_assigned()`` (which assigns
  none: a transaction that wrote has one already, one that did not has nothing to lose), then
  ``pg_xact_status(xid)``: ``committed``, ``aborted`` or ``in progress``.
* MySQL / MariaDB have no such function. Each pooled connection has a row of its own in
  ``herorepo_commit_markers`` (a random key), and a transaction that wrote stores a fresh
  random token in it just before COMMIT, in the same transaction: the row holds the token
  exactly when the transaction committed. A locking read of the row (``LOCK IN SHARE MODE``,
  READ COMMITTED) waits while the old transaction still runs, so it never reads an answer that
  could still change. One row per connection, updated in place: nothing to clean up per
  transaction; rows of connections gone for a day are deleted when an engine connects.
  Galera (a URL that lists the nodes): the node the COMMIT went to is asked first, as above.
  When it is down, another node answers after a causal read (``wsrep_sync_wait``, it has
  applied everything the cluster ordered before), and "not stored" counts only once the first
  node has left the cluster (``mysql.wsrep_cluster_members``): until then a write-set of it
  could still be ordered, so herorepo asks again.
* SQLite runs in this process: COMMIT is a call into the library that returns or raises, and
  a crash mid-way is settled by its journal when the file is opened again. Its outcome is
  always known, so nothing is recorded.

"In progress" means the server has not finished with the old connection yet: it is still
committing, or it has not noticed that its client is gone (a half-open TCP connection can stay
for hours). herorepo asks again for up to :data:`SETTLE_SECONDS`, then ends the old session
itself (``pg_terminate_backend()`` on the backend that still runs that transaction id, ``KILL
CONNECTION`` on the thread whose transaction holds the marker), which settles it: a COMMIT
under way completes, anything else rolls back and can never commit later. It gives up after
:data:`RESOLVE_SECONDS` (the server unreachable all that time): the outcome is then unknown.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import warnings
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, text

from ._errors import CommitInterruptedError, ConnectionLostError, HeroRepoError, LockTimeoutError
from ._nodes import Node, node_of, preferring

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
    from sqlmodel.ext.asyncio.session import AsyncSession

    from ._transaction import TransactionState

__all__ = [
    "MARKER_TABLE",
    "RESOLVE_SECONDS",
    "SETTLE_SECONDS",
    "CommitProbe",
    "install_commit_markers",
    "probe_commit",
    "settle_lost_commit",
]

logger = logging.getLogger("herorepo")

MARKER_TABLE = "herorepo_commit_markers"
"""The table of commit markers on MySQL and MariaDB (one row per pooled connection)."""

SETTLE_SECONDS = 1.0
"""How long an "in progress" answer may last before herorepo ends the old session."""

RESOLVE_SECONDS = 15.0
"""How long herorepo keeps asking (reconnecting if need be) before the outcome is unknown."""

_MARKER_KEY = "herorepo_commit_marker_key"  # in a pooled connection's info: its row's key
# Per dialect (an engine's, shared by its option engines): whether the marker table exists.
_MARKERS_READY: weakref.WeakKeyDictionary[object, bool] = weakref.WeakKeyDictionary()
# Dialects (one per engine, shared with its option engines) of EngineConfig(commit_outcome=False).
_NOT_RECORDED: weakref.WeakSet[object] = weakref.WeakSet()

_CREATE_MARKERS = f"""
CREATE TABLE IF NOT EXISTS {MARKER_TABLE} (
    connection_key CHAR(32) NOT NULL PRIMARY KEY,
    token CHAR(32) NOT NULL,
    written_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP
) ENGINE=InnoDB COMMENT='herorepo: outcome of commits whose connection was lost'
"""
# PostgreSQL 13 and later, and before (the txid_* functions): the transaction id and, for
# _never_had_the_commit(), where the WAL stood and when the server started.
_PG_RECORD = {
    True: "SELECT pg_current_xact_id_if_assigned()::text, pg_current_wal_insert_lsn()::text, "
    "pg_postmaster_start_time()::text",
    False: "SELECT txid_current_if_assigned()::text, pg_current_wal_insert_lsn()::text, "
    "pg_postmaster_start_time()::text",
}
_PG_STATUS = {
    True: "SELECT pg_xact_status(CAST(CAST(:xid AS text) AS xid8))",
    False: "SELECT txid_status(CAST(CAST(:xid AS text) AS bigint))",
}
_WRITE_MARKER = (
    f"INSERT INTO {MARKER_TABLE} (connection_key, token) VALUES (%s, %s) "
    "ON DUPLICATE KEY UPDATE token = %s"
)


@dataclass
class CommitProbe:
    """What was recorded before a COMMIT, to ask about its outcome if the connection is lost."""

    backend: str
    connection: AsyncConnection | None = None  # the transaction's, when it wrote
    wrote: bool = False  # False: nothing was written, so nothing can be lost
    transaction_id: int | None = None  # PostgreSQL
    # PostgreSQL: the WAL insert position just before COMMIT and pg_postmaster_start_time(), to
    # tell whether a server asked later (a promoted standby, a restart) ever had the COMMIT.
    wal_position: str | None = None
    server_started: str | None = None
    marker: tuple[str, str] | None = None  # MySQL: the connection's key and this commit's token
    server_session: int | None = None  # the backend pid / thread id that runs the transaction
    node: Node | None = None  # MySQL through a list of nodes: the one that ran the transaction
    unknowable: str | None = None  # why the outcome cannot be asked, if it cannot


# --- before COMMIT ------------------------------------------------------------------------------


async def probe_commit(session: AsyncSession, tx: TransactionState) -> CommitProbe | None:
    """Flush, then record what a lost COMMIT's outcome can be asked with (None: no need).

    One round trip for a unit of work that wrote, none for one that did not.

    Raises:
        CommitInterruptedError: the connection was lost while recording (nothing committed).
    """
    if session.new or session.dirty or session.deleted:
        await session.flush()  # the writes COMMIT would flush come before the record
    backend = session.get_bind().dialect.name
    if tx.shares_connection or backend == "sqlite":
        return None  # a test's outer transaction (no real COMMIT), or an outcome always known
    if not tx.wrote or tx.read_only:
        return CommitProbe(backend)  # nothing written: nothing a lost COMMIT could lose
    if session.get_bind().dialect in _NOT_RECORDED:
        return CommitProbe(backend, wrote=True, unknowable="EngineConfig(commit_outcome=False)")
    connection = await session.connection()
    probe = CommitProbe(backend, connection, wrote=True)
    raw = await connection.get_raw_connection()
    driver: Any = raw.driver_connection
    try:
        if backend == "postgresql":
            probe.server_session = int(driver.get_server_pid())
            record = _PG_RECORD[_pg_13(connection)]
            xid, probe.wal_position, probe.server_started = (
                await connection.execute(text(record))
            ).one()
            probe.wrote = xid is not None  # no transaction id: nothing was written after all
            probe.transaction_id = int(xid) if xid is not None else None
        elif _MARKERS_READY.get(connection.dialect):
            probe.server_session = int(driver.server_thread_id[0])
            probe.node = node_of(driver)
            info = raw.info
            key = info.get(_MARKER_KEY) or info.setdefault(_MARKER_KEY, secrets.token_hex(16))
            token = secrets.token_hex(16)
            await connection.exec_driver_sql(_WRITE_MARKER, (key, token, token))
            probe.marker = (key, token)
        else:
            probe.unknowable = (
                f"the table {MARKER_TABLE} could not be created (see the log at connect)"
            )
    except ConnectionLostError as error:
        raise _error(probe, False, "the connection was lost before COMMIT was sent") from error
    return probe


def _pg_13(connection: AsyncConnection) -> bool:
    version: tuple[Any, ...] = connection.dialect.server_version_info or (0,)
    return bool(version >= (13,))


# --- after the connection is lost ---------------------------------------------------------------


async def settle_lost_commit(probe: CommitProbe, lost: Exception) -> None:
    """Find out whether the lost COMMIT committed; return if it did, raise if not or unknown.

    The dead connection goes back to the pool first: the question needs a connection of the
    same pool, which may have no other.

    Raises:
        CommitInterruptedError: it did not commit (``committed=False``), or no answer could be
            had (``committed=None``).
    """
    if probe.connection is not None:
        await probe.connection.close()
    if not probe.wrote:
        committed: bool | None = True
        detail = "the transaction wrote nothing, so nothing was lost"
    elif probe.unknowable is not None:
        committed, detail = None, probe.unknowable
    elif probe.backend == "postgresql":
        committed, detail = await _ask(probe, _pg_status, _pg_terminate)
    else:
        committed, detail = await _ask(probe, _marker_status, _mysql_kill)
    if committed:
        logger.warning(
            "herorepo: the connection was lost during COMMIT, which committed: %s.", detail
        )
        return
    raise _error(probe, committed, detail) from lost


async def _ask(probe: CommitProbe, status: Any, end_session: Any) -> tuple[bool | None, str]:
    """Ask ``status`` until it answers, ending the old session once it has run too long."""
    started = time.monotonic()
    ended = False
    pause = 0.02
    reason = "the server could not be asked"
    while True:
        running = False
        try:
            with preferring(probe.node):
                async with _engine(probe).connect() as connection:
                    answer: bool | None = await status(connection, probe)
            if answer is not None:
                return answer, _describe(probe, answer, ended)
            running = True
        except LockTimeoutError:  # MySQL: the old transaction still holds the marker's row
            running = True
        except _Unanswerable as error:
            return None, str(error)
        except Exception as error:  # no connection, or lost again: ask again until the deadline
            reason = f"the server could not be asked ({type(error).__name__})"
        if running:
            reason = "the server still ran the transaction"
            if not ended and time.monotonic() - started >= SETTLE_SECONDS:
                try:
                    with preferring(probe.node):
                        async with _engine(probe).connect() as connection:
                            ended = await end_session(connection, probe)
                except Exception:  # asked again below, until the deadline
                    logger.debug("herorepo: ending the old session failed", exc_info=True)
        if time.monotonic() - started >= RESOLVE_SECONDS:
            return None, f"{reason} for {RESOLVE_SECONDS:g} s"
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.5)


def _engine(probe: CommitProbe) -> AsyncEngine:
    assert probe.connection is not None
    return probe.connection.engine


def _describe(probe: CommitProbe, committed: bool, ended: bool) -> str:
    if probe.transaction_id is not None:
        what = f"PostgreSQL transaction {probe.transaction_id}"
        verdict = "committed" if committed else "was rolled back"
    else:
        what = "the commit marker"
        verdict = "is stored" if committed else "is not stored"
    how = "after ending the server session that still ran it" if ended else "on a new connection"
    return f"{what} {verdict}, asked {how}"


async def _pg_status(connection: AsyncConnection, probe: CommitProbe) -> bool | None:
    if await _never_had_the_commit(connection, probe):
        return False
    result = await connection.execute(
        text(_PG_STATUS[_pg_13(connection)]), {"xid": str(probe.transaction_id)}
    )
    status = result.scalar()
    await connection.rollback()
    if status == "committed":
        return True
    if status == "aborted":
        return False
    if status is None:  # older than the server keeps commit status for: not seconds ago
        raise _Unanswerable("the server no longer knows the transaction id")
    return None  # in progress


async def _never_had_the_commit(connection: AsyncConnection, probe: CommitProbe) -> bool:
    """Whether the server asked is another run than the one COMMIT went to (a promoted standby,
    or a restart after a crash) whose recovery ended before the transaction's COMMIT record.

    Such a server did not commit the transaction, and may have handed its transaction id to
    another since: ``pg_xact_status()`` would then answer for that other one (seen in failover
    tests: "committed", for a row that was not there). Its recovery ended at
    ``pg_last_wal_replay_lsn()``; the COMMIT record came after ``wal_position``.
    """
    if probe.server_started is None or probe.wal_position is None:
        return False
    result = await connection.execute(
        text(
            "SELECT pg_postmaster_start_time()::text <> :started "
            "AND pg_last_wal_replay_lsn() <= CAST(CAST(:position AS text) AS pg_lsn)"
        ),
        {"started": probe.server_started, "position": probe.wal_position},
    )
    never = bool(result.scalar())  # NULL (never in recovery: a clean start) counts as False
    await connection.rollback()
    return never


async def _pg_terminate(connection: AsyncConnection, probe: CommitProbe) -> bool:
    # Only the backend that still runs this very transaction: a pid alone may have been reused.
    assert probe.transaction_id is not None
    result = await connection.execute(
        text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE pid = :pid AND backend_xid::text = :xid"
        ),
        {"pid": probe.server_session, "xid": str(probe.transaction_id & 0xFFFFFFFF)},
    )
    ended = bool(result.scalar())
    await connection.rollback()
    return ended


async def _marker_status(connection: AsyncConnection, probe: CommitProbe) -> bool | None:
    assert probe.marker is not None
    key, token = probe.marker
    asked = node_of((await connection.get_raw_connection()).driver_connection)
    node = probe.node
    galera_id = node.galera_id if node is not None else None
    try:
        # READ COMMITTED: no gap lock when there is no row. A short lock wait: the caller
        # asks again. The connection keeps these settings, so it is thrown away afterwards.
        await connection.exec_driver_sql("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        await connection.exec_driver_sql("SET SESSION innodb_lock_wait_timeout = 1")
        if galera_id is not None:  # a causal read: write-sets ordered before it apply first
            await connection.exec_driver_sql("SET SESSION wsrep_sync_wait = 1")
        stored = await _stored_token(connection, key)
        if stored != token and node is not None and not node.same_server(asked):
            # Another server than the COMMIT's. Not stored here is final only on a Galera node
            # of the same cluster once the COMMIT's node has left it: read again after that.
            if galera_id is None or asked is None or asked.galera_id is None:
                return None
            if await _still_a_member(connection, galera_id):
                return None
            stored = await _stored_token(connection, key)
        await connection.rollback()
    finally:
        await connection.invalidate()
    return stored == token


async def _stored_token(connection: AsyncConnection, key: str) -> object:
    result = await connection.execute(
        text(
            "SELECT token FROM herorepo_commit_markers WHERE connection_key = :key "
            "LOCK IN SHARE MODE"
        ),
        {"key": key},
    )
    return result.scalar()


async def _still_a_member(connection: AsyncConnection, galera_id: str) -> bool:
    result = await connection.execute(
        text("SELECT count(*) FROM mysql.wsrep_cluster_members WHERE node_uuid = :node"),
        {"node": galera_id},
    )
    return bool(result.scalar())


async def _mysql_kill(connection: AsyncConnection, probe: CommitProbe) -> bool:
    # Reached when the marker's row stayed locked: the old connection is alive on this very
    # server (locks do not survive a restart), so its thread id is still its own. Through a
    # list of nodes, a thread id means something only on the node the COMMIT went to.
    if probe.node is not None and not probe.node.same_server(
        node_of((await connection.get_raw_connection()).driver_connection)
    ):
        return False
    running = await connection.execute(
        text(
            "SELECT count(*) FROM information_schema.innodb_trx WHERE trx_mysql_thread_id = :thread"
        ),
        {"thread": probe.server_session},
    )
    if not running.scalar():
        return False
    await connection.exec_driver_sql("KILL CONNECTION %s", (int(probe.server_session or 0),))
    return True


class _Unanswerable(HeroRepoError):
    pass


def _error(probe: CommitProbe, committed: bool | None, detail: str) -> CommitInterruptedError:
    key, token = probe.marker or (None, None)
    return CommitInterruptedError(
        committed=committed,
        detail=detail,
        transaction_id=probe.transaction_id,
        marker=f"{key}:{token}" if key else None,
    )


# --- the marker table ---------------------------------------------------------------------------


def record_no_commit_outcome(engine: Engine) -> None:
    """``EngineConfig(commit_outcome=False)``: record nothing before COMMIT on ``engine``."""
    _NOT_RECORDED.add(engine.dialect)


# MySQL errors that mean the user may not create the table: no point asking again.
_NO_PRIVILEGE = {1044, 1142, 1227}


def install_commit_markers(engine: Engine) -> None:
    """Create the marker table, if missing, when ``engine`` (MySQL/MariaDB) first connects.

    Outside any transaction (DDL commits implicitly on MySQL), on the new connection before
    the pool hands it out. Where it cannot be created (no CREATE privilege), commit outcomes
    are unknown on that engine, and a warning says so once.
    """

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        if engine.dialect in _MARKERS_READY:
            return
        cursor = dbapi_connection.cursor()
        try:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # "already exists" when another process won
                    cursor.execute(
                        "SELECT count(*) FROM information_schema.tables "
                        "WHERE table_schema = DATABASE() AND table_name = %s",
                        (MARKER_TABLE,),
                    )
                    exists = bool(cursor.fetchone()[0])
                    dbapi_connection.commit()
                    if not exists:
                        cursor.execute(_CREATE_MARKERS)
            except Exception as error:
                dbapi_connection.rollback()
                code = error.args[0] if error.args else None
                if code in _NO_PRIVILEGE:  # for good: say so once
                    _MARKERS_READY[engine.dialect] = False
                    logger.warning(
                        "herorepo: cannot create the table %s (%s); the outcome of a COMMIT "
                        "whose connection is lost will be unknown on this database.",
                        MARKER_TABLE,
                        error,
                    )
                else:  # a lock wait, a restart...: the next connection tries again
                    logger.warning(
                        "herorepo: could not check the table %s (%s); trying again at the next "
                        "connection.",
                        MARKER_TABLE,
                        error,
                    )
                return
            _MARKERS_READY[engine.dialect] = True
            try:
                # Rows of connections gone for a day; no gap locks, so writers do not wait.
                cursor.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
                cursor.execute(
                    "DELETE FROM herorepo_commit_markers WHERE written_at < NOW() - INTERVAL 1 DAY"
                )
                dbapi_connection.commit()
            except Exception as error:  # housekeeping only: the markers work without it
                dbapi_connection.rollback()
                logger.info("herorepo: could not delete old commit markers (%s)", error)
        finally:
            cursor.close()

    event.listen(engine, "connect", on_connect)
