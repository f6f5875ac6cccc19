"""The herorepo exception tree, and the translation of driver errors into it.

::

    HeroRepoError
     ├─ ConfigurationError         bad URL, driver, engine setting or model; raised at construction
     ├─ NotFoundError              no row has the key or matches the criteria (also a LookupError)
     ├─ MultipleResultsError       a single-row read matched more than one row
     ├─ InvalidDataError           data for create/update does not fit the model (also a ValueError)
     ├─ InvalidFilterError         a filter or sort key from outside is not allowed or not valid
     ├─ InvalidCursorError         a pagination cursor was altered, truncated or made elsewhere
     ├─ LoadError                  a relationship was not loaded, or a load spec is wrong
     │   ├─ LazyLoadError          a relationship that was not eagerly loaded was touched
     │   │   └─ DetachedLoadError  ... after the unit of work that read the object ended
     │   └─ InvalidLoadError       a load spec names no relationship of the model
     ├─ ConflictError              an integrity constraint failed
     │   ├─ UniqueViolationError   unique constraint or primary key
     │   ├─ ForeignKeyViolationError
     │   ├─ NotNullViolationError
     │   └─ CheckViolationError
     ├─ TransientError             the transaction lost a race; running it again may succeed
     │   ├─ DeadlockError          chosen as a deadlock victim
     │   ├─ SerializationError     PostgreSQL could not serialize it (SERIALIZABLE/REPEATABLE READ)
     │   ├─ LockTimeoutError       waited too long for a row lock
     │   └─ DatabaseBusyError      SQLite: another connection holds the write lock
     ├─ RetriesExhaustedError      a retried unit of work kept failing; carries the last error
     ├─ ConcurrentUpdateError      optimistic locking: the row changed since it was read
     ├─ ConnectionLostError        the server could not be reached, or dropped the connection
     │   ├─ CannotConnectError     no connection at all: unreachable, or the login was refused
     │   └─ CommitInterruptedError  lost during COMMIT: rolled back, or unknown (.committed)
     ├─ PoolTimeoutError           no pooled connection became free within pool_timeout
     ├─ StatementTimeoutError      the server cancelled a statement that ran too long
     ├─ TenantError                tenant scoping (TenantScope)
     │   ├─ MissingTenantError     a scoped model used with no tenant set
     │   └─ TenantMismatchError    a write for another tenant, or onto its row
     ├─ TransactionError           a unit of work used wrongly, or its transaction failed earlier
     │   └─ ReadOnlyTransactionError  a write in a read-only unit of work
     └─ AfterCommitError           committed, but an on_commit callback failed

Errors are recognised from the drivers' structured codes (PostgreSQL SQLSTATE, MySQL errno,
SQLite result codes; see ``_translate.py``), so the same failure raises the same class on
aiosqlite, asyncpg and aiomysql, with the driver's exception as ``__cause__``.

Values (what a row holds, the keys and criteria asked for, statement parameters) never appear in
a message: they may be personal data, and messages end up in logs and API responses. The
errors keep what code needs as attributes (``NotFoundError.ident``). Nor do they appear in the
driver's exception chained as ``__cause__``: its text is rewritten (``_redact.py``), its class
and codes kept. For development, ``EngineConfig(show_values_in_errors=True)`` shows them all.
"""

from __future__ import annotations

import weakref
from typing import Any

from sqlalchemy.exc import TimeoutError as SATimeoutError
from sqlalchemy.orm.exc import DetachedInstanceError

__all__ = [
    "AfterCommitError",
    "CannotConnectError",
    "CheckViolationError",
    "CommitInterruptedError",
    "ConcurrentUpdateError",
    "ConfigurationError",
    "ConflictError",
    "ConnectionLostError",
    "DatabaseBusyError",
    "DeadlockError",
    "DetachedLoadError",
    "ForeignKeyViolationError",
    "HeroRepoError",
    "InvalidCursorError",
    "InvalidDataError",
    "InvalidFilterError",
    "InvalidLoadError",
    "LazyLoadError",
    "LoadError",
    "LockTimeoutError",
    "MissingTenantError",
    "MultipleResultsError",
    "NotFoundError",
    "NotNullViolationError",
    "PoolTimeoutError",
    "ReadOnlyTransactionError",
    "RetriesExhaustedError",
    "SerializationError",
    "StatementTimeoutError",
    "TenantError",
    "TenantMismatchError",
    "TransactionError",
    "TransientError",
    "UniqueViolationError",
]


class HeroRepoError(Exception):
    """Base class of every error herorepo raises.

    .. versionadded:: 0.1.0
    """


class ConfigurationError(HeroRepoError):
    """A URL, driver, engine setting or model cannot be used; raised when the object is built."""


class NotFoundError(HeroRepoError, LookupError):
    """No row matched a primary key or criteria.

    Attributes:
        model: The model class name, e.g. ``"Hero"``.
        ident: The primary key that was asked for, or ``None`` for a search by criteria.
    """

    def __init__(self, message: str, *, model: str, ident: Any = None) -> None:
        super().__init__(message)
        self.model = model
        self.ident = ident


class MultipleResultsError(HeroRepoError):
    """A read that expects at most one row matched several."""


class InvalidDataError(HeroRepoError, ValueError):
    """Data given to create or update does not fit the model (unknown field, invalid value)."""


class InvalidFilterError(HeroRepoError, ValueError):
    """A filter, operator, value or sort key is not allowed or does not fit the field's type."""


class InvalidCursorError(HeroRepoError, ValueError):
    """A pagination cursor is not one herorepo made for this query."""


class LoadError(HeroRepoError):
    """Base class of eager-loading errors."""


class LazyLoadError(LoadError):
    """A relationship that was not eagerly loaded was touched.

    Lazy loading would run SQL implicitly inside an attribute access, which async code cannot do.
    """


class DetachedLoadError(LazyLoadError, DetachedInstanceError):
    """A relationship that was not loaded was touched after its unit of work ended.

    Also SQLAlchemy's ``DetachedInstanceError``, which it replaces with a message that says how
    to load the relationship.

    .. versionadded:: 0.1.0
    """

    code = None  # type: ignore[assignment]  # no link to SQLAlchemy's page: the message is ours


class InvalidLoadError(LoadError, ValueError):
    """A load spec names something that is not a relationship of the model."""


class TenantError(HeroRepoError):
    """Base class of the errors of tenant scoping (:class:`~herorepo.TenantScope`)."""


class MissingTenantError(TenantError):
    """A model scoped to a tenant was used where no tenant is set (fail closed)."""


class TenantMismatchError(TenantError):
    """A write would put a row in another tenant, or touch another tenant's row."""


class TransactionError(HeroRepoError):
    """A unit of work was used wrongly, or its failed transaction must be rolled back first."""


class ReadOnlyTransactionError(TransactionError):
    """A unit of work opened with ``read_only=True`` (or a replica) was asked to write.

    .. versionadded:: 0.1.0
    """


class AfterCommitError(HeroRepoError):
    """The transaction committed, but one or more ``on_commit`` callbacks raised.

    Every callback ran; the data is saved. ``__cause__`` is the first callback's error.

    Attributes:
        errors: What each failed callback raised, in order.

    .. versionadded:: 0.1.0
    """

    def __init__(self, errors: list[Exception], total: int) -> None:
        first = errors[0]
        super().__init__(
            f"The unit of work committed; {len(errors)} of {total} on_commit callbacks failed, "
            f"the first with {type(first).__name__}: {first}. The data is saved: do not run "
            "the work again, repeat or compensate the failed side effects instead."
        )
        self.errors = errors


class ConflictError(HeroRepoError):
    """An integrity constraint failed: the statement did not happen.

    Attributes:
        constraint: The constraint name, where the driver reports it.
        table: The table, where the driver reports it.
        column: The column, where the driver reports it.
    """

    kind = "Integrity constraint"

    def __init__(
        self,
        message: str | None = None,
        *,
        constraint: str | None = None,
        table: str | None = None,
        column: str | None = None,
    ) -> None:
        self.constraint = constraint
        self.table = table
        self.column = column
        super().__init__(message or self._describe())

    def _describe(self) -> str:
        where = [
            f"{label} {value!r}"
            for label, value in (
                ("constraint", self.constraint),
                ("table", self.table),
                ("column", self.column),
            )
            if value
        ]
        suffix = f" ({', '.join(where)})" if where else ""
        return f"{self.kind} violated{suffix}. {self.hint}"

    hint = "The transaction was not committed; roll it back before using the session again."


class UniqueViolationError(ConflictError):
    """A unique constraint or primary key already holds the value."""

    kind = "Unique constraint"
    hint = "A row with the same value already exists; use another value or update that row."


class ForeignKeyViolationError(ConflictError):
    """A foreign key points to no row, or a row still referenced was deleted."""

    kind = "Foreign key constraint"
    hint = "The referenced row does not exist, or the row is still referenced by another one."


class NotNullViolationError(ConflictError):
    """A NOT NULL column was given no value."""

    kind = "NOT NULL constraint"
    hint = "Give the column a value."


class CheckViolationError(ConflictError):
    """A CHECK constraint rejected the row."""

    kind = "CHECK constraint"
    hint = "The row does not satisfy the constraint's condition."


class TransientError(HeroRepoError):
    """The transaction lost a race with another one and was rolled back; retry it whole.

    :meth:`Database.run <herorepo.Database.run>` retries a unit of work on these.
    """

    hint = "Run the whole unit of work again (Database.run() does that for you)."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(
            message or f"{self.__doc__.splitlines()[0] if self.__doc__ else ''} {self.hint}"
        )


class DeadlockError(TransientError):
    """The database chose this transaction as a deadlock victim and rolled it back."""


class SerializationError(TransientError):
    """PostgreSQL could not serialize this transaction with concurrent ones."""


class LockTimeoutError(TransientError):
    """A row lock was not granted in time; the whole transaction is rolled back."""


class DatabaseBusyError(TransientError):
    """SQLite: another connection held the database lock past the busy timeout."""


class RetriesExhaustedError(HeroRepoError):
    """A retried unit of work failed with a transient error on every attempt.

    Attributes:
        attempts: How many times the work ran.
        last_error: The transient error of the last attempt (also ``__cause__``).
    """

    def __init__(self, attempts: int, last_error: BaseException) -> None:
        super().__init__(
            f"The unit of work failed {attempts} times with a transient error; the last one was "
            f"{type(last_error).__name__}: {last_error}. Nothing of it was committed."
        )
        self.attempts = attempts
        self.last_error = last_error


class ConcurrentUpdateError(HeroRepoError):
    """Optimistic locking: the row was changed or deleted by someone else since it was read.

    Read the row again and re-apply the change, or tell the user that it changed.
    """

    def __init__(self, message: str | None = None) -> None:
        super().__init__(
            message
            or "The row was changed or deleted by someone else since it was read (its version "
            "column no longer matches). Read it again and re-apply the change."
        )


class ConnectionLostError(HeroRepoError):
    """The database server could not be reached, or closed the connection mid-transaction.

    The transaction did not commit. (A loss during COMMIT raises
    :class:`CommitInterruptedError`, which says what herorepo found out.) The pool discards the
    broken connection; the next unit of work reconnects.
    """


class CannotConnectError(ConnectionLostError):
    """No connection could be opened: the server is unreachable, or it refused the login.

    The message says which (no answer, connection refused, unknown user or wrong password,
    unknown database, a SQLite file that cannot be opened), never the password. Also a
    :class:`ConnectionLostError`, so code that retries on a lost connection retries on this too.

    Attributes:
        refused: The server answered and turned this login or database down (or SQLite cannot
            open the file): trying again will not help, and
            :meth:`Database.run <herorepo.Database.run>` does not. False when the server could
            not be reached, or took no connection just then (a failover, a restart, no slot).

    .. versionadded:: 0.1.0
    """

    refused: bool = False


class CommitInterruptedError(ConnectionLostError):
    """The connection was lost during COMMIT, and the transaction did not commit, or may have.

    herorepo asks the server on a new connection what became of the transaction (see
    docs/reliability.md, "Commit outcome"). When it committed, nothing is raised: the unit of
    work ends normally and its ``on_commit`` callbacks run. This error is raised otherwise:

    * ``committed is False``: the server rolled the transaction back; nothing of it was saved
      and it can never commit later. Running the work again is safe, and
      :meth:`Database.run <herorepo.Database.run>` does.
    * ``committed is None``: the server could not be asked (unreachable for the whole wait, or
      the work ran where the outcome cannot be recorded). Check the data before running the
      work again.

    Attributes:
        committed: ``False`` or ``None``, as above.
        transaction_id: PostgreSQL's id of the transaction (``pg_xact_status()`` takes it), or
            ``None``.
        marker: On MySQL and MariaDB, ``"<connection_key>:<token>"``: the transaction committed
            exactly when the row of ``herorepo_commit_markers`` with that key holds that token.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        *,
        committed: bool | None,
        detail: str,
        transaction_id: int | None = None,
        marker: str | None = None,
    ) -> None:
        if committed is False:
            outcome = "the transaction did not commit"
            advice = "nothing of it was saved, and running it again is safe"
        else:
            outcome = "whether the transaction committed is unknown"
            advice = "check the data before running it again"
        super().__init__(
            f"The connection to the database was lost during COMMIT, and {outcome} ({detail}): "
            f"{advice}."
        )
        self.committed = committed
        self.transaction_id = transaction_id
        self.marker = marker


class PoolTimeoutError(HeroRepoError, SATimeoutError):
    """No pooled connection became free within ``pool_timeout`` seconds.

    Also a ``sqlalchemy.exc.TimeoutError``. More concurrent work than ``pool_size +
    max_overflow`` connections, or connections held too long (a session left open?).
    """


class StatementTimeoutError(HeroRepoError):
    """The server cancelled a statement that ran past its time limit."""


# --- values in messages --------------------------------------------------------------------------

_SHOWING_VALUES: weakref.WeakSet[object] = weakref.WeakSet()


def show_values(dialect: object) -> None:
    """Let messages about statements on ``dialect`` (one engine's) show values."""
    _SHOWING_VALUES.add(dialect)


def values_shown(dialect: object) -> bool:
    """Whether the engine of ``dialect`` was made with ``show_values_in_errors=True``."""
    return dialect in _SHOWING_VALUES


def short_repr(value: object, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters."""
    shown = repr(value)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."
