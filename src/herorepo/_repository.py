"""``Repository[ModelT]``: typed async CRUD for one SQLModel table model on one session.

The class is a façade split by concern: the writes here, the bulk writes without objects in
``_repository_rows.py``, the reads and pages in ``_repository_reads.py``, the shared state, views
and steps in ``_repository_base.py``.
"""

from __future__ import annotations

import builtins
from collections.abc import (
    Collection,
    Iterable,
    Mapping,
    Sequence,
)
from typing import (
    Any,
    NoReturn,
)

from pydantic import BaseModel
from sqlalchemy import delete as sa_delete
from sqlalchemy import func, inspect, select, tuple_
from sqlalchemy import update as sa_update
from sqlalchemy.orm.attributes import set_committed_value

from ._errors import (
    ConcurrentUpdateError,
    ConfigurationError,
    HeroRepoError,
    InvalidDataError,
    UniqueViolationError,
)
from ._repository_base import (
    ModelT,
    Where,
    clauses,
    execute,
    rowcount,
)
from ._repository_rows import RepositoryRows
from ._transaction import session_state
from ._upsert import (
    another_key_met,
    another_tenants_row,
    chunks,
    may_hit_another_key,
    other_unique_keys,
    upsert_statement,
)

__all__ = ["Repository"]


class Repository(RepositoryRows[ModelT]):
    """Typed async CRUD for one table model, working on one session.

    Make one for a model directly, ``Repository(session, Hero)`` (a ``Repository[Hero]``), or
    subclass it to add queries, ``class HeroRepository(Repository[Hero])``, and build it with
    ``HeroRepository(session)``.

    Repositories flush but never commit: the transaction belongs to the
    :class:`~herorepo.UnitOfWork` (or to whoever owns the session). A flush sends the SQL, so
    primary keys and server defaults are loaded and constraint errors surface at the call that
    caused them; nothing is permanent until the transaction commits.

    Reads never load relationships implicitly. Name the ones you need with ``load=``; touching
    one that was not loaded raises :class:`~herorepo.LazyLoadError`.

    .. versionadded:: 0.1.0
    """

    async def create(
        self, data: ModelT | BaseModel | Mapping[str, Any], *, allow: Collection[str] = ()
    ) -> ModelT:
        """Insert one row and return it with its primary key and server defaults loaded.

        Args:
            data: A model instance, a schema such as ``HeroCreate`` (validated with
                ``Hero.model_validate``), or a mapping of field values. A schema or mapping may
                not set the primary key or the version column (mass assignment) unless they
                are listed in ``allow``; a model instance is trusted as built.
            allow: Protected fields that ``data`` may set.

        Raises:
            InvalidDataError: a field is unknown to the model, or a value fails validation.
            ConflictError: the database refused the row (a ``UniqueViolationError``,
                ``ForeignKeyViolationError``, ``NotNullViolationError`` or ``CheckViolationError``).
        """
        instance = self._to_instance(data, allow)
        self._check_writable()
        async with self._guard():
            self.session.add(instance)
            await self._flush_new([instance])
            await self._load_unloaded([instance])
        return instance

    async def add_many(
        self,
        items: Iterable[ModelT | BaseModel | Mapping[str, Any]],
        *,
        allow: Collection[str] = (),
    ) -> builtins.list[ModelT]:
        """Insert many rows and return them, keys and server defaults loaded, in input order.

        Mappings and schemas (the usual input from an API) take a fast path where the backend
        has ``INSERT ... RETURNING`` (PostgreSQL, SQLite, MariaDB): the list is validated in one
        pass, as ``model_validate`` would, and inserted with one statement per group of rows
        that set the same columns (split below the drivers' parameter limits), which loads
        the objects into the session. Model instances (which are the objects inserted), models
        with validators of their own and MySQL without RETURNING go through one flush instead.

        Raises:
            InvalidDataError: an item has an unknown field or an invalid value.
            ConflictError: the database refused a row (none of the batch is kept).
        """
        items = builtins.list(items)
        if not items:
            return []
        rows = self._validated_rows(items, allow)
        if rows is not None:
            sort = self._bulk_insert_order(rows)
            if sort is not None:
                self._check_writable()
                async with self._guard():
                    return await self._bulk_insert(rows, sort)
        instances = [self._to_instance(item, allow) for item in items]
        self._check_writable()
        async with self._guard():
            self.session.add_all(instances)
            await self._flush_new(instances)
            await self._load_unloaded(instances)
        return instances

    async def update(
        self,
        target: ModelT | Any,
        data: BaseModel | Mapping[str, Any],
        *,
        allow: Collection[str] = (),
    ) -> ModelT:
        """Change the fields given in ``data`` and return the updated object.

        Partial update: a schema contributes only the fields that were set
        (``model_dump(exclude_unset=True)``); a mapping contributes all its keys. Values are
        validated against the model's field types first.

        Given a key of an object not in the session, on a backend with ``UPDATE ... RETURNING``
        (PostgreSQL, SQLite, MariaDB) and a model without a version column or update events,
        this is one ``UPDATE ... RETURNING`` that loads the updated row. Otherwise the row is
        read first and changed through the session.

        Args:
            target: The object, or its primary key.
            data: A schema such as ``HeroUpdate``, or a mapping of field values. It may not set
                the primary key or the version column unless they are listed in ``allow``.
            allow: Protected fields that ``data`` may set.

        Raises:
            NotFoundError: ``target`` is a key with no row.
            InvalidDataError: a field is unknown, protected, or has an invalid value.
            ConcurrentUpdateError: the model has a version column and the row changed since
                it was read.
            ConflictError: the database refused the change.
        """
        values = self._update_values(data, allow)
        if values:
            values = self._with_update_policies(values)  # refused here, before any change
        if values and self._direct(target, "update_returning"):
            statement = (
                sa_update(self.model)
                .where(*self._key_clauses(target))
                .values(values)
                .returning(self.model)
            )
            self._check_writable()
            self._value_checks().check(values)
            async with self._guard():
                result = await execute(
                    self.session, statement, execution_options={"synchronize_session": False}
                )
                found = result.scalars().one_or_none()
            if found is None:
                raise self._not_found(target)
            return found
        instance = await self._instance(target)
        self._check_writable()
        self._value_checks().check(values)
        async with self._guard():
            instance.sqlmodel_update(values)
            await self.session.flush()
            await self._load_unloaded([instance])
        if instance is not target and isinstance(target, self.model):
            # An object from an earlier unit of work: its row was changed through this
            # session's copy; give the caller's object the row as it is now, as committed state
            # (nothing for a later session to write again).
            for key in self._info.columns & instance.__dict__.keys():
                set_committed_value(target, key, instance.__dict__[key])
        return instance

    async def delete(self, target: ModelT | Any) -> None:
        """Delete one row, given the object or its primary key.

        Given a key of an object not in the session, this is one ``DELETE ... WHERE`` on the
        key, when the model lets the database do all of it: no version column, no
        relationship whose ORM cascade acts on delete (only many-to-one ones without a
        ``delete`` cascade), no delete events. Otherwise the row is read first and deleted
        through the session (a SELECT, then the DELETE).

        Raises:
            NotFoundError: ``target`` is a key with no row.
            ForeignKeyViolationError: other rows still reference it.
        """
        deleted = self._deleted_column()
        if deleted is not None:  # soft delete: the row stays, with its deletion time
            instance = await self._instance(target)
            self._check_writable()
            async with self._guard():
                setattr(instance, deleted, self._deletion_time(deleted))
                await self.session.flush()
            return
        await self._hard_delete(target)

    async def purge(self, target: ModelT | Any) -> None:
        """Delete one row for real, soft-deleted or not (with a :class:`SoftDelete` policy).

        Raises:
            NotFoundError: ``target`` is a key with no row.
            ForeignKeyViolationError: other rows still reference it.
        """
        await self.with_deleted()._hard_delete(target)

    async def restore(self, target: ModelT | Any) -> ModelT:
        """Undo the soft delete of one row, and return it.

        Raises:
            NotFoundError: ``target`` is a key with no row.
            ConfigurationError: the model has no :class:`SoftDelete` column.
        """
        deleted = self._deleted_column()
        if deleted is None:
            raise ConfigurationError(
                f"{self._info.name} is not soft-deleted: restore() needs a SoftDelete policy "
                "on the Database and its column on the model."
            )
        instance = await self.with_deleted()._instance(target)
        self._check_writable()
        async with self._guard():
            setattr(instance, deleted, None)
            await self.session.flush()
        return instance

    async def update_many(self, *where: Where, values: Mapping[str, Any], **equal: Any) -> int:
        """Set ``values`` on every row matching the criteria with one UPDATE; no row is loaded.

        Criteria are required: pass ``sqlalchemy.true()`` to update every row on purpose.
        Objects of this model already in the session get the new values too.

        Returns:
            How many rows matched.

        Raises:
            InvalidDataError: no criteria, an unknown field, or an invalid value.
        """
        conditions = [*clauses(where), *self._equality(equal)]
        self._require_criteria("update_many", conditions)
        checked = self._update_values(values, ())
        if not checked:
            raise InvalidDataError("update_many needs at least one value to set.")
        checked = self._with_update_policies(checked)
        self._value_checks().check(checked)
        statement = sa_update(self.model).where(*conditions).values(checked)
        self._check_writable()
        async with self._guard():
            result = await execute(self.session, statement)
        return rowcount(result)

    async def delete_many(self, *where: Where, **equal: Any) -> int:
        """Delete every row matching the criteria with one DELETE; no row is loaded.

        Criteria are required: pass ``sqlalchemy.true()`` to delete every row on purpose.

        Returns:
            How many rows were deleted.

        Raises:
            InvalidDataError: no criteria were given.
            ForeignKeyViolationError: other rows still reference a matching row.
        """
        conditions = [*clauses(where), *self._equality(equal)]
        self._require_criteria("delete_many", conditions)
        deleted = self._deleted_column()
        if deleted is not None:  # soft delete: rows deleted already are not counted again
            return await self.update_many(
                *conditions, values={deleted: self._deletion_time(deleted)}
            )
        statement = sa_delete(self.model).where(*conditions)
        self._check_writable()
        async with self._guard():
            result = await execute(self.session, statement)
        return rowcount(result)

    async def upsert(
        self,
        data: ModelT | BaseModel | Mapping[str, Any],
        *,
        conflict: Sequence[str],
        update: Sequence[str] | None = None,
    ) -> ModelT:
        """Insert one row, or update the row it conflicts with; return the row as stored.

        Atomic on every backend: ``INSERT ... ON CONFLICT`` on PostgreSQL and SQLite,
        ``INSERT ... ON DUPLICATE KEY UPDATE`` on MySQL (where any unique key counts as the
        conflict target).

        Args:
            data: A model instance, a schema or a mapping, validated as for :meth:`create`.
            conflict: The columns of the unique constraint that decides "the same row".
            update: Columns to overwrite on conflict; default every column given except the
                primary key and ``conflict``. An empty sequence keeps the existing row as it is.

        Raises:
            InvalidDataError: unknown fields or columns, invalid values, or a row without a
                value for a ``conflict`` column.
            UniqueViolationError: the row sets another unique key (a model object with its
                primary key) held by a row other than its conflict row; nothing is written,
                on every backend (MySQL would have updated that other row).
        """
        rows = await self.upsert_many([data], conflict=conflict, update=update)
        return rows[0]

    async def upsert_many(
        self,
        items: Iterable[ModelT | BaseModel | Mapping[str, Any]],
        *,
        conflict: Sequence[str],
        update: Sequence[str] | None = None,
    ) -> builtins.list[ModelT]:
        """Upsert many rows (see :meth:`upsert`) and return them as stored, in input order.

        Rows go in statements of at most 30,000 values (below every driver's limit); the rows
        are then read back with one SELECT per statement.
        """
        conflict = list(conflict)
        bad = sorted(set(conflict) - self._info.columns)
        if not conflict or bad:
            raise InvalidDataError(
                f"upsert needs conflict= columns of {self._info.name}"
                + (f"; unknown: {', '.join(bad)}" if bad else "")
                + f". Its columns are: {', '.join(sorted(self._info.columns))}."
            )
        instances = [self._to_instance(item, conflict) for item in items]
        checks = self._value_checks()
        for instance in instances:
            checks.check_instance(instance.__dict__)
        rows = [self._row_values(instance) for instance in instances]
        if not rows:
            return []
        keys = set(rows[0])
        if any(set(row) != keys for row in rows) or not set(conflict) <= keys:
            raise InvalidDataError(
                "Every upserted row needs values for the same fields, including the conflict "
                f"columns {conflict}."
            )
        policies = self._policies()
        owner = policies.tenant_column(self._info.mapper) if policies else None
        deleted = self._deleted_column()
        if deleted is not None and deleted not in keys:  # an upsert makes the row visible
            for row in rows:
                row[deleted] = None
            keys.add(deleted)
        if update is None:
            kept = set(conflict) | set(self._info.pk_names) | self._created_columns()
            update = sorted(keys - kept - {owner})
        unknown = sorted(set(update) - keys)
        if unknown:
            raise InvalidDataError(f"upsert cannot update {unknown}: the rows do not set them.")
        table = self._info.table
        dialect = self.session.bind.dialect.name if self.session.bind else "sqlite"
        found: dict[tuple[Any, ...], ModelT] = {}
        # On MySQL a row may meet another unique key, whose row ON DUPLICATE KEY would update:
        # each statement then runs in a SAVEPOINT, undone when a row is not found afterwards.
        # A row that sets another unique key (a model object with its id) held by a row other
        # than its conflict row is refused on every backend, as upsert_rows() does: MySQL may
        # have updated that other row, and its conflict row finds nothing wrong.
        mysql = dialect in ("mysql", "mariadb")
        others = other_unique_keys(table, conflict, keys)
        guarded = (mysql and may_hit_another_key(table, conflict, keys)) or bool(others)
        self._check_writable()
        async with self._guard():
            for chunk in chunks(rows, len(keys)):
                savepoint = await self.session.begin_nested() if guarded else None
                statement = upsert_statement(dialect, table, chunk, conflict, update, owner)
                await execute(self.session, statement)
                columns = [getattr(self.model, name) for name in conflict]
                wanted = [tuple(row[name] for name in conflict) for row in chunk]
                reread = (
                    select(self.model)
                    .where(tuple_(*columns).in_(wanted))
                    .execution_options(populate_existing=True)
                )
                for obj in (await execute(self.session, reread)).scalars():
                    found[tuple(getattr(obj, name) for name in conflict)] = obj
                missing = [key for key in wanted if key not in found]
                if savepoint is not None:
                    if not missing:
                        stored = [self._key_of(found[key]) for key in wanted]
                        try:
                            for other in others:
                                await self._check_other_key(chunk, other, stored, conflict, mysql)
                        except UniqueViolationError as error:
                            await savepoint.rollback()
                            self._fail(error)
                        await savepoint.commit()
                        continue
                    await savepoint.rollback()
                if missing and owner is not None and await self._held_elsewhere(conflict, missing):
                    self._fail(another_tenants_row(self._info.name, conflict))
                if missing:
                    self._another_key_met(conflict)
        return [found[tuple(row[name] for name in conflict)] for row in rows]

    async def _held_elsewhere(
        self, conflict: Sequence[str], keys: Sequence[tuple[Any, ...]]
    ) -> bool:
        """Whether rows the session cannot see (another tenant's) hold ``keys``: a Core query
        on the table, which the tenant criteria of ORM statements do not reach."""
        table = self._info.table
        columns = [table.c[self._info.column_names[name]] for name in conflict]
        probe = select(func.count()).select_from(table).where(tuple_(*columns).in_(keys))
        return bool((await execute(self.session, probe)).scalar_one())

    def _another_key_met(self, conflict: Sequence[str]) -> NoReturn:
        self._fail(another_key_met(self._info.table.name, conflict))

    def _fail(self, error: HeroRepoError) -> NoReturn:
        state = session_state(self.session.sync_session)
        if state is not None:
            state.fail(error)  # as a database error would fail the unit of work
        raise error

    async def _hard_delete(self, target: ModelT | Any) -> None:
        if self._direct(target, "delete"):
            statement = sa_delete(self.model).where(*self._key_clauses(target))
            self._check_writable()
            async with self._guard():
                result = await execute(
                    self.session,
                    statement,
                    execution_options={"synchronize_session": False, **self._read_options},
                )
            if rowcount(result) == 0:
                raise self._not_found(target)
            return
        instance = await self._instance(target)
        self._check_writable()
        async with self._guard():
            await self.session.delete(instance)
            await self.session.flush()

    async def _instance(self, target: ModelT | Any) -> ModelT:
        if not isinstance(target, self.model):
            return await self.get_one(target)
        state = inspect(target)
        if state.session is self.session.sync_session:
            return target
        if state.key is None:
            raise InvalidDataError(
                f"This {self._info.name} is not stored yet, so it cannot be updated or deleted: "
                "create() it first, or pass the primary key of a stored row."
            )
        # An object from an earlier unit of work: changing it would change nothing here (it is
        # not in this session). Work on this session's copy of the row instead, and with a
        # version column, refuse if the row changed since the object was read.
        current = await self.get_one(self._key_of(target))
        version = self._info.version
        if version is not None and getattr(current, version) != getattr(target, version):
            raise ConcurrentUpdateError()
        return current
