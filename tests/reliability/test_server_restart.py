"""A server restart: idle pooled connections are replaced, an open unit of work fails cleanly.

These tests stop and start a server, so they run on a throw-away server of their own
(tests/servers.py), never on the shared one: PostgreSQL and MariaDB, each restarted with a clean
shutdown ("fast") and with a crash ("immediate": SIGQUIT / SIGKILL).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from sqlalchemy import delete, text

from herorepo import ConnectionLostError, Database, EngineConfig

from ..integration.helpers import team_names
from ..models import Team, metadata
from ..servers import StopMode, ThrowAwayServer
from .conftest import Figures

pytestmark = pytest.mark.asyncio

POOL_SIZE = 3
MODES = ["fast", "immediate"]

# The throw-away PostgreSQL server is shared (PgBouncer's tests keep connections to it), so
# these tests name their connections and count only those. MariaDB's serves these tests alone.
APPLICATION = "herorepo-restart-test"
CONNECT_ARGS: dict[str, dict[str, object]] = {
    "postgres": {"server_settings": {"application_name": APPLICATION}},
    "mysql": {},
}
CLIENT_CONNECTIONS = {
    "postgres": "SELECT count(*) FROM pg_stat_activity "
    f"WHERE application_name = '{APPLICATION}' AND pid <> pg_backend_pid()",
    "mysql": "SELECT count(*) FROM information_schema.processlist "
    "WHERE user = 'root' AND id <> CONNECTION_ID()",
}


@pytest_asyncio.fixture
async def restart_db(throwaway_server: ThrowAwayServer) -> AsyncIterator[Database]:
    config = EngineConfig(pool_size=POOL_SIZE, max_overflow=0, pool_timeout=10)
    connect_args = CONNECT_ARGS[throwaway_server.backend]
    async with Database(throwaway_server.url, config, connect_args=connect_args) as db:
        await db.create_all(metadata)
        async with db.engine.begin() as connection:
            for table in reversed(metadata.sorted_tables):
                await connection.execute(delete(table))
        yield db
        assert db.pool_stats().checked_out == 0, "a connection was left checked out"


async def fill_pool(db: Database) -> None:
    """Use every pooled connection at once, so that all of them idle in the pool afterwards."""
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(POOL_SIZE):
            uow = await stack.enter_async_context(db.unit_of_work(independent=True))
            await uow.repository(Team).count()
    assert db.pool_stats().idle == POOL_SIZE


async def client_connections(server: ThrowAwayServer) -> int:
    """Connections the server has from clients other than this probe."""
    async with Database(server.url) as probe, probe.engine.connect() as connection:
        return int((await connection.execute(text(CLIENT_CONNECTIONS[server.backend]))).scalar())


@pytest.mark.parametrize("mode", MODES)
async def test_idle_pooled_connections_survive_a_server_restart(
    throwaway_server: ThrowAwayServer, restart_db: Database, mode: StopMode, figures: Figures
) -> None:
    db = restart_db
    await fill_pool(db)
    assert await client_connections(throwaway_server) == POOL_SIZE

    pid = throwaway_server.pid
    await asyncio.to_thread(throwaway_server.restart, mode)
    assert throwaway_server.pid not in (None, pid)  # a new server process

    async with db.unit_of_work() as uow:  # pre-ping finds the pool dead and reconnects
        await uow.repository(Team).create({"name": "After the restart"})
    assert await team_names(db) == ["After the restart"]
    await fill_pool(db)  # every pooled connection works again, all at once
    assert db.pool_stats().checked_out == 0
    # Nothing leaked: the server sees exactly the connections idling in the pool.
    assert await client_connections(throwaway_server) == db.pool_stats().idle == POOL_SIZE
    figures.add(f"restarts ({mode}) with {POOL_SIZE} idle pooled connections: next request works")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("failing_step", ["next statement", "commit"])
async def test_unit_of_work_open_across_a_restart_fails_and_commits_nothing(
    throwaway_server: ThrowAwayServer,
    restart_db: Database,
    mode: StopMode,
    failing_step: str,
    figures: Figures,
) -> None:
    db = restart_db
    with pytest.raises(ConnectionLostError, match="connection to the database was lost"):
        async with db.unit_of_work() as uow:
            await uow.repository(Team).create({"name": "Lost in the restart"})
            await asyncio.to_thread(throwaway_server.restart, mode)
            if failing_step == "next statement":
                await uow.repository(Team).count()
            # else: leaving the block commits, on a connection the server has dropped
    assert db.pool_stats().checked_out == 0
    assert await team_names(db) == []
    figures.add(f"restarts ({mode}) inside a unit of work: ConnectionLostError, nothing saved")

    async with db.unit_of_work() as uow:
        await uow.repository(Team).create({"name": "Next"})
    assert await team_names(db) == ["Next"]
    assert await client_connections(throwaway_server) == db.pool_stats().idle


async def test_a_stopped_server_is_a_connection_lost_error_until_it_is_back(
    throwaway_server: ThrowAwayServer, restart_db: Database, figures: Figures
) -> None:
    db = restart_db
    await fill_pool(db)
    await asyncio.to_thread(throwaway_server.stop, "fast")
    try:
        for _ in range(3):  # pre-ping fails, and so does the reconnect: a clear error each time
            with pytest.raises(ConnectionLostError):
                async with db.unit_of_work() as uow:
                    await uow.repository(Team).count()
        assert db.pool_stats().checked_out == 0
    finally:
        await asyncio.to_thread(throwaway_server.start)
    async with db.unit_of_work() as uow:
        await uow.repository(Team).create({"name": "Back"})
    assert await team_names(db) == ["Back"]
    figures.add("server down: ConnectionLostError on each request, then recovery")
