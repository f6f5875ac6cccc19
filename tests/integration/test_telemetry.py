"""OpenTelemetry spans and pool metrics, on every backend, read back with the SDK's in-memory
exporter and reader: what herorepo records, where each span hangs, and what it never records
(parameters, driver messages)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NoOpTracerProvider, SpanKind, StatusCode
from sqlalchemy import text

from herorepo import (
    Database,
    DeadlockError,
    EngineConfig,
    NotFoundError,
    RetryPolicy,
    Telemetry,
    TransactionError,
    UniqueViolationError,
    UnitOfWork,
)
from herorepo._telemetry import TELEMETRY_KEY

from ..models import Hero, Team

pytestmark = pytest.mark.asyncio

MARKER = "Mx-Otel-Secret-7731"  # a value that must appear in no span and no metric


@dataclass
class Traced:
    db: Database
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.finished() if s.name == name]

    def one(self, name: str) -> ReadableSpan:
        found = self.named(name)
        assert len(found) == 1, [s.name for s in self.finished()]
        return found[0]

    def children(self, parent: ReadableSpan) -> list[ReadableSpan]:
        return [
            s
            for s in self.finished()
            if s.parent is not None and s.parent.span_id == parent.context.span_id
        ]

    def points(self, name: str) -> list[Any]:
        data = self.metrics.get_metrics_data()
        assert data is not None
        return [
            point
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == name
            for point in metric.data.data_points
        ]


def telemetry(query_text: bool = False) -> tuple[Telemetry, InMemorySpanExporter, Any]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    config = Telemetry(
        tracer_provider=tracer_provider, meter_provider=meter_provider, query_text=query_text
    )
    return config, exporter, reader


@pytest_asyncio.fixture
async def traced(db: Database) -> AsyncIterator[Traced]:
    config, exporter, reader = telemetry()
    async with Database(db.url, telemetry=config) as database:
        yield Traced(database, exporter, reader)
        assert database.pool_stats().checked_out == 0


def database_attributes(db: Database) -> dict[str, Any]:
    url = db.engine.url
    if db.backend == "sqlite":
        return {"db.system.name": "sqlite", "db.namespace": url.database}
    system = "postgresql" if db.backend == "postgresql" else "mysql"
    if getattr(db.engine.dialect, "is_mariadb", False):
        system = "mariadb"
    return {
        "db.system.name": system,
        "db.namespace": url.database,
        "server.address": url.host,
        "server.port": url.port or (5432 if system == "postgresql" else 3306),
    }


def everything_recorded(traced: Traced) -> Iterator[str]:
    for span in traced.finished():
        yield span.name
        yield from (f"{k}={v}" for k, v in (span.attributes or {}).items())
        for event in span.events:
            yield from (f"{k}={v}" for k, v in (event.attributes or {}).items())
        yield str(span.status.description)
    for name in ("db.client.operation.duration", "db.client.connection.count"):
        for point in traced.points(name):
            yield from (f"{k}={v}" for k, v in point.attributes.items())


# --- spans ------------------------------------------------------------------------------------


async def test_unit_of_work_repository_calls_and_statements_nest(traced: Traced) -> None:
    db = traced.db
    async with db.unit_of_work(name="enlist") as uow:
        team = await uow.repository(Team).create({"name": "Avengers", "headquarters": MARKER})
        await uow.repository(Hero).create({"name": "Thor", "secret_name": MARKER})
        heroes = await uow.repository(Hero).list(Hero.secret_name == MARKER)
        assert [h.name for h in heroes] == ["Thor"]
    assert team.id is not None

    expected = database_attributes(db)
    root = traced.one("unit_of_work enlist")
    assert root.parent is None
    assert root.kind is SpanKind.INTERNAL
    assert root.attributes is not None
    assert {
        k: root.attributes[k]
        for k in (
            "herorepo.outcome",
            "herorepo.attempt",
            "herorepo.read_only",
            "herorepo.joined",
            "herorepo.unit_of_work.name",
        )
    } == {
        "herorepo.outcome": "committed",
        "herorepo.attempt": 1,
        "herorepo.read_only": False,
        "herorepo.joined": False,
        "herorepo.unit_of_work.name": "enlist",
    }
    assert expected.items() <= dict(root.attributes).items()
    assert root.status.status_code is StatusCode.UNSET

    calls = {s.name: s for s in traced.children(root) if s.kind is SpanKind.INTERNAL}
    assert set(calls) == {"Team.create", "Hero.create", "Hero.list"}
    listing = calls["Hero.list"]
    assert listing.attributes is not None
    assert listing.attributes["db.operation.name"] == "list"
    assert listing.attributes["db.collection.name"] == "hr_hero"
    assert expected.items() <= dict(listing.attributes).items()

    (select,) = traced.children(listing)
    assert select.kind is SpanKind.CLIENT
    assert select.name == "SELECT hr_hero"
    assert select.attributes is not None
    assert select.attributes["db.operation.name"] == "SELECT"
    assert select.attributes["db.collection.name"] == "hr_hero"
    assert "db.query.text" not in select.attributes  # off by default
    assert expected.items() <= dict(select.attributes).items()
    inserts = [s for s in traced.children(calls["Hero.create"]) if s.kind is SpanKind.CLIENT]
    assert [s.name for s in inserts][:1] == ["INSERT hr_hero"]
    assert not any(MARKER in recorded for recorded in everything_recorded(traced))


async def test_query_text_is_recorded_only_when_asked_and_never_the_values(db: Database) -> None:
    config, exporter, _reader = telemetry(query_text=True)
    async with Database(db.url, telemetry=config) as traced:
        async with traced.unit_of_work() as uow:
            await uow.repository(Team).find(name=MARKER)
            await uow.session.exec(text("SELECT :value"), params={"value": MARKER})  # type: ignore[call-overload]
    statements = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CLIENT]

    def query(span: ReadableSpan) -> str:
        return str((span.attributes or {}).get("db.query.text"))

    texts = [query(s) for s in statements]
    assert any("hr_team" in t and "WHERE" in t for t in texts), texts
    assert not any(MARKER in t for t in texts)
    # The SELECT by hand, not the table's nor the commit-outcome record's (it may have written).
    (raw,) = [
        s
        for s in statements
        if query(s).startswith("SELECT") and not any(w in query(s) for w in ("hr_team", "xact"))
    ]
    assert (raw.attributes or {})["db.operation.name"] == "SELECT"
    assert "db.collection.name" not in (raw.attributes or {})  # text: no table is claimed


async def test_a_call_that_calls_another_makes_one_span(traced: Traced) -> None:
    async with traced.db.unit_of_work() as uow:
        created = await uow.repository(Team).create({"name": "X"})
        await uow.repository(Team).get_one(created.id)  # get_one calls get
        await uow.repository(Team).page(count=True)  # page calls count
    names = [s.name for s in traced.finished() if s.kind is SpanKind.INTERNAL]
    assert names == ["Team.create", "Team.get_one", "Team.page", "unit_of_work"]


async def test_outcomes_committed_rolled_back_failed(traced: Traced) -> None:
    db = traced.db
    async with db.unit_of_work(name="ok") as uow:
        await uow.repository(Team).create({"name": "Taken"})
    with pytest.raises(NotFoundError):
        async with db.unit_of_work(name="missing") as uow:
            await uow.repository(Team).get_one(10**6)
    with pytest.raises(TransactionError):
        async with db.unit_of_work(name="swallowed") as uow:
            try:
                await uow.repository(Team).create({"name": "Taken"})
            except UniqueViolationError:
                pass  # the transaction failed anyway: leaving the block raises

    outcome = {
        s.name: (s.attributes or {}).get("herorepo.outcome")
        for s in traced.finished()
        if s.name.startswith("unit_of_work")
    }
    assert outcome == {
        "unit_of_work ok": "committed",
        "unit_of_work missing": "rolled_back",
        "unit_of_work swallowed": "failed",
    }
    missing = traced.one("unit_of_work missing")
    assert missing.status.status_code is StatusCode.ERROR
    assert (missing.attributes or {})["error.type"] == "herorepo.NotFoundError"
    failed = traced.one("unit_of_work swallowed")
    assert (failed.attributes or {})["error.type"] == "herorepo.TransactionError"


async def test_errors_are_recorded_without_values(traced: Traced) -> None:
    async with traced.db.unit_of_work(name="first") as uow:
        await uow.repository(Team).create({"name": MARKER})
    with pytest.raises(UniqueViolationError):
        async with traced.db.unit_of_work(name="again") as uow:
            await uow.repository(Team).create({"name": MARKER})

    insert = [
        s
        for s in traced.finished()
        if s.kind is SpanKind.CLIENT and s.status.status_code is StatusCode.ERROR
    ]
    assert len(insert) == 1, [s.name for s in insert]
    attributes = insert[0].attributes or {}
    assert attributes["error.type"] == "herorepo.UniqueViolationError"
    assert attributes["db.response.status_code"] in {"23505", "1062", "SQLITE_CONSTRAINT_UNIQUE"}
    (event,) = insert[0].events
    assert event.name == "exception"
    assert (event.attributes or {})["exception.type"] == "herorepo.UniqueViolationError"
    for name in ("Team.create", "unit_of_work again"):
        failed = [s for s in traced.named(name) if s.status.status_code is StatusCode.ERROR]
        assert len(failed) == 1
        assert (failed[0].attributes or {})["error.type"] == "herorepo.UniqueViolationError"
    assert not any(MARKER in recorded for recorded in everything_recorded(traced))


async def test_joined_units_of_work_are_children(traced: Traced) -> None:
    async with traced.db.unit_of_work(name="outer") as outer:
        async with traced.db.unit_of_work(name="inner", read_only=True) as inner:
            await inner.repository(Team).count()
        await outer.repository(Team).count()
    outer_span = traced.one("unit_of_work outer")
    inner = traced.one("unit_of_work inner")
    assert inner.parent is not None
    assert inner.parent.span_id == outer_span.context.span_id
    assert (inner.attributes or {})["herorepo.joined"] is True
    assert (inner.attributes or {})["herorepo.read_only"] is True
    assert (outer_span.attributes or {})["herorepo.joined"] is False
    # SQLAlchemy sends the SAVEPOINT at the first statement, within the repository call.
    assert [s.name.split()[0] for s in traced.children(inner)] == ["Team.count", "RELEASE"]


async def test_run_records_each_attempt(traced: Traced) -> None:
    attempts: list[int] = []

    async def transfer(uow: UnitOfWork) -> None:
        attempts.append(uow.attempt)
        await uow.repository(Team).count()
        if uow.attempt == 1:
            raise DeadlockError()

    await traced.db.run(transfer, retry=RetryPolicy(base_delay=0, max_delay=0), name="transfer")
    assert attempts == [1, 2]
    spans = traced.named("unit_of_work transfer")
    assert [(s.attributes or {})["herorepo.attempt"] for s in spans] == [1, 2]
    assert [(s.attributes or {})["herorepo.outcome"] for s in spans] == [
        "rolled_back",
        "committed",
    ]


async def test_concurrent_units_of_work_keep_their_own_spans(traced: Traced) -> None:
    """Each task's statements hang under its own unit of work: no span leaks between tasks."""
    if traced.db.backend == "sqlite":
        pytest.skip("one writer at a time on SQLite; the read-only case below covers it")

    async def work(n: int) -> None:
        async with traced.db.unit_of_work(name=f"task{n}", read_only=True) as uow:
            for _ in range(3):
                await uow.repository(Team).count()
                await asyncio.sleep(0)

    await asyncio.gather(*(work(n) for n in range(4)))
    for n in range(4):
        root = traced.one(f"unit_of_work task{n}")
        calls = traced.children(root)
        assert [s.name for s in calls].count("Team.count") == 3
        for call in calls:
            assert call.context.trace_id == root.context.trace_id


async def test_read_only_tasks_on_sqlite_keep_their_own_spans(traced: Traced) -> None:
    async def work(n: int) -> None:
        async with traced.db.unit_of_work(name=f"reader{n}", read_only=True) as uow:
            await uow.repository(Team).count()
            await asyncio.sleep(0.01)
            await uow.repository(Team).count()

    await asyncio.gather(*(work(n) for n in range(3)))
    trace_ids = set()
    for n in range(3):
        root = traced.one(f"unit_of_work reader{n}")
        trace_ids.add(root.context.trace_id)
        assert [s.name for s in traced.children(root) if s.kind is SpanKind.INTERNAL] == [
            "Team.count",
            "Team.count",
        ]
    assert len(trace_ids) == 3


async def test_plain_sessions_are_traced_too(traced: Traced) -> None:
    async with traced.db.session() as session:
        from herorepo import Repository

        await Repository(session, Team).count()
    count = traced.one("Team.count")
    assert count.parent is None
    assert [s.name for s in traced.children(count)] == ["SELECT hr_team"]


# --- metrics ----------------------------------------------------------------------------------


async def test_pool_metrics(db: Database) -> None:
    config, _exporter, reader = telemetry()
    small = EngineConfig(pool_size=1, max_overflow=0, pool_timeout=10)
    async with Database(db.url, small, telemetry=config) as limited:
        traced = Traced(limited, InMemorySpanExporter(), reader)
        pool = f"{limited.url.host}:{limited.url.port}/{limited.url.database}"
        if limited.backend == "sqlite":
            pool = str(limited.url.database)
        started = asyncio.Event()

        async def waiter() -> None:
            started.set()
            async with limited.unit_of_work() as uow:
                await uow.repository(Team).count()

        async with limited.session() as holder:
            await holder.connection()
            task = asyncio.create_task(waiter())
            await started.wait()
            await asyncio.sleep(0.2)  # the waiter is now waiting for the one connection
            counts = {
                p.attributes["db.client.connection.state"]: p.value
                for p in traced.points("db.client.connection.count")
                if p.attributes["db.client.connection.pool.name"] == pool
            }
            assert counts == {"idle": 0, "used": 1}
            (pending,) = traced.points("db.client.connection.pending_requests")
            assert pending.value == 1
            assert pending.attributes == {"db.client.connection.pool.name": pool}
        await asyncio.wait_for(task, 10)

        counts = {
            p.attributes["db.client.connection.state"]: p.value
            for p in traced.points("db.client.connection.count")
        }
        assert counts == {"idle": 1, "used": 0}
        (pending,) = traced.points("db.client.connection.pending_requests")
        assert pending.value == 0
        (maximum,) = traced.points("db.client.connection.max")
        assert maximum.value == 1
        (wait,) = traced.points("db.client.connection.wait_time")
        assert wait.count >= 2
        assert wait.max >= 0.15  # the waiter's wait
        (use,) = traced.points("db.client.connection.use_time")
        assert use.count >= 2
        assert use.max >= 0.15  # the first unit of work held it that long
        durations = traced.points("db.client.operation.duration")
        selects = [p for p in durations if p.attributes.get("db.operation.name") == "SELECT"]
        assert sum(p.count for p in selects) >= 1
        assert all("db.query.text" not in p.attributes for p in durations)

        # dispose() replaces the pool: the new one is measured too.
        await limited.dispose()
        async with limited.unit_of_work() as uow:
            await uow.repository(Team).count()
        (wait_after,) = traced.points("db.client.connection.wait_time")
        assert wait_after.count == wait.count + 1


async def test_pool_timeouts_are_counted(db: Database) -> None:
    from herorepo import PoolTimeoutError

    config, _exporter, reader = telemetry()
    small = EngineConfig(pool_size=1, max_overflow=0, pool_timeout=0.2)
    async with Database(db.url, small, telemetry=config) as limited:
        traced = Traced(limited, InMemorySpanExporter(), reader)
        async with limited.unit_of_work() as uow:
            await uow.session.connection()  # a unit of work takes one at its first statement
            with pytest.raises(PoolTimeoutError):
                async with limited.unit_of_work(independent=True, read_only=True) as other:
                    await other.session.connection()
        (timeouts,) = traced.points("db.client.connection.timeouts")
        assert timeouts.value == 1


# --- off -------------------------------------------------------------------------------------


async def test_no_telemetry_installs_nothing(db: Database) -> None:
    assert db.telemetry is None
    assert TELEMETRY_KEY not in db.sessionmaker.kw["info"]
    assert "_do_get" not in vars(db.engine.pool)


async def test_noop_providers_install_no_hooks(db: Database) -> None:
    off = Telemetry(tracer_provider=NoOpTracerProvider(), meter_provider=NoOpMeterProvider())
    async with Database(db.url, telemetry=off) as quiet:
        assert TELEMETRY_KEY not in quiet.sessionmaker.kw["info"]
        assert "_do_get" not in vars(quiet.engine.pool)
        async with quiet.unit_of_work() as uow:
            await uow.repository(Team).count()
