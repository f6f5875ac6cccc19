"""Projections: reads that return response schemas built from only the columns they need.

``heroes.into(HeroPublic).list(...)`` selects the columns ``HeroPublic`` has (and the sort keys
a page needs), validates each row into a ``HeroPublic``, and returns those: no ORM object is
built, tracked in the session or loaded later, so there is nothing to lazy-load while the
response is serialised, and the rows cost little more than with SQLAlchemy Core. The
repository's filters, policies (tenant, soft delete), views (``with_deleted()``, row locks)
and sorting rules all hold.

A schema field named after a relationship and typed as a schema (the reference's
``TeamPublicWithHeroes.heroes: list[HeroPublic]``) is read with one more statement per
relationship and level: only the nested schema's columns and the foreign key, for all the rows
at once (``_projection_plans.py``). Those statements go through the session too, so policies
hold for the nested rows.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any, Generic, TypeVar, cast

from pydantic import BaseModel, TypeAdapter
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import Select, func, select

from ._errors import InvalidDataError
from ._model_info import invalid_values
from ._pagination import (
    KeysetPage,
    Page,
    SortKey,
)
from ._projection_plans import projection_plan
from ._repository_base import (
    ModelT,
    OrderBy,
    RepositoryBase,
    Where,
    check_count,
    clauses,
    execute,
)

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
        self._plan = projection_plan(self.model, schema)
        # The schema's columns, then the columns its nested reads link on; then, in some
        # reads, the primary key or the sort keys.
        self._width = len(self._plan.selected)

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
        width = len(self._info.primary_key)
        found: dict[Any, SchemaT] = {}
        for condition in self._key_conditions(keys):
            rows = await self._raw([condition], None, extra=self._info.primary_key)
            for row, schema in zip(rows, await self._build(rows), strict=True):
                key = row[self._width :]
                found[key[0] if width == 1 else tuple(key)] = schema
        return [found[k] for k in (self._normal_key(k) for k in keys) if k in found]

    async def find(self, *where: Where, **equal: Any) -> SchemaT | None:
        """The one row matching the criteria as a schema, or ``None`` (see
        :meth:`Repository.find`)."""
        rows = await self._raw([*where, *self._equality(equal)], None, limit=2)
        if len(rows) > 1:
            raise self._many_match(where, equal)
        return (await self._build(rows))[0] if rows else None

    async def find_one(self, *where: Where, **equal: Any) -> SchemaT:
        """The one row matching the criteria as a schema (see :meth:`Repository.find_one`)."""
        found = await self.find(*where, **equal)
        if found is None:
            raise self._none_matches(where, equal)
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
        self._check_offset(offset)
        conditions = [*where, *self._equality(equal)]
        peek = not count and self._lock is None  # has_next from one row more, as Repository
        size = limit + 1 if peek else limit
        items = await self._rows(conditions, order_by, offset=offset, limit=size)
        more = len(items) > limit if peek else None
        total = None
        if count:
            statement = select(func.count()).select_from(self.model).where(*clauses(conditions))
            async with self._guard():
                result = await execute(
                    self.session, statement, execution_options=self._read_options
                )
                total = result.scalar_one()
        return Page(items=items[:limit], offset=offset, limit=limit, total=total, has_next=more)

    async def keyset(
        self,
        *where: Where,
        order_by: OrderBy | Sequence[OrderBy] | str | None = None,
        after: str | None = None,
        before: str | None = None,
        limit: int = 50,
        **equal: Any,
    ) -> KeysetPage[SchemaT]:
        """One keyset page of schemas, after ``after`` or before ``before`` (see
        :meth:`Repository.keyset`); its cursors are the repository's, so either may continue
        the other's walk."""
        keys = self._sort_keys(order_by)
        window = await self._keyset_window(
            self._fetch_with(keys),
            self._sort_values,
            keys,
            [*where, *self._equality(equal)],
            after,
            before,
            limit,
        )
        return KeysetPage(
            items=await self._build(window.items),
            next_cursor=window.next_cursor,
            limit=limit,
            previous_cursor=window.previous_cursor,
        )

    async def stream(
        self,
        *where: Where,
        order_by: OrderBy | Sequence[OrderBy] | str | None = None,
        batch_size: int = 1000,
        **equal: Any,
    ) -> AsyncIterator[SchemaT]:
        """Every matching row as a schema, ``batch_size`` at a time (see
        :meth:`Repository.stream`)."""
        keys = self._sort_keys(order_by)
        batches = self._batches(
            self._fetch_with(keys),
            self._sort_values,
            keys,
            [*where, *self._equality(equal)],
            batch_size,
        )
        async for rows in batches:
            for item in await self._build(rows):
                yield item
            del rows

    # --- steps -----------------------------------------------------------------------------------

    def _fetch_with(self, keys: Sequence[SortKey]) -> Any:
        """Fetch rows with the sort keys' values after the schema's columns (for cursors)."""
        sort_columns = [getattr(self.model, k.key) for k in keys]

        async def fetch(conditions: builtins.list[Any], order: Any, size: int) -> Any:
            return await self._raw(conditions, order, limit=size, extra=sort_columns)

        return fetch

    def _sort_values(self, row: Sequence[Any]) -> builtins.list[Any]:
        return list(row[self._width :])

    async def _rows(
        self,
        where: Sequence[Any],
        order_by: Any,
        *,
        offset: int | None = None,
        limit: int | None = None,
    ) -> builtins.list[SchemaT]:
        rows = await self._raw(where, order_by, offset=offset, limit=limit)
        return await self._build(rows)

    async def _raw(
        self,
        where: Sequence[Any],
        order_by: Any,
        *,
        offset: int | None = None,
        limit: int | None = None,
        extra: Sequence[Any] = (),
    ) -> builtins.list[Any]:
        columns = [getattr(self.model, name) for name in self._plan.selected]
        query = cast("Select[Any]", select(*columns, *extra))
        statement = self._query(
            query,
            where,
            order_by,
            offset=offset,
            limit=limit,
            tiebreak=not extra,
        )
        return await self._run(statement)

    async def _run(self, statement: Select[Any]) -> builtins.list[Any]:
        async with self._guard():
            result = await execute(self.session, statement, execution_options=self._read_options)
            return builtins.list(result.all())

    async def _build(self, rows: Sequence[Sequence[Any]]) -> builtins.list[SchemaT]:
        """Validate ``rows`` into schemas, after reading their nested rows (if any)."""
        adapter = _ADAPTERS.get(self.schema)
        if adapter is None:
            adapter = _ADAPTERS[self.schema] = TypeAdapter(builtins.list[self.schema])  # type: ignore[name-defined]
        plan = self._plan
        records = [dict(zip(plan.fields, row, strict=False)) for row in rows]
        if plan.nested and records:
            await plan.fill(self._run, rows, records)
        try:
            return adapter.validate_python(records)  # type: ignore[no-any-return]
        except PydanticValidationError as exc:  # a stored value the schema does not accept
            raise InvalidDataError(invalid_values(self.schema.__name__, exc, rows=True)) from exc
