"""Filters and sort keys from the outside world, parsed at the edge into SQLAlchemy expressions.

A :class:`FilterSet` declares which fields may be filtered (and with which operators) and which
may be sorted. It parses query parameters such as
``name__icontains=dead&age__ge=30&order_by=-age,name&limit=20`` into a :class:`FilterQuery`
whose ``where`` holds ordinary SQLAlchemy expressions built from the model's columns. Names and
operators are looked up in the declaration, never put into SQL; values are validated against
the field's type and sent as bound parameters.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import TypeAdapter
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import ColumnElement, Integer, String, inspect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlmodel import SQLModel

from ._errors import ConfigurationError, InvalidFilterError
from ._pagination import SortKey, parse_sort
from ._values import integer_range

__all__ = ["FilterQuery", "FilterSet"]

ModelT = TypeVar("ModelT", bound=SQLModel)

COMPARISON = ("eq", "ne", "lt", "le", "gt", "ge", "in", "not_in", "isnull")
TEXT = ("contains", "icontains", "startswith", "istartswith")
OPERATORS = COMPARISON + TEXT
_ALIASES = {"lte": "le", "gte": "ge", "nin": "not_in", "is_null": "isnull"}
_RESERVED = ("order_by", "limit", "offset", "after", "before")
MAX_LIST_VALUES = 500


# --- case handling that behaves the same on every backend -----------------------------------


class casefold(FunctionElement[str]):
    """Unicode lower-casing: ``lower()`` on PostgreSQL and MySQL, Python's on SQLite.

    SQLite's own ``lower()`` folds ASCII only; herorepo registers ``herorepo_casefold`` on every
    SQLite connection it opens.
    """

    type = String()
    inherit_cache = True
    name = "casefold"


@compiles(casefold)
def _casefold_default(element: casefold, compiler: SQLCompiler, **kw: Any) -> str:
    return f"lower({compiler.process(element.clauses, **kw)})"


@compiles(casefold, "sqlite")
def _casefold_sqlite(element: casefold, compiler: SQLCompiler, **kw: Any) -> str:
    return f"herorepo_casefold({compiler.process(element.clauses, **kw)})"


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def text_match(column: Any, value: str, *, prefix: bool, ignore_case: bool) -> ColumnElement[bool]:
    """``column`` contains (or starts with) ``value``; wildcards in ``value`` match literally.

    Case-sensitive matching is binary on every backend (MySQL's default collations and SQLite's
    LIKE ignore ASCII case on their own); case-insensitive matching folds Unicode case.
    """
    pattern = _escape_like(value) + "%"
    if not prefix:
        pattern = "%" + pattern
    if ignore_case:
        return casefold(column).like(casefold(pattern), escape="\\")
    return _BinaryLike(column, pattern)


class _BinaryLike(FunctionElement[bool]):
    inherit_cache = True
    name = "binary_like"


@compiles(_BinaryLike)
def _binary_like_default(element: _BinaryLike, compiler: SQLCompiler, **kw: Any) -> str:
    column, pattern = list(element.clauses)
    return f"{compiler.process(column, **kw)} LIKE {compiler.process(pattern, **kw)} ESCAPE '\\'"


@compiles(_BinaryLike, "mysql")
@compiles(_BinaryLike, "mariadb")
def _binary_like_mysql(element: _BinaryLike, compiler: SQLCompiler, **kw: Any) -> str:
    column, pattern = list(element.clauses)
    return (
        f"{compiler.process(column, **kw)} LIKE BINARY {compiler.process(pattern, **kw)} "
        "ESCAPE '\\\\'"
    )


@compiles(_BinaryLike, "sqlite")
def _binary_like_sqlite(element: _BinaryLike, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLite's LIKE ignores ASCII case; GLOB is case-sensitive but has its own wildcards, so the
    # pattern is matched through herorepo_like, a Python function registered per connection.
    column, pattern = list(element.clauses)
    return f"herorepo_like({compiler.process(pattern, **kw)}, {compiler.process(column, **kw)})"


def sqlite_like(pattern: str | None, value: str | None) -> bool | None:
    """Case-sensitive LIKE with ``\\`` as escape, for SQLite connections."""
    if pattern is None or value is None:
        return None
    return _like_matches(pattern, value)


def _like_matches(pattern: str, value: str) -> bool:
    # Translate to a regular expression once per call; patterns here are short.
    import re

    out: list[str] = []
    escaped = False
    for char in pattern:
        if escaped:
            out.append(re.escape(char))
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "%":
            out.append(".*")
        elif char == "_":
            out.append(".")
        else:
            out.append(re.escape(char))
    return re.fullmatch("".join(out), value, flags=re.DOTALL) is not None


def sqlite_casefold(value: str | None) -> str | None:
    return None if value is None else value.lower()


# --- declarations and parsing ---------------------------------------------------------------


@dataclass(frozen=True)
class FilterQuery:
    """What a :class:`FilterSet` made of a request's parameters.

    Attributes:
        where: SQLAlchemy conditions, for ``repository.list(*query.where, ...)``.
        order_by: Sort keys (``"-age"`` style), for ``order_by=`` of pages and lists.
        limit: The page size asked for (bounded by the set's ``max_limit``), or its default.
        offset: Rows to skip, when given.
        after: A keyset cursor (a page's ``next_cursor``), when given: the page after it.
        before: A keyset cursor (a page's ``previous_cursor``), when given: the page before it.

    .. versionadded:: 0.1.0
    """

    where: tuple[ColumnElement[bool], ...]
    order_by: tuple[SortKey, ...]
    limit: int
    offset: int | None = None
    after: str | None = None
    before: str | None = None

    @property
    def order_by_names(self) -> list[str]:
        """The sort keys as ``"-age"`` style strings."""
        return [str(k) for k in self.order_by]


_BUILDERS: dict[str, Callable[[Any, Any], ColumnElement[bool]]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
    "in": lambda column, values: column.in_(values),
    "not_in": lambda column, values: column.not_in(values),
    "isnull": lambda column, flag: column.is_(None) if flag else column.is_not(None),
    "contains": lambda c, v: text_match(c, v, prefix=False, ignore_case=False),
    "icontains": lambda c, v: text_match(c, v, prefix=False, ignore_case=True),
    "startswith": lambda c, v: text_match(c, v, prefix=True, ignore_case=False),
    "istartswith": lambda c, v: text_match(c, v, prefix=True, ignore_case=True),
}


class FilterSet(Generic[ModelT]):
    """An allow-list of filterable and sortable fields of one model.

    ::

        hero_filters = FilterSet(
            Hero,
            filters={"name": ["eq", "icontains"], "age": ["eq", "lt", "le", "gt", "ge"]},
            sort=["name", "age"],
        )
        query = hero_filters.parse({"age__ge": "30", "order_by": "-age"})
        heroes = await repository.list(*query.where, order_by=query.order_by)

    Args:
        model: The table model.
        filters: Field name to allowed operators (see ``OPERATORS``), or ``"*"`` for every
            operator that fits the field (text operators only on text fields).
        sort: Fields that may appear in ``order_by``.
        default_limit: Page size when the request gives none (default 50, or ``max_limit``).
        max_limit: Largest page size a request may ask for.

    Raises:
        ConfigurationError: a field is not a column, or an operator is unknown.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        model: type[ModelT],
        *,
        filters: Mapping[str, Iterable[str] | str],
        sort: Iterable[str] = (),
        default_limit: int | None = None,
        max_limit: int = 500,
    ) -> None:
        mapper = inspect(model)
        self.model = model
        self._mapper = mapper
        columns = set(mapper.column_attrs.keys())
        self._ops: dict[str, frozenset[str]] = {}
        self._adapters: dict[str, TypeAdapter[Any]] = {}
        for field, ops in filters.items():
            if field not in columns or field not in model.model_fields:
                raise ConfigurationError(f"FilterSet: {model.__name__} has no column {field!r}.")
            is_text = _is_text(model, field)
            wanted = (OPERATORS if is_text else COMPARISON) if ops == "*" else tuple(ops)
            unknown = [op for op in wanted if op not in OPERATORS]
            if unknown:
                raise ConfigurationError(
                    f"FilterSet: unknown operator(s) {unknown} for {field!r}; "
                    f"known: {', '.join(OPERATORS)}."
                )
            self._ops[field] = frozenset(wanted)
            self._adapters[field] = TypeAdapter(_non_optional(model, field))
        self._sortable = frozenset(sort)
        bad_sort = sorted(self._sortable - columns)
        if bad_sort:
            raise ConfigurationError(f"FilterSet: {model.__name__} has no column {bad_sort}.")
        if default_limit is None:
            default_limit = min(50, max_limit)
        if not (1 <= default_limit <= max_limit):
            raise ConfigurationError("FilterSet: need 1 <= default_limit <= max_limit.")
        self.default_limit = default_limit
        self.max_limit = max_limit

    @property
    def sortable(self) -> frozenset[str]:
        """The fields ``order_by`` may name."""
        return self._sortable

    @property
    def allowed(self) -> dict[str, list[str]]:
        """Filterable fields and their operators, for documentation and error messages."""
        return {field: sorted(ops) for field, ops in sorted(self._ops.items())}

    def parse(self, params: Mapping[str, str | Sequence[str]]) -> FilterQuery:
        """Parse query parameters into conditions, sort keys and paging.

        Keys are ``field`` (equality) or ``field__operator``; ``order_by`` is a comma-separated
        list of fields, ``-`` for descending; ``limit``, ``offset``, ``after`` and ``before``
        page (``after`` and ``before`` together are refused).

        Raises:
            InvalidFilterError: a field, operator, value or sort key is not allowed or invalid.
        """
        where: list[ColumnElement[bool]] = []
        order_by: list[SortKey] = []
        limit = self.default_limit
        offset: int | None = None
        after: str | None = None
        before: str | None = None
        for key, raw in params.items():
            values = [raw] if isinstance(raw, str) else list(raw)
            if key == "order_by":
                order_by = parse_sort(",".join(values), self._mapper, allowed=self._sortable)
            elif key == "limit":
                limit = _bounded_int("limit", values, 1, self.max_limit)
            elif key == "offset":
                offset = _bounded_int("offset", values, 0, None)
            elif key == "after":
                after = values[-1] if values else None
            elif key == "before":
                before = values[-1] if values else None
            else:
                where.append(self._condition(key, values))
        if after is not None and before is not None:
            raise InvalidFilterError(
                "Pass after= (the next page) or before= (the previous page), not both."
            )
        return FilterQuery(tuple(where), tuple(order_by), limit, offset, after, before)

    def _condition(self, key: str, values: list[str]) -> ColumnElement[bool]:
        field, _, op = key.partition("__")
        op = _ALIASES.get(op, op) or "eq"
        if field not in self._ops:
            raise InvalidFilterError(
                f"Cannot filter {self.model.__name__} by {_shown(field)}. Filterable fields: "
                f"{', '.join(sorted(self._ops)) or '(none)'}."
            )
        if op not in self._ops[field]:
            raise InvalidFilterError(
                f"The operator {_shown(op)} is not allowed on {field!r}. "
                f"Allowed: {', '.join(sorted(self._ops[field]))}."
            )
        column = getattr(self.model, field)
        return _BUILDERS[op](column, self._value(field, op, values))

    def _value(self, field: str, op: str, values: list[str]) -> Any:
        if op == "isnull":
            return _flag(field, values)
        if op in ("in", "not_in"):
            items = [item for value in values for item in value.split(",") if item != ""]
            if not items or len(items) > MAX_LIST_VALUES:
                raise InvalidFilterError(
                    f"{field}__{op} takes 1 to {MAX_LIST_VALUES} comma-separated values."
                )
            return [self._coerce(field, item) for item in items]
        if len(values) != 1:
            raise InvalidFilterError(f"{field}__{op} takes one value, got {len(values)}.")
        if op in TEXT:
            return _storable_text(field, values[0])
        return self._coerce(field, values[0])

    def _coerce(self, field: str, value: str) -> Any:
        try:
            coerced = self._adapters[field].validate_python(_storable_text(field, value))
        except PydanticValidationError as exc:
            reason = exc.errors()[0]["msg"]
            raise InvalidFilterError(f"Invalid value for {field!r}: {reason}.") from None
        type_ = getattr(self.model, field).type
        if (
            isinstance(coerced, int)
            and not isinstance(coerced, bool)
            and isinstance(type_, Integer)
        ):
            low, high, name = integer_range(type_)
            if not low <= coerced <= high:
                raise InvalidFilterError(
                    f"Invalid value for {field!r}: outside the range of its {name} column "
                    f"({low} to {high})."
                )
        return coerced


def _storable_text(field: str, text: str) -> str:
    """Refuse text no column can hold, before it meets a driver: a lone surrogate cannot be
    encoded (SQLite and MySQL raise UnicodeEncodeError), and NUL ends the text for SQLite's
    LIKE, so that ``icontains`` would match every row."""
    if "\x00" in text or any("\ud800" <= char <= "\udfff" for char in text):
        raise InvalidFilterError(
            f"Invalid value for {field!r}: it contains a NUL character or a lone surrogate, "
            "which no column holds."
        )
    return text


def _is_text(model: type[SQLModel], field: str) -> bool:
    return _non_optional(model, field) is str


def _non_optional(model: type[SQLModel], field: str) -> Any:
    annotation = model.model_fields[field].annotation
    args = getattr(annotation, "__args__", None)
    if args and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return annotation


def _bounded_int(name: str, values: list[str], low: int, high: int | None) -> int:
    text = values[-1] if values else ""
    # isdigit() alone admits "²" and other digits int() refuses; only ASCII digits are numbers here
    if not (text.isascii() and text.isdigit()) or len(text) > 12:
        raise InvalidFilterError(f"{name} must be a whole number, got {_shown(text)}.")
    number = int(text)
    if number < low or (high is not None and number > high):
        upper = f" and {high}" if high is not None else " or more"
        raise InvalidFilterError(f"{name} must be between {low}{upper}, got {number}.")
    return number


def _flag(field: str, values: list[str]) -> bool:
    text = (values[-1] if values else "").lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise InvalidFilterError(f"{field}__isnull takes true or false, got {_shown(text)}.")


def _shown(text: str) -> str:
    """Quote user text for a message, cut short so that a message stays readable."""
    return repr(text if len(text) <= 40 else text[:40] + "...")
