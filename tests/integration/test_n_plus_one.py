"""The N+1 detector of herorepo.testing, on every backend."""

from __future__ import annotations

import pytest

from herorepo import Database, Repository
from herorepo.testing import assert_no_n_plus_one, statement_shape

from ..models import Hero, Team
from .helpers import seed

pytestmark = pytest.mark.asyncio


async def test_a_query_per_row_is_caught_and_named(db: Database) -> None:
    await seed(db)
    async with db.session() as session:
        heroes = await Repository(session, Hero).list()
        teams = Repository(session, Team)
        with pytest.raises(AssertionError, match=r"N\+1: one statement ran 3 times") as caught:
            with assert_no_n_plus_one(db, max_repeats=2):
                for hero in heroes:  # the team of each hero, one query each
                    await teams.list(Team.id == hero.team_id)
        assert "load=[...]" in str(caught.value)
        assert "FROM hr_team" in str(caught.value)


async def test_loading_in_the_first_query_passes(db: Database) -> None:
    ids = await seed(db)
    async with db.session() as session:
        teams = Repository(session, Team)
        with assert_no_n_plus_one(db, max_repeats=1) as log:
            loaded = await teams.list(load=[Team.heroes])
            await Repository(session, Hero).get_many(list(ids.values()))  # one IN (...) list
        assert sum(len(team.heroes) for team in loaded) >= 2
        assert log.count == 3


async def test_shapes_ignore_values_and_list_lengths() -> None:
    assert statement_shape("SELECT * FROM t WHERE id IN ($1, $2)\n") == statement_shape(
        "SELECT  * FROM t WHERE id IN ($7)"
    )
    assert statement_shape("SELECT a FROM t WHERE id IN (?, ?, ?)") == (
        "SELECT a FROM t WHERE id IN (...)"
    )
    assert statement_shape("UPDATE t SET a=%s WHERE id = %s") != statement_shape(
        "UPDATE t SET b=%s WHERE id = %s"
    )
    with pytest.raises(ValueError, match="max_repeats"):
        with assert_no_n_plus_one(Database("sqlite://"), max_repeats=0):
            pass
