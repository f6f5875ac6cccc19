"""Bulk writes without objects, one concern of ``Repository``'s façade: ``insert_rows()`` and
``upsert_rows()``.

Rows go from mappings or schemas to Core executemany without an ORM object: validated into
plain dicts, checked column by column, filled by the policies, and sent in batches cut below
the drivers' parameter limits (``_bulk.executemany_batches``). They come back as nothing, or as
their primary keys in input order. Each call runs in a SAVEPOINT: all of its rows or none.
"""

from __future__ import annotations

import builtins
from collections.abc import Collection, Iterable, Mapping, Sequence
from operator import methodcaller
from typing import Any, Literal, cast, overload

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import insert

from ._bulk import Batch, dict_rows_validator, executemany_batches
from ._errors import ConfigurationError, HeroRepoError, InvalidDataError
from ._model_info import invalid_values
from ._repository_base import ModelT, execute
from ._repository_reads import RepositoryReads
from ._upsert import (
    another_key_met,
    another_tenants_row,
    other_unique_keys,
    stored_keys,
    upsert_statement,
)

__all__ = ["RepositoryRows", "Returning", "Rows"]

Rows = Iterable[BaseModel | Mapping[str, Any]]
"""Rows for :meth:`~herorepo.Repository.insert_rows`: mappings of field values, or schemas."""

Returning = Literal["nothing", "keys"]
"""What a bulk write without objects returns: nothing, or the rows' primary keys."""

_RETURNING = ("nothing", "keys")


class RepositoryRows(RepositoryReads[ModelT]):
    """The bulk writes without objects of :class:`~herorepo.Repository`."""

    @overload
    async def insert_rows(
        self, rows: Rows, *, returning: Literal["nothing"] = ..., allow: Collection[str] = ()
    ) -> None: ...

    @overload
    async def insert_rows(
        self, rows: Rows, *, returning: Literal["keys"], allow: Collection[str] = ()
    ) -> builtins.list[Any]: ...

    async def insert_rows(
        self, rows: Rows, *, returning: Returning = "nothing", allow: Collection[str] = ()
    ) -> builtins.list[Any] | None:
        """Insert many rows without building objects; return nothing, or their primary keys.

        For imports and fan-out writes that do not need the objects back: the rows are checked
        as :meth:`add_many` checks them (fields, protected fields, one pydantic validation of
        the list, the value checks; the policies fill the tenant and audit columns), then sent
        with Core executemany, in a SAVEPOINT: all the rows are inserted or none is, and a
        refused row leaves the unit of work usable. Nothing enters the session.

        ``returning="nothing"`` sends ``INSERT`` through the driver's executemany. With
        ``returning="keys"``, rows that give their key need no more SQL; otherwise the batches
        are ``INSERT ... VALUES (...), (...) RETURNING <key>`` statements. MySQL without
        RETURNING (MySQL 8) reads generated keys back by a unique key the rows set (one SELECT
        per batch): the auto-increment values of one multi-row INSERT need not be consecutive.

        Args:
            rows: Mappings of field values, or schemas such as ``HeroCreate``. As for
                :meth:`create`, they may not set the primary key or the version column unless
                listed in ``allow``.
            returning: ``"nothing"``, or ``"keys"``: the primary keys in input order (a tuple
                per row for a composite key).
            allow: Protected fields that the rows may set.

        Raises:
            InvalidDataError: a row has an unknown or protected field, or an invalid value;
                nothing was sent.
            ConfigurationError: ``returning="keys"`` on MySQL without RETURNING for rows that
                neither give their key nor set a unique key; nothing was sent.
            ConflictError: the database refused a row (none of the rows is kept).

        .. versionadded:: 0.2.0
        """
        keys = _wants_keys(returning)
        checked = self._checked_rows(rows, allow)
        batches = executemany_batches(checked, self._info.defaulted, self._info.column_names)
        sources = [self._key_source(batch) for batch in batches] if keys else None
        if not batches:
            return [] if keys else None
        self._check_writable()
        async with self._guard():
            await self.session.flush()  # objects pending in the session go first, as in a flush
            async with self.session.begin_nested():
                found = await self._insert_batches(batches, sources, len(checked))
        return found if keys else None

    @overload
    async def upsert_rows(
        self,
        rows: Rows,
        *,
        conflict: Sequence[str],
        update: Sequence[str] | None = None,
        returning: Literal["nothing"] = ...,
        allow: Collection[str] = (),
    ) -> None: ...

    @overload
    async def upsert_rows(
        self,
        rows: Rows,
        *,
        conflict: Sequence[str],
        update: Sequence[str] | None = None,
        returning: Literal["keys"],
        allow: Collection[str] = (),
    ) -> builtins.list[Any]: ...

    async def upsert_rows(
        self,
        rows: Rows,
        *,
        conflict: Sequence[str],
        update: Sequence[str] | None = None,
        returning: Returning = "nothing",
        allow: Collection[str] = (),
    ) -> builtins.list[Any] | None:
        """Insert many rows, or update the rows they conflict with, without building objects.

        :meth:`upsert_many` without objects: the same statements (``INSERT ... ON CONFLICT``
        on PostgreSQL and SQLite, ``INSERT ... ON DUPLICATE KEY UPDATE`` on MySQL), sent with
        executemany, and the same policies (a row of another tenant is never changed), after
        the checks of :meth:`insert_rows`, in a SAVEPOINT. Objects of the model already in the
        session are not refreshed.

        ``returning="keys"`` reads the keys back by the ``conflict`` columns (one SELECT per
        batch), in input order: the new row's, or the existing row's. So does a call that
        could otherwise go wrong without a word: with a tenant column that is not in
        ``conflict`` (another tenant's row is left as it is, and the call refused), and when
        the rows set another unique key (one more SELECT per batch and key: a row holding it
        that is not the conflict row is refused, where MySQL's ON DUPLICATE KEY would have
        updated it).

        Args:
            rows: Mappings of field values, or schemas. Every row sets the same fields,
                including a value for each ``conflict`` column; two rows may not have the
                same ``conflict`` values.
            conflict: The columns of the unique constraint that decides "the same row".
            update: Columns to overwrite on conflict; default every field of the model (the
                ones a row leaves out take their defaults, as in :meth:`create`) except the
                primary key, ``conflict``, the tenant and the ``created_*`` audit columns.
                ``[]`` keeps an existing row as it is.
            returning: ``"nothing"`` or ``"keys"``.
            allow: Protected fields that the rows may set, beside the ``conflict`` columns.

        Raises:
            InvalidDataError: unknown fields or columns, invalid values, rows that set
                different fields, no value or the same value twice for ``conflict``.
            TenantMismatchError: a row of another tenant holds a row's ``conflict`` values.
            UniqueViolationError: a row sets another unique key that a row other than the one
                its ``conflict`` values found holds.
            ConflictError: the database refused a row. Nothing of the call is kept.

        .. versionadded:: 0.2.0
        """
        keys = _wants_keys(returning)
        names = self._info.column_names
        conflict = builtins.list(conflict)
        bad = sorted(set(conflict) - self._info.columns)
        if not conflict or bad:
            raise InvalidDataError(
                f"upsert_rows needs conflict= columns of {self._info.name}"
                + (f"; unknown: {', '.join(bad)}" if bad else "")
                + f". Its columns are: {', '.join(sorted(self._info.columns))}."
            )
        checked = self._checked_rows(rows, {*conflict, *allow})
        deleted = self._deleted_column()
        if deleted is not None:  # an upsert makes the row visible
            for row in checked:
                row.setdefault(deleted, None)
        batches = executemany_batches(checked, self._info.defaulted, names)
        if not batches:
            return [] if keys else None
        target = [names[name] for name in conflict]
        given = set(batches[0][1][0])
        if any(set(batch[0]) != given for _, batch in batches) or not set(target) <= given:
            raise InvalidDataError(
                "Every upserted row needs values for the same fields, including the conflict "
                f"columns {conflict}."
            )
        self._check_conflict_values(checked, builtins.list(conflict))  # rows hold field names
        policies = self._policies()
        owner = policies.tenant_column(self._info.mapper) if policies else None
        owner = names[owner] if owner is not None else None
        if update is None:
            kept = {*target, *(c.key for c in self._info.primary_key)}
            kept |= {names[name] for name in self._created_columns()}
            changed = sorted(given - kept - {owner})
        else:
            changed = [names.get(name, name) for name in update]
            unknown = sorted(set(changed) - given)
            if unknown:
                raise InvalidDataError(
                    f"upsert_rows cannot update {unknown}: the rows do not set them."
                )
        dialect = self._dialect().name
        table = self._info.table
        mysql = dialect in ("mysql", "mariadb")
        # A row that sets another unique key held by a row other than its conflict row says two
        # things: MySQL's ON DUPLICATE KEY may update either row, PostgreSQL and SQLite update
        # the conflict row. Each batch is checked, and the call undone, on every backend.
        others = other_unique_keys(table, target, given)
        read_back = keys or bool(others) or (owner is not None and owner not in target)
        statement = upsert_statement(dialect, table, None, target, changed, owner)
        match = [*target, owner] if owner is not None and owner not in target else target
        out: builtins.list[Any] = [None] * len(checked)
        self._check_writable()
        async with self._guard():
            await self.session.flush()
            async with self.session.begin_nested():
                for positions, batch in batches:
                    await execute(self.session, statement, batch)
                    if read_back:
                        found = await self._stored(
                            batch, match, target, keys or bool(others), mysql
                        )
                        for other in others:
                            await self._check_other_key(batch, other, found, target, mysql)
                        for position, key in zip(positions, found, strict=True):
                            out[position] = key
        return out if keys else None

    # --- steps -----------------------------------------------------------------------------------

    def _checked_rows(self, items: Rows, allow: Collection[str]) -> builtins.list[dict[str, Any]]:
        """The rows as dicts of every field, validated, filled by the policies and checked, in
        the order and with the errors of ``add_many``; fresh dicts, the caller's own."""
        given = builtins.list(items)
        if not given:
            return []
        validator = dict_rows_validator(self.model)
        rows: builtins.list[dict[str, Any]] = []
        for item in given:
            if type(item) is dict:
                rows.append(cast("dict[str, Any]", item))
            elif hasattr(type(item), "__table__"):
                raise InvalidDataError(
                    f"insert_rows() and upsert_rows() take mappings or schemas, not "
                    f"{type(item).__name__} objects: to insert objects, use add_many()."
                )
            elif isinstance(item, (BaseModel, Mapping)):
                rows.append(dict(item))  # a schema: its fields, as model_validate reads them
            else:
                raise InvalidDataError(
                    f"Cannot make a {self._info.name} row from {type(item).__name__}: pass "
                    "a mapping of field values or a pydantic/SQLModel schema."
                )
        if validator is None:  # the model validates itself: one object per row, then its values
            objects = [self._to_instance(row, allow) for row in rows]
            columns = self._info.columns
            validated = [{k: v for k, v in vars(o).items() if k in columns} for o in objects]
        else:
            self._info.check_fields(set[str]().union(*rows))
            for name in sorted(self._info.protected - set(allow)):
                if builtins.list(map(methodcaller("get", name), rows)).count(None) != len(rows):
                    self._info.check_protected([name], allow)
            if self._policies() is not None:  # the tenant and audit columns, before validation
                rows = [dict(row) for row in rows]
                self._with_insert_policies(rows)
            try:
                validated = validator.validate_python(rows)
            except PydanticValidationError as exc:
                raise InvalidDataError(invalid_values(self._info.name, exc, rows=True)) from exc
        self._value_checks().check_rows(validated)
        return validated

    def _key_source(self, batch: Batch) -> str | tuple[str, ...]:
        """How the keys of ``batch`` are learnt: ``"given"`` (in the rows), ``"ordered"``
        (RETURNING in parameter order), ``"rowid"`` (RETURNING, sorted: SQLite hands out
        ascending rowids in VALUES order), or the columns of a unique key to read them back by
        (MySQL without RETURNING). Raises ConfigurationError when there is no way."""
        first = batch[1][0]
        if all(column.key in first for column in self._info.primary_key):
            return "given"
        dialect = self._dialect()
        if dialect.insert_executemany_returning:
            if dialect.name == "sqlite" and self._info.rowid_key:
                return "rowid"
            if dialect.name == "sqlite" or (
                dialect.insert_executemany_returning_sort_by_parameter_order
            ):
                return "ordered"
        pk = frozenset(self._info.pk_names)
        names = self._info.column_names
        for unique in self._info.unique_sets:
            columns = tuple(names[name] for name in sorted(unique))
            if unique != pk and all(column in first for column in columns):
                return columns
        raise ConfigurationError(
            f"insert_rows(returning='keys') cannot learn the keys of new {self._info.name} rows "
            "here: this database has no INSERT ... RETURNING (MySQL), and the auto-increment "
            "values of one multi-row INSERT need not be consecutive (MySQL 8 interleaves them "
            "with other inserts). Give the keys in the rows, set the columns of a unique key "
            "(the keys are then read back by them), use returning='nothing', or add_many() "
            "(one INSERT per row)."
        )

    async def _insert_batches(
        self,
        batches: Sequence[Batch],
        sources: Sequence[str | tuple[str, ...]] | None,
        count: int,
    ) -> builtins.list[Any]:
        statement = insert(self._info.table)
        pk = [str(column.key) for column in self._info.primary_key]
        out: builtins.list[Any] = [None] * count if sources is not None else []
        for number, (positions, batch) in enumerate(batches):
            source = sources[number] if sources is not None else None
            if source in ("ordered", "rowid"):
                returning = statement.returning(
                    *self._info.primary_key, sort_by_parameter_order=source == "ordered"
                )
                result = await execute(
                    self.session,
                    returning,
                    batch,
                    execution_options={"insertmanyvalues_page_size": len(batch)},
                )
                found = [tuple(row) for row in result]
                if source == "rowid":
                    found.sort()
            else:
                await execute(self.session, statement, batch)
                if source is None:
                    continue
                if source == "given":
                    found = [tuple(row[column] for column in pk) for row in batch]
                else:
                    unique = tuple(source)
                    found = await self._stored(batch, unique, unique, True, False)
                    found = [(key,) if len(pk) == 1 else key for key in found]
            for position, key in zip(positions, found, strict=True):
                out[position] = key[0] if len(pk) == 1 else key
        return out

    async def _stored(
        self,
        batch: Sequence[dict[str, Any]],
        match: Sequence[str],
        target: Sequence[str],
        keys: bool,
        mysql: bool,
    ) -> builtins.list[Any]:
        """The primary keys (or ``None`` s, without ``keys``) of the stored rows whose ``match``
        columns hold the values of ``batch``'s rows, in its order; raises for a row not found.

        A Core query, which no policy filters: ``match`` holds the tenant column when there is
        one. On MySQL, text that a case-insensitive collation took for an existing value
        (``"ABC"`` for ``"abc"``) is matched case-insensitively, as the server matched it.
        """
        wanted = [tuple(row[name] for name in match) for row in batch]
        table = self._info.table
        width = len(match)
        result = await execute(self.session, stored_keys(table, match, wanted, keys))
        found: dict[tuple[Any, ...], Any] = {}
        for row in result:
            values = tuple(row)
            key = values[width:]
            found[values[:width]] = (key[0] if len(key) == 1 else key) if keys else None
        missing = [key for key in wanted if key not in found]
        if missing and mysql:
            folded = {_fold(key): value for key, value in found.items()}
            for key in missing:
                if _fold(key) in folded:
                    found[key] = folded[_fold(key)]
            missing = [key for key in missing if key not in found]
        if missing:
            raise await self._why_missing(match, target, missing)
        return [found[key] for key in wanted]

    async def _check_other_key(
        self,
        batch: Sequence[dict[str, Any]],
        other: Sequence[str],
        found: Sequence[Any],
        target: Sequence[str],
        mysql: bool,
    ) -> None:
        """Raise when a row of ``batch`` holds ``other``'s values in a stored row that is not
        the row its ``conflict`` values found (``found``, their keys): MySQL may have updated
        that one."""
        wanted = [tuple(row[name] for name in other) for row in batch]
        table = self._info.table
        result = await execute(self.session, stored_keys(table, other, wanted, True))
        width = len(other)
        fold = _fold if mysql else _same
        holders: dict[tuple[Any, ...], Any] = {}
        for row in result:
            values = tuple(row)
            key = values[width:]
            holders[fold(values[:width])] = key[0] if len(key) == 1 else key
        for given, key in zip(wanted, found, strict=True):
            holder = holders.get(fold(given), key)
            if holder != key:
                raise another_key_met(table.name, target)

    async def _why_missing(
        self, match: Sequence[str], target: Sequence[str], missing: Sequence[tuple[Any, ...]]
    ) -> HeroRepoError:
        if builtins.list(match) != builtins.list(target):  # rows of another tenant hold them?
            probe = stored_keys(
                self._info.table, target, [key[: len(target)] for key in missing], False
            )
            if (await execute(self.session, probe)).first() is not None:
                return another_tenants_row(self._info.name, target)
        return another_key_met(self._info.table.name, target)

    def _check_conflict_values(self, rows: Sequence[dict[str, Any]], target: Sequence[str]) -> None:
        seen: dict[tuple[Any, ...], int] = {}
        for position, row in enumerate(rows):
            key = tuple(row[name] for name in target)
            if None in key:
                raise InvalidDataError(
                    f"upsert_rows needs a value for each conflict column {builtins.list(target)} "
                    f"in every row; item {position} has none."
                )
            first = seen.setdefault(key, position)
            if first != position:
                raise InvalidDataError(
                    f"Items {first} and {position} have the same conflict values "
                    f"({', '.join(target)}): upsert each row once."
                )


def _wants_keys(returning: object) -> bool:
    if returning not in _RETURNING:
        raise ConfigurationError(f"returning must be 'nothing' or 'keys', got {returning!r}.")
    return returning == "keys"


def _same(key: tuple[Any, ...]) -> tuple[Any, ...]:
    return key


def _fold(key: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(v.casefold().rstrip(" ") if isinstance(v, str) else v for v in key)
