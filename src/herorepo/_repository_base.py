"""The base of ``Repository``: its state, its views and the steps its methods share."""

from __future__ import annotations

import builtins
import copy
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Mapping,
    Sequence,
)
from datetime import datetime
from types import TracebackType
from typing import (
    Any,
    Generic,
    Self,
    TypeGuard,
    TypeVar,
    cast,
    get_args,
    get_origin,
)

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import ColumnElement, Select, false, inspect, select, true, tuple_
from sqlalchemy import insert as sa_insert
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import IllegalStateChangeError, InvalidRequestError, PendingRollbackError
from sqlalchemy.ext.asyncio import AsyncSession as SAAsyncSession
from sqlalchemy.orm.exc import StaleDataError
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from ._bulk import insert_groups
from ._errors import (
    ConcurrentUpdateError,
    ConfigurationError,
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
    SortKey,
    is_named_sort,
    order_clauses,
    parse_sort,
    seek_condition,
    session_signing_keys,
    with_tiebreaker,
)
from ._policies import INCLUDE_DELETED, POLICIES_KEY, Policies
from ._transaction import CONCURRENT_USE, NEEDS_ROLLBACK, refuse_if_failed
from ._upsert import MAX_PARAMETERS
from ._values import ValueChecks, value_checks

__all__ = ["ModelT", "OrderBy", "RepositoryBase", "Where"]

ModelT = TypeVar("ModelT", bound=SQLModel)
SelectT = TypeVar("SelectT", bound=Select[Any])
RowT = TypeVar("RowT")

Where = ColumnElement[bool] | bool
"""A filter: a SQLAlchemy boolean expression such as ``Hero.age > 30``."""

OrderBy = Any
"""A column or ordering expression: ``Hero.name``, ``Hero.age.desc()``."""


class RepositoryBase(Generic[ModelT]):
    """What every repository method stands on: the session and model, the views
    (:meth:`with_deleted`, :meth:`for_update`, :meth:`for_share`) and the shared steps. The
    public methods are in :class:`~herorepo.Repository` (writes) and its base
    ``RepositoryReads`` (reads, pages)."""

    model: type[ModelT]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for base in getattr(cls, "__orig_bases__", ()):
            origin = get_origin(base)
            if isinstance(origin, type) and issubclass(origin, RepositoryBase):
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

    max_page_size: int = 1000
    """The largest ``limit`` :meth:`page` and :meth:`keyset` accept; override per subclass."""

    cursor_secret: bytes | None = None
    """A cursor key for this repository's keyset cursors, used instead of the Database's
    ``cursor_keys`` (which sign cursors by default)."""

    # --- views -----------------------------------------------------------------------------------

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

    def with_load(self, *specs: LoadSpec) -> Self:
        """This repository, with reads that load ``specs`` along with the rows, as if each
        read's ``load=`` named them too (``get``, ``get_one``, ``get_many``, ``find``,
        ``find_one``, ``list``, ``page``, ``keyset``, ``stream``, and the writes that read the
        row first: ``update``, ``restore``).

        The FastAPI integration's ``repository(Team, load=[...])`` gives such a repository, so
        that every read of an endpoint loads what its response model needs.

        Raises:
            InvalidLoadError: a spec is not a relationship of the model.

        .. versionadded:: 0.1.0
        """
        eager(*specs, model=self.model)  # checked now, not at the first read
        view = copy.copy(self)
        view._default_load = (*self._default_load, *specs)
        return view

    def _locking(self, lock: RowLock) -> Self:
        lock.check(self.session.sync_session, self._info.name)
        view = copy.copy(self)
        view._lock = lock
        return view

    def _codec(self, keys: Sequence[SortKey]) -> CursorCodec:
        secret = self.cursor_secret
        session = self.session.sync_session
        signing = (secret,) if secret else session_signing_keys(session.info)
        policies = self._policies()
        if policies is not None:
            signing = policies.cursor_keys(session, signing)
        return self._info.codec(tuple(keys), signing)

    def _check_limit(self, limit: object) -> None:
        if not is_whole(limit, 1) or limit > self.max_page_size:
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
        load = (*self._default_load, *load)
        statement = self._query(
            select(self.model), where, order_by, offset=offset, limit=limit, tiebreak=tiebreak
        )
        if load:
            statement = statement.options(*eager(*load, model=self.model))
        async with self._guard():
            result = (
                await execute(self.session, statement, execution_options=self._read_options)
            ).scalars()
            if has_joined(load):
                result = result.unique()
            return builtins.list(result.all())

    # --- keyset walks, shared by the repository's reads and its projections -------------------

    def _sort_keys(self, order_by: object) -> builtins.list[SortKey]:
        """The sort keys of ``order_by``, with the primary key to break ties if needed."""
        return with_tiebreaker(
            parse_sort(order_by, self._info.mapper), self._info.pk_names, self._info.unique_sets
        )

    def _key_conditions(self, keys: Sequence[Any]) -> builtins.list[ColumnElement[bool]]:
        """``key IN (...)`` conditions for ``keys``, each under the drivers' parameter limit."""
        primary_key = self._info.primary_key
        size = max(1, MAX_PARAMETERS // len(primary_key))
        parts = [keys[start : start + size] for start in range(0, len(keys), size)]
        if len(primary_key) == 1:
            return [primary_key[0].in_(part) for part in parts]
        return [tuple_(*primary_key).in_([tuple(k) for k in part]) for part in parts]

    async def _keyset_window(
        self,
        fetch: Callable[[builtins.list[Any], builtins.list[Any], int], Awaitable[Sequence[RowT]]],
        values_of: Callable[[RowT], builtins.list[Any]],
        keys: builtins.list[SortKey],
        conditions: builtins.list[Any],
        after: str | None,
        before: str | None,
        limit: int,
    ) -> KeysetPage[RowT]:
        """One page of ``fetch(conditions, order, limit)`` after cursor ``after`` or before
        cursor ``before`` (the first page without either), with the cursors of its neighbours.

        Backwards, the page is read in the reverse order and turned around, so its rows come
        in the order of ``keys`` either way. One SELECT, of ``limit + 1`` rows: the extra row
        says whether a page follows in the direction read. The other neighbour exists when a
        cursor was given: the row it was made from lies that way.
        """
        self._check_limit(limit)
        if after is not None and before is not None:
            raise InvalidFilterError(
                "Pass after= or before=, not both: after= reads the page that follows a "
                "cursor, before= the page that precedes it."
            )
        codec = self._codec(keys)
        cursor = before if before is not None else after
        if cursor is not None:
            values = codec.decode(cursor, self._value_checks())
            seek = seek_condition(
                self.model, keys, values, self._info.nullable, before=before is not None
            )
            conditions = [*conditions, seek]
        reverse = before is not None
        order = order_clauses(self.model, keys, self._info.nullable, reverse=reverse)
        rows = await fetch(conditions, order, limit + 1)
        items, more = builtins.list(rows[:limit]), len(rows) > limit
        if reverse:
            items.reverse()
        ahead, behind = (cursor is not None, more) if reverse else (more, cursor is not None)
        first, last = (items[0], items[-1]) if items else (None, None)
        return KeysetPage(
            items=items,
            next_cursor=codec.encode(values_of(last)) if ahead and last is not None else None,
            limit=limit,
            previous_cursor=(
                codec.encode(values_of(first)) if behind and first is not None else None
            ),
        )

    async def _batches(
        self,
        fetch: Callable[[builtins.list[Any], builtins.list[Any], int], Awaitable[Sequence[RowT]]],
        values_of: Callable[[RowT], builtins.list[Any]],
        keys: builtins.list[SortKey],
        conditions: builtins.list[Any],
        batch_size: object,
    ) -> AsyncIterator[Sequence[RowT]]:
        """Every row of ``fetch``, in keyset batches of ``batch_size`` (one SELECT each)."""
        if not is_whole(batch_size, 1):
            raise InvalidFilterError(
                f"batch_size must be a whole number >= 1, got {short_repr(batch_size)}."
            )
        order = order_clauses(self.model, keys, self._info.nullable)
        position: builtins.list[Any] | None = None
        while True:
            seek = (
                [seek_condition(self.model, keys, position, self._info.nullable)]
                if position is not None
                else []
            )
            batch = await fetch([*conditions, *seek], order, batch_size)
            last = len(batch) < batch_size
            position = values_of(batch[-1]) if batch else None
            yield batch
            del batch  # rows already handed out are not kept while the next batch is read
            if last:
                return

    def _check_offset(self, offset: object) -> None:
        if not is_whole(offset, 0):
            raise InvalidFilterError(
                f"offset must be a whole number from 0 to 2**63 - 1, got {short_repr(offset)}."
            )

    def _query(
        self,
        statement: SelectT,
        where: Sequence[Where],
        order_by: OrderBy | Sequence[OrderBy] | None,
        *,
        offset: int | None = None,
        limit: int | None = None,
        tiebreak: bool = True,
    ) -> SelectT:
        """``statement`` (of this model's rows, or of some of its columns) filtered, sorted,
        paged and locked as the read methods do."""
        statement = statement.where(*clauses(where))
        # The primary key ends every sort that is not total already (a NOT NULL unique column),
        # so rows that tie come in the same order every time and pages neither repeat nor skip.
        if is_named_sort(order_by):
            keys = with_tiebreaker(
                parse_sort(order_by, self._info.mapper),
                self._info.pk_names,
                self._info.unique_sets,
            )
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
            total = any(unique <= named for unique in self._info.unique_sets)
            tail = [] if total or not tiebreak else self._pk_not_in(named)
            statement = statement.order_by(*given, *tail)
        if offset:
            statement = statement.offset(offset)
        if limit is not None:
            statement = statement.limit(limit)
        if self._lock is not None:
            statement = self._lock.apply(statement, self.model)
        return statement

    def _pk_not_in(self, named: set[Any]) -> builtins.list[Any]:
        return [c for c in self._info.primary_key if c.key not in named]

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

    def _none_matches(self, where: Sequence[Where], equal: Mapping[str, Any]) -> NotFoundError:
        return NotFoundError(
            f"No {self._info.name} matches {self._criteria(where, equal)}.", model=self._info.name
        )

    def _many_match(self, where: Sequence[Where], equal: Mapping[str, Any]) -> MultipleResultsError:
        return MultipleResultsError(
            f"More than one {self._info.name} matches {self._criteria(where, equal)}; "
            "use list() for several rows, or narrow the criteria."
        )

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
            if self._default_load:  # with_load(): the row is read with its relationships
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
                result = await execute(
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
    _default_load: tuple[LoadSpec, ...] = ()  # with_load()

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
execute = SAAsyncSession.execute


def clauses(where: Sequence[Where]) -> builtins.list[ColumnElement[bool]]:
    # SQLModel's where() takes plain bools (a comparison mypy typed as bool); SQLAlchemy's wants
    # clauses. A literal True adds nothing; a literal False matches nothing.
    return [true() if w is True else false() if w is False else w for w in where]


MAX_COUNT = 2**63 - 1  # a BIGINT: the largest LIMIT or OFFSET every backend takes


def is_whole(value: object, minimum: int) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and minimum <= value <= MAX_COUNT


def rowcount(result: Any) -> int:
    count = getattr(result, "rowcount", -1)
    return int(count) if isinstance(count, int) else -1


def check_count(name: str, value: object) -> None:
    if value is None:
        return
    if not is_whole(value, 0):
        raise InvalidDataError(
            f"{name} must be a whole number from 0 to 2**63 - 1, got {short_repr(value)}."
        )
