"""Profile herorepo's hottest paths, get by primary key and create, next to the SQLModel idiom.

``python -m benchmarks profile --backend postgres`` sets up small bench tables, then runs each
path ``--ops`` times under pyinstrument (a sampling profiler that follows ``await``) and prints
the call trees, herorepo's and the hand-written SQLModel code's, so the extra frames stand out.
``--out DIR`` also saves them as HTML. A breakdown follows: the same get run on the plain
engine and on herorepo's, with and without a repository, to tell the engine's defaults from the
repository's own cost, for get, create and a bulk insert (where the ORM's bulk paths are timed
too).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import make_transient_to_detached
from sqlmodel.ext.asyncio.session import AsyncSession

from herorepo import Database, EngineConfig, Repository, UnitOfWork, create_sessionmaker

from . import environment
from .contenders import Env
from .contenders.herorepo_ import Herorepo
from .contenders.sqlmodel_idiom import SQLModelIdiom
from .data import Dataset, Sizes
from .models import BulkHero, Hero
from .report import fmt_time

Op = Callable[[int], Awaitable[Any]]


async def _profile(name: str, op: Op, ops: int, out: Path | None) -> None:
    from pyinstrument import Profiler

    for i in range(200):  # warm caches: compiled statements, prepared statements, the pool
        await op(i)
    profiler = Profiler(interval=0.0002, async_mode="enabled")
    profiler.start()
    for i in range(ops):
        await op(i)
    profiler.stop()
    print(
        f"\n=== {name}: {ops} ops, {profiler.last_session.duration / ops * 1e6:.0f} µs per op ==="
    )
    # Library frames stay folded except the pool, the dialects and herorepo's own modules, where
    # the differences between herorepo and the idiom live.
    options = {"show_regex": r".*(herorepo|sqlalchemy/pool|sqlalchemy/dialects|benchmarks).*"}
    print(profiler.output_text(unicode=True, processor_options=options))
    if out is not None:
        _save(out / f"{name.replace(' ', '_')}.html", profiler.output_html())


def _save(path: Path, html: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html)


async def _compare(
    title: str,
    variants: dict[str, Op],
    ops: int,
    rounds: int,
    after: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Time ``variants`` in shuffled rounds and print medians relative to the first."""
    rng = random.Random(6)
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for op in variants.values():
        for i in range(min(ops, 50)):
            await op(i)
        if after is not None:
            await after()
    for _ in range(rounds):
        order = list(variants)
        rng.shuffle(order)
        for name in order:
            gc.collect()
            start = time.perf_counter()
            for i in range(ops):
                await variants[name](i)
            samples[name].append((time.perf_counter() - start) / ops)
            if after is not None:
                await after()
    base = statistics.median(next(iter(samples.values())))
    print(f"\n=== {title} (median of {rounds} rounds of {ops} ops) ===")
    for name, values in samples.items():
        median = statistics.median(values)
        print(f"{fmt_time(median):>10}  {median / base:5.2f}\u00d7  {name}")


async def _breakdown(env: Env, ds: Dataset, ops: int) -> None:
    """Tell the engine's defaults, the unit of work and the repository apart, op by op."""
    plain = create_async_engine(env.url)
    defaults = Database(env.url)
    no_ping = Database(env.url, EngineConfig(pool_pre_ping=False))
    unrecorded = Database(env.url, EngineConfig(commit_outcome=False))  # no record before COMMIT
    rng = random.Random(6)

    def maker(engine: Any) -> Any:
        return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)

    def repository_free(db: Database) -> Op:
        async def op(i: int) -> Any:
            async with db.session() as session:
                return await session.get(Hero, rng.randint(1, 9_000))

        return op

    def idiom_get(engine: Any) -> Op:
        sessions = maker(engine)

        async def op(i: int) -> Any:
            async with sessions() as session:
                return await session.get(Hero, rng.randint(1, 9_000))

        return op

    def repository_get(sessions: Any) -> Op:
        async def op(i: int) -> Any:
            async with sessions() as session:
                return await Repository(session, Hero).get(rng.randint(1, 9_000))

        return op

    def begin_get(engine: Any) -> Op:
        sessions = maker(engine)

        async def op(i: int) -> Any:
            async with sessions() as session, session.begin():
                return await session.get(Hero, rng.randint(1, 9_000))

        return op

    async def unit_session_get(i: int) -> Any:
        async with defaults.unit_of_work() as uow:
            return await uow.session.get(Hero, rng.randint(1, 9_000))

    async def unit_repository_get(i: int) -> Any:
        async with defaults.unit_of_work() as uow:
            return await uow.repository(Hero).get(rng.randint(1, 9_000))

    # A ladder: each row adds one layer to the one above it.
    await _compare(
        f"get by primary key, {env.backend}",
        {
            "session.get on a plain engine (the idiom)": idiom_get(plain),
            "session.get in session.begin() (SQLAlchemy's transaction)": begin_get(plain),
            "session.get on Database(pool_pre_ping=False)": repository_free(no_ping),
            "session.get on Database() (herorepo's engine and session)": repository_free(defaults),
            "Repository.get on Database()": repository_get(defaults.sessionmaker),
            "session.get in db.unit_of_work() (the unit of work)": unit_session_get,
            "Repository.get in db.unit_of_work() (what the docs show)": unit_repository_get,
        },
        ops,
        15,
    )

    def idiom_create(engine: Any) -> Op:
        sessions = maker(engine)

        async def op(i: int) -> Any:
            async with sessions() as session:
                hero = Hero.model_validate(ds.next_hero())
                session.add(hero)
                await session.commit()
                await session.refresh(hero)
                return hero

        return op

    def repository_create_in_begin(engine: Any) -> Op:
        sessions = create_sessionmaker(engine)

        async def op(i: int) -> Any:
            async with sessions() as session, session.begin():
                return await Repository(session, Hero).create(ds.next_hero())

        return op

    def uow_create(sessions: Any) -> Op:
        async def op(i: int) -> Any:
            async with UnitOfWork(sessions) as uow:
                return await uow.repository(Hero).create(ds.next_hero())

        return op

    await _compare(
        f"create (insert one + commit), {env.backend}",
        {
            "add + commit + refresh on a plain engine (the idiom)": idiom_create(plain),
            "Repository.create in session.begin(), plain engine": repository_create_in_begin(plain),
            "Repository.create in UnitOfWork, plain engine": uow_create(create_sessionmaker(plain)),
            "Repository.create in UnitOfWork, Database(pool_pre_ping=False)": uow_create(
                no_ping.sessionmaker
            ),
            "Repository.create in UnitOfWork, Database(commit_outcome=False)": uow_create(
                unrecorded.sessionmaker
            ),
            "Repository.create in UnitOfWork, Database() (the benchmark)": uow_create(
                defaults.sessionmaker
            ),
        },
        max(10, ops // 4),
        11,
        after=ds.reset_heroes,
    )

    rows = [
        {"name": f"bulk-{i}", "secret_name": f"bulk-secret-{i}", "age": i % 90}
        for i in range(ds.sizes.bulk_rows)
    ]
    bulk = BulkHero.__table__  # type: ignore[attr-defined]

    async def core(i: int) -> Any:
        async with plain.begin() as conn:
            await conn.execute(insert(bulk), rows)

    async def orm_bulk(i: int) -> Any:
        async with maker(plain)() as session:
            await session.execute(insert(BulkHero), rows)  # type: ignore[call-overload]
            await session.commit()

    async def orm_bulk_returning(i: int) -> Any:
        async with maker(plain)() as session:
            statement = insert(BulkHero).returning(BulkHero, sort_by_parameter_order=True)
            heroes = (await session.scalars(statement, rows)).all()  # type: ignore[call-overload]
            await session.commit()
            return heroes

    async def core_returning_keys(i: int) -> Any:
        statement = insert(bulk).returning(
            bulk.c.id, bulk.c.created_at, sort_by_parameter_order=True
        )
        async with plain.begin() as conn:
            return (await conn.execute(statement, rows)).all()

    async def validated_core_attached(i: int) -> Any:
        # A sketch of a faster add_many: validate, INSERT with RETURNING of the generated
        # columns only, set them on the objects, and make the objects persistent.
        heroes = [BulkHero.model_validate(r) for r in rows]
        statement = insert(bulk).returning(
            bulk.c.id, bulk.c.created_at, sort_by_parameter_order=True
        )
        async with maker(plain)() as session, session.begin():
            conn = await session.connection()
            keys = (await conn.execute(statement, rows)).all()
            for hero, (ident, created_at) in zip(heroes, keys, strict=True):
                hero.id, hero.created_at = ident, created_at
                make_transient_to_detached(hero)
            session.add_all(heroes)
        return heroes

    async def add_all(i: int) -> Any:
        async with maker(plain)() as session:
            session.add_all([BulkHero.model_validate(r) for r in rows])
            await session.commit()

    async def add_many(i: int) -> Any:
        async with UnitOfWork(no_ping.sessionmaker) as uow:
            return await uow.repository(BulkHero).add_many(rows)

    await _compare(
        f"bulk insert {len(rows):,} rows, {env.backend}",
        {
            "Core executemany (no RETURNING)": core,
            "ORM bulk session.execute(insert(Model), rows)": orm_bulk,
            "ORM bulk insert(Model).returning(Model, sort_by_parameter_order=True)": (
                orm_bulk_returning
            ),
            "Core insert().returning(id, created_at, sort_by_parameter_order=True)": (
                core_returning_keys
            ),
            "model_validate + Core RETURNING keys + make_transient_to_detached + add_all": (
                validated_core_attached
            ),
            "session.add_all + commit (the idiom)": add_all,
            "Repository.add_many in UnitOfWork (pre-ping off)": add_many,
        },
        1,
        3,
        after=ds.reset_bulk,
    )
    await plain.dispose()
    await defaults.dispose()
    await no_ping.dispose()
    await unrecorded.dispose()


async def _main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="herorepo-profile-") as tmp:
        url, sqlite_path = environment.backend_url(args.backend, tmp)
        env = Env(args.backend, url, sqlite_path)
        ds = Dataset(env.backend, url, Sizes(large_rows=1_000, stream_rows=1_000), sqlite_path)
        await ds.create()
        herorepo, idiom = Herorepo(env), SQLModelIdiom(env)
        await herorepo.open()
        await idiom.open()
        out = Path(args.out) if args.out else None
        ids = random.Random(6)
        try:
            for contender in () if args.breakdown_only else (idiom, herorepo):
                get = contender.get_by_pk
                await _profile(
                    f"{contender.key} get",
                    lambda i, get=get: get(ids.randint(1, 9_000)),
                    args.ops,
                    out,
                )
                insert = contender.insert_one
                await _profile(
                    f"{contender.key} create",
                    lambda i, insert=insert: insert(ds.next_hero()),
                    args.ops // 2,
                    out,
                )
                await ds.reset_heroes()
            await _breakdown(env, ds, max(50, args.ops // 10))
        finally:
            await herorepo.close()
            await idiom.close()
            await ds.drop()


def main(args: argparse.Namespace) -> int:
    asyncio.run(_main(args))
    return 0
