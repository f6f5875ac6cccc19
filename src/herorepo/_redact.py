"""Take values out of the drivers' exceptions, for ``show_values_in_errors=False``.

A herorepo error's message never shows a value, but the driver's exception it is chained to (its
``__cause__``) quotes them: asyncpg's ``DETAIL:  Key (name)=(Deadpond) already exists.`` and
``Failing row contains (...)``, MariaDB's ``Duplicate entry 'Deadpond' for key ...``, the texts of
refused values (``invalid input syntax for type integer: "abc"``). A formatted traceback, which
is what logs and error trackers keep, shows the whole chain.

SQLAlchemy raises the translated error ``from`` the driver's exception itself, so the
translator (:mod:`herorepo._translate`) rewrites that exception in place before returning: same
object, same class, the codes and names code reads kept (``sqlstate``, errno, asyncpg's
``constraint_name``, ``table_name``, ``column_name``), only the text that may show values
replaced. Texts known to be free of values are kept as they are; known shapes lose their values
and keep the rest; any other text quoting something loses what it quotes.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["HIDDEN", "hide_values"]

HIDDEN = "<hidden>"

_NOTE = "(values hidden; EngineConfig(show_values_in_errors=True) shows them)"

# --- PostgreSQL (asyncpg) ------------------------------------------------------------------------

# A data exception (SQLSTATE class 22) quotes the refused value: invalid input syntax for type
# integer: "abc"; value "99999999999" is out of range for type integer; invalid byte sequence
# for encoding "UTF8": 0x00. From the first quote to the last, and byte codes.
_PG_QUOTED = re.compile(r'"[\s\S]*"')
_PG_BYTES = re.compile(r"0x[0-9a-fA-F]{2}(?: 0x[0-9a-fA-F]{2})*")
# asyncpg refusing a parameter before sending it: "invalid input for query argument $1:
# 'abc' (...)", "query argument $2 in element #0 of executemany() sequence: ...".
_ASYNCPG_ARGUMENT = re.compile(
    r"^((?:invalid input for )?query argument \$\d+(?: in element #\d+ of executemany\(\) "
    r"sequence)?): [\s\S]*$"
)


def _hide_in_postgres(error: BaseException) -> None:
    # The asyncpg dialect's exception (SQLAlchemy's emulation of a DB-API one) wraps asyncpg's
    # own as `orig` and as its cause; both are rewritten, the same way.
    native: Any = getattr(error, "orig", None) or error.__cause__
    refused_argument = False
    exc: Any
    for exc in (error, native):
        if exc is None:
            continue
        message, refused = _postgres_message(exc, native)
        refused_argument = refused_argument or refused
        if message is not None:
            exc.args = (message, *exc.args[1:])
        if getattr(exc, "detail", None):  # Key (name)=(...), Failing row contains (...)
            exc.detail = f"{HIDDEN} {_NOTE}"
        if getattr(exc, "context", None):  # where: a COPY's line quotes the value
            exc.context = HIDDEN
    if refused_argument and native is not None:
        # asyncpg chains the codec's error, which may quote the value too.
        native.__cause__ = native.__context__ = None
        native.__suppress_context__ = True


def _postgres_message(exc: BaseException, native: Any) -> tuple[str | None, bool]:
    """The text to give ``exc`` (``None``: keep its own), and whether a parameter was refused."""
    message = exc.args[0] if exc.args and isinstance(exc.args[0], str) else None
    if message is None or _NOTE in message:
        return None, False
    argument = _ASYNCPG_ARGUMENT.match(message)
    if argument is not None:  # asyncpg's own DataError (its sqlstate says 22000 too)
        cause = getattr(native, "__cause__", None)
        reason = f" ({type(cause).__name__})" if cause is not None else ""
        return f"{argument.group(1)}: {HIDDEN}{reason} {_NOTE}", True
    sqlstate = str(getattr(native, "sqlstate", None) or getattr(exc, "sqlstate", None) or "")
    if sqlstate.startswith("22"):
        hidden = _PG_BYTES.sub(HIDDEN, _PG_QUOTED.sub(f'"{HIDDEN}"', message))
        return (None if hidden == message else f"{hidden} {_NOTE}"), False
    return None, False


# --- MySQL and MariaDB (aiomysql, that is pymysql) -----------------------------------------------

# Messages that name only codes, columns, keys, constraints or tables.
_MYSQL_WITHOUT_VALUES = frozenset(
    {
        1005, 1007, 1008, 1040, 1044, 1045, 1046, 1048, 1049, 1050, 1051, 1052, 1054, 1060,
        1061, 1091, 1109, 1136, 1142, 1143, 1146, 1153, 1205, 1213, 1216, 1217, 1264, 1265,
        1305, 1317, 1364, 1406, 1451, 1452, 1792, 1927, 1969, 2003, 2005, 2006, 2013, 3024,
        3819, 4025, 4031,
    }
)  # fmt: skip
# From the first quote to the last one before what follows the value.
_MYSQL_BEFORE = (" for key ", " for column ", " at row ", " at line ")
_MYSQL_QUOTED = re.compile(r"'[\s\S]*'")


def _mysql_message(errno: int, message: str) -> str:
    if errno in _MYSQL_WITHOUT_VALUES or "'" not in message or _NOTE in message:
        return message
    # Duplicate entry '...' for key 'k'; Incorrect integer value: '...' for column `a`; ...
    # near '...' at line 1 (pymysql puts the parameters into the statement). The value may hold
    # quotes and these words too: cut at the last of them, after which only names follow.
    end = max(message.rfind(f"'{before}") for before in _MYSQL_BEFORE)
    start = message.find("'")
    if 0 <= start < end:
        return f"{message[:start]}'{HIDDEN}{message[end:]} {_NOTE}"
    quoted = "'" + HIDDEN + "'"
    return f"{_MYSQL_QUOTED.sub(quoted, message)} {_NOTE}"


def _hide_in_mysql(error: BaseException) -> None:
    args = error.args
    if len(args) >= 2 and isinstance(args[0], int) and isinstance(args[1], str):
        error.args = (args[0], _mysql_message(args[0], args[1]), *args[2:])


# -------------------------------------------------------------------------------------------------


def hide_values(dialect_name: str, error: BaseException, wrapper: BaseException | None) -> None:
    """Rewrite ``error`` (a driver's exception) in place so that its text shows no values.

    ``wrapper`` is SQLAlchemy's ``DBAPIError`` around it, whose message copied the text when
    it was made: it is made again. SQLite's messages never quote values (they name the
    constraint or the column), so its exceptions are left as they are.
    """
    if dialect_name == "postgresql":
        _hide_in_postgres(error)
    elif dialect_name in ("mysql", "mariadb"):
        _hide_in_mysql(error)
    else:
        return
    if wrapper is not None and getattr(wrapper, "orig", None) is error and wrapper.args:
        kind = type(error)
        wrapper.args = (f"({kind.__module__}.{kind.__name__}) {error}", *wrapper.args[1:])
