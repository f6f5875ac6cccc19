"""Projections: reads that return response schemas built from only the columns they need.

``heroes.into(HeroPublic).list(...)`` selects the columns ``HeroPublic`` has (and the sort keys
a page needs), validates each row into a ``HeroPublic``, and returns those: no ORM object is
built, tracked in the session or loaded later, so there is nothing to lazy-load while the
response is serialised, and the rows cost little more than with SQLAlchemy Core. The
repository's filters, policies (tenant, soft delete), views (``with_deleted()``, row locks)
and sorting rules all hold.

A schema field that is not a column of the model (a nested relationship, such as the
reference's ``TeamPublicWithHeroes.heroes``) is refused when the projection is made: load
those objects with ``load=`` and validate them instead.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any, Generic, TypeVar, cast

from pydantic import BaseModel, TypeAdapter
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import Select, func, select, tuple_

from ._errors import (
    ConfigurationError,
    InvalidDataError,
    InvalidFilterError,
    MultipleResultsError,
    NotFoundError,
    short_repr,
)
from ._model_info import invalid_values
from ._pagination import (
    KeysetPage,
    Page,
    SortKey,
    order_clauses,
    parse_sort,
    seek_condition,
    with_tiebreaker,
)
from ._repository_base import (
    ModelT,
    OrderBy,
    RepositoryBase,
    Where,
    check_count,
    clauses,
    execute,
    is_whole,
)
from ._upsert import MAX_PARAMETERS

__all__ = ["Projection"]

SchemaT = TypeVar("SchemaT", bound=BaseModel)

_ADAPTERS: dict[type[BaseModel], TypeAdapter[Any]] = {}


class Projection(RepositoryBase[ModelT], Generic[ModelT, SchemaT]):
    """The reads of a repository, returning ``schema`` instances; see :meth:`Repository.into`.

    .. versionadded:: 0.1.0
    """

    def __init__(self, source: RepositoryBase[ModelT], schema: type[SchemaT]) -> None:
        super().__init__(source.session, source.model)
        # The source's views hold here too: with_deleted(), for_update(), its cursor key.
        self._include_deleted = source._include_deleted
        self._read_options = source._read_options
        self._lock = source._lock
        self.cursor_secret = source.cursor_secret
        self.max_page_size = source.max_page_size
        self.schema = schema
        fields = schema.model_fields
        columns = self._info.columns
        missing = [n for n, field in fields.items() if n not in columns and field.is_required()]
        if missing:
            raise ConfigurationError(
                f"{schema.__name__} cannot be read from {self._info.name}'s columns: "
                f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not a column of it. "
                "into() reads columns only; for a nested schema, read the objects with "
                f"load=[...] and validate them with {schema.__name__}.model_validate()."
            )
        self._fields = [name for name in fields if name in self._info.columns]

    def __repr__(self) -> str:
        return f"<Projection of {self._info.name} into {self.schema.__name__}>"

    # --- reads -----------------------------------------------------------------------------------

    async def get(self, ident: Any) -> SchemaT | None:
        """The row with primary key ``ident`` as a schema, or ``None``; always one SELECT."""
        self._key_values(ident)  # the key's type is checked as everywhere
        found = await self._rows(self._key_clauses(self._checked_key(ident)), None, limit=1)
        return found[0] if found else None

    async def get_one(self, ident: Any) -> SchemaT:
        """The row with primary key ``ident`` as a schema.

        Raises:
            NotFoundError: no such row.
        """
        found = await self.get(ident)
        if found is None:
            raise self._not_found(ident)
        return found

    async def get_many(self, idents: Iterable[Any]) -> builtins.list[SchemaT]:
        """The rows whose primary keys are in ``idents``, in the order given (see
        :meth:`Repository.get_many`)."""
        keys = list(dict.fromkeys(self._checked_key(ident) for ident in idents))
        info = self._info
        width = len(info.primary_key)
        size = max(1, MAX_PARAMETERS // width)
        found: dict[Any, SchemaT] = {}
        for start in range(0, len(keys), size):
            part = keys[start : start + size]
            if width == 1:
                where = info.primary_key[0].in_(part)
            else:
                where = tuple_(*info.primary_key).in_([tuple(k) for k in part])
            rows = await self._raw([where], None, extra=info.primary_key)
            schemas = self._validate([row[: len(self._fields)] for row in rows])
            for row, schema in zip(rows, schemas, strict=True):
                key = row[len(self._fields) :]
                found[key[0] if width == 1 else tuple(key)] = schema
        return [found[k] for k in (self._normal_key(k) for k in keys) if k in found]

    async def find(self, *where: Where, **equal: Any) -> SchemaT | None:
        """The one row matching the criteria as a schema, or ``None`` (see
        :meth:`Repository.find`)."""
        found = await self._rows([*where, *self._equality(equal)], None, limit=2)
        if len(found) > 1:
            raise MultipleResultsError(
                f"More than one {self._info.name} matches {self._criteria(where, equal)}; "
                "use list() for several rows, or narrow the criteria."
            )
        return found[0] if found else None

    async def find_one(self, *where: Where, **equal: Any) -> SchemaT:
        """The one row matching the criteria as a schema (see :meth:`Repository.find_one`)."""
        found = await self.find(*where, **equal)
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
        **equal: Any,
    ) -> builtins.list[SchemaT]:
        """The rows matching the criteria as schemas (see :meth:`Repository.list`)."""
        check_count("offset", offset)
        check_count("limit", limit)
        return await self._rows(
            [*where, *self._equality(equal)], order_by, offset=offset, limit=limit
        )

    async def page(
        self,
        *where: Where,
        order_by: OrderBy | Sequence[OrderBy] | None = None,
        offset: int = 0,
        limit: int = 50,
        count: bool = False,
        **equal: Any,
    ) -> Page[SchemaT]:
        """One offset page of schemas (see :meth:`Repository.page`)."""
        self._check_limit(limit)
        if not is_whole(offset, 0):
            raise InvalidFilterError(
                f"offset must be a whole number from 0 to 2**63 - 1, got {short_repr(offset)}."
            )
        conditions = [*where, *self._equality(equal)]
        items = await self._rows(conditions, order_by, offset=offset, limit=limit)
        total = None
        if count:
            statement = select(func.count()).select_from(self.model).where(*clauses(conditions))
            async with self._guard():
                result = await execute(
                    self.session, statement, execution_options=self._read_options
                )
                total = result.scalar_one()
        return Page(items=items, offset=offset, limit=limit, total=total)

    async def keyset(
        self,
        *where: Where,
        order_by: OrderBy | Sequence[OrderBy] | str | None = None,
        after: str | None = None,
        limit: int = 50,
        **equal: Any,
    ) -> KeysetPage[SchemaT]:
        """One keyset page of schemas (see :meth:`Repository.keyset`); its cursors are the
        repository's, so either may continue the other's walk."""
        self._check_limit(limit)
        keys = self._sort_keys(order_by)
        codec = self._codec(keys)
        conditions: builtins.list[Any] = [*where, *self._equality(equal)]
        if after is not None:
            values = codec.decode(after, self._value_checks())
            conditions.append(seek_condition(self.model, keys, values, self._info.nullable))
        order = order_clauses(self.model, keys, self._info.nullable)
        sort_columns = [getattr(self.model, k.key) for k in keys]
        rows = await self._raw(conditions, order, limit=limit + 1, extra=sort_columns)
        page, more = rows[:limit], len(rows) > limit
        items = self._validate([row[: len(self._fields)] for row in page])
        cursor = codec.encode(list(page[-1][len(self._fields) :])) if more and page else None
        return KeysetPage(items=items, next_cursor=cursor, limit=limit)

    async def stream(
        self,
        *where: Where,
        order_by: OrderBy | Sequence[OrderBy] | str | None = None,
        batch_size: int = 1000,
        **equal: Any,
    ) -> AsyncIterator[SchemaT]:
        """Every matching row as a schema, ``batch_size`` at a time (see
        :meth:`Repository.stream`)."""
        if not is_whole(batch_size, 1):
            raise InvalidFilterError(
                f"batch_size must be a whole number >= 1, got {short_repr(batch_size)}."
            )
        keys = self._sort_keys(order_by)
        conditions = [*where, *self._equality(equal)]
        order = order_clauses(self.model, keys, self._info.nullable)
        sort_columns = [getattr(self.model, k.key) for k in keys]
        position: builtins.list[Any] | None = None
        while True:
            seek = (
                [seek_condition(self.model, keys, position, self._info.nullable)]
                if position is not None
                else []
            )
            rows = await self._raw(
                [*conditions, *seek], order, limit=batch_size, extra=sort_columns
            )
            for item in self._validate([row[: len(self._fields)] for row in rows]):
                yield item
            if len(rows) < batch_size:
                return
            position = list(rows[-1][len(self._fields) :])

    # --- steps -----------------------------------------------------------------------------------

    def _sort_keys(self, order_by: object) -> builtins.list[SortKey]:
        return with_tiebreaker(
            parse_sort(order_by, self._info.mapper), self._info.pk_names, self._info.unique_sets
        )

    async def _rows(
        self,
        where: Sequence[Any],
        order_by: Any,
        *,
        offset: int | None = None,
        limit: int | None = None,
    ) -> builtins.list[SchemaT]:
        rows = await self._raw(where, order_by, offset=offset, limit=limit)
        return self._validate(rows)

    async def _raw(
        self,
        where: Sequence[Any],
        order_by: Any,
        *,
        offset: int | None = None,
        limit: int | None = None,
        extra: Sequence[Any] = (),
    ) -> builtins.list[Any]:
        columns = [getattr(self.model, name) for name in self._fields]
        query = cast("Select[Any]", select(*columns, *extra))
        statement = self._query(
            query,
            where,
            order_by,
            offset=offset,
            limit=limit,
            tiebreak=not extra,
        )
        async with self._guard():
            result = await execute(self.session, statement, execution_options=self._read_options)
            return builtins.list(result.all())

    def _validate(self, rows: Sequence[Sequence[Any]]) -> builtins.list[SchemaT]:
        adapter = _ADAPTERS.get(self.schema)
        if adapter is None:
            adapter = _ADAPTERS[self.schema] = TypeAdapter(builtins.list[self.schema])  # type: ignore[name-defined]
        names = self._fields
        try:
            return adapter.validate_python([dict(zip(names, row, strict=True)) for row in rows])  # type: ignore[no-any-return]
        except PydanticValidationError as exc:  # a stored value the schema does not accept
            raise InvalidDataError(invalid_values(self.schema.__name__, exc, rows=True)) from exc
