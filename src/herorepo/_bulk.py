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
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, cast

from pydantic import BaseModel, ConfigDict, TypeAdapter, create_model
from sqlalchemy import Integer
from sqlalchemy.orm import MANYTOONE

from ._upsert import MAX_PARAMETERS

__all__ = [
    "bulk_insertable",
    "deletes_directly",
    "has_integer_autoincrement_key",
    "insert_groups",
    "rows_validator",
    "updates_directly",
]

_CONFIG_KEYS = frozenset(ConfigDict.__annotations__)


def rows_validator(model: type[BaseModel]) -> TypeAdapter[list[BaseModel]] | None:
    """A validator of a list of mappings that gives what ``model.model_validate`` would.

    ``None`` when the model has validators or serializers of its own, which the mirror would
    not run: those rows take the one-by-one path.
    """
    decorators = model.__pydantic_decorators__
    if any(
        (
            decorators.validators,
            decorators.field_validators,
            decorators.root_validators,
            decorators.model_validators,
        )
    ):
        return None
    config: dict[str, Any] = {k: v for k, v in model.model_config.items() if k in _CONFIG_KEYS}
    config["from_attributes"] = False
    fields: dict[str, Any] = {
        name: (info.annotation, info) for name, info in model.model_fields.items()
    }
    mirror = create_model(f"{model.__name__}Row", __config__=cast("ConfigDict", config), **fields)
    return TypeAdapter(list[mirror])  # type: ignore[valid-type]


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
