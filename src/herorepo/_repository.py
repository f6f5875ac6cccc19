"""``Repository[ModelT]``: typed async CRUD for one SQLModel table model on one session."""

from __future__ import annotations

import builtins
import copy
from collections.abc import (
    AsyncIterator,
    Collection,
    Iterable,
    Mapping,
    Sequence,
)
from datetime import datetime
from types import TracebackType
from typing import (
    Any,
    Generic,
    NoReturn,
    Self,
    TypeGuard,
    TypeVar,
    cast,
    get_args,
    get_origin,
)

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import ColumnElement, false, func, inspect, select, true, tuple_
from sqlalchemy import delete as sa_delete
from sqlalchemy import insert as sa_insert
from sqlalchemy import update as sa_update
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import IllegalStateChangeError, InvalidRequestError, PendingRollbackError
from sqlalchemy.ext.asyncio import AsyncSession as SAAsyncSession
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.exc import StaleDataError
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from ._bulk import insert_groups
from ._errors import (
    ConcurrentUpdateError,
    ConfigurationError,
    HeroRepoError,
    InvalidDataError,
    InvalidFilterError,
    MultipleResultsError,
    NotFoundError,
    TransactionError,
    short_repr,
    values_shown,
)
from ._keys import key_values
from ._loading import LoadSpec, eager, has_joined
from ._locks import RowLock
from ._model_info import invalid_values, model_info
from ._pagination import (
    CursorCodec,
    KeysetPage,
    Page,
    SortKey,
    is_named_sort,
    order_clauses,
    parse_sort,
    seek_condition,
    session_signing_keys,
    with_tiebreaker,
)
from ._policies import INCLUDE_DELETED, POLICIES_KEY, Policies
from ._transaction import CONCURRENT_USE, NEEDS_ROLLBACK, refuse_if_failed, session_state
from ._upsert import (
    MAX_PARAMETERS,
    another_key_met,
    another_tenants_row,
    chunks,
    may_hit_another_key,
    upsert_statement,
)
from ._values import ValueChecks, value_checks

__all__ = ["Repository"]

ModelT = TypeVar("ModelT", bound=SQLModel)

Where = ColumnElement[bool] | bool
"""A filter: a SQLAlchemy boolean expression such as ``Hero.age > 30``."""

OrderBy = Any
"""A column or ordering expression: ``Hero.name``, ``Hero.age.desc()``."""


class Repository(Generic[ModelT]):
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

    model: type[ModelT]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for base in getattr(cls, "__orig_bases__", ()):
            origin = get_origin(base)
            if isinstance(origin, type) and issubclass(origin, Repository):
                args = get_args(base)
                if args and isinstance(args[0], type):
                    cls.model = args[0]

    def __init__(self, session: AsyncSession, model: type[ModelT] | None = None) -> None:
        chosen = model if model is not None else getattr(type(self), "model", None)
        if chosen is None:
            raise ConfigurationError(
                "Repository needs a model: Repository(session, Hero), or a subclass such as "
                "class HeroRepository(Repository[Hero])."
            )
        if not isinstance(chosen, type) or not issubclass(chosen, SQLModel):
            raise ConfigurationError(f"{chosen!r} is not a SQLModel model class.")
        self._info = model_info(chosen)
        self.model = cast("type[ModelT]", chosen)
        self.session = session

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self._info.name}>"

    # --- reads -----------------------------------------------------------------------------------

    async def get(self, ident: Any, *, load: Sequence[LoadSpec] = ()) -> ModelT | None:
        """Return the row with primary key ``ident``, or ``None``.

        Without ``load`` this is ``session.get()``: no SQL when the object is already in the
        session. With ``load`` the row is read again with its relationships (one extra SELECT per
        relationship, or a JOIN with :func:`~herorepo.joined`).

        Args:
            ident: The primary key; a tuple for a composite key.
            load: Relationships to load eagerly.

        Raises:
            InvalidDataError: ``ident`` does not fit the primary key's type (``"abc"`` for an
                integer key), on every backend.
            InvalidLoadError: ``load`` names something that is not a relationship.
        """
        options = eager(*load, model=self.model) if load else None
        ident = self._checked_key(ident)
        async with self._guard():
            lock = self._lock
            found = await self.session.get(
                self.model,
                ident,
                options=options,
                populate_existing=bool(load) or lock is not None,
                with_for_update=lock.for_get() if lock is not None else None,
                execution_options=self._read_options,
            )
        deleted = self._deleted_column()
        if found is not None and deleted and not self._include_deleted:
            # session.get() answers from the identity map without SQL: an object deleted
            # softly in this session is still there.
            return None if getattr(found, deleted) is not None else found
        return found

    async def get_one(self, ident: Any, *, load: Sequence[LoadSpec] = ()) -> ModelT:
        """Return the row with primary key ``ident``.

        Raises:
            NotFoundError: no such row ("Hero with id=3 does not exist.").
            InvalidLoadError: ``load`` names something that is not a relationship.
        """
        found = await self.get(ident, load=load)
        if found is None:
            raise self._not_found(ident)
        return found

    async def get_many(
        self, idents: Iterable[Any], *, load: Sequence[LoadSpec] = ()
    ) -> builtins.list[ModelT]:
        """Return the rows whose primary keys are in ``idents``, in the order given.

        Keys with no row are left out; a key given twice gives its row once. One SELECT per
        30,000 key values (drivers cap the parameters of one statement: 32,767 on asyncpg).

        Raises:
            InvalidLoadError: ``load`` names something that is not a relationship.
        """
        keys = list(dict.fromkeys(self._checked_key(ident) for ident in idents))
        if not keys:
            return []
        info = self._info
        width = len(info.primary_key)
        size = max(1, MAX_PARAMETERS // width)
        rows: builtins.list[ModelT] = []
        for start in range(0, len(keys), size):
            part = keys[start : start + size]
            if width == 1:
                where = info.primary_key[0].in_(part)
            else:
                where = tuple_(*info.primary_key).in_([tuple(k) for k in part])
            rows.extend(await self._select(where, load=load))
        by_key = {self._key_of(row): row for row in rows}
        return [by_key[k] for k in (self._normal_key(k) for k in keys) if k in by_key]

    async def find(
        self, *where: Where, load: Sequence[LoadSpec] = (), **equal: Any
    ) -> ModelT | None:
        """Return the one row matching the criteria, or ``None``.

        Args:
            where: SQLAlchemy expressions, e.g. ``Hero.age > 30``.
            load: Relationships to load eagerly.
            equal: Column equality filters, e.g. ``name="Deadpond"`` (``None`` means IS NULL).

        Raises:
            MultipleResultsError: more than one row matched.
            InvalidDataError: a keyword is not a column of the model.
        """
        rows = await self._select(*where, *self._equality(equal), load=load, limit=2)
        if len(rows) > 1:
            raise MultipleResultsError(
                f"More than one {self._info.name} matches {self._criteria(where, equal)}; "
                "use list() for several rows, or narrow the criteria."
            )
        return rows[0] if rows else None

    async def find_one(self, *where: Where, load: Sequence[LoadSpec] = (), **equal: Any) -> ModelT:
        """Return the one row matching the criteria.

        Raises:
            NotFoundError: no row matched.
            MultipleResultsError: more than one row matched.
            InvalidDataError: a keyword is not a column of the model.
        """
        found = await self.find(*where, load=load, **equal)
        if found is None:
            raise NotFoundError(
                f"No {self._info.name} matches {self._criteria(where, equal)}.",
                model=self._info.name,
            )
        return found

    async def list(
        self,
        *where: Where,
        order_by: OrderBy | Sequence[OrderBy] | None = None,
        offset: int | None = None,
        limit: int | None = None,
        load: Sequence[LoadSpec] = (),
        **equal: Any,
    ) -> builtins.list[ModelT]:
        """Return the rows matching the criteria, ordered by ``order_by`` (default: primary key).

        Args:
            where: SQLAlchemy expressions, e.g. ``Hero.age > 30``.
            order_by: A column or expression, or a sequence of them (``Hero.age.desc()``).
            offset: Rows to skip.
            limit: Most rows to return.
            load: Relationships to load eagerly.
            equal: Column equality filters, e.g. ``team_id=1``.

        Raises:
            InvalidDataError: ``offset`` or ``limit`` is negative, or a keyword is not a column.
        """
        _check_count("offset", offset)
        _check_count("limit", limit)
        return await self._select(
            *where,
            *self._equality(equal),
            load=load,
            order_by=order_by,
            offset=offset,
            limit=limit,
        )

    async def count(self, *where: Where, **equal: Any) -> int:
        """Return how many rows match the criteria (all rows when none are given)."""
        statement = select(func.count()).select_from(self.model)
        statement = statement.where(*_clauses(where), *self._equality(equal))
        async with self._guard():
            result = await _execute(self.session, statement, execution_options=self._read_options)
            return result.scalar_one()

    async def exists(self, *where: Where, **equal: Any) -> bool:
        """Return whether any row matches the criteria; stops at the first match."""
        condition = select(self.model).where(*_clauses(where), *self._equality(equal)).exists()
        async with self._guard():
            result = await _execute(
                self.session, select(condition), execution_options=self._read_options
            )
            return bool(result.scalar_one())

    # --- writes ----------------------------------------------------------------------------------

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
                result = await _execute(
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

    def with_deleted(self) -> Self:
        """This repository, with reads that include soft-deleted rows (:class:`SoftDelete`)."""
        view = copy.copy(self)
        view._include_deleted = True
        view._read_options = {INCLUDE_DELETED: True}
        return view

    def for_update(self, *, nowait: bool = False, skip_locked: bool = False) -> Self:
        """This repository, with reads that lock the rows they return until the transaction
        ends (``SELECT ... FOR UPDATE``): ``get``, ``get_one``, ``get_many``, ``find``,
        ``find_one``, ``list`` and ``page``.

        ``nowait=True`` raises :class:`LockTimeoutError` at once when a row is held;
        ``skip_locked=True`` leaves held rows out (a job queue's claim). On SQLite, see
        docs/queries.md: a writing unit of work holds the database's write lock instead.

        Raises:
            ReadOnlyTransactionError: in a read-only unit of work.
            TransactionError: on SQLite, outside a unit of work.
            ConfigurationError: ``nowait`` with ``skip_locked``, or either on SQLite.
        """
        return self._locking(RowLock(nowait=nowait, skip_locked=skip_locked))

    def for_share(self, *, nowait: bool = False, skip_locked: bool = False) -> Self:
        """Like :meth:`for_update`, with a shared lock (``FOR SHARE``; ``LOCK IN SHARE MODE``
        on MariaDB): others may read-lock the rows too, nobody may change them."""
        return self._locking(RowLock(share=True, nowait=nowait, skip_locked=skip_locked))

    def _locking(self, lock: RowLock) -> Self:
        lock.check(self.session.sync_session, self._info.name)
        view = copy.copy(self)
        view._lock = lock
        return view

    async def _hard_delete(self, target: ModelT | Any) -> None:
        if self._direct(target, "delete"):
            statement = sa_delete(self.model).where(*self._key_clauses(target))
            self._check_writable()
            async with self._guard():
                result = await _execute(
                    self.session,
                    statement,
                    execution_options={"synchronize_session": False, **self._read_options},
                )
            if _rowcount(result) == 0:
                raise self._not_found(target)
            return
        instance = await self._instance(target)
        self._check_writable()
        async with self._guard():
            await self.session.delete(instance)
            await self.session.flush()

    async def update_many(self, *where: Where, values: Mapping[str, Any], **equal: Any) -> int:
        """Set ``values`` on every row matching the criteria with one UPDATE; no row is loaded.

        Criteria are required: pass ``sqlalchemy.true()`` to update every row on purpose.
        Objects of this model already in the session get the new values too.

        Returns:
            How many rows matched.

        Raises:
            InvalidDataError: no criteria, an unknown field, or an invalid value.
        """
        conditions = [*_clauses(where), *self._equality(equal)]
        self._require_criteria("update_many", conditions)
        checked = self._update_values(values, ())
        if not checked:
            raise InvalidDataError("update_many needs at least one value to set.")
        checked = self._with_update_policies(checked)
        self._value_checks().check(checked)
        statement = sa_update(self.model).where(*conditions).values(checked)
        self._check_writable()
        async with self._guard():
            result = await _execute(self.session, statement)
        return _rowcount(result)

    async def delete_many(self, *where: Where, **equal: Any) -> int:
        """Delete every row matching the criteria with one DELETE; no row is loaded.

        Criteria are required: pass ``sqlalchemy.true()`` to delete every row on purpose.

        Returns:
            How many rows were deleted.

        Raises:
            InvalidDataError: no criteria were given.
            ForeignKeyViolationError: other rows still reference a matching row.
        """
        conditions = [*_clauses(where), *self._equality(equal)]
        self._require_criteria("delete_many", conditions)
        deleted = self._deleted_column()
        if deleted is not None:  # soft delete: rows deleted already are not counted again
            return await self.update_many(
                *conditions, values={deleted: self._deletion_time(deleted)}
            )
        statement = sa_delete(self.model).where(*conditions)
        self._check_writable()
        async with self._guard():
            result = await _execute(self.session, statement)
        return _rowcount(result)

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
        guarded = dialect in ("mysql", "mariadb") and may_hit_another_key(table, conflict, keys)
        self._check_writable()
        async with self._guard():
            for chunk in chunks(rows, len(keys)):
                savepoint = await self.session.begin_nested() if guarded else None
                statement = upsert_statement(dialect, table, chunk, conflict, update, owner)
                await _execute(self.session, statement)
                columns = [getattr(self.model, name) for name in conflict]
                wanted = [tuple(row[name] for name in conflict) for row in chunk]
                reread = (
                    select(self.model)
                    .where(tuple_(*columns).in_(wanted))
                    .execution_options(populate_existing=True)
                )
                for obj in (await _execute(self.session, reread)).scalars():
                    found[tuple(getattr(obj, name) for name in conflict)] = obj
                missing = [key for key in wanted if key not in found]
                if savepoint is not None:
                    if not missing:
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
        return bool((await _execute(self.session, probe)).scalar_one())

    def _another_key_met(self, conflict: Sequence[str]) -> NoReturn:
        self._fail(another_key_met(self._info.table.name, conflict))

    def _fail(self, error: HeroRepoError) -> NoReturn:
        state = session_state(self.session.sync_session)
        if state is not None:
            state.fail(error)  # as a database error would fail the unit of work
        raise error

    # --- pages and streams -----------------------------------------------------------------------

    max_page_size: int = 1000
    """The largest ``limit`` :meth:`page` and :meth:`keyset` accept; override per subclass."""

    cursor_secret: bytes | None = None
    """A cursor key for this repository's keyset cursors, used instead of the Database's
    ``cursor_keys`` (which sign cursors by default)."""

    async def page(
        self,
        *where: Where,
        order_by: OrderBy | Sequence[OrderBy] | None = None,
        offset: int = 0,
        limit: int = 50,
        count: bool = False,
        load: Sequence[LoadSpec] = (),
        **equal: Any,
    ) -> Page[ModelT]:
        """Return one offset page, and the total when ``count=True`` (one more query).

        OFFSET makes the database skip rows one by one: deep pages of big tables get slow.
        Prefer :meth:`keyset` there.

        Raises:
            InvalidFilterError: ``limit`` is not between 1 and ``max_page_size``, or
                ``offset`` is negative.
        """
        self._check_limit(limit)
        if not _is_whole(offset, 0):
            raise InvalidFilterError(
                f"offset must be a whole number from 0 to 2**63 - 1, got {short_repr(offset)}."
            )
        conditions = [*_clauses(where), *self._equality(equal)]
        items = await self._select(
            *conditions, load=load, order_by=order_by, offset=offset, limit=limit
        )
        total = await self.count(*conditions) if count else None
        return Page(items=items, offset=offset, limit=limit, total=total)

    async def keyset(
        self,
        *where: Where,
        order_by: OrderBy | Sequence[OrderBy] | str | None = None,
        after: str | None = None,
        limit: int = 50,
        load: Sequence[LoadSpec] = (),
        **equal: Any,
    ) -> KeysetPage[ModelT]:
        """Return the page after cursor ``after`` (the first page without it).

        The sort (default: primary key) may span several columns in either direction, given as
        columns (``Hero.age.desc()``) or names (``"-age,name"``); the primary key is added as
        the last tie-breaker. NULLs sort last in both directions. One SELECT per page, which
        seeks with the index instead of skipping rows.

        Raises:
            InvalidCursorError: ``after`` is not a cursor made for this model and sort order.
            InvalidFilterError: a sort key is not a column, or ``limit`` is out of range.
        """
        self._check_limit(limit)
        keys = with_tiebreaker(parse_sort(order_by, self._info.mapper), self._info.pk_names)
        codec = self._codec(keys)
        conditions = [*_clauses(where), *self._equality(equal)]
        if after is not None:
            values = codec.decode(after, self._value_checks())
            conditions.append(seek_condition(self.model, keys, values, self._info.nullable))
        rows = await self._select(
            *conditions,
            load=load,
            order_by=order_clauses(self.model, keys, self._info.nullable),
            limit=limit + 1,
            tiebreak=False,
        )
        items, more = rows[:limit], len(rows) > limit
        next_cursor = None
        if more and items:
            last = items[-1]
            next_cursor = codec.encode([getattr(last, k.key) for k in keys])
        return KeysetPage(items=items, next_cursor=next_cursor, limit=limit)

    async def stream(
        self,
        *where: Where,
        order_by: OrderBy | Sequence[OrderBy] | str | None = None,
        batch_size: int = 1000,
        load: Sequence[LoadSpec] = (),
        **equal: Any,
    ) -> AsyncIterator[ModelT]:
        """Iterate over every matching row, holding at most ``batch_size`` rows at a time.

        Rows are read in keyset batches (one SELECT each), so no cursor stays open between
        batches: leaving the loop early or raising inside it holds nothing on the server.
        Rows already yielded are not kept by herorepo; the session forgets them once your code
        drops them (unless they were changed).

        Raises:
            InvalidFilterError: a sort key is not a column, or ``batch_size`` < 1.
        """
        if not _is_whole(batch_size, 1):
            raise InvalidFilterError(
                f"batch_size must be a whole number >= 1, got {short_repr(batch_size)}."
            )
        keys = with_tiebreaker(parse_sort(order_by, self._info.mapper), self._info.pk_names)
        conditions = [*_clauses(where), *self._equality(equal)]
        order = order_clauses(self.model, keys, self._info.nullable)
        position: builtins.list[Any] | None = None
        while True:
            seek = (
                [seek_condition(self.model, keys, position, self._info.nullable)]
                if position is not None
                else []
            )
            batch = await self._select(
                *conditions, *seek, load=load, order_by=order, limit=batch_size, tiebreak=False
            )
            for row in batch:
                yield row
            if len(batch) < batch_size:
                return
            position = [getattr(batch[-1], k.key) for k in keys]
            del batch

    def _codec(self, keys: Sequence[SortKey]) -> CursorCodec:
        secret = self.cursor_secret
        session = self.session.sync_session
        signing = (secret,) if secret else session_signing_keys(session.info)
        policies = self._policies()
        if policies is not None:
            signing = policies.cursor_keys(session, signing)
        return self._info.codec(tuple(keys), signing)

    def _check_limit(self, limit: object) -> None:
        if not _is_whole(limit, 1) or limit > self.max_page_size:
            raise InvalidFilterError(
                f"limit must be a whole number from 1 to {self.max_page_size}, "
                f"got {short_repr(limit)}."
            )

    def _require_criteria(self, name: str, conditions: Sequence[object]) -> None:
        if not conditions:
            raise InvalidDataError(
                f"{name} needs criteria. To touch every row on purpose, pass sqlalchemy.true()."
            )

    def _row_values(self, instance: ModelT) -> dict[str, Any]:
        """Column values of a new instance for a Core INSERT, leaving out unset defaults."""
        values: dict[str, Any] = {}
        for name in self._info.columns:
            if name not in instance.__dict__:
                continue
            value = instance.__dict__[name]
            if value is None and name in self._info.defaulted:
                continue  # let the database fill it, as a flush would
            values[self._info.column_names[name]] = value
        return values

    # --- helpers ---------------------------------------------------------------------------------

    async def _select(
        self,
        *where: Where,
        load: Sequence[LoadSpec] = (),
        order_by: OrderBy | Sequence[OrderBy] | None = None,
        offset: int | None = None,
        limit: int | None = None,
        tiebreak: bool = True,
    ) -> builtins.list[ModelT]:
        statement = select(self.model).where(*_clauses(where))
        if load:
            statement = statement.options(*eager(*load, model=self.model))
        # The primary key ends every sort, so rows that tie come in the same order every time
        # and offset pages neither repeat nor skip them.
        if is_named_sort(order_by):
            keys = with_tiebreaker(parse_sort(order_by, self._info.mapper), self._info.pk_names)
            statement = statement.order_by(*order_clauses(self.model, keys, self._info.nullable))
        elif order_by is None:
            statement = statement.order_by(*self._info.primary_key)
        else:
            given = cast(
                "Sequence[Any]",
                order_by if isinstance(order_by, (builtins.list, tuple)) else [order_by],
            )
            # Leave out key columns the caller already sorts by (``Hero.id`` or ``Hero.id.desc()``).
            named = {getattr(getattr(item, "element", item), "key", None) for item in given}
            tail = [c for c in self._info.primary_key if c.key not in named] if tiebreak else []
            statement = statement.order_by(*given, *tail)
        if offset:
            statement = statement.offset(offset)
        if limit is not None:
            statement = statement.limit(limit)
        if self._lock is not None:
            statement = self._lock.apply(statement, self.model)
        async with self._guard():
            result = (
                await _execute(self.session, statement, execution_options=self._read_options)
            ).scalars()
            if has_joined(load):
                result = result.unique()
            return builtins.list(result.all())

    def _equality(self, equal: Mapping[str, Any]) -> builtins.list[ColumnElement[bool]]:
        unknown = sorted(set(equal) - self._info.columns)
        if unknown:
            raise InvalidDataError(
                f"{self._info.name} has no column {', '.join(map(repr, unknown))} to filter on. "
                f"Its columns are: {', '.join(sorted(self._info.columns))}."
            )
        return [getattr(self.model, key) == value for key, value in equal.items()]

    def _criteria(self, where: Sequence[Where], equal: Mapping[str, Any]) -> str:
        # Clauses print with placeholders (``hero.age > :age_1``); keywords print their values
        # only where the engine shows values.
        show = values_shown(self._dialect())
        shown = [f"{k}={short_repr(v)}" if show else f"{k}=..." for k, v in equal.items()]
        parts = [str(w) for w in where] + shown
        return " and ".join(parts) if parts else "(no criteria)"

    def _not_found(self, ident: Any) -> NotFoundError:
        described = self._info.describe_ident(ident, show=values_shown(self._dialect()))
        return NotFoundError(
            f"{self._info.name} with {described} does not exist.",
            model=self._info.name,
            ident=ident,
        )

    def _direct(self, target: object, write: str) -> bool:
        """Whether ``target`` can be written with one statement on its key, bypassing the ORM.

        It must be a key (not an object), its object must not be in the session (whose state
        would go stale), and the model must leave the ORM nothing to do for ``write``
        ("delete", or "update_returning", which also needs UPDATE ... RETURNING).
        """
        if isinstance(target, self.model):
            return False
        if write == "delete":
            if not self._info.direct_delete:
                return False
        else:
            dialect = getattr(self.session.bind, "dialect", None)
            if not self._info.direct_update or not getattr(dialect, "update_returning", False):
                return False
        values = self._key_values(target)
        if values is None:
            return False
        key = self._info.mapper.identity_key_from_primary_key(values)
        return key not in self.session.sync_session.identity_map

    def _key_values(self, ident: Any) -> tuple[Any, ...] | None:
        info = self._info
        return key_values(info.name, info.pk_names, info.adapter, ident, info.pk_ranges)

    def _checked_key(self, ident: Any) -> Any:
        values = self._key_values(ident)
        if values is None:
            return ident
        return values[0] if len(values) == 1 else values

    def _key_clauses(self, ident: Any) -> builtins.list[ColumnElement[bool]]:
        values = self._key_values(ident)
        assert values is not None  # _direct() checked it
        return [
            column == value for column, value in zip(self._info.primary_key, values, strict=True)
        ]

    def _key_of(self, row: ModelT) -> Any:
        identity = inspect(row).identity
        assert identity is not None
        return identity[0] if len(identity) == 1 else tuple(identity)

    def _normal_key(self, key: Any) -> Any:
        return tuple(key) if len(self._info.primary_key) > 1 else key

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

    def _to_instance(
        self, data: ModelT | BaseModel | Mapping[str, Any], allow: Collection[str]
    ) -> ModelT:
        if isinstance(data, self.model):
            return data
        if isinstance(data, BaseModel):
            # A schema declared extra="allow" carries undeclared fields, and validation reads
            # them too: check them as well, or a client could set the key through them.
            values = dict(data)
            self._info.check_fields(values)
            self._info.check_protected({k for k, v in values.items() if v is not None}, allow)
        elif isinstance(data, Mapping):
            self._info.check_fields(data)
            self._info.check_protected({k for k, v in data.items() if v is not None}, allow)
        else:
            raise InvalidDataError(
                f"Cannot make a {self._info.name} from {type(data).__name__}: pass a "
                f"{self._info.name}, a pydantic/SQLModel schema, or a mapping of field values."
            )
        source: Any = data
        if self._policies() is not None:  # the tenant and audit columns, before validation
            source = dict(data)
            self._with_insert_policies([source])
        try:
            return self.model.model_validate(source)
        except PydanticValidationError as exc:
            raise InvalidDataError(invalid_values(self._info.name, exc)) from exc

    def _update_values(
        self, data: BaseModel | Mapping[str, Any], allow: Collection[str]
    ) -> dict[str, Any]:
        if isinstance(data, BaseModel):
            raw = data.model_dump(exclude_unset=True)
        elif isinstance(data, Mapping):
            raw = dict(data)
        else:
            raise InvalidDataError(
                f"Cannot update a {self._info.name} from {type(data).__name__}: pass a "
                "pydantic/SQLModel schema or a mapping of field values."
            )
        self._info.check_fields(raw)
        self._info.check_protected(raw, allow)
        values: dict[str, Any] = {}
        for key, value in raw.items():
            try:
                values[key] = self._info.adapter(key).validate_python(value)
            except PydanticValidationError as exc:
                raise InvalidDataError(
                    f"Invalid value for {self._info.name}.{key}: {exc.errors()[0]['msg']}."
                ) from exc
        return values

    def _validated_rows(
        self, items: Sequence[object], allow: Collection[str]
    ) -> builtins.list[dict[str, Any]] | None:
        """The items as validated field values, or ``None`` if they need the flush path."""
        validator = self._info.rows_validator()
        if validator is None:
            return None
        rows: builtins.list[dict[str, Any]] = []
        for item in items:
            if type(item) is dict:
                rows.append(cast("dict[str, Any]", item))
            elif isinstance(item, BaseModel) and not hasattr(type(item), "__table__"):
                rows.append(dict(item))  # a schema: its fields, as model_validate reads them
            else:
                return None  # model instances stay the objects inserted: flush them
        refused = self._info.protected - set(allow)
        checked: set[frozenset[str]] = set()
        for row in rows:
            keys = frozenset(row)
            if keys not in checked:
                self._info.check_fields(keys)
                checked.add(keys)
            if refused & keys:
                self._info.check_protected([k for k in refused & keys if row[k] is not None], allow)
        if self._policies() is not None:  # the tenant and audit columns, before validation
            rows = [dict(row) for row in rows]
            self._with_insert_policies(rows)
        try:
            validated = [vars(model) for model in validator.validate_python(rows)]
        except PydanticValidationError as exc:
            raise InvalidDataError(invalid_values(self._info.name, exc, rows=True)) from exc
        checks = self._value_checks()  # what the flush path checks before its flush
        for row in validated:
            checks.check_instance(row)
        return validated

    def _bulk_insert_order(self, rows: Sequence[Mapping[str, Any]]) -> str | None:
        """How the bulk INSERT's RETURNING rows are put in input order, or ``None``: flush."""
        bind = self.session.bind
        dialect = getattr(bind, "dialect", None)
        if dialect is None or not dialect.insert_executemany_returning:
            return None
        if not self._info.bulk_insertable:
            return None
        if dialect.name == "sqlite":
            # SQLAlchemy orders RETURNING on SQLite only with a sentinel column, and otherwise
            # sends a statement per row. SQLite hands out ascending rowids in VALUES order, so
            # sorting by a generated integer key restores the order.
            key = self._info.pk_names[0]
            if self._info.rowid_key and all(row[key] is None for row in rows):
                return "key"
            return None
        if dialect.insert_executemany_returning_sort_by_parameter_order:
            return "parameters"
        return None

    async def _bulk_insert(
        self, rows: Sequence[dict[str, Any]], sort: str
    ) -> builtins.list[ModelT]:
        statements = insert_groups(rows, self._info.defaulted)
        returning = sa_insert(self.model).returning(
            self.model, sort_by_parameter_order=sort == "parameters"
        )
        out: builtins.list[Any] = [None] * len(rows)
        # One statement is atomic by itself; several get a SAVEPOINT so that a refused row
        # keeps none of them, as a failed flush would.
        nested = self.session.begin_nested() if len(statements) > 1 else None
        if nested is not None:
            await nested.start()
        try:
            for positions, values in statements:
                result = await _execute(
                    self.session,
                    returning,
                    values,
                    # Nones left in the rows are meant as NULL (see insert_groups).
                    execution_options={
                        "insertmanyvalues_page_size": len(values),
                        "render_nulls": True,
                    },
                )
                objects = builtins.list(result.scalars())
                if sort == "key":
                    objects.sort(key=self._key_of)
                for position, obj in zip(positions, objects, strict=True):
                    out[position] = obj
        except BaseException:
            if nested is not None:
                await nested.rollback()
            raise
        if nested is not None:
            await nested.commit()
        return out

    async def _flush_new(self, instances: Sequence[ModelT]) -> None:
        try:
            await self.session.flush()
        except InvalidDataError:
            # A value was refused before any SQL: take the rows back out of the session, or
            # every later flush of this unit of work would trip over them again.
            for instance in instances:
                if inspect(instance).pending:
                    self.session.expunge(instance)
            raise

    # --- policies (herorepo._policies): most of their work happens in session hooks -----------

    _include_deleted: bool = False
    _lock: RowLock | None = None
    _read_options: Mapping[str, Any] = {}

    def _policies(self) -> Policies | None:
        return self.session.sync_session.info.get(POLICIES_KEY)

    def _deleted_column(self) -> str | None:
        policies = self._policies()
        return policies.deleted_column(self._info.mapper) if policies else None

    def _created_columns(self) -> set[str]:
        policies = self._policies()
        return set(policies.of(self._info.mapper).created) if policies else set()

    def _deletion_time(self, column: str) -> datetime:
        policies = self._policies()
        assert policies is not None
        return policies.time_for(self.session.sync_session, self._info.mapper, column)

    def _with_update_policies(self, values: dict[str, Any]) -> dict[str, Any]:
        policies = self._policies()
        if policies is None:
            return values
        return policies.update_values(self.session.sync_session, self._info.mapper, values)

    def _with_insert_policies(self, rows: Sequence[dict[str, Any]]) -> None:
        policies = self._policies()
        if policies is not None:
            policies.fill_rows(self.session.sync_session, self._info.mapper, rows)

    def _value_checks(self) -> ValueChecks:
        return value_checks(self._info.mapper, self._dialect())

    def _dialect(self) -> Dialect:
        return self.session.sync_session.get_bind(self._info.mapper).dialect

    async def _load_unloaded(self, instances: Sequence[ModelT]) -> None:
        """Read back column values the flush left unloaded (server defaults without RETURNING)."""
        for instance in instances:
            state = inspect(instance)
            missing = [key for key in state.expired_attributes if key in self._info.columns]
            if missing:
                await self.session.refresh(instance, attribute_names=missing)

    def _check_writable(self) -> None:
        """Refuse a write into a failed transaction before it touches the session's state."""
        refuse_if_failed(self.session.sync_session)
        transaction = self.session.sync_session.get_transaction()
        if transaction is not None and not transaction.is_active:
            raise TransactionError(NEEDS_ROLLBACK)

    def _guard(self) -> _Guard:
        return _GUARD


class _Guard:
    """Turn session-state errors into herorepo errors that say the way out.

    A plain class rather than ``@asynccontextmanager``: it wraps every repository call, and a
    generator-based context manager costs several times more per use.
    """

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            return
        if isinstance(exc, PendingRollbackError):
            raise TransactionError(NEEDS_ROLLBACK) from exc
        if isinstance(exc, StaleDataError):
            raise ConcurrentUpdateError() from exc
        if isinstance(exc, IllegalStateChangeError) or (
            isinstance(exc, InvalidRequestError) and "already flushing" in str(exc)
        ):
            raise TransactionError(CONCURRENT_USE) from exc
        if isinstance(exc, InvalidRequestError) and "permanently closed" in str(exc):
            raise TransactionError(
                "This repository's session is closed: its unit of work has ended. Open a new "
                "unit of work (async with db.unit_of_work() as uow) and get a repository from it."
            ) from exc


_GUARD = _Guard()


# SQLAlchemy's own execute(): SQLModel overrides it only to add a deprecation warning that
# points users to exec(), whose result types do not fit a generic repository.
_execute = SAAsyncSession.execute


def _clauses(where: Sequence[Where]) -> builtins.list[ColumnElement[bool]]:
    # SQLModel's where() takes plain bools (a comparison mypy typed as bool); SQLAlchemy's wants
    # clauses. A literal True adds nothing; a literal False matches nothing.
    return [true() if w is True else false() if w is False else w for w in where]


_MAX_COUNT = 2**63 - 1  # a BIGINT: the largest LIMIT or OFFSET every backend takes


def _is_whole(value: object, minimum: int) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and minimum <= value <= _MAX_COUNT


def _rowcount(result: Any) -> int:
    count = getattr(result, "rowcount", -1)
    return int(count) if isinstance(count, int) else -1


def _check_count(name: str, value: object) -> None:
    if value is None:
        return
    if not _is_whole(value, 0):
        raise InvalidDataError(
            f"{name} must be a whole number from 0 to 2**63 - 1, got {short_repr(value)}."
        )
