"""Hand-written SQLModel ``AsyncSession`` code, as in the SQLModel async reference.

The engine is a plain ``create_async_engine(url)``; the sessionmaker makes SQLModel's
``AsyncSession`` with ``expire_on_commit=False``. Writes follow the reference: ``add``, ``commit``,
``refresh`` for a create; ``get``, ``sqlmodel_update``, ``add``, ``commit``, ``refresh`` for an
update; ``get``, ``delete``, ``commit`` for a delete. The bulk insert is ``add_all`` + ``commit``
(the ORM's unit of work, which returns objects with their keys); streaming uses
``stream_scalars`` with ``yield_per`` and walks ``partitions()``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import selectinload
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from ..models import BulkHero, Hero, Row, Team
from .base import MIN_AGE, PAGE_SIZE, STREAM_BATCH, Contender, UowArgs


class SQLModelIdiom(Contender):
    key = "sqlmodel"
    label = "SQLModel AsyncSession"
    family = "sqlalchemy"

    async def open(self) -> None:
        self.engine = create_async_engine(self.env.url)
        self.count_statements(self.engine)
        self.sessionmaker = async_sessionmaker(
            self.engine, class_=AsyncSession, expire_on_commit=False
        )

    async def close(self) -> None:
        await self.engine.dispose()

    async def get_by_pk(self, ident: int) -> Any:
        async with self.sessionmaker() as session:
            return await session.get(Hero, ident)

    async def list_page(self) -> Sequence[Any]:
        async with self.sessionmaker() as session:
            statement = (
                select(Hero)
                .where(Hero.age >= MIN_AGE)  # type: ignore[operator]
                .order_by(Hero.name)
                .limit(PAGE_SIZE)
            )
            return (await session.exec(statement)).all()

    async def insert_one(self, row: dict[str, Any]) -> Any:
        async with self.sessionmaker() as session:
            hero = Hero.model_validate(row)
            session.add(hero)
            await session.commit()
            await session.refresh(hero)
            return hero

    async def bulk_insert(self, rows: list[dict[str, Any]]) -> Any:
        async with self.sessionmaker() as session:
            heroes = [BulkHero.model_validate(r) for r in rows]
            session.add_all(heroes)
            await session.commit()
            return heroes

    async def update_one(self, ident: int, secret_name: str) -> Any:
        async with self.sessionmaker() as session:
            hero = await session.get(Hero, ident)
            if hero is None:
                return None
            hero.sqlmodel_update({"secret_name": secret_name})
            session.add(hero)
            await session.commit()
            await session.refresh(hero)
            return hero

    async def delete_one(self, ident: int) -> None:
        async with self.sessionmaker() as session:
            hero = await session.get(Hero, ident)
            if hero is None:
                return
            await session.delete(hero)
            await session.commit()

    async def keyset_page(self, cursor: Any) -> Sequence[Any]:
        statement = select(Row).order_by(Row.id).limit(PAGE_SIZE)  # type: ignore[arg-type]
        if cursor is not None:
            statement = statement.where(Row.id > cursor)
        async with self.sessionmaker() as session:
            return (await session.exec(statement)).all()

    async def offset_page(self, offset: int) -> Sequence[Any]:
        statement = select(Row).order_by(Row.id).offset(offset).limit(PAGE_SIZE)  # type: ignore[arg-type]
        async with self.sessionmaker() as session:
            return (await session.exec(statement)).all()

    async def teams_with_heroes(self) -> Sequence[Any]:
        statement = select(Team).options(selectinload(Team.heroes)).order_by(Team.id)  # type: ignore[arg-type]
        async with self.sessionmaker() as session:
            return (await session.exec(statement)).all()

    async def stream(self, last_id: int) -> int:
        statement = (
            select(Row)
            .where(Row.id <= last_id)
            .order_by(Row.id)  # type: ignore[arg-type]
            .execution_options(yield_per=STREAM_BATCH)
        )
        count = 0
        async with self.sessionmaker() as session:
            result = await session.stream_scalars(statement)
            async for partition in result.partitions():
                for _row in partition:
                    count += 1
        return count

    async def unit_of_work(self, args: UowArgs) -> None:
        async with self.sessionmaker() as session, session.begin():
            session.add(Hero.model_validate(args.new))
            hero = await session.get(Hero, args.update_id)
            assert hero is not None
            hero.sqlmodel_update({"secret_name": args.secret_name})
            session.add(hero)
            victim = await session.get(Hero, args.delete_id)
            assert victim is not None
            await session.delete(victim)
