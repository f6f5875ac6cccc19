"""Bulk writes without objects: ``python -m benchmarks bulk`` (``nox -s bench -- bulk``).

Times an insert of 10,000 rows, each in a transaction of its own, three ways:

* **Core**: hand-written SQLAlchemy Core executemany, ``conn.execute(insert(table), rows)`` in
  ``engine.begin()``: the baseline, and what the goal is judged against.
* **insert_rows**: ``uow.repository(Model).insert_rows(rows)`` in ``db.unit_of_work()``: the
  rows validated, checked and sent with executemany, in a SAVEPOINT. The goal: within 1.3x of
  Core on PostgreSQL and MariaDB, 1.6x on SQLite.
* **insert_rows, keys**: the same with ``returning="keys"``: ``INSERT ... RETURNING id``
  batches (insertmanyvalues), the keys in input order.

The table is emptied after every op, outside the timing, so every op starts equal. A round runs
each way once, in an order shuffled for each round; a way's ratio is the median of the rounds'
ratios. Then, apart, the CPU herorepo adds before any SQL (validation, checks, batches), timed
in-process without I/O.

Creates and drops its own ``bench_rows_hero`` table, takes the benchmarks' lock, saves
``benchmarks/results/bulk.json`` and rewrites the bulk section of docs/benchmarks.md (``nox -s
bench`` puts the section back from that file when it rewrites the page).
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, text
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from herorepo import Database, Repository
from herorepo._bulk import executemany_batches

from .environment import BACKEND_NAMES
from .runner import summarize
from .sections import (
    DASH,
    TIMES,
    Section,
    each_backend,
    fmt,
    last_run,
    paired,
    server_version,
    shown_backends,
)

ROWS = 10_000
GOALS = {"sqlite": 1.6, "postgres": 1.3, "mysql": 1.3}
WAYS = ("core", "rows", "keys")
LABELS = {"core": "Core executemany", "rows": "`insert_rows()`", "keys": '`returning="keys"`'}

_own = registry()


class _Base(SQLModel, registry=_own):
    pass


class RowHero(_Base, table=True):
    __tablename__ = "bench_rows_hero"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100)
    secret_name: str = Field(max_length=100)
    age: int | None = None
    created_at: datetime | None = Field(
        default=None, sa_column_kwargs={"server_default": text("CURRENT_TIMESTAMP")}
    )


TABLE = RowHero.__table__  # type: ignore[attr-defined]
CORE_INSERT = insert(TABLE)


def rows() -> list[dict[str, Any]]:
    return [
        {"name": f"bulk-{i}", "secret_name": f"bulk-secret-{i}", "age": i % 90} for i in range(ROWS)
    ]


class Ways:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def core(self, data: list[dict[str, Any]]) -> None:
        async with self.db.engine.begin() as conn:
            await conn.execute(CORE_INSERT, data)

    async def rows(self, data: list[dict[str, Any]]) -> None:
        async with self.db.unit_of_work() as uow:
            await uow.repository(RowHero).insert_rows(data)

    async def keys(self, data: list[dict[str, Any]]) -> None:
        async with self.db.unit_of_work() as uow:
            keys = await uow.repository(RowHero).insert_rows(data, returning="keys")
        if len(keys) != len(data) or keys != sorted(keys):
            raise AssertionError("insert_rows returned keys out of input order")

    async def reset(self) -> int:
        async with self.db.engine.begin() as conn:
            found = int((await conn.execute(text("SELECT count(*) FROM bench_rows_hero"))).scalar())
            await conn.execute(delete(TABLE))
        return found


async def cpu_before_sql(db: Database, data: list[dict[str, Any]], repeat: int = 15) -> float:
    """The best time of what insert_rows does before any SQL: validation, checks, batches."""
    best = float("inf")
    async with db.session() as session:
        repository = Repository(session, RowHero)
        info = repository._info  # a private step, timed on purpose
        for _ in range(repeat):
            gc.collect()
            start = time.perf_counter()
            checked = repository._checked_rows(data, ())
            executemany_batches(checked, info.defaulted, info.column_names)
            best = min(best, time.perf_counter() - start)
    return best


async def run_backend(
    backend: str, url: str, scale: float, seed: int, say: Callable[[str], None]
) -> dict[str, Any]:
    db = Database(url)
    rng = random.Random(seed)
    data = rows()
    try:
        await db.drop_all(_own.metadata)
        await db.create_all(_own.metadata)
        ways = Ways(db)
        problems: list[str] = []
        for key in WAYS:  # warm up, and check that each way inserts every row
            await getattr(ways, key)(data)
            found = await ways.reset()
            if found != ROWS:
                problems.append(f"{key} inserted {found} rows, expected {ROWS}")
        samples: dict[str, list[float]] = {key: [] for key in WAYS}
        rounds = max(5, round(25 * scale))
        for _ in range(rounds):
            order = list(WAYS)
            rng.shuffle(order)
            for key in order:
                call = getattr(ways, key)
                gc.collect()
                start = time.perf_counter()
                await call(data)
                samples[key].append(time.perf_counter() - start)
                await ways.reset()
        cpu = await cpu_before_sql(db, data)
        result = {
            "server": await server_version(db),
            "rows": ROWS,
            "rounds": rounds,
            "results": {key: summarize(values) for key, values in samples.items()},
            "cpu_before_sql": cpu,
            "problems": problems,
        }
        say(
            f"[{backend}] "
            + ", ".join(f"{k} {statistics.median(v) * 1e3:.1f}ms" for k, v in samples.items())
            + " | "
            + ", ".join(f"{k}/core {paired(samples[k], samples['core'])[0]:.2f}" for k in WAYS[1:])
            + f" | cpu before SQL {cpu * 1e3:.1f}ms"
        )
        return result
    finally:
        await db.drop_all(_own.metadata)
        await db.dispose()


# --- the report section --------------------------------------------------------------------------


def _ratio(data: dict[str, Any], way: str) -> tuple[float, float, float]:
    results = data["results"]
    return paired(results[way]["samples"], results["core"]["samples"])


def render_section(results: dict[str, Any]) -> list[str]:
    """The bulk section of docs/benchmarks.md, between its markers."""
    names = shown_backends(results)
    data = results["backends"]
    head = "| way | " + " | ".join(BACKEND_NAMES[b] for b in names) + " |"
    rule = "|---|" + "---:|" * len(names)
    ratios = [head, rule]
    for way in WAYS[1:]:
        cells = []
        for b in names:
            median, q1, q3 = _ratio(data[b], way)
            shown = f"{median:.2f}{TIMES}"
            if way == "rows" and median > GOALS[b]:
                shown = f"**{shown}**"
            cells.append(f"{shown} ({q1:.2f}{DASH}{q3:.2f})")
        ratios.append(f"| {LABELS[way]} | " + " | ".join(cells) + " |")
    goals = " | ".join(f"{GOALS[b]:.1f}{TIMES}" for b in names)
    ratios.append(f"| goal for `insert_rows()` | {goals} |")
    times = ["| way | " + " | ".join(BACKEND_NAMES[b] for b in names) + " |", rule]
    for way in WAYS:
        cells = [fmt(data[b]["results"][way]["median"]) for b in names]
        times.append(f"| {LABELS[way]} | " + " | ".join(cells) + " |")
    cpu = ["| herorepo before any SQL | " + " | ".join(
        fmt(data[b]["cpu_before_sql"]) for b in names) + " |"]  # fmt: skip
    met, missed = [], []
    for b in names:
        median, q1, _ = _ratio(data[b], "rows")
        cell = f"{BACKEND_NAMES[b]} {median:.2f}{TIMES}"
        if median <= GOALS[b]:
            met.append(cell)
        else:
            over = f"+{(median / GOALS[b] - 1) * 100:.0f}% over its goal"
            noise = ", within the noise" if q1 <= GOALS[b] else ""
            missed.append(f"{cell} ({over}{noise})")
    verdict = (
        f"The goal is met everywhere ({'; '.join(met)})."
        if not missed
        else f"The goal is missed on {'; '.join(missed)}."
        + (f" Met: {'; '.join(met)}." if met else "")
    )
    first = data[names[0]]
    problems = [f"{b}: {p}" for b in names for p in data[b]["problems"]]
    lines = [
        "",
        "## Bulk writes without objects",
        "",
        f"`insert_rows()` (see [Queries at scale](queries.md)) inserts {ROWS:,} rows of three "
        "fields given as dicts, in a `db.unit_of_work()` of its own, against hand-written "
        "SQLAlchemy Core executemany, `conn.execute(insert(table), rows)` in `engine.begin()`. "
        'With `returning="keys"` it also returns the new keys, in input order. The table is '
        "emptied after every op, outside the timing.",
        "",
        f"{last_run(results)} Each ratio is the median of {first['rounds']} rounds' ratios, "
        "with their interquartile range in brackets; each round runs the three ways once, in "
        "an order shuffled for the round. `nox -s bench -- bulk` reruns this and rewrites this "
        "section; it creates and drops its own `bench_rows_hero` table.",
        "",
        f"Time {TIMES} Core executemany (a missed goal in bold):",
        "",
        *ratios,
        "",
        verdict,
        "",
        "Median time per op:",
        "",
        times[0],
        times[1],
        *times[2:],
        *cpu,
        "",
        "What herorepo adds before any SQL, in the last row above (timed apart, in-process, "
        "the best of 15): the rows validated with one pydantic call into plain dicts, checked "
        "column by column (text lengths, NUL, integer ranges: a few C-level calls per column "
        "when every value passes), and cut into batches. The rest of the difference is the "
        "unit of work (its transaction and the SAVEPOINT around the insert) against "
        "`engine.begin()`. With keys, PostgreSQL and MariaDB send multi-row `INSERT ... "
        "RETURNING` statements where Core executemany uses the driver's own executemany; "
        "which is faster depends on the driver.",
        "",
    ]
    if problems:
        lines += ["Checks that failed in this run:", "", *[f"- {p}" for p in problems], ""]
    return lines


SECTION = Section("bulk", render_section)


# --- the command ---------------------------------------------------------------------------------


def add_parser(sub: Any) -> argparse.ArgumentParser:
    return SECTION.add_parser(
        sub, help="time insert_rows() against hand-written Core executemany", seed=19
    )


def main(args: argparse.Namespace) -> int:
    return SECTION.main(args, each_backend(run_backend))
