"""What the policies cost: ``python -m benchmarks policies`` (``nox -s bench -- policies``).

Times get by key, list (100 rows) and update by key, each op in a unit of work of its own, on
a ``Database(url, policies=[TenantScope(), SoftDelete(), AuditColumns()])``, against the same
calls on a ``Database(url)`` without policies:

* **by hand**: the tenant and soft-delete filters (and ``updated_at``) written by hand, which
  sends the same SQL. Only the mechanism differs; the goal is judged against this.
* **no filters**: the same call with no filters at all, what the SQL filters themselves cost.

The policies add one ``with_loader_criteria`` option per policy and scoped model to every ORM
statement, so the policies run twice: with 1 scoped model in the registry, and with 21.

It creates and drops its own ``bench_pol_*`` tables, takes the run lock like the rest of the
suite, saves its results to ``benchmarks/results/policies.json`` and rewrites the policies
section of docs/benchmarks.md from them (``nox -s bench`` puts that section back from the same
file when it rewrites the page).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import MetaData, event, insert, text
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from herorepo import AuditColumns, Database, NotFoundError, Repository, SoftDelete, TenantScope

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

TENANTS = 10
ROWS_PER_TENANT = 1_000
TENANT = "t1"
"""The tenant every op works for."""
EXTRA_MODELS = 20
"""Scoped models added to the registry of the "many" case, beside the one that is queried."""
PAGE = 100
MIN_VALUE = 30
"""The list's own filter: ``value >= MIN_VALUE``, sorted by name then id, PAGE rows."""
GOAL = 1.05


# --- models: one registry per case, so each Database's policies see only its own ----------------


@dataclass
class Registry:
    """A registry of its own: the queried model and ``extra`` more scoped models."""

    model: Any
    metadata: MetaData
    models: list[Any]
    """Every class, held here: a registry keeps only weak references to its classes."""

    @property
    def scoped(self) -> int:
        return len(self.model.__mapper__.registry.mappers)


def _models(extra: int) -> Registry:
    own = registry()

    class Base(SQLModel, registry=own):
        pass

    class Thing(Base, table=True):
        __tablename__ = "bench_pol_thing"

        id: int | None = Field(default=None, primary_key=True)
        tenant_id: str = Field(max_length=20, index=True)
        name: str = Field(max_length=50, index=True)
        value: int = 0
        deleted_at: datetime | None = None
        updated_at: datetime | None = None

    models: list[Any] = [Thing]
    for k in range(extra):
        annotations = {
            "id": int | None,
            "tenant_id": str,
            "name": str,
            "deleted_at": datetime | None,
        }
        namespace = {
            "__tablename__": f"bench_pol_extra_{k:02d}",
            "__annotations__": annotations,
            "id": Field(default=None, primary_key=True),
            "tenant_id": Field(max_length=20, index=True),
            "name": Field(max_length=50),
            "deleted_at": None,
        }
        models.append(type(f"Extra{k:02d}", (Base,), namespace, table=True))
    return Registry(Thing, own.metadata, models)


def _rows() -> list[dict[str, Any]]:
    """Ten tenants, interleaved by id; one row in seven soft-deleted; names out of id order."""
    deleted = datetime(2026, 1, 1, tzinfo=timezone.utc)
    rows = []
    for i in range(1, TENANTS * ROWS_PER_TENANT + 1):
        rows.append(
            {
                "id": i,
                "tenant_id": f"t{i % TENANTS}",
                "name": f"thing-{(i * 7919) % 100_000:05d}",
                "value": i % 100,
                "deleted_at": deleted if i % 7 == 0 else None,
                "updated_at": None,
            }
        )
    return rows


def _live_ids() -> list[int]:
    """The keys of TENANT's rows that are not soft-deleted: every op's key is one of them."""
    return [i for i in range(1, TENANTS * ROWS_PER_TENANT + 1) if i % TENANTS == 1 and i % 7]


# --- the ways of writing each op -----------------------------------------------------------------


@dataclass
class Way:
    """One way of writing the three ops, on a Database of its own (its statements counted)."""

    key: str
    db: Database
    model: Any
    statements: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        def count(*args: Any) -> None:
            if args[2].lstrip()[:5].upper() != "BEGIN":
                self.statements += 1

        event.listen(self.db.engine.sync_engine, "before_cursor_execute", count)

    def uow(self) -> Any:
        return self.db.unit_of_work()

    async def get(self, ident: int) -> Any:
        raise NotImplementedError

    async def list(self) -> Any:
        raise NotImplementedError

    async def update(self, ident: int, name: str) -> Any:
        raise NotImplementedError


class WithPolicies(Way):
    """What docs/policies.md tells users to write: the policies do the scoping."""

    def uow(self) -> Any:
        return self.db.unit_of_work(tenant=TENANT)

    async def get(self, ident: int) -> Any:
        async with self.uow() as uow:
            return await uow.repository(self.model).get_one(ident)

    async def list(self) -> Any:
        m = self.model
        async with self.uow() as uow:
            return await uow.repository(m).list(
                m.value >= MIN_VALUE, order_by=(m.name, m.id), limit=PAGE
            )

    async def update(self, ident: int, name: str) -> Any:
        async with self.uow() as uow:
            return await uow.repository(self.model).update(ident, {"name": name})


class _FilteredByKey(Repository[Any]):
    """herorepo's repository, its update by key sending the two filters in its WHERE too.

    The public API takes no filters on ``update(key, ...)``; this extends the one private
    method that builds that WHERE, so the call keeps herorepo's path (one ``UPDATE ...
    RETURNING``) and sends the SQL the policies send. The check before timing makes sure it
    still refuses another tenant's row and a soft-deleted one.
    """

    def _key_clauses(self, ident: Any) -> list[Any]:
        m = self.model
        return [*super()._key_clauses(ident), m.tenant_id == TENANT, m.deleted_at.is_(None)]


def _mine(row: Any, ident: int) -> Any:
    """The check a person writes after reading by key: the tenant's row, and not deleted."""
    if row is None or row.tenant_id != TENANT or row.deleted_at is not None:
        raise NotFoundError(f"Thing with id={ident} does not exist.", model="Thing")
    return row


class ByHand(Way):
    """No policies; the tenant and soft-delete filters, and ``updated_at``, written by hand.

    get: ``get()``, then a check of the row's tenant and deletion time (``get`` takes no
    filters; ``find_one`` with them takes the slower SELECT path of searches). list: the
    filters in ``list()``. update: herorepo's update by key with the filters in its WHERE
    (:class:`_FilteredByKey`), the SQL the policies send; on MariaDB, which has no ``UPDATE
    ... RETURNING``, ``get()`` and the check, then ``update()`` of the object, which is what
    herorepo does there (a SELECT, then the UPDATE).
    """

    async def get(self, ident: int) -> Any:
        async with self.uow() as uow:
            return _mine(await uow.repository(self.model).get(ident), ident)

    async def list(self) -> Any:
        m = self.model
        async with self.uow() as uow:
            return await uow.repository(m).list(
                m.value >= MIN_VALUE,
                m.tenant_id == TENANT,
                m.deleted_at.is_(None),
                order_by=(m.name, m.id),
                limit=PAGE,
            )

    async def update(self, ident: int, name: str) -> Any:
        now = datetime.now(timezone.utc)
        if self.db.engine.dialect.name == "mysql":  # a DATETIME keeps whole seconds there
            now = now.replace(microsecond=0)
        values = {"name": name, "updated_at": now}
        async with self.uow() as uow:
            repository = _FilteredByKey(uow.session, self.model)
            if self.db.engine.dialect.update_returning:
                return await repository.update(ident, values)
            found = _mine(await repository.get(ident), ident)
            return await repository.update(found, values)


class NoFilters(Way):
    """No policies and no filters: the same calls as :class:`WithPolicies`, in a plain unit
    of work (``Way.uow``)."""

    get = WithPolicies.get
    list = WithPolicies.list
    update = WithPolicies.update


# --- the ops -------------------------------------------------------------------------------------


Args = tuple[Any, ...]
Step = list[Args]


@dataclass(frozen=True)
class Op:
    key: str
    label: str
    ops: int
    rounds: int
    warmup: int
    make_args: Callable[[int, int, random.Random], list[Step]]
    """``(ops, ways, rng)``: for each op, the arguments of each place in the round's order."""


def ops(scale: float) -> list[Op]:
    live = _live_ids()
    serial = iter(range(10**9))

    def keys(n: int, width: int, rng: random.Random) -> list[Step]:
        return [[(rng.choice(live),)] * width for _ in range(n)]

    def none(n: int, width: int, rng: random.Random) -> list[Step]:
        return [[()] * width for _ in range(n)]

    def updates(n: int, width: int, rng: random.Random) -> list[Step]:
        # A row of its own for each way: the first write to a row since the last round costs
        # more on MariaDB than the next ones, which would favour whoever comes later.
        return [
            [(ident, f"renamed-{next(serial)}") for ident in rng.sample(live, width)]
            for _ in range(n)
        ]

    def scaled(n: int) -> int:
        return max(1, round(n * scale))

    rounds = max(5, round(41 * min(1.0, scale)))
    return [
        Op("get", "get by key", scaled(30), rounds, 20, keys),
        Op("list", f"list {PAGE} rows", scaled(8), rounds, 5, none),
        Op("update", "update by key", scaled(20), rounds, 10, updates),
    ]


# --- running -------------------------------------------------------------------------------------


async def _batch(way: Way, op: Op, args: list[Args]) -> float:
    method = getattr(way, op.key)
    gc.collect()
    start = time.perf_counter()
    for arg in args:
        await method(*arg)
    return (time.perf_counter() - start) / len(args)


async def _check(backend: str, ways: list[Way], rows_db: Database) -> list[str]:
    """Every way returns what it should, and the scoped ways see only the tenant's live rows."""
    problems: list[str] = []
    live = _live_ids()
    ident = live[3]
    other_tenant, deleted = ident + 1, next(i for i in range(ident, 10**6, TENANTS) if i % 7 == 0)
    lists: dict[str, list[int]] = {}
    for way in ways:  # reads first: the updates below change a name, so the list's order
        got = await way.get(ident)
        if got.id != ident:
            problems.append(f"{way.key}: get({ident}) returned id {got.id}")
        lists[way.key] = [row.id for row in await way.list()]
        if len(lists[way.key]) != PAGE:
            problems.append(f"{way.key}: list returned {len(lists[way.key])} rows, not {PAGE}")
    scoped = {k: v for k, v in lists.items() if k != "no_filters"}
    first_key, first = next(iter(scoped.items()))
    for key, ids in scoped.items():
        if ids != first:
            problems.append(f"list: {key} returned other rows than {first_key}")
    async with rows_db.session() as session:
        expected = (
            await session.execute(
                text(
                    "SELECT id FROM bench_pol_thing WHERE tenant_id = :t AND deleted_at IS NULL "
                    "AND value >= :v ORDER BY name, id LIMIT :n"
                ),
                {"t": TENANT, "v": MIN_VALUE, "n": PAGE},
            )
        ).scalars()
        if list(expected) != first:
            problems.append("list: the scoped ways did not return the tenant's live rows")
    for way in ways:
        before = datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)
        name = f"checked-{way.key}"
        await way.update(ident, name)
        async with rows_db.session() as session:
            row = (
                await session.execute(
                    text("SELECT name, updated_at FROM bench_pol_thing WHERE id = :id"),
                    {"id": ident},
                )
            ).one()
        if row.name != name:
            problems.append(f"{way.key}: update left name {row.name!r}, expected {name!r}")
        stamped = row.updated_at
        if isinstance(stamped, str):  # SQLite
            stamped = datetime.fromisoformat(stamped)
        if not isinstance(way, NoFilters) and (
            stamped is None or stamped.replace(tzinfo=None) < before
        ):
            problems.append(f"{way.key}: update left updated_at {stamped!r}")
        if isinstance(way, NoFilters):
            continue
        for what, row_id in (("another tenant's", other_tenant), ("a soft-deleted", deleted)):
            for call, arg in (("get", (row_id,)), ("update", (row_id, "never"))):
                try:
                    await getattr(way, call)(*arg)
                except NotFoundError:
                    continue
                problems.append(f"{way.key}: {call} found {what} row {row_id}")
    return problems


async def _setup(url: str, metadata: MetaData, model: Any) -> Database:
    db = Database(url)
    await db.drop_all(metadata)
    await db.create_all(metadata)
    async with db.engine.begin() as conn:
        await conn.execute(insert(model.__table__), _rows())
    analyze = {
        "postgresql": ["ANALYZE bench_pol_thing"],
        "mysql": ["ANALYZE TABLE bench_pol_thing"],
        "sqlite": ["ANALYZE"],
    }[db.engine.dialect.name]
    async with db.engine.connect() as conn:
        for statement in analyze:
            await conn.execute(text(statement))
        await conn.commit()
    return db


async def run_backend(
    backend: str, url: str, scale: float, seed: int, log: Callable[[str], None]
) -> dict[str, Any]:
    started = time.perf_counter()
    one, many = _models(0), _models(EXTRA_MODELS)
    setup = await _setup(url, many.metadata, many.model)  # bench_pol_thing, the extras' tables
    out: dict[str, Any] = {
        "server": await server_version(setup),
        "scoped_models": {"policies_1": one.scoped, "policies_many": many.scoped},
        "ops": {},
        "problems": [],
    }
    chosen = [TenantScope(), SoftDelete(), AuditColumns()]
    ways: list[Way] = [
        WithPolicies("policies_1", Database(url, policies=chosen), one.model),
        WithPolicies("policies_many", Database(url, policies=chosen), many.model),
        ByHand("by_hand", Database(url), one.model),
        NoFilters("no_filters", Database(url), one.model),
    ]
    rng = random.Random(seed)
    try:
        out["problems"] = await _check(backend, ways, setup)
        for way in ways:  # what the policies add criteria for: every scoped model they know
            if isinstance(way, WithPolicies):
                policies = way.db.policies
                assert policies is not None
                seen = len(policies._scoped_mappers())
                if seen != out["scoped_models"][way.key]:
                    out["problems"].append(
                        f"{way.key}: the policies scope {seen} models, "
                        f"expected {out['scoped_models'][way.key]}"
                    )
        for problem in out["problems"]:
            log(f"[{backend}] CHECK FAILED {problem}")
        for op in ops(scale):
            t0 = time.perf_counter()
            counts: dict[str, int] = {}
            for way in ways:
                before = way.statements
                await getattr(way, op.key)(*op.make_args(1, 1, rng)[0][0])
                counts[way.key] = way.statements - before
                await _batch(way, op, [s[0] for s in op.make_args(op.warmup, 1, rng)])
            samples: dict[str, list[float]] = {way.key: [] for way in ways}
            for round_no in range(op.rounds):
                steps = op.make_args(op.ops, len(ways), random.Random(seed * 1000 + round_no))
                order = list(ways)
                rng.shuffle(order)
                for key, sample in (await interleaved(order, op.key, steps)).items():
                    samples[key].append(sample)
            results = {}
            for way in ways:
                results[way.key] = summarize(samples[way.key]) | {"statements": counts[way.key]}
            out["ops"][op.key] = {
                "label": op.label,
                "ops": op.ops,
                "rounds": op.rounds,
                "results": results,
            }
            log(
                f"[{backend}] {op.key} ({time.perf_counter() - t0:.0f}s): "
                + ", ".join(f"{k} {r['median'] * 1e6:.0f}µs" for k, r in results.items())
                + " | "
                + ", ".join(
                    f"{k}/{base} {paired(samples[k], samples[base])[0]:.3f}"
                    for k in ("policies_1", "policies_many", "by_hand")
                    for base in ("by_hand", "no_filters")
                    if k != base
                )
            )
    finally:
        for way in ways:
            await way.db.dispose()
        await setup.drop_all(many.metadata)
        await setup.dispose()
    out["seconds"] = time.perf_counter() - started
    return out


# --- where the time goes: the mechanism's CPU per statement, without I/O -----------------------


def breakdown(reg: Registry, ops: int = 300, rounds: int = 15) -> dict[str, Any]:
    """Time one statement (the SELECT of a get by key) with and without the policies' hook.

    On in-memory SQLite through the stdlib driver and a plain sync ``Session``: no network, no
    thread, no event loop, so what remains is the CPU each statement costs. The hook is
    herorepo's own ``do_orm_execute`` listener; the cache key of the options it adds is timed
    apart, on fresh statements, as SQLAlchemy computes it for every execution.
    """
    from sqlalchemy import create_engine, select
    from sqlalchemy.orm import Session

    from herorepo._policies import POLICIES_KEY, TENANT_KEY, scope_statement
    from herorepo._policies import Policies as Resolved

    engine = create_engine("sqlite://")
    reg.metadata.create_all(engine)
    m = reg.model
    with engine.begin() as conn:
        conn.execute(insert(m.__table__), _rows())
    keys = (_live_ids() * (ops // len(_live_ids()) + 1))[:ops]
    policies = Resolved([TenantScope(), SoftDelete(), AuditColumns()])
    hook = {"total": 0.0, "criteria": 0.0}
    added: list[Any] = []

    def timed_hook(state: Any) -> None:
        t0 = time.perf_counter()
        policies.criteria(state)  # once more, apart: finding the options, without .options()
        t1 = time.perf_counter()
        before = len(state.statement._with_options)
        scope_statement(state)
        t2 = time.perf_counter()
        hook["criteria"] += t1 - t0
        hook["total"] += t2 - t1
        if not added:
            added.extend(state.statement._with_options[before:])

    scoped = Session(engine, info={POLICIES_KEY: policies, TENANT_KEY: TENANT})
    event.listen(scoped, "do_orm_execute", timed_hook)
    plain = Session(engine)
    # herorepo's sessions always have do_orm_execute listeners (its guards), with policies or
    # without: the plain session gets one too, so that both pay the event's own cost.
    event.listen(plain, "do_orm_execute", lambda state: None)

    def run(session: Session) -> float:
        gc.collect()
        start = time.perf_counter()
        for ident in keys:
            session.get(m, ident)
            session.expunge_all()
        return (time.perf_counter() - start) / ops

    def cache_keys(options: Sequence[Any]) -> float:
        gc.collect()
        start = time.perf_counter()
        for ident in keys:
            statement = select(m).where(m.id == ident)
            if options:
                statement = statement.options(*options)
            statement._generate_cache_key()
        return (time.perf_counter() - start) / ops

    run(plain)  # warm: the compiled statements, the tenant's options
    run(scoped)
    samples: dict[str, list[float]] = {
        k: [] for k in ("plain", "scoped", "hook", "criteria", "key", "key_options")
    }
    for _ in range(rounds):
        samples["plain"].append(run(plain))
        hook["total"] = hook["criteria"] = 0.0
        samples["scoped"].append(run(scoped))
        samples["hook"].append(hook["total"] / ops)
        samples["criteria"].append(hook["criteria"] / ops)
        samples["key"].append(cache_keys(()))
        samples["key_options"].append(cache_keys(added))
    plain.close()
    scoped.close()
    engine.dispose()
    out: dict[str, Any] = {k: statistics.median(v) for k, v in samples.items()}
    out["options"] = len(added)
    out["scoped_models"] = reg.scoped
    return out


# --- the report section --------------------------------------------------------------------------


WAY_LABELS = {"by_hand": "filters by hand", "no_filters": "no filters"}


def _paired(op: dict[str, Any], key: str, base: str) -> tuple[float, float, float]:
    return paired(op["results"][key]["samples"], op["results"][base]["samples"])


def _ratio_cell(op: dict[str, Any], key: str, base: str, judge: bool) -> str:
    median, q1, q3 = _paired(op, key, base)
    shown = f"{median:.2f}{TIMES}"
    if judge and median > GOAL:
        shown = f"**{shown}**"
    noisy = " †" if judge and q1 <= GOAL < q3 else ""
    return f"{shown} ({q1:.2f}{DASH}{q3:.2f}){noisy}"


def _models_label(backend: dict[str, Any], key: str) -> str:
    count = backend["scoped_models"][key]
    return f"{count} scoped model{'s' if count != 1 else ''}"


def _cases(results: dict[str, Any]) -> list[tuple[str, str]]:
    """(op key, policies way) in the order of the tables."""
    first = next(iter(results["backends"].values()))
    return [(op, way) for op in first["ops"] for way in ("policies_1", "policies_many")]


def _ratio_table(results: dict[str, Any], base: str, judge: bool) -> list[str]:
    backends = shown_backends(results)
    first = results["backends"][backends[0]]
    lines = [
        "| op | registry | " + " | ".join(BACKEND_NAMES[b] for b in backends) + " |",
        "|---|---|" + "---:|" * len(backends),
    ]
    for op, way in _cases(results):
        cells = [_ratio_cell(results["backends"][b]["ops"][op], way, base, judge) for b in backends]
        label = first["ops"][op]["label"]
        lines.append(f"| {label} | {_models_label(first, way)} | " + " | ".join(cells) + " |")
    return lines


def _times_table(results: dict[str, Any]) -> list[str]:
    backends = shown_backends(results)
    first = results["backends"][backends[0]]
    ways = ["policies_1", "policies_many", "by_hand", "no_filters"]
    heads = [
        f"policies, {first['scoped_models']['policies_1']} model",
        f"policies, {first['scoped_models']['policies_many']} models",
        "filters by hand",
        "no filters",
    ]
    lines = [
        "| backend | op | " + " | ".join(heads) + " |",
        "|---|---|" + "---:|" * len(ways),
    ]
    for b in backends:
        for op in results["backends"][b]["ops"].values():
            cells = [
                f"{fmt(op['results'][w]['median'])} · {op['results'][w]['statements']}"
                for w in ways
            ]
            lines.append(f"| {BACKEND_NAMES[b]} | {op['label']} | " + " | ".join(cells) + " |")
    return lines


def _breakdown_table(cpu: list[dict[str, Any]]) -> list[str]:
    def us(value: float) -> str:
        return f"{value * 1e6:.0f} µs"

    heads = [f"{c['scoped_models']} scoped model{'s' if c['scoped_models'] != 1 else ''}, "
             f"{c['options']} options" for c in cpu]  # fmt: skip
    rows = [
        ("the SELECT of a get, without policies", [us(c["plain"]) for c in cpu]),
        ("the same, with the policies", [us(c["scoped"]) for c in cpu]),
        ("**added per statement**", [f"**{us(_parts(c)['added'])}**" for c in cpu]),
        (
            "herorepo's hook: finding the options (`Policies.criteria()`; each tenant's "
            "options are built once and kept)",
            [us(_parts(c)["find"]) for c in cpu],
        ),
        (
            "herorepo's hook: `statement.options(*options)`, where SQLAlchemy checks each one",
            [us(_parts(c)["options"]) for c in cpu],
        ),
        (
            "SQLAlchemy: the options' part of the statement's cache key",
            [us(_parts(c)["key"]) for c in cpu],
        ),
        (
            "SQLAlchemy, the rest: the criteria on a statement compiled already (binding "
            "the parameters, the ORM's handling of the options)",
            [us(_parts(c)["rest"]) for c in cpu],
        ),
    ]
    lines = ["| per statement | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(cpu)]
    lines += [f"| {name} | " + " | ".join(cells) + " |" for name, cells in rows]
    return lines


def _verdicts(results: dict[str, Any]) -> list[str]:
    """Say, per registry size, where the goal is met and where it is missed, by how much."""
    backends = shown_backends(results)
    first = results["backends"][backends[0]]
    lines = []
    for way in ("policies_1", "policies_many"):
        met, missed = [], []
        for b in backends:
            for op in results["backends"][b]["ops"].values():
                median, q1, _ = _paired(op, way, "by_hand")
                cell = f"{BACKEND_NAMES[b]} {op['label']} {median:.2f}{TIMES}"
                if median > GOAL:
                    over = f"{(median - 1) * 100:.0f}%"
                    missed.append(f"{cell} (+{over}{', within the noise' if q1 <= GOAL else ''})")
                else:
                    met.append(cell)
        head = f"- **{_models_label(first, way)}**: "
        if not missed:
            lines.append(head + f"met everywhere ({'; '.join(met)}).")
        else:
            lines.append(
                head
                + f"missed on {len(missed)} of {len(missed) + len(met)}: {'; '.join(missed)}."
                + (f" Met: {'; '.join(met)}." if met else "")
            )
    return lines


def _parts(c: dict[str, Any]) -> dict[str, float]:
    """The added CPU of one statement, split as the breakdown table shows it."""
    added = c["scoped"] - c["plain"]
    key = c["key_options"] - c["key"]
    return {
        "added": added,
        "find": c["criteria"],
        "options": c["hook"] - c["criteria"],
        "key": key,
        "rest": added - c["hook"] - key,
    }


def _why(results: dict[str, Any]) -> list[str]:
    cpu = results.get("cpu")
    if not cpu:
        return []
    one, many = cpu[0], cpu[-1]
    a, b = _parts(one), _parts(many)

    def us(value: float) -> str:
        return f"{value * 1e6:.0f} µs"

    return [
        "The policies scope a statement by adding `with_loader_criteria` options to it in a "
        "`do_orm_execute` hook: a tenant filter and a deletion filter for every scoped model "
        "of the registry, not only for the models the statement names, so that a model inside "
        "a subquery or a relationship load is scoped too. The SQL is the one written by hand; "
        "what the policies add is CPU, on every statement (table below): "
        f"{us(a['added'])} with {one['scoped_models']} scoped model, {us(b['added'])} with "
        f"{many['scoped_models']}.",
        "",
        f"- With {one['scoped_models']} model ({one['options']} options): SQLAlchemy handling "
        f"the criteria on a statement it has compiled already, {us(a['rest'])} (binding its "
        "parameters, the criteria's values among them, and the ORM's handling of the options "
        "around the execution); "
        f"herorepo's hook, {us(a['find'] + a['options'])}; the options' part of the cache "
        f"key, {us(a['key'])}.",
        f"- What grows with the models is the options ({many['options']} with "
        f"{many['scoped_models']} models): SQLAlchemy computes every statement's cache key to "
        "find its compiled form, and each option adds its criterion's key "
        f"({us(b['key'])}); `Select.options()` checks each option as it is added "
        f"({us(b['options'])}).",
        "- An op's ratio is this cost over the op's time. A get by key is one short "
        "statement, so it misses first. An update by key is one statement too, with a commit; "
        "on MariaDB, which has no `UPDATE ... RETURNING`, it is a SELECT that carries the "
        "criteria, then the UPDATE, with the policies' `before_flush` hook filling "
        "`updated_at`. A list of 100 rows spends most of its time loading rows.",
    ]


def render_section(results: dict[str, Any]) -> list[str]:
    """The policies section of docs/benchmarks.md, between its markers."""
    meta = results["meta"]
    backends = shown_backends(results)
    first = results["backends"][backends[0]]
    lines = [
        "",
        "## Policies",
        "",
        "What `Database(url, policies=[TenantScope(), SoftDelete(), AuditColumns()])` costs "
        "(see [Tenants, soft delete and audit columns](policies.md)): get by key, list "
        f"{PAGE} rows and update by key on a table of {meta['rows']:,} rows of "
        f"{meta['tenants']} tenants (one row in seven soft-deleted), each op in a unit of work "
        "of its own, `db.unit_of_work(tenant=...)`. Against the same calls on a `Database(url)` "
        "without policies:",
        "",
        "- **filters by hand**: the tenant and deletion filters, and `updated_at`, written by "
        "hand; the same SQL, so only the mechanism differs. The goal is judged against this: "
        f"within {GOAL:.2f}{TIMES}. get: `get()`, then a check of the row's tenant and "
        "`deleted_at` (`get` takes no filters; `find_one` with them takes the slower path of "
        "searches); list: the two filters in `list()`; update: herorepo's update by key with "
        "the two filters added to its `WHERE` (a `Repository` subclass extending the private "
        "method that builds it: the public API takes no filters there), one `UPDATE ... "
        "RETURNING` as with the policies; on MariaDB, which has no `UPDATE ... RETURNING`, "
        "`get()`, the check, and `update()` of the object, a SELECT then the UPDATE as with "
        "the policies.",
        "- **no filters**: the same calls with no filters at all: what the SQL filters "
        "themselves cost (or save, where the tenant's index helps). For get, the same "
        "statement as by hand, so its ratio shows the run's noise.",
        "",
        "The policies run twice: with their model alone in its registry, and with "
        f"{first['scoped_models']['policies_many'] - 1} more scoped models beside it, since "
        "they add their criteria for every scoped model of the registry to every statement. "
        "`nox -s bench -- policies` reruns this and rewrites this section (`--backends "
        "sqlite` for one backend); it takes the benchmarks' lock, and creates and drops its "
        "own `bench_pol_*` tables.",
        "",
        f"{last_run(results)} Each ratio is the median of the rounds' ratios, with their "
        "interquartile range in brackets († marks a range that straddles "
        f"{GOAL:.2f}{TIMES}). In a round, each op's arguments go to the four ways in turn, in "
        f"an order shuffled for each round ({op_sizes(first['ops'])}), so that a burst of other "
        "work on the shared machine lands on all four alike.",
        "",
        f"Time with the policies {TIMES} the same call with the filters by hand (above "
        f"{GOAL:.2f}{TIMES} in bold):",
        "",
        *_ratio_table(results, "by_hand", judge=True),
        "",
        *_verdicts(results),
        "",
        f"Time with the policies {TIMES} the same call without filters:",
        "",
        *_ratio_table(results, "no_filters", judge=False),
        "",
        "Median time per op · SQL statements per op (`BEGIN` and `COMMIT` not counted):",
        "",
        *_times_table(results),
        "",
    ]
    why = _why(results)
    if why:
        lines += [
            "### Where the time goes",
            "",
            *why,
            "",
            "CPU per statement, the SELECT of a get by key, on in-memory SQLite through the "
            "stdlib driver and a plain sync `Session` with herorepo's hook, against the same "
            "session without it (no I/O, no event loop; medians; the parts are timed apart, "
            "the rest is what remains). The µs follow the speed of the shared machine at the "
            "time and move between runs, by up to half for the smaller parts: read them as "
            "sizes, not to the µs.",
            "",
            *_breakdown_table(results["cpu"]),
            "",
        ]
    problems = [f"{b}: {p}" for b in backends for p in results["backends"][b]["problems"]]
    if problems:
        lines += ["Checks that failed in this run:", "", *[f"- {p}" for p in problems], ""]
    return lines


SECTION = Section("policies", render_section)


# --- the command ---------------------------------------------------------------------------------


def add_parser(sub: Any) -> argparse.ArgumentParser:
    return SECTION.add_parser(
        sub, help="time the policies against the same calls with filters by hand", seed=13
    )


def _measure(args: argparse.Namespace, urls: dict[str, str]) -> dict[str, Any]:
    backends: dict[str, Any] = {}

    async def run_all() -> None:
        for backend, url in urls.items():
            backends[backend] = await run_backend(backend, url, args.scale, args.seed, log)
            log(f"[{backend}] done in {backends[backend]['seconds']:.0f}s")

    asyncio.run(run_all())
    log("cpu per statement: measuring")
    cpu = [breakdown(_models(0)), breakdown(_models(EXTRA_MODELS))]
    for c in cpu:
        log(
            f"cpu, {c['scoped_models']} scoped models: +{(c['scoped'] - c['plain']) * 1e6:.0f} "
            f"µs per statement (hook {c['hook'] * 1e6:.0f}, options' cache key "
            f"{(c['key_options'] - c['key']) * 1e6:.0f})"
        )
    # Meta first in the JSON; Section.main puts the run's command, machine and time in it.
    meta = {"rows": TENANTS * ROWS_PER_TENANT, "tenants": TENANTS}
    return {"meta": meta, "backends": backends, "cpu": cpu}


def main(args: argparse.Namespace) -> int:
    return SECTION.main(args, _measure)
