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
     │   └─ InvalidLoadError       a load spec names no relationship of the model
     ├─ ConflictError              an integrity constraint failed
     │   ├─ UniqueViolationError   unique constraint or primary key
     │   ├─ ForeignKeyViolationError
     │   ├─ NotNullViolationError
     │   └─ CheckViolationError
     └─ TransactionError           a unit of work used wrongly, or its transaction failed earlier

Integrity violations are recognised from the driver's structured codes (PostgreSQL SQLSTATE, MySQL
errno, SQLite extended result codes), so the same violation raises the same class on aiosqlite,
asyncpg and aiomysql. Constraint, table and column names are read from the driver where it reports
them. Row values never appear in a message: they may be personal data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.engine import ExceptionContext

__all__ = [
    "CheckViolationError",
    "ConfigurationError",
    "ConflictError",
    "ForeignKeyViolationError",
    "HeroRepoError",
    "InvalidCursorError",
    "InvalidDataError",
    "InvalidFilterError",
    "InvalidLoadError",
    "LazyLoadError",
    "LoadError",
    "MultipleResultsError",
    "NotFoundError",
    "NotNullViolationError",
    "TransactionError",
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


class InvalidLoadError(LoadError, ValueError):
    """A load spec names something that is not a relationship of the model."""


class TransactionError(HeroRepoError):
    """A unit of work was used wrongly, or its failed transaction must be rolled back first."""


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


# --- translation ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Violation:
    error: type[ConflictError]
    constraint: str | None = None
    table: str | None = None
    column: str | None = None


_PG_SQLSTATE: dict[str, type[ConflictError]] = {
    "23505": UniqueViolationError,
    "23503": ForeignKeyViolationError,
    "23502": NotNullViolationError,
    "23514": CheckViolationError,
}

_MYSQL_ERRNO: dict[int, type[ConflictError]] = {
    1062: UniqueViolationError,
    1586: UniqueViolationError,
    1216: ForeignKeyViolationError,
    1217: ForeignKeyViolationError,
    1451: ForeignKeyViolationError,
    1452: ForeignKeyViolationError,
    1048: NotNullViolationError,
    1364: NotNullViolationError,
    3819: CheckViolationError,  # MySQL 8
    4025: CheckViolationError,  # MariaDB
}

_SQLITE_NAMES: dict[str, type[ConflictError]] = {
    "SQLITE_CONSTRAINT_UNIQUE": UniqueViolationError,
    "SQLITE_CONSTRAINT_PRIMARYKEY": UniqueViolationError,
    "SQLITE_CONSTRAINT_FOREIGNKEY": ForeignKeyViolationError,
    "SQLITE_CONSTRAINT_NOTNULL": NotNullViolationError,
    "SQLITE_CONSTRAINT_CHECK": CheckViolationError,
}
# Python 3.10's sqlite3 has no sqlite_errorname; SQLite's own message prefixes are stable.
_SQLITE_PREFIXES: dict[str, type[ConflictError]] = {
    "UNIQUE constraint failed": UniqueViolationError,
    "FOREIGN KEY constraint failed": ForeignKeyViolationError,
    "NOT NULL constraint failed": NotNullViolationError,
    "CHECK constraint failed": CheckViolationError,
}

_MYSQL_KEY = re.compile(r"for key '([^']+)'")
_MYSQL_FK = re.compile(r"\(`[^`]*`\.`([^`]+)`, CONSTRAINT `([^`]+)` FOREIGN KEY \(`([^`]+)`")
_MYSQL_COLUMN = re.compile(r"(?:Column|Field) '([^']+)'")
_MYSQL_CHECK = re.compile(
    r"(?:CONSTRAINT `([^`]+)` failed for `[^`]*`\.`([^`]+)`|constraint '([^']+)')"
)


def _from_postgres(orig: BaseException) -> _Violation | None:
    error = _PG_SQLSTATE.get(str(getattr(orig, "sqlstate", None) or ""))
    if error is None:
        return None
    # asyncpg's own exception, with the structured fields, is the adapter's cause.
    native = orig.__cause__ if orig.__cause__ is not None else orig
    return _Violation(
        error,
        constraint=getattr(native, "constraint_name", None),
        table=getattr(native, "table_name", None),
        column=getattr(native, "column_name", None),
    )


def _from_mysql(orig: BaseException) -> _Violation | None:
    args = getattr(orig, "args", ())
    if not args or not isinstance(args[0], int):
        return None
    error = _MYSQL_ERRNO.get(args[0])
    if error is None:
        return None
    message = str(args[1]) if len(args) > 1 else ""
    if error is UniqueViolationError:
        key = _MYSQL_KEY.search(message)
        name = key.group(1) if key else None
        table, _, constraint = (name or "").rpartition(".")
        return _Violation(error, constraint=constraint or None, table=table or None)
    if error is ForeignKeyViolationError:
        fk = _MYSQL_FK.search(message)
        if fk:
            return _Violation(error, table=fk.group(1), constraint=fk.group(2), column=fk.group(3))
        return _Violation(error)
    if error is NotNullViolationError:
        column = _MYSQL_COLUMN.search(message)
        return _Violation(error, column=column.group(1) if column else None)
    check = _MYSQL_CHECK.search(message)
    if check:
        return _Violation(error, constraint=check.group(1) or check.group(3), table=check.group(2))
    return _Violation(error)


def _from_sqlite(orig: BaseException) -> _Violation | None:
    message = str(orig)
    error = _SQLITE_NAMES.get(str(getattr(orig, "sqlite_errorname", "")))
    if error is None:
        error = next((e for p, e in _SQLITE_PREFIXES.items() if message.startswith(p)), None)
    if error is None:
        return None
    detail = message.partition(": ")[2]
    if error is CheckViolationError:
        return _Violation(error, constraint=detail or None)
    first = detail.split(",")[0].strip()
    table, _, column = first.rpartition(".")
    return _Violation(error, table=table or None, column=column or None)


_BY_DIALECT = {"postgresql": _from_postgres, "mysql": _from_mysql, "sqlite": _from_sqlite}


def classify(dialect_name: str, orig: BaseException) -> ConflictError | None:
    """Return the herorepo error for a driver exception, or ``None`` if we cannot name it."""
    reader = _BY_DIALECT.get("mysql" if dialect_name == "mariadb" else dialect_name)
    violation = reader(orig) if reader else None
    if violation is None:
        return None
    return violation.error(
        constraint=violation.constraint, table=violation.table, column=violation.column
    )


def translate_driver_error(context: ExceptionContext) -> None:
    """``handle_error`` hook: raise the herorepo error for a driver error we can name.

    Installed on every engine herorepo builds, so that a flush, a commit and a user's own
    ``session.exec()`` all raise the same classes.  SQLAlchemy chains the driver's exception as
    ``__cause__``.
    """
    error = classify(context.dialect.name, context.original_exception)
    if error is not None:
        raise error
