"""herorepo's pytest plugin: a database for your tests, and every test rolled back.

Turn it on with ``pytest_plugins = ["herorepo.testing"]`` in your top-level ``conftest.py``, or by
giving a database URL (``--herorepo-url URL``, ``HEROREPO_TEST_URL`` or the ``herorepo_url`` ini
option). Installing herorepo alone changes nothing in a test run. The fixtures need pytest-asyncio
and run in its session event loop: set ``asyncio_default_fixture_loop_scope = "session"`` and
``asyncio_default_test_loop_scope = "session"``.

======================  ========  ==========================================================
fixture                 scope     gives
======================  ========  ==========================================================
``herorepo_url``        session   the URL: ``--herorepo-url``, ``HEROREPO_TEST_URL``, the ini
                                  option, else ``sqlite+aiosqlite:///:memory:``
``herorepo_metadata``   session   the tables to create: ``SQLModel.metadata``; override it
``herorepo_database``   session   the :class:`~herorepo.Database`, with the missing tables
                                  created (and dropped again at the end of the run)
``herorepo_db``         function  a ``Database`` whose sessions and units of work all run in
                                  one transaction, rolled back after the test
``herorepo_session``    function  a session of ``herorepo_db``
``herorepo_uow``        function  an active unit of work of ``herorepo_db``
``herorepo_client``     function  an httpx ``AsyncClient`` for your ``herorepo_app`` whose
                                  requests use ``herorepo_db``
======================  ========  ==========================================================

Code under test may commit: inside the test's transaction a commit releases a SAVEPOINT
(SQLAlchemy's ``join_transaction_mode="create_savepoint"``), so the test sees the data and the
next test does not. ``herorepo_db`` fails a test that leaves a connection checked out of the
pool. :func:`count_queries` and :func:`assert_max_queries` pin the number of SQL statements a
block runs.

The helpers work without the fixtures: :func:`isolated_database` is what ``herorepo_db`` uses.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import copy
import re
import weakref
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import MetaData, Table, event, inspect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker
from sqlalchemy.pool import QueuePool
from sqlmodel import SQLModel

from . import _pytest_entry
from ._database import Database
from ._policies import Policy
from ._schema import create_tables

try:
    import pytest_asyncio
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("herorepo.testing needs pytest-asyncio: pip install pytest-asyncio") from exc

if TYPE_CHECKING:
    import httpx
    from sqlalchemy.engine import Connection
    from sqlmodel.ext.asyncio.session import AsyncSession

    from ._unit_of_work import UnitOfWork

__all__ = [
    "DEFAULT_URL",
    "QueryLog",
    "assert_max_queries",
    "assert_no_n_plus_one",
    "checked_out_connections",
    "count_queries",
    "isolated_database",
    "statement_shape",
]

DEFAULT_URL = "sqlite+aiosqlite:///:memory:"
"""The database the fixtures use when no URL is configured."""


# --- helpers -------------------------------------------------------------------------------------


@asynccontextmanager
async def isolated_database(database: Database) -> AsyncGenerator[Database, None]:
    """Yield a copy of ``database`` whose work is all rolled back when the block ends.

    The copy holds one connection with a transaction open. Its sessions and units of work join
    that transaction: their commits release a SAVEPOINT (``join_transaction_mode=
    "create_savepoint"``), their rollbacks roll back to it, and the data stays visible to later
    sessions of the copy until the block ends. Works on SQLite too: herorepo's engines emit
    ``BEGIN`` themselves, which SAVEPOINT needs there.

    Everything runs on that one connection, so run no concurrent work on the copy, and create
    tables before the block (MySQL commits DDL implicitly). The copy's ``engine`` is the
    original engine: statements run directly on it are not rolled back.

    .. versionadded:: 0.1.0
    """
    async with database.engine.connect() as connection:
        transaction = await connection.begin()
        try:
            yield _bound_to(database, connection)
        finally:
            if transaction.is_active:
                await transaction.rollback()


def _bound_to(database: Database, connection: AsyncConnection) -> Database:
    maker = database.sessionmaker
    settings: dict[str, Any] = {**maker.kw, "join_transaction_mode": "create_savepoint"}
    settings.pop("bind", None)
    bound = copy.copy(database)
    bound.sessionmaker = async_sessionmaker(connection, class_=maker.class_, **settings)
    return bound


@dataclass
class QueryLog:
    """The SQL statements run inside :func:`count_queries`, transaction control left out.

    ``BEGIN``, ``COMMIT``, ``ROLLBACK``, ``SAVEPOINT`` and ``RELEASE`` are not counted: a unit
    of work adds them whatever the code inside does.
    """

    statements: list[str] = field(default_factory=list[str])

    @property
    def count(self) -> int:
        """How many statements ran."""
        return len(self.statements)

    def __str__(self) -> str:
        lines = [
            f"{number}. {' '.join(sql.split())}" for number, sql in enumerate(self.statements, 1)
        ]
        return "\n".join(lines) or "(no statements)"


_TRANSACTION_CONTROL = re.compile(r"\s*(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE)\b", re.IGNORECASE)


def _sync_engine(target: Database | AsyncEngine) -> Any:
    return (target.engine if isinstance(target, Database) else target).sync_engine


@contextmanager
def count_queries(target: Database | AsyncEngine) -> Generator[QueryLog, None, None]:
    """Record the SQL statements that run on ``target``'s engine inside the block.

    ::

        with count_queries(db) as queries:
            team = await uow.repository(Team).get_one(team_id, load=[Team.heroes])
        assert queries.count == 2, queries  # the team, then its heroes

    Statements of every connection of the engine count, including other tasks' work.

    .. versionadded:: 0.1.0
    """
    log = QueryLog()
    engine = _sync_engine(target)

    def record(
        conn: Connection,
        cursor: object,
        statement: str,
        parameters: object,
        context: object,
        executemany: bool,
    ) -> None:
        if not _TRANSACTION_CONTROL.match(statement):
            log.statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield log
    finally:
        event.remove(engine, "before_cursor_execute", record)


@contextmanager
def assert_max_queries(
    target: Database | AsyncEngine, limit: int
) -> Generator[QueryLog, None, None]:
    """Fail with the statements listed if the block runs more than ``limit`` SQL statements.

    ::

        with assert_max_queries(db, 2):  # an N+1 regression would run one SELECT per team
            await client.get("/teams/1")

    Raises:
        AssertionError: more than ``limit`` statements ran (and the block raised nothing else).

    .. versionadded:: 0.1.0
    """
    with count_queries(target) as log:
        yield log
    if log.count > limit:
        raise AssertionError(
            f"Expected at most {limit} SQL statement(s), but {log.count} ran:\n{log}"
        )


# Placeholders of one statement shape: $1 (asyncpg), ? (sqlite3), %s (aiomysql); a list of
# them (an expanded IN) counts as one, whatever its length.
_PLACEHOLDER = r"(?:\$\d+|\?|%s|%\(\w+\)s)"
_PLACEHOLDER_LIST = re.compile(rf"\(\s*{_PLACEHOLDER}(?:\s*,\s*{_PLACEHOLDER})*\s*\)")


def statement_shape(statement: str) -> str:
    """``statement`` with its parameters' places and lists of them made alike: two executions
    of one query with other values have the same shape."""
    shape = _PLACEHOLDER_LIST.sub("(...)", " ".join(statement.split()))
    return re.sub(r"\$\d+", "$n", shape)


@contextmanager
def assert_no_n_plus_one(
    target: Database | AsyncEngine, max_repeats: int = 3
) -> Generator[QueryLog, None, None]:
    """Fail if one statement shape runs more than ``max_repeats`` times inside the block.

    A query run once per row of an earlier query (an N+1: the team of each hero, read one by
    one) repeats one shape; ``load=[...]`` reads the same in one or two statements::

        with assert_no_n_plus_one(db):
            await client.get("/heroes/")

    Statements with other values but the same text (and lists of values of any length, as in
    ``IN (...)``) count as one shape.

    Raises:
        AssertionError: a shape ran more than ``max_repeats`` times (and the block raised
            nothing else); the message shows it and how often it ran.

    .. versionadded:: 0.1.0
    """
    given: object = max_repeats  # checked as if untyped: tests pass what they like
    if isinstance(given, bool) or not isinstance(given, int) or given < 1:
        raise ValueError(f"max_repeats must be a whole number >= 1, got {given!r}.")
    with count_queries(target) as log:
        yield log
    shapes = Counter(statement_shape(statement) for statement in log.statements)
    repeated = [(shape, times) for shape, times in shapes.most_common() if times > max_repeats]
    if repeated:
        shape, times = repeated[0]
        raise AssertionError(
            f"N+1: one statement ran {times} times (at most {max_repeats} allowed); load what "
            f"it reads with load=[...] in the first query instead:\n  {shape}\n"
            f"All {log.count} statements:\n{log}"
        )


class _CheckoutCounter:
    """Connections checked out of an engine's pool and not yet returned, for any pool class."""

    def __init__(self, engine: Any) -> None:
        self.count = 0
        event.listen(engine, "checkout", self._checkout)
        event.listen(engine, "checkin", self._checkin)

    def _checkout(self, *_args: object) -> None:
        self.count += 1

    def _checkin(self, *_args: object) -> None:
        self.count -= 1


_COUNTERS: weakref.WeakKeyDictionary[Any, _CheckoutCounter] = weakref.WeakKeyDictionary()


def checked_out_connections(target: Database | AsyncEngine) -> int:
    """How many connections of ``target``'s pool are checked out now.

    The first call starts counting on pools that keep no count themselves (SQLite in-memory
    databases share one connection): it returns 0 there.

    .. versionadded:: 0.1.0
    """
    engine = _sync_engine(target)
    if isinstance(engine.pool, QueuePool):
        return engine.pool.checkedout()
    counter = _COUNTERS.get(engine)
    if counter is None:
        counter = _COUNTERS[engine] = _CheckoutCounter(engine)
    return counter.count


# --- options and checks --------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    # The entry point declares the options; without it (plugin autoload off) this module does.
    if not pluginmanager.has_plugin("herorepo"):
        _pytest_entry.add_options(parser)


_LOOP_BOUND = frozenset(
    {"herorepo_database", "herorepo_db", "herorepo_session", "herorepo_uow", "herorepo_client"}
)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Fail early, and clearly, when a test would use the fixtures from another event loop."""
    if not _LOOP_BOUND.intersection(getattr(item, "fixturenames", ())):
        return
    marker = item.get_closest_marker("asyncio")
    if marker is None:
        return
    scope = marker.kwargs.get("loop_scope") or _ini(item.config, "asyncio_default_test_loop_scope")
    if (scope or "function") != "session":
        pytest.fail(
            f"{item.nodeid} runs in a {scope or 'function'}-scoped event loop, but herorepo's "
            "fixtures hold connections of the session loop. Set asyncio_default_test_loop_scope "
            '= "session" in the pytest configuration, or mark the test '
            '@pytest.mark.asyncio(loop_scope="session").',
            pytrace=False,
        )


def _ini(config: pytest.Config, name: str) -> str | None:
    try:
        value: object = config.getini(name)
    except ValueError:
        return None
    return value if isinstance(value, str) and value else None


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def herorepo_url(pytestconfig: pytest.Config) -> str:
    """The database URL of the run; override this fixture to choose it in code."""
    return _pytest_entry.configured_url(pytestconfig) or DEFAULT_URL


@pytest.fixture(scope="session")
def herorepo_metadata() -> MetaData:
    """The tables to create for the run: every SQLModel table; override it to narrow them."""
    return SQLModel.metadata


@pytest.fixture(scope="session")
def herorepo_policies() -> Sequence[Policy]:
    """The policies of the run's database (none); override it with your app's, so that tests
    see the tenant scoping and soft delete the app has::

        @pytest.fixture(scope="session")
        def herorepo_policies():
            return app_module.POLICIES
    """
    return ()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def herorepo_database(
    herorepo_url: str, herorepo_metadata: MetaData, herorepo_policies: Sequence[Policy]
) -> AsyncIterator[Database]:
    """The run's database, with the tables of ``herorepo_metadata`` that were missing created,
    and the policies of ``herorepo_policies``.

    At the end of the run it drops the tables it created (and only those) and disposes the pool.
    """
    database = Database(herorepo_url, policies=herorepo_policies)
    checked_out_connections(database)  # start counting now
    try:
        created = await _create_missing(database, herorepo_metadata)
        try:
            yield database
        finally:
            async with database.engine.begin() as connection:
                await connection.run_sync(
                    lambda sync: herorepo_metadata.drop_all(sync, tables=created)
                )
    finally:
        await database.dispose()


async def _create_missing(database: Database, metadata: MetaData) -> list[Table]:
    def create(sync: Connection) -> list[Table]:
        inspector = inspect(sync)
        missing = [
            table
            for table in metadata.sorted_tables
            if not inspector.has_table(table.name, schema=table.schema)
        ]
        create_tables(sync, metadata, missing)
        return missing

    async with database.engine.begin() as connection:
        return await connection.run_sync(create)


@pytest_asyncio.fixture(loop_scope="session")
async def herorepo_db(herorepo_database: Database) -> AsyncIterator[Database]:
    """A database whose work in this test is rolled back at its end; see :func:`isolated_database`.

    Fails the test if it leaves a connection of the pool checked out.
    """
    before = checked_out_connections(herorepo_database)
    async with isolated_database(herorepo_database) as database:
        yield database
    leaked = checked_out_connections(herorepo_database) - before
    if leaked > 0:
        pytest.fail(
            f"The test left {leaked} connection(s) checked out of the pool. Close every session "
            "and connection it opens: use `async with db.session() as session:` and "
            "`async with db.unit_of_work() as uow:`.",
            pytrace=False,
        )


@pytest_asyncio.fixture(loop_scope="session")
async def herorepo_session(herorepo_db: Database) -> AsyncIterator[AsyncSession]:
    """A session of ``herorepo_db``; it may commit, and the test's end rolls everything back."""
    async with herorepo_db.session() as session:
        yield session


@pytest_asyncio.fixture(loop_scope="session")
async def herorepo_uow(herorepo_db: Database) -> AsyncIterator[UnitOfWork]:
    """An active unit of work of ``herorepo_db``; rolled back, never committed, at the end."""
    async with herorepo_db.unit_of_work() as uow:
        yield uow
        await uow.rollback()


@pytest.fixture
def herorepo_app() -> Any:
    """Your FastAPI app, for ``herorepo_client``: define a fixture with this name."""
    pytest.fail(
        "herorepo_client needs your app: define a fixture named herorepo_app that returns it.",
        pytrace=False,
    )


@pytest_asyncio.fixture(loop_scope="session")
async def herorepo_client(
    herorepo_app: Any, herorepo_db: Database
) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client for ``herorepo_app`` whose requests use ``herorepo_db``.

    It overrides :func:`herorepo.integrations.fastapi.get_database`, on which every herorepo
    dependency is built, so that each request's sessions and unit of work join the test's
    transaction, and puts back what was there after the test. The app's lifespan does not run.
    """
    import httpx

    from .integrations.fastapi import get_database

    overrides: dict[Any, Any] = herorepo_app.dependency_overrides
    missing = object()
    previous = overrides.get(get_database, missing)
    overrides[get_database] = lambda: herorepo_db
    try:
        transport = httpx.ASGITransport(app=herorepo_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client
    finally:
        if previous is missing:
            overrides.pop(get_database, None)
        else:
            overrides[get_database] = previous
