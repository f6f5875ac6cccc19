"""Queries at scale: pages, keyset cursors, API filters, bulk writes, upsert and streaming.

Runs on an in-memory SQLite database, or on the database named by DATABASE_URL. It creates the
table ex_hero and drops it at the end.
"""

import asyncio

from sqlmodel import Field, SQLModel, col

from herorepo import Database, FilterSet, InvalidCursorError, InvalidFilterError, Repository


class Hero(SQLModel, table=True):
    __tablename__ = "ex_hero"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, unique=True)
    age: int | None = None


# Declared once, at the edge: which query parameters an API accepts.
hero_filters = FilterSet(
    Hero,
    filters={"name": ["eq", "icontains", "istartswith"], "age": ["eq", "lt", "ge", "isnull"]},
    sort=["name", "age"],
    max_limit=100,
)


async def main() -> None:
    async with Database.from_env(default="sqlite+aiosqlite:///:memory:") as db:
        await db.create_all(SQLModel.metadata)
        try:
            await demo(db)
        finally:
            await db.drop_all(SQLModel.metadata)


async def demo(db: Database) -> None:
    async with db.unit_of_work() as uow:
        heroes = uow.repository(Hero)
        # One flush for all rows: batched INSERTs, keys and defaults loaded.
        created = await heroes.add_many(
            [
                {"name": f"Hero {i:03d}", "age": None if i % 7 == 0 else 20 + i % 40}
                for i in range(250)
            ]
        )
        assert len(created) == 250

        # Bulk changes by criteria: one statement each, nothing loaded.
        assert await heroes.update_many(Hero.age == 59, values={"age": 60}) > 0
        removed = await heroes.delete_many(col(Hero.name).startswith("Hero 24"))
        assert removed == 10

        # Upsert: insert, or update the row with the same unique name.
        await heroes.upsert({"name": "Hero 000", "age": 99}, conflict=["name"])
        assert (await heroes.find_one(name="Hero 000")).age == 99

    async with db.session() as session:
        heroes = Repository(session, Hero)

        # Offset pages, with the total when you ask for it.
        page = await heroes.page(col(Hero.age) >= 50, order_by=Hero.name, limit=20, count=True)
        assert page.total is not None
        assert len(page.items) == 20
        assert page.has_next

        # Keyset pages: seek past an opaque cursor; the primary key breaks ties.
        seen: list[int | None] = []
        cursor = None
        while True:
            batch = await heroes.keyset(order_by="-age,name", after=cursor, limit=50)
            seen.extend(hero.id for hero in batch.items)
            cursor = batch.next_cursor
            if cursor is None:
                break
        assert len(seen) == len(set(seen)) == 240

        # A cursor that was tampered with is refused, never passed to SQL.
        try:
            await heroes.keyset(order_by="-age,name", after="not-a-cursor", limit=50)
        except InvalidCursorError as error:
            print("refused:", error)

        # Query parameters from a request, checked against the FilterSet.
        query = hero_filters.parse(
            {"name__icontains": "hero 1", "age__ge": "30", "order_by": "-age"}
        )
        found = await heroes.list(*query.where, order_by=query.order_by, limit=query.limit)
        assert found
        assert all(h.age is not None and h.age >= 30 for h in found)
        try:
            hero_filters.parse({"secret__eq": "x"})
        except InvalidFilterError as error:
            print("refused:", error)

        # Stream a whole table in batches, in constant memory.
        total = 0
        async for _hero in heroes.stream(batch_size=64):
            total += 1
        assert total == 240
    print("queries example: ok")


if __name__ == "__main__":
    asyncio.run(main())
