"""Projections: reads into response schemas, from only the columns they need, on every backend."""

from __future__ import annotations

import pytest
from pydantic import BaseModel
from sqlmodel import SQLModel

from herorepo import (
    ConfigurationError,
    Database,
    MultipleResultsError,
    NotFoundError,
    Repository,
    SoftDelete,
    TenantScope,
)
from herorepo.testing import count_queries

from ..models import Hero, Project
from .helpers import seed

pytestmark = pytest.mark.asyncio


class HeroPublic(SQLModel):
    id: int
    name: str
    age: int | None = None


class HeroName(BaseModel):  # plain pydantic works too
    name: str
    nickname: str = "none"  # not a column, with a default: left to the schema


class TeamWithHeroes(SQLModel):
    name: str
    heroes: list[HeroPublic]


async def test_reads_return_schemas_from_only_their_columns(db: Database) -> None:
    ids = await seed(db)
    async with db.session() as session:
        heroes = Repository(session, Hero).into(HeroPublic)
        with count_queries(db) as log:
            found = await heroes.get_one(ids["Deadpond"])
        assert found == HeroPublic(id=ids["Deadpond"], name="Deadpond", age=30)
        select_list = log.statements[0].split("FROM")[0]
        assert "secret_name" not in select_list
        assert "team_id" not in select_list
        assert not session.identity_map  # no ORM object was built
        assert await heroes.get(-1) is None
        with pytest.raises(NotFoundError):
            await heroes.get_one(-1)
        many = await heroes.get_many([ids["Rusty-Man"], -5, ids["Deadpond"]])
        assert [h.name for h in many] == ["Rusty-Man", "Deadpond"]
        assert (await heroes.find_one(name="Deadpond")).id == ids["Deadpond"]
        with pytest.raises(MultipleResultsError):
            await heroes.find(Hero.age.is_(None) | (Hero.age > 0))
        listed = await heroes.list(order_by="-name", limit=2)
        assert all(isinstance(h, HeroPublic) for h in listed)
        everyone = await Repository(session, Hero).list(order_by="-name")
        assert [h.name for h in listed] == [h.name for h in everyone[:2]]
        page = await heroes.page(order_by="name", limit=2, count=True)
        assert page.total == len(everyone)
        names = await Repository(session, Hero).into(HeroName).list(order_by="name")
        assert [n.name for n in names] == sorted(h.name for h in everyone)
        assert {n.nickname for n in names} == {"none"}


async def test_keyset_and_stream_walk_every_row_with_the_repositorys_cursors(db: Database) -> None:
    await seed(db)
    async with db.session() as session:
        repo = Repository(session, Hero)
        heroes = repo.into(HeroPublic)
        first = await heroes.keyset(order_by="-age", limit=1)
        assert first.next_cursor is not None
        # A projection's cursor continues the repository's walk, and back.
        second = await repo.keyset(order_by="-age", after=first.next_cursor, limit=1)
        assert second.next_cursor is not None
        rest = await heroes.keyset(order_by="-age", after=second.next_cursor, limit=10)
        walked = [first.items[0].id, second.items[0].id, *(h.id for h in rest.items)]
        expected = [h.id for h in await repo.list(order_by=[Hero.age.desc()])]
        assert sorted(walked) == sorted(expected)
        assert len(walked) == len(set(walked))
        streamed = [h.id async for h in heroes.stream(order_by="name", batch_size=1)]
        assert streamed == [h.id for h in await repo.list(order_by="name")]


async def test_a_nested_schema_is_refused_with_the_way_out(db: Database) -> None:
    async with db.session() as session:
        with pytest.raises(ConfigurationError, match=r"heroes is not a column.*load=\[\.\.\.\]"):
            Repository(session, Hero).into(TeamWithHeroes)


class ProjectPublic(SQLModel):
    id: int
    code: str


async def test_policies_and_views_hold_for_projections(write_db: Database) -> None:
    async with Database(write_db.url, policies=[TenantScope(), SoftDelete()]) as db:
        for tenant in ("a", "b"):
            async with db.unit_of_work(tenant=tenant) as uow:
                await uow.repository(Project).add_many([{"code": "x"}, {"code": "y"}])
        async with db.unit_of_work(tenant="a") as uow:
            projects = uow.repository(Project)
            await projects.delete((await projects.find_one(code="y")).id)
            into = projects.into(ProjectPublic)
            assert [p.code for p in await into.list()] == ["x"]
            assert [p.code for p in await projects.with_deleted().into(ProjectPublic).list()] == [
                "x",
                "y",
            ]
            assert (await into.page(count=True)).total == 1
            assert [p.code async for p in into.stream()] == ["x"]
