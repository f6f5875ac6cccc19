from __future__ import annotations

import pytest
from sqlmodel import select

from herorepo import (
    ConfigurationError,
    Database,
    DeadlockError,
    InvalidDataError,
    NotFoundError,
    Repository,
    RetryPolicy,
    TransactionError,
    UniqueViolationError,
    UnitOfWork,
)

from ..models import Hero, Team
from .helpers import UNIT_OF_WORK_OBJECTS, cyclic_garbage, hero_rows, seed, team_names

pytestmark = pytest.mark.asyncio


class Boom(Exception):
    pass


async def test_commits_on_normal_exit(db: Database) -> None:
    async with db.unit_of_work() as uow:
        await uow.repository(Team).create({"name": "Avengers"})
    assert await team_names(db) == ["Avengers"]


async def test_rolls_back_on_error_and_reraises_it_unchanged(db: Database) -> None:
    error = Boom("stop")
    with pytest.raises(Boom) as caught:
        async with db.unit_of_work() as uow:
            await uow.repository(Team).create({"name": "Avengers"})
            raise error
    assert caught.value is error
    assert await team_names(db) == []


async def test_savepoint_rolls_back_only_its_block(db: Database) -> None:
    async with db.unit_of_work() as uow:
        teams = uow.repository(Team)
        await teams.create({"name": "Outer before"})
        with pytest.raises(Boom):
            async with uow.savepoint():
                await teams.create({"name": "Inner"})
                raise Boom
        await teams.create({"name": "Outer after"})
        assert await teams.count() == 2
    assert await team_names(db) == ["Outer after", "Outer before"]


async def test_savepoint_that_succeeds_is_kept(db: Database) -> None:
    async with db.unit_of_work() as uow, uow.savepoint():
        await uow.repository(Team).create({"name": "Inner"})
    assert await team_names(db) == ["Inner"]


async def test_nested_savepoints(db: Database) -> None:
    async with db.unit_of_work() as uow:
        teams = uow.repository(Team)
        async with uow.savepoint():
            await teams.create({"name": "Level 1"})
            with pytest.raises(Boom):
                async with uow.savepoint():
                    await teams.create({"name": "Level 2"})
                    raise Boom
    assert await team_names(db) == ["Level 1"]


async def test_savepoint_recovers_from_a_constraint_error(db: Database) -> None:
    async with db.unit_of_work() as uow:
        teams = uow.repository(Team)
        await teams.create({"name": "Avengers"})
        with pytest.raises(UniqueViolationError):
            async with uow.savepoint():
                await teams.create({"name": "Avengers"})
        await teams.create({"name": "X-Force"})
    assert await team_names(db) == ["Avengers", "X-Force"]


async def test_after_an_error_the_session_needs_a_rollback(db: Database) -> None:
    async with db.unit_of_work() as uow:
        teams = uow.repository(Team)
        await teams.create({"name": "Avengers"})
        with pytest.raises(UniqueViolationError):
            await teams.create({"name": "Avengers"})
        with pytest.raises(TransactionError, match=r"rolled back before.*uow\.rollback\(\)"):
            await teams.count()
        await uow.rollback()
        await teams.create({"name": "X-Force"})
    assert await team_names(db) == ["X-Force"]


async def test_exit_after_an_unhandled_failure_commits_nothing(db: Database) -> None:
    with pytest.raises(TransactionError, match="Nothing of it was saved"):
        async with db.unit_of_work() as uow:
            teams = uow.repository(Team)
            await teams.create({"name": "Avengers"})
            try:
                await teams.create({"name": "Avengers"})
            except UniqueViolationError:
                pass  # swallowed without a rollback: the commit must refuse
    assert await team_names(db) == []


async def test_explicit_commit_and_rollback(db: Database) -> None:
    with pytest.raises(Boom):
        async with db.unit_of_work() as uow:
            teams = uow.repository(Team)
            await teams.create({"name": "Kept"})
            await uow.commit()
            await teams.create({"name": "Dropped by rollback"})
            await uow.rollback()
            await teams.create({"name": "Dropped by error"})
            raise Boom
    assert await team_names(db) == ["Kept"]


async def test_a_unit_of_work_runs_once(db: Database) -> None:
    uow = db.unit_of_work()
    assert repr(uow) == "<UnitOfWork not started>"
    with pytest.raises(TransactionError, match="not started"):
        _ = uow.session
    async with uow:
        assert repr(uow) == "<UnitOfWork active>"
        with pytest.raises(TransactionError, match="cannot be entered again"):
            async with uow:
                pass
        teams = uow.repository(Team)
    with pytest.raises(TransactionError, match="ended"):
        async with uow:
            pass
    with pytest.raises(TransactionError, match="ended"):
        uow.repository(Team)
    with pytest.raises(TransactionError, match="unit of work has ended"):
        await teams.count()
    with pytest.raises(TransactionError, match="ended"):
        await uow.commit()


async def test_objects_stay_usable_after_commit(db: Database) -> None:
    async with db.unit_of_work() as uow:
        team = await uow.repository(Team).create({"name": "Avengers"})
    assert team.name == "Avengers"
    assert team.id is not None


async def test_uow_session_takes_plain_sqlmodel_queries(db: Database) -> None:
    await seed(db)
    async with db.unit_of_work() as uow:
        names = (await uow.session.exec(select(Hero.name).order_by(Hero.name))).all()
    assert names == ["Deadpond", "Rusty-Man", "Spider-Boy"]


# --- the reference's transfer_hero, in herorepo -----------------------------------------------


class NotInTeamError(Exception):
    pass


async def transfer_hero(db: Database, hero_id: int, from_team_id: int, to_team_id: int) -> None:
    async with db.unit_of_work() as uow:
        heroes = uow.repository(Hero)
        hero = await heroes.get_one(hero_id)
        if hero.team_id != from_team_id:
            raise NotInTeamError(f"{hero.name} is not in team {from_team_id}")
        await uow.repository(Team).get_one(to_team_id)
        await heroes.update(hero, {"team_id": to_team_id})


async def test_transfer_hero_moves_the_hero(db: Database) -> None:
    ids = await seed(db)
    await transfer_hero(db, ids["Deadpond"], ids["X-Force"], ids["Avengers"])
    rows = {r["name"]: r for r in await hero_rows(db)}
    assert rows["Deadpond"]["team_id"] == ids["Avengers"]


async def test_transfer_hero_refuses_a_hero_not_in_the_source_team(db: Database) -> None:
    ids = await seed(db)
    before = await hero_rows(db)
    with pytest.raises(NotInTeamError):
        await transfer_hero(db, ids["Deadpond"], ids["Avengers"], ids["X-Force"])
    with pytest.raises(NotFoundError, match="Team with the id asked for"):
        await transfer_hero(db, ids["Deadpond"], ids["X-Force"], -1)
    assert await hero_rows(db) == before


async def test_unit_of_work_from_a_sessionmaker(db: Database) -> None:
    async with UnitOfWork(db.sessionmaker) as uow:
        await uow.repository(Team).create({"name": "Direct"})
    assert await team_names(db) == ["Direct"]


async def test_a_write_after_a_failure_is_refused_before_touching_the_session(db: Database) -> None:
    async with db.unit_of_work() as uow:
        teams = uow.repository(Team)
        await teams.create({"name": "Avengers"})
        with pytest.raises(UniqueViolationError):
            await teams.create({"name": "Avengers"})
        with pytest.raises(TransactionError, match="must be rolled back"):
            await teams.create({"name": "X-Force"})
        with pytest.raises(TransactionError, match="must be rolled back"):
            await teams.update(1, {"name": "X"})
        await uow.rollback()
        await teams.create({"name": "X-Force"})
    assert await team_names(db) == ["X-Force"]


class TeamRepository(Repository[Team]):
    async def by_name(self, name: str) -> Team:
        return await self.find_one(name=name)


async def test_uow_repository_takes_a_model_or_a_repository_class(write_db: Database) -> None:
    async with write_db.unit_of_work() as uow:
        await uow.repository(Team).create({"name": "Preventers", "headquarters": "Sharp Tower"})
        teams = uow.repository(TeamRepository)
        assert isinstance(teams, TeamRepository)
        assert teams.session is uow.session
        assert (await teams.by_name("Preventers")).headquarters == "Sharp Tower"


async def test_a_relationship_in_data_names_the_foreign_key_to_set(write_db: Database) -> None:
    async with write_db.unit_of_work() as uow:
        team = await uow.repository(Team).create({"name": "Z-Force", "headquarters": "Sister"})
        with pytest.raises(InvalidDataError, match=r"Hero\.team is a relationship.*set team_id"):
            await uow.repository(Hero).create({"name": "x", "secret_name": "y", "team": team})
        with pytest.raises(InvalidDataError, match=r"Team\.heroes is a relationship.*Hero rows"):
            await uow.repository(Team).update(team, {"heroes": []})


async def test_name_and_attempt_are_what_telemetry_and_tags_read(db: Database) -> None:
    async with db.unit_of_work(name="rename") as uow:
        assert (uow.name, uow.attempt) == ("rename", 1)
    async with db.unit_of_work() as uow:
        assert uow.name is None

    seen: list[tuple[str | None, int]] = []

    async def flaky_work(uow: UnitOfWork) -> None:
        seen.append((uow.name, uow.attempt))
        if uow.attempt == 1:
            raise DeadlockError("lost a race")

    await db.run(flaky_work, retry=RetryPolicy(base_delay=0, max_delay=0))
    qualname = flaky_work.__qualname__
    await db.run(flaky_work, name="flaky", retry=RetryPolicy(base_delay=0, max_delay=0))
    assert seen == [(qualname, 1), (qualname, 2), ("flaky", 1), ("flaky", 2)]
    with pytest.raises(ConfigurationError, match="name must be a str"):
        db.unit_of_work(name=3)  # type: ignore[arg-type]


async def test_a_finished_unit_of_work_leaves_no_cycles_behind(db: Database) -> None:
    # Freed by reference counting as soon as nobody holds it: a reference cycle would keep the
    # session and its identity map alive until the cycle collector runs, costing every request.
    await seed(db)  # three heroes
    with cyclic_garbage() as kept:
        for _ in range(3):
            async with db.unit_of_work() as uow:
                heroes = await uow.repository(Hero).list(limit=2)
                assert len(heroes) == 2
                await uow.repository(Team).create({"name": f"T{len(heroes)}{_}"})
        del uow, heroes
    assert not kept & UNIT_OF_WORK_OBJECTS


async def test_a_unit_of_work_with_an_isolation_level_connects_at_once(db: Database) -> None:
    # SQLAlchemy sets the level as the connection is made (a round trip on MySQL and SQLite):
    # that happens at `async with`, shielded, not inside the first statement, where a
    # cancellation would leave the connection checked out with no owner.
    level = "SERIALIZABLE"
    async with db.unit_of_work(isolation_level=level):
        assert db.pool_stats().checked_out == 1
    async with db.unit_of_work():
        assert db.pool_stats().checked_out == 0  # the others connect at their first statement
    assert db.pool_stats().checked_out == 0
