"""Projections: reads into response schemas, from only the columns they need, on every backend."""

from __future__ import annotations

import pytest
from pydantic import BaseModel
from sqlmodel import SQLModel

from herorepo import (
    Database,
    InvalidLoadError,
    MultipleResultsError,
    NotFoundError,
    Repository,
    SoftDelete,
    TenantScope,
    load_plan,
)
from herorepo.testing import assert_max_queries, count_queries

from ..models import Hero, Power, Project, Task, Team
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


async def test_a_schema_of_another_model_is_refused_naming_the_fields(db: Database) -> None:
    async with db.session() as session:
        with pytest.raises(
            InvalidLoadError, match=r"heroes is neither a column nor a relationship of it"
        ):
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


# --- nested schemas ------------------------------------------------------------------------------


class TeamPublic(SQLModel):
    id: int
    name: str


class PowerPublic(SQLModel):
    name: str


class HeroWithPowers(SQLModel):
    name: str
    powers: list[PowerPublic]


class TeamWithHeroesAndPowers(SQLModel):
    name: str
    heroes: list[HeroWithPowers] = []


class HeroWithTeam(SQLModel):
    id: int
    name: str
    team: TeamPublic | None


async def seed_powers(db: Database, ids: dict[str, int]) -> None:
    async with db.unit_of_work() as uow:
        await uow.repository(Power).add_many(
            [
                {"name": "healing", "hero_id": ids["Deadpond"]},
                {"name": "wit", "hero_id": ids["Deadpond"]},
                {"name": "armour", "hero_id": ids["Rusty-Man"]},
            ]
        )
        empty = await uow.repository(Team).create({"name": "Nobody"})
        assert empty.id is not None
        ids["Nobody"] = empty.id
        loner = await uow.repository(Hero).create({"name": "Loner", "secret_name": "?"})
        assert loner.id is not None
        ids["Loner"] = loner.id


async def test_a_nested_list_is_read_with_one_statement_of_its_columns(db: Database) -> None:
    ids = await seed(db)
    await seed_powers(db, ids)
    async with db.session() as session:
        teams = Repository(session, Team).into(TeamWithHeroes)
        with count_queries(db) as log:
            found = await teams.list(order_by="name")
        assert log.count == 2, log  # the teams, then all their heroes
        heroes_select = log.statements[1].split("FROM")[0]
        assert "secret_name" not in heroes_select
        assert "team_id" in heroes_select  # the link, to group them by
        assert not session.identity_map
        assert [type(t) for t in found] == [TeamWithHeroes] * 3
        by_name = {t.name: [h.name for h in t.heroes] for t in found}
        # In the order of the heroes' primary key, as created.
        assert by_name == {
            "Avengers": ["Spider-Boy", "Rusty-Man"],
            "Nobody": [],
            "X-Force": ["Deadpond"],
        }
        assert found[0].heroes[1] == HeroPublic(id=ids["Rusty-Man"], name="Rusty-Man", age=48)


async def test_nested_reads_hold_for_every_read_of_a_projection(db: Database) -> None:
    ids = await seed(db)
    async with db.session() as session:
        teams = Repository(session, Team).into(TeamWithHeroes)
        names = {"Avengers": ["Spider-Boy", "Rusty-Man"], "X-Force": ["Deadpond"]}

        def check(team: TeamWithHeroes | None) -> None:
            assert team is not None
            assert [h.name for h in team.heroes] == names[team.name]

        with assert_max_queries(db, 2):
            check(await teams.get(ids["Avengers"]))
        with assert_max_queries(db, 2):
            check(await teams.get_one(ids["X-Force"]))
        with assert_max_queries(db, 2):
            many = await teams.get_many([ids["X-Force"], ids["Avengers"]])
        assert [t.name for t in many] == ["X-Force", "Avengers"]
        for team in many:
            check(team)
        with assert_max_queries(db, 2):
            check(await teams.find(name="Avengers"))
        with assert_max_queries(db, 1):  # two match: refused before the heroes are read
            with pytest.raises(MultipleResultsError):
                await teams.find()
        with assert_max_queries(db, 3):
            page = await teams.page(order_by="name", limit=1, count=True)
        assert (page.total, [t.name for t in page.items]) == (2, ["Avengers"])
        check(page.items[0])
        with assert_max_queries(db, 2):
            first = await teams.keyset(order_by="-name", limit=1)
        assert [t.name for t in first.items] == ["X-Force"]
        check(first.items[0])
        assert first.next_cursor is not None
        rest = await teams.keyset(order_by="-name", after=first.next_cursor)
        assert [t.name for t in rest.items] == ["Avengers"]
        check(rest.items[0])
        with count_queries(db) as log:
            streamed = [t async for t in teams.stream(order_by="name", batch_size=1)]
        assert [t.name for t in streamed] == ["Avengers", "X-Force"]
        for team in streamed:
            check(team)
        # Per batch: the teams, then their heroes; and the batch that finds no more teams.
        assert log.count == 5, log


async def test_nested_reads_go_one_statement_per_relationship_and_level(db: Database) -> None:
    ids = await seed(db)
    await seed_powers(db, ids)
    async with db.session() as session:
        with assert_max_queries(db, 3):
            teams = await Repository(session, Team).into(TeamWithHeroesAndPowers).list()
        powers = {h.name: [p.name for p in h.powers] for t in teams for h in t.heroes}
        assert powers == {
            "Spider-Boy": [],
            "Rusty-Man": ["armour"],
            "Deadpond": ["healing", "wit"],
        }


async def test_a_nested_object_is_read_by_its_foreign_key(db: Database) -> None:
    ids = await seed(db)
    await seed_powers(db, ids)
    async with db.session() as session:
        heroes = Repository(session, Hero).into(HeroWithTeam)
        with count_queries(db) as log:
            found = await heroes.list(order_by="name")
        assert log.count == 2, log
        assert "hr_team" in log.statements[1].split("WHERE")[0]
        assert "headquarters" not in log.statements[1]
        teams = {h.name: h.team.name if h.team else None for h in found}
        assert teams == {
            "Deadpond": "X-Force",
            "Loner": None,
            "Rusty-Man": "Avengers",
            "Spider-Boy": "Avengers",
        }
        with count_queries(db) as log:
            loner = await heroes.get_one(ids["Loner"])
        assert (loner.team, log.count) == (None, 1)  # no team: no second statement


class TaskPublic(SQLModel):
    title: str


class ProjectWithTasks(SQLModel):
    code: str
    tasks: list[TaskPublic]


async def test_policies_hold_for_nested_rows(write_db: Database) -> None:
    async with Database(write_db.url, policies=[TenantScope(), SoftDelete()]) as db:
        async with db.unit_of_work(tenant="a") as uow:
            project = await uow.repository(Project).create({"code": "x"})
            tasks = await uow.repository(Task).add_many(
                [
                    {"title": "kept", "project_id": project.id},
                    {"title": "gone", "project_id": project.id},
                ]
            )
            await uow.repository(Task).delete(tasks[1].id)
        async with db.unit_of_work(tenant="b") as uow:
            # The foreign key does not know tenants: b's task points at a's project.
            await uow.repository(Task).add_many([{"title": "theirs", "project_id": project.id}])
        async with db.unit_of_work(tenant="a") as uow:
            projects = uow.repository(Project)
            with assert_max_queries(db, 2):
                found = await projects.into(ProjectWithTasks).get_one(project.id)
            assert [t.title for t in found.tasks] == ["kept"]
            everything = await projects.with_deleted().into(ProjectWithTasks).get_one(project.id)
            assert [t.title for t in everything.tasks] == ["kept", "gone"]
        async with db.unit_of_work(all_tenants=True) as uow:
            seen = await uow.repository(Project).into(ProjectWithTasks).get_one(project.id)
            assert [t.title for t in seen.tasks] == ["kept", "theirs"]


class HeroTeamAsText(SQLModel):
    name: str
    team: str | None = None


class TeamWithOneHero(SQLModel):
    name: str
    heroes: HeroPublic | None = None


class HeroTree(SQLModel):
    name: str
    team: TeamOfTrees | None = None


class TeamOfTrees(SQLModel):
    name: str
    heroes: list[HeroTree] = []


HeroTree.model_rebuild()


async def test_relationship_fields_that_cannot_be_read_are_refused(db: Database) -> None:
    async with db.session() as session:
        heroes = Repository(session, Hero)
        teams = Repository(session, Team)
        with pytest.raises(InvalidLoadError, match=r"HeroTeamAsText.team .*schema of Team"):
            heroes.into(HeroTeamAsText)
        with pytest.raises(InvalidLoadError, match=r"Team.heroes holds a list"):
            teams.into(TeamWithOneHero)
        with pytest.raises(InvalidLoadError, match=r"contains itself"):
            heroes.into(HeroTree)


# --- load plans ----------------------------------------------------------------------------------


async def test_load_plan_loads_what_a_schema_reads(db: Database) -> None:
    ids = await seed(db)
    await seed_powers(db, ids)
    assert load_plan(Team, TeamWithHeroes) == [Team.heroes]
    assert load_plan(Team, TeamWithHeroesAndPowers) == [(Team.heroes, Hero.powers)]
    assert load_plan(Hero, HeroWithTeam) == [Hero.team]
    assert load_plan(Hero, HeroPublic) == []
    async with db.session() as session:
        with assert_max_queries(db, 3):
            teams = await Repository(session, Team).list(
                order_by="name", load=load_plan(Team, TeamWithHeroesAndPowers)
            )
        # Validating reads only loaded attributes: no lazy load, no LazyLoadError.
        out = [TeamWithHeroesAndPowers.model_validate(t, from_attributes=True) for t in teams]
        assert [p.name for p in out[2].heroes[0].powers] == ["healing", "wit"]


async def test_with_load_makes_every_read_load_the_relationships(db: Database) -> None:
    ids = await seed(db)
    async with db.session() as session:
        teams = Repository(session, Team).with_load(*load_plan(Team, TeamWithHeroes))
        with assert_max_queries(db, 2):
            team = await teams.get_one(ids["Avengers"])
        assert [h.name for h in team.heroes] == ["Spider-Boy", "Rusty-Man"]
        with assert_max_queries(db, 2):
            listed = await teams.list(order_by="name")
        assert (
            TeamWithHeroes.model_validate(listed[1], from_attributes=True).heroes[0].id
            == (ids["Deadpond"])
        )
        with pytest.raises(InvalidLoadError):
            teams.with_load(Team.name)
    async with db.unit_of_work() as uow:
        teams = uow.repository(Team).with_load(Team.heroes)
        changed = await teams.update(ids["X-Force"], {"headquarters": "Mexico"})
        # Serialising the changed team reads only loaded attributes.
        out = TeamWithHeroes.model_validate(changed, from_attributes=True)
        assert [h.name for h in out.heroes] == ["Deadpond"]
