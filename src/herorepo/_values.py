"""Refuse values that a backend would store as something other than what was written.

Databases change some values silently: MySQL rounds ``1.5`` to ``2`` in a plain ``NUMERIC``
column and drops microseconds from a plain ``DATETIME``; PostgreSQL rounds decimals to the
column's scale; SQLite turns ``NaN`` into ``NULL`` and drops time zones. herorepo checks every
value it writes against the column type *before* any SQL is sent, and raises
:class:`~herorepo.InvalidDataError` that names the field, the problem and the fix. What is not
refused comes back exactly as written (numerically equal, for decimals).

Checks depend on the column type and the backend, are built once per model and backend, and
skip ``NULL`` and types herorepo cannot reason about (custom ``TypeDecorator`` s, enums).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, time
from datetime import timezone as dt_timezone
from decimal import Decimal
from operator import methodcaller
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Float, Integer, Numeric, String, Time
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import InstanceState, Mapper, Session
from sqlalchemy.orm.base import instance_state
from sqlalchemy.sql.type_api import TypeDecorator, TypeEngine
from sqlalchemy.types import BigInteger, Double, SmallInteger
from sqlmodel.sql import sqltypes as sqlmodel_types
from sqlmodel.sql.sqltypes import AutoString

from ._errors import InvalidDataError, short_repr, values_shown

__all__ = ["ValueChecks", "check_before_flush", "value_checks"]

Problem = str | None
Check = Callable[[Any], Problem]
QuickCheck = Callable[[list[Any]], bool]
"""Whether a whole column of values passes its :data:`Check` for sure (``False``: check each)."""

# SQLModel's UTC datetime type, where this SQLModel version has it.
_UTCDateTime: type[TypeDecorator[Any]] | None = getattr(sqlmodel_types, "UTCDateTime", None)

_NUL = (
    "contains a NUL character (\\x00), which PostgreSQL cannot store; herorepo refuses it on "
    "every backend so that code behaves the same everywhere. Remove it, or store bytes instead"
)


class ValueChecks:
    """The checks for one model on one backend, by attribute name."""

    def __init__(
        self,
        model_name: str,
        checks: Mapping[str, Check],
        *,
        show: bool,
        quick: Mapping[str, QuickCheck] | None = None,
    ) -> None:
        self.model_name = model_name
        self.checks = dict(checks)
        self.show = show  # values in messages: EngineConfig(show_values_in_errors=True)
        self.quick = dict(quick or {})

    def check(self, values: Mapping[str, Any]) -> None:
        """Raise InvalidDataError for the first value in ``values`` that would not survive."""
        checks = self.checks
        for key, value in values.items():
            if value is None:
                continue
            check = checks.get(key)
            if check is not None:
                problem = check(value)
                if problem is not None:
                    self._refuse(key, value, problem)

    def check_instance(self, state: Mapping[str, Any]) -> None:
        """Check every checked column of one object, given its ``__dict__``."""
        for key, check in self.checks.items():
            value = state.get(key)
            if value is not None:
                problem = check(value)
                if problem is not None:
                    self._refuse(key, value, problem)

    def check_rows(self, rows: Sequence[dict[str, Any]]) -> None:
        """:meth:`check_instance` of every row, and the same first refusal, column by column:
        a text or integer column whose values are all plainly fine passes with a few C-level
        calls for the whole column (bulk writes of many rows)."""
        slow: dict[str, Check] = {}
        for key, check in self.checks.items():
            values: list[Any] = list(map(methodcaller("get", key), rows))
            if values.count(None) == len(values):
                continue
            quick = self.quick.get(key)
            if quick is None or not quick(values):
                slow[key] = check
        if not slow:
            return
        for row in rows:
            for key, check in slow.items():
                value = row.get(key)
                if value is not None:
                    problem = check(value)
                    if problem is not None:
                        self._refuse(key, value, problem)

    def _refuse(self, key: str, value: Any, problem: str) -> None:
        shown = f" = {short_repr(value)}" if self.show else ""
        raise InvalidDataError(
            f"{self.model_name}.{key}{shown} cannot be stored exactly: it {problem}."
        )


_CACHE: dict[tuple[Mapper[Any], str, bool, bool], ValueChecks] = {}


def value_checks(mapper: Mapper[Any], dialect: Dialect) -> ValueChecks:
    """The (cached) checks for ``mapper``'s columns on ``dialect``."""
    show = values_shown(dialect)
    key = (mapper, dialect.name, bool(getattr(dialect, "is_mariadb", False)), show)
    found = _CACHE.get(key)
    if found is None:
        checks: dict[str, Check] = {}
        quick: dict[str, QuickCheck] = {}
        for prop in mapper.column_attrs:
            column = prop.columns[0]
            if isinstance(column, Column):
                check = _check_for(column.type, dialect)
                if check is not None:
                    checks[prop.key] = check
                    fast = _quick_for(column.type, dialect)
                    if fast is not None:
                        quick[prop.key] = fast
        found = _CACHE[key] = ValueChecks(mapper.class_.__name__, checks, show=show, quick=quick)
    return found


def _check_for(declared: TypeEngine[Any], dialect: Dialect) -> Check | None:
    type_ = declared.dialect_impl(dialect)
    backend = "mysql" if dialect.name in ("mysql", "mariadb") else dialect.name
    if isinstance(type_, TypeDecorator):
        underneath = type_.load_dialect_impl(dialect)
        if isinstance(type_, AutoString):  # SQLModel's str columns: a VARCHAR underneath
            type_ = underneath
        elif _UTCDateTime is not None and isinstance(type_, _UTCDateTime):
            return _utc_datetime_check(backend, getattr(underneath, "fsp", None))
        else:
            return None  # its own conversion decides what is stored
    if isinstance(type_, String):
        if getattr(type_, "enums", None):
            return None
        return _text_check(type_.length)
    if isinstance(type_, Integer):
        return _integer_check(type_)
    if isinstance(type_, Float):
        return None if type_.asdecimal else _float_check(type_, backend)
    if isinstance(type_, Numeric):
        return _decimal_check(type_, backend)
    if isinstance(type_, DateTime):
        return _datetime_check(bool(type_.timezone), backend, getattr(type_, "fsp", None))
    if isinstance(type_, Time):
        return _time_check(bool(type_.timezone), backend, getattr(type_, "fsp", None))
    if isinstance(type_, JSON):
        jsonb = type(type_).__name__ == "JSONB"
        mariadb = bool(getattr(dialect, "is_mariadb", False))
        mysql_json = backend == "mysql" and not mariadb
        # MariaDB's JSON_VALID (its JSON columns' CHECK) refuses more than 31 nested containers.
        containers = _MARIADB_JSON_CONTAINERS if mariadb else _MAX_DEPTH
        sqlite = backend == "sqlite"

        def check(value: Any) -> Problem:
            if sqlite:
                problem = _sqlite_json_number_problem(value)
                if problem is not None:
                    return problem
            return _json_problem(value, jsonb=jsonb, mysql_json=mysql_json, containers=containers)

        return check
    return None


# --- text and numbers ----------------------------------------------------------------------------


def _text_problem(value: str, length: int | None) -> Problem:
    if "\x00" in value:
        return _NUL
    if length is not None and len(value) > length:
        return (
            f"is {len(value)} characters long and the column holds {length}; shorten it "
            "(SQLite would store it whole, the servers would refuse it)"
        )
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "contains a lone surrogate, which is not valid UTF-8 text"
    return None


def _text_check(length: int | None) -> Check:
    limit = length if length is not None else math.inf

    def check(value: Any) -> Problem:
        # The common case (short ASCII text) costs three C calls and no Python frame.
        if type(value) is str and value.isascii() and len(value) <= limit and "\x00" not in value:
            return None
        return _text_problem(value, length) if isinstance(value, str) else None

    return check


def _quick_for(declared: TypeEngine[Any], dialect: Dialect) -> QuickCheck | None:
    """A whole-column pass for the text and integer columns that :func:`_check_for` checks."""
    type_ = declared.dialect_impl(dialect)
    if isinstance(type_, AutoString):
        type_ = type_.load_dialect_impl(dialect)
    elif isinstance(type_, TypeDecorator):
        return None
    if isinstance(type_, String) and not getattr(type_, "enums", None):
        return _quick_text(type_.length)
    if isinstance(type_, Integer):
        low, high, _name = integer_range(type_)
        return _quick_integers(low, high)
    return None


def _quick_text(length: int | None) -> QuickCheck:
    def quick(values: list[Any]) -> bool:
        if None in values:
            values = [v for v in values if v is not None]
        if not values:
            return True
        if set(map(type, values)) != {str}:
            return False
        joined = "".join(values)
        if "\x00" in joined:
            return False
        if not joined.isascii():
            try:
                joined.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate: the row by row check names it
                return False
        return length is None or max(map(len, values)) <= length

    return quick


def _quick_integers(low: int, high: int) -> QuickCheck:
    def quick(values: list[Any]) -> bool:
        if None in values:
            values = [v for v in values if v is not None]
        if not values:
            return True
        if not set(map(type, values)) <= {int, bool}:
            return False
        return bool(low <= min(values) and max(values) <= high)

    return quick


_INT_BITS = ((BigInteger, 64), (SmallInteger, 16))


def integer_range(type_: Integer) -> tuple[int, int, str]:
    """The lowest and highest value of an integer column type, and the type's SQL name."""
    bits = next((size for kind, size in _INT_BITS if isinstance(type_, kind)), 32)
    name = {16: "SMALLINT", 32: "INTEGER", 64: "BIGINT"}[bits]
    if getattr(type_, "unsigned", False):
        return 0, 2**bits - 1, name
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1, name


def _integer_check(type_: Integer) -> Check:
    low, high, name = integer_range(type_)

    def check(value: Any) -> Problem:
        if isinstance(value, int) and not low <= value <= high:
            return (
                f"is outside the range of {name} ({low} to {high}); use a wider column "
                "(BigInteger) or a Numeric one"
            )
        return None

    return check


_FLOAT32_MAX = 3.4028234663852886e38
_FLOAT32_MIN_NORMAL = 1.1754943508222875e-38


def _is_single_precision(type_: Float[Any], backend: str) -> bool:
    if isinstance(type_, Double) or backend == "sqlite":
        return False
    precision = type_.precision
    if backend == "mysql":
        return precision is None or precision <= 24
    return (precision is not None and precision <= 24) or type(type_).__name__ == "REAL"


def _float_check(type_: Float[Any], backend: str) -> Check:
    single = _is_single_precision(type_, backend)

    def check(value: Any) -> Problem:
        if not isinstance(value, float):
            return None
        if not math.isfinite(value):
            return (
                "is not a finite number; SQLite would store NULL and MySQL refuses it. "
                "Store None, or a sentinel value"
            )
        if single and value != _as_single(value, backend):
            return (
                "needs more precision than the column's single-precision FLOAT keeps; "
                "declare it sa_type=Double to store it exactly"
            )
        return None

    return check


def _as_single(value: float, backend: str) -> float:
    if abs(value) > _FLOAT32_MAX or (value != 0 and abs(value) < _FLOAT32_MIN_NORMAL):
        return math.nan  # out of range: never equal
    if backend == "mysql":
        return float(f"{value:.6g}")  # MySQL returns FLOAT values with 6 significant digits
    packed: float = struct.unpack("f", struct.pack("f", value))[0]
    return packed


# MySQL's DECIMAL without arguments is DECIMAL(10, 0); SQLite keeps NUMERIC as a double and
# SQLAlchemy reads it back with 10 decimal places when the column names no scale.
_MYSQL_DEFAULT_NUMERIC = (10, 0)
_SQLITE_DIGITS = 15
_SQLITE_DEFAULT_SCALE = 10


def _decimal_check(type_: Numeric[Any], backend: str) -> Check:
    precision, scale = type_.precision, type_.scale
    if backend == "mysql" and precision is None:
        precision, scale = _MYSQL_DEFAULT_NUMERIC
    if scale is None and precision is not None:
        scale = 0
    declared = f"NUMERIC({precision}, {scale})" if precision is not None else "NUMERIC"

    def check(value: Any) -> Problem:
        if not isinstance(value, Decimal):
            return None
        if not value.is_finite():
            return "is not a finite number, which MySQL and SQLite cannot store; store None"
        if value.is_zero():
            return None
        _sign, digits, exponent = value.normalize().as_tuple()
        assert isinstance(exponent, int)
        places = max(0, -exponent)
        whole = max(0, len(digits) + exponent)
        if scale is not None and places > scale:
            return (
                f"has {places} decimal places and the {declared} column keeps {scale}, so it "
                "would be rounded; round it yourself (value.quantize(...)) or widen the column"
            )
        if precision is not None and scale is not None and whole > precision - scale:
            return (
                f"has {whole} digits before the point and the {declared} column holds "
                f"{precision - scale}; widen the column"
            )
        if backend == "sqlite":
            if len(digits) > _SQLITE_DIGITS:
                return (
                    f"has {len(digits)} significant digits and SQLite keeps NUMERIC as a "
                    f"double ({_SQLITE_DIGITS} digits); store it as text or as an integer of "
                    "the smallest unit"
                )
            if scale is None and places > _SQLITE_DEFAULT_SCALE:
                return (
                    f"has {places} decimal places and SQLite reads NUMERIC back with "
                    f"{_SQLITE_DEFAULT_SCALE}; give the column a scale, Numeric(p, s)"
                )
        return None

    return check


# --- dates and times -----------------------------------------------------------------------------


def _zone_problem(aware: bool, timezone: bool, backend: str) -> Problem:
    if timezone and backend != "postgresql":
        return (
            "goes to a DateTime(timezone=True) column, and this backend has no time-zone "
            "type; declare the column DateTime() and store naive UTC values"
        )
    if aware and not timezone:
        return (
            "has a time zone and the column stores naive values; convert it with "
            "value.astimezone(timezone.utc).replace(tzinfo=None), or declare the column "
            "DateTime(timezone=True) (PostgreSQL)"
        )
    if timezone and not aware:
        return (
            "has no time zone and the column stores aware values; attach one, e.g. "
            "value.replace(tzinfo=timezone.utc)"
        )
    return None


def _fraction_problem(microsecond: int, backend: str, fsp: int | None) -> Problem:
    if backend != "mysql" or microsecond == 0:
        return None
    digits = fsp or 0
    if microsecond % 10 ** (6 - digits) == 0:
        return None
    return (
        f"has microseconds and the MySQL column keeps {digits} fractional digits, so they would "
        'be dropped; declare sa_type=DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql") '
        "or round the value"
    )


def _utc_range_problem(value: datetime) -> Problem:
    # Stored as UTC: 0001-01-01 00:00 at UTC+5, say, is before year 1 in UTC.
    try:
        value.astimezone(dt_timezone.utc)
    except OverflowError:
        return (
            "is out of range once converted to UTC, which the database stores (the years 1 to "
            "9999); give a later or earlier instant"
        )
    return None


def _datetime_check(timezone: bool, backend: str, fsp: int | None) -> Check:
    def check(value: Any) -> Problem:
        if not isinstance(value, datetime):
            return None
        aware = value.tzinfo is not None and value.utcoffset() is not None
        return (
            _zone_problem(aware, timezone, backend)
            or (_utc_range_problem(value) if aware else None)
            or _fraction_problem(value.microsecond, backend, fsp)
        )

    return check


def _utc_datetime_check(backend: str, fsp: int | None) -> Check:
    # SQLModel (0.0.50+) maps `datetime` fields to UTCDateTime: aware values, stored as UTC.
    def check(value: Any) -> Problem:
        if not isinstance(value, datetime):
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            return (
                "has no time zone, and SQLModel stores datetime fields as UTC instants; attach "
                "one (value.replace(tzinfo=timezone.utc)) or annotate the field NaiveDatetime"
            )
        return _utc_range_problem(value) or _fraction_problem(value.microsecond, backend, fsp)

    return check


def _time_check(timezone: bool, backend: str, fsp: int | None) -> Check:
    def check(value: Any) -> Problem:
        if not isinstance(value, time):
            return None
        aware = value.tzinfo is not None
        if aware != timezone:
            return _zone_problem(aware, timezone, backend)
        return _fraction_problem(value.microsecond, backend, fsp)

    return check


# --- JSON ----------------------------------------------------------------------------------------

_MAX_DEPTH = 100
_MARIADB_JSON_CONTAINERS = 31


def _sqlite_json_number_problem(value: Any) -> Problem:
    # A JSON column has NUMERIC affinity in SQLite: a bare number is stored as a number, so
    # 1.0 comes back as 1 and an integer past 64 bits as a float. Nested numbers are safe.
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        return "is an integer beyond 64 bits, which SQLite keeps as a float in a JSON column"
    if isinstance(value, float) and value.is_integer():
        return (
            "is a whole float, which SQLite's JSON column gives back as an int; store it "
            "inside a list or object, or as an int"
        )
    return None


def _json_problem(
    value: Any, *, jsonb: bool, mysql_json: bool, containers: int = _MAX_DEPTH, depth: int = 0
) -> Problem:
    if depth > _MAX_DEPTH:
        return f"nests deeper than {_MAX_DEPTH} levels"
    if depth >= containers and isinstance(value, (list, dict)):
        return (
            f"nests more than {containers} arrays and objects, the most MariaDB's JSON "
            "columns accept"
        )
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        if mysql_json and not -(2**63) <= value < 2**64:
            return "holds an integer beyond 64 bits, which MySQL's JSON keeps as a float"
        return None
    if isinstance(value, float):
        if not math.isfinite(value):
            return "holds NaN or infinity, which JSON cannot represent"
        if jsonb and "e" in repr(value):
            return (
                "holds a float written with an exponent (such as 1e+20), which JSONB normalises "
                "into a number written out in full (it would come back as an int); use JSON, or "
                "a string"
            )
        return None
    if isinstance(value, str):
        return _text_problem(value, None)
    if isinstance(value, list):
        items: list[Any] = value  # pyright: ignore[reportUnknownVariableType]
        for item in items:
            problem = _json_problem(
                item, jsonb=jsonb, mysql_json=mysql_json, containers=containers, depth=depth + 1
            )
            if problem is not None:
                return problem
        return None
    if isinstance(value, dict):
        members: dict[Any, Any] = value  # pyright: ignore[reportUnknownVariableType]
        for key, item in members.items():
            if not isinstance(key, str):
                return (
                    f"has a key of type {type(key).__name__}, and JSON keys are strings; it would "
                    "come back changed"
                )
            problem = _text_problem(key, None) or _json_problem(
                item, jsonb=jsonb, mysql_json=mysql_json, containers=containers, depth=depth + 1
            )
            if problem is not None:
                return problem
        return None
    if isinstance(value, tuple):
        return "holds a tuple, which would come back as a list; pass a list"
    return f"holds a {type(value).__name__}, which is not a JSON value"


# --- the flush hook (wired up in _session.py) ----------------------------------------------------


def check_before_flush(session: Session, _context: Any, _instances: Any) -> None:
    """Check new objects whole, and changed attributes of dirty ones, before any INSERT."""
    found: dict[Mapper[Any], ValueChecks] = {}

    def checks_for(state: InstanceState[Any]) -> ValueChecks:
        mapper = state.mapper
        checks = found.get(mapper)
        if checks is None:
            checks = found[mapper] = value_checks(mapper, session.get_bind(mapper).dialect)
        return checks

    for obj in session.new:
        state = instance_state(obj)
        checks_for(state).check_instance(state.dict)
    for obj in session.dirty:
        state = instance_state(obj)
        changed = state.committed_state
        if changed:
            checks_for(state).check({key: state.dict.get(key) for key in changed})
