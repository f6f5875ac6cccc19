"""One suite, three drivers.

Every database test takes the ``db`` fixture (or ``write_db`` for writes) and so runs on SQLite
(aiosqlite), PostgreSQL (asyncpg) and MySQL/MariaDB (aiomysql): ``test_get[postgres]``.
``pytest -m postgres`` picks one backend. Server URLs come from HEROREPO_POSTGRES_URL and
HEROREPO_MYSQL_URL, defaulting to the local servers. An unreachable server is skipped with the
reason, unless HEROREPO_REQUIRE_BACKENDS lists it (CI lists all three): then it is a failure.

Tables are created once per backend and emptied after every test, so tests can commit for real
and still run in any order. Each test also checks that no connection was left checked out.
"""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, settings
from sqlalchemy import delete, text

from herorepo import Database
from herorepo._url import resolve_url

from .models import metadata

# herorepo's own pytest plugin, turned on as users turn it on (its fixtures are all named
# herorepo_*; tests/examples uses them), pytester, which tests/plugin runs user projects with, and
# the throw-away servers that restart and replication tests start themselves.
pytest_plugins = ["herorepo.testing", "pytester", "tests.servers"]

settings.register_profile(
    "herorepo",
    deadline=None,
    max_examples=40,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "herorepo"))

DEFAULT_URLS = {
    "postgres": "postgresql+asyncpg://postgres@127.0.0.1:5432/test",
    "mysql": "mysql+aiomysql://root@127.0.0.1:3306/test",
}
ENV_VARS = {"postgres": "HEROREPO_POSTGRES_URL", "mysql": "HEROREPO_MYSQL_URL"}
BACKENDS = ("sqlite", "postgres", "mysql")

# Test-only server settings: a connection left idle in a transaction, or a lock wait, ends in
# seconds instead of blocking the next test's DDL forever.
CONNECT_ARGS = {
    "sqlite": {},
    "postgres": {
        "server_settings": {
            "idle_in_transaction_session_timeout": "60000",
            "lock_timeout": "30000",
        }
    },
    "mysql": {"init_command": "SET SESSION innodb_lock_wait_timeout=30, lock_wait_timeout=30"},
}


@dataclass
class Availability:
    ok: bool
    reason: str = ""


_availability: dict[str, Availability] = {}
_sqlite_dir = tempfile.TemporaryDirectory(prefix="herorepo-tests-")


def required_backends() -> set[str]:
    raw = os.environ.get("HEROREPO_REQUIRE_BACKENDS", "")
    return {part.strip() for part in raw.split(",") if part.strip()}


def backend_url(name: str) -> str:
    if name == "sqlite":
        return f"sqlite+aiosqlite:///{Path(_sqlite_dir.name) / 'tests.db'}"
    return os.environ.get(ENV_VARS[name], DEFAULT_URLS[name])


def check_backend(name: str) -> Availability:
    if name in _availability:
        return _availability[name]
    url = backend_url(name)
    try:
        parsed, _ = resolve_url(url)
    except Exception as exc:  # a missing driver package is the usual reason
        result = Availability(False, f"{name}: {exc}")
    else:
        if name == "sqlite":
            result = Availability(True)
        else:
            host = parsed.host or "127.0.0.1"
            port = parsed.port or (5432 if name == "postgres" else 3306)
            try:
                socket.create_connection((host, port), timeout=3).close()
                result = Availability(True)
            except OSError as exc:
                result = Availability(
                    False,
                    f"{name}: no server at {host}:{port} ({exc.strerror or exc}); start it or set "
                    f"{ENV_VARS[name]}",
                )
    _availability[name] = result
    return result


def require(name: str) -> None:
    availability = check_backend(name)
    if availability.ok:
        return
    if name in required_backends():
        pytest.fail(
            f"Backend required by HEROREPO_REQUIRE_BACKENDS is unavailable: {availability.reason}",
            pytrace=False,
        )
    pytest.skip(f"backend unavailable: {availability.reason}")


_run_lock: IO[str] | None = None


def pytest_sessionstart(session: pytest.Session) -> None:
    """Let one test run at a time use the shared servers: runs share table names."""
    global _run_lock
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, runs must not overlap
        return
    path = Path(tempfile.gettempdir()) / "herorepo-tests.lock"
    _run_lock = path.open("w")
    try:
        fcntl.flock(_run_lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        print("herorepo: another test run holds the database servers; waiting for it")
        fcntl.flock(_run_lock, fcntl.LOCK_EX)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _availability:
        return
    lines = []
    for name in BACKENDS:
        availability = _availability.get(name)
        if availability is None:
            continue
        lines.append(
            f"{name}: ran" if availability.ok else f"{name}: SKIPPED ({availability.reason})"
        )
    terminalreporter.write_sep("-", "herorepo backends")
    for line in lines:
        terminalreporter.write_line(line)


PARAMS = [pytest.param(name, marks=getattr(pytest.mark, name), id=name) for name in BACKENDS]
WRITE_PARAMS = [
    *PARAMS,
    # MariaDB with RETURNING switched off behaves like MySQL 8, which has none.
    pytest.param("mysql-noreturning", marks=pytest.mark.mysql, id="mysql-noreturning"),
]


async def open_database(variant: str) -> Database:
    name = variant.removesuffix("-noreturning")
    database = Database(backend_url(name), connect_args=CONNECT_ARGS[name])
    if variant.endswith("-noreturning"):
        async with database.engine.connect():
            pass  # the dialect learns the server's features on first connect; override them after
        dialect = database.engine.dialect
        dialect.insert_returning = False
        dialect.update_returning = False
        dialect.delete_returning = False
    return database


class Databases:
    """One open database per backend variant, tables created on first use."""

    def __init__(self) -> None:
        self._open: dict[str, Database] = {}

    async def get(self, variant: str) -> Database:
        if variant not in self._open:
            database = await open_database(variant)
            if not any(v.startswith(variant.split("-")[0]) for v in self._open):
                await database.drop_all(metadata)
                await database.create_all(metadata)
            self._open[variant] = database
        return self._open[variant]

    async def close(self) -> None:
        dropped: set[str] = set()
        for variant, database in self._open.items():
            base = variant.split("-")[0]
            if base not in dropped:
                await database.drop_all(metadata)
                dropped.add(base)
            await database.dispose()


@pytest_asyncio.fixture(scope="session")
async def databases() -> AsyncIterator[Databases]:
    registry = Databases()
    yield registry
    await registry.close()


@pytest.fixture(scope="session", params=PARAMS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    require(name)
    return name


@pytest.fixture(scope="session", params=WRITE_PARAMS)
def write_backend(request: pytest.FixtureRequest) -> str:
    variant: str = request.param
    require(variant.removesuffix("-noreturning"))
    return variant


@pytest.fixture(scope="session", params=[p for p in PARAMS if p.id != "sqlite"])
def server_backend(request: pytest.FixtureRequest) -> str:
    """PostgreSQL and MySQL only: for behaviour SQLite cannot have (row locks, deadlocks)."""
    name: str = request.param
    require(name)
    return name


@pytest_asyncio.fixture
async def server_db(server_backend: str, databases: Databases) -> AsyncIterator[Database]:
    async for database in _use(await databases.get(server_backend)):
        yield database


@pytest.fixture
def database_url(backend: str) -> str:
    return backend_url(backend)


async def _clean(database: Database) -> None:
    async with database.engine.begin() as connection:
        for table in reversed(metadata.sorted_tables):
            await connection.execute(delete(table))


async def open_transactions(db: Database) -> int:
    """Transactions that other connections hold open on the server right now."""
    if db.backend == "sqlite":
        return 0
    if db.backend == "postgresql":
        query = (
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'"
        )
    else:
        query = (
            "SELECT count(*) FROM information_schema.innodb_trx "
            "WHERE trx_mysql_thread_id <> CONNECTION_ID()"
        )
    async with db.engine.connect() as connection:
        return int((await connection.execute(text(query))).scalar_one())


async def _use(database: Database) -> AsyncIterator[Database]:
    await _clean(database)
    yield database
    checked_out = database.pool_stats().checked_out
    left_open = await open_transactions(database)
    await _clean(database)
    assert checked_out == 0, f"the test left {checked_out} connection(s) checked out"
    assert left_open == 0, f"the test left {left_open} transaction(s) open on the server"


@pytest_asyncio.fixture
async def db(backend: str, databases: Databases) -> AsyncIterator[Database]:
    async for database in _use(await databases.get(backend)):
        yield database


@pytest_asyncio.fixture
async def write_db(write_backend: str, databases: Databases) -> AsyncIterator[Database]:
    async for database in _use(await databases.get(write_backend)):
        yield database


@pytest.fixture
def sqlite_path() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="herorepo-") as directory:
        yield Path(directory) / "app.db"
