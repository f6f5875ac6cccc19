"""herorepo.testing under pytest-xdist: each worker runs on a database of its own.

The xdist run is a real one (``-n 2`` in a subprocess). Its configured database is a scratch
database of this test (``<suite database>_plugxd``), never the suite's, so that the workers'
databases (``..._plugxd_gw0``) cannot meet the databases of the suite's own workers.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from herorepo import ConfigurationError
from herorepo.testing import worker_database

from ..conftest import backend_url
from .test_plugin import MODELS, PYTEST_INI, run_url

pytestmark = pytest.mark.asyncio

WORKER_TESTS = """\
import asyncio
import os
import time
from pathlib import Path

from sqlmodel import select

from models import Item

MEETING = Path(os.environ["PLUG_MEETING"])


async def test_each_worker_commits_the_same_unique_row(herorepo_database, herorepo_url):
    worker = os.environ["PYTEST_XDIST_WORKER"]
    name = herorepo_database.url.database
    assert name.endswith(f"_{worker}.db" if name.endswith(".db") else f"_{worker}"), name
    assert herorepo_url != herorepo_database.url.render_as_string(hide_password=False)
    (MEETING / f"{worker}.name").write_text(name)
    deadline = time.monotonic() + 30  # both workers write at once: one database would conflict
    while len(list(MEETING.glob("*.name"))) < 2:
        assert time.monotonic() < deadline, "the other worker never came"
        await asyncio.sleep(0.02)
    # Committed for real, not in a test transaction: both rows exist until the run ends.
    async with herorepo_database.unit_of_work() as uow:
        await uow.repository(Item).create({"name": "same"})
    async with herorepo_database.session() as session:
        assert [item.name for item in (await session.exec(select(Item))).all()] == ["same"]
"""


async def server_has_database(url: str, name: str) -> bool:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            if engine.dialect.name == "postgresql":
                query = "SELECT count(*) FROM pg_database WHERE datname = :name"
            else:
                query = "SELECT count(*) FROM information_schema.schemata WHERE schema_name = :name"
            return bool((await connection.execute(text(query), {"name": name})).scalar_one())
    finally:
        await engine.dispose()


async def leave_a_crashed_run_behind(url: str, name: str) -> None:
    """A worker database as a run killed mid-way leaves it: with a row that would conflict."""
    engine = create_async_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            quoted = engine.dialect.identifier_preparer.quote_identifier(name)
            await connection.execute(text(f"DROP DATABASE IF EXISTS {quoted}"))
            await connection.execute(text(f"CREATE DATABASE {quoted}"))
    finally:
        await engine.dispose()
    leftover = create_async_engine(make_url(url).set(database=name), poolclass=NullPool)
    try:
        async with leftover.begin() as connection:
            await connection.execute(
                text("CREATE TABLE plug_item (id INTEGER PRIMARY KEY, name VARCHAR(50) UNIQUE)")
            )
            await connection.execute(text("INSERT INTO plug_item VALUES (1, 'same')"))
    finally:
        await leftover.dispose()


@pytest_asyncio.fixture
async def configured_url(pytester: pytest.Pytester, backend: str) -> AsyncIterator[str]:
    """The URL the user's run is configured with: a scratch database (a file on SQLite)."""
    if backend == "sqlite":
        yield run_url(pytester, backend)
        return
    outer = os.environ.get("PYTEST_XDIST_WORKER", "")  # the suite's own worker, if any
    async with worker_database(backend_url(backend), f"plugxd{outer}") as url:
        yield url


@pytest.mark.timeout(120)
async def test_each_xdist_worker_gets_a_database_of_its_own(
    pytester: pytest.Pytester,
    backend: str,
    configured_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("HEROREPO_TEST_URL", raising=False)
    meeting = pytester.mkdir("meeting")
    monkeypatch.setenv("PLUG_MEETING", str(meeting))
    pytester.makefile(".ini", pytest=PYTEST_INI)
    pytester.makepyfile(models=MODELS, test_workers=WORKER_TESTS)
    base = make_url(configured_url)
    if backend == "sqlite":
        leftover = pytester.path / "plugin_gw0.db"
        leftover.write_bytes(b"not a database: left behind by a run that crashed")
    else:
        await leave_a_crashed_run_behind(configured_url, f"{base.database}_gw0")

    result = pytester.runpytest_subprocess(
        "-n", "2", "--dist", "each", "--herorepo-url", configured_url, timeout=90
    )

    result.assert_outcomes(passed=2)
    names = sorted(path.read_text() for path in meeting.glob("*.name"))
    if backend == "sqlite":
        assert names == [str(pytester.path / f"plugin_{w}.db") for w in ("gw0", "gw1")]
        assert not list(pytester.path.glob("plugin*")), "a file was left behind"
    else:
        assert names == [f"{base.database}_gw0", f"{base.database}_gw1"]
        for name in names:
            assert not await server_has_database(configured_url, name), f"{name} is left"
        assert await server_has_database(configured_url, str(base.database))


async def test_a_user_who_may_not_create_databases_is_refused(
    pytester: pytest.Pytester, server_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HEROREPO_TEST_URL", raising=False)
    url = make_url(backend_url(server_backend))
    user = f"herorepo_plug_nocreate_{os.getpid()}"
    admin = create_async_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    if server_backend == "postgres":
        create = [f'CREATE ROLE "{user}" LOGIN NOCREATEDB']
        drop = [f'DROP ROLE IF EXISTS "{user}"']
    else:
        create = [
            f"CREATE USER '{user}'@'%'",
            f"GRANT SELECT ON `{url.database}`.* TO '{user}'@'%'",
        ]
        drop = [f"DROP USER IF EXISTS '{user}'@'%'"]
    try:
        async with admin.connect() as connection:
            for statement in drop + create:
                await connection.execute(text(statement))
        # The project pretends to be xdist's worker gw0, which is quicker than starting one.
        pytester.makefile(".ini", pytest=PYTEST_INI)
        pytester.makeconftest(
            """
            def pytest_configure(config):
                config.workerinput = {"workerid": "gw0"}
            """
        )
        pytester.makepyfile(
            test_refused="""
            async def test_needs_the_database(herorepo_database):
                pass
            """
        )
        limited = url.set(username=user).render_as_string(hide_password=False)
        result = pytester.runpytest_subprocess(
            "-p", "no:xdist", "--herorepo-url", limited, timeout=60
        )
        result.assert_outcomes(errors=1)
        right = "CREATEDB" if server_backend == "postgres" else "CREATE and DROP privileges"
        result.stdout.fnmatch_lines(
            [
                f"*pytest-xdist worker gw0: Could not * the database '{url.database}_gw0'*"
                f"needs the {right}*run the tests without pytest-xdist's -n*"
            ]
        )
        assert "Traceback" not in result.stdout.str()
    finally:
        async with admin.connect() as connection:
            for statement in drop:
                await connection.execute(text(statement))
        await admin.dispose()


@pytest.mark.parametrize("suffix", ["", "gw-0", "gw0; DROP DATABASE test", "gw0`", 'gw0"', None])
async def test_suffixes_are_plain_identifiers(suffix: str) -> None:
    with pytest.raises(ConfigurationError, match="letters, digits and underscores"):
        async with worker_database("postgresql+asyncpg://app@localhost/test", suffix):
            pass


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+asyncpg://app@localhost/" + "t" * 60,  # PostgreSQL would cut it short
        "mysql+aiomysql://app@localhost/" + "t" * 61,
        "postgresql+asyncpg://app@localhost/test-app",
        "postgresql+asyncpg://app@localhost/9test",
    ],
)
async def test_worker_names_are_checked_before_connecting(url: str) -> None:
    with pytest.raises(ConfigurationError, match="Cannot name a worker database"):
        async with worker_database(url, "gw0"):
            pass


async def test_a_url_without_a_database_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="names no database"):
        async with worker_database("postgresql+asyncpg://app@localhost", "gw0"):
            pass


@pytest.mark.parametrize(
    "url", ["sqlite+aiosqlite:///:memory:", "sqlite+aiosqlite://", "sqlite:///:memory:"]
)
async def test_an_in_memory_database_is_used_as_it_is(url: str) -> None:
    async with worker_database(url, "gw0") as worker_url:
        assert worker_url == url


async def test_a_sqlite_file_per_worker(tmp_path: Path) -> None:
    configured = tmp_path / "app.db"
    worker_file = tmp_path / "app_gw3.db"
    worker_file.write_text("left behind")
    async with worker_database(f"sqlite+aiosqlite:///{configured}", "gw3") as url:
        assert make_url(url).database == str(worker_file)
        assert not worker_file.exists()
        worker_file.write_text("the run's data")
        (tmp_path / "app_gw3.db-wal").write_text("")
    assert not os.listdir(tmp_path), "a file was left behind"


async def test_the_configured_database_is_left_alone(backend: str) -> None:
    url = backend_url(backend)
    async with worker_database(url, "plugkeep") as worker_url:
        assert make_url(worker_url).database != make_url(url).database
    if backend != "sqlite":
        assert await server_has_database(url, str(make_url(url).database))
        assert not await server_has_database(url, f"{make_url(url).database}_plugkeep")
