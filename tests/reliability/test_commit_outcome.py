"""A connection lost during COMMIT: herorepo finds out whether it committed, and acts on it.

A fault-injecting proxy (proxy.py) sits between herorepo and the shared PostgreSQL or MariaDB
server and breaks one COMMIT: forwarded, then the client cut off before the reply ("after": the
server committed); the client cut off and COMMIT dropped ("before": rolled back); or the client
cut off while the server side stays open, COMMIT unsent ("hold": the transaction stays in
progress until herorepo ends the old session). Database.run() must return after "after" and run
the work again after the others, and every row must be there exactly once; a plain unit of work
ends normally after "after" and raises CommitInterruptedError(committed=False) otherwise.

The tests make and drop a table of their own. Their waits are all bounded, and none decides an
outcome: the outcome comes from the server (see test_outcome_is_right_when_the_loop_stalls).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import MetaData, String, event, func, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from herorepo import (
    CommitInterruptedError,
    ConnectionLostError,
    Database,
    EngineConfig,
    RetryPolicy,
    UnitOfWork,
)
from herorepo import _commit_outcome as commit_outcome

from ..conftest import CONNECT_ARGS, backend_url, open_transactions
from .conftest import Figures
from .proxy import FaultProxy, Mode, Protocol

pytestmark = pytest.mark.asyncio


class Base(DeclarativeBase):
    metadata = MetaData()  # not SQLModel's: the suite's create_all / drop_all never see it


class OutcomeRow(Base):
    __tablename__ = "hr_commit_outcome"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100))  # not unique: a double apply would show


@dataclass
class Proxied:
    """A database reached through the fault proxy, and one reached directly to check on it."""

    db: Database
    proxy: FaultProxy
    direct: Database
    callbacks: list[str] = field(default_factory=list[str])

    async def rows(self, name: str) -> int:
        async with self.direct.engine.connect() as connection:
            count = select(func.count()).where(OutcomeRow.name == name)
            return int((await connection.execute(count)).scalar_one())


@pytest_asyncio.fixture
async def proxied(server_backend: str) -> AsyncIterator[Proxied]:
    url = make_url(backend_url(server_backend))
    protocol: Protocol = "postgres" if server_backend == "postgres" else "mysql"
    default_port = 5432 if protocol == "postgres" else 3306
    proxy = await FaultProxy(url.host or "127.0.0.1", url.port or default_port, protocol).start()
    connect_args: dict[str, Any] = dict(CONNECT_ARGS[server_backend])  # type: ignore[call-overload]
    if protocol == "postgres":
        connect_args["ssl"] = False  # the proxy reads the protocol: no TLS
    db = Database(url.set(host="127.0.0.1", port=proxy.port), connect_args=connect_args)
    direct = Database(url, connect_args=CONNECT_ARGS[server_backend])  # type: ignore[arg-type]
    await direct.create_all(Base.metadata)
    try:
        async with db.unit_of_work() as uow:
            # Connected once: the marker table exists, later connections send no COMMIT.
            await uow.session.connection()
        yield Proxied(db, proxy, direct)
        checked_out = db.pool_stats().checked_out
        await db.dispose()
        # Before the proxy closes what it still holds: no transaction may be left on the server.
        left_open = await _settled_open_transactions(direct)
        assert checked_out == 0, f"{checked_out} connection(s) left checked out"
        assert left_open == 0, f"{left_open} transaction(s) left open on the server"
    finally:
        await db.dispose()
        await proxy.close()
        await direct.drop_all(Base.metadata)
        await direct.dispose()


async def _settled_open_transactions(direct: Database) -> int:
    """Open transactions of other sessions, given up to 5 s to end a session being closed."""
    count = 0
    for _ in range(50):
        count = await open_transactions(direct)
        if not count:
            break
        await asyncio.sleep(0.1)
    return count


def insert_row(
    name: str, p: Proxied, *, arm: Mode | None = None, pause: float = 0
) -> Callable[[UnitOfWork], Awaitable[int]]:
    """Work for Database.run(): insert one row, note the attempt, arm the proxy on the first."""

    async def work(uow: UnitOfWork) -> int:
        uow.session.add(OutcomeRow(name=name))  # flushed by the commit
        attempt = uow.attempt
        uow.on_commit(lambda: p.callbacks.append(f"{name}@{attempt}"))
        if arm is not None and attempt == 1:
            p.proxy.arm(arm)
        await asyncio.sleep(pause)
        return attempt

    return work


# --- Database.run() ------------------------------------------------------------------------------


async def test_run_returns_when_the_lost_commit_committed(
    proxied: Proxied, figures: Figures
) -> None:
    attempt = await proxied.db.run(insert_row("after", proxied, arm="after"))
    assert proxied.proxy.cuts == ["after"]
    assert attempt == 1  # not run again: it had committed
    assert await proxied.rows("after") == 1
    assert proxied.callbacks == ["after@1"]
    figures.add("commit outcome: lost after COMMIT, found committed, returned")


@pytest.mark.parametrize("mode", ["before", "hold"])
async def test_run_runs_again_when_the_lost_commit_did_not_commit(
    proxied: Proxied, mode: Mode, figures: Figures
) -> None:
    attempt = await proxied.db.run(insert_row(mode, proxied, arm=mode))
    assert proxied.proxy.cuts == [mode]
    assert attempt == 2
    assert await proxied.rows(mode) == 1
    assert proxied.callbacks == [f"{mode}@2"]  # the first attempt's never ran
    figures.add(f"commit outcome: cut {mode} COMMIT, found rolled back, retried")


async def test_run_does_not_retry_an_unknown_outcome(
    proxied: Proxied, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The server cannot be reached to ask: the proxy refuses new connections after the cut.
    monkeypatch.setattr(commit_outcome, "RESOLVE_SECONDS", 1.0)
    # The work gets the pooled connection; the question after the cut needs a new one.
    proxied.proxy.refuse_new = True
    with pytest.raises(CommitInterruptedError, match="unknown") as caught:
        await proxied.db.run(
            insert_row("unknown", proxied, arm="after"),
            retry=RetryPolicy(attempts=3, base_delay=0, max_delay=0),
        )
    proxied.proxy.refuse_new = False
    assert caught.value.committed is None
    assert await proxied.rows("unknown") == 1  # it had committed: a retry would have doubled it
    assert proxied.callbacks == []


async def test_without_recording_a_lost_commit_is_unknown(proxied: Proxied) -> None:
    # EngineConfig(commit_outcome=False): no round trip before COMMIT, so nothing to ask with.
    name = "postgres" if proxied.db.backend == "postgresql" else "mysql"
    connect_args: dict[str, Any] = dict(CONNECT_ARGS[name])  # type: ignore[call-overload]
    if name == "postgres":
        connect_args["ssl"] = False
    config = EngineConfig(commit_outcome=False)
    async with Database(proxied.db.url, config, connect_args=connect_args) as db:
        with pytest.raises(CommitInterruptedError, match="commit_outcome=False") as caught:
            await db.run(
                insert_row("unrecorded", proxied, arm="after"),
                retry=RetryPolicy(attempts=3, base_delay=0, max_delay=0),
            )
    assert caught.value.committed is None
    # Nothing asked the server, so nothing waited for it: wait for its answer to the COMMIT the
    # proxy forwarded before counting.
    await asyncio.wait_for(proxied.proxy.committed_reply.wait(), 10)
    assert await proxied.rows("unrecorded") == 1  # it had committed, and ran once only


# --- a plain unit of work ------------------------------------------------------------------------


async def test_a_unit_of_work_ends_normally_when_the_lost_commit_committed(
    proxied: Proxied,
) -> None:
    async with proxied.db.unit_of_work() as uow:
        uow.session.add(OutcomeRow(name="plain"))
        uow.on_commit(lambda: proxied.callbacks.append("plain"))
        proxied.proxy.arm("after")
    assert proxied.proxy.cuts == ["after"]
    assert await proxied.rows("plain") == 1
    assert proxied.callbacks == ["plain"]


@pytest.mark.parametrize("mode", ["before", "hold"])
async def test_a_unit_of_work_says_when_the_lost_commit_did_not_commit(
    proxied: Proxied, mode: Mode
) -> None:
    with pytest.raises(CommitInterruptedError, match="did not commit") as caught:
        async with proxied.db.unit_of_work() as uow:
            await (await uow.session.connection()).execute(insert(OutcomeRow).values(name=mode))
            uow.on_commit(lambda: proxied.callbacks.append(mode))
            proxied.proxy.arm(mode)
    error = caught.value
    assert isinstance(error, ConnectionLostError)
    assert error.committed is False
    if proxied.db.backend == "postgresql":
        assert isinstance(error.transaction_id, int)
        assert error.marker is None
    else:
        assert error.transaction_id is None
        assert error.marker is not None
    assert await proxied.rows(mode) == 0
    assert proxied.callbacks == []
    async with proxied.db.unit_of_work() as uow:  # the next one works
        uow.session.add(OutcomeRow(name=mode))
    assert await proxied.rows(mode) == 1


async def test_an_intermediate_commit_found_committed_goes_on(proxied: Proxied) -> None:
    async with proxied.db.unit_of_work() as uow:
        row = OutcomeRow(name="first")
        uow.session.add(row)
        proxied.proxy.arm("after")
        await uow.commit()
        assert row.id is not None
        assert row.name == "first"
        uow.session.add(OutcomeRow(name="second"))
    assert (await proxied.rows("first"), await proxied.rows("second")) == (1, 1)


async def test_a_lost_commit_of_a_reading_unit_of_work_loses_nothing(proxied: Proxied) -> None:
    async with proxied.db.unit_of_work() as uow:
        connection = await uow.session.connection()
        await connection.execute(select(func.count()).select_from(OutcomeRow))
        proxied.proxy.arm("before")
    assert proxied.proxy.cuts == ["before"]


# --- under load ----------------------------------------------------------------------------------


async def test_concurrent_runs_apply_each_exactly_once(proxied: Proxied, figures: Figures) -> None:
    """Twenty concurrent runs while COMMITs are cut: each row once, whichever commit is hit."""

    async def one(i: int) -> int:
        await asyncio.sleep(i * 0.02)  # spread the commits out
        return await proxied.db.run(insert_row(f"many-{i}", proxied, pause=0.05))

    runs = asyncio.gather(*(one(i) for i in range(20)), return_exceptions=True)
    for mode in ("after", "before", "hold", "after", "before"):
        proxied.proxy.arm(mode)  # the next COMMIT of any of them, first or retried
        while proxied.proxy.armed and not runs.done():
            await asyncio.wait([runs], timeout=0.01)
    proxied.proxy.disarm()
    results = await asyncio.wait_for(runs, 120)
    assert [r for r in results if isinstance(r, BaseException)] == []
    assert proxied.proxy.cuts[:1] == ["after"]  # armed before any COMMIT
    for i in range(20):
        assert await proxied.rows(f"many-{i}") == 1
    assert sorted(c.split("@")[0] for c in proxied.callbacks) == sorted(
        f"many-{i}" for i in range(20)
    )
    figures.add("commit outcome: concurrent runs, each applied exactly once", 20)


@pytest.mark.parametrize("mode", ["after", "before", "hold"])
async def test_outcome_is_right_when_the_loop_stalls(
    proxied: Proxied, mode: Mode, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A busy machine: the event loop stalls for 50 ms at a time, and herorepo ends the old
    session at once instead of after a settling time. The answer still comes from the server,
    so it is right: ending a session that is committing does not undo its COMMIT."""
    monkeypatch.setattr(commit_outcome, "SETTLE_SECONDS", 0.0)
    stop = asyncio.Event()

    async def stall() -> None:
        while not stop.is_set():
            time.sleep(0.05)  # noqa: ASYNC251 - blocks the loop, as a busy machine would
            await asyncio.sleep(0.01)

    staller = asyncio.create_task(stall())
    try:
        attempt = await proxied.db.run(insert_row(f"stall-{mode}", proxied, arm=mode))
    finally:
        stop.set()
        await staller
    assert await proxied.rows(f"stall-{mode}") == 1
    assert attempt in (1, 2)
    assert proxied.callbacks == [f"stall-{mode}@{attempt}"]
    if mode != "after":
        assert attempt == 2


# --- what it costs -------------------------------------------------------------------------------


@pytest.mark.parametrize("recorded_outcome", [True, False], ids=["recorded", "not-recorded"])
async def test_what_a_unit_of_work_records_before_commit(
    backend: str, recorded_outcome: bool
) -> None:
    """One statement more for a unit of work that wrote (none on SQLite), none for a reader;
    none at all with EngineConfig(commit_outcome=False)."""
    connect_args = CONNECT_ARGS[backend]
    config = EngineConfig(commit_outcome=recorded_outcome)
    async with Database(backend_url(backend), config, connect_args=connect_args) as db:  # type: ignore[arg-type]
        await db.create_all(Base.metadata)
        try:
            statements: list[str] = []

            def record(*args: object) -> None:
                statements.append(str(args[2]))

            event.listen(db.engine.sync_engine, "before_cursor_execute", record)
            async with db.unit_of_work() as uow:
                uow.session.add(OutcomeRow(name="cost"))
            writes = [s for s in statements if "hr_commit_outcome" not in s]
            statements.clear()
            async with db.unit_of_work() as uow:
                await (await uow.session.connection()).execute(select(OutcomeRow))
            reads = [s for s in statements if "hr_commit_outcome" not in s]
            statements.clear()
            async with db.unit_of_work() as uow:  # SQL by hand may call a function that writes
                await uow.session.exec(text("SELECT 1"))  # type: ignore[call-overload]
            by_hand = [s for s in statements if s.strip() != "SELECT 1"]
            event.remove(db.engine.sync_engine, "before_cursor_execute", record)
        finally:
            await db.drop_all(Base.metadata)
    recorded = [s for s in writes if not s.lstrip().upper().startswith(("BEGIN", "COMMIT"))]
    if backend == "sqlite" or not recorded_outcome:
        assert recorded == []  # in process: a COMMIT's outcome is always known
    elif backend == "postgres":
        assert [s.split("(")[0] for s in recorded] == ["SELECT pg_current_xact_id_if_assigned"]
    else:
        assert len(recorded) == 1
        assert recorded[0].startswith("INSERT INTO herorepo_commit_markers")
    assert [s for s in reads if not s.lstrip().upper().startswith(("BEGIN", "COMMIT"))] == []
    by_hand = [s for s in by_hand if not s.lstrip().upper().startswith(("BEGIN", "COMMIT"))]
    assert len(by_hand) == (1 if recorded_outcome and backend != "sqlite" else 0), by_hand
