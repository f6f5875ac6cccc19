"""The floor: each driver with hand-written SQL, no SQLAlchemy.

asyncpg and aiomysql run on their own pools (acquire and release per operation, as an
application would); aiosqlite has no pool, so one connection is opened up front. Reads run in
autocommit; writes in an explicit transaction (or a single autocommitted statement where one
statement is the whole write). Rows come back as the driver's records: no objects are built.
Inserts return the complete row with RETURNING (PostgreSQL, SQLite 3.35+, MariaDB 10.5+).
Statements are counted per execute call; an ``executemany`` counts as one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy.engine import make_url

from .base import MIN_AGE, PAGE_SIZE, STREAM_BATCH, Contender, UowArgs

HERO = "id, name, secret_name, age, team_id, created_at"
ROW = "id, name, value, score"

SQL = {
    "get": f"SELECT {HERO} FROM bench_hero WHERE id = $1",
    "list": f"SELECT {HERO} FROM bench_hero WHERE age >= $1 ORDER BY name LIMIT $2",
    "insert": (
        "INSERT INTO bench_hero (name, secret_name, age, team_id) VALUES ($1, $2, $3, $4) "
        f"RETURNING {HERO}"
    ),
    "bulk": "INSERT INTO bench_bulk_hero (name, secret_name, age) VALUES ($1, $2, $3)",
    "update": "UPDATE bench_hero SET secret_name = $1 WHERE id = $2",
    "delete": "DELETE FROM bench_hero WHERE id = $1",
    "first_page": f"SELECT {ROW} FROM bench_row ORDER BY id LIMIT $1",
    "keyset": f"SELECT {ROW} FROM bench_row WHERE id > $1 ORDER BY id LIMIT $2",
    "offset": f"SELECT {ROW} FROM bench_row ORDER BY id LIMIT $1 OFFSET $2",
    "teams": "SELECT id, name, headquarters FROM bench_team ORDER BY id",
    "team_heroes": f"SELECT {HERO} FROM bench_hero WHERE team_id IN ({{ids}})",
    "stream": f"SELECT {ROW} FROM bench_row WHERE id <= $1 ORDER BY id",
}


def _placeholders(style: str) -> dict[str, str]:
    """The SQL above with ``$n`` turned into the driver's ``%s`` or ``?``."""
    return {name: re.sub(r"\$\d+", style, text) for name, text in SQL.items()}


def _hero_values(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["name"], row["secret_name"], row["age"], row["team_id"])


def _group(teams: Sequence[Any], heroes: Sequence[Any]) -> list[tuple[Any, list[Any]]]:
    """Attach heroes to their teams by hand (column 0 is the id, column 4 the team_id)."""
    by_team: dict[Any, list[Any]] = {team[0]: [] for team in teams}
    for hero in heroes:
        by_team[hero[4]].append(hero)
    return [(team, by_team[team[0]]) for team in teams]


async def _asyncpg_pool(sqlalchemy_url: str) -> Any:
    import asyncpg

    url = make_url(sqlalchemy_url)
    return await asyncpg.create_pool(
        host=url.host, port=url.port, user=url.username, password=url.password,
        database=url.database, min_size=1, max_size=5,
    )  # fmt: skip


class RawAsyncpg(Contender):
    key = "raw"
    label = "raw driver"
    family = "raw"

    async def open(self) -> None:
        self.pool = await _asyncpg_pool(self.env.url)

    async def close(self) -> None:
        await self.pool.close()

    async def get_by_pk(self, ident: int) -> Any:
        self.statements += 1
        async with self.pool.acquire() as conn:
            return await conn.fetchrow(SQL["get"], ident)

    async def list_page(self) -> Sequence[Any]:
        self.statements += 1
        async with self.pool.acquire() as conn:
            return await conn.fetch(SQL["list"], MIN_AGE, PAGE_SIZE)

    async def insert_one(self, row: dict[str, Any]) -> Any:
        self.statements += 1
        async with self.pool.acquire() as conn:
            return await conn.fetchrow(SQL["insert"], *_hero_values(row))

    async def bulk_insert(self, rows: list[dict[str, Any]]) -> Any:
        self.statements += 1
        values = [(r["name"], r["secret_name"], r["age"]) for r in rows]
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.executemany(SQL["bulk"], values)

    async def update_one(self, ident: int, secret_name: str) -> Any:
        self.statements += 1
        async with self.pool.acquire() as conn:
            return await conn.execute(SQL["update"], secret_name, ident)

    async def delete_one(self, ident: int) -> None:
        self.statements += 1
        async with self.pool.acquire() as conn:
            await conn.execute(SQL["delete"], ident)

    async def keyset_page(self, cursor: Any) -> Sequence[Any]:
        self.statements += 1
        async with self.pool.acquire() as conn:
            if cursor is None:
                return await conn.fetch(SQL["first_page"], PAGE_SIZE)
            return await conn.fetch(SQL["keyset"], cursor, PAGE_SIZE)

    async def offset_page(self, offset: int) -> Sequence[Any]:
        self.statements += 1
        async with self.pool.acquire() as conn:
            return await conn.fetch(SQL["offset"], PAGE_SIZE, offset)

    async def teams_with_heroes(self) -> Sequence[Any]:
        self.statements += 2
        async with self.pool.acquire() as conn:
            teams = await conn.fetch(SQL["teams"])
            heroes = await conn.fetch(
                SQL["team_heroes"].format(ids="SELECT unnest($1::int[])"), [t[0] for t in teams]
            )
        return _group(teams, heroes)

    async def stream(self, last_id: int) -> int:
        self.statements += 1
        count = 0
        async with self.pool.acquire() as conn, conn.transaction():
            async for _row in conn.cursor(SQL["stream"], last_id, prefetch=STREAM_BATCH):
                count += 1
        return count

    async def unit_of_work(self, args: UowArgs) -> None:
        self.statements += 3
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.fetchrow(SQL["insert"], *_hero_values(args.new))
            await conn.execute(SQL["update"], args.secret_name, args.update_id)
            await conn.execute(SQL["delete"], args.delete_id)


class AsyncpgCopy(Contender):
    """asyncpg's binary COPY: the fastest way into PostgreSQL, for the bulk insert only."""

    key = "raw_copy"
    label = "asyncpg COPY"
    family = "raw"

    async def open(self) -> None:
        self.pool = await _asyncpg_pool(self.env.url)

    async def close(self) -> None:
        await self.pool.close()

    async def bulk_insert(self, rows: list[dict[str, Any]]) -> Any:
        self.statements += 1
        values = [(r["name"], r["secret_name"], r["age"]) for r in rows]
        async with self.pool.acquire() as conn:
            await conn.copy_records_to_table(
                "bench_bulk_hero", records=values, columns=["name", "secret_name", "age"]
            )


class RawAiomysql(Contender):
    key = "raw"
    label = "raw driver"
    family = "raw"
    sql = _placeholders("%s")

    async def open(self) -> None:
        import aiomysql

        url = make_url(self.env.url)
        self.pool = await aiomysql.create_pool(
            host=url.host or "127.0.0.1", port=url.port or 3306, user=url.username or "root",
            password=url.password or "", db=url.database, charset="utf8mb4",
            autocommit=True, minsize=1, maxsize=5,
        )  # fmt: skip

    async def close(self) -> None:
        self.pool.close()
        await self.pool.wait_closed()

    async def _fetchone(self, sql: str, *params: Any) -> Any:
        self.statements += 1
        async with self.pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute(sql, params)
            return await cur.fetchone()

    async def _fetchall(self, sql: str, *params: Any) -> Sequence[Any]:
        self.statements += 1
        async with self.pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute(sql, params)
            return await cur.fetchall()

    async def get_by_pk(self, ident: int) -> Any:
        return await self._fetchone(self.sql["get"], ident)

    async def list_page(self) -> Sequence[Any]:
        return await self._fetchall(self.sql["list"], MIN_AGE, PAGE_SIZE)

    async def insert_one(self, row: dict[str, Any]) -> Any:
        return await self._fetchone(self.sql["insert"], *_hero_values(row))

    async def bulk_insert(self, rows: list[dict[str, Any]]) -> Any:
        self.statements += 1
        values = [(r["name"], r["secret_name"], r["age"]) for r in rows]
        async with self.pool.acquire() as conn:
            await conn.begin()
            async with conn.cursor() as cur:
                await cur.executemany(self.sql["bulk"], values)
            await conn.commit()

    async def update_one(self, ident: int, secret_name: str) -> Any:
        return await self._fetchone(self.sql["update"], secret_name, ident)

    async def delete_one(self, ident: int) -> None:
        await self._fetchone(self.sql["delete"], ident)

    async def keyset_page(self, cursor: Any) -> Sequence[Any]:
        if cursor is None:
            return await self._fetchall(self.sql["first_page"], PAGE_SIZE)
        return await self._fetchall(self.sql["keyset"], cursor, PAGE_SIZE)

    async def offset_page(self, offset: int) -> Sequence[Any]:
        return await self._fetchall(self.sql["offset"], PAGE_SIZE, offset)

    async def teams_with_heroes(self) -> Sequence[Any]:
        self.statements += 2
        async with self.pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute(self.sql["teams"])
            teams = await cur.fetchall()
            ids = [t[0] for t in teams]
            await cur.execute(self.sql["team_heroes"].format(ids=", ".join(["%s"] * len(ids))), ids)
            heroes = await cur.fetchall()
        return _group(teams, heroes)

    async def stream(self, last_id: int) -> int:
        import aiomysql

        self.statements += 1
        count = 0
        async with self.pool.acquire() as conn, conn.cursor(aiomysql.SSCursor) as cur:
            await cur.execute(self.sql["stream"], (last_id,))
            while rows := await cur.fetchmany(STREAM_BATCH):
                count += len(rows)
        return count

    async def unit_of_work(self, args: UowArgs) -> None:
        self.statements += 3
        async with self.pool.acquire() as conn:
            await conn.begin()
            async with conn.cursor() as cur:
                await cur.execute(self.sql["insert"], _hero_values(args.new))
                await cur.fetchone()
                await cur.execute(self.sql["update"], (args.secret_name, args.update_id))
                await cur.execute(self.sql["delete"], (args.delete_id,))
            await conn.commit()


class RawAiosqlite(Contender):
    key = "raw"
    label = "raw driver"
    family = "raw"
    sql = _placeholders("?")

    async def open(self) -> None:
        import aiosqlite

        assert self.env.sqlite_path is not None
        self.conn = await aiosqlite.connect(self.env.sqlite_path)

    async def close(self) -> None:
        await self.conn.close()

    async def _fetchone(self, sql: str, *params: Any) -> Any:
        self.statements += 1
        async with self.conn.execute(sql, params) as cur:
            return await cur.fetchone()

    async def _fetchall(self, sql: str, *params: Any) -> Sequence[Any]:
        self.statements += 1
        return await self.conn.execute_fetchall(sql, params)

    async def get_by_pk(self, ident: int) -> Any:
        return await self._fetchone(self.sql["get"], ident)

    async def list_page(self) -> Sequence[Any]:
        return await self._fetchall(self.sql["list"], MIN_AGE, PAGE_SIZE)

    async def insert_one(self, row: dict[str, Any]) -> Any:
        found = await self._fetchone(self.sql["insert"], *_hero_values(row))
        await self.conn.commit()
        return found

    async def bulk_insert(self, rows: list[dict[str, Any]]) -> Any:
        self.statements += 1
        values = [(r["name"], r["secret_name"], r["age"]) for r in rows]
        await self.conn.executemany(self.sql["bulk"], values)
        await self.conn.commit()

    async def update_one(self, ident: int, secret_name: str) -> Any:
        self.statements += 1
        await self.conn.execute(self.sql["update"], (secret_name, ident))
        await self.conn.commit()

    async def delete_one(self, ident: int) -> None:
        self.statements += 1
        await self.conn.execute(self.sql["delete"], (ident,))
        await self.conn.commit()

    async def keyset_page(self, cursor: Any) -> Sequence[Any]:
        if cursor is None:
            return await self._fetchall(self.sql["first_page"], PAGE_SIZE)
        return await self._fetchall(self.sql["keyset"], cursor, PAGE_SIZE)

    async def offset_page(self, offset: int) -> Sequence[Any]:
        return await self._fetchall(self.sql["offset"], PAGE_SIZE, offset)

    async def teams_with_heroes(self) -> Sequence[Any]:
        teams = list(await self._fetchall(self.sql["teams"]))
        ids = [t[0] for t in teams]
        sql = self.sql["team_heroes"].format(ids=", ".join(["?"] * len(ids)))
        heroes = await self._fetchall(sql, *ids)
        return _group(teams, list(heroes))

    async def stream(self, last_id: int) -> int:
        self.statements += 1
        count = 0
        async with self.conn.execute(self.sql["stream"], (last_id,)) as cur:
            while rows := await cur.fetchmany(STREAM_BATCH):
                count += len(rows)
        return count

    async def unit_of_work(self, args: UowArgs) -> None:
        self.statements += 3
        async with self.conn.execute(self.sql["insert"], _hero_values(args.new)) as cur:
            await cur.fetchone()
        await self.conn.execute(self.sql["update"], (args.secret_name, args.update_id))
        await self.conn.execute(self.sql["delete"], (args.delete_id,))
        await self.conn.commit()


RAW = {"postgres": RawAsyncpg, "mysql": RawAiomysql, "sqlite": RawAiosqlite}
