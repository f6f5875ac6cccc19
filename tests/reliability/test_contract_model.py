"""The unit-of-work contract, checked against a model: hypothesis drives the real unit of work.

A small pure-Python model says what must be visible and what must be committed after any
sequence of: outer and joined units of work, savepoints, writes through every write path, caught
unique and foreign-key errors, blocks that end normally or with an exception, intermediate
commit and rollback, on_commit callbacks, Database.run() with a transient first attempt, and
units of work cancelled at random points. After each step the real database must agree.

The real calls run in one long-lived task (``Driver``), as application code would: the task's
open unit of work is what a unit of work opened next joins. ``HEROREPO_CONTRACT_EXAMPLES`` sets
the number of examples (CI runs a few dozen per backend; docs/reliability.md has a longer run).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import delete, select, text

from herorepo import (
    ConflictError,
    Database,
    DeadlockError,
    RetryPolicy,
    TransactionError,
    UnitOfWork,
)

from ..conftest import CONNECT_ARGS, PARAMS, backend_url, open_transactions, require
from ..models import Hero, Power, Team, metadata
from .conftest import Figures

T = TypeVar("T")

EXAMPLES = int(os.environ.get("HEROREPO_CONTRACT_EXAMPLES", "30"))
NAMES = st.sampled_from(["a", "b", "c", "d", "e"])
PATHS = ("create", "add_many", "upsert", "raw")


class Boom(Exception):
    pass


class Driver:
    """Runs each step's coroutine inside one task that lives as long as the test case."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._queue: asyncio.Queue[tuple[Callable[[], Awaitable[Any]], asyncio.Future[Any]]]
        self._queue = self.loop.run_until_complete(self._make_queue())
        self._task = self.loop.create_task(self._serve())

    async def _make_queue(self) -> asyncio.Queue[Any]:
        return asyncio.Queue()

    async def _serve(self) -> None:
        while True:
            step, result = await self._queue.get()
            try:
                result.set_result(await step())
            except Exception as error:
                result.set_exception(error)

    def __call__(self, step: Callable[[], Awaitable[T]]) -> T:
        result: asyncio.Future[T] = self.loop.create_future()
        self._queue.put_nowait((step, result))
        return self.loop.run_until_complete(asyncio.wait_for(result, 60))

    def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            self.loop.run_until_complete(self._task)
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()


@dataclass
class Level:
    """One level of the open transaction: the outermost, or a savepoint (joined or not)."""

    kind: str  # "outer", "joined" or "savepoint"
    names: set[str]
    callbacks: list[int] = field(default_factory=list[int])
    closer: Any = None  # what ends it: the unit of work, or the savepoint's context manager


class ContractModel(RuleBasedStateMachine):
    backend = "sqlite"

    def __init__(self) -> None:
        super().__init__()
        self.run = Driver()
        name = self.backend
        self.db = self.run(lambda: self._open(name))
        self.committed: set[str] = set()
        self.levels: list[Level] = []
        self.failed_at: int | None = None  # the level of a failure not yet undone
        self.outer: UnitOfWork | None = None
        self.units: list[UnitOfWork] = []  # the open units of work, outermost first
        self.fired: list[int] = []
        self.expected_fired: list[int] = []
        self.next_callback = 0
        self.team_id: int | None = None

    @staticmethod
    async def _open(name: str) -> Database:
        db = Database(backend_url(name), connect_args=CONNECT_ARGS[name])
        await db.create_all(metadata)
        async with db.engine.begin() as connection:
            for table in (Power.__table__, Hero.__table__, Team.__table__):  # type: ignore[attr-defined]
                await connection.execute(delete(table))
        return db

    def teardown(self) -> None:
        try:
            while self.levels:  # a failing example may leave blocks open: close them
                self._close_innermost(ok=False)
            assert self.db.pool_stats().checked_out == 0
            assert self.run(lambda: open_transactions(self.db)) == 0
        finally:
            self.run(self.db.dispose)
            self.run.close()

    # --- helpers ---------------------------------------------------------------------------

    @property
    def open(self) -> bool:
        return bool(self.levels)

    @property
    def uow(self) -> UnitOfWork:
        return self.units[-1]

    @property
    def failed(self) -> bool:
        return self.failed_at is not None

    def _stored(self) -> set[str]:
        async def read() -> set[str]:
            async with self.db.engine.connect() as connection:
                rows = await connection.execute(select(Team.__table__.c.name))  # type: ignore[attr-defined]
                return {row[0] for row in rows}

        return self.run(read)

    def _visible(self) -> set[str]:
        async def read() -> set[str]:
            return {team.name for team in await self.uow.repository(Team).list()}

        return self.run(read)

    def _expect_refused(self, step: Callable[[], Awaitable[Any]]) -> None:
        with pytest.raises(TransactionError, match="failed earlier"):
            self.run(step)

    def _register(self) -> Callable[[], None]:
        number = self.next_callback
        self.next_callback += 1
        self.levels[-1].callbacks.append(number)
        return lambda: self.fired.append(number)

    # --- opening ---------------------------------------------------------------------------

    @precondition(lambda self: not self.open)
    @rule()
    def open_outer(self) -> None:
        uow = self.db.unit_of_work()
        self.run(uow.__aenter__)
        self.units.append(uow)
        self.levels.append(Level("outer", set(self.committed), closer=uow))

    @precondition(lambda self: self.open and len(self.levels) < 4)
    @rule()
    def open_joined(self) -> None:
        inner = self.db.unit_of_work()
        if self.failed:
            self._expect_refused(inner.__aenter__)
            return
        self.run(inner.__aenter__)
        assert inner.joined
        self.units.append(inner)
        self.levels.append(Level("joined", set(self.levels[-1].names), closer=inner))

    @precondition(lambda self: self.open and len(self.levels) < 4)
    @rule()
    def open_savepoint(self) -> None:
        manager = self.uow.savepoint()
        if self.failed:
            self._expect_refused(manager.__aenter__)
            return
        self.run(manager.__aenter__)
        self.levels.append(Level("savepoint", set(self.levels[-1].names), closer=manager))

    # --- writes ----------------------------------------------------------------------------

    @precondition(lambda self: self.open)
    @rule(path=st.sampled_from(PATHS), name=NAMES)
    def write(self, path: str, name: str) -> None:
        uow = self.uow

        async def step() -> None:
            teams = uow.repository(Team)
            if path == "create":
                await teams.create({"name": name})
            elif path == "add_many":
                await teams.add_many([{"name": name}])
            elif path == "upsert":
                await teams.upsert({"name": name, "headquarters": "u"}, conflict=["name"])
            else:
                await uow.session.exec(  # type: ignore[call-overload]
                    text("INSERT INTO hr_team (name, headquarters) VALUES (:name, '')"),
                    params={"name": name},
                )

        if self.failed:
            self._expect_refused(step)
        elif name in self.levels[-1].names and path != "upsert":  # an upsert updates the row
            with pytest.raises(ConflictError):
                self.run(step)
            self.failed_at = len(self.levels) - 1
        else:
            self.run(step)
            self.levels[-1].names.add(name)

    @precondition(lambda self: self.open)
    @rule(name=NAMES)
    def delete(self, name: str) -> None:
        uow = self.uow

        async def step() -> int:
            return await uow.repository(Team).delete_many(Team.name == name)

        if self.failed:
            self._expect_refused(step)
            return
        assert self.run(step) == (1 if name in self.levels[-1].names else 0)
        self.levels[-1].names.discard(name)

    @precondition(lambda self: self.open)
    @rule()
    def foreign_key_error(self) -> None:
        uow = self.uow

        async def step() -> None:
            await uow.repository(Hero).create({"name": "h", "secret_name": "s", "team_id": -1})

        if self.failed:
            self._expect_refused(step)
            return
        with pytest.raises(ConflictError):
            self.run(step)
        self.failed_at = len(self.levels) - 1

    @precondition(lambda self: self.open)
    @rule()
    def on_commit(self) -> None:
        self.uow.on_commit(self._register())

    # --- ending ----------------------------------------------------------------------------

    @precondition(lambda self: len(self.levels) > 1)
    @rule(ok=st.booleans())
    def close_inner(self, ok: bool) -> None:
        self._close_innermost(ok)

    @precondition(lambda self: len(self.levels) == 1)
    @rule(ok=st.booleans())
    def close_outer(self, ok: bool) -> None:
        self._close_innermost(ok)
        assert self._stored() == self.committed
        assert self.fired == self.expected_fired

    def _close_innermost(self, ok: bool) -> None:
        level = self.levels.pop()
        depth = len(self.levels)  # this level's index
        error = None if ok else Boom()

        async def step() -> None:
            if error is None:
                await level.closer.__aexit__(None, None, None)
            else:
                await level.closer.__aexit__(Boom, error, None)

        failed_inside = self.failed_at is not None and self.failed_at >= depth
        if level.kind != "savepoint":
            self.units.pop()
        if ok and failed_inside:
            self._expect_refused(step)
        else:
            self.run(step)  # with Boom, __aexit__ returns and `async with` would re-raise it
        if ok and not failed_inside:
            if depth == 0:
                self.committed = level.names
                self.expected_fired.extend(level.callbacks)
            else:
                self.levels[-1].names = level.names
                self.levels[-1].callbacks.extend(level.callbacks)
        if failed_inside:
            self.failed_at = None

    @precondition(lambda self: len(self.levels) == 1)
    @rule()
    def commit(self) -> None:
        if self.failed:
            self._expect_refused(self.uow.commit)
            return
        self.run(self.uow.commit)
        self.committed = set(self.levels[0].names)
        self.expected_fired.extend(self.levels[0].callbacks)
        self.levels[0].callbacks = []
        assert self.fired == self.expected_fired
        assert self._stored() == self.committed

    @precondition(lambda self: len(self.levels) == 1)
    @rule()
    def rollback(self) -> None:
        self.run(self.uow.rollback)
        self.levels[0] = Level("outer", set(self.committed), closer=self.levels[0].closer)
        self.failed_at = None

    @precondition(lambda self: len(self.levels) > 1 and self.levels[-1].kind == "joined")
    @rule()
    def joined_commit_is_refused(self) -> None:
        with pytest.raises(TransactionError, match="joined"):
            self.run(self.uow.commit)

    # --- whole units of work ---------------------------------------------------------------

    @precondition(lambda self: not self.open)
    @rule(names=st.sets(NAMES, min_size=1, max_size=3))
    def run_with_a_transient_first_attempt(self, names: set[str]) -> None:
        fresh = sorted(names - self.committed)
        attempts = 0
        number = self.next_callback
        self.next_callback += 1

        async def work(uow: UnitOfWork) -> None:
            nonlocal attempts
            attempts += 1
            uow.on_commit(lambda: self.fired.append(number))
            await uow.repository(Team).add_many([{"name": n} for n in fresh])
            if attempts == 1:
                raise DeadlockError()

        self.run(lambda: self.db.run(work, retry=RetryPolicy(attempts=2, base_delay=0)))
        assert attempts == 2
        self.committed |= set(fresh)
        self.expected_fired.append(number)
        assert self.fired == self.expected_fired
        assert self._stored() == self.committed

    @precondition(lambda self: not self.open)
    @rule(names=st.sets(NAMES, min_size=1, max_size=3), delay=st.sampled_from([0, 1, 2, 5, 20]))
    def cancelled_unit_of_work(self, names: set[str], delay: int) -> None:
        fresh = sorted(names - self.committed)

        async def work() -> None:
            async with self.db.unit_of_work() as uow:
                for name in fresh:
                    await uow.repository(Team).create({"name": name})

        async def step() -> None:
            task = asyncio.create_task(work())
            await asyncio.sleep(delay / 1000)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        self.run(step)
        stored = self._stored()
        added = stored - self.committed
        assert added in (set(), set(fresh)), "a cancelled unit of work committed part of itself"
        self.committed = stored

    # --- invariants ------------------------------------------------------------------------

    @invariant()
    def visible_matches_the_model(self) -> None:
        if self.open and not self.failed:
            assert self._visible() == self.levels[-1].names

    @invariant()
    def committed_matches_the_model(self) -> None:
        if not self.open:
            assert self._stored() == self.committed


@pytest.mark.parametrize("backend", PARAMS)
def test_the_unit_of_work_keeps_its_contract(backend: str, figures: Figures) -> None:
    require(backend)
    machine = type(f"ContractModel_{backend}", (ContractModel,), {"backend": backend})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
    figures.add("contract model: examples", EXAMPLES)
