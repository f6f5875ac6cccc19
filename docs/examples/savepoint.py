"""Savepoints: let one step of a unit of work fail and keep the rest.

``import_heroes`` inserts heroes whose names must be unique. Each insert runs in
``uow.savepoint()`` (a SAVEPOINT): a duplicate name undoes only its own insert, and the unit of
work commits the others. Without the savepoint, the first failure spoils the whole transaction.
And a savepoint is not a commit: an error in the outer block still undoes everything.

Runs on an in-memory SQLite database, or on the database named by DATABASE_URL. It creates the
table ex_hero and drops it at the end.
"""

import asyncio
from collections.abc import Iterable

from sqlmodel import Field, SQLModel

from herorepo import Database, TransactionError, UniqueViolationError


class Hero(SQLModel, table=True):
    __tablename__ = "ex_hero"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, unique=True)


async def import_heroes(db: Database, names: Iterable[str]) -> list[str]:
    """Insert a hero for each name, skipping names already taken; return the skipped names."""
    skipped: list[str] = []
    async with db.unit_of_work() as uow:
        heroes = uow.repository(Hero)
        for name in names:
            try:
                async with uow.savepoint():  # a failure inside undoes only this block
                    await heroes.create({"name": name})
            except UniqueViolationError:
                skipped.append(name)
    return skipped


async def hero_names(db: Database) -> list[str]:
    async with db.unit_of_work() as uow:
        return [hero.name for hero in await uow.repository(Hero).list(order_by=Hero.name)]


async def main() -> None:
    async with Database.from_env(default="sqlite+aiosqlite:///:memory:") as db:
        await db.create_all()  # every table model's table: here, ex_hero
        try:
            await run(db)
        finally:
            await db.drop_all()


async def run(db: Database) -> None:
    # 1. Each duplicate is skipped; the unit of work commits every other hero.
    assert await import_heroes(db, ["Deadpond", "Rusty-Man"]) == []
    skipped = await import_heroes(db, ["Spider-Boy", "Deadpond", "Tarantula", "Spider-Boy"])
    assert skipped == ["Deadpond", "Spider-Boy"], skipped
    assert await hero_names(db) == ["Deadpond", "Rusty-Man", "Spider-Boy", "Tarantula"]
    print("Imported, skipping", skipped)

    # 2. Without a savepoint, catching the error is not enough: the transaction has failed, the
    #    next call raises TransactionError, and the unit of work rolls back Jet Boy too.
    try:
        async with db.unit_of_work() as uow:
            heroes = uow.repository(Hero)
            await heroes.create({"name": "Jet Boy"})
            try:
                await heroes.create({"name": "Deadpond"})
            except UniqueViolationError:
                pass
            await heroes.count()
    except TransactionError as error:
        print("Without a savepoint:", error)
    else:
        raise AssertionError("expected TransactionError")
    assert "Jet Boy" not in await hero_names(db)

    # 3. A savepoint that ended well is not a commit: an error in the outer block undoes it too.
    try:
        async with db.unit_of_work() as uow:
            async with uow.savepoint():
                await uow.repository(Hero).create({"name": "Dr. Weird"})
            raise RuntimeError("something went wrong after the savepoint")
    except RuntimeError as error:
        print("Rolled back:", error)
    assert "Dr. Weird" not in await hero_names(db)


if __name__ == "__main__":
    asyncio.run(main())
