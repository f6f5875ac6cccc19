"""Quickstart: models, a database, units of work, repository CRUD, eager loading and errors.

Runs on an in-memory SQLite database, or on the database named by DATABASE_URL:

    DATABASE_URL=postgresql+asyncpg://user:password@localhost:5432/app python quickstart.py

It creates the tables ex_team and ex_hero and drops them at the end.
"""

import asyncio

from sqlmodel import Field, Relationship, SQLModel

from herorepo import Database, LazyLoadError, NotFoundError, UniqueViolationError


class Team(SQLModel, table=True):
    __tablename__ = "ex_team"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, unique=True)

    heroes: list["Hero"] = Relationship(back_populates="team")


class Hero(SQLModel, table=True):
    __tablename__ = "ex_hero"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100)
    secret_name: str = Field(max_length=100)
    age: int | None = None
    team_id: int | None = Field(default=None, foreign_key="ex_team.id")

    team: Team | None = Relationship(back_populates="heroes")


class HeroUpdate(SQLModel):
    """What a client may change; the fields it leaves out keep their values."""

    name: str | None = None
    secret_name: str | None = None
    age: int | None = None


async def main() -> None:
    # The URL in DATABASE_URL, or an in-memory SQLite database when it is not set.
    async with Database.from_env(default="sqlite+aiosqlite:///:memory:") as db:
        await db.create_all()  # every table model's table: here, ex_team and ex_hero
        try:
            await tour(db)
        finally:
            await db.drop_all()


async def tour(db: Database) -> None:
    # Create. A unit of work is one transaction; it commits when the block ends without an error.
    async with db.unit_of_work() as uow:
        team = await uow.repository(Team).create({"name": "Preventers"})
        heroes = uow.repository(Hero)
        deadpond = await heroes.create(
            Hero(name="Deadpond", secret_name="Dive Wilson", team_id=team.id)
        )
        await heroes.create(
            {"name": "Rusty-Man", "secret_name": "Tommy Sharp", "age": 48, "team_id": team.id}
        )
    print("Created", team, "and", deadpond)
    assert team.id is not None  # create() loads the new primary key
    assert deadpond.id is not None

    # Read, update only the fields given, delete.
    async with db.unit_of_work() as uow:
        heroes = uow.repository(Hero)
        assert (await heroes.get_one(deadpond.id)).name == "Deadpond"
        rusty = await heroes.find_one(name="Rusty-Man")
        await heroes.update(rusty, HeroUpdate(age=49))  # only age was set, so only age changes
        assert (rusty.age, rusty.secret_name) == (49, "Tommy Sharp")
        assert await heroes.count(team_id=team.id) == 2
        await heroes.delete(deadpond.id)
        assert await heroes.get(deadpond.id) is None
        print("Heroes now:", [hero.name for hero in await heroes.list(order_by=Hero.name)])

    # Eager loading: name the relationships to read along with the row.
    async with db.unit_of_work() as uow:
        preventers = await uow.repository(Team).get_one(team.id, load=[Team.heroes])
        assert [hero.name for hero in preventers.heroes] == ["Rusty-Man"]

    # Errors: the same classes on SQLite, PostgreSQL and MySQL.
    async with db.unit_of_work() as uow:
        teams = uow.repository(Team)
        try:
            await teams.get_one(999)
        except NotFoundError as error:
            print(error)  # Team with the id asked for does not exist.
        else:
            raise AssertionError("expected NotFoundError")

        unloaded = await teams.get_one(team.id)  # read without load=[Team.heroes]
        try:
            print(len(unloaded.heroes))
        except LazyLoadError as error:
            print(error)  # Team.heroes was not loaded, ...
        else:
            raise AssertionError("expected LazyLoadError")

        # A savepoint confines a failure to its block; the unit of work goes on.
        try:
            async with uow.savepoint():
                await teams.create({"name": "Preventers"})  # the name is taken
        except UniqueViolationError as error:
            print(error)  # Unique constraint violated (...)
        else:
            raise AssertionError("expected UniqueViolationError")
        await teams.create({"name": "Z-Force"})

    async with db.unit_of_work() as uow:
        names = [team.name for team in await uow.repository(Team).list(order_by=Team.name)]
        assert names == ["Preventers", "Z-Force"], names


if __name__ == "__main__":
    asyncio.run(main())
