"""Row locks on reads: ``FOR UPDATE`` / ``FOR SHARE``, with ``NOWAIT`` or ``SKIP LOCKED``.

PostgreSQL and MariaDB (10.6 and later for ``SKIP LOCKED``) lock the rows a read returns until
the transaction ends. SQLite has no row locks, and SQLAlchemy would drop the clause without a
word; herorepo never does that. There, a unit of work that may write holds the database's write
lock from its first statement (``BEGIN IMMEDIATE``), which is stronger than a row lock: no other
connection can change any row until it ends. So a lock is granted there in such a unit of work,
and refused, with the reason, where it would promise something SQLite cannot keep: outside a
writing unit of work, or with ``NOWAIT`` / ``SKIP LOCKED`` (no other writer can hold a row).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Select
from sqlalchemy.orm import Session

from ._errors import ConfigurationError, ReadOnlyTransactionError, TransactionError
from ._transaction import session_state

__all__ = ["RowLock"]

SelectT = TypeVar("SelectT", bound=Select[Any])


@dataclass(frozen=True)
class RowLock:
    """How the rows of a read are locked."""

    share: bool = False  # FOR SHARE (others may read-lock too) rather than FOR UPDATE
    nowait: bool = False  # fail at once (LockTimeoutError) instead of waiting
    skip_locked: bool = False  # leave out rows another transaction holds

    def __post_init__(self) -> None:
        if self.nowait and self.skip_locked:
            raise ConfigurationError(
                "A row lock waits, fails at once (nowait=True) or skips locked rows "
                "(skip_locked=True): pick one of nowait and skip_locked."
            )

    @property
    def clause(self) -> str:
        return " ".join(
            part
            for part, wanted in (
                ("FOR SHARE" if self.share else "FOR UPDATE", True),
                ("NOWAIT", self.nowait),
                ("SKIP LOCKED", self.skip_locked),
            )
            if wanted
        )

    def check(self, session: Session, model: str) -> None:
        """Refuse a lock the session's transaction cannot hold."""
        state = session_state(session)
        if state is not None and (state.read_only or state.read_only_joins):
            raise ReadOnlyTransactionError(
                f"{self.clause} locks rows for a write, and this unit of work is read-only "
                f"(read_only=True). Open it without read_only=True to lock {model} rows."
            )
        if session.get_bind().dialect.name != "sqlite":
            return
        if state is None:
            raise TransactionError(
                f"SQLite has no row locks; a unit of work that may write holds the whole "
                f"database's write lock, which is stronger. Read {model} rows with {self.clause} "
                "inside `async with db.unit_of_work() as uow:`."
            )
        if self.nowait or self.skip_locked:
            raise ConfigurationError(
                f"SQLite has no row locks, so {self.clause} cannot be kept: this unit of work "
                "holds the database's write lock, and no other connection can hold a row. "
                "Lock without nowait and skip_locked on SQLite (workers then take turns)."
            )

    def apply(self, statement: SelectT, model: type[Any]) -> SelectT:
        # OF the model: PostgreSQL refuses FOR UPDATE on the nullable side of the outer join
        # of a joined eager load; the related rows are not locked.
        return statement.with_for_update(
            read=self.share, nowait=self.nowait, skip_locked=self.skip_locked, of=model
        )

    def for_get(self) -> dict[str, Any]:
        """The ``with_for_update`` argument of ``Session.get``."""
        return {"read": self.share, "nowait": self.nowait, "skip_locked": self.skip_locked}
