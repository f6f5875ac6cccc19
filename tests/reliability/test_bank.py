"""The bank invariant: concurrent transfers and readers, with faults retried, lose nothing."""

from __future__ import annotations

import asyncio
import random

import pytest
from sqlalchemy import func, select

from herorepo import (
    ConcurrentUpdateError,
    Database,
    EngineConfig,
    RetryPolicy,
    TransientError,
    UnitOfWork,
)

from ..conftest import CONNECT_ARGS, backend_url
from ..models import Account
from .conftest import Figures

pytestmark = pytest.mark.asyncio

ACCOUNTS = 8
START = 100
TRANSFERS = 200


class Refused(Exception):
    """The source account cannot pay: the transfer is refused, nothing changes."""


async def test_transfers_keep_the_total(backend: str, db: Database, figures: Figures) -> None:
    config = EngineConfig(pool_size=4, max_overflow=2, pool_timeout=60)
    async with Database(backend_url(backend), config, connect_args=CONNECT_ARGS[backend]) as bank:
        async with bank.unit_of_work() as uow:
            accounts = await uow.repository(Account).add_many(
                [{"owner": f"owner{i}", "balance": START} for i in range(ACCOUNTS)]
            )
        ids = [a.id for a in accounts]
        rng = random.Random(7)
        attempts: list[int] = []
        committed: list[int] = []
        refused: list[int] = []
        sums: list[int] = []
        policy = RetryPolicy(
            attempts=30,
            base_delay=0.002,
            max_delay=0.05,
            retry_on=(TransientError, ConcurrentUpdateError),
        )

        async def transfer(n: int, source: int | None, target: int | None, amount: int) -> None:
            tries = 0

            async def work(uow: UnitOfWork) -> None:
                nonlocal tries
                tries += 1
                repo = uow.repository(Account)
                payer = await repo.get_one(source)  # read, check, move
                if payer.balance < amount:
                    raise Refused
                await repo.update(payer, {"balance": payer.balance - amount})
                await asyncio.sleep(0)  # let others interleave between the two writes
                payee = await repo.get_one(target)
                await repo.update(payee, {"balance": payee.balance + amount})

            try:
                await bank.run(work, retry=policy)
            except Refused:
                refused.append(n)
            else:
                committed.append(n)
            attempts.append(tries)

        async def reader() -> None:
            for _ in range(20):
                async with bank.unit_of_work(read_only=True) as uow:
                    total = (await uow.session.exec(select(func.sum(Account.balance)))).scalar_one()  # type: ignore[call-overload]
                sums.append(int(total))
                await asyncio.sleep(0.005)

        jobs = []
        for n in range(TRANSFERS):
            source, target = rng.sample(ids, 2)
            jobs.append(transfer(n, source, target, rng.randint(1, 60)))
        await asyncio.gather(*jobs, reader(), reader())

        async with bank.session() as session:
            final = list((await session.exec(select(Account.balance))).scalars())  # type: ignore[call-overload]
        assert sum(final) == ACCOUNTS * START, "money was created or destroyed"
        assert min(final) >= 0, "a balance went negative"
        assert set(sums) == {ACCOUNTS * START}, "a reader saw a half-done transfer"
        assert len(committed) + len(refused) == TRANSFERS  # each exactly once
        assert bank.pool_stats().checked_out == 0
        retried = sum(1 for t in attempts if t > 1)
        figures.add("concurrent transfers", TRANSFERS)
        figures.add("transfers committed", len(committed))
        figures.add("transfers refused", len(refused))
        figures.add("transfers retried", retried)
        figures.add("unit-of-work runs", sum(attempts))
        figures.add("balance sums read", len(sums))
        figures.add("invariant violations", sum(1 for s in sums if s != ACCOUNTS * START))
        print(
            f"{backend}: {TRANSFERS} transfers, {len(committed)} committed, "
            f"{len(refused)} refused, {retried} retried, {sum(attempts)} runs in all"
        )
        if backend != "sqlite":  # SQLite queues writers instead: nothing to retry there
            assert retried > 0, "the retry path was never taken"
