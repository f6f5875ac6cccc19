"""Inferred types of herorepo.integrations.fastapi and herorepo.testing. Checked, never run."""

from collections.abc import Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from typing import Annotated, Any

from fastapi import Depends, FastAPI
from sqlmodel import Field, SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.requests import HTTPConnection
from typing_extensions import assert_type

from herorepo import Database, FilterQuery, FilterSet, Repository, UnitOfWork
from herorepo.integrations.fastapi import (
    DatabaseDep,
    SessionDep,
    UnitOfWorkDep,
    add_exception_handlers,
    filter_query,
    get_database,
    lifespan,
    repository,
)
from herorepo.testing import (
    QueryLog,
    assert_max_queries,
    checked_out_connections,
    count_queries,
    isolated_database,
)


class Hero(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str


class HeroRepository(Repository[Hero]):
    async def named(self, name: str) -> Hero | None:
        return await self.find(name=name)


Heroes = Annotated[Repository[Hero], Depends(repository(Hero))]
HeroRepo = Annotated[HeroRepository, Depends(repository(HeroRepository))]
hero_filters = FilterSet(Hero, filters={"name": ["eq"]})
HeroQuery = Annotated[FilterQuery, Depends(filter_query(hero_filters))]


def check_factories(db: Database) -> None:
    assert_type(repository(Hero), Callable[[UnitOfWork], Coroutine[Any, Any, Repository[Hero]]])
    assert_type(
        repository(HeroRepository), Callable[[UnitOfWork], Coroutine[Any, Any, HeroRepository]]
    )
    assert_type(
        filter_query(hero_filters), Callable[[HTTPConnection], Coroutine[Any, Any, FilterQuery]]
    )
    assert_type(
        filter_query(hero_filters, paging="keyset"),
        Callable[[HTTPConnection], Coroutine[Any, Any, FilterQuery]],
    )
    filter_query(hero_filters, paging="cursor")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    assert_type(lifespan(db), Callable[[FastAPI], AbstractAsyncContextManager[None]])
    app = FastAPI(lifespan=lifespan(db, create_tables=True, metadata=SQLModel.metadata))
    assert_type(add_exception_handlers(app), None)
    app.dependency_overrides[get_database] = lambda: db


async def endpoint(
    heroes: Heroes,
    hero_repo: HeroRepo,
    uow: UnitOfWorkDep,
    session: SessionDep,
    database: DatabaseDep,
    query: HeroQuery,
) -> None:
    # The Annotated aliases keep their types: endpoints see what the dependencies give.
    assert_type(heroes, Repository[Hero])
    assert_type(await heroes.get_one(1), Hero)
    assert_type(await hero_repo.named("x"), Hero | None)
    assert_type(uow, UnitOfWork)
    assert_type(session, AsyncSession)
    assert_type(database, Database)
    assert_type(query.limit, int)


async def check_testing(db: Database) -> None:
    async with isolated_database(db) as test_db:
        assert_type(test_db, Database)
    with count_queries(db) as queries:
        assert_type(queries, QueryLog)
    assert_type(queries.count, int)
    assert_type(queries.statements, list[str])
    with assert_max_queries(db.engine, 2) as log:
        assert_type(log, QueryLog)
    assert_type(checked_out_connections(db), int)
