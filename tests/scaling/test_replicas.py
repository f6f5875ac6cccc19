"""Read replicas against a real streaming replica the suite starts itself (tests/servers.py).

The primary and its replica (``pg_basebackup -R``) run on free loopback ports, apart from the
shared server; the tests stop the replica and pause its replay without disturbing anything else.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from collections import Counter
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from sqlalchemy import delete, text

from herorepo import Database, Replicas, TransactionError, UnitOfWork

from ..models import Team, metadata
from ..servers import PostgresServer
from .conftest import Measured

pytestmark = [pytest.mark.asyncio, pytest.mark.postgres]

FAST = {"check_interval": 0.1, "retry_after": 0.5, "timeout": 2.0}
ROUNDS = 200


async def on_replica(uow: UnitOfWork) -> bool:
    return bool((await uow.session.exec(text("SELECT pg_is_in_recovery()"))).scalar_one())  # type: ignore[call-overload]


async def settle(db: Database) -> None:
    """Wait (at most 10 s) until read-only units of work of this task run on the replica."""
    deadline = time.monotonic() + 10
    while True:
        async with db.unit_of_work(read_only=True) as uow:
            if await on_replica(uow):
                return
        assert time.monotonic() < deadline, "read-only units of work never reached the replica"
        await asyncio.sleep(0.05)


async def caught_up(primary: PostgresServer, replica: PostgresServer) -> None:
    """Wait (at most 10 s) until the replica has replayed everything the primary wrote so far."""
    target = primary.psql("SELECT pg_current_wal_insert_lsn()")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        done = replica.psql(f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn")
        if done == "t":
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"the replica did not replay up to {target} within 10 s")


@pytest_asyncio.fixture
async def servers(
    replicated_postgres: tuple[PostgresServer, PostgresServer],
) -> AsyncIterator[tuple[PostgresServer, PostgresServer]]:
    primary, replica = replicated_postgres
    replica.ensure_running()
    replica.psql("SELECT pg_wal_replay_resume()")
    async with Database(primary.url) as plain:
        await plain.create_all(metadata)
        async with plain.engine.begin() as connection:
            for table in reversed(metadata.sorted_tables):
                await connection.execute(delete(table))
    await caught_up(primary, replica)
    yield primary, replica


@pytest_asyncio.fixture
async def db(servers: tuple[PostgresServer, PostgresServer]) -> AsyncIterator[Database]:
    primary, replica = servers
    async with Database(primary.url, replicas=Replicas([replica.url], **FAST)) as database:
        yield database
        assert database.pool_stats().checked_out == 0, "a connection was left checked out"


async def test_routes_read_only_units_of_work_to_the_replica(db: Database) -> None:
    async with db.unit_of_work(read_only=True) as uow:
        assert await on_replica(uow)
    async with db.unit_of_work() as uow:
        assert not await on_replica(uow)
    async with db.session() as session:
        assert not (await session.exec(text("SELECT pg_is_in_recovery()"))).scalar_one()  # type: ignore[call-overload]
    assert db.pool_stats().idle == 2  # the primary's connection and the replica's
    async with db.unit_of_work(read_only=True, isolation_level="REPEATABLE READ") as uow:
        assert await on_replica(uow)
    async with db.unit_of_work(read_only=True, isolation_level="SERIALIZABLE") as uow:
        assert not await on_replica(uow)  # a hot standby refuses SERIALIZABLE
    assert repr(db).endswith("replicas=1)")


@pytest.mark.parametrize("where", ["replica", "primary"])
async def test_read_only_units_of_work_cannot_write_or_lock(
    db: Database, servers: tuple[PostgresServer, PostgresServer], where: str
) -> None:
    _, replica = servers
    if where == "primary":
        replica.stop()
    for statement in (
        "INSERT INTO hr_team (name, headquarters) VALUES ('x', '')",
        "SELECT * FROM hr_team FOR UPDATE",
    ):
        with pytest.raises(TransactionError, match="read-only"):
            async with db.unit_of_work(read_only=True) as uow:
                assert await on_replica(uow) == (where == "replica")
                await uow.session.exec(text(statement))  # type: ignore[call-overload]


async def test_writes_on_the_primary_appear_on_the_replica(
    servers: tuple[PostgresServer, PostgresServer], measured: Measured
) -> None:
    """How long a commit takes to show on the replica, read directly (no routing)."""
    primary, replica = servers
    delays: list[float] = []
    stale = 0
    async with Database(primary.url) as writer, Database(replica.url) as reader:
        async with reader.engine.connect() as connection:
            autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
            for i in range(ROUNDS):
                async with writer.unit_of_work() as uow:
                    await uow.repository(Team).create({"name": f"T{i}"})
                committed = time.perf_counter()
                query = text("SELECT count(*) FROM hr_team WHERE name = :name")
                reads = 0
                while not (await autocommit.execute(query, {"name": f"T{i}"})).scalar_one():
                    reads += 1
                    assert time.perf_counter() - committed < 10, f"T{i} never reached the replica"
                stale += reads > 0
                delays.append(time.perf_counter() - committed)
    delays.sort()
    version = primary.psql("SHOW server_version").split()[0]
    measured("servers", f"PostgreSQL {version}: a primary and a streaming replica of it")
    measured(
        "commit on the primary until visible on the replica (median / p95 / max)",
        f"{statistics.median(delays) * 1000:.2f} / {delays[int(len(delays) * 0.95)] * 1000:.2f} "
        f"/ {delays[-1] * 1000:.2f} ms over {ROUNDS} writes",
    )
    measured(
        "replica read right after a commit, without read-your-writes: stale",
        f"{stale} of {ROUNDS}",
    )


@pytest.mark.parametrize("in_child_task", [False, True], ids=["same-task", "child-task"])
async def test_a_write_then_a_read_is_never_stale(
    db: Database, in_child_task: bool, measured: Measured
) -> None:
    where: Counter[str] = Counter()

    async def read(team_id: int) -> None:
        async with db.unit_of_work(read_only=True) as uow:
            where["replica" if await on_replica(uow) else "primary"] += 1
            assert await uow.repository(Team).get(team_id) is not None, "a stale read"

    for i in range(ROUNDS):
        async with db.unit_of_work() as uow:
            team = await uow.repository(Team).create({"name": f"T{i}"})
        assert team.id is not None
        if in_child_task:
            await asyncio.create_task(read(team.id))  # the task copies this context
        else:
            await read(team.id)
    assert where["replica"] + where["primary"] == ROUNDS
    label = "a child task" if in_child_task else "the same task"
    measured(
        f'write, then read at once in {label} (read_your_writes="lsn")',
        f"0 stale of {ROUNDS}; {where['replica']} read on the replica, "
        f"{where['primary']} on the primary",
    )


async def test_a_write_sends_reads_to_the_primary_for_the_window(
    servers: tuple[PostgresServer, PostgresServer],
) -> None:
    primary, replica = servers
    settings = Replicas([replica.url], read_your_writes=0.5, **FAST)
    async with Database(primary.url, replicas=settings) as db:
        async with db.unit_of_work(read_only=True) as uow:
            assert await on_replica(uow)
        async with db.unit_of_work() as uow:
            await uow.repository(Team).create({"name": "Windowed"})
        async with db.unit_of_work(read_only=True) as uow:
            assert not await on_replica(uow)
            assert await uow.repository(Team).count() == 1

        async def other_task() -> bool:  # started before the write: its reads are not held back
            async with db.unit_of_work(read_only=True) as uow:
                return await on_replica(uow)

        await asyncio.sleep(0.6)
        async with db.unit_of_work(read_only=True) as uow:
            assert await on_replica(uow)
        assert await asyncio.create_task(other_task())


async def test_a_stopped_replica_is_skipped_then_used_again(
    db: Database,
    servers: tuple[PostgresServer, PostgresServer],
    caplog: pytest.LogCaptureFixture,
    measured: Measured,
) -> None:
    _, replica = servers
    async with db.unit_of_work(read_only=True) as uow:
        assert await on_replica(uow)
    replica.stop("immediate")
    caplog.set_level(logging.INFO, logger="herorepo")
    started = time.perf_counter()
    async with db.unit_of_work(read_only=True) as uow:
        assert not await on_replica(uow)
        assert await uow.repository(Team).count() == 0
    fallback = time.perf_counter() - started
    assert f"replica {replica.url}: it could not be reached" in caplog.text
    for _ in range(20):  # skipped for retry_after: no more attempts, no more log lines
        async with db.unit_of_work(read_only=True) as uow:
            assert not await on_replica(uow)
    assert caplog.text.count("could not be reached") == 1

    replica.start()
    back = time.perf_counter()
    while True:
        async with db.unit_of_work(read_only=True) as uow:
            if await on_replica(uow):
                break
        assert time.perf_counter() - back < 10, "the replica was not used again"
        await asyncio.sleep(0.05)
    assert "in use" in caplog.text
    measured(
        "first read after the replica stopped (goes to the primary)",
        f"{fallback * 1000:.1f} ms, one warning logged",
    )
    measured(
        "replica back in use after it restarted",
        f"{(time.perf_counter() - back) * 1000:.0f} ms (retry_after=0.5 s)",
    )


async def test_a_lagging_replica_is_skipped(
    servers: tuple[PostgresServer, PostgresServer], caplog: pytest.LogCaptureFixture
) -> None:
    primary, replica = servers
    settings = Replicas([replica.url], max_lag=0.3, **FAST)
    caplog.set_level(logging.INFO, logger="herorepo")
    async with Database(primary.url, replicas=settings) as db, Database(primary.url) as writer:
        await settle(db)  # max_lag=0.3 s: a first check may find WAL a moment from replayed
        replica.psql("SELECT pg_wal_replay_pause()")
        try:
            async with writer.unit_of_work() as uow:
                await uow.repository(Team).create({"name": "Not replayed"})
            await asyncio.sleep(0.6)
            async with db.unit_of_work(read_only=True) as uow:
                assert not await on_replica(uow)
                assert await uow.repository(Team).count() == 1
            assert "behind (max_lag=0.3); skipped" in caplog.text
        finally:
            replica.psql("SELECT pg_wal_replay_resume()")
        await caught_up(primary, replica)
        await settle(db)
        async with db.unit_of_work(read_only=True) as uow:
            assert await on_replica(uow)
            assert await uow.repository(Team).count() == 1


async def test_an_unreachable_replica_is_logged_without_its_password(
    servers: tuple[PostgresServer, PostgresServer], caplog: pytest.LogCaptureFixture
) -> None:
    primary, _ = servers
    settings = Replicas(["postgresql://app:s3cret-replica@127.0.0.1:1/test"], **FAST)
    caplog.set_level(logging.INFO, logger="herorepo")
    async with Database(primary.url, replicas=settings) as db:
        async with db.unit_of_work(read_only=True) as uow:
            assert not await on_replica(uow)
        assert db.pool_stats().checked_out == 0
    assert "could not be reached" in caplog.text
    assert "app:***@127.0.0.1:1" in caplog.text
    assert "s3cret" not in caplog.text


async def test_reads_wait_on_the_primary_until_the_replica_replays_the_write(
    servers: tuple[PostgresServer, PostgresServer],
) -> None:
    """With replay paused, the writer's reads go to the primary; other tasks' to the replica."""
    primary, replica = servers
    settings = Replicas([replica.url], max_lag=60, **FAST)
    async with Database(primary.url, replicas=settings) as db:
        gate = asyncio.Event()

        async def started_before_the_write() -> tuple[bool, int]:
            await gate.wait()
            async with db.unit_of_work(read_only=True) as uow:
                return await on_replica(uow), await uow.repository(Team).count()

        other = asyncio.create_task(started_before_the_write())
        replica.psql("SELECT pg_wal_replay_pause()")
        try:
            async with db.unit_of_work() as uow:
                await uow.repository(Team).create({"name": "Mine"})
            for _ in range(3):
                async with db.unit_of_work(read_only=True) as uow:
                    assert not await on_replica(uow)
                    assert await uow.repository(Team).count() == 1
            gate.set()
            assert await other == (True, 0)  # its context has no write: the replica, stale
        finally:
            replica.psql("SELECT pg_wal_replay_resume()")
        await caught_up(primary, replica)
        async with db.unit_of_work(read_only=True) as uow:
            assert await on_replica(uow)
            assert await uow.repository(Team).count() == 1


async def test_a_replica_that_stops_between_checks_is_skipped_at_once(
    servers: tuple[PostgresServer, PostgresServer], caplog: pytest.LogCaptureFixture
) -> None:
    primary, replica = servers
    settings = Replicas([replica.url], check_interval=60, retry_after=60)
    caplog.set_level(logging.INFO, logger="herorepo")
    async with Database(primary.url, replicas=settings) as db:
        async with db.unit_of_work(read_only=True) as uow:  # checked now, next check in 60 s
            assert await on_replica(uow)
        replica.stop("immediate")
        async with db.unit_of_work(read_only=True) as uow:  # fails on the replica, then retries
            assert not await on_replica(uow)
            assert await uow.repository(Team).count() == 0
        assert db.pool_stats().checked_out == 0
    assert f"replica {replica.url}: it could not be reached" in caplog.text
