"""Creating tables with text that compares the same way on every backend.

MySQL and MariaDB compare text with the database's default collation, which is case- and
accent-insensitive (``utf8mb4_general_ci``): ``'Alpha' = 'alpha'``, ``'resume' = 'résumé'``,
even ``'😀' = '😁'``, so a unique column refuses distinct values and ``find(name=...)`` returns
another row. PostgreSQL and SQLite compare text exactly. Tables herorepo creates on MySQL get
``utf8mb4_bin`` (exact comparison, code-point order, as SQLite) unless the table sets its own
``mysql_collate`` / ``mysql_charset``; a column's own ``collation=`` still wins.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, MetaData, Table

__all__ = ["MYSQL_CHARSET", "MYSQL_COLLATION", "create_tables"]

MYSQL_CHARSET = "utf8mb4"
MYSQL_COLLATION = "utf8mb4_bin"

_OWN_TEXT_OPTIONS = ("collate", "charset", "character_set", "default_charset")


def create_tables(
    connection: Connection, metadata: MetaData, tables: Sequence[Table] | None = None
) -> None:
    """``metadata.create_all()``, with exact text comparison on MySQL and MariaDB."""
    if connection.dialect.name not in ("mysql", "mariadb"):
        metadata.create_all(connection, tables=tables)
        return
    given: list[Table] = []
    for table in metadata.sorted_tables if tables is None else tables:
        options = table.dialect_kwargs
        if not any(f"{d}_{o}" in options for d in ("mysql", "mariadb") for o in _OWN_TEXT_OPTIONS):
            options["mysql_charset"] = MYSQL_CHARSET
            options["mysql_collate"] = MYSQL_COLLATION
            given.append(table)
    try:
        metadata.create_all(connection, tables=tables)
    finally:  # the metadata stays as the application declared it
        for table in given:
            del table.dialect_kwargs["mysql_charset"]
            del table.dialect_kwargs["mysql_collate"]
