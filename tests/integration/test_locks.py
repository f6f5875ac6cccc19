"""Row locks on reads, on every backend, and a job queue whose workers claim each job once.

PostgreSQL and MariaDB lock rows; SQLite has no row locks, and a unit of work that may write
holds its whole database's write lock instead: herorepo grants a lock there, and refuses
what SQLite cannot keep (NOWAIT, SKIP LOCKED, a lock outside a writing unit of work).
"""

from __future__ import annotations

import asyncio

import pytest

from herorepo import (
    ConfigurationError,
    Database,
    LockTimeoutError,
    ReadOnlyTransactionError,
    Repository,
    TransactionError,
)

from ..models import Job

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]


async def jobs(db: Database, count: int) -> list[int]:
    async with db.unit_of_work() as uow:
        made = await uow.repository(Job).add_many([{"status": "ready"} for _ in range(count)])
    return [job.id for job in made if job.id is not None]


async def test_a_locked_row_refuses_nowait_and_is_skipped_by_skip_locked(
    write_db: Database,
) -> None:
    first, second = await jobs(write_db, 2)
    async with write_db.unit_of_work() as holder:
        held = await holder.repository(Job).for_update().get_one(first)
        assert held.id == first
        if write_db.backend == "sqlite":
            for option in ({"nowait": True}, {"skip_locked": True}):
                with pytest.raises(ConfigurationError, match="SQLite has no row locks"):
                    holder.repository(Job).for_update(**option)
            return
        with pytest.raises(LockTimeoutError):  # and the other unit of work rolls back
            async with write_db.unit_of_work(independent=True) as other:
                await other.repository(Job).for_update(nowait=True).get_one(first)
        async with write_db.unit_of_work(independent=True) as other:
            free = await other.repository(Job).for_update(skip_locked=True).list(order_by="id")
            assert [job.id for job in free] == [second]


async def test_shared_locks_let_readers_in_and_writers_not(write_db: Database) -> None:
    (job,) = await jobs(write_db, 1)
    async with write_db.unit_of_work() as reader:
        await reader.repository(Job).for_share().find_one(id=job)
        if write_db.backend == "sqlite":
            return  # the writing unit of work holds the write lock: nobody else writes anyway
        async with write_db.unit_of_work(independent=True) as other_reader:
            assert (await other_reader.repository(Job).for_share(nowait=True).get_one(job)).id
        with pytest.raises(LockTimeoutError):
            async with write_db.unit_of_work(independent=True) as writer:
                await writer.repository(Job).for_update(nowait=True).get_one(job)


async def test_a_lock_is_refused_where_it_cannot_hold(write_db: Database) -> None:
    await jobs(write_db, 1)
    async with write_db.unit_of_work(read_only=True) as uow:
        with pytest.raises(ReadOnlyTransactionError, match="read-only"):
            uow.repository(Job).for_update()
    with pytest.raises(ConfigurationError, match="pick one"):
        async with write_db.unit_of_work() as uow:
            uow.repository(Job).for_update(nowait=True, skip_locked=True)
    if write_db.backend == "sqlite":
        async with write_db.session() as session:  # no unit of work: no write lock held
            with pytest.raises(TransactionError, match="SQLite has no row locks"):
                Repository(session, Job).for_update()


@pytest.mark.parametrize("workers", [4])
async def test_job_queue_workers_claim_every_job_exactly_once(
    write_db: Database, workers: int
) -> None:
    ids = await jobs(write_db, 40)
    claims: dict[str, list[int]] = {f"w{n}": [] for n in range(workers)}
    # Where rows can be skipped, workers skip the ones another holds; on SQLite they take turns
    # on the write lock.
    skip = write_db.backend != "sqlite"

    async def worker(name: str) -> None:
        while True:
            async with write_db.unit_of_work() as uow:
                queue = uow.repository(Job).for_update(skip_locked=skip)
                batch = await queue.list(Job.status == "ready", order_by="id", limit=3)
                if not batch:
                    return
                for job in batch:
                    job.status, job.claimed_by = "claimed", name
                await uow.session.flush()
            claims[name].extend(job.id for job in batch if job.id is not None)
            await asyncio.sleep(0)  # let the other workers in

    await asyncio.gather(*(worker(name) for name in claims))
    claimed = [job for taken in claims.values() for job in taken]
    assert sorted(claimed) == sorted(ids)  # none lost, none twice
    async with write_db.session() as session:
        rows = await Repository(session, Job).list()
    assert {(job.id, job.status) for job in rows} == {(job, "claimed") for job in ids}
    by_worker = {job.id: job.claimed_by for job in rows}
    assert all(by_worker[job] == name for name, taken in claims.items() for job in taken)
