"""The same violation raises the same herorepo class on every driver, with the cause attached."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, insert
from sqlmodel import select

from herorepo import (
    CheckViolationError,
    ConflictError,
    Database,
    ForeignKeyViolationError,
    NotNullViolationError,
    UniqueViolationError,
)

from ..models import Hero, Power, Team
from .helpers import hero_rows, seed, team_names

pytestmark = pytest.mark.asyncio


async def test_duplicate_unique_value(write_db: Database) -> None:
    await seed(write_db)
    with pytest.raises(UniqueViolationError) as caught:
        async with write_db.unit_of_work() as uow:
            await uow.repository(Team).create({"name": "Avengers"})
    error = caught.value
    assert isinstance(error, ConflictError)
    assert error.__cause__ is not None
    assert "Unique constraint violated" in str(error)
    assert "Avengers" not in str(error)  # row values stay out of messages
    if write_db.backend == "sqlite":
        assert (error.table, error.column) == ("hr_team", "name")
    elif write_db.backend == "postgresql":
        assert error.table == "hr_team"
        assert error.constraint is not None
    else:
        assert error.constraint is not None
    assert await team_names(write_db) == ["Avengers", "X-Force"]


async def test_duplicate_primary_key(write_db: Database) -> None:
    ids = await seed(write_db)
    with pytest.raises(UniqueViolationError):
        async with write_db.unit_of_work() as uow:
            await uow.repository(Team).create(Team(id=ids["Avengers"], name="Other"))


async def test_foreign_key_to_nothing(write_db: Database) -> None:
    with pytest.raises(ForeignKeyViolationError) as caught:
        async with write_db.unit_of_work() as uow:
            await uow.repository(Hero).create({"name": "Lost", "secret_name": "?", "team_id": 999})
    assert caught.value.__cause__ is not None
    if write_db.backend != "sqlite":  # SQLite does not say which key failed
        assert caught.value.constraint is not None
    assert await hero_rows(write_db) == []


async def test_deleting_a_referenced_row(write_db: Database) -> None:
    ids = await seed(write_db)
    with pytest.raises(ForeignKeyViolationError):
        async with write_db.unit_of_work() as uow:
            await uow.session.exec(delete(Team).where(Team.id == ids["Avengers"]))  # type: ignore[call-overload]
    assert await team_names(write_db) == ["Avengers", "X-Force"]


async def test_orm_delete_of_a_parent_detaches_its_children(write_db: Database) -> None:
    # SQLAlchemy's default for a relationship without delete cascade: children's foreign key is
    # set to NULL in the same flush. The same on every backend.
    ids = await seed(write_db)
    async with write_db.unit_of_work() as uow:
        await uow.repository(Team).delete(ids["Avengers"])
    rows = {r["name"]: r["team_id"] for r in await hero_rows(write_db)}
    assert rows == {"Deadpond": ids["X-Force"], "Spider-Boy": None, "Rusty-Man": None}


async def test_not_null(write_db: Database) -> None:
    with pytest.raises(NotNullViolationError) as caught:
        async with write_db.unit_of_work() as uow:
            # Built directly, so pydantic validation is bypassed and the database decides.
            await uow.repository(Hero).create(Hero(name="Nameless", secret_name=None))  # type: ignore[arg-type]
    assert caught.value.column in ("secret_name", None)
    if write_db.backend != "postgresql":
        assert caught.value.column == "secret_name"


async def test_check_constraint(write_db: Database) -> None:
    with pytest.raises(CheckViolationError) as caught:
        async with write_db.unit_of_work() as uow:
            await uow.repository(Hero).create(Hero(name="Young", secret_name="x", age=-1))
    assert caught.value.constraint in ("ck_hr_hero_age", None)
    if write_db.backend == "postgresql":
        assert caught.value.constraint == "ck_hr_hero_age"


async def test_power_needs_an_existing_hero(write_db: Database) -> None:
    with pytest.raises(ForeignKeyViolationError):
        async with write_db.unit_of_work() as uow:
            await uow.repository(Power).create({"name": "Flight", "hero_id": 424242})


async def test_plain_session_statements_are_translated_too(db: Database) -> None:
    await seed(db)
    async with db.session() as session:
        with pytest.raises(UniqueViolationError):
            await session.exec(insert(Team).values(name="Avengers"))  # type: ignore[call-overload]
        await session.rollback()
        assert (await session.exec(select(Team.name).order_by(Team.name))).all() == [
            "Avengers",
            "X-Force",
        ]


async def test_nothing_committed_is_lost_when_a_later_unit_fails(db: Database) -> None:
    await seed(db)
    before = await hero_rows(db)
    with pytest.raises(UniqueViolationError):
        async with db.unit_of_work() as uow:
            await uow.repository(Hero).update(before[0]["id"], {"age": 99})
            await uow.repository(Team).create({"name": "X-Force"})
    assert await hero_rows(db) == before
