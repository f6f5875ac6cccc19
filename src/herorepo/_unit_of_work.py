"""``UnitOfWork``: one transaction around a block, committed on success, rolled back on error.

Units of work compose. One opened inside another of the same database, in the same task, joins
it: it runs in a SAVEPOINT of the outer transaction, an error inside it undoes only its own
work, and nothing commits before the outermost block ends (Django's ``atomic``, Spring's default
propagation). ``independent=True`` asks for a transaction of its own instead. The task's open
unit of work sits in a context variable read only here; sessions are still passed explicitly.

What each statement may do is decided by the transaction's state machine in
:mod:`herorepo._transaction`, which hooks the session and its connection.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from contextvars import ContextVar, Token
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast, get_args, overload

from sqlalchemy.exc import PendingRollbackError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm.exc import StaleDataError

from ._commit_outcome import probe_commit, settle_lost_commit
from ._engine import READ_ONLY_OPTION, SQLITE_BEGIN_OPTION, engine_with_options
from ._errors import (
    AfterCommitError,
    CommitInterruptedError,
    ConcurrentUpdateError,
    ConfigurationError,
    ConnectionLostError,
    TransactionError,
)
from ._repository import Repository
from ._telemetry import telemetry_of
from ._transaction import NEEDS_ROLLBACK, TX_KEY, TransactionState
from ._url import is_sqlite_memory

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSessionTransaction, async_sessionmaker
    from sqlalchemy.orm import Session
    from sqlmodel import SQLModel
    from sqlmodel.ext.asyncio.session import AsyncSession
    from typing_extensions import Self

    from ._otel import UnitTrace

__all__ = ["UnitOfWork"]

ModelT = TypeVar("ModelT", bound="SQLModel")
RepositoryT = TypeVar("RepositoryT", bound="Repository[Any]")
_T = TypeVar("_T")

logger = logging.getLogger("herorepo")


class _Phase(enum.Enum):
    """Where the ``async with`` block stands (the transaction's own state is separate)."""

    NEW = "not started"
    ACTIVE = "active"
    ENDED = "ended"


class UnitOfWork:
    """One transaction around a block of work.

    ::

        async with db.unit_of_work() as uow:
            heroes = uow.repository(Hero)
            hero = await heroes.get_one(hero_id)
            await heroes.update(hero, {"age": 31})
        # committed here; an exception in the block rolls everything back and is re-raised

    The contract, on every backend (docs/unit-of-work.md has the whole table):

    * A database error that is not inside a savepoint fails the unit of work, even when the
      code catches it: the next statement raises :class:`~herorepo.TransactionError` chained to
      that error, and leaving the block rolls back and raises it. ``rollback()`` recovers.
    * ``savepoint()`` opens a SAVEPOINT: an exception inside it undoes only that block.
    * A unit of work opened inside another of the same database, in the same task, joins it as a
      savepoint; only the outermost commits. It shares the outer transaction's isolation level
      (asking for another one raises); with ``read_only=True`` its flushes are refused.
      ``independent=True`` gives it its own transaction.
    * ``commit()`` and ``rollback()`` end the current transaction early; the next statement
      starts a new one with the same isolation level and read-only mode.
    * ``on_commit(callback)`` runs ``callback`` once the COMMIT that made the work durable has
      succeeded: never after a rollback.

    A unit of work runs once and serves one task: entering it twice, using it after it ended,
    or running statements on it from two tasks at once raises :class:`~herorepo.TransactionError`.

    Args:
        sessionmaker: Where its session comes from (``db.unit_of_work()`` passes the database's).
        isolation_level: The transaction's isolation level, e.g. ``"SERIALIZABLE"``; the
            backend's default when omitted.
        read_only: The work only reads, and writes are refused (READ ONLY transactions on
            PostgreSQL and MySQL, ``PRAGMA query_only`` on SQLite). On SQLite a unit of work that
            may write starts with ``BEGIN IMMEDIATE``, so concurrent writers queue on the busy
            timeout instead of failing when a read lock cannot be upgraded; read-only ones do not.
        independent: Run in a transaction of its own, on its own connection, even inside another
            unit of work: it commits when its block ends, whatever the outer one does.
        name: What the work is, e.g. ``"transfer"``: telemetry and query tags show it. Keep
            it to a fixed set of names (no ids or user input), so that it can group statistics.

    Attributes:
        name: The ``name`` given; :meth:`Database.run <herorepo.Database.run>` passes the
            work function's qualified name when none is given.
        attempt: Which run of :meth:`Database.run <herorepo.Database.run>` this is (1 for the
            first); 1 outside ``run()``.

    Raises:
        ConfigurationError: the isolation level is not one the backend has.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        isolation_level: IsolationLevel | None = None,
        read_only: bool = False,
        independent: bool = False,
        session_info: Mapping[str, object] | None = None,
        name: str | None = None,
    ) -> None:
        if name is not None and not isinstance(name, str):
            raise ConfigurationError(f"name must be a str, got a {type(name).__name__}.")
        self.name = name
        self.attempt = 1
        self._sessionmaker = sessionmaker
        self._session_info = dict(session_info or {})  # the tenant and actor, if given
        self._key: object = sessionmaker  # units of work of one sessionmaker join each other
        self._isolation_level = isolation_level
        self._read_only = read_only
        self._independent = independent
        self._options = _begin_options(sessionmaker, isolation_level, read_only)
        self._forbid_commit = False  # Database.run(): only the final COMMIT
        # Take the connection at ``async with`` rather than at the first statement: a replica's
        # unit of work does, so that an unreachable replica is skipped before the block runs.
        # So does one with an isolation level: SQLAlchemy sets it as the connection is made,
        # a round trip on MySQL and SQLite outside the checkout that a cancellation is safe in.
        self._connect_at_start = isolation_level is not None
        self._phase = _Phase.NEW
        self._session: AsyncSession | None = None
        self._tx: TransactionState | None = None
        # The outermost unit of work of the transaction, when this one joined it (not itself
        # otherwise: a reference to itself would make every unit of work garbage that only the
        # cycle collector frees, session, identity map and all).
        self._outer_root: UnitOfWork | None = None
        self._savepoint: AsyncSessionTransaction | None = None  # when joined
        self._owner: asyncio.Task[Any] | None = None
        self._previous: UnitOfWork | None = None
        self._token: Token[UnitOfWork | None] | None = None
        self._trace: UnitTrace | None = None  # its span, with Telemetry

    def __repr__(self) -> str:
        if self._phase is _Phase.ACTIVE and self._tx is not None and self._tx.failed:
            return "<UnitOfWork failed>"
        return f"<UnitOfWork {self._phase.value}>"

    @property
    def session(self) -> AsyncSession:
        """The session of this unit of work, for queries the repositories do not cover.

        Raises:
            TransactionError: the unit of work is not active.
        """
        if self._phase is not _Phase.ACTIVE or self._session is None:
            raise TransactionError(
                f"This unit of work is {self._phase.value}; use its session inside "
                "`async with db.unit_of_work() as uow:`."
            )
        return self._session

    @property
    def joined(self) -> bool:
        """Whether this unit of work runs inside an outer one's transaction (a savepoint)."""
        return self._outer_root is not None

    @property
    def _root(self) -> UnitOfWork:
        return self._outer_root or self

    @overload
    def repository(self, model: type[RepositoryT]) -> RepositoryT: ...
    @overload
    def repository(self, model: type[ModelT]) -> Repository[ModelT]: ...
    def repository(self, model: Any) -> Repository[Any]:
        """Return a repository bound to this unit of work's session.

        ``uow.repository(Hero)`` is a ``Repository[Hero]``; ``uow.repository(HeroRepository)``
        builds that subclass (declared as ``class HeroRepository(Repository[Hero])``).

        Raises:
            ConfigurationError: ``model`` is neither a table model nor a repository class
                bound to one.
        """
        if isinstance(model, type) and issubclass(model, Repository):
            repository_class: type[Repository[Any]] = cast("Any", model)
            return repository_class(self.session)
        return Repository(self.session, cast("type[SQLModel]", model))

    def on_commit(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` (a function or an async function, no arguments) after the commit.

        It runs once the COMMIT that makes this work durable has succeeded: at the end of the
        outermost unit of work, or at ``commit()``. It never runs when that work is rolled back,
        by the whole transaction, by the savepoint it was registered in, or by a failed attempt
        of :meth:`Database.run <herorepo.Database.run>`. This is the place for side effects
        that must not happen for data that was not saved: emails, events, cache invalidation.

        Callbacks run in the order they were added, in the task of the unit of work, after its
        connection went back to the pool. If some raise, the others still run, and then
        :class:`~herorepo.AfterCommitError` is raised: the data is saved.

        Raises:
            TransactionError: the unit of work is not active.
            ConfigurationError: ``callback`` is not callable.
        """
        self.session  # noqa: B018 - raises unless active
        if not callable(callback):
            raise ConfigurationError(
                f"on_commit() takes a function with no arguments, got {callback!r}."
            )
        assert self._tx is not None
        self._tx.add_callback(callback)

    # --- entering ------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._phase is not _Phase.NEW:
            raise TransactionError(
                f"This unit of work is {self._phase.value} and cannot be entered again; "
                "open a new one with db.unit_of_work()."
            )
        telemetry = telemetry_of(self._sessionmaker)  # None unless the database traces
        if telemetry is None:
            return await self._enter()
        trace = telemetry.unit_started(
            self, read_only=self._read_only, isolation_level=self._isolation_level
        )
        try:
            await self._enter()
        except BaseException as error:
            trace.ended(error, raised=True)
            raise
        self._trace = trace
        trace.entered(self)
        return self

    async def _enter(self) -> Self:
        outer = self._open_outer()
        if outer is not None and not self._independent:
            await self._join(outer)
        else:
            if outer is not None:
                self._check_independent(outer)
            await self._begin()
        self._phase = _Phase.ACTIVE
        self._owner = asyncio.current_task()
        self._previous = _current.get()
        self._token = _current.set(self)
        return self

    def _open_outer(self) -> UnitOfWork | None:
        """The open unit of work of this database that this one would join, if any."""
        candidate = _current.get()
        while candidate is not None:
            if candidate._phase is _Phase.ACTIVE and candidate._key is self._key:
                return candidate
            candidate = candidate._previous
        return None

    async def _join(self, outer: UnitOfWork) -> None:
        owner = outer._owner
        if owner is not None and owner is not asyncio.current_task() and not owner.done():
            raise TransactionError(
                "A unit of work is open in another task (this one was started inside it, by "
                "asyncio.create_task, gather or wait_for). One unit of work serves one task: "
                "await this work in that task to join its transaction, or open this one with "
                "independent=True for a transaction of its own."
            )
        root = outer._root
        if self._isolation_level not in (None, root._isolation_level):
            raise TransactionError(
                f"This unit of work asks for isolation level {self._isolation_level!r}, but it "
                "is opened inside another one, whose transaction it joins and whose isolation "
                f"level is {root._isolation_level or 'the default'!r}. Ask for the level on the "
                "outermost unit of work, or pass independent=True."
            )
        assert outer._session is not None
        assert outer._tx is not None
        outer_info = outer._session.sync_session.info
        for key, value in self._session_info.items():
            if outer_info.get(key) != value:
                raise TransactionError(
                    f"This unit of work asks for {key.rpartition('.')[2]} {value!r}, but it is "
                    "opened inside another one, whose transaction it joins, with "
                    f"{outer_info.get(key)!r}. Open it outside, or with independent=True."
                )
        if outer._tx.failure is not None:
            raise TransactionError(NEEDS_ROLLBACK) from outer._tx.failure
        self._session, self._tx, self._outer_root = outer._session, outer._tx, root
        self._savepoint = await _shielded(self._session.begin_nested())
        if self._read_only:
            # Its flushes are refused; the database cannot refuse raw SQL in a writer's
            # transaction.
            self._tx.read_only_joins += 1

    def _check_independent(self, outer: UnitOfWork) -> None:
        bind = self._sessionmaker.kw.get("bind")
        if not isinstance(bind, AsyncEngine) or bind.dialect.name != "sqlite":
            return
        if is_sqlite_memory(bind.url):
            raise TransactionError(
                "An independent unit of work needs a second connection, and an in-memory SQLite "
                "database has one, which the outer unit of work holds. Drop independent=True "
                "(the work then joins the outer transaction), or use a SQLite file."
            )
        root = outer._root
        holds_lock = root._session is not None and root._session.in_transaction()
        if not self._read_only and not root._read_only and holds_lock:
            raise TransactionError(
                "On SQLite an independent unit of work that writes would wait for the write lock "
                "that the outer unit of work holds (or takes) until it ends. Drop "
                "independent=True (the work then joins the outer transaction), open this one "
                "with read_only=True, or run it after the outer one."
            )

    async def _begin(self) -> None:
        bind = self._sessionmaker.kw.get("bind")
        if isinstance(bind, AsyncEngine):
            # Every connection of this session gets the options: the first transaction's and
            # each one begun after commit() or rollback().
            session = self._sessionmaker(bind=engine_with_options(bind, self._options))
        else:  # bound to one connection (herorepo.testing): the test's transaction holds it
            session = self._sessionmaker()
        tx = TransactionState(read_only=self._read_only, forbid_commit=self._forbid_commit)
        tx.shares_connection = not isinstance(bind, AsyncEngine)
        tx.name = self.name  # query tags read it from the connection, flushes at commit too
        session.sync_session.info.update(self._session_info)
        session.sync_session.info[TX_KEY] = tx
        # No I/O here: the connection is taken, and BEGIN sent, by the first statement, inside
        # SQLAlchemy's checkout, which hands a connection back to the pool if a cancellation
        # lands there. A unit of work that runs no statement costs no round trip.
        session.sync_session.begin()
        first = isinstance(bind, AsyncEngine) and bind.dialect.server_version_info is None
        if first or self._connect_at_start:
            # Otherwise the first statement takes the connection. The engine's first connection
            # is made now: SQLAlchemy learns the server's version and features from it, which
            # statements built before any SQL need (whether an INSERT of many rows may use
            # RETURNING on MariaDB).
            try:
                await _shielded(session.connection())
            except BaseException:
                tx.close()
                await _shielded(session.close())
                raise
        self._session, self._tx = session, tx

    # --- leaving -------------------------------------------------------------------------------

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        trace, self._trace = self._trace, None
        if trace is None:
            await self._exit(exc_type)
            return
        try:
            await self._exit(exc_type)
        except BaseException as error:
            trace.ended(error, raised=True)
            raise
        trace.ended(exc, raised=False)

    async def _exit(self, exc_type: type[BaseException] | None) -> None:
        session, tx = self.session, self._tx
        assert tx is not None
        self._phase = _Phase.ENDED
        self._forget()
        if self._savepoint is not None:
            if self._read_only:
                tx.read_only_joins -= 1
            await _leave_savepoint(self._savepoint, tx, failed=exc_type is not None, joined=True)
            return
        if exc_type is None and tx.failure is None:
            tx.final = True
            # Once COMMIT is under way it runs to its end, and the session is closed: a
            # cancellation arriving now is delivered afterwards, so the outcome is never half
            # known to this client and the connection always goes back to the pool. One
            # shielded step (one task), the only one on a unit of work's usual path.
            await _shielded(self._commit_and_close(session, tx))
            await _run_callbacks(tx.take_done_callbacks())
            return
        try:
            failure = tx.failure
            if exc_type is not None:
                tx.close()  # no statement of this block runs after the rollback
                await _shielded(tx.settle())
                await _rollback_quietly(session)
            else:
                await _rollback_quietly(session)
                raise TransactionError(_failed_at_exit(tx)) from failure
        finally:
            tx.close()
            # close() returns the connection to the pool; shielded so that a cancellation
            # arriving now cannot leave it checked out.
            await _shielded(session.close())

    async def _commit_and_close(self, session: AsyncSession, tx: TransactionState) -> None:
        closed = False
        try:
            closed = await self._commit(session, close=True)
        finally:
            tx.close()
            tx.release()
            if not closed:
                await session.close()

    def _forget(self) -> None:
        """Stop being the task's open unit of work."""
        if self._token is not None:
            try:
                _current.reset(self._token)
            except ValueError:  # left in another context than it was entered in
                _current.set(self._previous)
            self._token = None

    # --- within the block ----------------------------------------------------------------------

    async def commit(self) -> None:
        """Commit now; later work in the block runs in a new transaction.

        Then run the ``on_commit`` callbacks of the committed work.

        Raises:
            TransactionError: the unit of work is not active, it joined an outer one (only the
                outermost commits), it runs under ``Database.run()``, or its transaction failed.
            ConflictError: a deferred constraint failed at commit.
            AfterCommitError: the commit succeeded, but an ``on_commit`` callback raised.
        """
        session = self.session
        if self.joined:
            raise TransactionError(
                "This unit of work joined an outer one (it was opened inside it, in the same "
                "task): only the outermost unit of work commits, when its block ends. End this "
                "block instead, or open it with independent=True to commit on its own."
            )
        assert self._tx is not None
        self._tx.check_commit()
        await _shielded(self._commit(session))
        await _run_callbacks(self._tx.take_done_callbacks())

    async def rollback(self) -> None:
        """Roll back now; later work in the block runs in a new transaction.

        In a unit of work that joined an outer one, this undoes only its own work (back to its
        savepoint). Objects read in the rolled-back transaction are expired: read them again
        (or ``await session.refresh(obj)``) before using their attributes.
        """
        session = self.session
        if self._savepoint is None:
            await _shielded(session.rollback())
            return
        if _still_open(self._savepoint):
            await _shielded(self._savepoint.rollback())
        self._savepoint = await _shielded(session.begin_nested())

    @asynccontextmanager
    async def savepoint(self) -> AsyncGenerator[None, None]:
        """Run a block in a SAVEPOINT: an exception undoes only the block, then propagates.

        ::

            try:
                async with uow.savepoint():
                    await heroes.create(maybe_duplicate)
            except UniqueViolationError:
                ...  # the outer transaction goes on

        A block that catches a database error itself and ends normally is rolled back to the
        savepoint too, and raises :class:`~herorepo.TransactionError`.

        Raises:
            TransactionError: the unit of work is not active, or its transaction failed.
        """
        session = self.session
        tx = self._tx
        assert tx is not None
        if tx.failure is not None:
            raise TransactionError(NEEDS_ROLLBACK) from tx.failure
        nested = await _shielded(session.begin_nested())
        try:
            yield
        except BaseException:
            await _leave_savepoint(nested, tx, failed=True)
            raise
        await _leave_savepoint(nested, tx, failed=False)

    async def _commit(self, session: AsyncSession, *, close: bool = False) -> bool:
        """COMMIT, and with ``close`` close the session in the same call; return whether the
        session was closed (not after an error, nor after a lost COMMIT found committed)."""
        tx = self._tx
        assert tx is not None
        try:
            probe = await probe_commit(session, tx)  # what a lost COMMIT's outcome is asked with
            try:
                if close:  # one greenlet for both: each costs a switch into SQLAlchemy
                    await session.run_sync(_commit_then_close)
                    return True
                await session.commit()
            except ConnectionLostError as lost:
                if probe is None:
                    raise
                try:
                    await settle_lost_commit(probe, lost)  # returns only if it committed
                except CommitInterruptedError:
                    await session.close()  # its connection is gone: nothing to roll back
                    raise
                tx.committed()
                await session.run_sync(_end_committed)
        except PendingRollbackError as error:
            failure = self._tx.failure if self._tx is not None else None
            raise TransactionError(NEEDS_ROLLBACK) from (failure or error)
        except StaleDataError as error:
            raise ConcurrentUpdateError() from error
        return False


def _commit_then_close(session: Session) -> None:
    session.commit()
    session.close()


def _end_committed(session: Session) -> None:
    """End the session's transaction, found committed after its COMMIT's connection was lost,
    as a commit does: objects keep their state (a rollback would expire them)."""
    transaction = session.get_transaction()
    if transaction is not None:
        transaction.close()


def forbid_intermediate_commits(unit: UnitOfWork) -> UnitOfWork:
    """Make ``unit`` refuse ``commit()`` in its block: what ``Database.run()`` runs may retry."""
    unit._forbid_commit = True  # pyright: ignore[reportPrivateUsage]  # this module's own class
    return unit


async def _leave_savepoint(
    nested: AsyncSessionTransaction, tx: TransactionState, *, failed: bool, joined: bool = False
) -> None:
    """End a savepoint: release it, or roll back to it after an error in its block.

    A block that ends normally after a database error it caught is rolled back too, and raises:
    its work must not be kept half done. A failure that a savepoint cannot undo (a deadlock, a
    lost connection) is left for the outermost unit of work, which rolls back everything.
    """
    if not _still_open(nested):
        return  # an outer rollback closed it already
    failure = tx.failure
    beyond_savepoints = failure is not None and tx.whole
    inside = failure is not None and not tx.whole and tx.failed_at >= tx.depth
    if failed or inside:
        if not beyond_savepoints:
            await _shielded(nested.rollback())
        if not failed:
            what = "unit of work, which joined an outer one," if joined else "savepoint block"
            raise TransactionError(
                f"The transaction failed earlier (see the chained error), and this {what} went "
                "on without undoing it: its work was rolled back and is not saved."
            ) from failure
        return
    if beyond_savepoints:
        raise TransactionError(NEEDS_ROLLBACK) from failure
    await _shielded(nested.commit())


def _still_open(nested: AsyncSessionTransaction) -> bool:
    """Whether the savepoint is still one of its session's, even if a failed flush deactivated it
    (it then still needs its rollback)."""
    sync = nested.sync_transaction
    current = nested.session.sync_session.get_nested_transaction()
    while current is not None:
        if current is sync:
            return True
        current = current.parent
    return False


def _failed_at_exit(tx: TransactionState) -> str:
    saved = (
        "Only what its earlier commit() calls saved is kept."
        if tx.commits
        else "Nothing of it was saved."
    )
    return (
        "The transaction failed earlier (see the chained error) and was rolled back when the "
        f"unit of work ended. {saved}"
    )


async def _run_callbacks(callbacks: list[Callable[[], object]]) -> None:
    errors: list[Exception] = []
    for callback in callbacks:
        try:
            result = callback()
            if inspect.isawaitable(result):
                await result
        except Exception as error:
            logger.error("herorepo: an on_commit callback failed", exc_info=error)
            errors.append(error)
    if errors:
        raise AfterCommitError(errors, len(callbacks)) from errors[0]


IsolationLevel = Literal["SERIALIZABLE", "REPEATABLE READ", "READ COMMITTED", "READ UNCOMMITTED"]
"""Isolation levels a unit of work may ask for (SQLite has SERIALIZABLE and READ UNCOMMITTED)."""

_LEVELS: dict[str, frozenset[str]] = {
    "sqlite": frozenset({"SERIALIZABLE", "READ UNCOMMITTED"}),
    "postgresql": frozenset(get_args(IsolationLevel)),
    "mysql": frozenset(get_args(IsolationLevel)),
    "mariadb": frozenset(get_args(IsolationLevel)),
}

# The unit of work open in this task, newest first through ``_previous``: what a unit of work
# opened now would join. It carries the session only for that; repositories get it explicitly.
_current: ContextVar[UnitOfWork | None] = ContextVar("herorepo_unit_of_work", default=None)


def _begin_options(
    sessionmaker: async_sessionmaker[AsyncSession],
    isolation_level: str | None,
    read_only: bool,
) -> dict[str, Any]:
    bind = sessionmaker.kw.get("bind")
    dialect = getattr(bind, "dialect", None)
    name = getattr(dialect, "name", "")
    options: dict[str, Any] = {}
    if isolation_level is not None:
        allowed = _LEVELS.get(name, frozenset(get_args(IsolationLevel)))
        if isolation_level not in allowed:
            raise ConfigurationError(
                f"Isolation level {isolation_level!r} is not available on {name or 'this'} "
                f"database; choose one of: {', '.join(sorted(allowed))}."
            )
        options["isolation_level"] = isolation_level
    if read_only:
        options["postgresql_readonly" if name == "postgresql" else READ_ONLY_OPTION] = True
    if name == "sqlite":
        # A reader still begins at once, so that all its reads see one snapshot.
        options[SQLITE_BEGIN_OPTION] = "deferred" if read_only else "immediate"
    return options


async def _rollback_quietly(session: AsyncSession) -> None:
    """Roll back after an error without hiding that error behind a second one."""
    try:
        await _shielded(session.rollback())
    except Exception:
        logger.warning("Rollback after an error failed too", exc_info=True)


async def _shielded(awaitable: Awaitable[_T]) -> _T:
    """Await ``awaitable`` to completion even if the calling task is cancelled meanwhile."""
    task: asyncio.Future[_T] = asyncio.ensure_future(awaitable)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        if not task.cancelled() and task.exception() is not None:
            # The cancellation is what the caller gets; the task's own failure is logged.
            logger.info(
                "herorepo: shielded step failed during a cancellation", exc_info=task.exception()
            )
        raise
