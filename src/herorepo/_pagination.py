"""Pages: offset pages with an optional total, and keyset (cursor) pages.

A keyset page seeks past the last row of the previous page (``WHERE (age, id) > (30, 17)`` in
effect) instead of skipping rows with OFFSET, so page 1,000 costs what page 1 costs when an index
covers the sort columns. The sort always ends with the primary key, so rows with equal sort values
are neither skipped nor repeated. NULLs sort after every value, in both directions, on every
backend (MySQL and SQLite would otherwise put them first).

A cursor is URL-safe base64 of a small JSON document: a version, a fingerprint of the model and
sort order, and the last row's sort values, followed by a keyed signature (BLAKE2b with the
Database's cursor key), so a client can neither forge nor alter one. Anything that is too long,
does not verify, decode, or hold one storable value per sort column raises
:class:`~herorepo.InvalidCursorError` before any SQL runs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from pydantic import TypeAdapter
from pydantic import ValidationError as PydanticValidationError
from pydantic_core import to_jsonable_python
from sqlalchemy import ColumnElement, and_, false, or_
from sqlalchemy.orm import InstrumentedAttribute, Mapper
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import UnaryExpression

from ._errors import ConfigurationError, InvalidCursorError, InvalidFilterError

if TYPE_CHECKING:
    from ._values import ValueChecks

__all__ = ["KeysetPage", "Page", "SortKey"]

T = TypeVar("T")

_CURSOR_VERSION = 1
_CHECKSUM_BYTES = 12
MAX_CURSOR_LENGTH = 2048
"""The longest cursor accepted: the values of a sort order fit many times over."""

CURSOR_KEYS = "herorepo.cursor_keys"
"""Where a session made by a Database keeps that Database's cursor keys (``Session.info``)."""

_MIN_KEY_BYTES = 16
# Sessions not made by a Database (an AsyncSession built by hand) sign with this process's key.
_PROCESS_KEYS = (secrets.token_bytes(32),)


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of an offset-paginated list.

    Attributes:
        items: The rows of this page.
        offset: Rows skipped before this page.
        limit: The page size asked for.
        total: Rows matching in all, when counting was asked for; otherwise ``None``.
        has_next: Whether rows follow this page. :meth:`Repository.page` knows it from the
            total with ``count=True``, and otherwise from reading one row more than ``limit``;
            ``None`` only where neither was done (a locking read, which must not lock a row
            it does not return, or a page built without it), and a short page then says
            ``False``.

    .. versionadded:: 0.1.0
    """

    items: list[T]
    offset: int
    limit: int
    total: int | None = None
    has_next: bool | None = None

    def __post_init__(self) -> None:
        if self.total is not None:
            known: bool | None = self.offset + len(self.items) < self.total
        elif self.has_next is not None:
            return
        else:
            known = None if len(self.items) == self.limit else False
        object.__setattr__(self, "has_next", known)  # frozen: the one place it is set


@dataclass(frozen=True)
class KeysetPage(Generic[T]):
    """One page of a keyset (cursor) walk, in either direction.

    Attributes:
        items: The rows of this page, in the order asked for (also when walking backwards).
        next_cursor: Pass it as ``after=`` for the next page; ``None`` on the last page.
        limit: The page size asked for.
        previous_cursor: Pass it as ``before=`` for the previous page; ``None`` on the first
            page.

    .. versionadded:: 0.1.0
    """

    items: list[T]
    next_cursor: str | None
    limit: int
    previous_cursor: str | None = None

    @property
    def has_next(self) -> bool:
        """Whether a next page exists."""
        return self.next_cursor is not None

    @property
    def has_previous(self) -> bool:
        """Whether a previous page exists."""
        return self.previous_cursor is not None


@dataclass(frozen=True)
class SortKey:
    """One column of a sort order."""

    key: str
    descending: bool = False

    def __str__(self) -> str:
        return f"-{self.key}" if self.descending else self.key


def is_named_sort(order_by: object) -> bool:
    """Whether ``order_by`` uses names (``"-age"``) or sort keys rather than SQL expressions."""
    if isinstance(order_by, (str, SortKey)):
        return True
    if isinstance(order_by, (list, tuple)):
        return any(isinstance(item, (str, SortKey)) for item in cast("Sequence[object]", order_by))
    return False


def parse_sort(
    order_by: object, mapper: Mapper[Any], *, allowed: frozenset[str] | None = None
) -> list[SortKey]:
    """Turn ``Hero.age.desc()``, ``Hero.name``, ``"-age"`` (or a sequence of them) into keys.

    Raises:
        InvalidFilterError: a key is not a column of the model, or not in ``allowed``.
    """
    if order_by is None:
        return []
    items: Sequence[object]
    if isinstance(order_by, str):
        items = [part.strip() for part in order_by.split(",") if part.strip()]
    elif isinstance(order_by, (list, tuple)):
        items = cast("Sequence[object]", order_by)
    else:
        items = [order_by]
    columns = frozenset(mapper.column_attrs.keys())
    permitted = columns if allowed is None else allowed & columns
    keys: list[SortKey] = []
    for item in items:
        key = _sort_key(item, mapper)
        if key.key not in permitted:
            raise InvalidFilterError(
                f"Cannot sort {mapper.class_.__name__} by {key.key!r}. "
                f"Sortable fields: {', '.join(sorted(permitted)) or '(none)'}."
            )
        keys.append(key)
    return keys


def _sort_key(item: object, mapper: Mapper[Any]) -> SortKey:
    if isinstance(item, SortKey):
        return item
    if isinstance(item, str):
        descending = item.startswith("-")
        return SortKey(item.lstrip("-+").strip(), descending)
    if isinstance(item, InstrumentedAttribute) and item.class_ is mapper.class_:
        return SortKey(item.key)
    if isinstance(item, UnaryExpression) and item.modifier in (operators.desc_op, operators.asc_op):
        element = item.element
        key = getattr(element, "key", None)
        if isinstance(key, str) and key in mapper.column_attrs:
            return SortKey(key, item.modifier is operators.desc_op)
    raise InvalidFilterError(
        f"{item!r} is not a sort key of {mapper.class_.__name__}: use a column such as "
        f"{mapper.class_.__name__}.id, its .desc(), or a name such as '-id'."
    )


def with_tiebreaker(
    keys: list[SortKey],
    primary_key: Sequence[str],
    unique_sets: Sequence[frozenset[str]] = (),
) -> list[SortKey]:
    """Append the primary key columns not already in the sort, ascending, unless the sort
    already names a set of NOT NULL unique columns (``unique_sets``): it is total then, and
    another column would only cost an index walk its place (MySQL sorts ``name, id`` with a
    filesort where an index on ``name`` alone reads 100 rows)."""
    present = {k.key for k in keys}
    if any(unique <= present for unique in unique_sets):
        return keys
    return keys + [SortKey(name) for name in primary_key if name not in present]


def order_clauses(
    model: type[Any], keys: Sequence[SortKey], nullable: set[str], *, reverse: bool = False
) -> list[Any]:
    """ORDER BY clauses with NULLs last in both directions, the same on every backend; with
    ``reverse``, the exact reverse of that order (NULLs first), to walk a keyset backwards."""
    clauses: list[Any] = []
    for key in keys:
        column = getattr(model, key.key)
        if key.key in nullable:
            is_null = column.is_(None)  # false (0) sorts before true (1)
            clauses.append(is_null.desc() if reverse else is_null)
        descending = key.descending is not reverse
        clauses.append(column.desc() if descending else column)  # ASC is the default
    return clauses


def seek_condition(
    model: type[Any],
    keys: Sequence[SortKey],
    values: Sequence[Any],
    nullable: set[str],
    *,
    before: bool = False,
) -> ColumnElement[bool]:
    """Rows strictly after ``values`` in the order of ``keys`` (lexicographic, NULLs last),
    or with ``before``, strictly before them."""
    alternatives: list[ColumnElement[bool]] = []
    equal_so_far: list[ColumnElement[bool]] = []
    last = len(keys) - 1
    for position, (key, value) in enumerate(zip(keys, values, strict=True)):
        column = getattr(model, key.key)
        if before:
            # NULLs are last: every value sorts before a NULL, and NULL before none.
            if value is None:
                beyond: ColumnElement[bool] = column.is_not(None)
            else:
                beyond = column > value if key.descending else column < value
        elif value is None:
            beyond = false()  # NULLs are last: nothing sorts after a NULL
        else:
            beyond = column < value if key.descending else column > value
            if key.key in nullable:
                beyond = or_(beyond, column.is_(None))
        # Each comparison costs about 10 µs to build, and and_() / or_() of one clause cost
        # as much for nothing: build only what the condition uses.
        alternatives.append(and_(*equal_so_far, beyond) if equal_so_far else beyond)
        if position < last:
            equal_so_far.append(column.is_(None) if value is None else column == value)
    if len(alternatives) == 1:
        return alternatives[0]  # a range on the one sort column already
    condition = or_(*alternatives)
    first, first_value = keys[0], values[0]
    # A redundant bound on the leading column lets every optimizer use a range scan. Before a
    # value, NULLs are out anyway; after one, only a column without NULLs can take it.
    if first_value is not None and (before or first.key not in nullable):
        column = getattr(model, first.key)
        upto = first.descending is not before  # the page lies below the value
        bound = column <= first_value if upto else column >= first_value
        condition = and_(bound, condition)
    return condition


# --- cursors -------------------------------------------------------------------------------------

_JSON_TYPES = frozenset({int, str, float, bool, type(None)})


def _jsonable(values: Sequence[Any]) -> list[Any]:
    # Keys are mostly ints and strings, which json takes as they are; pydantic's conversion
    # (dates, UUIDs, decimals) costs a few µs a cursor.
    if all(type(v) in _JSON_TYPES for v in values):
        return list(values)
    return cast("list[Any]", to_jsonable_python(list(values)))


class CursorCodec:
    """Encode and decode the cursors of one model and sort order."""

    def __init__(
        self,
        model_name: str,
        keys: Sequence[SortKey],
        adapters: Sequence[TypeAdapter[Any]],
        signing_keys: tuple[bytes, ...],
    ) -> None:
        self._keys = list(keys)
        self._adapters = list(adapters)
        self._signing_keys = signing_keys
        self._fingerprint = hashlib.blake2b(
            f"{model_name}:{','.join(map(str, keys))}".encode(), digest_size=8
        ).hexdigest()

    def encode(self, values: Sequence[Any]) -> str:
        payload = json.dumps(
            [_CURSOR_VERSION, self._fingerprint, _jsonable(values)],
            separators=(",", ":"),
            ensure_ascii=True,
        ).encode()
        token = payload + _signature(payload, self._signing_keys[0])
        return base64.urlsafe_b64encode(token).decode().rstrip("=")

    def decode(self, cursor: object, checks: ValueChecks) -> list[Any]:
        """The sort values in ``cursor``, each valid for its column and storable in it."""
        if not isinstance(cursor, str) or not cursor:
            raise self._invalid("it is not a cursor string")
        if len(cursor) > MAX_CURSOR_LENGTH:
            raise self._invalid(f"it is longer than {MAX_CURSOR_LENGTH} characters")
        try:
            token = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        except (binascii.Error, ValueError):
            raise self._invalid("it is not valid URL-safe base64") from None
        payload, signature = token[:-_CHECKSUM_BYTES], token[-_CHECKSUM_BYTES:]
        if len(token) <= _CHECKSUM_BYTES or not any(
            hmac.compare_digest(signature, _signature(payload, key)) for key in self._signing_keys
        ):
            raise self._invalid(
                "its signature does not match: it was altered, or signed with another key "
                "(cursors from another process or from before a restart verify only when every "
                "Database is given the same cursor_keys=)"
            )
        try:
            version, fingerprint, raw = json.loads(payload)
        except (ValueError, TypeError, RecursionError):
            raise self._invalid("its content is not readable") from None
        if version != _CURSOR_VERSION:
            raise self._invalid("it was made by another version of herorepo")
        if fingerprint != self._fingerprint:
            raise self._invalid(
                "it was made for another sort order or model; start again without a cursor"
            )
        if not isinstance(raw, list) or len(raw) != len(self._keys):  # pyright: ignore[reportUnknownArgumentType]
            raise self._invalid("it holds the wrong number of values")
        values: list[Any] = []
        for key, adapter, value in zip(self._keys, self._adapters, raw, strict=True):  # pyright: ignore[reportUnknownVariableType, reportUnknownArgumentType]
            if value is None:
                values.append(None)
                continue
            try:
                if type(value) not in _JSON_TYPES:  # pyright: ignore[reportUnknownArgumentType]
                    raise ValueError
                valid = adapter.validate_python(value)
                checks.check({key.key: valid})
            except (PydanticValidationError, ValueError):  # InvalidDataError is a ValueError
                raise self._invalid(f"its value for {key.key!r} does not fit the column") from None
            values.append(valid)
        return values

    @staticmethod
    def _invalid(why: str) -> InvalidCursorError:
        return InvalidCursorError(
            f"Invalid pagination cursor: {why}. Pass the next_cursor of a previous page "
            "unchanged, or leave the cursor out to start from the first page."
        )


def _signature(payload: bytes, key: bytes) -> bytes:
    return hashlib.blake2b(payload, digest_size=_CHECKSUM_BYTES, key=key).digest()


def signing_keys(keys: Sequence[str | bytes] | None) -> tuple[bytes, ...]:
    """Check the ``cursor_keys`` given to a Database; ``None`` gets a random key.

    Raises:
        ConfigurationError: no key, a key that is not text or bytes, or one shorter than 16
            bytes (easy to guess) or longer than 64 (BLAKE2b's limit).
    """
    if keys is None:
        return (secrets.token_bytes(32),)
    if isinstance(keys, (str, bytes)) or not keys:
        raise ConfigurationError(
            "cursor_keys must be a non-empty list of keys, newest first, e.g. "
            "cursor_keys=[os.environ['CURSOR_KEY']]."
        )
    checked: list[bytes] = []
    for position, key in enumerate(cast("Sequence[object]", keys)):  # checked, as if untyped
        raw = key.encode() if isinstance(key, str) else key
        if not isinstance(raw, bytes) or not _MIN_KEY_BYTES <= len(raw) <= 64:
            raise ConfigurationError(  # never the key itself
                f"cursor_keys[{position}] must be text or bytes of 16 to 64 bytes; make one with "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))'."
            )
        checked.append(raw)
    return tuple(checked)


def session_signing_keys(info: dict[str, Any]) -> tuple[bytes, ...]:
    """The cursor keys of the Database that made a session (its ``info``)."""
    keys = info.get(CURSOR_KEYS)
    return cast("tuple[bytes, ...]", keys) if keys is not None else _PROCESS_KEYS
