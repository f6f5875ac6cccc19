"""herorepo as its documentation shows it: ``Database(url)`` with its defaults for the backend.

Every workload, reads included, runs in ``db.unit_of_work()`` with ``uow.repository(Model)``,
as the README and the guide tell users to write: one transaction per call, from BEGIN to a
COMMIT on exit (repositories never commit). Engine defaults differ from a plain engine:
pre-ping on PostgreSQL and MySQL, an explicit ``BEGIN`` (``BEGIN IMMEDIATE`` for a unit of
work) and foreign keys on SQLite, the guarded session.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from herorepo import Database

from ..models import BulkHero, Hero, Row, Team
from .base import MIN_AGE, PAGE_SIZE, STREAM_BATCH, Contender, UowArgs


class Herorepo(Contender):
    key = "herorepo"
    label = "herorepo"
    family = "sqlalchemy"

    async def open(self) -> None:
        self.db = Database(self.env.url)
        self.count_statements(self.db.engine)

    async def close(self) -> None:
        await self.db.dispose()

    async def get_by_pk(self, ident: int) -> Any:
        async with self.db.unit_of_work() as uow:
            return await uow.repository(Hero).get(ident)

    async def list_page(self) -> Sequence[Any]:
        # name is unique: herorepo adds no key to the ORDER BY (see with_tiebreaker).
        async with self.db.unit_of_work() as uow:
            return await uow.repository(Hero).list(
                Hero.age >= MIN_AGE,  # type: ignore[operator]
                order_by=Hero.name,
                limit=PAGE_SIZE,
            )

    async def insert_one(self, row: dict[str, Any]) -> Any:
        async with self.db.unit_of_work() as uow:
            return await uow.repository(Hero).create(row)

    async def bulk_insert(self, rows: list[dict[str, Any]]) -> Any:
        async with self.db.unit_of_work() as uow:
            return await uow.repository(BulkHero).add_many(rows)

    async def update_one(self, ident: int, secret_name: str) -> Any:
        async with self.db.unit_of_work() as uow:
            return await uow.repository(Hero).update(ident, {"secret_name": secret_name})

    async def delete_one(self, ident: int) -> None:
        async with self.db.unit_of_work() as uow:
            await uow.repository(Hero).delete(ident)

    async def keyset_cursor(self, after_id: int) -> Any:
        # The cursor after row ``after_id``: the next_cursor of a one-row page ending there.
        async with self.db.unit_of_work() as uow:
            page = await uow.repository(Row).keyset(Row.id >= after_id, limit=1)  # type: ignore[arg-type]
            return page.next_cursor

    async def keyset_page(self, cursor: Any) -> Sequence[Any]:
        async with self.db.unit_of_work() as uow:
            page = await uow.repository(Row).keyset(after=cursor, limit=PAGE_SIZE)
            return page.items

    async def offset_page(self, offset: int) -> Sequence[Any]:
        async with self.db.unit_of_work() as uow:
            page = await uow.repository(Row).page(offset=offset, limit=PAGE_SIZE)
            return page.items

    async def teams_with_heroes(self) -> Sequence[Any]:
        async with self.db.unit_of_work() as uow:
            return await uow.repository(Team).list(load=[Team.heroes])

    async def stream(self, last_id: int) -> int:
        count = 0
        async with self.db.unit_of_work() as uow:
            rows = uow.repository(Row).stream(Row.id <= last_id, batch_size=STREAM_BATCH)  # type: ignore[arg-type]
            async for _row in rows:
                count += 1
        return count

    async def unit_of_work(self, args: UowArgs) -> None:
        async with self.db.unit_of_work() as uow:
            heroes = uow.repository(Hero)
            await heroes.create(args.new)
            await heroes.update(args.update_id, {"secret_name": args.secret_name})
            await heroes.delete(args.delete_id)
