"""Create, fill, reset and drop the ``bench_*`` tables on one backend.

Only tables named ``bench_*`` are created, written or dropped; nothing else on the servers is
touched. The heroes go in with one executemany (about a second for 100,000 rows); the large
table is filled with the driver's fastest path (COPY on PostgreSQL, multi-row INSERT on MariaDB,
``executemany`` on SQLite), since loading it is set-up, not a measurement. Statistics are
gathered after loading, so that every backend plans on the real tables.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from .models import ROW_COLUMNS, BulkHero, Hero, Row, Team, metadata

hero = Hero.__table__  # type: ignore[attr-defined]
team = Team.__table__  # type: ignore[attr-defined]
bulk = BulkHero.__table__  # type: ignore[attr-defined]
row = Row.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Sizes:
    """How much data each workload sees (the defaults are what the published run used)."""

    heroes: int = 100_000  # enough rows for the query plans to matter (issue #14)
    teams: int = 100
    heroes_per_team: int = 10
    bulk_rows: int = 10_000
    large_rows: int = 1_000_000
    stream_rows: int = 100_000

    @property
    def deep_offset(self) -> int:
        """The offset of the last full page of the large table: "page N"."""
        from .contenders.base import PAGE_SIZE

        return self.large_rows - PAGE_SIZE


def hero_rows(count: int, teams: int, per_team: int, seed: int = 6) -> list[dict[str, Any]]:
    """Heroes whose name order differs from their id order; the first teams*per_team have a team."""
    rng = random.Random(seed)
    numbers = list(range(count))
    rng.shuffle(numbers)
    rows = []
    for i, number in enumerate(numbers):
        age = None if rng.random() < 0.05 else rng.randint(10, 89)
        team_id = (i % teams) + 1 if i < teams * per_team else None
        rows.append(
            {
                "name": f"hero-{number:06d}",
                "secret_name": f"secret-{i}",
                "age": age,
                "team_id": team_id,
            }
        )
    return rows


def new_hero(n: int) -> dict[str, Any]:
    """A hero to insert during a workload (no team, so no foreign key check dominates)."""
    return {
        "name": f"new-{n:07d}",
        "secret_name": f"new-secret-{n}",
        "age": 20 + n % 50,
        "team_id": None,
    }


class Dataset:
    """The bench tables on one backend, with untimed helpers the workloads call between ops."""

    def __init__(self, backend: str, url: str, sizes: Sizes, sqlite_path: str | None) -> None:
        self.backend = backend
        self.url = url
        self.sizes = sizes
        self.sqlite_path = sqlite_path
        self.engine: AsyncEngine = create_async_engine(url)
        self.base_max_id = 0
        self._serial = 0

    async def create(self) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(metadata.drop_all)
            await conn.run_sync(metadata.create_all)
            await conn.execute(
                insert(team),
                [
                    {"name": f"team-{i:03d}", "headquarters": f"hq-{i}"}
                    for i in range(self.sizes.teams)
                ],
            )
            rows = hero_rows(self.sizes.heroes, self.sizes.teams, self.sizes.heroes_per_team)
            await conn.execute(insert(hero), rows)
            self.base_max_id = (await conn.execute(select(func.max(hero.c.id)))).scalar_one()
        await self._load_large_table()
        await self._analyze()

    async def drop(self) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(metadata.drop_all)
        await self.engine.dispose()

    async def server_version(self) -> str:
        query = {
            "postgres": "SHOW server_version",
            "mysql": "SELECT VERSION()",
            "sqlite": "SELECT sqlite_version()",
        }[self.backend]
        async with self.engine.connect() as conn:
            version = str((await conn.execute(text(query))).scalar_one())
        # "15.2 (Debian 15.2-1)" (PostgreSQL) and "10.11.6-MariaDB-0+deb12u1" read as 15.2, 10.11.6
        return version.split(" (")[0].split("-")[0]

    # --- between ops (never timed) -------------------------------------------------------------

    def next_hero(self) -> dict[str, Any]:
        self._serial += 1
        return new_hero(self._serial)

    async def make_victims(self, count: int) -> list[int]:
        """Insert ``count`` extra heroes and return their ids, for deletes."""
        values = [self.next_hero() for _ in range(count)]
        async with self.engine.begin() as conn:
            await conn.execute(insert(hero), values)
            result = await conn.execute(
                select(hero.c.id)
                .where(hero.c.id > self.base_max_id)
                .order_by(hero.c.id.desc())
                .limit(count)
            )
            return sorted(result.scalars())

    async def reset_heroes(self) -> None:
        """Remove the heroes the workloads added, so every round sees the same table."""
        async with self.engine.begin() as conn:
            await conn.execute(delete(hero).where(hero.c.id > self.base_max_id))

    async def reset_bulk(self) -> None:
        async with self.engine.begin() as conn:
            if self.backend == "postgres":
                await conn.execute(text("TRUNCATE bench_bulk_hero"))
            else:
                await conn.execute(delete(bulk))

    async def count(self, table: str, where: str = "") -> int:
        async with self.engine.connect() as conn:
            sql = f"SELECT COUNT(*) FROM {table} {where}"
            return int((await conn.execute(text(sql))).scalar_one())

    async def secret_name(self, ident: int) -> str | None:
        async with self.engine.connect() as conn:
            found = await conn.execute(select(hero.c.secret_name).where(hero.c.id == ident))
            return found.scalar_one_or_none()

    # --- loading -------------------------------------------------------------------------------

    def _large_rows(self) -> Any:
        for i in range(1, self.sizes.large_rows + 1):
            yield (i, f"row-{i:07d}", (i * 7919) % 100_000, i / 7)

    async def _load_large_table(self) -> None:
        url = make_url(self.url)
        if self.backend == "postgres":
            import asyncpg

            conn = await asyncpg.connect(
                host=url.host, port=url.port, user=url.username, password=url.password,
                database=url.database,
            )  # fmt: skip
            try:
                await conn.copy_records_to_table(
                    "bench_row", records=self._large_rows(), columns=list(ROW_COLUMNS)
                )
            finally:
                await conn.close()
        elif self.backend == "mysql":
            import aiomysql

            conn = await aiomysql.connect(
                host=url.host or "127.0.0.1", port=url.port or 3306, user=url.username or "root",
                password=url.password or "", db=url.database, autocommit=False,
            )  # fmt: skip
            try:
                sql = "INSERT INTO bench_row (id, name, value, score) VALUES (%s, %s, %s, %s)"
                batch: list[tuple[Any, ...]] = []
                async with conn.cursor() as cur:
                    for values in self._large_rows():
                        batch.append(values)
                        if len(batch) == 20_000:
                            await cur.executemany(sql, batch)
                            batch.clear()
                    if batch:
                        await cur.executemany(sql, batch)
                await conn.commit()
            finally:
                conn.close()
        else:
            import sqlite3

            assert self.sqlite_path is not None
            with sqlite3.connect(self.sqlite_path) as conn:
                conn.executemany(
                    "INSERT INTO bench_row (id, name, value, score) VALUES (?, ?, ?, ?)",
                    self._large_rows(),
                )
            conn.close()

    async def _analyze(self) -> None:
        statements = {
            "postgres": ["ANALYZE bench_team", "ANALYZE bench_hero", "ANALYZE bench_row"],
            "mysql": ["ANALYZE TABLE bench_team, bench_hero, bench_row"],
            "sqlite": ["PRAGMA journal_mode=WAL", "ANALYZE"],
        }[self.backend]
        async with self.engine.connect() as conn:
            for statement in statements:
                await conn.execute(text(statement))
            await conn.commit()
