"""One suite, three drivers.

Every database test takes the ``db`` fixture (or ``write_db`` for writes) and so runs on SQLite
(aiosqlite), PostgreSQL (asyncpg) and MySQL/MariaDB (aiomysql): ``test_get[postgres]``.
``pytest -m postgres`` picks one backend. Server URLs come from HEROREPO_POSTGRES_URL and
HEROREPO_MYSQL_URL, defaulting to the local servers. An unreachable server is skipped with the
reason, unless HEROREPO_REQUIRE_BACKENDS lists it (CI lists all three): then it is a failure.

Each test process works in a database of its own on each server, created when it first needs
it and dropped at the end (``herorepo_test_<host>_<pid>``; one left by a run that died is dropped
by the next run on this machine). So test runs, and pytest-xdist workers (``-n 2``), never share
tables, and no lock serialises them. Tables are created once per backend and emptied after
every test, so tests can commit for real and still run in any order. Each test also checks that
no connection was left checked out.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import os
import re
import socket
import tempfile
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, settings
from sqlalchemy import delete, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import create_async_engine

from herorepo import Database
from herorepo._url import resolve_url

from .models import metadata

# herorepo's own pytest plugin, turned on as users turn it on (its fixtures are all named
# herorepo_*; tests/examples uses them), pytester, which tests/plugin runs user projects with, and
# the throw-away servers that restart and replication tests start themselves.
pytest_plugins = ["herorepo.testing", "pytester", "tests.servers", "tests.galera"]

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


def configured_url(name: str) -> str:
    """The server URL the run was given; tests use :func:`backend_url`, this run's database."""
    return os.environ.get(ENV_VARS[name], DEFAULT_URLS[name])


# This run's database on each server: one per process, so that concurrent runs and xdist workers
# never share tables. The host's hash keeps runs of other machines (or containers) sharing a
# server out of the clean-up of databases whose process has died.
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
RUN_DATABASE = f"herorepo_test_{_HOST}_{os.getpid()}"
# Tests may make more databases named after this one (``<RUN_DATABASE>_docs``); all go at the end.
_LEFTOVER = re.compile(rf"herorepo_test_{_HOST}_(\d+)(_\w+)?")
_created: dict[str, URL] = {}  # backend -> the URL of the database this process created


def backend_url(name: str) -> str:
    if name == "sqlite":
        return f"sqlite+aiosqlite:///{Path(_sqlite_dir.name) / 'tests.db'}"
    if name in _created:
        return _created[name].render_as_string(hide_password=False)
    return configured_url(name)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def _database_statements(url: URL, statements: list[str]) -> list[str]:
    """Run ``statements`` outside a transaction; return the names of this host's databases."""
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            if url.get_backend_name() == "mysql":
                await connection.execute(text("SET SESSION lock_wait_timeout = 10"))
            for statement in statements:
                await connection.execute(text(statement))
            listing = (
                "SELECT datname FROM pg_database"
                if url.get_backend_name() == "postgresql"
                else "SELECT schema_name FROM information_schema.schemata"
            )
            return [str(row[0]) for row in await connection.execute(text(listing))]
    finally:
        await engine.dispose()


def _run_in_thread(coroutine: Coroutine[object, object, list[str]]) -> list[str]:
    """Run ``coroutine`` in a loop of its own: a test's event loop may be running."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result(timeout=60)


def _create_run_database(name: str) -> None:
    """Create this process's database on server ``name``, after dropping dead runs' ones."""
    url, _ = resolve_url(configured_url(name))
    existing = _run_in_thread(_database_statements(url, []))
    leftovers = [
        db
        for db in existing
        if (match := _LEFTOVER.fullmatch(db)) and not _process_alive(int(match[1]))
    ]
    if name == "postgres":
        create = f"CREATE DATABASE {RUN_DATABASE} ENCODING 'UTF8' TEMPLATE template0"
        drops = [f"DROP DATABASE IF EXISTS {db} WITH (FORCE)" for db in leftovers]
    else:
        create = f"CREATE DATABASE {RUN_DATABASE} CHARACTER SET utf8mb4"
        drops = [f"DROP DATABASE IF EXISTS {db}" for db in leftovers]
    _run_in_thread(_database_statements(url, [*drops, create]))
    _created[name] = url.set(database=RUN_DATABASE)


def _drop_run_databases() -> None:
    for name, url in _created.items():
        server = url.set(database=make_url(configured_url(name)).database)
        force = " WITH (FORCE)" if name == "postgres" else ""
        try:
            existing = _run_in_thread(_database_statements(server, []))
            ours = [
                db for db in existing if db == RUN_DATABASE or db.startswith(RUN_DATABASE + "_")
            ]
            drops = [f"DROP DATABASE IF EXISTS {db}{force}" for db in ours]
            _run_in_thread(_database_statements(server, drops))
        except Exception as exc:  # the next run drops them: this process is gone by then
            print(f"herorepo: could not drop the test databases {RUN_DATABASE}* on {name}: {exc}")
    _created.clear()


def check_backend(name: str) -> Availability:
    if name in _availability:
        return _availability[name]
    url = configured_url(name) if name != "sqlite" else backend_url(name)
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
            except OSError as exc:
                result = Availability(
                    False,
                    f"{name}: no server at {host}:{port} ({exc.strerror or exc}); start it or set "
                    f"{ENV_VARS[name]}",
                )
            else:
                try:
                    _create_run_database(name)
                    result = Availability(True)
                except Exception as exc:
                    result = Availability(
                        False,
                        f"{name}: could not create the test run's database on {host}:{port} "
                        f"({type(exc).__name__}); the suite needs a user that may create "
                        f"databases: {exc}",
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


def pytest_sessionfinish(session: pytest.Session) -> None:
    _drop_run_databases()
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: tell the controller what each backend did
        workeroutput["herorepo_backends"] = {
            name: [availability.ok, availability.reason]
            for name, availability in _availability.items()
        }


class _XdistController:
    """Collects the workers' backend reports, for the summary below."""

    @pytest.hookimpl
    def pytest_testnodedown(self, node: object, error: object) -> None:
        reports = getattr(node, "workeroutput", {}).get("herorepo_backends", {})
        for name, (ok, reason) in reports.items():
            if name not in _availability or not ok:
                _availability[name] = Availability(ok, reason)


# Tests that start their own servers (tests/servers.py) run on one xdist worker
# (``--dist loadgroup``), so that each session-scoped server starts once per run, not per worker.
SERVER_FIXTURES = {
    "throwaway_postgres",
    "throwaway_mariadb",
    "replicated_postgres",
    "failover_pairs",
    "pgbouncer",
    "galera_cluster",
    "throwaway_server",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.xdist_group("throwaway-servers"))


def pytest_configure(config: pytest.Config) -> None:
    if importlib.util.find_spec("xdist") is not None and not hasattr(config, "workerinput"):
        config.pluginmanager.register(_XdistController(), "herorepo-xdist-controller")


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
        # Connections of this database only: other runs and workers use the server too.
        query = (
            "SELECT count(*) FROM information_schema.innodb_trx AS trx "
            "JOIN information_schema.processlist AS p ON p.id = trx.trx_mysql_thread_id "
            "WHERE trx.trx_mysql_thread_id <> CONNECTION_ID() AND p.db = DATABASE()"
        )
    async with db.engine.connect() as connection:
        return int((await connection.execute(text(query))).scalar_one())


async def settled_open_transactions(db: Database, within: float = 5.0) -> int:
    """:func:`open_transactions`, given ``within`` seconds to reach 0.

    A connection that a test closed (a cancelled or failed one) is rolled back by the server's
    own thread, which on a loaded machine can still list its transaction for a moment; one left
    idle in a transaction stays.
    """
    count = 0
    for _ in range(max(1, round(within / 0.1))):
        count = await open_transactions(db)
        if not count:
            break
        await asyncio.sleep(0.1)
    return count


async def _use(database: Database) -> AsyncIterator[Database]:
    await _clean(database)
    yield database
    checked_out = database.pool_stats().checked_out
    left_open = await settled_open_transactions(database)
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
