"""The state machine of a unit of work's transaction, which every statement passes.

::

                    ┌────────────── commit() / rollback() ◀──────────────┐
                    ▼                                                    │
    not begun ──▶ active ──── a database error outside a savepoint ──▶ failed
                    │  ▲                                                 │
    commit() /      │  │  the next statement begins                      │ rollback()
    rollback()      ▼  │  a new transaction                              ▼
              committed / rolled back ◀──────────────────────────────────┘
                    │
                    └──── the block ends ──▶ closed

A :class:`TransactionState` belongs to one outermost unit of work; units of work that join it
share it. It sits in the session's ``info`` and, while a transaction is open, on the connection
that runs it, so the hooks below see every operation: a repository's, a flush's, and the ones
users send on ``uow.session``.

* Before each query and each flush (``do_orm_execute``, ``before_flush``) it refuses to go on
  when the unit of work has ended, has failed (until it is rolled back, or the savepoint that
  failed is), or is in the middle of another task's operation: one unit of work is one session,
  for one task at a time. (An operation under way is a live greenlet: SQLAlchemy runs each async
  session call in a greenlet of its own, which ends when the call does.)
* ``handle_error``, which sees every failed statement on the connection, even one sent on
  ``await uow.session.connection()`` directly, marks it failed. An error inside a savepoint
  fails only that savepoint, which its block rolls back; a deadlock, a serialization failure or
  a lost connection fails the whole transaction, because the server may already have rolled all
  of it back (MariaDB does).
* Session events follow the transactions and savepoints of the session: a rolled-back savepoint
  undoes the failure inside it and drops its ``on_commit`` callbacks, a released one hands both
  to its parent; a COMMIT of a failed transaction, or an early one inside
  :meth:`Database.run <herorepo.Database.run>`, is refused.

A failed COMMIT ends the transaction on every connection, with or without a unit of work: the
``commit`` hook below rolls the connection back (SQLite keeps a transaction whose COMMIT a
deferred constraint refused, with its write lock), or discards it if even that fails.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import greenlet
from sqlalchemy import event

from ._errors import (
    ConnectionLostError,
    DeadlockError,
    ReadOnlyTransactionError,
    SerializationError,
    TransactionError,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine, ExceptionContext
    from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction

__all__ = [
    "CONCURRENT_USE",
    "NEEDS_ROLLBACK",
    "TX_KEY",
    "State",
    "TransactionState",
    "connection_state",
    "install_connection_hooks",
    "install_session_hooks",
    "refuse_if_failed",
    "session_state",
]

TX_KEY = "herorepo_transaction"
"""Key of the :class:`TransactionState` in a session's ``info``."""

COMMITTED = "herorepo_committed"
"""Key in a pooled connection's ``info``: its unit of work's COMMIT succeeded and nothing ran on
it since, so the pool need not send a ROLLBACK when it takes it back (``_engine``'s reset hook).
On MySQL and SQLite that ROLLBACK is a round trip (a thread hop) on every unit of work."""

_ON_CONNECTION = "herorepo_transaction"  # attribute of the Connection that runs it

Callback = Callable[[], object]

NEEDS_ROLLBACK = (
    "The transaction failed earlier (see the chained error) and must be rolled back before this "
    "session can be used again: await uow.rollback() (or session.rollback()). To recover from an "
    "expected failure and go on, run the risky step inside uow.savepoint()."
)

CONCURRENT_USE = (
    "This unit of work ran statements from two tasks at once (asyncio.gather or create_task on "
    "one unit of work): one unit of work per task. Await the calls one after another, or give "
    "each task its own unit of work. The unit of work is failed and will roll back."
)

# Errors after which the server may have rolled back the whole transaction, savepoints included.
_WHOLE = (DeadlockError, SerializationError, ConnectionLostError)


class State(enum.Enum):
    NOT_BEGUN = "not begun"
    ACTIVE = "active"
    FAILED = "failed"
    COMMITTED = "committed"
    ROLLED_BACK = "rolled back"
    CLOSED = "closed"


class TransactionState:
    """Where one unit of work's transaction stands; see the module docstring."""

    __slots__ = (
        "_busy",
        "_callbacks",
        "_connections",
        "_levels",
        "_released",
        "_shared",
        "commits",
        "done_callbacks",
        "failed_at",
        "failure",
        "final",
        "forbid_commit",
        "name",
        "read_only",
        "read_only_joins",
        "shares_connection",
        "state",
        "whole",
        "wrote",
    )

    def __init__(self, *, read_only: bool = False, forbid_commit: bool = False) -> None:
        self.state = State.NOT_BEGUN
        self.read_only = read_only
        self.read_only_joins = 0  # open joined units of work that asked for read_only=True
        self.forbid_commit = forbid_commit  # inside Database.run(): only the final COMMIT
        self.final = False  # the unit of work's own COMMIT at the end of its block
        self.commits = 0
        self.failure: BaseException | None = None
        self.failed_at = 0  # savepoint depth of the failure
        self.whole = False  # no savepoint can undo the failure
        self.wrote = False  # a statement that may write ran (what a lost COMMIT could lose)
        self._levels: list[SessionTransaction] = []  # the open savepoints, outermost first
        self._released: SessionTransaction | None = None  # the savepoint being released
        self._callbacks: list[list[Callback]] = [[]]  # one list per level, the outermost first
        self.done_callbacks: list[Callback] = []  # committed, not yet run
        # The greenlet of the session operation (a flush, a query) that ran last: while it is
        # alive, that operation is still under way, awaiting the database.
        self._busy: greenlet.greenlet | None = None
        self.shares_connection = False  # the session is bound to a connection that outlives it
        self._shared: list[Connection] = []
        self._connections: list[Connection] = []  # those of the current transaction
        self.name: str | None = None  # the unit of work's name, for query tags

    def __repr__(self) -> str:
        return f"<TransactionState {self.state.value}>"

    @property
    def depth(self) -> int:
        """How many savepoints are open."""
        return len(self._levels)

    @property
    def failed(self) -> bool:
        return self.failure is not None

    # --- what the unit of work does ----------------------------------------------------------

    def begun(self, connection: Connection) -> None:
        if self.state is State.CLOSED:
            return
        if self.state is not State.FAILED:
            self.state = State.ACTIVE
        setattr(connection, _ON_CONNECTION, self)
        if self.shares_connection and connection not in self._shared:
            self._shared.append(connection)
        if connection not in self._connections:
            self._connections.append(connection)

    async def settle(self) -> None:
        """Wait until no other task is running a statement on this transaction.

        Only misuse gets here (asyncio.gather on one unit of work): a rollback sent while another
        task's statement is on its way would let that statement run after it, outside the
        transaction, where SQLite would commit it.
        """
        while True:
            busy = self._busy
            if busy is None or busy.dead or busy is greenlet.getcurrent():
                self.release()
                return
            await asyncio.sleep(0.001)

    def release(self) -> None:
        """Let go of the last operation's greenlet once no statement can follow: its frames
        refer back to the session, and would keep it for the cycle collector."""
        busy = self._busy
        if busy is None or busy.dead:
            self._busy = None

    def add_callback(self, callback: Callback) -> None:
        self._callbacks[-1].append(callback)

    def take_done_callbacks(self) -> list[Callback]:
        done, self.done_callbacks = self.done_callbacks, []
        return done

    def close(self) -> None:
        """The block ended: refuse every later statement of its session and connections.

        (A task that still runs statements on them, started by asyncio.gather inside the block,
        would otherwise run them outside any transaction: SQLite would autocommit them.) A
        connection that outlives the session (herorepo.testing's, shared by a test's sessions)
        is let go instead.
        """
        self.state = State.CLOSED
        for connection in self._shared:
            if getattr(connection, _ON_CONNECTION, None) is self:
                delattr(connection, _ON_CONNECTION)
        self._shared.clear()

    def check_commit(self) -> None:
        """Raise if the outermost COMMIT must not run now."""
        if self.failure is not None:
            raise TransactionError(NEEDS_ROLLBACK) from self.failure
        if self.forbid_commit and not self.final:
            raise TransactionError(
                "Database.run() commits when the work returns, and runs the work again after a "
                "transient error: a commit() inside it would let a retry apply the committed "
                "part twice. Split the work into separate Database.run() calls, or use "
                "`async with db.unit_of_work()` if it must commit part way."
            )

    def committed(self) -> None:
        self.state = State.COMMITTED
        self.commits += 1
        self.done_callbacks.extend(self._callbacks[0])
        self._reset()

    def mark_committed_connections(self) -> None:
        """Tell the pool that the connections just committed need no ROLLBACK at check-in.

        Only when the session hands them back right away: a connection that outlives the session
        (herorepo.testing's) goes on with other work.
        """
        if not self.shares_connection:
            for connection in self._connections:
                if not connection.closed and not connection.invalidated:
                    connection.info[COMMITTED] = True
        self._connections.clear()

    def rolled_back(self) -> None:
        if self.state is not State.CLOSED:
            self.state = State.ROLLED_BACK
        self._reset()

    def _reset(self) -> None:
        self._connections.clear()
        self.failure = None
        self.failed_at = 0
        self.whole = False
        self.wrote = False
        self._levels.clear()
        self._callbacks = [[]]

    # --- what the hooks see ------------------------------------------------------------------

    def fail(self, error: BaseException, *, whole: bool = False) -> None:
        if self.state is State.CLOSED:
            return
        if self.failure is None:
            self.failure = error
            self.failed_at = self.depth
            self.state = State.FAILED
        if whole or isinstance(error, _WHOLE) or not isinstance(error, Exception):
            self.whole = True
            self.failed_at = 0

    def admit(self) -> None:
        """Admit a session operation (a query, a flush), or raise: see the module docstring."""
        if self.state is State.CLOSED:
            raise TransactionError(
                "This unit of work has ended, and its session and repositories with it. Open a "
                "new unit of work (async with db.unit_of_work() as uow) and get a repository "
                "from it."
            )
        current = greenlet.getcurrent()
        if current.parent is not None:  # an async call's greenlet (not an attribute access)
            busy = self._busy
            if busy is not None and busy is not current and not busy.dead:
                error = TransactionError(CONCURRENT_USE)
                self.fail(error)
                raise error
            self._busy = current
        if self.failure is not None:
            raise TransactionError(NEEDS_ROLLBACK) from self.failure

    # --- savepoints, as the session opens and ends them --------------------------------------

    def opened(self, transaction: SessionTransaction) -> None:
        if transaction.nested and self.state is not State.CLOSED:
            self._levels.append(transaction)
            self._callbacks.append([])

    def releasing(self, transaction: SessionTransaction) -> None:
        self._released = transaction

    def ended(self, transaction: SessionTransaction) -> None:
        """A session transaction closed: the outermost one, or a savepoint."""
        if transaction.parent is None:
            if self.state is not State.COMMITTED:
                self.rolled_back()
            return
        if transaction not in self._levels:
            return  # a flush's subtransaction
        level = self._levels.index(transaction)
        released, self._released = self._released is transaction, None
        inner = self._callbacks[level + 1 :]
        del self._levels[level:]
        del self._callbacks[level + 1 :]
        if self.failure is None or self.failed_at <= level:
            if released:
                for callbacks in inner:
                    self._callbacks[level].extend(callbacks)
            return
        if released:  # ended without undoing the failure inside it: the failure moves up
            self.failed_at = level
        elif not self.whole:  # rolled back: what failed is undone
            self.failure = None
            self.failed_at = 0
            self.state = State.ACTIVE


def connection_state(connection: Connection) -> TransactionState | None:
    """The transaction state of the unit of work whose transaction runs on ``connection``."""
    state: TransactionState | None = getattr(connection, _ON_CONNECTION, None)
    return state


def session_state(session: Session) -> TransactionState | None:
    """The transaction state of a unit of work's session, or None for a plain session."""
    state: TransactionState | None = session.info.get(TX_KEY)
    return state


# --- session hooks (installed on herorepo's session class) --------------------------------------


def after_begin(session: Session, transaction: SessionTransaction, connection: Connection) -> None:
    state = session_state(session)
    if state is not None:
        state.begun(connection)
    elif getattr(connection, _ON_CONNECTION, None) is not None:
        delattr(connection, _ON_CONNECTION)  # herorepo.testing's shared connection, reused


def before_commit(session: Session) -> None:
    state = session_state(session)
    if state is not None and session.get_nested_transaction() is None:
        state.check_commit()


def after_commit(session: Session) -> None:
    state = session_state(session)
    if state is None:
        return
    nested = session.get_nested_transaction()
    if nested is None:
        state.mark_committed_connections()
        state.committed()
    else:
        state.releasing(nested)


def after_transaction_create(session: Session, transaction: SessionTransaction) -> None:
    state = session_state(session)
    if state is not None:
        state.opened(transaction)


def after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    state = session_state(session)
    if state is not None:
        state.ended(transaction)


def refuse_if_failed(session: Session) -> None:
    """Raise the unit of work's failure before SQLAlchemy's PendingRollbackError would."""
    state = session_state(session)
    if state is not None and state.failure is not None:
        raise TransactionError(NEEDS_ROLLBACK) from state.failure


def before_execute(orm_execute_state: ORMExecuteState) -> None:
    state = session_state(orm_execute_state.session)
    if state is not None:
        state.admit()


def before_flush(session: Session, flush_context: object, instances: object) -> None:
    state = session_state(session)
    if state is None:
        return
    state.admit()
    if not (state.read_only or state.read_only_joins):
        return
    changed = [*session.new, *session.dirty, *session.deleted]
    if changed:
        names = sorted({type(obj).__name__ for obj in changed})
        raise ReadOnlyTransactionError(
            f"This unit of work is read-only (read_only=True) and cannot write "
            f"{', '.join(names)}. Open it without read_only=True to write."
        )


def install_session_hooks(session_class: type[Session]) -> None:
    event.listen(session_class, "after_begin", after_begin)
    event.listen(session_class, "before_commit", before_commit)
    event.listen(session_class, "after_commit", after_commit)
    event.listen(session_class, "after_transaction_create", after_transaction_create)
    event.listen(session_class, "after_transaction_end", after_transaction_end)
    event.listen(session_class, "before_flush", before_flush)
    event.listen(session_class, "do_orm_execute", before_execute)


# --- connection hooks (installed on every engine herorepo builds) -------------------------------


def _handle_error(context: ExceptionContext) -> None:
    connection = context.connection
    if connection is None or getattr(context, "is_pre_ping", False):
        return
    if context.statement is None:
        _end_after_failed_commit(context)
    state: TransactionState | None = getattr(connection, _ON_CONNECTION, None)
    if state is None:
        return
    original = context.original_exception
    if isinstance(original, TransactionError):
        return  # herorepo's own refusal, already accounted for
    # What the caller gets: the translated error when there is one (SQLAlchemy sets
    # chained_exception only once a hook returned one).
    error = getattr(context, "chained_exception", None) or context.sqlalchemy_exception or original
    # With no statement, COMMIT, ROLLBACK or BEGIN failed: no savepoint can undo that.
    state.fail(error, whole=context.statement is None)


# Statements that do not write, by their first word; anything else is taken to write. A SELECT
# only when SQLAlchemy built it: one written by hand (text(), exec_driver_sql) may call a
# function that writes (SELECT create_order(...), setval, SELECT ... INTO).
_CONTROL = ("SAVEPOINT", "RELEASE", "ROLLBACK", "SET", "SHOW", "BEGIN", "START")


def _may_write(statement: str, context: Any) -> bool:
    first = statement.lstrip()[:9].upper()
    if first.startswith(_CONTROL):
        return False
    if first.startswith("SELECT"):
        return context.compiled is None or bool(context.is_text)
    return True


def _skip_futile_savepoint_rollback(cursor: Any, statement: str, *args: Any) -> bool:
    """``do_execute`` hook: skip ROLLBACK TO SAVEPOINT after a failure no savepoint can undo.

    After a deadlock MariaDB has rolled back the whole transaction, savepoints included, and the
    statement would fail with "SAVEPOINT does not exist", hiding the deadlock behind that error.
    The outermost unit of work rolls everything back instead (on every backend alike).

    It also notes a statement that may write, for :mod:`herorepo._commit_outcome`.
    """
    state: TransactionState | None = getattr(args[-1].root_connection, _ON_CONNECTION, None)
    if state is None:
        return False
    if not state.wrote and _may_write(statement, args[-1]):
        state.wrote = True
    if not statement.startswith("ROLLBACK TO SAVEPOINT"):
        return False
    return state.whole and state.failure is not None


def _note_write(cursor: Any, statement: str, parameters: Any, context: Any) -> bool:
    """``do_executemany`` hook: a statement run for many rows writes."""
    state: TransactionState | None = getattr(context.root_connection, _ON_CONNECTION, None)
    if state is not None:
        state.wrote = True
    return False


def _end_after_failed_commit(context: ExceptionContext) -> None:
    """Make sure a COMMIT that failed leaves no transaction open on the connection.

    An error with no statement comes from COMMIT, ROLLBACK or BEGIN. PostgreSQL ends a
    transaction whose COMMIT fails; SQLite does not (a deferred constraint, a busy database), and
    SQLAlchemy then returns the connection to the pool without a rollback, write lock and all. A
    ROLLBACK here ends it (after a failed ROLLBACK or BEGIN it does no harm); if even that fails,
    the connection is discarded.
    """
    if context.is_disconnect or not isinstance(context.original_exception, Exception):
        return  # discarded anyway
    try:
        assert context.connection is not None
        context.connection.connection.dbapi_connection.rollback()  # type: ignore[union-attr]
    except Exception:
        context.is_disconnect = True  # SQLAlchemy invalidates the connection: it is closed


def install_connection_hooks(engine: Engine) -> None:
    """Install the hooks above on ``engine``; call after installing the error translator.

    Only dialect events (``handle_error``, ``do_execute``): a connection event
    (``before_execute``, ``commit``) would put every statement of the engine on SQLAlchemy's
    slower path with events, which measurably slowed a unit of work down; the session hooks see
    every operation anyway.
    """
    event.listen(engine, "handle_error", _handle_error)
    event.listen(engine, "do_execute_no_params", _skip_futile_savepoint_rollback)
    event.listen(engine, "do_execute", _skip_futile_savepoint_rollback)
    event.listen(engine, "do_executemany", _note_write)
