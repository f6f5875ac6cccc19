"""The reads and pages of ``Repository``: one concern of its façade, in a module of its own."""

from __future__ import annotations

import builtins
from collections.abc import (
    AsyncIterator,
    Iterable,
    Sequence,
)
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import Select, func, select

from ._loading import LoadSpec, eager
from ._pagination import (
    KeysetPage,
    Page,
)
from ._preload import preload_plan
from ._projections import Projection
from ._repository_base import (
    ModelT,
    OrderBy,
    RepositoryBase,
    Where,
    check_count,
    clauses,
    execute,
)

__all__ = ["RepositoryReads"]

SchemaT = TypeVar("SchemaT", bound=BaseModel)


class RepositoryReads(RepositoryBase[ModelT]):
    """The reads and pages of :class:`~herorepo.Repository`."""

    def into(self, schema: type[SchemaT]) -> Projection[ModelT, SchemaT]:
        """The reads of this repository, returning ``schema`` instances built from only the
        columns ``schema`` has: no ORM object is built or tracked, so nothing can lazy-load
        while a response is serialised, and a read costs close to SQLAlchemy Core::

            heroes = await uow.repository(Hero).into(HeroPublic).list(order_by="name", limit=20)

        ``get``, ``get_one``, ``get_many``, ``find``, ``find_one``, ``list``, ``page``,
        ``keyset`` (with the repository's cursors) and ``stream``; filters, policies and views
        (``with_deleted()``, ``for_update()``) hold as for the repository.

        A field named after a relationship and typed as a schema (``heroes: list[HeroPublic]``,
        ``team: TeamPublic | None``) holds the related rows: one more SELECT per relationship
        and level, of the nested schema's columns and the foreign key only, for all the rows
        read at once. Policies hold for those rows too.

        Raises:
            InvalidLoadError: a required field of ``schema`` is neither a column nor a
                relationship of the model, or a relationship field is not typed as a schema
                (a list of them for a collection).
        """
        return Projection(self, schema)

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
        load = (*self._default_load, *load)
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
        rows: builtins.list[ModelT] = []
        for condition in self._key_conditions(keys):
            rows.extend(await self._select(condition, load=load))
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
            raise self._many_match(where, equal)
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
            raise self._none_matches(where, equal)
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
        check_count("offset", offset)
        check_count("limit", limit)
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
        statement = statement.where(*clauses(where), *self._equality(equal))
        async with self._guard():
            result = await execute(self.session, statement, execution_options=self._read_options)
            return result.scalar_one()

    async def exists(self, *where: Where, **equal: Any) -> bool:
        """Return whether any row matches the criteria; stops at the first match."""
        condition = select(self.model).where(*clauses(where), *self._equality(equal)).exists()
        async with self._guard():
            result = await execute(
                self.session, select(condition), execution_options=self._read_options
            )
            return bool(result.scalar_one())

    async def preload(
        self, items: builtins.list[ModelT], *, load: Sequence[LoadSpec]
    ) -> builtins.list[ModelT]:
        """Load relationships onto objects read before, and return the same list.

        For objects read without ``load=``, here or in a unit of work that has ended, whose
        relationships turn out to be needed: one SELECT per relationship in ``load`` (per
        30,000 keys), which reads the related rows by the keys the objects already hold,
        without reading the objects again. A chain loads level by level, one SELECT each.
        Policies filter the related rows as they filter ``load=`` (another tenant's rows, and
        soft-deleted ones, are not attached). A relationship already loaded on an object is
        kept as it is, with any change not flushed yet; read the object again to refresh it.

        Args:
            items: Objects of this repository's model, of this unit of work or an ended one.
            load: Relationships to load, as for ``load=`` (:func:`joined` joins nothing here).

        Returns:
            ``items`` itself.

        Raises:
            InvalidLoadError: ``load`` names something that is not a relationship.
            InvalidDataError: an item is not of this model, or not stored yet (not flushed).
        """
        plan = preload_plan(self.model, load)
        plan.check(items)

        async def fetch(statement: Select[Any]) -> Sequence[Any]:
            result = await execute(self.session, statement, execution_options=self._read_options)
            return builtins.list(result.all())

        async with self._guard():
            await plan.run(items, fetch)
        return items

    # --- pages and streams -----------------------------------------------------------------------

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
        """Return one offset page, with ``has_next``; and the total when ``count=True``.

        Without a count, the page reads one row more than ``limit`` to tell whether a next page
        exists (``has_next``), and no ``SELECT count(*)`` runs: enough for "next" links and
        infinite scrolling. ``count=True`` adds that query, whose cost grows with the rows
        matching, for page numbers or a "1,234 results" line. A locking view
        (:meth:`for_update`) reads no extra row, which it would lock: ``has_next`` is then
        ``None`` after a full page, unless counted.

        OFFSET makes the database skip rows one by one: deep pages of big tables get slow.
        Prefer :meth:`keyset` there.

        Raises:
            InvalidFilterError: ``limit`` is not between 1 and ``max_page_size``, or
                ``offset`` is negative.
        """
        self._check_limit(limit)
        self._check_offset(offset)
        conditions = [*clauses(where), *self._equality(equal)]
        peek = not count and self._lock is None
        items = await self._select(
            *conditions,
            load=load,
            order_by=order_by,
            offset=offset,
            limit=limit + 1 if peek else limit,
        )
        more = len(items) > limit if peek else None
        total = await self.count(*conditions) if count else None
        return Page(items=items[:limit], offset=offset, limit=limit, total=total, has_next=more)

    async def keyset(
        self,
        *where: Where,
        order_by: OrderBy | Sequence[OrderBy] | str | None = None,
        after: str | None = None,
        before: str | None = None,
        limit: int = 50,
        load: Sequence[LoadSpec] = (),
        **equal: Any,
    ) -> KeysetPage[ModelT]:
        """Return the page after cursor ``after``, or before cursor ``before`` (the first page
        without either).

        The sort (default: primary key) may span several columns in either direction, given as
        columns (``Hero.age.desc()``) or names (``"-age,name"``); the primary key is added as
        the last tie-breaker. NULLs sort last in both directions. One SELECT per page, which
        seeks with the index instead of skipping rows. A page's ``next_cursor`` goes to
        ``after=``, its ``previous_cursor`` to ``before=``; a page read backwards lists its
        rows in the sort order too.

        Raises:
            InvalidCursorError: the cursor is not one made for this model and sort order.
            InvalidFilterError: a sort key is not a column, ``limit`` is out of range, or both
                ``after`` and ``before`` are given.
        """
        keys = self._sort_keys(order_by)

        async def fetch(conditions: builtins.list[Any], order: Any, size: int) -> Any:
            return await self._select(
                *conditions, load=load, order_by=order, limit=size, tiebreak=False
            )

        return await self._keyset_window(
            fetch,
            lambda row: [getattr(row, k.key) for k in keys],
            keys,
            [*clauses(where), *self._equality(equal)],
            after,
            before,
            limit,
        )

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
        keys = self._sort_keys(order_by)

        async def fetch(conditions: builtins.list[Any], order: Any, size: int) -> Any:
            return await self._select(
                *conditions, load=load, order_by=order, limit=size, tiebreak=False
            )

        batches = self._batches(
            fetch,
            lambda row: [getattr(row, k.key) for k in keys],
            keys,
            [*clauses(where), *self._equality(equal)],
            batch_size,
        )
        async for batch in batches:
            for row in batch:
                yield row
            del batch
