"""``UnitOfWork``: one session and one transaction, committed on success, rolled back on error."""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import AsyncGenerator, Awaitable
from contextlib import asynccontextmanager
from contextvars import ContextVar, Token
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar, get_args

from sqlalchemy.exc import PendingRollbackError
from sqlalchemy.orm.exc import StaleDataError

from ._engine import SQLITE_BEGIN_OPTION
from ._errors import ConcurrentUpdateError, ConfigurationError, TransactionError
from ._repository import Repository

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import async_sessionmaker
    from sqlmodel import SQLModel
    from sqlmodel.ext.asyncio.session import AsyncSession
    from typing_extensions import Self

__all__ = ["UnitOfWork"]

ModelT = TypeVar("ModelT", bound="SQLModel")
_T = TypeVar("_T")

logger = logging.getLogger("herorepo")


class _State(enum.Enum):
    NEW = "not started"
    ACTIVE = "active"
    ENDED = "ended"


class UnitOfWork:
    """One session and one transaction around a block of work.

    ::

        async with db.unit_of_work() as uow:
            heroes = uow.repository(Hero)
            hero = await heroes.get_one(hero_id)
            await heroes.update(hero, {"age": 31})
        # committed here; an exception in the block rolls everything back and is re-raised

    ``savepoint()`` opens a nested transaction (SAVEPOINT): an exception inside it undoes only
    that block. ``commit()`` and ``rollback()`` end the current transaction early; the next
    statement starts a new one, which the block's exit commits or rolls back in turn.

    A unit of work runs once: entering it twice, or using it after it ended, raises
    :class:`~herorepo.TransactionError`. It is not for concurrent use from several tasks.

    Args:
        sessionmaker: Where its session comes from (``db.unit_of_work()`` passes the database's).
        isolation_level: The transaction's isolation level, e.g. ``"SERIALIZABLE"``; the
            backend's default when omitted.
        read_only: Promise that the work only reads. On SQLite a unit of work that may write
            starts with ``BEGIN IMMEDIATE``, so concurrent writers queue on the busy timeout
            instead of failing when a read lock cannot be upgraded; read-only ones do not.

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
    ) -> None:
        self._sessionmaker = sessionmaker
        self._session: AsyncSession | None = None
        self._state = _State.NEW
        self._options = _begin_options(sessionmaker, isolation_level, read_only)
        self._token: Token[bool] | None = None

    def __repr__(self) -> str:
        return f"<UnitOfWork {self._state.value}>"

    @property
    def session(self) -> AsyncSession:
        """The session of this unit of work, for queries the repositories do not cover.

        Raises:
            TransactionError: the unit of work is not active.
        """
        if self._state is not _State.ACTIVE or self._session is None:
            raise TransactionError(
                f"This unit of work is {self._state.value}; use its session inside "
                "`async with db.unit_of_work() as uow:`."
            )
        return self._session

    def repository(self, model: type[ModelT]) -> Repository[ModelT]:
        """Return a ``Repository[model]`` bound to this unit of work's session.

        For a repository subclass, build it on the session: ``HeroRepository(uow.session)``.
        """
        return Repository(self.session, model)

    async def __aenter__(self) -> Self:
        if self._state is not _State.NEW:
            raise TransactionError(
                f"This unit of work is {self._state.value} and cannot be entered again; "
                "open a new one with db.unit_of_work()."
            )
        session = self._sessionmaker()
        try:
            await session.begin()
            # The connection is taken now, and shielded: a cancellation that lands while the
            # pool hands it out would otherwise leave it checked out with no owner. Options
            # (isolation level, SQLite's BEGIN IMMEDIATE) must reach it before its BEGIN anyway.
            await _shielded(session.connection(execution_options=self._options or None))
        except BaseException:
            await _shielded(session.close())
            raise
        self._session = session
        self._state = _State.ACTIVE
        self._token = _inside.set(True)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        session = self.session
        self._state = _State.ENDED
        if self._token is not None:
            _inside.reset(self._token)
        try:
            if exc_type is None:
                # Once COMMIT is under way it runs to its end: a cancellation arriving now is
                # delivered afterwards, so the outcome is never half known to this client.
                await _shielded(self._commit(session))
            else:
                await _rollback_quietly(session)
        finally:
            # close() returns the connection to the pool; shielded so that a cancellation
            # arriving now cannot leave it checked out.
            await _shielded(session.close())

    async def commit(self) -> None:
        """Commit now; later work in the block runs in a new transaction.

        Raises:
            TransactionError: the unit of work is not active, or its transaction failed earlier.
            ConflictError: a deferred constraint failed at commit.
        """
        await self._commit(self.session)

    async def rollback(self) -> None:
        """Roll back now; later work in the block runs in a new transaction.

        Objects read in the rolled-back transaction are expired: read them again (or
        ``await session.refresh(obj)``) before using their attributes.
        """
        await self.session.rollback()

    @asynccontextmanager
    async def savepoint(self) -> AsyncGenerator[None, None]:
        """Run a block in a SAVEPOINT: an exception undoes only the block, then propagates.

        ::

            try:
                async with uow.savepoint():
                    await heroes.create(maybe_duplicate)
            except UniqueViolationError:
                ...  # the outer transaction goes on

        Raises:
            TransactionError: the unit of work is not active.
        """
        async with self.session.begin_nested():
            yield

    async def _commit(self, session: AsyncSession) -> None:
        try:
            await session.commit()
        except PendingRollbackError as error:
            raise TransactionError(
                "Cannot commit: the transaction failed earlier (see the exception chain) and "
                "was rolled back. Nothing of it was saved."
            ) from error
        except StaleDataError as error:
            raise ConcurrentUpdateError() from error


IsolationLevel = Literal["SERIALIZABLE", "REPEATABLE READ", "READ COMMITTED", "READ UNCOMMITTED"]
"""Isolation levels a unit of work may ask for (SQLite has SERIALIZABLE and READ UNCOMMITTED)."""

_LEVELS: dict[str, frozenset[str]] = {
    "sqlite": frozenset({"SERIALIZABLE", "READ UNCOMMITTED"}),
    "postgresql": frozenset(get_args(IsolationLevel)),
    "mysql": frozenset(get_args(IsolationLevel)),
    "mariadb": frozenset(get_args(IsolationLevel)),
}

# Set while a unit of work is open in this task, so that Database.run() can refuse to retry
# half of an outer transaction. It carries no session: sessions are passed explicitly.
_inside: ContextVar[bool] = ContextVar("herorepo_inside_unit_of_work", default=False)


def inside_unit_of_work() -> bool:
    """Whether the current task is inside an open unit of work."""
    return _inside.get()


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
