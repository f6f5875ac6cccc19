"""What telemetry costs: ``python -m benchmarks telemetry`` (``nox -s bench -- telemetry``).

Times a get by key and a list of 100 rows, each in a unit of work of its own, on databases
that differ only in ``telemetry=``:

* **none**: ``Database(url)``, no telemetry: the baseline; and **none again**, a second such
  database, whose ratio to none shows the noise of the run (the two do the very same work).
* **off**: ``Telemetry(tracer_provider=NoOpTracerProvider(), meter_provider=NoOpMeterProvider())``:
  telemetry configured, turned off. The goal: within 2% of none.
* **API only**: ``Telemetry()`` with no OpenTelemetry SDK set up: the hooks run, the spans record
  nothing (what a service pays that ships the extra but exports nothing).
* **SDK**: the SDK's ``TracerProvider`` with a ``BatchSpanProcessor`` (to an exporter that drops
  the spans: no I/O is timed) and a ``MeterProvider`` with an in-memory reader: every span and
  metric recorded, as in production.

Two phases, because the first database with tracing wraps the repository methods for the rest of
the process: none and off are timed first, in a process where nothing was ever wrapped; then
none, API only and SDK. The cost of the wrappers for a database without telemetry in a process
where another traces (one dictionary lookup per repository call) is timed apart, on calls that
send no SQL. Each phase interleaves the ways op by op, in an order shuffled per round.

Creates and drops its own ``bench_otel_thing`` table, takes the test suite's lock, saves
``benchmarks/results/telemetry.json`` and rewrites the telemetry section of docs/benchmarks.md
(``nox -s bench`` puts the section back from that file when it rewrites the page).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from herorepo import Database, Telemetry

from .environment import BACKEND_NAMES
from .runner import summarize
from .sections import (
    DASH,
    TIMES,
    Section,
    fmt,
    interleaved,
    last_run,
    log,
    op_sizes,
    paired,
    server_version,
    shown_backends,
)

ROWS = 1_000
PAGE = 100
GOAL = 1.02
LATER = ("none", "api", "sdk")  # the second phase's ways
LABELS = {"none": "none", "again": "none again", "off": "off", "api": "API only", "sdk": "SDK"}

_own = registry()


class _Base(SQLModel, registry=_own):
    pass


class Thing(_Base, table=True):
    __tablename__ = "bench_otel_thing"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=50)
    value: int = 0


def _telemetry(way: str) -> Telemetry | None:
    if way in ("none", "again"):
        return None
    if way == "off":
        from opentelemetry.metrics import NoOpMeterProvider
        from opentelemetry.trace import NoOpTracerProvider

        return Telemetry(tracer_provider=NoOpTracerProvider(), meter_provider=NoOpMeterProvider())
    if way == "api":
        return Telemetry()  # the global providers, which no SDK replaced: nothing is recorded
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class Dropped(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(Dropped()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    return Telemetry(tracer_provider=tracer_provider, meter_provider=meter_provider)


@dataclass
class Way:
    key: str
    db: Database

    async def get(self, ident: int) -> Any:
        async with self.db.unit_of_work() as uow:
            return await uow.repository(Thing).get_one(ident)

    async def list(self, offset: int) -> Any:
        async with self.db.unit_of_work() as uow:
            return await uow.repository(Thing).list(
                Thing.value >= 0, order_by=Thing.id, offset=offset, limit=PAGE
            )


@dataclass
class Op:
    key: str
    label: str
    ops: int
    rounds: int
    make_arg: Callable[[random.Random], int]


def ops(scale: float, rounds: int) -> list[Op]:
    rounds = max(5, round(rounds * min(1.0, scale)))
    return [
        Op("get", "get by key", max(3, round(30 * scale)), rounds, lambda r: r.randint(1, ROWS)),
        Op("list", f"list {PAGE} rows", max(2, round(8 * scale)), rounds, lambda r: 0),
    ]


async def _phase(
    ways: list[Way], scale: float, rounds: int, seed: int, log: Callable[[str], None]
) -> Any:
    rng = random.Random(seed)
    out: dict[str, Any] = {}
    for op in ops(scale, rounds):
        for way in ways:  # warm up: connections, compiled statements, the first spans
            for _ in range(10):
                await getattr(way, op.key)(op.make_arg(rng))
        samples: dict[str, list[float]] = {w.key: [] for w in ways}
        for round_no in range(op.rounds):
            round_rng = random.Random(seed * 1000 + round_no)
            steps = [[(op.make_arg(round_rng),)] * len(ways) for _ in range(op.ops)]
            order = list(ways)
            rng.shuffle(order)
            for key, sample in (await interleaved(order, op.key, steps)).items():
                samples[key].append(sample)
        out[op.key] = {
            "label": op.label,
            "ops": op.ops,
            "rounds": op.rounds,
            "results": {key: summarize(values) for key, values in samples.items()},
        }
        log(
            f"  {op.key}: "
            + ", ".join(f"{k} {statistics.median(v) * 1e6:.0f}µs" for k, v in samples.items())
            + " | "
            + ", ".join(
                f"{k}/none {paired(samples[k], samples['none'])[0]:.3f}"
                for k in samples
                if k != "none"
            )
        )
    return out


async def _pass_through(url: str, calls: int = 2_000, batches: int = 40) -> dict[str, float]:
    """Seconds a repository call on an object already in the session (no SQL) takes on a
    database without telemetry, through the wrapper and without it, in alternating batches.

    Run after a database with tracing has wrapped the methods; the unwrapped method is the
    wrapper's ``__wrapped__``.
    """
    db = Database(url)
    try:
        async with db.unit_of_work(read_only=True) as uow:
            things = uow.repository(Thing)
            kept = await things.get_one(1)  # held: the session's identity map is weak
            wrapped = things.get
            unwrapped = functools.partial(type(things).get.__wrapped__, things)
            best = {"wrapped": float("inf"), "unwrapped": float("inf")}
            for _ in range(batches):
                for key, call in (("wrapped", wrapped), ("unwrapped", unwrapped)):
                    start = time.perf_counter()
                    for _ in range(calls):
                        await call(1)
                    best[key] = min(best[key], (time.perf_counter() - start) / calls)
            assert kept.id == 1
            return best
    finally:
        await db.dispose()


async def _setup(url: str) -> tuple[Database, str]:
    db = Database(url)
    await db.drop_all(_own.metadata)
    await db.create_all(_own.metadata)
    async with db.engine.begin() as conn:
        rows = [{"id": i, "name": f"thing-{i:05d}", "value": i % 100} for i in range(1, ROWS + 1)]
        await conn.execute(insert(Thing), rows)
    return db, await server_version(db)


async def run_all(
    urls: dict[str, str], scale: float, seed: int, log: Callable[[str], None]
) -> dict[str, Any]:
    backends: dict[str, Any] = {}
    setups: dict[str, Database] = {}
    try:
        for backend, url in urls.items():
            setups[backend], server = await _setup(url)
            backends[backend] = {"server": server, "ops": {}}
        # Phase 1, before any database traces: nothing is wrapped yet.
        for backend, url in urls.items():
            log(f"[{backend}] none / none again / off")
            keys = ("none", "again", "off")
            ways = [Way(k, Database(url, telemetry=_telemetry(k))) for k in keys]
            try:
                # The judged comparison: twice the rounds, for a narrower range.
                backends[backend]["pristine"] = await _phase(ways, scale, 81, seed, log)
            finally:
                for way in ways:
                    await way.db.dispose()
        for backend, url in urls.items():
            log(f"[{backend}] none / API only / SDK")
            ways = [Way(k, Database(url, telemetry=_telemetry(k))) for k in ("none", "api", "sdk")]
            try:
                backends[backend]["traced"] = await _phase(ways, scale, 41, seed + 1, log)
                backends[backend]["pass_through"] = await _pass_through(url)
            finally:
                for way in ways:
                    await way.db.dispose()
    finally:
        for db in setups.values():
            await db.drop_all(_own.metadata)
            await db.dispose()
    return backends


# --- the report section ----------------------------------------------------------------------


def _cell(phase: dict[str, Any], op: str, way: str, judge: bool) -> str:
    results = phase[op]["results"]
    median, q1, q3 = paired(results[way]["samples"], results["none"]["samples"])
    shown = f"{median:.3f}{TIMES}"
    if judge and median > GOAL:
        shown = f"**{shown}**"
    return f"{shown} ({q1:.2f}{DASH}{q3:.2f})"


def render_section(results: dict[str, Any]) -> list[str]:
    """The telemetry section of docs/benchmarks.md, between its markers."""
    names = shown_backends(results)
    data = results["backends"]
    first = data[names[0]]["pristine"]
    head = "| op | telemetry | " + " | ".join(BACKEND_NAMES[b] for b in names) + " |"
    rule = "|---|---|" + "---:|" * len(names)
    ratios = [head, rule]
    for op in first:
        for way in ("again", "off"):
            ratios.append(
                f"| {first[op]['label']} | {LABELS[way]} | "
                + " | ".join(_cell(data[b]["pristine"], op, way, way == "off") for b in names)
                + " |"
            )
        for way in ("api", "sdk"):
            ratios.append(
                f"| {first[op]['label']} | {LABELS[way]} | "
                + " | ".join(_cell(data[b]["traced"], op, way, False) for b in names)
                + " |"
            )
    times = [
        "| backend | op | none | off | none, later | API only | SDK |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for b in names:
        for op in first:
            first_phase = data[b]["pristine"][op]["results"]
            second = data[b]["traced"][op]["results"]
            cells = [first_phase["none"], first_phase["off"], *(second[k] for k in LATER)]
            times.append(
                f"| {BACKEND_NAMES[b]} | {first[op]['label']} | "
                + " | ".join(fmt(c["median"]) for c in cells)
                + " |"
            )
    through = []
    for b in names:
        costs = data[b]["pass_through"]
        added = (costs["wrapped"] - costs["unwrapped"]) * 1e9
        through.append(
            f"{BACKEND_NAMES[b]} {added:+.0f} ns on {costs['unwrapped'] * 1e6:.1f} µs a call"
        )
    missed = []
    for b in names:
        for found in data[b]["pristine"].values():
            timed = found["results"]
            off = paired(timed["off"]["samples"], timed["none"]["samples"])[0]
            again = paired(timed["again"]["samples"], timed["none"]["samples"])[0]
            if off > GOAL:
                missed.append(
                    f"{BACKEND_NAMES[b]} {found['label']} ({off:.3f}{TIMES}, where none again "
                    f"was {again:.3f}{TIMES})"
                )
    goal = f"The goal, off within {GOAL:.2f}{TIMES} of none,"
    verdict = (
        f"{goal} is met everywhere."
        if not missed
        else f"{goal} is missed on: {'; '.join(missed)}. Off installs nothing (no hook, no "
        "wrapper): its code path is none's, so a miss within the range of none again is noise."
    )
    return [
        "",
        "## Telemetry",
        "",
        "What `Database(url, telemetry=Telemetry(...))` costs (see [Observability]"
        f"(observability.md)): get by key and list {PAGE} rows on a table of {ROWS:,} rows, each "
        "op in a unit of work of its own, against the same calls on a `Database(url)` without "
        "telemetry (**none**):",
        "",
        "- **none again**: a second `Database(url)` without telemetry. It does the very same "
        "work as none: its ratio is the noise of the run, the yardstick for the others.",
        "- **off**: `Telemetry(tracer_provider=NoOpTracerProvider(), meter_provider="
        "NoOpMeterProvider())`. herorepo installs no hook then; the goal is judged here: within "
        f"{GOAL:.2f}{TIMES}.",
        "- **API only**: `Telemetry()` and no OpenTelemetry SDK set up: the hooks run, and the "
        "API's spans record nothing.",
        "- **SDK**: the SDK's `TracerProvider` with a `BatchSpanProcessor` (its exporter drops the "
        "spans, so no export is timed) and a `MeterProvider` with an in-memory reader: per op a "
        "unit-of-work span, a repository-call span and a span per statement, and the pool and "
        "statement metrics.",
        "",
        f"{last_run(results)} Each ratio is the median of the rounds' ratios, with their "
        "interquartile range in brackets; in a round each op's arguments go to every way in "
        f"turn, in an order shuffled for each round ({op_sizes(first)}). "
        "Off is timed against none in a process where no database ever traced; API only and SDK "
        "afterwards, against none in the same process.",
        "",
        f"Time with telemetry {TIMES} the same call without (off above {GOAL:.2f}{TIMES} in bold):",
        "",
        *ratios,
        "",
        verdict,
        "",
        "Median time per op (none and off in the first phase; none, later, API only and SDK "
        "in the second, when the shared machine may have been busier or quieter):",
        "",
        *times,
        "",
        "The first database with tracing wraps `Repository`'s methods for the rest of the "
        "process; a database without telemetry then pays one dictionary lookup per repository "
        "call, timed on a call that sends no SQL (`get` of an object in the session), through "
        "the wrapper and without it, in alternating batches (the best batch of each): "
        f"{'; '.join(through)}.",
        "",
    ]


SECTION = Section("telemetry", render_section)


# --- the command -------------------------------------------------------------------------------


def add_parser(sub: Any) -> argparse.ArgumentParser:
    return SECTION.add_parser(
        sub, help="time telemetry off, API only and SDK against no telemetry", seed=17
    )


def _measure(args: argparse.Namespace, urls: dict[str, str]) -> dict[str, Any]:
    return {"backends": asyncio.run(run_all(urls, args.scale, args.seed, log))}


def main(args: argparse.Namespace) -> int:
    return SECTION.main(args, _measure)
