"""herorepo.testing as a user meets it: small projects run by pytester in a fresh interpreter.

Each project is a directory with models, tests and a pytest.ini; ``pytester.runpytest_subprocess``
runs pytest there as the user would, with herorepo's entry point installed. The projects' table,
plug_item, belongs to no other test.
"""

from __future__ import annotations

import sqlite3
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import inspect

from herorepo import Database

from ..conftest import backend_url

# The projects leave out the plugins of the suite's environment that they do not use: each
# pytest process (and each xdist worker) would spend a second importing them.
UNUSED_PLUGINS = "-p no:schemathesis -p no:hypothesispytest -p no:anyio"
PYTEST_INI = f"""\
[pytest]
addopts = -p no:cacheprovider {UNUSED_PLUGINS}
asyncio_mode = auto
asyncio_default_fixture_loop_scope = session
asyncio_default_test_loop_scope = session
filterwarnings = error
"""

MODELS = """\
from sqlmodel import Field, SQLModel


class Item(SQLModel, table=True):
    __tablename__ = "plug_item"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=50, unique=True)
"""

ISOLATION_TESTS = """\
import pytest
from sqlmodel import select

from herorepo import UniqueViolationError
from models import Item


async def rows(db):
    async with db.session() as session:
        return [item.name for item in (await session.exec(select(Item))).all()]


async def test_units_of_work_compose_inside_the_test(herorepo_db):
    async def add(name):  # code under test with a unit of work of its own
        async with herorepo_db.unit_of_work() as uow:
            await uow.repository(Item).create({"name": name})

    with pytest.raises(KeyError):
        async with herorepo_db.unit_of_work():
            await add("inner")
            raise KeyError("undo both")
    assert await rows(herorepo_db) == []
    async with herorepo_db.unit_of_work() as outer:
        await add("inner")
        assert outer.repository(Item) is not None
    assert await rows(herorepo_db) == ["inner"]


async def test_code_under_test_sees_the_fixture_unit_of_work(herorepo_db, herorepo_uow):
    async with herorepo_db.unit_of_work() as uow:
        await uow.repository(Item).create({"name": "x"})
    assert await herorepo_uow.repository(Item).count() == 1


async def test_first_commits(herorepo_db):
    assert await rows(herorepo_db) == []
    async with herorepo_db.unit_of_work() as uow:
        await uow.repository(Item).create({"name": "same"})
    assert await rows(herorepo_db) == ["same"]


async def test_second_commits_the_same_unique_row(herorepo_db):
    # A UniqueViolationError here would mean the first test's commit leaked.
    assert await rows(herorepo_db) == []
    async with herorepo_db.unit_of_work() as uow:
        await uow.repository(Item).create({"name": "same"})
    assert await rows(herorepo_db) == ["same"]


async def test_session_may_commit(herorepo_session):
    herorepo_session.add(Item(name="same"))
    await herorepo_session.commit()
    assert len((await herorepo_session.exec(select(Item))).all()) == 1


async def test_a_failed_unit_of_work_leaves_the_test_usable(herorepo_db):
    async with herorepo_db.unit_of_work() as uow:
        await uow.repository(Item).create({"name": "kept"})
    with pytest.raises(UniqueViolationError):
        async with herorepo_db.unit_of_work() as uow:
            await uow.repository(Item).create({"name": "kept"})
    assert await rows(herorepo_db) == ["kept"]


async def test_unit_of_work_fixture_survives_a_failure(herorepo_uow):
    await herorepo_uow.repository(Item).create({"name": "same"})
    with pytest.raises(UniqueViolationError):
        await herorepo_uow.repository(Item).create({"name": "same"})


async def test_unit_of_work_fixture_was_rolled_back(herorepo_uow):
    assert await herorepo_uow.repository(Item).count() == 0
"""

LEAK_TESTS = """\
leaked = []


async def test_leaves_a_connection_checked_out(herorepo_database, herorepo_db):
    leaked.append(await herorepo_database.engine.connect())


async def test_cleans_up_after_the_leak():
    await leaked.pop().close()
"""

QUERY_TESTS = """\
import pytest

from herorepo.testing import assert_max_queries, count_queries
from models import Item


async def test_counts_statements_but_not_transaction_control(herorepo_db):
    with count_queries(herorepo_db) as queries:
        async with herorepo_db.unit_of_work() as uow:
            await uow.repository(Item).create({"name": "counted"})
            await uow.repository(Item).count()
    assert queries.count == 2, queries


async def test_assert_max_queries_lists_what_ran(herorepo_db):
    with pytest.raises(AssertionError, match="at most 0 SQL statement") as caught:
        with assert_max_queries(herorepo_db, 0):
            async with herorepo_db.session() as session:
                await session.get(Item, 1)
    assert "1. SELECT" in str(caught.value)
"""


def write_project(pytester: pytest.Pytester, **files: str) -> None:
    pytester.makefile(".ini", pytest=PYTEST_INI)
    pytester.makepyfile(models=MODELS)
    pytester.makepyfile(**{name: textwrap.dedent(code) for name, code in files.items()})


def run_url(pytester: pytest.Pytester, backend: str) -> str:
    """The backend's server, or for SQLite a file of the project (never the suite's file)."""
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{pytester.path / 'plugin.db'}"
    return backend_url(backend)


async def table_exists(url: str, name: str) -> bool:
    if url.startswith("sqlite"):
        path = Path(url.split(":///", 1)[1])
        with sqlite3.connect(path) as connection:
            found = connection.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
            ).fetchone()
        return bool(found[0])
    async with Database(url) as database, database.engine.connect() as connection:
        return await connection.run_sync(lambda sync: inspect(sync).has_table(name))


@pytest.mark.asyncio
async def test_rolls_back_each_test_and_drops_its_tables(
    pytester: pytest.Pytester, backend: str
) -> None:
    write_project(
        pytester,
        test_isolation=ISOLATION_TESTS,
        test_leak=LEAK_TESTS,
        test_queries=QUERY_TESTS,
    )
    url = run_url(pytester, backend)
    result = pytester.runpytest_subprocess("--herorepo-url", url, "-v")
    # The leak test passes its body and errors at teardown; everything else passes.
    result.assert_outcomes(passed=12, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaves_a_connection_checked_out*",
            "*The test left 1 connection(s) checked out of the pool*",
        ]
    )
    assert not await table_exists(url, "plug_item"), "the plugin left its table behind"


def test_is_inert_unless_turned_on(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HEROREPO_TEST_URL", raising=False)
    pytester.makefile(".ini", pytest=PYTEST_INI)
    pytester.makeconftest(
        """
        import pytest

        # Names a project may well use already; the plugin must not take them.
        @pytest.fixture
        def db():
            return "the user's db"

        @pytest.fixture
        def session():
            return "the user's session"
        """
    )
    pytester.makepyfile(
        test_user="""
        import sys

        def test_own_fixtures_and_no_plugin(db, session):
            assert (db, session) == ("the user's db", "the user's session")
            assert "herorepo._pytest_entry" in sys.modules  # the entry point, options only
            assert "herorepo.testing" not in sys.modules

        def test_herorepo_fixtures_are_absent(herorepo_db):
            pass
        """
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*fixture 'herorepo_db' not found*"])


@pytest.mark.parametrize("how", ["ini", "env"])
def test_turned_on_by_a_configured_url(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    monkeypatch.delenv("HEROREPO_TEST_URL", raising=False)
    url = f"sqlite+aiosqlite:///{pytester.path / 'chosen.db'}"
    write_project(
        pytester,
        test_on=f"""
        async def test_uses_the_configured_url(herorepo_db, herorepo_url):
            assert herorepo_url == {url!r}
        """,
    )
    if how == "ini":
        pytester.makefile(".ini", pytest=PYTEST_INI + f"herorepo_url = {url}\n")
    else:
        monkeypatch.setenv("HEROREPO_TEST_URL", url)
    pytester.runpytest_subprocess().assert_outcomes(passed=1)


def test_pytest_plugins_turns_it_on_and_a_function_loop_is_refused(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HEROREPO_TEST_URL", raising=False)
    write_project(
        pytester,
        test_loops="""
        import pytest

        @pytest.mark.asyncio(loop_scope="session")
        async def test_session_loop(herorepo_db, herorepo_url):
            assert herorepo_url == "sqlite+aiosqlite:///:memory:"

        @pytest.mark.asyncio(loop_scope="function")
        async def test_function_loop(herorepo_db):
            pass
        """,
    )
    pytester.makeconftest('pytest_plugins = ["herorepo.testing"]\n')
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*runs in a function-scoped event loop*loop_scope*"])
