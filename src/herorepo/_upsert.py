"""Native upsert statements: ON CONFLICT (PostgreSQL, SQLite), ON DUPLICATE KEY (MySQL)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, tuple_

from ._errors import TenantMismatchError, UniqueViolationError

if TYPE_CHECKING:
    from sqlalchemy import Select, Table
    from sqlalchemy.sql.dml import Insert

# Bind parameters per statement: below asyncpg's 32,767 and SQLite's 32,766.
MAX_PARAMETERS = 30_000


def chunks(rows: Sequence[dict[str, Any]], columns: int) -> list[Sequence[dict[str, Any]]]:
    """Split ``rows`` so that no statement carries more than ``MAX_PARAMETERS`` values."""
    size = max(1, MAX_PARAMETERS // max(1, columns))
    return [rows[i : i + size] for i in range(0, len(rows), size)]


def may_hit_another_key(table: Table, conflict: Sequence[str], given: set[str]) -> bool:
    """Whether a MySQL upsert could meet a unique key other than ``conflict``.

    MySQL's ON DUPLICATE KEY UPDATE takes any unique key that conflicts, and would update the
    row that holds it: a key whose columns the rows all set, other than ``conflict``, can do so.
    """
    return bool(other_unique_keys(table, conflict, given))


def other_unique_keys(
    table: Table, conflict: Sequence[str], given: set[str]
) -> list[tuple[str, ...]]:
    """The unique keys of ``table`` other than ``conflict`` whose columns are all ``given``."""
    target = set(conflict)
    keys = [[c.name for c in table.primary_key.columns]]
    keys += [[c.name for c in index.columns] for index in table.indexes if index.unique]
    keys += [
        [c.name for c in constraint.columns]  # type: ignore[attr-defined]
        for constraint in table.constraints
        if type(constraint).__name__ == "UniqueConstraint"
    ]
    found = [tuple(key) for key in keys if key and set(key) != target and set(key) <= given]
    return list(dict.fromkeys(found))


def stored_keys(
    table: Table, columns: Sequence[str], keys: Sequence[tuple[Any, ...]], primary_key: bool
) -> Select[Any]:
    """The rows of ``table`` whose ``columns`` hold one of ``keys``: those columns, and the
    primary key's after them with ``primary_key`` (a Core query: no policy filters it)."""
    cols = [table.c[name] for name in columns]
    wanted: Any = (
        cols[0].in_([key[0] for key in keys])
        if len(cols) == 1
        else tuple_(*cols).in_([tuple(key) for key in keys])
    )
    extra = list(table.primary_key.columns) if primary_key else []
    return select(*cols, *extra).where(wanted)


def another_key_met(table: str, conflict: Sequence[str]) -> UniqueViolationError:
    """The error for a MySQL upsert that met a unique key other than ``conflict`` (undone)."""
    return UniqueViolationError(
        f"Unique constraint violated (table {table!r}): a row conflicts with another row on a "
        f"unique key other than conflict={list(conflict)}. MySQL would have updated that row; "
        "nothing was written. Name that key in conflict=, or use other values.",
        table=table,
    )


def another_tenants_row(model: str, conflict: Sequence[str]) -> TenantMismatchError:
    """The error for an upsert whose row conflicts with a row of another tenant (left alone)."""
    return TenantMismatchError(
        f"A {model} of another tenant holds the same {', '.join(conflict)}: the upsert left it "
        "as it is. Use other values; rows of other tenants can be neither read nor changed."
    )


def upsert_statement(
    dialect_name: str,
    table: Table,
    rows: Sequence[dict[str, Any]] | None,
    conflict: Sequence[str],
    update: Sequence[str],
    owner: str | None = None,
) -> Insert:
    """INSERT ``rows``; on a conflict over ``conflict``, set ``update`` from the new row.

    With ``rows`` None, the statement takes its rows as executemany parameters.
    With ``update`` empty, a conflicting row is left as it is (insert-or-ignore).
    On MySQL the conflict target cannot be named: any unique key that conflicts counts.
    With ``owner`` (the tenant column), a conflicting row is updated only when it has the new
    row's owner: another tenant's row is left as it is.
    """
    values = list(rows) if rows is not None else None
    # The dialect modules are imported here, not at the top: importing all three costs about
    # 30 ms at `import herorepo`, and a program uses one.
    if dialect_name in ("mysql", "mariadb"):
        from sqlalchemy.dialects import mysql

        statement = mysql.insert(table)
        if values is not None:
            statement = statement.values(values)
        if update:
            new = statement.inserted
            if owner is not None:  # MySQL has no WHERE here: keep the old value for others
                same = table.c[owner] == new[owner]
                return statement.on_duplicate_key_update(
                    {name: func.if_(same, new[name], table.c[name]) for name in update}
                )
            return statement.on_duplicate_key_update({name: new[name] for name in update})
        # MySQL has no DO NOTHING; assigning a conflict column to itself changes nothing.
        return statement.on_duplicate_key_update({conflict[0]: table.c[conflict[0]]})
    if dialect_name == "postgresql":
        from sqlalchemy.dialects import postgresql

        pg = postgresql.insert(table)
        if values is not None:
            pg = pg.values(values)
        if update:
            return pg.on_conflict_do_update(
                index_elements=list(conflict),
                set_={name: pg.excluded[name] for name in update},
                where=table.c[owner] == pg.excluded[owner] if owner is not None else None,
            )
        return pg.on_conflict_do_nothing(index_elements=list(conflict))
    from sqlalchemy.dialects import sqlite

    lite = sqlite.insert(table)
    if values is not None:
        lite = lite.values(values)
    if update:
        return lite.on_conflict_do_update(
            index_elements=list(conflict),
            set_={name: lite.excluded[name] for name in update},
            where=table.c[owner] == lite.excluded[owner] if owner is not None else None,
        )
    return lite.on_conflict_do_nothing(index_elements=list(conflict))
