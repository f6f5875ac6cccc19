"""The peers: advanced-alchemy's ``SQLAlchemyAsyncRepository`` and fastcrud's ``FastCRUD``.

Both run on a plain ``create_async_engine(url)`` and SQLAlchemy's own ``AsyncSession``
(``expire_on_commit=False``), which is what their documentation uses; SQLModel's session would
warn on their ``session.execute()`` calls. Each is used the way its documentation shows, with
its default flags: advanced-alchemy refreshes after a write (``auto_refresh=True``) and commits
when told (``auto_commit=True``); fastcrud commits by default. Neither has a streaming API, and
fastcrud has no bulk insert: those cells are n/a.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from ..models import BulkHero, Hero, HeroCreate, Row, Team
from .base import MIN_AGE, PAGE_SIZE, Contender, UowArgs


class AdvancedAlchemy(Contender):
    key = "advanced_alchemy"
    label = "advanced-alchemy"
    family = "sqlalchemy"

    async def open(self) -> None:
        from advanced_alchemy.repository import SQLAlchemyAsyncRepository

        class HeroRepo(SQLAlchemyAsyncRepository[Hero]):  # type: ignore[type-var]
            model_type = Hero

        class BulkRepo(SQLAlchemyAsyncRepository[BulkHero]):  # type: ignore[type-var]
            model_type = BulkHero

        class RowRepo(SQLAlchemyAsyncRepository[Row]):  # type: ignore[type-var]
            model_type = Row

        class TeamRepo(SQLAlchemyAsyncRepository[Team]):  # type: ignore[type-var]
            model_type = Team

        self.heroes, self.bulk, self.rows, self.teams = HeroRepo, BulkRepo, RowRepo, TeamRepo
        self.engine = create_async_engine(self.env.url)
        self.count_statements(self.engine)
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)

    async def close(self) -> None:
        await self.engine.dispose()

    async def get_by_pk(self, ident: int) -> Any:
        async with self.sessionmaker() as session:
            return await self.heroes(session=session).get(ident)

    async def list_page(self) -> Sequence[Any]:
        from advanced_alchemy.filters import LimitOffset, OrderBy

        async with self.sessionmaker() as session:
            return await self.heroes(session=session).get_many(
                Hero.age >= MIN_AGE,  # type: ignore[operator]
                OrderBy("name"),
                LimitOffset(limit=PAGE_SIZE, offset=0),
            )

    async def insert_one(self, row: dict[str, Any]) -> Any:
        async with self.sessionmaker() as session:
            return await self.heroes(session=session).add(
                Hero.model_validate(row), auto_commit=True
            )

    async def bulk_insert(self, rows: list[dict[str, Any]]) -> Any:
        async with self.sessionmaker() as session:
            return await self.bulk(session=session).add_many(
                [BulkHero.model_validate(r) for r in rows], auto_commit=True
            )

    async def update_one(self, ident: int, secret_name: str) -> Any:
        async with self.sessionmaker() as session:
            return await self.heroes(session=session).update(
                Hero(id=ident, secret_name=secret_name), auto_commit=True
            )

    async def delete_one(self, ident: int) -> None:
        async with self.sessionmaker() as session:
            await self.heroes(session=session).delete(ident, auto_commit=True)

    async def keyset_page(self, cursor: Any) -> Sequence[Any]:
        from advanced_alchemy.filters import LimitOffset, OrderBy

        where = [] if cursor is None else [Row.id > cursor]
        async with self.sessionmaker() as session:
            return await self.rows(session=session).get_many(
                *where, OrderBy("id"), LimitOffset(limit=PAGE_SIZE, offset=0)
            )

    async def offset_page(self, offset: int) -> Sequence[Any]:
        from advanced_alchemy.filters import LimitOffset, OrderBy

        async with self.sessionmaker() as session:
            return await self.rows(session=session).get_many(
                OrderBy("id"), LimitOffset(limit=PAGE_SIZE, offset=offset)
            )

    async def teams_with_heroes(self) -> Sequence[Any]:
        from advanced_alchemy.filters import OrderBy

        async with self.sessionmaker() as session:
            return await self.teams(session=session).get_many(OrderBy("id"), load=[Team.heroes])

    async def unit_of_work(self, args: UowArgs) -> None:
        async with self.sessionmaker() as session:
            heroes = self.heroes(session=session)
            await heroes.add(Hero.model_validate(args.new))
            await heroes.update(Hero(id=args.update_id, secret_name=args.secret_name))
            await heroes.delete(args.delete_id)
            await session.commit()


class Fastcrud(Contender):
    key = "fastcrud"
    label = "fastcrud"
    family = "sqlalchemy"

    async def open(self) -> None:
        from fastcrud import FastCRUD

        self.heroes = FastCRUD(Hero)
        self.rows = FastCRUD(Row)
        self.teams = FastCRUD(Team)
        self.engine = create_async_engine(self.env.url)
        self.count_statements(self.engine)
        self.sessionmaker = async_sessionmaker(
            self.engine, class_=AsyncSession, expire_on_commit=False
        )

    async def close(self) -> None:
        await self.engine.dispose()

    async def get_by_pk(self, ident: int) -> Any:
        async with self.sessionmaker() as session:
            return await self.heroes.get(session, id=ident)

    async def list_page(self) -> Sequence[Any]:
        async with self.sessionmaker() as session:
            result = await self.heroes.get_multi(
                session,
                offset=0,
                limit=PAGE_SIZE,
                sort_columns="name",
                sort_orders="asc",
                return_total_count=False,
                age__gte=MIN_AGE,
            )
            return result["data"]

    async def insert_one(self, row: dict[str, Any]) -> Any:
        async with self.sessionmaker() as session:
            return await self.heroes.create(session, HeroCreate.model_validate(row))

    async def update_one(self, ident: int, secret_name: str) -> Any:
        async with self.sessionmaker() as session:
            return await self.heroes.update(session, {"secret_name": secret_name}, id=ident)

    async def delete_one(self, ident: int) -> None:
        async with self.sessionmaker() as session:
            await self.heroes.delete(session, id=ident)

    async def keyset_page(self, cursor: Any) -> Sequence[Any]:
        async with self.sessionmaker() as session:
            result = await self.rows.get_multi_by_cursor(
                session, cursor=cursor, limit=PAGE_SIZE, sort_column="id"
            )
            return result["data"]

    async def offset_page(self, offset: int) -> Sequence[Any]:
        async with self.sessionmaker() as session:
            result = await self.rows.get_multi(
                session, offset=offset, limit=PAGE_SIZE, sort_columns="id", return_total_count=False
            )
            return result["data"]

    async def teams_with_heroes(self) -> Sequence[Any]:
        async with self.sessionmaker() as session:
            result = await self.teams.get_multi_joined(
                session,
                join_model=Hero,
                join_prefix="heroes_",
                nest_joins=True,
                relationship_type="one-to-many",
                sort_columns="id",
                limit=None,
                return_total_count=False,
            )
            return result["data"]

    async def unit_of_work(self, args: UowArgs) -> None:
        async with self.sessionmaker() as session:
            await self.heroes.create(session, HeroCreate.model_validate(args.new), commit=False)
            await self.heroes.update(
                session, {"secret_name": args.secret_name}, id=args.update_id, commit=False
            )
            await self.heroes.delete(session, id=args.delete_id, commit=False)
            await session.commit()
