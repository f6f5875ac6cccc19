"""Retried transactions, optimistic locking, savepoints and mass assignment, on every backend."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from herorepo import (
    CommitInterruptedError,
    ConcurrentUpdateError,
    ConfigurationError,
    ConnectionLostError,
    Database,
    DeadlockError,
    InvalidDataError,
    Repository,
    RetriesExhaustedError,
    RetryPolicy,
    TransientError,
    UniqueViolationError,
    UnitOfWork,
)

from ..integration.helpers import team_names
from ..models import Account, Hero, Team

pytestmark = pytest.mark.asyncio


async def test_run_commits_what_the_work_returns(db: Database) -> None:
    async def work(uow: UnitOfWork) -> int | None:
        team = await uow.repository(Team).create({"name": "Avengers"})
        return team.id

    team_id = await db.run(work)
    assert isinstance(team_id, int)
    assert await team_names(db) == ["Avengers"]


async def test_run_retries_transient_errors_from_the_start(db: Database) -> None:
    calls = 0

    async def work(uow: UnitOfWork) -> str:
        nonlocal calls
        calls += 1
        await uow.repository(Team).create({"name": f"Attempt {calls}"})
        if calls < 3:
            raise DeadlockError()
        return "done"

    assert await db.run(work, retry=RetryPolicy(attempts=3, base_delay=0.001)) == "done"
    assert calls == 3
    assert await team_names(db) == ["Attempt 3"]  # the failed attempts were rolled back


async def test_run_gives_up_after_the_last_attempt(db: Database) -> None:
    calls = 0

    async def work(uow: UnitOfWork) -> None:
        nonlocal calls
        calls += 1
        await uow.repository(Team).create({"name": f"Attempt {calls}"})
        raise DeadlockError()

    with pytest.raises(RetriesExhaustedError, match="failed 4 times") as caught:
        await db.run(work, retry=RetryPolicy(attempts=4, base_delay=0.001))
    assert caught.value.attempts == 4
    assert isinstance(caught.value.__cause__, DeadlockError)
    assert calls == 4
    assert await team_names(db) == []


async def test_run_does_not_retry_other_errors(db: Database) -> None:
    calls = 0

    async def work(uow: UnitOfWork) -> None:
        nonlocal calls
        calls += 1
        await uow.repository(Team).create({"name": "Avengers"})
        await uow.repository(Team).create({"name": "Avengers"})

    with pytest.raises(UniqueViolationError):
        await db.run(work)
    assert calls == 1


@pytest.mark.parametrize("committed", [None, False])
async def test_a_commit_that_may_have_committed_is_retried_only_when_asked_by_name(
    db: Database, committed: bool | None
) -> None:
    # Listing ConnectionLostError, the parent class, must not run committed work again.
    calls = 0

    async def work(uow: UnitOfWork) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise CommitInterruptedError(committed=committed, detail="cut in a test")

    broad = RetryPolicy(retry_on=(TransientError, ConnectionLostError), base_delay=0)
    if committed is None:
        with pytest.raises(CommitInterruptedError):
            await db.run(work, retry=broad)
        assert calls == 1
        named = RetryPolicy(retry_on=(TransientError, CommitInterruptedError), base_delay=0)
        calls = 0
        await db.run(work, retry=named)
        assert calls == 2
    else:  # found rolled back: run again whatever retry_on says
        await db.run(work, retry=RetryPolicy(base_delay=0))
        assert calls == 2


async def test_run_inside_an_open_unit_of_work_runs_once_and_does_not_retry(db: Database) -> None:
    calls = 0

    async def work(uow: UnitOfWork) -> None:
        nonlocal calls
        calls += 1
        assert uow.joined
        raise DeadlockError()

    async with db.unit_of_work() as outer:
        with pytest.raises(DeadlockError):
            await db.run(work)
        assert calls == 1  # only the outermost unit of work can run it all again
        await outer.rollback()
    await db.run(lambda uow: uow.repository(Team).count())


async def test_retry_policy_validates() -> None:
    with pytest.raises(ConfigurationError, match="attempts"):
        RetryPolicy(attempts=0)
    with pytest.raises(ConfigurationError, match="base_delay"):
        RetryPolicy(base_delay=2, max_delay=1)
    policy = RetryPolicy(base_delay=0.1, max_delay=0.3)
    assert all(0 <= policy.delay(n) <= 0.3 for n in range(1, 10))


async def test_isolation_level_is_applied(db: Database) -> None:
    async with db.unit_of_work(isolation_level="SERIALIZABLE") as uow:
        connection = await uow.session.connection()
        level = await connection.get_isolation_level()
    assert level == "SERIALIZABLE"


async def test_unknown_isolation_level_is_a_configuration_error(db: Database) -> None:
    with pytest.raises(ConfigurationError, match="Isolation level 'SNAPSHOT'"):
        db.unit_of_work(isolation_level="SNAPSHOT")  # type: ignore[arg-type]


# --- deterministic deadlock -------------------------------------------------------------------


async def test_a_deadlock_has_one_victim_that_is_retried(server_db: Database) -> None:
    # SQLite has one writer at a time: two writers queue there, they cannot deadlock.
    db = server_db
    async with db.unit_of_work() as uow:
        accounts = await uow.repository(Account).add_many(
            [{"owner": "a", "balance": 100}, {"owner": "b", "balance": 100}]
        )
    first, second = (a.id for a in accounts)
    both_locked_one = asyncio.Event()
    locked = [asyncio.Event(), asyncio.Event()]
    attempts = {"ab": 0, "ba": 0}

    def transfer(
        name: str, source: int | None, target: int | None, mine: asyncio.Event, other: asyncio.Event
    ):  # type: ignore[no-untyped-def]
        async def work(uow: UnitOfWork) -> None:
            attempts[name] += 1
            repo = uow.repository(Account)
            await repo.update_many(Account.id == source, values={"owner": f"{name}-src"})
            if attempts[name] == 1:
                mine.set()
                await other.wait()  # both now hold one row: each asks for the other's
                both_locked_one.set()
            await repo.update_many(Account.id == target, values={"owner": f"{name}-dst"})

        return work

    results = await asyncio.gather(
        db.run(
            transfer("ab", first, second, locked[0], locked[1]),
            retry=RetryPolicy(attempts=5, base_delay=0.01),
        ),
        db.run(
            transfer("ba", second, first, locked[1], locked[0]),
            retry=RetryPolicy(attempts=5, base_delay=0.01),
        ),
        return_exceptions=True,
    )
    assert results == [None, None]
    assert sorted(attempts.values()) == [1, 2], "exactly one victim, retried once"
    async with db.session() as session:
        owners = {a.owner for a in await Repository(session, Account).list()}
    # The retried transfer ran last, so its names won on both rows: a serial order.
    victim = "ab" if attempts["ab"] == 2 else "ba"
    assert owners == {f"{victim}-src", f"{victim}-dst"}


# --- optimistic locking -----------------------------------------------------------------------


async def test_a_lost_update_raises_instead_of_overwriting(write_db: Database) -> None:
    async with write_db.unit_of_work() as uow:
        account = await uow.repository(Account).create({"owner": "alice", "balance": 10})
    async with write_db.unit_of_work() as stale_uow:
        stale = await stale_uow.repository(Account).get_one(account.id)
        await stale_uow.commit()  # the read's transaction ends; the object stays
        async with write_db.unit_of_work(independent=True) as other:
            await other.repository(Account).update(account.id, {"balance": 20})
        with pytest.raises(ConcurrentUpdateError, match="changed or deleted by someone else"):
            await stale_uow.repository(Account).update(stale, {"balance": 5})
        await stale_uow.rollback()
    async with write_db.session() as session:
        current = await session.get(Account, account.id)
    assert current is not None
    assert (current.balance, current.version) == (20, 2)


async def test_version_column_advances_on_each_update(write_db: Database) -> None:
    async with write_db.unit_of_work() as uow:
        repo = uow.repository(Account)
        account = await repo.create({"owner": "bob"})
        for balance in (1, 2, 3):
            account = await repo.update(account, {"balance": balance})
    assert account.version == 4


# --- mass assignment --------------------------------------------------------------------------


async def test_request_data_cannot_set_protected_fields(write_db: Database) -> None:
    async with write_db.unit_of_work() as uow:
        accounts = uow.repository(Account)
        with pytest.raises(InvalidDataError, match=r"Account\.id cannot be set.*primary key"):
            await accounts.create({"id": 99, "owner": "mallory"})
        with pytest.raises(InvalidDataError, match=r"Account\.version cannot be set.*version"):
            await accounts.create({"owner": "mallory", "version": 7})
        account = await accounts.create({"owner": "carol"})
        with pytest.raises(InvalidDataError, match="allow=\\{'id'\\}"):
            await accounts.update(account, {"id": 1234})
        with pytest.raises(InvalidDataError, match="version column"):
            await accounts.update(account, {"version": 1})
        allowed = await accounts.create({"id": 4242, "owner": "dave"}, allow={"id"})
        assert allowed.id == 4242


# --- savepoints -------------------------------------------------------------------------------

OUTCOMES = ("commit", "rollback")


@pytest.mark.parametrize(
    ("outer", "middle", "inner"), list(itertools.product(OUTCOMES, OUTCOMES, OUTCOMES))
)
async def test_savepoint_matrix(db: Database, outer: str, middle: str, inner: str) -> None:
    class Undo(Exception):
        pass

    async def block(uow: UnitOfWork, name: str, outcome: str, nested: object = None) -> None:
        await uow.repository(Team).create({"name": name})
        if nested is not None:
            try:
                async with uow.savepoint():
                    await nested  # type: ignore[misc]
            except Undo:
                pass
        if outcome == "rollback":
            raise Undo

    try:
        async with db.unit_of_work() as uow:
            await block(
                uow,
                "outer",
                outer,
                block(uow, "middle", middle, block(uow, "inner", inner)),
            )
    except Undo:
        pass
    expected = []
    if outer == "commit":
        expected.append("outer")
        if middle == "commit":
            expected.append("middle")
            if inner == "commit":
                expected.append("inner")
    assert await team_names(db) == sorted(expected)


async def test_hero_model_unchanged_by_reliability_suite(db: Database) -> None:
    async with db.session() as session:
        assert await session.get(Hero, -1) is None
