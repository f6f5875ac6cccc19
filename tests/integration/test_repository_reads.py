from __future__ import annotations

import pytest

from herorepo import (
    ConfigurationError,
    Database,
    InvalidDataError,
    MultipleResultsError,
    NotFoundError,
    Repository,
)

from ..models import Hero, NotATable, Team
from .helpers import seed

pytestmark = pytest.mark.asyncio


async def test_get_returns_the_row_or_none(db: Database) -> None:
    ids = await seed(db)
    async with db.session() as session:
        heroes = Repository(session, Hero)
        hero = await heroes.get(ids["Deadpond"])
        assert hero is not None
        assert (hero.name, hero.secret_name, hero.age) == ("Deadpond", "Dive Wilson", 30)
        assert await heroes.get(-1) is None


async def test_get_one_raises_not_found_naming_model_and_key(db: Database) -> None:
    async with db.session() as session:
        with pytest.raises(NotFoundError) as caught:
            await Repository(session, Hero).get_one(12345)
    # The key is a value the caller gave: it stays out of the message, on the error instead.
    assert str(caught.value) == "Hero with the id asked for does not exist."
    assert caught.value.model == "Hero"
    assert caught.value.ident == 12345
    assert isinstance(caught.value, LookupError)


async def test_get_many_keeps_the_order_given_and_skips_missing(db: Database) -> None:
    ids = await seed(db)
    async with db.session() as session:
        heroes = Repository(session, Hero)
        wanted = [ids["Rusty-Man"], -5, ids["Deadpond"], ids["Rusty-Man"]]
        found = await heroes.get_many(wanted)
        assert [h.name for h in found] == ["Rusty-Man", "Deadpond"]
        assert await heroes.get_many([]) == []


async def test_a_key_of_the_wrong_type_is_refused_the_same_way_everywhere(db: Database) -> None:
    # PostgreSQL refused "abc" for an integer key; SQLite and MySQL compared it and found nothing.
    ids = await seed(db)
    async with db.unit_of_work() as uow:
        heroes = uow.repository(Hero)
        for call in (
            lambda: heroes.get("abc"),
            lambda: heroes.get_one("abc"),
            lambda: heroes.get_many([ids["Deadpond"], "abc"]),
            lambda: heroes.update("abc", {"age": 1}),
            lambda: heroes.delete("abc"),
            lambda: heroes.get(None),
            lambda: heroes.get(2**70),  # no row can have it: PostgreSQL refused, others not
            lambda: heroes.get_one(-(2**31) - 1),
        ):
            with pytest.raises(InvalidDataError, match=r"The key Hero\.id (does not take|cannot)"):
                await call()
        # A key that converts exactly is taken as that key, on every backend.
        found = await heroes.get(str(ids["Deadpond"]))
        assert found is not None
        assert found.name == "Deadpond"
        assert [h.name for h in await heroes.get_many([str(ids["Rusty-Man"])])] == ["Rusty-Man"]


async def test_get_many_takes_more_keys_than_a_statement_may_carry(db: Database) -> None:
    # asyncpg refuses more than 32,767 parameters in one statement, SQLite 32,766.
    ids = await seed(db)
    wanted = [*range(-40_000, 0), ids["Deadpond"], ids["Rusty-Man"]]
    async with db.session() as session:
        found = await Repository(session, Hero).get_many(reversed(wanted))
    assert [h.name for h in found] == ["Rusty-Man", "Deadpond"]


async def test_find_returns_one_or_none_and_refuses_several(db: Database) -> None:
    await seed(db)
    async with db.session() as session:
        heroes = Repository(session, Hero)
        found = await heroes.find(name="Deadpond")
        assert found is not None
        assert found.secret_name == "Dive Wilson"
        assert await heroes.find(Hero.age > 100) is None
        with pytest.raises(MultipleResultsError, match="More than one Hero"):
            await heroes.find(Hero.age > 1)


async def test_find_one_raises_not_found(db: Database) -> None:
    await seed(db)
    async with db.session() as session:
        with pytest.raises(NotFoundError, match=r"No Hero matches name=\.\.\.\."):
            await Repository(session, Hero).find_one(name="Nobody")


async def test_list_filters_orders_and_pages(db: Database) -> None:
    ids = await seed(db)
    async with db.session() as session:
        heroes = Repository(session, Hero)
        assert [h.name for h in await heroes.list()] == ["Deadpond", "Spider-Boy", "Rusty-Man"]
        assert [h.name for h in await heroes.list(order_by=Hero.name)] == [
            "Deadpond",
            "Rusty-Man",
            "Spider-Boy",
        ]
        assert [h.name for h in await heroes.list(Hero.age > 29, order_by=Hero.age.desc())] == [
            "Rusty-Man",
            "Deadpond",
        ]
        by_team = await heroes.list(team_id=ids["Avengers"], order_by=[Hero.name])
        assert [h.name for h in by_team] == ["Rusty-Man", "Spider-Boy"]
        assert [h.name for h in await heroes.list(age=None)] == ["Spider-Boy"]
        page = await heroes.list(order_by=Hero.name, offset=1, limit=1)
        assert [h.name for h in page] == ["Rusty-Man"]
        assert await heroes.list(limit=0) == []


async def test_count_and_exists(db: Database) -> None:
    ids = await seed(db)
    async with db.session() as session:
        heroes = Repository(session, Hero)
        assert await heroes.count() == 3
        assert await heroes.count(Hero.age >= 30) == 2
        assert await heroes.count(team_id=ids["Avengers"]) == 2
        assert await heroes.exists(name="Deadpond") is True
        assert await heroes.exists(Hero.age > 100) is False
        assert await Repository(session, Team).count(name="Nobody") == 0


@pytest.mark.parametrize("method", ["list", "count", "exists", "find"])
async def test_unknown_filter_keyword_is_a_clear_error(db: Database, method: str) -> None:
    async with db.session() as session:
        heroes = Repository(session, Hero)
        with pytest.raises(InvalidDataError, match=r"Hero has no column 'nmae'.*name, secret_name"):
            await getattr(heroes, method)(nmae="Deadpond")


@pytest.mark.parametrize(("name", "value"), [("offset", -1), ("limit", -3), ("limit", 2.5)])
async def test_negative_offset_or_limit_is_refused(db: Database, name: str, value: object) -> None:
    async with db.session() as session:
        with pytest.raises(InvalidDataError, match=f"{name} must be a whole number from 0"):
            await Repository(session, Hero).list(**{name: value})  # type: ignore[arg-type]


async def test_subclass_takes_the_model_from_its_type_parameter(db: Database) -> None:
    class HeroRepository(Repository[Hero]):
        async def adults(self) -> list[Hero]:
            return await self.list(Hero.age >= 18, order_by=Hero.name)

    await seed(db)
    async with db.session() as session:
        heroes = HeroRepository(session)
        assert heroes.model is Hero
        assert [h.name for h in await heroes.adults()] == ["Deadpond", "Rusty-Man"]
        assert repr(heroes) == "<HeroRepository of Hero>"


async def test_repository_needs_a_table_model(db: Database) -> None:
    async with db.session() as session:
        with pytest.raises(ConfigurationError, match="NotATable is not a table model"):
            Repository(session, NotATable)
        with pytest.raises(ConfigurationError, match="Repository needs a model"):
            Repository(session)
        with pytest.raises(ConfigurationError, match="not a SQLModel model class"):
            Repository(session, int)  # type: ignore[type-var]
