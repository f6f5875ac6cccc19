"""PostgreSQL failover: a primary dies mid-workload, its standby is promoted, work goes on.

Each test gets a fresh primary and streaming standby (``failover_pairs``, tests/servers.py) on
free loopback ports, as promotion changes the topology for good. herorepo connects through a
URL that lists both hosts (``target_session_attrs=read-write``): the primary first, as an
application would list them. The primary is stopped with ``pg_ctl stop -m immediate`` (a crash)
and the standby promoted with ``pg_ctl promote``, what Patroni does underneath, at once: the
detection delay of a real cluster manager (its TTL) comes on top of the window measured here.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from sqlalchemy import text

from herorepo import (
    CommitInterruptedError,
    Database,
    Replicas,
    RetriesExhaustedError,
    RetryPolicy,
    UnitOfWork,
)

from ..servers import FailoverPair, PostgresServer
from .conftest import Measured

pytestmark = [pytest.mark.asyncio, pytest.mark.postgres]

# Enough waiting to outlast a promotion on a loaded machine (about 15 s in all, with jitter);
# a failover that takes longer than the policy allows raises RetriesExhaustedError.
FAILOVER_POLICY = RetryPolicy(attempts=60, base_delay=0.05, max_delay=0.5)
WORKERS = 6
WARM_UP = 100  # commits acknowledged before the primary is stopped, and again after promotion
BOUND = 60.0  # seconds any phase of a test may take


@dataclass
class Workload:
    """Concurrent ``Database.run`` inserts, each of a unique ``op``; what each call returned."""

    db: Database
    acked: dict[int, float] = field(default_factory=dict[int, float])  # op -> when run() returned
    started: dict[int, float] = field(default_factory=dict[int, float])
    unknown: dict[int, CommitInterruptedError] = field(
        default_factory=dict[int, CommitInterruptedError]
    )
    exhausted: dict[int, RetriesExhaustedError] = field(
        default_factory=dict[int, RetriesExhaustedError]
    )
    attempts: Counter[int] = field(default_factory=Counter[int])  # op -> runs of its work
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    ops: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def worker(self) -> None:
        while not self.stop.is_set():
            op = next(self.ops)
            self.started[op] = time.monotonic()
            try:
                await self.db.run(self.insert(op), retry=FAILOVER_POLICY)
            except CommitInterruptedError as error:  # committed=None: the outcome is unknown
                self.unknown[op] = error
            except RetriesExhaustedError as error:
                self.exhausted[op] = error
            else:
                self.acked[op] = time.monotonic()

    def insert(self, op: int) -> Callable[[UnitOfWork], Awaitable[None]]:
        async def insert(uow: UnitOfWork) -> None:
            self.attempts[op] += 1
            connection = await uow.session.connection()
            await connection.execute(
                text("INSERT INTO failover_op (op, port) VALUES (:op, inet_server_port())"),
                {"op": op},
            )

        return insert

    async def until_acked(self, count: int, since: float = 0.0) -> None:
        deadline = time.monotonic() + BOUND
        while sum(1 for at in self.acked.values() if at > since) < count:
            assert time.monotonic() < deadline, f"fewer than {count} commits in {BOUND:g} s"
            await asyncio.sleep(0.01)


async def create_table(db: Database) -> None:
    async with db.engine.begin() as connection:
        await connection.execute(
            text(
                "CREATE TABLE failover_op (id bigserial PRIMARY KEY, op bigint NOT NULL, "
                "port integer NOT NULL)"
            )
        )


async def rows_by_op(server: PostgresServer) -> tuple[Counter[int], dict[int, int]]:
    """How many rows each op has on ``server``, and the port each was written on."""
    listing = await asyncio.to_thread(
        server.psql, "SELECT op, port FROM failover_op", database="test"
    )
    counts: Counter[int] = Counter()
    ports: dict[int, int] = {}
    for line in filter(None, listing.splitlines()):
        op, port = map(int, line.split("|"))
        counts[op] += 1
        ports[op] = port
    return counts, ports


async def server_ports(db: Database, connections: int) -> set[int]:
    """The server port of ``connections`` units of work open at once (every pooled connection)."""
    holding: list[int] = []
    everyone = asyncio.Event()

    async def port() -> int:
        async with db.unit_of_work() as uow:
            found = await port_of(uow)
            holding.append(found)
            if len(holding) == connections:
                everyone.set()
            await everyone.wait()  # none returns its connection before all have one
            return found

    return set(await asyncio.wait_for(asyncio.gather(*(port() for _ in range(connections))), BOUND))


async def port_of(uow: UnitOfWork) -> int:
    connection = await uow.session.connection()
    return int((await connection.execute(text("SELECT inet_server_port()"))).scalar_one())


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


async def test_several_hosts_reach_the_primary_and_the_standby_wherever_listed(
    failover_pairs: Callable[..., FailoverPair],
) -> None:
    pair = failover_pairs(synchronous=False)
    standby_first = (
        f"postgresql://postgres@/test?host=127.0.0.1:{pair.standby.port}"
        f"&host=127.0.0.1:{pair.primary.port}"
    )
    replicas = Replicas([pair.url], check_interval=0.1, timeout=5.0)  # the primary listed first
    async with Database(standby_first, replicas=replicas) as db:
        assert "target_session_attrs=read-write" in repr(db.url)
        # Read first: after a commit, read-your-writes would send this task to the primary.
        async with db.unit_of_work(read_only=True) as uow:
            port = await port_of(uow)
        assert port == pair.standby.port  # a replica's URL gets prefer-standby
        async with db.unit_of_work() as uow:
            port = await port_of(uow)
        assert port == pair.primary.port  # read-write: the standby was tried and passed over


async def test_failover_with_synchronous_replication_loses_and_repeats_nothing(
    failover_pairs: Callable[..., FailoverPair],
    measured: Measured,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="herorepo")
    pair = failover_pairs(synchronous=True)
    async with Database(pair.url) as db:
        await create_table(db)
        load = Workload(db)
        workers = [asyncio.create_task(load.worker()) for _ in range(WORKERS)]
        try:
            await load.until_acked(WARM_UP)
            killed = time.monotonic()
            await asyncio.to_thread(pair.primary.stop, "immediate")
            down = time.monotonic()  # pg_ctl returned: the old primary is gone
            await asyncio.to_thread(pair.standby.promote)
            promoted = time.monotonic()
            await load.until_acked(WARM_UP, since=promoted)
        finally:
            load.stop.set()
            await asyncio.wait_for(asyncio.gather(*workers), BOUND)
        assert not pair.primary.running
        # Every pooled connection now leads to the new primary; none to the old one is kept.
        ports = await server_ports(db, db.pool_stats().idle)
        assert ports == {pair.standby.port}
        assert db.pool_stats().checked_out == 0

    counts, written_on = await rows_by_op(pair.standby)
    lost = [op for op in load.acked if counts[op] == 0]
    twice = [op for op, n in counts.items() if n > 1]
    assert lost == [], f"acknowledged commits lost: {lost}"
    assert twice == [], f"applied twice: {twice}"
    assert not load.exhausted, f"gave up: {next(iter(load.exhausted.values()))}"
    assert all(counts[op] == 0 for op in load.exhausted)  # nothing of those was saved
    after = [op for op, at in load.started.items() if at > promoted and op in load.acked]
    assert after
    assert all(written_on[op] == pair.standby.port for op in after)

    on_new = [at for op, at in load.acked.items() if written_on[op] == pair.standby.port]
    last_on_old = max(at for op, at in load.acked.items() if written_on[op] == pair.primary.port)
    spanning = [
        at - load.started[op] for op, at in load.acked.items() if load.started[op] < down < at
    ]
    retried = sum(1 for op in load.acked if load.attempts[op] > 1)
    logged = [record.getMessage() for record in caplog.records]
    rolled_back = sum("retrying a unit of work after CommitInterruptedError" in m for m in logged)
    found_committed = sum("lost during COMMIT, which committed" in m for m in logged)
    unknown_saved = sum(counts[op] for op in load.unknown)
    measured(
        "topology",
        f"PostgreSQL {pair.standby.psql('SHOW server_version').split()[0]}: a primary and a "
        "synchronous streaming standby (`synchronous_standby_names = '*'`); the URL lists both "
        f"hosts, the primary first; {WORKERS} workers each looping `Database.run()` inserts",
    )
    measured("`pg_ctl stop -m immediate` of the primary", ms(down - killed))
    measured("then `pg_ctl promote` of the standby, until it returned", ms(promoted - down))
    measured(
        "last commit acknowledged by the old primary until the first by the new one "
        "(the unavailability window)",
        ms(min(on_new) - last_on_old),
    )
    measured("primary stopped until the first commit on the new primary", ms(min(on_new) - down))
    measured(
        "longest `Database.run()` call in flight when the primary went down (median of "
        f"{len(spanning)})",
        f"{ms(max(spanning))} ({ms(statistics.median(spanning))})" if spanning else "none",
    )
    measured(
        "units of work acknowledged / run again after a lost connection",
        f"{len(load.acked)} / {retried}",
    )
    measured(
        "COMMITs cut off by the failover: found rolled back (and run again) / found committed",
        f"{rolled_back} / {found_committed}",
    )
    measured("acknowledged commits lost", str(len(lost)))
    measured("transactions applied twice", str(len(twice)))
    measured(
        "commit outcome unknown (`CommitInterruptedError`, `committed=None`), of which saved",
        f"{len(load.unknown)}, {unknown_saved}",
    )


async def test_asynchronous_replication_loses_what_the_standby_had_not_received(
    failover_pairs: Callable[..., FailoverPair], measured: Measured
) -> None:
    """The risk of asynchronous replication, made certain: the standby is cut off (as a slow or
    broken network would), the primary goes on acknowledging commits, then fails over."""
    pair = failover_pairs(synchronous=False)
    writes = 50
    async with Database(pair.url) as db:
        await create_table(db)
        load = Workload(db)
        pair.standby.psql("ALTER SYSTEM SET primary_conninfo = ''")  # its WAL receiver stops
        pair.standby.psql("SELECT pg_reload_conf()")
        deadline = time.monotonic() + BOUND
        while pair.primary.psql("SELECT count(*) FROM pg_stat_replication") != "0":
            assert time.monotonic() < deadline, "the standby stayed connected"
            await asyncio.sleep(0.05)
        for op in range(1, writes + 1):
            await db.run(load.insert(op))  # acknowledged at once: nobody waits for the standby
        await asyncio.to_thread(pair.primary.stop, "immediate")
        await asyncio.to_thread(pair.standby.promote)
        await db.run(load.insert(writes + 1), retry=FAILOVER_POLICY)  # the new primary
    counts, _ = await rows_by_op(pair.standby)
    lost = sum(1 for op in range(1, writes + 1) if counts[op] == 0)
    assert lost == writes
    assert counts[writes + 1] == 1
    measured(
        "asynchronous replication: commits acknowledged while the standby was cut off, "
        "then failover",
        f"{lost} of {writes} lost",
    )
