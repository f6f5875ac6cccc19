"""The unit-of-work contract, one defect of issue #12 per test group, on every backend.

Each group names the defect it pins; docs/unit-of-work.md's contract table links here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.util import await_

from herorepo import (
    AfterCommitError,
    ConflictError,
    Database,
    DeadlockError,
    EngineConfig,
    ForeignKeyViolationError,
    HeroRepoError,
    LazyLoadError,
    LockTimeoutError,
    ReadOnlyTransactionError,
    RetryPolicy,
    TransactionError,
    UniqueViolationError,
    UnitOfWork,
)

from ..conftest import backend_url, open_transactions
from ..integration.helpers import team_names
from ..models import Hero, Power, Team
from .conftest import impatient_database

pytestmark = pytest.mark.asyncio


class Boom(Exception):
    pass


async def seed_teams(db: Database, *names: str) -> dict[str, int]:
    async with db.unit_of_work() as uow:
        teams = [await uow.repository(Team).create({"name": name}) for name in names]
    return {team.name: team.id for team in teams if team.id is not None}


# --- 1. a caught database error fails the unit of work, whatever path it came from --------------

Failure = Callable[[UnitOfWork, dict[str, int]], Awaitable[Any]]


async def _update_many(uow: UnitOfWork, ids: dict[str, int]) -> None:
    await uow.repository(Team).update_many(Team.name == "B", values={"name": "A"})


async def _add_many(uow: UnitOfWork, ids: dict[str, int]) -> None:
    await uow.repository(Team).add_many([{"name": "Z"}, {"name": "A"}])


async def _update_by_key(uow: UnitOfWork, ids: dict[str, int]) -> None:
    await uow.repository(Team).update(ids["B"], {"name": "A"})


async def _delete_by_key(uow: UnitOfWork, ids: dict[str, int]) -> None:
    await uow.repository(Hero).delete(ids["h"])  # a power still points to it


async def _delete_many(uow: UnitOfWork, ids: dict[str, int]) -> None:
    await uow.repository(Hero).delete_many(Hero.name == "h")


async def _upsert(uow: UnitOfWork, ids: dict[str, int]) -> None:
    await uow.repository(Team).upsert({"id": ids["B"], "name": "A"}, conflict=["id"])


async def _raw_statement(uow: UnitOfWork, ids: dict[str, int]) -> None:
    await uow.session.exec(text("INSERT INTO hr_team (name, headquarters) VALUES ('A', '')"))


async def _flush(uow: UnitOfWork, ids: dict[str, int]) -> None:
    await uow.repository(Team).create({"name": "A"})


FAILURES: dict[str, Failure] = {
    "update_many": _update_many,
    "add_many": _add_many,
    "update_by_key": _update_by_key,
    "delete_by_key": _delete_by_key,
    "delete_many": _delete_many,
    "upsert": _upsert,
    "raw_statement": _raw_statement,
    "flush": _flush,
}


async def _seed_for_failures(db: Database) -> dict[str, int]:
    ids = await seed_teams(db, "A", "B")
    async with db.unit_of_work() as uow:
        hero = await uow.repository(Hero).create({"name": "h", "secret_name": "s"})
        assert hero.id is not None
        await uow.repository(Power).create({"name": "flight", "hero_id": hero.id})
    return {**ids, "h": hero.id}


@pytest.mark.parametrize("path", sorted(FAILURES))
async def test_a_caught_error_fails_the_unit_of_work(db: Database, path: str) -> None:
    ids = await _seed_for_failures(db)
    with pytest.raises(TransactionError, match="failed earlier") as at_exit:
        async with db.unit_of_work() as uow:
            await uow.repository(Team).create({"name": "lost"})
            with pytest.raises(ConflictError) as first:
                await FAILURES[path](uow, ids)
            with pytest.raises(TransactionError, match="failed earlier") as next_call:
                await uow.repository(Team).count()
            assert next_call.value.__cause__ is first.value
            with pytest.raises(TransactionError, match="failed earlier"):
                await uow.session.exec(text("SELECT 1"))
    assert at_exit.value.__cause__ is first.value
    assert sorted(await team_names(db)) == ["A", "B"]


@pytest.mark.parametrize("path", sorted(FAILURES))
async def test_a_savepoint_contains_the_error(db: Database, path: str) -> None:
    ids = await _seed_for_failures(db)
    async with db.unit_of_work() as uow:
        await uow.repository(Team).create({"name": "kept"})
        with pytest.raises(ConflictError):
            async with uow.savepoint():
                await FAILURES[path](uow, ids)
        await uow.repository(Team).create({"name": "after"})
    assert sorted(await team_names(db)) == ["A", "B", "after", "kept"]


async def test_a_savepoint_that_swallowed_an_error_is_rolled_back(db: Database) -> None:
    ids = await _seed_for_failures(db)
    async with db.unit_of_work() as uow:
        with pytest.raises(TransactionError, match="failed earlier"):
            async with uow.savepoint():
                await uow.repository(Team).create({"name": "undone"})
                try:
                    await _update_by_key(uow, ids)
                except ConflictError:
                    pass  # caught inside the savepoint, which then ends "normally"
        await uow.repository(Team).create({"name": "after"})
    assert sorted(await team_names(db)) == ["A", "B", "after"]


async def test_a_deadlock_inside_a_savepoint_fails_the_whole_unit_of_work(
    server_db: Database,
) -> None:
    db = server_db
    ids = await seed_teams(db, "x", "y")
    locked = [asyncio.Event(), asyncio.Event()]
    attempts = {"xy": 0, "yx": 0}
    refused: list[str] = []

    def transfer(name: str, first: int, second: int, mine: int):  # type: ignore[no-untyped-def]
        async def work(uow: UnitOfWork) -> None:
            attempts[name] += 1
            teams = uow.repository(Team)
            await teams.update(first, {"headquarters": name})
            if attempts[name] == 1:
                locked[mine].set()
                await locked[1 - mine].wait()
            try:
                async with uow.savepoint():
                    await teams.update(second, {"headquarters": name})
            except DeadlockError:
                # No savepoint undoes a deadlock: the server may have rolled back everything.
                with pytest.raises(TransactionError, match="failed earlier"):
                    await teams.count()
                refused.append(name)
                raise

        return work

    policy = RetryPolicy(attempts=3, base_delay=0.01)
    await asyncio.gather(
        db.run(transfer("xy", ids["x"], ids["y"], 0), retry=policy),
        db.run(transfer("yx", ids["y"], ids["x"], 1), retry=policy),
    )
    assert len(refused) == 1
    assert sorted(attempts.values()) == [1, 2]


async def test_rollback_recovers_a_failed_unit_of_work(db: Database) -> None:
    await seed_teams(db, "A")
    async with db.unit_of_work() as uow:
        with pytest.raises(UniqueViolationError):
            await uow.session.exec(
                text("INSERT INTO hr_team (name, headquarters) VALUES ('A', '')")
            )
        await uow.rollback()
        await uow.repository(Team).create({"name": "B"})
    assert sorted(await team_names(db)) == ["A", "B"]


async def test_a_caught_lock_timeout_fails_the_unit_of_work(server_db: Database) -> None:
    # (On SQLite a unit of work takes the write lock at BEGIN IMMEDIATE: a lock wait can only
    # fail as it starts, before there is anything to catch.)
    db = server_db
    ids = await seed_teams(db, "A")
    async with impatient_database(db) as waiter_db:
        async with db.unit_of_work() as holder:
            await holder.repository(Team).update(ids["A"], {"headquarters": "held"})
            with pytest.raises(TransactionError, match="failed earlier") as caught:
                async with waiter_db.unit_of_work() as uow:
                    await uow.repository(Team).create({"name": "lost"})
                    with pytest.raises(LockTimeoutError):
                        await uow.repository(Team).update(ids["A"], {"headquarters": "waiting"})
                    await uow.repository(Team).count()
            assert isinstance(caught.value.__cause__, LockTimeoutError)
            await holder.rollback()
    assert sorted(await team_names(db)) == ["A"]


# --- 2. units of work compose: an inner one joins the outer transaction --------------------------


async def add_team(db: Database, name: str) -> None:
    """A service function that opens its own unit of work."""
    async with db.unit_of_work() as uow:
        await uow.repository(Team).create({"name": name})


async def test_an_inner_unit_of_work_commits_with_the_outer_one(db: Database) -> None:
    with pytest.raises(Boom):
        async with db.unit_of_work() as uow:
            await uow.repository(Team).create({"name": "outer"})
            await add_team(db, "inner")
            assert await uow.repository(Team).count() == 2
            raise Boom
    assert sorted(await team_names(db)) == []
    async with db.unit_of_work() as uow:
        await add_team(db, "inner")
        await uow.repository(Team).create({"name": "outer"})
    assert sorted(await team_names(db)) == ["inner", "outer"]


async def test_a_failed_inner_unit_of_work_undoes_only_its_own_work(db: Database) -> None:
    await seed_teams(db, "taken")
    async with db.unit_of_work() as uow:
        await uow.repository(Team).create({"name": "outer"})
        with pytest.raises(UniqueViolationError):
            async with db.unit_of_work() as inner:
                await inner.repository(Team).create({"name": "inner"})
                await inner.repository(Team).create({"name": "taken"})
        with pytest.raises(Boom):
            async with db.unit_of_work() as inner:
                await inner.repository(Team).create({"name": "inner 2"})
                raise Boom
        await uow.repository(Team).create({"name": "outer 2"})
    assert sorted(await team_names(db)) == ["outer", "outer 2", "taken"]


async def test_an_inner_unit_of_work_cannot_commit_alone(db: Database) -> None:
    async with db.unit_of_work():
        async with db.unit_of_work() as inner:
            await inner.repository(Team).create({"name": "inner"})
            with pytest.raises(TransactionError, match="joined"):
                await inner.commit()
    assert sorted(await team_names(db)) == ["inner"]


async def test_an_inner_unit_of_work_that_swallowed_an_error_fails(db: Database) -> None:
    await seed_teams(db, "taken")
    async with db.unit_of_work() as uow:
        await uow.repository(Team).create({"name": "outer"})
        with pytest.raises(TransactionError, match="failed earlier"):
            async with db.unit_of_work() as inner:
                await inner.repository(Team).create({"name": "inner"})
                try:
                    await inner.repository(Team).create({"name": "taken"})
                except UniqueViolationError:
                    pass
        await uow.repository(Team).create({"name": "outer 2"})
    assert sorted(await team_names(db)) == ["outer", "outer 2", "taken"]


async def test_an_inner_unit_of_work_keeps_the_outer_isolation_level(server_db: Database) -> None:
    async with server_db.unit_of_work(isolation_level="SERIALIZABLE"):
        async with server_db.unit_of_work(isolation_level="SERIALIZABLE") as same:
            await same.repository(Team).count()
        with pytest.raises(TransactionError, match="isolation level"):
            async with server_db.unit_of_work(isolation_level="READ COMMITTED"):
                pass


async def test_a_read_only_unit_of_work_joined_to_a_writer_refuses_writes(db: Database) -> None:
    async with db.unit_of_work() as uow:
        await uow.repository(Team).create({"name": "outer"})
        with pytest.raises(ReadOnlyTransactionError, match="read_only=True"):
            async with db.unit_of_work(read_only=True) as reader:
                assert await reader.repository(Team).count() == 1
                await reader.repository(Team).create({"name": "refused"})
        await uow.repository(Team).create({"name": "outer 2"})
    assert sorted(await team_names(db)) == ["outer", "outer 2"]


async def test_an_independent_unit_of_work_commits_on_its_own(server_db: Database) -> None:
    db = server_db
    with pytest.raises(Boom):
        async with db.unit_of_work() as uow:
            await uow.repository(Team).create({"name": "outer"})
            async with db.unit_of_work(independent=True) as audit:
                await audit.repository(Team).create({"name": "audit"})
            raise Boom
    assert sorted(await team_names(db)) == ["audit"]


async def test_units_of_work_compose_on_a_sqlite_file(sqlite_path: Path) -> None:
    async with Database(f"sqlite:///{sqlite_path}", EngineConfig(sqlite_busy_timeout=30)) as db:
        await db.create_all(Team.metadata)
        async with asyncio.timeout(5):  # it waited for its own write lock for 30 s before
            async with db.unit_of_work() as uow:
                await add_team(db, "inner")
                await uow.repository(Team).create({"name": "outer"})
            with pytest.raises(TransactionError, match="write lock"):
                async with db.unit_of_work():
                    async with db.unit_of_work(independent=True):
                        pass
            async with db.unit_of_work() as uow:
                async with db.unit_of_work(independent=True, read_only=True) as reader:
                    assert await reader.repository(Team).count() == 2
        assert sorted(await team_names(db)) == ["inner", "outer"]


async def test_units_of_work_compose_on_in_memory_sqlite() -> None:
    async with Database("sqlite:///:memory:", EngineConfig(pool_timeout=30)) as db:
        await db.create_all(Team.metadata)
        async with asyncio.timeout(5):  # it waited for the pool timeout before
            async with db.unit_of_work() as uow:
                await add_team(db, "inner")
                await uow.repository(Team).create({"name": "outer"})
                with pytest.raises(TransactionError, match="in-memory"):
                    async with db.unit_of_work(independent=True):
                        pass
            async with db.unit_of_work() as uow:
                assert await uow.repository(Team).count() == 2


async def test_a_unit_of_work_on_the_same_sessionmaker_joins(db: Database) -> None:
    async with db.unit_of_work() as uow:
        async with UnitOfWork(db.sessionmaker) as same_maker:
            await same_maker.repository(Team).create({"name": "joined"})
        assert await uow.repository(Team).count() == 1
        await uow.rollback()
    assert sorted(await team_names(db)) == []


async def test_run_inside_a_unit_of_work_joins_it(db: Database) -> None:
    async def work(uow: UnitOfWork) -> None:
        await uow.repository(Team).create({"name": "from run"})

    with pytest.raises(Boom):
        async with db.unit_of_work():
            await db.run(work)
            raise Boom
    assert sorted(await team_names(db)) == []


async def test_a_unit_of_work_in_a_task_started_inside_another_is_refused(db: Database) -> None:
    async with db.unit_of_work():
        task = asyncio.create_task(add_team(db, "child"))
        with pytest.raises(TransactionError, match="another task"):
            await task
        other = asyncio.create_task(_independent_team(db, "child"))
        if db.backend == "sqlite":
            with pytest.raises(TransactionError, match="write lock"):
                await other
        else:
            await other
    assert sorted(await team_names(db)) == ([] if db.backend == "sqlite" else ["child"])


async def _independent_team(db: Database, name: str) -> None:
    async with db.unit_of_work(independent=True) as uow:
        await uow.repository(Team).create({"name": name})


# --- 3. every transaction of a unit of work has its options ------------------------------------


async def _isolation(uow: UnitOfWork) -> str:
    query = {
        "postgresql": "SHOW transaction_isolation",
        "mysql": "SELECT @@tx_isolation",
    }[uow.session.bind.dialect.name if uow.session.bind else ""]
    value = (await uow.session.exec(text(query))).scalar_one()
    return str(value).replace("-", " ").upper()


@pytest.mark.parametrize("step", ["commit", "rollback"])
async def test_options_hold_after_an_intermediate_step(server_db: Database, step: str) -> None:
    async with server_db.unit_of_work(isolation_level="SERIALIZABLE") as uow:
        assert await _isolation(uow) == "SERIALIZABLE"
        await getattr(uow, step)()
        assert await _isolation(uow) == "SERIALIZABLE"
    async with server_db.unit_of_work(read_only=True) as uow:
        await uow.rollback()
        with pytest.raises(ReadOnlyTransactionError):
            await uow.session.exec(
                text("INSERT INTO hr_team (name, headquarters) VALUES ('x', '')")
            )
        await uow.rollback()
    assert sorted(await team_names(server_db)) == []


@pytest.mark.parametrize("step", ["commit", "rollback"])
async def test_sqlite_begins_immediate_after_an_intermediate_step(
    sqlite_path: Path, step: str
) -> None:
    async with Database(f"sqlite:///{sqlite_path}") as db:
        await db.create_all(Team.metadata)
        begins: list[str] = []

        def record(statement: str) -> None:  # SQLite's own trace: every statement it runs
            if statement.startswith("BEGIN"):
                begins.append(statement)

        def trace(dbapi_connection: Any, _record: Any) -> None:
            await_(dbapi_connection.driver_connection.set_trace_callback(record))

        event.listen(db.engine.sync_engine, "connect", trace)
        await db.engine.dispose()  # the next connections are traced
        async with db.unit_of_work() as uow:
            await uow.repository(Team).create({"name": "one"})
            await getattr(uow, step)()
            await uow.repository(Team).create({"name": "two"})
        assert begins == ["BEGIN IMMEDIATE", "BEGIN IMMEDIATE"]


# --- 4. read_only is enforced on every backend -------------------------------------------------


async def test_a_read_only_unit_of_work_refuses_writes(db: Database) -> None:
    await seed_teams(db, "A")
    async with db.unit_of_work(read_only=True) as uow:
        with pytest.raises(ReadOnlyTransactionError, match="read_only=True"):
            await uow.repository(Team).create({"name": "B"})
        await uow.rollback()
        with pytest.raises(ReadOnlyTransactionError, match="read_only=True"):
            await uow.session.exec(
                text("INSERT INTO hr_team (name, headquarters) VALUES ('C', '')")
            )
        await uow.rollback()
        with pytest.raises(ReadOnlyTransactionError):
            await uow.repository(Team).update_many(Team.name == "A", values={"name": "D"})
        await uow.rollback()
        assert await uow.repository(Team).count() == 1
    assert sorted(await team_names(db)) == ["A"]
    async with db.unit_of_work() as uow:  # the pooled connection writes again
        await uow.repository(Team).create({"name": "B"})
    assert sorted(await team_names(db)) == ["A", "B"]


# --- 5. Database.run() never re-runs committed work ---------------------------------------------


async def test_run_refuses_an_intermediate_commit(db: Database) -> None:
    calls = 0

    async def work(uow: UnitOfWork) -> None:
        nonlocal calls
        calls += 1
        await uow.repository(Team).create({"name": f"copy {calls}"})
        await uow.commit()

    with pytest.raises(TransactionError, match=r"Database\.run\(\)"):
        await db.run(work, retry=RetryPolicy(attempts=3, base_delay=0.001))
    assert calls == 1
    assert sorted(await team_names(db)) == []

    async def sneaky(uow: UnitOfWork) -> None:
        await uow.repository(Team).create({"name": "sneaky"})
        await uow.session.commit()

    with pytest.raises(TransactionError, match=r"Database\.run\(\)"):
        await db.run(sneaky)
    assert sorted(await team_names(db)) == []


# --- 6. a failed COMMIT ends the transaction ---------------------------------------------------

DEFERRED_BACKENDS = [
    pytest.param("sqlite", marks=pytest.mark.sqlite, id="sqlite"),
    pytest.param("postgres", marks=pytest.mark.postgres, id="postgres"),
]  # MySQL and MariaDB have no deferred constraints


@pytest.mark.parametrize("deferred_backend", DEFERRED_BACKENDS)
async def test_a_commit_refused_by_a_deferred_constraint_ends_the_transaction(
    deferred_backend: str, databases: Any
) -> None:
    from ..conftest import require

    require(deferred_backend)
    db = await databases.get(deferred_backend)
    child = (
        "CREATE TABLE hr_deferred_child (id INTEGER PRIMARY KEY, parent_id INTEGER "
        "REFERENCES hr_deferred_parent (id) DEFERRABLE INITIALLY DEFERRED)"
    )
    async with db.engine.begin() as connection:
        await connection.execute(text("DROP TABLE IF EXISTS hr_deferred_child"))
        await connection.execute(text("DROP TABLE IF EXISTS hr_deferred_parent"))
        await connection.execute(text("CREATE TABLE hr_deferred_parent (id INTEGER PRIMARY KEY)"))
        await connection.execute(text(child))
    try:
        for _ in range(2):
            with pytest.raises(ForeignKeyViolationError):
                async with db.unit_of_work() as uow:
                    await uow.session.exec(text("INSERT INTO hr_deferred_child VALUES (1, 99)"))
            assert db.pool_stats().checked_out == 0
            assert await open_transactions(db) == 0
        # Another connection can write at once: no write lock was kept.
        other = Database(backend_url(deferred_backend), EngineConfig(sqlite_busy_timeout=0.2))
        async with other, other.unit_of_work() as uow:
            await uow.session.exec(text("INSERT INTO hr_deferred_parent VALUES (1)"))
        async with db.unit_of_work() as uow:
            await uow.session.exec(text("INSERT INTO hr_deferred_child VALUES (1, 1)"))
    finally:
        async with db.engine.begin() as connection:
            await connection.execute(text("DROP TABLE hr_deferred_child"))
            await connection.execute(text("DROP TABLE hr_deferred_parent"))


# --- 7. one unit of work, one task at a time ---------------------------------------------------


# SQLAlchemy warns when one task adds to the session while another flushes it: that is the
# misuse refused here; the warning is beside the point.
@pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")
async def test_concurrent_use_of_one_unit_of_work_is_refused(db: Database) -> None:
    await seed_teams(db, "taken")
    for round_ in range(10):
        with pytest.raises(HeroRepoError) as caught:
            async with db.unit_of_work() as uow:
                teams = uow.repository(Team)
                await asyncio.gather(
                    *(teams.create({"name": f"r{round_} t{n}"}) for n in range(4)),
                    teams.create({"name": "taken"}),
                )
        assert isinstance(caught.value, (TransactionError, UniqueViolationError))
        await asyncio.sleep(0.05)  # let the other tasks finish
        assert sorted(await team_names(db)) == ["taken"]


async def test_concurrent_statements_name_the_fix(db: Database) -> None:
    with pytest.raises(TransactionError, match="one unit of work per task"):
        async with db.unit_of_work() as uow:
            await asyncio.gather(*(uow.repository(Team).count() for _ in range(5)))


# --- on_commit ---------------------------------------------------------------------------------


async def test_on_commit_runs_after_the_outermost_commit_only(db: Database) -> None:
    calls: list[str] = []

    async def notify() -> None:
        calls.append("async")

    async with db.unit_of_work() as uow:
        uow.on_commit(lambda: calls.append("sync"))
        uow.on_commit(notify)
        async with db.unit_of_work() as inner:
            inner.on_commit(lambda: calls.append("inner"))
        with pytest.raises(Boom):
            async with db.unit_of_work() as undone:
                undone.on_commit(lambda: calls.append("undone"))
                raise Boom
        with pytest.raises(Boom):
            async with uow.savepoint():
                uow.on_commit(lambda: calls.append("savepoint"))
                raise Boom
        assert calls == []
    assert calls == ["sync", "async", "inner"]

    with pytest.raises(Boom):
        async with db.unit_of_work() as uow:
            uow.on_commit(lambda: calls.append("rolled back"))
            raise Boom
    assert calls == ["sync", "async", "inner"]


async def test_on_commit_runs_once_under_retries(db: Database) -> None:
    calls: list[int] = []
    attempts = 0

    async def work(uow: UnitOfWork) -> None:
        nonlocal attempts
        attempts += 1
        uow.on_commit(lambda: calls.append(attempts))
        if attempts < 3:
            from herorepo import DeadlockError

            raise DeadlockError()

    await db.run(work, retry=RetryPolicy(attempts=3, base_delay=0.001))
    assert calls == [3]


async def test_a_failing_on_commit_callback_says_the_work_was_committed(db: Database) -> None:
    calls: list[str] = []

    def broken() -> None:
        raise RuntimeError("mail server down")

    with pytest.raises(AfterCommitError, match="committed; 1 of 2") as caught:
        async with db.unit_of_work() as uow:
            await uow.repository(Team).create({"name": "saved"})
            uow.on_commit(broken)
            uow.on_commit(lambda: calls.append("ran"))
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert calls == ["ran"]
    assert sorted(await team_names(db)) == ["saved"]


async def test_on_commit_after_an_intermediate_commit(db: Database) -> None:
    calls: list[str] = []
    with pytest.raises(Boom):
        async with db.unit_of_work() as uow:
            uow.on_commit(lambda: calls.append("first"))
            await uow.commit()
            assert calls == ["first"]
            uow.on_commit(lambda: calls.append("second"))
            raise Boom
    assert calls == ["first"]


# --- 8. nothing is left open on the server ----------------------------------------------------


async def test_cancelled_units_of_work_leave_no_transaction_open(server_db: Database) -> None:
    db = server_db
    await seed_teams(db, "A")
    for delay in (0, 0.001, 0.003, 0.01, 0.02):
        for _ in range(4):

            async def work() -> None:
                async with db.unit_of_work() as uow:
                    await uow.repository(Team).update_many(
                        Team.name == "A", values={"headquarters": "x"}
                    )
                    await uow.session.exec(text("SELECT 1"))

            task = asyncio.create_task(work())
            await asyncio.sleep(delay)
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
    for _ in range(50):  # a discarded connection's transaction ends when the server sees it close
        if await open_transactions(db) == 0:
            break
        await asyncio.sleep(0.1)
    assert await open_transactions(db) == 0
    assert db.pool_stats().checked_out == 0


# --- 9. a relationship touched after the unit of work ------------------------------------------


async def test_a_relationship_touched_after_the_unit_of_work_is_a_lazy_load_error(
    db: Database,
) -> None:
    ids = await seed_teams(db, "A")
    async with db.unit_of_work() as uow:
        hero = await uow.repository(Hero).create(
            {"name": "h", "secret_name": "s", "team_id": ids["A"]}
        )
    async with db.unit_of_work() as uow:
        hero = await uow.repository(Hero).get_one(hero.id)
    with pytest.raises(LazyLoadError, match=r"Hero\.team.*load=\[Hero\.team\]"):
        _ = hero.team
    with pytest.raises(LazyLoadError, match="unit of work"):
        _ = hero.powers
