"""Translate driver errors into herorepo's exception tree, from structured codes.

Installed as a ``handle_error`` hook on every engine herorepo builds, so that a repository call,
a commit and a user's own ``session.exec()`` all raise the same classes. The tables below map
PostgreSQL SQLSTATE codes (asyncpg), MySQL/MariaDB error numbers (aiomysql) and SQLite result
codes (aiosqlite); message text is read only for details the drivers give nowhere else
(constraint and column names on MySQL and SQLite, and SQLite codes on Python 3.10). Then,
unless the engine shows values, the driver's exception loses the values in its text
(:mod:`herorepo._redact`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._errors import (
    CannotConnectError,
    CheckViolationError,
    ConflictError,
    ConnectionLostError,
    DatabaseBusyError,
    DeadlockError,
    ForeignKeyViolationError,
    HeroRepoError,
    InvalidDataError,
    LockTimeoutError,
    NotNullViolationError,
    ReadOnlyTransactionError,
    SerializationError,
    StatementTimeoutError,
    UniqueViolationError,
    values_shown,
)
from ._redact import hide_values

if TYPE_CHECKING:
    from sqlalchemy.engine import ExceptionContext


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


_PG_OPERATIONAL: dict[str, type[HeroRepoError]] = {
    "40001": SerializationError,
    "40P01": DeadlockError,
    "55P03": LockTimeoutError,  # lock_not_available (lock_timeout)
    "57014": StatementTimeoutError,  # query_canceled (statement_timeout)
    "57P01": ConnectionLostError,  # admin_shutdown, e.g. pg_terminate_backend()
    "57P02": ConnectionLostError,  # crash_shutdown
    "57P03": ConnectionLostError,  # cannot_connect_now
    "25006": ReadOnlyTransactionError,  # read_only_sql_transaction
}

_MYSQL_OPERATIONAL: dict[int, type[HeroRepoError]] = {
    1213: DeadlockError,
    1205: LockTimeoutError,  # the server rolled back only the statement; the UoW rolls back all
    1969: StatementTimeoutError,  # MariaDB max_statement_time
    3024: StatementTimeoutError,  # MySQL max_execution_time
    1927: ConnectionLostError,  # MariaDB: connection was killed
    2003: ConnectionLostError,  # cannot connect to the server
    2006: ConnectionLostError,  # server has gone away
    2013: ConnectionLostError,  # lost connection during query
    4031: ConnectionLostError,  # disconnected by the server for inactivity
    1792: ReadOnlyTransactionError,  # cannot execute statement in a READ ONLY transaction
}

_SQLITE_BUSY_NAMES = ("SQLITE_BUSY", "SQLITE_LOCKED")
_SQLITE_BUSY_TEXT = ("database is locked", "database table is locked")
_SQLITE_READONLY_TEXT = "attempt to write a readonly database"

_OPERATIONAL_HINTS: dict[type[HeroRepoError], str] = {
    ConnectionLostError: (
        "The connection to the database was lost; this transaction did not complete. "
        "The next unit of work reconnects."
    ),
    StatementTimeoutError: "The server cancelled the statement: it ran past its time limit.",
    ReadOnlyTransactionError: (
        "This transaction is read-only (a unit of work opened with read_only=True, or a "
        "replica): it cannot write or lock rows. Open the unit of work without read_only=True."
    ),
}


# A value the server refused: too long, out of range, not valid for the type.
_MYSQL_PACKET_TOO_LARGE = 1153
_MYSQL_DATA_ERRNO = frozenset({1264, 1265, 1292, 1366, 1367, 1406, 3140, _MYSQL_PACKET_TOO_LARGE})
_SQLITE_DATA_NAMES = ("SQLITE_TOOBIG", "SQLITE_MISMATCH", "SQLITE_RANGE")


def _is_data_error(dialect_name: str, orig: BaseException) -> bool:
    if dialect_name == "postgresql":
        # SQLSTATE class 22 (data exception); asyncpg's client-side DataError has no SQLSTATE.
        native = orig.__cause__
        return str(getattr(orig, "sqlstate", None) or "").startswith("22") or (
            type(native).__name__ == "DataError"
        )
    if dialect_name in ("mysql", "mariadb"):
        args: tuple[object, ...] = getattr(orig, "args", ())
        return bool(args) and args[0] in _MYSQL_DATA_ERRNO
    if dialect_name == "sqlite":
        name = str(getattr(orig, "sqlite_errorname", ""))
        return isinstance(orig, OverflowError) or name.startswith(_SQLITE_DATA_NAMES)
    return False


_MYSQL_DATA_COLUMN = re.compile(r"(?:for|in) column '([^']+)'")


def _data_error(dialect_name: str, orig: BaseException, show: bool) -> InvalidDataError:
    args: tuple[object, ...] = getattr(orig, "args", ())
    if args and args[0] == _MYSQL_PACKET_TOO_LARGE:
        return InvalidDataError(
            "The statement is larger than the server accepts in one statement "
            "(max_allowed_packet), and the server closed the connection. Store fewer or "
            "smaller values at once, or raise max_allowed_packet on the server."
        )
    if show:
        detail = str(args[1]) if len(args) > 1 and isinstance(args[0], int) else str(orig)
        detail = detail.strip().splitlines()[0] if detail.strip() else type(orig).__name__
    else:  # the drivers' texts may quote the value: say only which code and column
        detail = _data_error_code(dialect_name, orig)
        column = _MYSQL_DATA_COLUMN.search(str(args[1])) if len(args) > 1 else None
        if column is not None:
            detail += f" for the column {column.group(1)!r}"
    return InvalidDataError(
        f"The database refused a value: {detail}. Check the value against the column's type "
        "and size (herorepo's repositories check them before sending; raw statements do not)."
    )


def _data_error_code(dialect_name: str, orig: BaseException) -> str:
    if dialect_name == "postgresql":
        code = getattr(orig, "sqlstate", None)
        native = type(orig.__cause__).__name__
        return f"SQLSTATE {code}" if code else f"the driver refused it ({native})"
    if dialect_name in ("mysql", "mariadb"):
        return f"MySQL error {getattr(orig, 'args', ('?',))[0]}"
    if isinstance(orig, OverflowError):
        return "an integer beyond 64 bits"
    return f"SQLite {getattr(orig, 'sqlite_errorname', None) or type(orig).__name__}"


def _operational(dialect_name: str, orig: BaseException) -> type[HeroRepoError] | None:
    if dialect_name == "postgresql":
        return _PG_OPERATIONAL.get(str(getattr(orig, "sqlstate", None) or ""))
    if dialect_name in ("mysql", "mariadb"):
        args = getattr(orig, "args", ())
        code = args[0] if args and isinstance(args[0], int) else None
        return _MYSQL_OPERATIONAL.get(code) if code is not None else None
    if dialect_name == "sqlite":
        name = str(getattr(orig, "sqlite_errorname", ""))
        message = str(orig)
        if name.startswith(_SQLITE_BUSY_NAMES) or message.startswith(_SQLITE_BUSY_TEXT):
            return DatabaseBusyError
        if name.startswith("SQLITE_READONLY") or message.startswith(_SQLITE_READONLY_TEXT):
            return ReadOnlyTransactionError  # PRAGMA query_only, set for read_only=True
    return None


# Why a connection could not be opened, from the code the server answered the login with.
_LOGIN_REFUSED = "The database server refused the login: check the user name and password."
_NO_DATABASE = "The database named in the URL does not exist on the server: create it first."
_NO_ACCESS = "The user may not connect to the database named in the URL."
_PG_CONNECT: dict[str, str] = {
    "28000": _LOGIN_REFUSED,  # invalid_authorization_specification (no such role, pg_hba)
    "28P01": _LOGIN_REFUSED,  # invalid_password
    "3D000": _NO_DATABASE,  # invalid_catalog_name
    "42501": _NO_ACCESS,  # insufficient_privilege (CONNECT revoked)
    "53300": "The server has no connection slot left (too many connections).",
    # cannot_connect_now: starting up, shutting down, or a standby that takes no connections yet
    "57P03": "The server does not accept connections yet (starting up or shutting down).",
}
_MYSQL_CONNECT: dict[int, str] = {
    1045: _LOGIN_REFUSED,  # access denied for user
    1044: _NO_ACCESS,  # access denied to the database
    1049: _NO_DATABASE,  # unknown database
    1040: "The server has no connection slot left (too many connections).",
    2003: "Could not connect to the database server: nothing answered at the URL's host and port.",
    2005: "Could not connect to the database server: the URL's host name is unknown.",
}


def cannot_connect(dialect_name: str, orig: BaseException) -> CannotConnectError | None:
    """The error for a failure to open a connection, or ``None`` if the code is not one."""
    reason: str | None = None
    if dialect_name == "postgresql":
        reason = _PG_CONNECT.get(str(getattr(orig, "sqlstate", None) or ""))
    elif dialect_name in ("mysql", "mariadb"):
        args = getattr(orig, "args", ())
        if args and isinstance(args[0], int):
            reason = _MYSQL_CONNECT.get(args[0])
    elif dialect_name == "sqlite" and (
        str(getattr(orig, "sqlite_errorname", "")).startswith("SQLITE_CANTOPEN")
        or str(orig).startswith("unable to open database file")
    ):
        reason = (
            "SQLite cannot open the database file: check that its directory exists and can be "
            "written to."
        )
    if reason is None:
        return None
    error = CannotConnectError(reason)
    error.refused = reason in (_LOGIN_REFUSED, _NO_DATABASE, _NO_ACCESS) or dialect_name == "sqlite"
    return error


def classify(
    dialect_name: str, orig: BaseException, *, is_disconnect: bool = False, show: bool = False
) -> HeroRepoError | None:
    """Return the herorepo error for a driver exception, or ``None`` if we cannot name it."""
    reader = _BY_DIALECT.get("mysql" if dialect_name == "mariadb" else dialect_name)
    violation = reader(orig) if reader else None
    if violation is not None:
        return violation.error(
            constraint=violation.constraint, table=violation.table, column=violation.column
        )
    error = _operational(dialect_name, orig)
    if error is None and not is_disconnect and _is_data_error(dialect_name, orig):
        return _data_error(dialect_name, orig, show)
    if error is None and is_disconnect:
        error = ConnectionLostError
    if error is None:
        return None
    hint = _OPERATIONAL_HINTS.get(error)
    return error(hint) if hint else error()


def translate_driver_error(context: ExceptionContext) -> HeroRepoError | None:
    """``handle_error`` hook: return the herorepo error for a driver error we can name.

    SQLAlchemy raises what the hook returns, with the driver's exception as ``__cause__``; it
    still invalidates a disconnected connection. Returning rather than raising lets the hooks
    after this one (the unit of work's state, :mod:`herorepo._transaction`) see the error.

    Unless the engine shows values, the driver's exception then has the text that may quote
    them rewritten (:mod:`herorepo._redact`), whether or not it was translated.
    """
    original = context.original_exception
    if not isinstance(original, Exception) or isinstance(original, HeroRepoError):
        return None  # a cancellation must stay what it is; herorepo's own errors are translated
    if getattr(context, "is_pre_ping", False):
        return None  # a failed pre-ping makes the pool reconnect; it must not become an error
    error = _translate(context, original)
    if not values_shown(context.dialect):
        hide_values(context.dialect.name, original, context.sqlalchemy_exception)
    return error


def _translate(context: ExceptionContext, original: Exception) -> HeroRepoError | None:
    if context.connection is None:  # opening a connection failed
        refused = cannot_connect(context.dialect.name, original)
        if refused is not None:
            return refused
    args = getattr(original, "args", ())
    if context.dialect.name in ("mysql", "mariadb") and args[:1] == (_MYSQL_PACKET_TOO_LARGE,):
        # The server closes the connection after this error: say so, so that SQLAlchemy drops
        # it instead of sending a ROLLBACK whose "lost connection" would hide the real cause.
        context.is_disconnect = True
        return _data_error(context.dialect.name, original, show=False)
    return classify(
        context.dialect.name,
        original,
        is_disconnect=context.is_disconnect,
        show=values_shown(context.dialect),
    )
