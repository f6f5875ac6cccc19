"""Query tags (``EngineConfig(query_tags=QueryTags(...))``) reach the server, on every backend.

The proof that a comment reached the server is a statement that reads its own text there:
``pg_stat_activity.query`` of its own backend on PostgreSQL, ``information_schema.PROCESSLIST``'s
``INFO`` of its own connection on MariaDB (no performance_schema, no general log, no second
connection: bounded by the statement itself). SQLite runs in the process: its trace callback
gets each statement as SQLite runs it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Annotated, Any

import httpx
import pytest
import pytest_asyncio
from fastapi import Depends, FastAPI
from sqlalchemy import event, insert, text
from sqlalchemy.ext.asyncio import AsyncConnection

from herorepo import Database, EngineConfig, QueryTags, Repository, UnitOfWork
from herorepo._query_tags import format_comment
from herorepo.integrations.fastapi import DatabaseDep, UnitOfWorkDep, get_database, repository

from ..models import Hero, Team
from ..servers import PgBouncer, PostgresServer

pytestmark = pytest.mark.asyncio

APP = "/*application='herorepo-tests'"

OWN_TEXT = {
    "postgresql": "SELECT query FROM pg_stat_activity WHERE pid = pg_backend_pid()",
    "mysql": "SELECT INFO FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()",
}


async def server_text(connection: AsyncConnection, *, driver_sql: bool = False) -> str:
    """The text of a statement as the server (or SQLite) received it, comment and all; sent
    through ``exec_driver_sql()`` (no parameters at all) with ``driver_sql=True``."""
    backend = connection.dialect.name
    if backend != "sqlite":
        if driver_sql:
            return str((await connection.exec_driver_sql(OWN_TEXT[backend])).scalar_one())
        return str((await connection.execute(text(OWN_TEXT[backend]))).scalar_one())
    raw = await connection.get_raw_connection()
    driver: Any = raw.driver_connection  # aiosqlite's connection
    seen: list[str] = []
    await driver.set_trace_callback(seen.append)
    try:
        await connection.execute(text("SELECT 'my own text'"))
    finally:
        await driver.set_trace_callback(None)
    return next(statement for statement in seen if "my own text" in statement)


@pytest_asyncio.fixture
async def tagged(db: Database) -> AsyncIterator[Database]:
    # One connection, so that repeated statements meet the same prepared-statement cache.
    config = replace(
        db.config,
        pool_size=1,
        max_overflow=0,
        query_tags=QueryTags(application="herorepo-tests"),
    )
    async with Database(db.url, config) as database:
        yield database


@contextmanager
def sent(database: Database) -> Iterator[list[str]]:
    """The statements ``database`` hands to its driver inside the block, as the server gets
    them: pymysql fills parameters in with Python's % operator, which turns %% into %."""
    statements: list[str] = []
    percent = database.engine.dialect.paramstyle == "format"

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_args: Any) -> None:
        statements.append(statement.replace("%%", "%") if percent else statement)

    engine = database.engine.sync_engine
    event.listen(engine, "after_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "after_cursor_execute", record)


# --- what the server sees ------------------------------------------------------------------------


async def test_a_statement_reaches_the_server_with_its_tags(tagged: Database) -> None:
    async with tagged.unit_of_work(name="checkout") as uow:
        seen = await server_text(await uow.session.connection())
    assert seen.endswith(f" {APP},unit_of_work='checkout'*/")


async def test_database_run_tags_the_work_functions_name(tagged: Database) -> None:
    async def restock(uow: UnitOfWork) -> str:
        return await server_text(await uow.session.connection())

    seen = await tagged.run(restock)
    name = "test_database_run_tags_the_work_functions_name.%3Clocals%3E.restock"
    assert seen.endswith(f" {APP},unit_of_work='{name}'*/")
    assert (await tagged.run(restock, name="restock")).endswith("unit_of_work='restock'*/")


async def test_a_plain_session_carries_the_application_only(tagged: Database) -> None:
    async with tagged.session() as session:
        seen = await server_text(await session.connection())
    assert seen.endswith(f" {APP}*/")


async def test_a_joined_unit_of_work_runs_in_the_outer_ones_transaction(
    tagged: Database,
) -> None:
    async with tagged.unit_of_work(name="outer"), tagged.unit_of_work(name="inner") as inner:
        seen = await server_text(await inner.session.connection())
    assert seen.endswith("unit_of_work='outer'*/")


async def test_a_flush_at_commit_carries_the_name(tagged: Database) -> None:
    with sent(tagged) as statements:
        async with tagged.unit_of_work(name="signup") as uow:
            uow.session.add(Team(name="flushed at commit"))  # no flush before the COMMIT
    inserts = [s for s in statements if s.startswith("INSERT INTO hr_team")]
    assert inserts
    assert all(s.endswith(f" {APP},unit_of_work='signup'*/") for s in inserts)


@pytest.mark.parametrize(
    "name",
    ["x*/ DROP TABLE hr_team; -- '", "it's", "50% off %s %(v)s", "two\nlines", "/*+ hint */"],
)
async def test_a_name_cannot_close_the_comment(tagged: Database, name: str) -> None:
    expected = format_comment({"application": "herorepo-tests", "unit_of_work": name})
    async with tagged.unit_of_work(name=name) as uow:
        connection = await uow.session.connection()
        for driver_sql in (False, True):
            seen = await server_text(connection, driver_sql=driver_sql)
            comment = seen[seen.rindex("/*") :]
            assert comment.count("*/") == 1
            assert name not in seen
            # The % signs reached the server as they are, whether pymysql formats or not.
            assert comment == expected
        # The table is still there; the comment was one comment.
        await uow.session.exec(text("SELECT count(*) FROM hr_team"))  # type: ignore[call-overload]


async def test_a_statement_keeps_one_text_per_unit_of_work_name(tagged: Database) -> None:
    async with tagged.unit_of_work() as uow:
        hero = await uow.repository(Hero).create({"name": "a", "secret_name": "b"})
    with sent(tagged) as statements:
        for _ in range(3):
            async with tagged.unit_of_work(name="lookup") as uow:
                await uow.repository(Hero).get(hero.id)
    selects = {s for s in statements if s.startswith("SELECT")}
    assert len(selects) == 1
    assert selects.pop().endswith("unit_of_work='lookup'*/")


async def test_asyncpg_prepares_a_tagged_statement_once(tagged: Database) -> None:
    if tagged.backend != "postgresql":
        pytest.skip("asyncpg's prepared statements")
    async with tagged.unit_of_work() as uow:
        hero = await uow.repository(Hero).create({"name": "a", "secret_name": "b"})
    for name in ("lookup", "lookup", "lookup", "other"):
        async with tagged.unit_of_work(name=name) as uow:
            await uow.repository(Hero).get(hero.id)
    async with tagged.session() as session:
        rows = await session.exec(  # type: ignore[call-overload]
            text(
                "SELECT statement, generic_plans + custom_plans FROM pg_prepared_statements "
                "WHERE statement LIKE :pattern"
            ),
            params={"pattern": "SELECT hr_hero.id%"},
        )
        runs = {str(statement).rpartition("unit_of_work=")[2]: n for statement, n in rows}
    # One prepared statement per name, run again from the cache (the pool has one connection).
    assert runs == {"'lookup'*/": 3, "'other'*/": 1}


async def test_an_insert_of_many_rows_runs_tagged_or_as_one_batch(tagged: Database) -> None:
    rows = [{"name": f"team {n}", "headquarters": ""} for n in range(5)]
    with sent(tagged) as statements:
        async with tagged.unit_of_work(name="import") as uow:
            await (await uow.session.connection()).execute(insert(Team.__table__), rows)  # type: ignore[arg-type]
            count = await uow.session.exec(text("SELECT count(*) FROM hr_team"))  # type: ignore[call-overload]
            assert count.scalar_one() == 5
    inserts = [s for s in statements if s.startswith("INSERT INTO hr_team")]
    # pymysql makes one multi-row INSERT of an executemany() only when nothing follows VALUES:
    # on aiomysql, such statements stay untagged.
    tagged_inserts = [s for s in inserts if s.endswith("unit_of_work='import'*/")]
    assert bool(tagged_inserts) is (tagged.backend != "mysql")


# --- FastAPI -------------------------------------------------------------------------------------

Heroes = Annotated[Repository[Hero], Depends(repository(Hero))]


def make_app(database: Database) -> FastAPI:
    app = FastAPI()
    app.dependency_overrides[get_database] = lambda: database

    @app.get("/heroes/{hero_id}/seen")
    async def seen_by_server(hero_id: int, uow: UnitOfWorkDep) -> str:
        return await server_text(await uow.session.connection())

    @app.get("/heroes/{hero_id}")
    async def read_hero(hero_id: int, heroes: Heroes) -> str | None:
        hero = await heroes.get(hero_id)
        return hero.name if hero else None

    @app.get("/report")
    async def report(db: DatabaseDep) -> str:
        async with db.unit_of_work(name="report") as uow:
            return await server_text(await uow.session.connection())

    return app


@pytest_asyncio.fixture
async def client(tagged: Database) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=make_app(tagged))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def test_a_request_tags_its_route_template(
    client: httpx.AsyncClient, tagged: Database
) -> None:
    seen = (await client.get("/heroes/913791379/seen")).json()
    assert seen.endswith(f" {APP},route='%2Fheroes%2F%7Bhero_id%7D%2Fseen'*/")
    assert "913791379" not in seen  # the template, never the URL
    report = (await client.get("/report")).json()
    assert report.endswith(f" {APP},route='%2Freport',unit_of_work='report'*/")
    # The route is the request's only: the test's own statements carry none.
    async with tagged.session() as session:
        assert (await server_text(await session.connection())).endswith(f" {APP}*/")


async def test_a_route_keeps_one_statement_text(
    client: httpx.AsyncClient, tagged: Database
) -> None:
    with sent(tagged) as statements:
        for hero_id in (1, 2, 3):
            assert (await client.get(f"/heroes/{hero_id}")).status_code == 200
    selects = {s for s in statements if s.startswith("SELECT")}
    assert len(selects) == 1
    assert selects.pop().endswith(f" {APP},route='%2Fheroes%2F%7Bhero_id%7D'*/")
    if tagged.backend == "postgresql":  # and asyncpg prepared it once
        async with tagged.session() as session:
            runs = await session.exec(  # type: ignore[call-overload]
                text(
                    "SELECT generic_plans + custom_plans FROM pg_prepared_statements "
                    "WHERE statement LIKE :pattern"
                ),
                params={"pattern": "SELECT hr_hero.id%route=%"},
            )
            assert runs.scalars().all() == [3]


# --- PgBouncer -----------------------------------------------------------------------------------


@pytest.mark.postgres
async def test_tags_pass_through_pgbouncer(
    pgbouncer: PgBouncer, throwaway_postgres: PostgresServer
) -> None:
    throwaway_postgres.ensure_running()
    config = EngineConfig(pgbouncer=True, query_tags=QueryTags(application="herorepo-tests"))
    async with Database(pgbouncer.url, config) as db:

        async def work(number: int) -> list[str]:
            seen = []
            for _ in range(5):
                async with db.unit_of_work(name="bounced") as uow:
                    seen.append(await server_text(await uow.session.connection()))
            return seen

        # 10 clients on PgBouncer's 2 server connections; every statement has a unique name.
        seen = [s for texts in await asyncio.gather(*(work(n) for n in range(10))) for s in texts]
    assert len(seen) == 50
    assert all(s.endswith(f" {APP},unit_of_work='bounced'*/") for s in seen)
