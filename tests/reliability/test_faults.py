"""Faults survived: pool exhaustion, races, lost connections, timeouts, SQLite locks, cancels."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from herorepo import (
    ConnectionLostError,
    Database,
    DatabaseBusyError,
    EngineConfig,
    LockTimeoutError,
    PoolTimeoutError,
    Repository,
    StatementTimeoutError,
    UniqueViolationError,
)

from ..conftest import CONNECT_ARGS, backend_url, settled_open_transactions
from ..integration.helpers import team_names
from ..models import Hero, Team
from .conftest import Figures, impatient_database

pytestmark = pytest.mark.asyncio

SLEEP = {
    "postgresql": "SELECT pg_sleep(5)",
    "mysql": "SELECT SLEEP(5)",
    # A query that keeps SQLite busy for seconds.
    "sqlite": "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50000000) "
    "SELECT count(*) FROM n",
}


def small_pool_db(backend: str, **config: object) -> Database:
    settings = {"pool_size": 1, "max_overflow": 0, "pool_timeout": 0.3, **config}
    return Database(
        backend_url(backend),
        EngineConfig(**settings),
        connect_args=CONNECT_ARGS[backend],  # type: ignore[arg-type]
    )


async def test_pool_exhaustion_is_a_clear_error_within_the_timeout(
    backend: str, db: Database, figures: Figures
) -> None:
    async with small_pool_db(backend) as small:
        async with small.unit_of_work() as holder:
            await holder.repository(Team).count()  # holds the only connection
            started = time.monotonic()
            with pytest.raises(PoolTimeoutError, match=r"within 0\.3 s \(pool_size=1"):
                # independent: a second connection (read-only: SQLite's write lock is held)
                async with small.unit_of_work(independent=True, read_only=True) as starved:
                    await starved.repository(Team).count()
            assert time.monotonic() - started < 3
            figures.add("faults: pool exhausted")
            assert small.pool_stats().checked_out == 1
        async with small.unit_of_work() as after:  # recovered
            assert await after.repository(Team).count() == 0
        assert small.pool_stats().checked_out == 0


async def test_unique_race_has_exactly_one_winner(db: Database, figures: Figures) -> None:
    async def create() -> str:
        try:
            async with db.unit_of_work() as uow:
                await uow.repository(Team).create({"name": "Contested"})
        except UniqueViolationError:
            return "conflict"
        return "created"

    outcomes = await asyncio.gather(*(create() for _ in range(100)))
    assert outcomes.count("created") == 1
    assert outcomes.count("conflict") == 99
    figures.add("concurrent creates of one unique value", 100)
    assert await team_names(db) == ["Contested"]


async def backend_pid(connection_owner: object, backend: str) -> int:
    query = "SELECT pg_backend_pid()" if backend == "postgresql" else "SELECT CONNECTION_ID()"
    session = connection_owner.session  # type: ignore[attr-defined]
    return int((await session.exec(text(query))).scalar_one())


async def kill(db: Database, pid: int) -> None:
    """End server session ``pid`` from a connection of a separate engine."""
    statement = (
        "SELECT pg_terminate_backend(:pid)" if db.backend == "postgresql" else "KILL CONNECTION %d"
    )
    name = "postgres" if db.backend == "postgresql" else "mysql"
    async with Database(backend_url(name)) as killer, killer.engine.connect() as connection:
        if db.backend == "postgresql":
            await connection.execute(text(statement), {"pid": pid})
        else:
            # KILL takes no bind parameters; pid is an int read from the server itself.
            await connection.exec_driver_sql(statement % int(pid))
        await connection.commit()


async def test_killed_connection_fails_the_unit_and_the_next_one_works(
    server_db: Database, figures: Figures
) -> None:
    db = server_db
    with pytest.raises(ConnectionLostError, match="connection to the database was lost"):
        async with db.unit_of_work() as uow:
            await uow.repository(Team).create({"name": "Lost"})
            await kill(db, await backend_pid(uow, db.backend))
            await asyncio.sleep(0.2)
            await uow.repository(Team).count()
    assert await team_names(db) == []
    figures.add("faults: connection killed mid-transaction")
    async with db.unit_of_work() as uow:
        await uow.repository(Team).create({"name": "Next"})
    assert await team_names(db) == ["Next"]


async def test_killed_idle_pooled_connections_are_replaced(
    server_db: Database, figures: Figures
) -> None:
    db = server_db
    async with db.unit_of_work() as uow:
        pid = await backend_pid(uow, db.backend)
    await kill(db, pid)  # the connection now idles in the pool, dead
    figures.add("faults: idle pooled connection killed")
    await asyncio.sleep(0.2)
    async with db.unit_of_work() as uow:  # pre-ping notices and reconnects
        await uow.repository(Team).create({"name": "Fine"})
    assert await team_names(db) == ["Fine"]


async def test_statement_timeout(server_db: Database, figures: Figures) -> None:
    db = server_db
    # Limits that end with the transaction or the statement: a session setting would stay on
    # the pooled connection for the tests after this one.
    statements = (
        ["SET LOCAL statement_timeout = 100", SLEEP["postgresql"]]
        if db.backend == "postgresql"
        else ["SET STATEMENT max_statement_time = 0.1 FOR SELECT SLEEP(5)"]
    )
    with pytest.raises(StatementTimeoutError, match="ran past its time limit"):
        async with db.unit_of_work() as uow:
            for statement in statements:
                await uow.session.exec(text(statement))  # type: ignore[call-overload]
    figures.add("faults: statement timeout")


async def test_lock_timeout_is_transient(server_db: Database, figures: Figures) -> None:
    db = server_db
    async with db.unit_of_work() as uow:
        team = await uow.repository(Team).create({"name": "Locked"})
    async with impatient_database(db) as waiter_db:
        async with db.unit_of_work() as holder:
            await holder.repository(Team).update(team.id, {"headquarters": "held"})
            with pytest.raises(LockTimeoutError):
                async with waiter_db.unit_of_work() as waiter:
                    await waiter.repository(Team).update_many(
                        Team.id == team.id, values={"headquarters": "waited"}
                    )
    figures.add("faults: lock wait timeout")
    async with db.session() as session:
        stored = await Repository(session, Team).get_one(team.id)
    assert stored.headquarters == "held"


async def test_sqlite_writers_wait_for_each_other(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'busy.db'}"
    async with Database(url) as db:
        await db.create_all(Team.metadata)

        async def write(i: int) -> None:
            async with db.unit_of_work() as uow:
                await uow.repository(Team).count()  # read first, then write: needs the lock
                await asyncio.sleep(0.01)
                await uow.repository(Team).create({"name": f"Team {i}"})

        await asyncio.gather(*(write(i) for i in range(20)))
        async with db.session() as session:
            assert await Repository(session, Team).count() == 20


async def test_sqlite_busy_past_the_timeout_is_transient(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'busy.db'}"
    config = EngineConfig(sqlite_busy_timeout=0.1)
    # Another process's database, as it were: herorepo refuses a second writer of its own at once.
    async with Database(url, config) as db, Database(url, config) as other:
        await db.create_all(Team.metadata)
        async with db.unit_of_work() as holder:
            await holder.repository(Team).create({"name": "Holder"})
            with pytest.raises(DatabaseBusyError, match="Run the whole unit of work again"):
                async with other.unit_of_work() as blocked:
                    await blocked.repository(Team).create({"name": "Blocked"})


# --- cancellation -----------------------------------------------------------------------------


async def test_cancelling_a_slow_query_leaks_nothing(db: Database, figures: Figures) -> None:
    async def slow() -> None:
        async with db.unit_of_work() as uow:
            await uow.repository(Team).create({"name": "Never"})
            await uow.session.exec(text(SLEEP[db.backend]))  # type: ignore[call-overload]

    for _ in range(5):
        task = asyncio.create_task(slow())
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        figures.add("cancellations: during a slow query")
    assert db.pool_stats().checked_out == 0
    assert await settled_open_transactions(db) == 0
    assert await team_names(db) == []
    async with db.unit_of_work() as uow:  # the pool hands out clean connections
        assert await uow.repository(Team).count() == 0


async def test_cancelling_at_random_points_is_all_or_nothing(
    db: Database, figures: Figures
) -> None:
    rng = random.Random(1234)
    reached_commit: set[str] = set()

    async def transfer(i: int) -> None:
        async with db.unit_of_work() as uow:
            team = await uow.repository(Team).create({"name": f"T{i}"})
            await uow.repository(Hero).create(
                {"name": f"H{i}", "secret_name": "s", "team_id": team.id}
            )
            reached_commit.add(f"T{i}")

    cancelled = 0
    for i in range(300):
        task = asyncio.create_task(transfer(i))
        await asyncio.sleep(rng.uniform(0, 0.004))
        if task.cancel():
            cancelled += 1
        try:
            await task
        except asyncio.CancelledError:
            pass
    assert cancelled > 0
    figures.add("cancellations: at random points", cancelled)
    assert db.pool_stats().checked_out == 0
    assert await settled_open_transactions(db) == 0
    async with db.session() as session:
        teams = {t.name for t in await Repository(session, Team).list()}
        heroes = {h.name for h in await Repository(session, Hero).list()}
    # Each unit of work committed both rows or neither, and only if it got to its commit.
    assert {name.replace("H", "T") for name in heroes} == teams
    assert teams <= reached_commit
