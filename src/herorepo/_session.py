"""The sync session class behind every herorepo ``AsyncSession``, with its two guards.

* Before each flush, new and changed values are checked against their column types
  (:mod:`herorepo._values`): a value the backend would store changed is refused first.
* Every ORM statement passes the implicit-IO guard (:mod:`herorepo._loading`): a lazy load
  outside ``await`` raises :class:`~herorepo.LazyLoadError` instead of ``MissingGreenlet``.
* A unit of work's session follows its transaction state (:mod:`herorepo._transaction`):
  statements after a failure are refused, and so are writes in a read-only unit of work.
* With policies (:mod:`herorepo._policies`), every statement is scoped to the session's tenant
  and leaves soft-deleted rows out, and flushes fill the tenant and audit columns.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlmodel import Session

from ._loading import refuse_implicit_io
from ._policies import capture_tenant, fill_before_flush, scope_statement, set_row_level_tenant
from ._transaction import install_session_hooks
from ._values import check_before_flush

__all__ = ["GuardedSession"]


class GuardedSession(Session):
    """The sync session behind herorepo's ``AsyncSession``; see the module docstring."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        capture_tenant(self)


install_session_hooks(GuardedSession)  # first: a failed unit of work refuses before any check
event.listen(GuardedSession, "after_begin", set_row_level_tenant)
event.listen(GuardedSession, "before_flush", fill_before_flush)  # then the values are checked
event.listen(GuardedSession, "before_flush", check_before_flush)
event.listen(GuardedSession, "do_orm_execute", refuse_implicit_io)
event.listen(GuardedSession, "do_orm_execute", scope_statement)
