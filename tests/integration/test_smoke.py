from __future__ import annotations

import pytest

from herorepo import Database, Repository

from ..models import Hero, Team

pytestmark = pytest.mark.asyncio


async def test_create_and_get(write_db: Database) -> None:
    async with write_db.unit_of_work() as uow:
        team = await uow.repository(Team).create({"name": "Avengers"})
        hero = await uow.repository(Hero).create(
            {"name": "Deadpond", "secret_name": "Dive Wilson", "team_id": team.id}
        )
    assert hero.id is not None
    assert hero.status == "active"
    assert hero.created_at is not None
    async with write_db.unit_of_work() as uow:
        again = await uow.repository(Hero).get_one(hero.id, load=[Hero.team])
        assert again.team is not None
        assert again.team.name == "Avengers"
    assert isinstance(uow.repository, object)
    assert Repository
