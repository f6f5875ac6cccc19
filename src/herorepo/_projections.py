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
from sqlalchemy import Select, func, select

from ._errors import (
    ConfigurationError,
    InvalidDataError,
)
from ._model_info import invalid_values
from ._pagination import (
    KeysetPage,
    Page,
    SortKey,
)
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
        width = len(self._info.primary_key)
        found: dict[Any, SchemaT] = {}
        for condition in self._key_conditions(keys):
            rows = await self._raw([condition], None, extra=self._info.primary_key)
            for row, schema in zip(rows, self._schemas(rows), strict=True):
                key = row[len(self._fields) :]
                found[key[0] if width == 1 else tuple(key)] = schema
        return [found[k] for k in (self._normal_key(k) for k in keys) if k in found]

    async def find(self, *where: Where, **equal: Any) -> SchemaT | None:
        """The one row matching the criteria as a schema, or ``None`` (see
        :meth:`Repository.find`)."""
        found = await self._rows([*where, *self._equality(equal)], None, limit=2)
        if len(found) > 1:
            raise self._many_match(where, equal)
        return found[0] if found else None

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
        keys = self._sort_keys(order_by)
        rows, cursor = await self._keyset_page(
            self._fetch_with(keys),
            self._sort_values,
            keys,
            [*where, *self._equality(equal)],
            after,
            limit,
        )
        items = self._schemas(rows)
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
        keys = self._sort_keys(order_by)
        batches = self._batches(
            self._fetch_with(keys),
            self._sort_values,
            keys,
            [*where, *self._equality(equal)],
            batch_size,
        )
        async for rows in batches:
            for item in self._schemas(rows):
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
        return list(row[len(self._fields) :])

    def _schemas(self, rows: Sequence[Sequence[Any]]) -> builtins.list[SchemaT]:
        return self._validate([row[: len(self._fields)] for row in rows])

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
