"""``UnitOfWork``: one session and one transaction, committed on success, rolled back on error."""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import AsyncGenerator, Awaitable
from contextlib import asynccontextmanager
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy.exc import PendingRollbackError

from ._errors import TransactionError
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

    .. versionadded:: 0.1.0
    """

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker
        self._session: AsyncSession | None = None
        self._state = _State.NEW

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
        except BaseException:
            await asyncio.shield(session.close())
            raise
        self._session = session
        self._state = _State.ACTIVE
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        session = self.session
        self._state = _State.ENDED
        try:
            if exc_type is None:
                await self._commit(session)
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
        raise
