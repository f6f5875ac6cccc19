"""MariaDB Galera: a 3-node cluster on loopback, reached through a URL that lists every node.

The cluster (``galera_cluster``, tests/galera.py) is started once for this module; a test that
kills a node restarts it. Writes of one row on two nodes conflict at certification: the loser
gets error 1213 at COMMIT, a ``DeadlockError`` that ``Database.run()`` retries. A node killed
with SIGKILL mid-workload is survived: its connections fail, ``Database.run()`` reconnects to
the other nodes and runs the work again (or asks the cluster whether a cut-off COMMIT
committed), and the node rejoins by IST.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from herorepo import (
    CannotConnectError,
    ConcurrentUpdateError,
    Database,
    DeadlockError,
    EngineConfig,
    RetryPolicy,
    TransientError,
    UnitOfWork,
)

from ..conftest import configured_url
from ..galera import GaleraCluster
from ..models import Account
from .conftest import Measured
from .test_failover import Workload, ms

pytestmark = [pytest.mark.asyncio, pytest.mark.mysql]

BOUND = 90.0  # seconds any phase may take, on a loaded machine
# Outlasts failure detection (about 3 s with the cluster's tuned settings) with room to spare.
FAILOVER_POLICY = RetryPolicy(attempts=60, base_delay=0.05, max_delay=0.5)
CONFLICT_POLICY = RetryPolicy(
    attempts=30, base_delay=0.002, max_delay=0.05, retry_on=(TransientError, ConcurrentUpdateError)
)
SMALL_POOL = EngineConfig(pool_size=3, max_overflow=2, pool_timeout=60)


@pytest.fixture
def cluster(galera_cluster: GaleraCluster) -> GaleraCluster:
    galera_cluster.ensure_whole()  # a node an earlier test killed is back and Synced
    return galera_cluster


class GaleraWorkload(Workload):
    """The failover test's workload, writing MariaDB's ``@@port`` for PostgreSQL's function."""

    def insert(self, op: int) -> Callable[[UnitOfWork], Awaitable[None]]:
        async def insert(uow: UnitOfWork) -> None:
            self.attempts[op] += 1
            connection = await uow.session.connection()
            await connection.execute(
                text("INSERT INTO failover_op (op, port) VALUES (:op, @@port)"), {"op": op}
            )

        return insert


async def port_of(uow: UnitOfWork) -> int:
    connection = await uow.session.connection()
    return int((await connection.execute(text("SELECT @@port"))).scalar_one())


async def node_ports(db: Database, connections: int) -> set[int]:
    """The node ports of ``connections`` units of work open at once (new pooled connections)."""
    holding: list[int] = []
    everyone = asyncio.Event()

    async def hold() -> None:
        async with db.unit_of_work() as uow:
            holding.append(await port_of(uow))
            if len(holding) == connections:
                everyone.set()
            await everyone.wait()  # none returns its connection before all have one

    await asyncio.wait_for(asyncio.gather(*(hold() for _ in range(connections))), BOUND)
    return set(holding)


async def execute(db: Database, *statements: str) -> None:
    async with db.engine.begin() as connection:
        for statement in statements:
            await connection.execute(text(statement))


async def test_a_node_list_passes_over_nodes_that_are_down_or_not_synced(
    cluster: GaleraCluster, measured: Measured
) -> None:
    measured(
        "3-node cluster started from nothing (install, bootstrap, two joiners by rsync SST)",
        f"{cluster.started_in:.1f} s",
    )
    first, second, _ = cluster.nodes
    dead = "127.0.0.1:1"  # nothing listens on port 1
    hosts = "&".join(f"host=127.0.0.1:{node.port}" for node in cluster.nodes)
    url = f"mysql://root@/test?host={dead}&{hosts}&load_balance_hosts=disable"
    async with Database(url) as db, db.unit_of_work() as uow:
        assert await port_of(uow) == first.port  # the dead node first, then the first Synced
    await asyncio.to_thread(first.query, "SET GLOBAL wsrep_desync = ON", sync_wait=False)
    try:
        assert first.status("wsrep_local_state_comment") != "Synced"
        async with Database(url) as db, db.unit_of_work() as uow:
            assert await port_of(uow) == second.port  # Donor/Desynced is passed over
    finally:
        await asyncio.to_thread(first.query, "SET GLOBAL wsrep_desync = OFF", sync_wait=False)
        await asyncio.to_thread(first.wait_synced, size=3)


async def test_no_usable_node_is_a_cannot_connect_error_that_names_each() -> None:
    async with Database("mysql://root@127.0.0.1:1,127.0.0.1:2/test") as db:
        with pytest.raises(CannotConnectError) as caught:
            async with db.unit_of_work() as uow:
                await uow.session.connection()
    assert "127.0.0.1:1 could not be reached" in str(caught.value)
    assert "127.0.0.1:2 could not be reached" in str(caught.value)
    assert not caught.value.refused  # Database.run() retries it


async def test_a_server_without_galera_is_used_as_soon_as_it_answers() -> None:
    shared = make_url(configured_url("mysql"))
    url = shared._replace(host=None, port=None).update_query_dict(
        {"host": ["127.0.0.1:1", f"{shared.host or '127.0.0.1'}:{shared.port or 3306}"]}
    )
    async with Database(url) as db:
        try:
            async with db.unit_of_work() as uow:
                assert await port_of(uow) == (shared.port or 3306)
        except CannotConnectError as error:
            pytest.skip(f"the shared MariaDB server is unreachable: {error}")


async def test_certification_conflicts_are_deadlocks_that_run_retries(
    cluster: GaleraCluster, measured: Measured
) -> None:
    first, second, _ = cluster.nodes
    async with Database(first.url) as one, Database(second.url) as two:
        await execute(
            one,
            "DROP TABLE IF EXISTS galera_counter",
            "CREATE TABLE galera_counter (id INT PRIMARY KEY, n INT NOT NULL) ENGINE=InnoDB",
            "INSERT INTO galera_counter VALUES (1, 0)",
        )
        await asyncio.to_thread(second.query, "SELECT n FROM galera_counter")  # applied there

        async def add(db: Database, amount: int) -> None:
            async with db.unit_of_work() as uow:
                connection = await uow.session.connection()
                await connection.execute(
                    text("UPDATE galera_counter SET n = n + :amount WHERE id = 1"),
                    {"amount": amount},
                )

        # A plain unit of work: the row is updated on node 2, then on node 1, which commits
        # first; node 2's COMMIT then fails certification.
        with pytest.raises(DeadlockError):
            async with two.unit_of_work() as uow:
                connection = await uow.session.connection()
                await connection.execute(text("UPDATE galera_counter SET n = n + 10 WHERE id = 1"))
                await add(one, 1)

        runs = 0

        async def conflicting(uow: UnitOfWork) -> None:
            nonlocal runs
            runs += 1
            connection = await uow.session.connection()
            await connection.execute(text("UPDATE galera_counter SET n = n + 100 WHERE id = 1"))
            if runs == 1:
                await add(one, 1)  # commits on node 1 before this COMMIT on node 2

        await two.run(conflicting, retry=CONFLICT_POLICY)
        assert runs == 2
        rows = await asyncio.to_thread(second.query, "SELECT n FROM galera_counter")
        assert rows == [(102,)]  # 1 + 1 from node 1, 100 once from node 2; the 10 rolled back
    measured(
        "certification conflict (the same row updated on two nodes)",
        "the later COMMIT fails with MySQL error 1213: `DeadlockError`; `Database.run()` ran "
        "the work again, which committed",
    )


async def test_bank_transfers_over_three_nodes_keep_the_total(
    cluster: GaleraCluster, measured: Measured, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="herorepo")
    accounts, start, transfers = 6, 100, 150
    banks = [Database(node.url, SMALL_POOL) for node in cluster.nodes]
    try:
        async with banks[0].engine.begin() as connection:
            await connection.execute(text("DROP TABLE IF EXISTS hr_account"))
            await connection.run_sync(Account.__table__.create)  # type: ignore[attr-defined]
        async with banks[0].unit_of_work() as uow:
            made = await uow.repository(Account).add_many(
                [{"owner": f"owner{i}", "balance": start} for i in range(accounts)]
            )
        ids = [account.id for account in made]
        for node in cluster.nodes:  # a causal read: every node has the accounts
            await asyncio.to_thread(node.query, "SELECT count(*) FROM hr_account")
        rng = random.Random(16)
        runs: list[int] = []
        sums: list[int] = []

        async def transfer(bank: Database, source: int | None, target: int | None) -> None:
            tries = 0

            async def work(uow: UnitOfWork) -> None:
                nonlocal tries
                tries += 1
                repo = uow.repository(Account)
                payer = await repo.get_one(source)
                amount = min(payer.balance, rng.randint(1, 40))
                await repo.update(payer, {"balance": payer.balance - amount})
                await asyncio.sleep(0)
                payee = await repo.get_one(target)
                await repo.update(payee, {"balance": payee.balance + amount})

            await bank.run(work, retry=CONFLICT_POLICY)
            runs.append(tries)

        async def reader(bank: Database) -> None:
            for _ in range(15):
                async with bank.unit_of_work(read_only=True) as uow:
                    total = (await uow.session.exec(select(func.sum(Account.balance)))).scalar_one()  # type: ignore[call-overload]
                sums.append(int(total))
                await asyncio.sleep(0.01)

        jobs: list[Awaitable[None]] = []
        for n in range(transfers):
            source, target = rng.sample(ids, 2)
            jobs.append(transfer(banks[n % 3], source, target))
        await asyncio.wait_for(asyncio.gather(*jobs, *(reader(bank) for bank in banks)), BOUND)
    finally:
        for bank in banks:
            await bank.dispose()

    totals: list[list[tuple[object, ...]]] = []
    for node in cluster.nodes:  # causal reads: each node has applied every transfer
        rows = await asyncio.to_thread(node.query, "SELECT id, balance FROM hr_account ORDER BY id")
        totals.append(rows)
    assert totals[0] == totals[1] == totals[2], "the nodes disagree"
    assert sum(int(str(balance)) for _, balance in totals[0]) == accounts * start
    assert all(int(str(balance)) >= 0 for _, balance in totals[0])
    assert set(sums) == {accounts * start}, "a reader saw a half-done transfer"
    assert len(runs) == transfers
    deadlocks = sum("after DeadlockError" in r.getMessage() for r in caplog.records)
    retried = sum(1 for tries in runs if tries > 1)
    assert retried > 0, "no transfer conflicted: the retry path was never taken"
    measured(
        "bank transfers spread over the three nodes (one `Database` per node)",
        f"{transfers} transfers between {accounts} accounts, {retried} run again "
        f"({deadlocks} certification conflicts, `DeadlockError`), {sum(runs)} runs in all; "
        f"total kept on every node, {len(sums)} balance sums read, all equal",
    )


async def test_a_killed_node_is_survived_and_rejoins(
    cluster: GaleraCluster, measured: Measured, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="herorepo")
    warm_up = 60
    async with Database(cluster.url, EngineConfig(pool_size=6, pool_timeout=60)) as db:
        await execute(
            db,
            "DROP TABLE IF EXISTS failover_op",
            "CREATE TABLE failover_op (id BIGINT AUTO_INCREMENT PRIMARY KEY, op BIGINT NOT NULL, "
            "port INT NOT NULL) ENGINE=InnoDB",
        )
        load = GaleraWorkload(db)
        workers = [asyncio.create_task(load.worker()) for _ in range(6)]
        victim = cluster.nodes[0]
        try:
            await load.until_acked(warm_up)
            killed = time.monotonic()
            await asyncio.to_thread(victim.kill)
            await load.until_acked(warm_up, since=killed)
            first_after = min(at for op, at in load.acked.items() if load.started[op] > killed)
            await asyncio.to_thread(victim.start)
            rejoin = await asyncio.to_thread(victim.wait_synced, size=3)
            await load.until_acked(warm_up, since=time.monotonic())
        finally:
            load.stop.set()
            await asyncio.wait_for(asyncio.gather(*workers), BOUND)
        assert db.pool_stats().checked_out == 0

    async with Database(cluster.url) as fresh:  # new connections reach the rejoined node too
        assert await node_ports(fresh, 3) == {node.port for node in cluster.nodes}

    listings = [
        await asyncio.to_thread(node.query, "SELECT op, port FROM failover_op ORDER BY id")
        for node in cluster.nodes
    ]
    assert listings[0] == listings[1] == listings[2], "the nodes disagree"
    counts: Counter[int] = Counter(int(str(op)) for op, _ in listings[1])
    lost = [op for op in load.acked if counts[op] == 0]
    twice = [op for op, n in counts.items() if n > 1]
    assert lost == [], f"acknowledged commits lost: {lost}"
    assert twice == [], f"applied twice: {twice}"
    assert not load.exhausted, f"gave up: {next(iter(load.exhausted.values()))}"
    assert not load.unknown, f"outcome unknown: {next(iter(load.unknown.values()))}"
    for node in cluster.nodes:  # the commit markers live on the cluster: InnoDB, a primary key
        ((_, create),) = await asyncio.to_thread(
            node.query, "SHOW CREATE TABLE herorepo_commit_markers"
        )
        assert "ENGINE=InnoDB" in str(create)
        assert "PRIMARY KEY" in str(create)

    logged = [record.getMessage() for record in caplog.records]
    rolled_back = sum("retrying a unit of work after CommitInterruptedError" in m for m in logged)
    found_committed = sum("lost during COMMIT, which committed" in m for m in logged)
    retried = sum(1 for op in load.acked if load.attempts[op] > 1)
    measured(
        "workload",
        "6 workers looping `Database.run()` inserts through one `Database` whose URL lists the "
        "three nodes (connections spread round-robin); node 1 killed with SIGKILL after "
        f"{warm_up} commits, restarted once {warm_up} more were acknowledged",
    )
    measured(
        "SIGKILL of a node until the first commit acknowledged that began after it (the write "
        "stall: failure detection, tuned to evict in about 3 s)",
        ms(first_after - killed),
    )
    measured("killed node restarted until Synced again (IST)", f"{rejoin:.1f} s")
    measured(
        "units of work acknowledged / run again after a lost connection",
        f"{len(load.acked)} / {retried}",
    )
    measured(
        "COMMITs cut off by the kill: found rolled back (and run again) / found committed",
        f"{rolled_back} / {found_committed}",
    )
    measured("acknowledged commits lost", str(len(lost)))
    measured("transactions applied twice", str(len(twice)))
    measured("commit outcome unknown (`committed=None`)", str(len(load.unknown)))
