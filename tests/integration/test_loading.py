from __future__ import annotations

import pytest
from sqlalchemy import event
from sqlalchemy.orm.exc import DetachedInstanceError
from sqlmodel import select

from herorepo import (
    Database,
    DetachedLoadError,
    InvalidLoadError,
    LazyLoadError,
    Repository,
    eager,
    joined,
)

from ..models import Hero, Power, Team
from .helpers import seed

pytestmark = pytest.mark.asyncio


async def add_powers(db: Database, ids: dict[str, int]) -> None:
    async with db.unit_of_work() as uow:
        await uow.repository(Power).add_many(
            [
                {"name": "Healing", "hero_id": ids["Deadpond"]},
                {"name": "Web", "hero_id": ids["Spider-Boy"]},
                {"name": "Armor", "hero_id": ids["Rusty-Man"]},
                {"name": "Flight", "hero_id": ids["Rusty-Man"]},
            ]
        )


class StatementCounter:
    def __init__(self, db: Database) -> None:
        self.statements: list[str] = []
        self._engine = db.engine.sync_engine

    def __enter__(self) -> StatementCounter:
        event.listen(self._engine, "before_cursor_execute", self._record)
        return self

    def __exit__(self, *args: object) -> None:
        event.remove(self._engine, "before_cursor_execute", self._record)

    def _record(self, conn: object, cursor: object, statement: str, *args: object) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            self.statements.append(statement)


async def test_load_fetches_relationships_with_one_select_each(db: Database) -> None:
    ids = await seed(db)
    async with db.session() as session:
        teams = Repository(session, Team)
        with StatementCounter(db) as counter:
            team = await teams.get_one(ids["Avengers"], load=[Team.heroes])
        assert len(counter.statements) == 2
    assert sorted(h.name for h in team.heroes) == ["Rusty-Man", "Spider-Boy"]


async def test_touching_a_relationship_not_loaded_names_it_and_the_fix(db: Database) -> None:
    ids = await seed(db)
    async with db.session() as session:
        hero = await Repository(session, Hero).get_one(ids["Deadpond"])
        with pytest.raises(LazyLoadError) as caught:
            _ = hero.team
    message = str(caught.value)
    assert "Hero.team was not loaded" in message
    assert "load=[Hero.team]" in message


async def test_lazy_load_on_a_list_result_is_refused_too(db: Database) -> None:
    await seed(db)
    async with db.session() as session:
        teams = await Repository(session, Team).list()
        with pytest.raises(LazyLoadError, match=r"Team\.heroes"):
            _ = teams[0].heroes


async def test_nested_chain_loads_every_level(db: Database) -> None:
    ids = await seed(db)
    await add_powers(db, ids)
    async with db.session() as session:
        teams = await Repository(session, Team).list(load=[(Team.heroes, Hero.powers)])
        powers = {h.name: sorted(p.name for p in h.powers) for t in teams for h in t.heroes}
        shallow = await Repository(session, Hero).list(load=[Hero.team])
        shallow_hero = shallow[0]
        session.expire(shallow_hero, ["powers"])
        with pytest.raises(LazyLoadError, match=r"Hero\.powers was not loaded"):
            _ = shallow_hero.powers
        # A many-to-one whose target is already in the session needs no SQL, so it is served.
        assert teams[0].heroes[0].powers[0].hero is teams[0].heroes[0]
    assert powers == {
        "Deadpond": ["Healing"],
        "Spider-Boy": ["Web"],
        "Rusty-Man": ["Armor", "Flight"],
    }


async def test_after_the_session_closes_unloaded_relationships_stay_unavailable(
    db: Database,
) -> None:
    # Once the session is closed the object is detached: herorepo's DetachedLoadError (still a
    # SQLAlchemy DetachedInstanceError, for code that catches that) names the attribute and fix.
    ids = await seed(db)
    async with db.unit_of_work() as uow:
        hero = await uow.repository(Hero).get_one(ids["Deadpond"])
    with pytest.raises(
        DetachedInstanceError, match=r"Hero\.team was not loaded.*load=\[Hero\.team\]"
    ):
        _ = hero.team
    with pytest.raises(DetachedLoadError, match="unit of work that read this Hero has ended"):
        _ = hero.powers


async def test_dotted_names_resolve_from_the_model(db: Database) -> None:
    ids = await seed(db)
    await add_powers(db, ids)
    async with db.session() as session:
        team = await Repository(session, Team).get_one(ids["X-Force"], load=["heroes.powers"])
    assert [p.name for p in team.heroes[0].powers] == ["Healing"]


async def test_joined_loads_in_the_same_query(db: Database) -> None:
    ids = await seed(db)
    async with db.session() as session:
        heroes = Repository(session, Hero)
        with StatementCounter(db) as counter:
            hero = await heroes.get_one(ids["Deadpond"], load=[joined(Hero.team)])
        assert len(counter.statements) == 1
        assert hero.team is not None
        assert hero.team.name == "X-Force"
        teams = await Repository(session, Team).list(load=[joined(Team.heroes)])
    assert [len(t.heroes) for t in teams] == [2, 1]


async def test_load_applies_to_an_object_already_in_the_session(db: Database) -> None:
    ids = await seed(db)
    async with db.session() as session:
        teams = Repository(session, Team)
        team = await teams.get_one(ids["Avengers"])
        again = await teams.get_one(ids["Avengers"], load=[Team.heroes])
    assert again is team
    assert len(team.heroes) == 2


async def test_get_many_and_find_take_load(db: Database) -> None:
    ids = await seed(db)
    async with db.session() as session:
        heroes = Repository(session, Hero)
        many = await heroes.get_many([ids["Deadpond"], ids["Rusty-Man"]], load=[Hero.team])
        one = await heroes.find_one(name="Spider-Boy", load=[Hero.team])
    assert [h.team.name for h in many if h.team] == ["X-Force", "Avengers"]
    assert one.team is not None


async def test_eager_works_on_your_own_select(db: Database) -> None:
    ids = await seed(db)
    async with db.session() as session:
        statement = select(Team).where(Team.id == ids["Avengers"]).options(*eager(Team.heroes))
        team = (await session.exec(statement)).one()
    assert len(team.heroes) == 2


async def test_expired_attributes_after_rollback_are_a_clear_error(db: Database) -> None:
    ids = await seed(db)
    async with db.session() as session:
        team = await Repository(session, Team).get_one(ids["Avengers"])
        await session.rollback()
        with pytest.raises(LazyLoadError, match="expired attributes"):
            _ = team.name
        await session.refresh(team)
        assert team.name == "Avengers"


async def test_flush_may_still_load_what_it_needs(db: Database) -> None:
    # Inside a flush SQLAlchemy runs in its async bridge, so cascades can load collections.
    ids = await seed(db)
    async with db.unit_of_work() as uow:
        await uow.repository(Team).delete(ids["X-Force"])
    async with db.session() as session:
        assert await Repository(session, Team).count() == 1


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("herose", r"Team has no relationship 'herose'\. Its relationships are: heroes"),
        ("heroes.pwers", r"Hero has no relationship 'pwers'\. Its relationships are: powers, team"),
        (Team.name, r"Team\.name is a column, not a relationship"),
        (Hero.team, r"Hero\.team does not belong to Team"),
        ((Team.heroes, Team.heroes), r"Team\.heroes does not belong to Hero"),
        ((), "empty tuple"),
        (42, "42 is not a load spec"),
    ],
)
async def test_bad_load_specs_fail_when_the_query_is_built(
    db: Database, spec: object, message: str
) -> None:
    async with db.session() as session:
        with StatementCounter(db) as counter, pytest.raises(InvalidLoadError, match=message):
            await Repository(session, Team).list(load=[spec])  # type: ignore[list-item]
        assert counter.statements == []
