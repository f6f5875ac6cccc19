"""``Repository.preload()``: relationships loaded onto objects already read, one SELECT each."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from sqlalchemy import inspect

from herorepo import (
    Database,
    DetachedLoadError,
    InvalidDataError,
    InvalidLoadError,
    SoftDelete,
    TenantScope,
    joined,
)
from herorepo.testing import assert_max_queries, count_queries

from ..models import Hero, HeroMissionLink, Mission, Power, Project, Task, Team
from .helpers import seed

pytestmark = pytest.mark.asyncio


async def seed_powers(db: Database, ids: dict[str, int]) -> None:
    async with db.unit_of_work() as uow:
        await uow.repository(Power).add_many(
            [
                {"name": "regeneration", "hero_id": ids["Deadpond"]},
                {"name": "flight", "hero_id": ids["Rusty-Man"]},
                {"name": "armour", "hero_id": ids["Rusty-Man"]},
            ]
        )


async def test_one_to_many_is_one_statement(db: Database) -> None:
    ids = await seed(db)
    async with db.unit_of_work() as uow:
        teams = await uow.repository(Team).list(order_by="name")
        with count_queries(db) as queries:
            same = await uow.repository(Team).preload(teams, load=[Team.heroes])
        assert queries.count == 1, queries
        assert same is teams
        assert "hr_team " not in queries.statements[0].split("WHERE")[0]  # teams not re-read
    by_team = {t.name: sorted(h.name for h in t.heroes) for t in teams}
    assert by_team == {"Avengers": ["Rusty-Man", "Spider-Boy"], "X-Force": ["Deadpond"]}
    # Each hero's team is the team it was loaded for, readable after the unit of work.
    assert all(h.team is t for t in teams for h in t.heroes)
    assert {h.id for t in teams for h in t.heroes} == {
        ids["Deadpond"],
        ids["Spider-Boy"],
        ids["Rusty-Man"],
    }


async def test_many_to_one_onto_objects_of_an_ended_unit_of_work(db: Database) -> None:
    await seed(db)
    async with db.unit_of_work() as uow:
        await uow.repository(Hero).create({"name": "Loner", "secret_name": "l"})
        heroes = await uow.repository(Hero).list(order_by="name")
    with pytest.raises(DetachedLoadError):
        _ = heroes[0].team
    async with db.unit_of_work(read_only=True) as uow:
        with count_queries(db) as queries:
            await uow.repository(Hero).preload(heroes, load=[Hero.team])
        assert queries.count == 1, queries
    teams = {h.name: h.team.name if h.team else None for h in heroes}
    assert teams == {
        "Deadpond": "X-Force",
        "Loner": None,
        "Rusty-Man": "Avengers",
        "Spider-Boy": "Avengers",
    }
    # Two heroes of one team share one Team object, read once.
    rusty, spider = heroes[2], heroes[3]
    assert rusty.team is spider.team
    assert inspect(heroes[0]).detached


async def test_a_chain_is_one_statement_per_level(db: Database) -> None:
    ids = await seed(db)
    await seed_powers(db, ids)
    async with db.unit_of_work() as uow:
        teams = await uow.repository(Team).list(order_by="name")
    async with db.unit_of_work(read_only=True) as uow:
        with count_queries(db) as queries:
            # Shared prefixes load once; "heroes.team" is known from the first level.
            await uow.repository(Team).preload(
                teams,
                load=[Team.heroes, (Team.heroes, Hero.powers), "heroes.team", joined("heroes")],
            )
        assert queries.count == 2, queries
    powers = {h.name: sorted(p.name for p in h.powers) for t in teams for h in t.heroes}
    assert powers == {
        "Deadpond": ["regeneration"],
        "Rusty-Man": ["armour", "flight"],
        "Spider-Boy": [],
    }


async def test_a_chain_through_many_to_one(db: Database) -> None:
    ids = await seed(db)
    await seed_powers(db, ids)
    async with db.unit_of_work() as uow:
        powers = await uow.repository(Power).list(order_by="name")
        with assert_max_queries(db, 2):
            await uow.repository(Power).preload(powers, load=[(Power.hero, Hero.team)])
        assert [(p.hero.name, p.hero.team.name if p.hero.team else None) for p in powers] == [
            ("Rusty-Man", "Avengers"),
            ("Rusty-Man", "Avengers"),
            ("Deadpond", "X-Force"),
        ]


async def add_missions(db: Database, ids: dict[str, int]) -> None:
    async with db.unit_of_work() as uow:
        rescue, heist, _ = await uow.repository(Mission).add_many(
            [
                {"name": "rescue", "leader_id": ids["Deadpond"]},
                {"name": "heist", "leader_id": ids["Spider-Boy"]},  # whose age is NULL
                {"name": "nap"},
            ]
        )
        links = [(rescue, "Deadpond"), (rescue, "Rusty-Man"), (heist, "Rusty-Man")]
        await uow.repository(HeroMissionLink).add_many(
            [{"mission_id": m.id, "hero_id": ids[name]} for m, name in links],
            allow={"mission_id", "hero_id"},
        )


async def test_many_to_many_through_the_link_table(db: Database) -> None:
    ids = await seed(db)
    await add_missions(db, ids)
    async with db.unit_of_work() as uow:
        missions = await uow.repository(Mission).list(order_by="id")
    async with db.unit_of_work(read_only=True) as uow:
        with count_queries(db) as queries:
            await uow.repository(Mission).preload(missions, load=[Mission.heroes])
        assert queries.count == 1, queries
        assert "hr_mission " not in queries.statements[0].split("WHERE")[0]
    assert [sorted(h.name for h in m.heroes) for m in missions] == [
        ["Deadpond", "Rusty-Man"],
        ["Rusty-Man"],
        [],
    ]
    # Rusty-Man is on two missions: one object, in both lists.
    rusty = {id(h) for m in missions[:2] for h in m.heroes if h.name == "Rusty-Man"}
    assert len(rusty) == 1


async def test_a_join_condition_of_its_own_is_kept(db: Database) -> None:
    ids = await seed(db)
    await add_missions(db, ids)
    async with db.unit_of_work() as uow:
        missions = await uow.repository(Mission).list(order_by="id")
        with count_queries(db) as queries:
            await uow.repository(Mission).preload(missions, load=[Mission.adult_leader, "leader"])
        assert queries.count == 2, queries
        # adult_leader joins on the leader *and* an age of 18 or more: Spider-Boy's is NULL.
        assert [m.adult_leader.name if m.adult_leader else None for m in missions] == [
            "Deadpond",
            None,
            None,
        ]
        assert [m.leader.name if m.leader else None for m in missions] == [
            "Deadpond",
            "Spider-Boy",
            None,
        ]


async def test_loaded_relationships_are_kept_and_need_no_statement(db: Database) -> None:
    await seed(db)
    async with db.unit_of_work() as uow:
        teams = uow.repository(Team)
        loaded = await teams.list(order_by="name", load=[Team.heroes])
        new = Hero(name="Pending", secret_name="p")
        loaded[0].heroes.append(new)  # a change not flushed yet
        with count_queries(db) as queries:
            await teams.preload(loaded, load=[Team.heroes])
        assert queries.count == 0, queries
        assert new in loaded[0].heroes
        await uow.rollback()


async def test_large_lists_are_read_in_batches(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    await seed(db)
    monkeypatch.setattr("herorepo._preload.MAX_PARAMETERS", 1)  # one key per statement
    async with db.unit_of_work(read_only=True) as uow:
        heroes = await uow.repository(Hero).list(order_by="name")
        with count_queries(db) as queries:
            await uow.repository(Hero).preload(heroes, load=[Hero.team])
        assert queries.count == 2, queries  # two distinct teams
        assert [h.team.name if h.team else None for h in heroes] == [
            "X-Force",
            "Avengers",
            "Avengers",
        ]
        none: list[Hero] = []
        with count_queries(db) as queries:
            assert await uow.repository(Hero).preload(none, load=[Hero.team]) == []
        assert queries.count == 0


async def test_bad_specs_and_objects_are_refused_before_any_sql(db: Database) -> None:
    await seed(db)
    async with db.unit_of_work() as uow:
        heroes = await uow.repository(Hero).list()
        teams = await uow.repository(Team).list()
        with count_queries(db) as queries:
            with pytest.raises(InvalidLoadError, match="column, not a relationship"):
                await uow.repository(Hero).preload(heroes, load=[Hero.name])
            with pytest.raises(InvalidLoadError, match="no relationship 'nope'"):
                await uow.repository(Hero).preload(heroes, load=["nope"])
            with pytest.raises(InvalidDataError, match="got Team at position 0"):
                await uow.repository(Hero).preload(teams, load=[Hero.team])  # type: ignore[arg-type]
            with pytest.raises(InvalidDataError, match="not stored yet"):
                await uow.repository(Hero).preload(
                    [Hero(name="New", secret_name="n")], load=[Hero.team]
                )
        assert queries.count == 0, queries


# --- policies ------------------------------------------------------------------------------------


@pytest_asyncio.fixture
async def tenants(db: Database) -> AsyncIterator[Database]:
    """Tenant a's project with tasks a0, a1 and a2 (a2 soft-deleted), and a task of tenant b
    pointing at a's project."""
    async with Database(db.url, policies=[TenantScope(), SoftDelete()]) as scoped:
        async with scoped.unit_of_work(tenant="a") as uow:
            project = await uow.repository(Project).create({"code": "p1"})
            tasks = await uow.repository(Task).add_many(
                [{"title": f"a{i}", "project_id": project.id} for i in range(3)]
            )
            await uow.repository(Task).delete(tasks[2])
        async with scoped.unit_of_work(tenant="b") as uow:
            await uow.repository(Project).create({"code": "p1"})
        async with scoped.unit_of_work(all_tenants=True) as uow:
            await uow.repository(Task).create(
                {"tenant_id": "b", "title": "b-on-a", "project_id": project.id}
            )
        yield scoped


async def test_another_tenants_rows_are_not_attached(tenants: Database) -> None:
    async with tenants.unit_of_work(tenant="a") as uow:
        projects = await uow.repository(Project).list()
    async with tenants.unit_of_work(tenant="a", read_only=True) as uow:
        with count_queries(tenants) as queries:
            await uow.repository(Project).preload(projects, load=[Project.tasks])
        assert queries.count == 1, queries
    assert sorted(t.title for t in projects[0].tasks) == ["a0", "a1"]

    async with tenants.unit_of_work(tenant="a") as uow:
        projects = await uow.repository(Project).list()
        await uow.repository(Project).with_deleted().preload(projects, load=[Project.tasks])
        assert sorted(t.title for t in projects[0].tasks) == ["a0", "a1", "a2"]
        # Many-to-one, from the task side: b's task cannot be read as a at all.
        tasks = await uow.repository(Task).list(order_by="title")
        await uow.repository(Task).preload(tasks, load=[Task.project])
        assert {(t.title, t.project.code if t.project else None) for t in tasks} == {
            ("a0", "p1"),
            ("a1", "p1"),
        }
