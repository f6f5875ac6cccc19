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
                                  created (and dropped again at the end of the run); a
                                  database of its own in each pytest-xdist worker
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
block runs; :func:`assert_no_n_plus_one` fails a block, and the marker
``@pytest.mark.herorepo_no_n_plus_one(max_repeats=3)`` a whole test, that runs one statement
shape more than ``max_repeats`` times (only the test function's statements count, not its
fixtures').

Under pytest-xdist (``pytest -n 4``) each worker's ``herorepo_database`` runs on a database of
its own, created at its start and dropped at its end: see :func:`worker_database`.

The helpers work without the fixtures: :func:`isolated_database` is what ``herorepo_db`` uses.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import MetaData, Table, event, inspect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker
from sqlalchemy.pool import QueuePool
from sqlmodel import SQLModel

from . import _pytest_entry
from ._database import Database
from ._errors import ConfigurationError
from ._policies import Policy
from ._query_log import (
    QueryLog,
    assert_max_queries,
    assert_no_n_plus_one,
    check_max_repeats,
    count_queries,
    repeated_shapes,
    statement_shape,
    sync_engine,
)
from ._schema import create_tables
from ._test_databases import worker_database

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
    "worker_database",
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
    engine = sync_engine(target)
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


_NO_N_PLUS_ONE = "herorepo_no_n_plus_one"
_DEFAULT_MAX_REPEATS = 3


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{_NO_N_PLUS_ONE}(max_repeats={_DEFAULT_MAX_REPEATS}): fail the test when one SQL "
        "statement shape runs more than max_repeats times on herorepo's test database during "
        "the test (herorepo.testing)",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Fail early, and clearly, when a test would use the fixtures from another event loop, or
    is marked to watch for N+1 queries without a database to watch."""
    uses_fixtures = bool(_LOOP_BOUND.intersection(getattr(item, "fixturenames", ())))
    if item.get_closest_marker(_NO_N_PLUS_ONE) is not None:
        _max_repeats(item)
        if not uses_fixtures:
            pytest.fail(
                f"@pytest.mark.{_NO_N_PLUS_ONE} counts the statements on herorepo's test "
                f"database, which {item.name} does not use: give it one of the fixtures "
                f"{', '.join(sorted(_LOOP_BOUND))}.",
                pytrace=False,
            )
    if not uses_fixtures:
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


def _max_repeats(item: pytest.Item) -> int:
    marker = item.get_closest_marker(_NO_N_PLUS_ONE)
    assert marker is not None
    given: object = marker.kwargs.get(
        "max_repeats", marker.args[0] if marker.args else _DEFAULT_MAX_REPEATS
    )
    problem = None
    if len(marker.args) > 1 or set(marker.kwargs) - {"max_repeats"}:
        problem = "it takes one argument, max_repeats"
    else:
        try:
            return check_max_repeats(given)
        except ValueError as exc:
            problem = str(exc)
    pytest.fail(f"@pytest.mark.{_NO_N_PLUS_ONE} on {item.name}: {problem}", pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    """Count the statements of a test marked ``herorepo_no_n_plus_one``; fail on a repeat.

    Only the test function's own statements count, on every connection of the test database's
    engine: the setup and teardown of fixtures (tables, data they insert) do not.
    """
    if item.get_closest_marker(_NO_N_PLUS_ONE) is None:
        return (yield)
    max_repeats = _max_repeats(item)
    funcargs: dict[str, object] = getattr(item, "funcargs", {})
    database = funcargs.get("herorepo_database")
    if not isinstance(database, Database):
        pytest.fail(
            f"@pytest.mark.{_NO_N_PLUS_ONE} on {item.name}: herorepo_database is not a "
            f"herorepo Database here (got {type(database).__name__}).",
            pytrace=False,
        )
    with count_queries(database) as log:
        outcome = yield  # a test that failed already fails with its own error
    repeated = repeated_shapes(log.statements, max_repeats)
    if repeated:
        shapes = "\n".join(f"  {times} times: {shape}" for shape, times in repeated)
        pytest.fail(
            f"N+1 in {item.name}: a statement ran more than {max_repeats} time(s) "
            f"(@pytest.mark.{_NO_N_PLUS_ONE}(max_repeats={max_repeats})); load what it reads "
            f"with load=[...] in the first query instead:\n{shapes}",
            pytrace=False,
        )
    return outcome


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
    request: pytest.FixtureRequest,
    herorepo_url: str,
    herorepo_metadata: MetaData,
    herorepo_policies: Sequence[Policy],
) -> AsyncIterator[Database]:
    """The run's database, with the tables of ``herorepo_metadata`` that were missing created,
    and the policies of ``herorepo_policies``.

    At the end of the run it drops the tables it created (and only those) and disposes the pool.
    In a pytest-xdist worker it runs on a database of the worker's own instead, named after
    ``herorepo_url``'s (``test_gw0``; a file ``tests_gw0.db`` on SQLite), created empty for the
    run and dropped after it: see :func:`worker_database`.
    """
    async with AsyncExitStack() as stack:
        url = herorepo_url
        worker = _xdist_worker(request.config)
        if worker is not None:
            refused = None
            try:
                url = await stack.enter_async_context(worker_database(herorepo_url, worker))
            except ConfigurationError as exc:
                refused = f"pytest-xdist worker {worker}: {exc}"
            if refused is not None:  # failed outside the handler: no chained tracebacks
                pytest.fail(refused, pytrace=False)
        database = Database(url, policies=herorepo_policies)
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


def _xdist_worker(config: pytest.Config) -> str | None:
    """The pytest-xdist worker id (``gw0``) of this process; None outside a worker."""
    workerinput: dict[str, object] = getattr(config, "workerinput", {})
    worker = workerinput.get("workerid")
    return worker if isinstance(worker, str) else None


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

    async def test_database() -> Database:  # async: a plain def would run in a thread
        return herorepo_db

    overrides[get_database] = test_database
    try:
        transport = httpx.ASGITransport(app=herorepo_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client
    finally:
        if previous is missing:
            overrides.pop(get_database, None)
        else:
            overrides[get_database] = previous
