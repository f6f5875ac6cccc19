"""The N+1 detector of herorepo.testing as a user meets it: the marker and the block helper.

The projects run in this process (``pytester.runpytest_inprocess``), which is fast; so their models
live in a registry of their own, never in ``SQLModel.metadata``, which the suite's conftest
creates and drops on every backend. Their tables, plug_n1_*, belong to no other test.
"""

from __future__ import annotations

import asyncio
import re
import textwrap

import pytest

from .test_plugin import PYTEST_INI, run_url, table_exists

VERDICT = re.compile(r"^test_\w+\.py::(?:\w+::)?(\w+) (PASSED|FAILED|ERROR)", re.MULTILINE)

MODELS = """\
from sqlalchemy.orm import registry
from sqlmodel import Field, Relationship, SQLModel


class Base(SQLModel, registry=registry()):
    pass


class Team(Base, table=True):
    __tablename__ = "plug_n1_team"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=50)
    heroes: list["Hero"] = Relationship(back_populates="team")


class Hero(Base, table=True):
    __tablename__ = "plug_n1_hero"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=50)
    team_id: int | None = Field(default=None, foreign_key="plug_n1_team.id")
    team: Team | None = Relationship(back_populates="heroes")
"""

CONFTEST = """\
import pytest

from models import Base, Hero, Team

pytest_plugins = ["herorepo.testing"]


@pytest.fixture(scope="session")
def herorepo_metadata():
    return Base.metadata


@pytest.fixture
async def teams(herorepo_db):
    # Fixture setup runs four statements of one shape: they do not count for the marker.
    async with herorepo_db.unit_of_work() as uow:
        for number in range(4):
            team = await uow.repository(Team).create({"name": f"T{number}"})
            await uow.repository(Hero).create({"name": f"H{number}", "team_id": team.id})
"""

MARKER_TESTS = """\
import pytest

from models import Hero, Team


async def read_each_team(db):
    async with db.unit_of_work(read_only=True) as uow:
        for hero in await uow.repository(Hero).list():  # one query per hero: an N+1
            await uow.repository(Team).list(Team.id == hero.team_id)


async def read_with_load(db):
    async with db.unit_of_work(read_only=True) as uow:
        heroes = await uow.repository(Hero).list(load=[Hero.team])
        assert all(hero.team is not None for hero in heroes)


@pytest.mark.herorepo_no_n_plus_one(max_repeats=1)
async def test_loading_in_the_first_query_passes(herorepo_db, teams):
    await read_with_load(herorepo_db)


@pytest.mark.herorepo_no_n_plus_one(max_repeats=1)
async def test_a_query_per_row_fails(herorepo_db, teams):
    await read_each_team(herorepo_db)


@pytest.mark.herorepo_no_n_plus_one  # three repeats are allowed by default
async def test_default_allows_three_repeats(herorepo_db, teams):
    async with herorepo_db.unit_of_work(read_only=True) as uow:
        for number in range(3):
            await uow.repository(Team).list(Team.name == f"T{number}")


@pytest.mark.herorepo_no_n_plus_one(4)
async def test_a_higher_limit_passes(herorepo_db, teams):
    await read_each_team(herorepo_db)


@pytest.mark.herorepo_no_n_plus_one(max_repeats=1)
async def test_own_failure_wins(herorepo_db, teams):
    await read_each_team(herorepo_db)
    assert False, "the test's own failure"


@pytest.mark.herorepo_no_n_plus_one(max_repeats=0)
async def test_bad_limit_is_refused(herorepo_db):
    pass


@pytest.mark.herorepo_no_n_plus_one
def test_without_the_database_is_refused():
    pass


class TestMarkedClass:
    pytestmark = pytest.mark.herorepo_no_n_plus_one(max_repeats=2)

    async def test_class_marker_applies(self, herorepo_db, teams):
        await read_each_team(herorepo_db)
"""

BLOCK_TESTS = """\
import pytest

from herorepo.testing import assert_no_n_plus_one
from models import Hero, Team


async def test_block_helper_fails_on_a_query_per_row(herorepo_db, teams):
    async with herorepo_db.unit_of_work(read_only=True) as uow:
        heroes = await uow.repository(Hero).list()
        with pytest.raises(AssertionError, match=r"N\\+1: one statement ran 4 times"):
            with assert_no_n_plus_one(herorepo_db, max_repeats=3):
                for hero in heroes:
                    await uow.repository(Team).list(Team.id == hero.team_id)
        with assert_no_n_plus_one(herorepo_db, max_repeats=1) as log:
            await uow.repository(Hero).list(load=[Hero.team])
        assert log.count == 2, log
"""


def write_project(pytester: pytest.Pytester, **tests: str) -> None:
    ini = PYTEST_INI.replace("addopts =", "addopts = --strict-markers")
    pytester.makefile(".ini", pytest=ini)
    pytester.makepyfile(models=MODELS, conftest=CONFTEST)
    pytester.makepyfile(**{name: textwrap.dedent(code) for name, code in tests.items()})


@pytest.mark.timeout(90)
def test_marker_fails_a_test_that_repeats_a_statement_shape(
    pytester: pytest.Pytester, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HEROREPO_TEST_URL", raising=False)
    write_project(pytester, test_marker=MARKER_TESTS, test_block=BLOCK_TESTS)
    url = run_url(pytester, backend)
    result = pytester.runpytest_inprocess("--herorepo-url", url, "-v")
    result.assert_outcomes(passed=4, failed=3, errors=2)
    outcomes = dict(VERDICT.findall(result.stdout.str()))
    assert outcomes == {
        "test_loading_in_the_first_query_passes": "PASSED",
        "test_a_query_per_row_fails": "FAILED",
        "test_default_allows_three_repeats": "PASSED",
        "test_a_higher_limit_passes": "PASSED",
        "test_own_failure_wins": "FAILED",
        "test_bad_limit_is_refused": "ERROR",  # at setup: the test does not run
        "test_without_the_database_is_refused": "ERROR",
        "test_class_marker_applies": "FAILED",
        "test_block_helper_fails_on_a_query_per_row": "PASSED",
    }, result.outlines
    output = result.stdout.str()
    # The failing test names the shape and its count; the teams fixture's four INSERTs don't count.
    result.stdout.fnmatch_lines(
        [
            "*max_repeats must be a whole number >= 1, got 0*",
            "*test_without_the_database_is_refused does not use: give it one of the fixtures*",
            "*N+1 in test_a_query_per_row_fails: a statement ran more than 1 time(s)*",
            "*  4 times: SELECT * FROM plug_n1_team WHERE plug_n1_team.id = *",
            "*AssertionError: the test's own failure*",
            "*N+1 in test_class_marker_applies: a statement ran more than 2 time(s)*",
        ]
    )
    shapes = [line for line in result.outlines if " times: " in line]
    assert shapes, output
    assert not any("INSERT" in line for line in shapes), "fixture setup was counted"
    assert "'T1'" not in output, "parameter values were shown"
    assert not asyncio.run(table_exists(url, "plug_n1_hero")), "the plugin left its table behind"
