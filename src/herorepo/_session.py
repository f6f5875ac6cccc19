"""The sync session class behind every herorepo ``AsyncSession``, with its two guards.

* Before each flush, new and changed values are checked against their column types
  (:mod:`herorepo._values`): a value the backend would store changed is refused first.
* Every ORM statement passes the implicit-IO guard (:mod:`herorepo._loading`): a lazy load
  outside ``await`` raises :class:`~herorepo.LazyLoadError` instead of ``MissingGreenlet``.
* A unit of work's session follows its transaction state (:mod:`herorepo._transaction`):
  statements after a failure are refused, and so are writes in a read-only unit of work.
"""

from __future__ import annotations

from sqlalchemy import event
from sqlmodel import Session

from ._loading import refuse_implicit_io
from ._transaction import install_session_hooks
from ._values import check_before_flush

__all__ = ["GuardedSession"]


class GuardedSession(Session):
    """The sync session behind herorepo's ``AsyncSession``; see the module docstring."""


install_session_hooks(GuardedSession)  # first: a failed unit of work refuses before any check
event.listen(GuardedSession, "before_flush", check_before_flush)
event.listen(GuardedSession, "do_orm_execute", refuse_implicit_io)
