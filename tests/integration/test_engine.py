from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

from herorepo import (
    ConnectionLostError,
    Database,
    EngineConfig,
    PoolTimeoutError,
    Repository,
    UniqueViolationError,
)
from herorepo.testing import count_queries

from ..conftest import CONNECT_ARGS, backend_url, require
from ..models import Team, metadata

pytestmark = pytest.mark.asyncio


async def test_sessions_are_sqlmodel_async_sessions(db: Database) -> None:
    async with db.session() as session:
        assert isinstance(session, AsyncSession)
        session.add(Team(name="Avengers"))
        await session.commit()
        team = (await session.exec(select(Team))).one()
    assert team.name == "Avengers"  # expire_on_commit=False: still readable after commit


async def test_a_closed_session_cannot_be_reused_by_accident(db: Database) -> None:
    async with db.session() as session:
        pass
    with pytest.raises(Exception, match="permanently closed"):
        await session.exec(select(Team))


async def test_plain_url_reaches_the_server(backend: str) -> None:
    plain = (
        backend_url(backend)
        .replace("+asyncpg", "")
        .replace("+aiomysql", "")
        .replace("+aiosqlite", "")
    )
    async with Database(plain, connect_args=CONNECT_ARGS[backend]) as db:
        async with db.engine.connect() as connection:
            assert (await connection.execute(text("SELECT 1"))).scalar() == 1


async def test_context_manager_disposes_the_pool(backend: str) -> None:
    async with Database(backend_url(backend), connect_args=CONNECT_ARGS[backend]) as db:
        async with db.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        assert db.engine.pool.checkedin() == 1  # type: ignore[attr-defined]
    assert db.engine.pool.checkedin() == 0  # type: ignore[attr-defined]


async def test_pre_ping_replaces_sqlalchemys_own(db: Database) -> None:
    assert db.engine.pool._pre_ping is False  # it would ping on every checkout
    checks = db.engine.pool.dispatch.checkout
    assert bool(checks) is (db.backend != "sqlite")


def count_pings(db: Database, monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Record every pre-ping round trip of ``db``'s dialect."""
    dialect = db.engine.dialect
    pings: list[object] = []
    ping = dialect.do_ping

    def counting_ping(dbapi_connection: object) -> bool:
        pings.append(dbapi_connection)
        return ping(dbapi_connection)

    monkeypatch.setattr(dialect, "do_ping", counting_ping)
    return pings


async def test_checkout_pings_only_a_connection_idle_past_pool_ping_idle(
    server_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = EngineConfig(pool_size=1, max_overflow=0, pool_ping_idle=0.3)
    connect_args = CONNECT_ARGS[server_backend]
    async with Database(backend_url(server_backend), config, connect_args=connect_args) as db:
        pings = count_pings(db, monkeypatch)
        for _ in range(3):  # a fresh connection, then one idle for a moment: no round trip
            async with db.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        assert pings == []
        await asyncio.sleep(0.4)
        async with db.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        assert len(pings) == 1


async def test_pool_ping_idle_zero_pings_on_every_checkout(
    server_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = EngineConfig(pool_size=1, max_overflow=0, pool_ping_idle=0)
    connect_args = CONNECT_ARGS[server_backend]
    async with Database(backend_url(server_backend), config, connect_args=connect_args) as db:
        pings = count_pings(db, monkeypatch)
        for _ in range(4):
            async with db.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        assert len(pings) == 3  # every checkout but the first, of a fresh connection


async def _in_transaction(session: AsyncSession) -> bool:
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    return bool(raw.driver_connection.in_transaction)  # type: ignore[union-attr]


@pytest.mark.sqlite
async def test_sqlite_session_reads_send_no_begin(sqlite_path: Path) -> None:
    async with Database(f"sqlite:///{sqlite_path}") as db:
        await db.create_all(metadata)
        with count_queries(db) as queries:
            async with db.session() as session:
                assert await Repository(session, Team).count() == 0
                assert not await _in_transaction(session)
        assert queries.count == 1
        async with db.unit_of_work(read_only=True) as uow:  # one snapshot for all its reads
            await uow.repository(Team).count()
            assert await _in_transaction(uow.session)


@pytest.mark.sqlite
async def test_sqlite_session_begins_before_its_first_write(sqlite_path: Path) -> None:
    async with Database(f"sqlite:///{sqlite_path}") as db:
        await db.create_all(metadata)
        async with db.session() as session:
            await Repository(session, Team).count()
            await Repository(session, Team).create({"name": "Undone"})
            assert await _in_transaction(session)
            await session.rollback()
        async with db.session() as session:
            assert await Repository(session, Team).count() == 0
            async with session.begin_nested():  # BEGIN first: RELEASE must not commit
                await Repository(session, Team).create({"name": "Nested"})
            assert await _in_transaction(session)
            await session.rollback()
            assert await Repository(session, Team).count() == 0


@pytest.mark.sqlite
async def test_sqlite_begin_on_a_closed_connection_is_a_lost_connection(sqlite_path: Path) -> None:
    # A unit of work's BEGIN goes to aiosqlite directly (one thread hop); aiosqlite's
    # "no active connection" must still be a lost connection, replaced by the pool.
    async with Database(f"sqlite:///{sqlite_path}") as db:
        await db.create_all(metadata)
        async with db.session() as session:
            raw = await (await session.connection()).get_raw_connection()
            driver = raw.driver_connection
        await driver.close()  # the pooled connection dies while it waits in the pool
        with pytest.raises(ConnectionLostError):
            async with db.unit_of_work() as uow:
                await uow.repository(Team).count()
        async with db.unit_of_work() as uow:  # a new connection
            assert await uow.repository(Team).count() == 0


@pytest.mark.mysql
async def test_mysql_connections_use_utf8mb4() -> None:
    require("mysql")
    async with Database(backend_url("mysql"), connect_args=CONNECT_ARGS["mysql"]) as db:
        async with db.engine.connect() as connection:
            charset = (await connection.execute(text("SELECT @@character_set_connection"))).scalar()
        assert charset == "utf8mb4"
        assert db.engine.pool._recycle == 1800


async def test_sqlite_file_settings(sqlite_path: Path) -> None:
    config = EngineConfig(sqlite_busy_timeout=2.5)
    async with Database(f"sqlite:///{sqlite_path}", config) as db:
        async with db.engine.connect() as connection:
            fk = (await connection.execute(text("PRAGMA foreign_keys"))).scalar()
            mode = (await connection.execute(text("PRAGMA journal_mode"))).scalar()
            busy = (await connection.execute(text("PRAGMA busy_timeout"))).scalar()
    assert (fk, mode, busy) == (1, "wal", 2500)


async def test_sqlite_memory_is_shared_by_every_session_of_an_engine() -> None:
    async with Database("sqlite+aiosqlite:///:memory:") as db:
        await db.create_all(metadata)
        async with db.unit_of_work() as uow:
            await uow.repository(Team).create({"name": "Avengers"})
        async with db.session() as session:
            assert await Repository(session, Team).count() == 1
        async with db.engine.connect() as connection:
            fk = (await connection.execute(text("PRAGMA foreign_keys"))).scalar()
        assert fk == 1


async def test_units_of_work_on_the_memory_database_take_turns() -> None:
    async with Database("sqlite+aiosqlite:///:memory:") as db:
        await db.create_all(metadata)
        first_open, second_done = asyncio.Event(), asyncio.Event()

        async def first() -> None:
            async with db.unit_of_work() as uow:
                await uow.repository(Team).create({"name": "First"})
                first_open.set()
                await asyncio.sleep(0.2)
                assert not second_done.is_set()  # the second waits for the connection
                raise RuntimeError("roll the first one back")

        async def second() -> None:
            await first_open.wait()
            async with db.unit_of_work() as uow:
                await uow.repository(Team).create({"name": "Second"})
            second_done.set()

        results = await asyncio.gather(first(), second(), return_exceptions=True)
        assert isinstance(results[0], RuntimeError)
        assert results[1] is None
        async with db.session() as session:
            names = [t.name for t in await Repository(session, Team).list()]
        # Sharing one transaction, the first one's rollback would have taken "Second" with it.
        assert names == ["Second"]


async def test_a_session_inside_another_on_the_memory_database_says_why_it_waits() -> None:
    async with Database("sqlite+aiosqlite:///:memory:", EngineConfig(pool_timeout=0.2)) as db:
        await db.create_all(metadata)
        async with db.unit_of_work() as uow:
            await uow.session.connection()  # taken at the first statement
            with pytest.raises(PoolTimeoutError, match="in-memory SQLite database has a single"):
                async with db.session() as session:  # a unit of work would join instead
                    await session.connection()


async def test_create_all_and_drop_all_take_a_metadata(backend: str) -> None:
    from sqlalchemy import Column, Integer, MetaData, Table, inspect

    own = MetaData()
    Table("hr_scratch", own, Column("id", Integer, primary_key=True))
    async with Database(backend_url(backend), connect_args=CONNECT_ARGS[backend]) as db:
        await db.create_all(own)
        async with db.engine.connect() as connection:
            names = await connection.run_sync(lambda c: inspect(c).get_table_names())
        assert "hr_scratch" in names
        await db.drop_all(own)
        async with db.engine.connect() as connection:
            names = await connection.run_sync(lambda c: inspect(c).get_table_names())
        assert "hr_scratch" not in names
        assert "hr_team" in names  # other tables are left alone


async def test_create_all_defaults_to_every_sqlmodel_table() -> None:
    async with Database("sqlite://") as db:
        await db.create_all()
        async with db.engine.connect() as connection:
            names = set(
                (
                    await connection.execute(
                        text("SELECT name FROM sqlite_master WHERE type='table'")
                    )
                ).scalars()
            )
        assert set(SQLModel.metadata.tables) <= names
        await db.drop_all()


async def test_a_savepoint_on_the_memory_database() -> None:
    async with Database("sqlite://") as db:
        await db.create_all(metadata)
        async with db.unit_of_work() as uow:
            teams = uow.repository(Team)
            await teams.create({"name": "Avengers"})
            with pytest.raises(UniqueViolationError):
                async with uow.savepoint():
                    await teams.create({"name": "Avengers"})
            assert await teams.count() == 1
