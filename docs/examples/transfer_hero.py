"""Move a hero from one team to another in one unit of work, or refuse and change nothing.

The hand-written recipe's ``transfer_hero`` with herorepo: ``get_one`` raises ``NotFoundError``
for a missing hero (instead of an ``AttributeError`` on ``None``), the check raises our own error,
and any error rolls the whole unit of work back.

Runs on an in-memory SQLite database, or on the database named by DATABASE_URL. It creates the
tables ex_team and ex_hero and drops them at the end.
"""

import asyncio

from sqlmodel import Field, SQLModel

from herorepo import Database, ForeignKeyViolationError, NotFoundError


class Team(SQLModel, table=True):
    __tablename__ = "ex_team"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, unique=True)


class Hero(SQLModel, table=True):
    __tablename__ = "ex_hero"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100)
    team_id: int | None = Field(default=None, foreign_key="ex_team.id")


class HeroNotInTeamError(Exception):
    """The hero to transfer is not in the team it should leave."""


async def transfer_hero(db: Database, hero_id: int, from_team_id: int, to_team_id: int) -> Hero:
    # Leaving the block commits; an exception in it rolls everything back and propagates.
    async with db.unit_of_work() as uow:
        heroes = uow.repository(Hero)
        hero = await heroes.get_one(hero_id)  # NotFoundError if there is no such hero
        if hero.team_id != from_team_id:
            raise HeroNotInTeamError(f"Hero {hero_id} is not in team {from_team_id}.")
        return await heroes.update(hero, {"team_id": to_team_id})


async def team_of(db: Database, hero_id: int) -> int | None:
    async with db.unit_of_work() as uow:
        return (await uow.repository(Hero).get_one(hero_id)).team_id


async def main() -> None:
    async with Database.from_env(default="sqlite+aiosqlite:///:memory:") as db:
        await db.create_all()  # every table model's table: here, ex_team and ex_hero
        try:
            await run(db)
        finally:
            await db.drop_all()


async def run(db: Database) -> None:
    async with db.unit_of_work() as uow:
        teams = uow.repository(Team)
        preventers = await teams.create({"name": "Preventers"})
        z_force = await teams.create({"name": "Z-Force"})
        deadpond = await uow.repository(Hero).create({"name": "Deadpond", "team_id": preventers.id})
    assert preventers.id is not None
    assert z_force.id is not None
    assert deadpond.id is not None

    # 1. Deadpond is in Preventers: the transfer succeeds and is committed.
    moved = await transfer_hero(db, deadpond.id, preventers.id, z_force.id)
    assert moved.team_id == z_force.id
    assert await team_of(db, deadpond.id) == z_force.id
    print(f"{moved.name} moved from Preventers to Z-Force.")

    # 2. Deadpond is no longer in Preventers: refused, and nothing changes.
    try:
        await transfer_hero(db, deadpond.id, preventers.id, z_force.id)
    except HeroNotInTeamError as error:
        print(f"Refused: {error}")
    else:
        raise AssertionError("expected HeroNotInTeamError")
    assert await team_of(db, deadpond.id) == z_force.id

    # 3. No hero 999: get_one raises NotFoundError, which names the model and the key.
    try:
        await transfer_hero(db, 999, preventers.id, z_force.id)
    except NotFoundError as error:
        print(f"Refused: {error}")  # Hero with the id asked for does not exist.
    else:
        raise AssertionError("expected NotFoundError")

    # 4. No team 999: the UPDATE fails on the foreign key, and the unit of work rolls back.
    try:
        await transfer_hero(db, deadpond.id, z_force.id, 999)
    except ForeignKeyViolationError as error:
        print(f"Refused: {error}")
    else:
        raise AssertionError("expected ForeignKeyViolationError")
    assert await team_of(db, deadpond.id) == z_force.id


if __name__ == "__main__":
    asyncio.run(main())
