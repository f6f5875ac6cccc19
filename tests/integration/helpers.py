"""Independent checks: read the database through plain SQL, not through the code under test;
and what a block leaves for the cycle collector."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import select

from herorepo import Database

from ..models import Hero, Team


async def hero_rows(db: Database) -> list[dict[str, Any]]:
    async with db.engine.connect() as connection:
        result = await connection.execute(select(Hero.__table__).order_by(Hero.__table__.c.id))  # type: ignore[attr-defined]
        return [dict(row._mapping) for row in result]


async def team_names(db: Database) -> list[str]:
    async with db.engine.connect() as connection:
        result = await connection.execute(
            select(Team.__table__.c.name).order_by(Team.__table__.c.name)
        )  # type: ignore[attr-defined]
        return [row[0] for row in result]


async def seed(db: Database) -> dict[str, int]:
    """Two teams and three heroes; returns their ids by name."""
    async with db.unit_of_work() as uow:
        teams = uow.repository(Team)
        heroes = uow.repository(Hero)
        avengers = await teams.create({"name": "Avengers", "headquarters": "New York"})
        xforce = await teams.create({"name": "X-Force", "headquarters": "Sister Margaret's"})
        deadpond = await heroes.create(
            {"name": "Deadpond", "secret_name": "Dive Wilson", "age": 30, "team_id": xforce.id}
        )
        spider = await heroes.create(
            {"name": "Spider-Boy", "secret_name": "Pedro Parqueador", "team_id": avengers.id}
        )
        rusty = await heroes.create(
            {"name": "Rusty-Man", "secret_name": "Tommy Sharp", "age": 48, "team_id": avengers.id}
        )
    ids = {
        "Avengers": avengers.id,
        "X-Force": xforce.id,
        "Deadpond": deadpond.id,
        "Spider-Boy": spider.id,
        "Rusty-Man": rusty.id,
    }
    assert all(isinstance(v, int) for v in ids.values())
    return {k: v for k, v in ids.items() if v is not None}


# Objects of one unit of work that reference counting alone must free: a cycle through any of
# them keeps the session and its identity map until the cycle collector runs.
UNIT_OF_WORK_OBJECTS = frozenset(
    {"UnitOfWork", "TransactionState", "GuardedSession", "AsyncSession"}
)


@contextmanager
def cyclic_garbage() -> Iterator[set[str]]:
    """The names of the types left as cyclic garbage by the block (filled when it ends)."""
    kept: set[str] = set()
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield kept
        gc.collect()
        kept.update(type(o).__name__ for o in gc.garbage)
    finally:
        gc.garbage.clear()
        gc.set_debug(0)
        gc.enable()
