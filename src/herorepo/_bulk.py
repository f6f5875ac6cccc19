"""Fast paths for writes: ``add_many()`` of mappings, ``update()`` and ``delete()`` by key.

The ORM's unit of work validates each row on its own (``Model.model_validate``, about 25 µs for
a small model) and, on SQLite, sends one INSERT per row to learn its key. The fast path
validates the whole list in one pydantic call, with a model that mirrors the table model's
fields, and sends ORM bulk ``INSERT ... RETURNING`` statements that load complete objects into
the session: one statement per group of rows that set the same columns, split below the
drivers' parameter limits.

``update()`` and ``delete()`` given a key send one statement on it, instead of reading the row
first, when the ORM would do nothing more for the model (no version column, no events, no
relationship acting on delete).

``insert_rows()`` and ``upsert_rows()`` build no objects at all: rows are validated into plain
dicts (a ``TypedDict`` mirror of the model, about four times faster than validating models),
checked column by column, and sent with Core executemany in :func:`executemany_batches`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from operator import itemgetter
from typing import Annotated, Any, cast

from pydantic import BaseModel, ConfigDict, TypeAdapter, create_model
from sqlalchemy import Integer
from sqlalchemy.orm import MANYTOONE
from typing_extensions import NotRequired, Required, TypedDict

from ._upsert import MAX_PARAMETERS

__all__ = [
    "Batch",
    "bulk_insertable",
    "deletes_directly",
    "dict_rows_validator",
    "executemany_batches",
    "has_integer_autoincrement_key",
    "insert_groups",
    "rows_validator",
    "updates_directly",
]

Batch = tuple[Sequence[int], list[dict[str, Any]]]
"""Rows for one executemany call, keyed by column, and their positions in the input."""

_CONFIG_KEYS = frozenset(ConfigDict.__annotations__)


def rows_validator(model: type[BaseModel]) -> TypeAdapter[list[BaseModel]] | None:
    """A validator of a list of mappings that gives what ``model.model_validate`` would.

    ``None`` when the model has validators or serializers of its own, which the mirror would
    not run: those rows take the one-by-one path.
    """
    if _has_own_validators(model):
        return None
    config: dict[str, Any] = {k: v for k, v in model.model_config.items() if k in _CONFIG_KEYS}
    config["from_attributes"] = False
    fields: dict[str, Any] = {
        name: (info.annotation, info) for name, info in model.model_fields.items()
    }
    mirror = create_model(f"{model.__name__}Row", __config__=cast("ConfigDict", config), **fields)
    return TypeAdapter(list[mirror])  # type: ignore[valid-type]


def _has_own_validators(model: type[BaseModel]) -> bool:
    decorators = model.__pydantic_decorators__
    return any(
        (
            decorators.validators,
            decorators.field_validators,
            decorators.root_validators,
            decorators.model_validators,
        )
    )


_DICT_VALIDATORS: dict[type[BaseModel], TypeAdapter[list[dict[str, Any]]] | None] = {}


def dict_rows_validator(model: type[BaseModel]) -> TypeAdapter[list[dict[str, Any]]] | None:
    """A validator of a list of mappings into dicts of every field, with what
    ``model.model_validate`` would give them (defaults and default factories included).

    A ``TypedDict`` of the model's fields, each ``Annotated`` with its own ``FieldInfo`` (its
    constraints, default and alias), under the model's configuration. ``None`` when the model
    has validators or serializers of its own, which it would not run.
    """
    if model in _DICT_VALIDATORS:
        return _DICT_VALIDATORS[model]
    validator: TypeAdapter[list[dict[str, Any]]] | None = None
    if not _has_own_validators(model):
        fields: dict[str, Any] = {}
        for name, info in model.model_fields.items():
            annotated = Annotated[info.annotation, info]  # type: ignore[name-defined]
            fields[name] = Required[annotated] if info.is_required() else NotRequired[annotated]
        make: Any = TypedDict  # a TypedDict made at runtime, which type checkers cannot follow
        row: Any = make(f"{model.__name__}Row", fields)
        config = {k: v for k, v in model.model_config.items() if k in _CONFIG_KEYS}
        config["from_attributes"] = False
        row.__pydantic_config__ = config
        validator = TypeAdapter(list[row])  # pyright: ignore[reportInvalidTypeForm]
    _DICT_VALIDATORS[model] = validator
    return validator


def executemany_batches(
    rows: list[dict[str, Any]], defaulted: Collection[str], column_names: Mapping[str, str]
) -> list[Batch]:
    """Split validated rows (dicts of every field, owned by the caller) into executemany calls.

    As :func:`insert_groups` does, and with the same result: a ``None`` for a column with a
    default is left out, so that the default applies. The usual case, where such a column is
    ``None`` in every row or in none, is handled a column at a time (C-level calls), and the
    rows stay one run cut below MAX_PARAMETERS values; otherwise :func:`insert_groups`. Keys
    become column names.
    """
    if not rows:
        return []
    first = rows[0]
    batches: list[Batch] | None = None
    for name in [name for name in first if name in defaulted]:
        nones = list(map(itemgetter(name), rows)).count(None)
        if nones == len(rows):
            for row in rows:
                del row[name]
        elif nones:
            batches = [(positions, batch) for positions, batch in insert_groups(rows, defaulted)]
            break
    if batches is None:
        size = max(1, MAX_PARAMETERS // max(1, len(first)))
        batches = [
            (range(start, min(start + size, len(rows))), rows[start : start + size])
            for start in range(0, len(rows), size)
        ]
    renamed = {k: v for k, v in column_names.items() if k != v}
    if renamed:
        batches = [
            (positions, [{renamed.get(k, k): v for k, v in row.items()} for row in batch])
            for positions, batch in batches
        ]
    return batches


def bulk_insertable(mapper: Any) -> bool:
    """Whether the bulk INSERT path suits ``mapper``'s model.

    It leaves out inheritance (rows in several tables), version counters, and columns where
    ``None`` is a value of its own (JSON), which the path would leave to the default instead.
    """
    return (
        len(mapper.tables) == 1
        and mapper.version_id_col is None
        and not any(getattr(c.type, "should_evaluate_none", False) for c in mapper.columns)
    )


def deletes_directly(mapper: Any) -> bool:
    """Whether deleting a row of ``mapper``'s model by key needs nothing from the ORM.

    The ORM does more than DELETE when the model has a version column (it checks it), a
    relationship that acts on delete (one-to-many and many-to-many ones null out or delete
    the other side; a ``delete`` cascade deletes it), or delete events; or inheritance.
    """
    return (
        len(mapper.tables) == 1
        and mapper.version_id_col is None
        and not mapper.dispatch.before_delete
        and not mapper.dispatch.after_delete
        and all(
            rel.direction is MANYTOONE and "delete" not in rel.cascade
            for rel in mapper.relationships
        )
    )


def updates_directly(mapper: Any) -> bool:
    """Whether updating a row of ``mapper``'s model by key needs nothing from the ORM.

    The ORM does more than UPDATE when the model has a version column or update events; or
    inheritance (rows in several tables).
    """
    return (
        len(mapper.tables) == 1
        and mapper.version_id_col is None
        and not mapper.dispatch.before_update
        and not mapper.dispatch.after_update
    )


def has_integer_autoincrement_key(primary_key: Sequence[Any]) -> bool:
    """Whether the database gives new rows ascending integer keys (SQLite: rowids)."""
    return (
        len(primary_key) == 1
        and isinstance(primary_key[0].type, Integer)
        and primary_key[0].autoincrement in (True, "auto")
    )


def insert_groups(
    rows: Sequence[dict[str, Any]], defaulted: Collection[str]
) -> list[tuple[list[int], list[dict[str, Any]]]]:
    """Split ``rows`` into statements: runs of rows that set the same columns.

    A ``None`` for a column with a default is left out, as a flush leaves it out, so that the
    default applies; elsewhere ``None`` is sent as NULL, which keeps runs long. Runs keep the
    input order (so keys ascend with it, as with a flush), and carry at most MAX_PARAMETERS
    values. Returns (positions in ``rows``, rows) per statement.
    """
    statements: list[tuple[list[int], list[dict[str, Any]]]] = []
    current: frozenset[str] | None = None
    size = 0
    positions: list[int] = []
    batch: list[dict[str, Any]] = []
    for position, row in enumerate(rows):
        values = {k: v for k, v in row.items() if v is not None or k not in defaulted}
        keys = frozenset(values)
        if keys != current or len(batch) >= size:
            current, size = keys, max(1, MAX_PARAMETERS // max(1, len(keys)))
            positions, batch = [], []
            statements.append((positions, batch))
        positions.append(position)
        batch.append(values)
    return statements
