"""SQLAlchemy Core on a plain ``create_async_engine(url)``: statements, rows, no ORM objects."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.ext.asyncio import create_async_engine

from ..models import BulkHero, Hero, Row, Team
from .base import MIN_AGE, PAGE_SIZE, STREAM_BATCH, Contender, UowArgs

hero = Hero.__table__  # type: ignore[attr-defined]
team = Team.__table__  # type: ignore[attr-defined]
row = Row.__table__  # type: ignore[attr-defined]
bulk = BulkHero.__table__  # type: ignore[attr-defined]

GET = select(hero).where(hero.c.id == bindparam("ident"))
LIST = (
    select(hero)
    .where(hero.c.age >= bindparam("min_age"))
    .order_by(hero.c.name)
    .limit(bindparam("limit"))
)
INSERT = insert(hero).returning(*hero.c)
BULK = insert(bulk)
UPDATE = update(hero).where(hero.c.id == bindparam("ident")).values(secret_name=bindparam("sn"))
DELETE = delete(hero).where(hero.c.id == bindparam("ident"))
FIRST_PAGE = select(row).order_by(row.c.id).limit(bindparam("limit"))
KEYSET = (
    select(row).where(row.c.id > bindparam("after")).order_by(row.c.id).limit(bindparam("limit"))
)
OFFSET = select(row).order_by(row.c.id).limit(bindparam("limit")).offset(bindparam("offset"))
TEAMS = select(team).order_by(team.c.id)
TEAM_HEROES = select(hero).where(hero.c.team_id.in_(bindparam("ids", expanding=True)))
STREAM = select(row).where(row.c.id <= bindparam("last")).order_by(row.c.id)


class Core(Contender):
    key = "core"
    label = "SQLAlchemy Core"
    family = "sqlalchemy"

    async def open(self) -> None:
        self.engine = create_async_engine(self.env.url)
        self.count_statements(self.engine)

    async def close(self) -> None:
        await self.engine.dispose()

    async def get_by_pk(self, ident: int) -> Any:
        async with self.engine.connect() as conn:
            return (await conn.execute(GET, {"ident": ident})).first()

    async def list_page(self) -> Sequence[Any]:
        async with self.engine.connect() as conn:
            result = await conn.execute(LIST, {"min_age": MIN_AGE, "limit": PAGE_SIZE})
            return result.all()

    async def insert_one(self, values: dict[str, Any]) -> Any:
        async with self.engine.begin() as conn:
            return (await conn.execute(INSERT, values)).one()

    async def bulk_insert(self, rows: list[dict[str, Any]]) -> Any:
        values = [
            {"name": r["name"], "secret_name": r["secret_name"], "age": r["age"]} for r in rows
        ]
        async with self.engine.begin() as conn:
            await conn.execute(BULK, values)

    async def update_one(self, ident: int, secret_name: str) -> Any:
        async with self.engine.begin() as conn:
            return (await conn.execute(UPDATE, {"ident": ident, "sn": secret_name})).rowcount

    async def delete_one(self, ident: int) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(DELETE, {"ident": ident})

    async def keyset_page(self, cursor: Any) -> Sequence[Any]:
        async with self.engine.connect() as conn:
            if cursor is None:
                return (await conn.execute(FIRST_PAGE, {"limit": PAGE_SIZE})).all()
            return (await conn.execute(KEYSET, {"after": cursor, "limit": PAGE_SIZE})).all()

    async def offset_page(self, offset: int) -> Sequence[Any]:
        async with self.engine.connect() as conn:
            result = await conn.execute(OFFSET, {"limit": PAGE_SIZE, "offset": offset})
            return result.all()

    async def teams_with_heroes(self) -> Sequence[Any]:
        async with self.engine.connect() as conn:
            teams = (await conn.execute(TEAMS)).all()
            ids = [t.id for t in teams]
            heroes = (await conn.execute(TEAM_HEROES, {"ids": ids})).all()
        by_team: dict[int, list[Any]] = {t.id: [] for t in teams}
        for h in heroes:
            by_team[h.team_id].append(h)
        return [(t, by_team[t.id]) for t in teams]

    async def stream(self, last_id: int) -> int:
        count = 0
        async with self.engine.connect() as conn:
            result = await conn.stream(
                STREAM.execution_options(yield_per=STREAM_BATCH), {"last": last_id}
            )
            async for partition in result.partitions():
                count += len(partition)
        return count

    async def unit_of_work(self, args: UowArgs) -> None:
        async with self.engine.begin() as conn:
            (await conn.execute(INSERT, args.new)).one()
            await conn.execute(UPDATE, {"ident": args.update_id, "sn": args.secret_name})
            await conn.execute(DELETE, {"ident": args.delete_id})
