"""Telemetry with read replicas: every engine of the Database is traced and measured, and each
unit of work's span names the server it ran on (a primary and a streaming replica that the
suite starts itself, tests/servers.py)."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy.engine import make_url

from herorepo import Database, Replicas, Telemetry

from ..models import Team, metadata
from ..servers import PostgresServer
from .test_replicas import FAST, caught_up, on_replica, settle

pytestmark = [pytest.mark.asyncio, pytest.mark.postgres]


async def test_spans_and_pool_metrics_cover_the_replicas(
    replicated_postgres: tuple[PostgresServer, PostgresServer],
) -> None:
    primary, replica = replicated_postgres
    replica.ensure_running()  # as test_replicas.py's fixture: another test may have stopped it
    replica.psql("SELECT pg_wal_replay_resume()")
    async with Database(primary.url) as plain:
        await plain.create_all(metadata)
    await caught_up(primary, replica)
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    telemetry = Telemetry(
        tracer_provider=tracer_provider, meter_provider=MeterProvider(metric_readers=[reader])
    )
    replicas = Replicas([replica.url], **FAST)
    async with Database(primary.url, replicas=replicas, telemetry=telemetry) as db:
        await settle(db)
        exporter.clear()
        async with db.unit_of_work(name="write") as uow:
            await uow.repository(Team).create({"name": "Traced"})
        await settle(db)  # read-your-writes: wait until the replica has the row
        async with db.unit_of_work(name="read", read_only=True) as uow:
            assert await on_replica(uow)
            assert await uow.repository(Team).count() >= 1
        async with db.unit_of_work(name="clean up") as uow:
            await uow.repository(Team).delete_many(name="Traced")

    ports = {"primary": make_url(primary.url).port, "replica": make_url(replica.url).port}
    spans = exporter.get_finished_spans()

    def port_of(name: str) -> Any:
        (span,) = [s for s in spans if s.name == name]
        children = [
            s for s in spans if s.parent is not None and s.parent.span_id == span.context.span_id
        ]
        statements = [c for c in children if c.kind is SpanKind.CLIENT]
        calls = [c for c in children if c.kind is SpanKind.INTERNAL]
        for child in statements + calls:  # the calls and statements ran where the unit did
            assert (child.attributes or {})["server.port"] == (span.attributes or {})["server.port"]
        return (span.attributes or {})["server.port"]

    assert port_of("unit_of_work write") == ports["primary"]
    assert port_of("unit_of_work read") == ports["replica"]
    read = next(s for s in spans if s.name == "unit_of_work read")
    assert (read.attributes or {})["herorepo.read_only"] is True
    assert (read.attributes or {})["db.system.name"] == "postgresql"

    data = reader.get_metrics_data()
    assert data is not None
    pools = {
        point.attributes["db.client.connection.pool.name"]
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "db.client.connection.use_time"
        for point in metric.data.data_points
    }
    assert pools == {f"127.0.0.1:{port}/test" for port in ports.values()}
