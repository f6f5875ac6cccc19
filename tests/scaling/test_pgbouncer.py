"""asyncpg through PgBouncer in transaction pooling mode, with and without the pgbouncer profile.

PgBouncer (Debian's package) runs on a free loopback port in front of the session's throw-away
PostgreSQL server, with 2 server connections for 10 concurrent clients, so consecutive
transactions of one client land on different server connections. Prepared statements that outlive
a transaction then break: the control run without ``EngineConfig(pgbouncer=True)`` shows it.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from sqlalchemy import delete, text

from herorepo import Database, EngineConfig, TenantScope

from ..models import Team, metadata
from ..servers import RLS_ROLE, PgBouncer, PostgresServer
from .conftest import Measured

pytestmark = [pytest.mark.asyncio, pytest.mark.postgres]

WORKERS = 10


def kind(exc: BaseException) -> str:
    """What went wrong, named after the driver's message where it is about prepared statements."""
    seen: BaseException | None = exc
    while seen is not None:
        message = str(seen)
        if "prepared statement" in message and "does not exist" in message:
            return "prepared statement does not exist"
        if "prepared statement" in message and "already exists" in message:
            return "prepared statement already exists"
        seen = seen.__cause__ or seen.__context__
    return type(exc).__name__


async def hammer(db: Database, operations_per_worker: int) -> tuple[int, Counter[str]]:
    """Run WORKERS concurrent loops of small units of work; count operations and failures."""
    errors: Counter[str] = Counter()
    done = 0

    async def worker(number: int) -> None:
        nonlocal done
        for i in range(operations_per_worker):
            try:
                async with db.unit_of_work() as uow:
                    teams = uow.repository(Team)
                    if i % 3 == 0:
                        await teams.create({"name": f"w{number}-{i}"})
                    elif i % 3 == 1:
                        await teams.count()
                    else:
                        await teams.list(limit=5)
                done += 1
            except Exception as exc:
                errors[kind(exc)] += 1

    await asyncio.gather(*(worker(n) for n in range(WORKERS)))
    return done, errors


@pytest_asyncio.fixture
async def bouncer(
    pgbouncer: PgBouncer, throwaway_postgres: PostgresServer
) -> AsyncIterator[PgBouncer]:
    throwaway_postgres.ensure_running()
    async with Database(throwaway_postgres.url) as direct:
        await direct.create_all(metadata)
        async with direct.engine.begin() as connection:
            for table in reversed(metadata.sorted_tables):
                await connection.execute(delete(table))
    yield pgbouncer


async def test_the_pgbouncer_profile_runs_thousands_of_operations_cleanly(
    bouncer: PgBouncer, throwaway_postgres: PostgresServer, measured: Measured
) -> None:
    per_worker = 300
    async with Database(bouncer.url, EngineConfig(pgbouncer=True)) as db:
        started = time.perf_counter()
        done, errors = await hammer(db, per_worker)
        elapsed = time.perf_counter() - started
        assert errors == Counter(), errors
        assert done == WORKERS * per_worker
        async with db.unit_of_work(read_only=True) as uow:
            assert await uow.repository(Team).count() == WORKERS * len(range(0, per_worker, 3))
        assert db.pool_stats().size == 0  # no client-side pool
    server = throwaway_postgres.psql("SHOW server_version").split()[0]
    measured(
        f"{PgBouncer.version()} (transaction pooling, 2 server connections) before PostgreSQL "
        f"{server}, `EngineConfig(pgbouncer=True)`",
        f"{done} units of work from {WORKERS} concurrent clients in {elapsed:.1f} s, 0 errors",
    )


async def test_without_the_profile_prepared_statements_break(
    bouncer: PgBouncer, measured: Measured
) -> None:
    # The failures need PgBouncer to hand a client's next transaction to another server
    # connection, which depends on timing: hammer in rounds until they show (nearly always in the
    # first round; a few rounds keep a quiet scheduler from hiding them).
    done, errors = 0, Counter[str]()
    async with Database(bouncer.url) as db:
        for _ in range(5):
            round_done, round_errors = await hammer(db, 60)
            done += round_done
            errors += round_errors
            if any("prepared statement" in name for name in errors):
                break
    prepared = {name: count for name, count in errors.items() if "prepared statement" in name}
    assert prepared, f"no prepared statement errors without the profile: {errors}"
    measured(
        "the same through PgBouncer with the default settings (control)",
        f"{sum(errors.values())} of {done + sum(errors.values())} units of work failed: "
        + ", ".join(f"{name}: {count}" for name, count in sorted(errors.items())),
    )


async def test_row_level_security_holds_through_transaction_pooling(
    bouncer: PgBouncer, throwaway_postgres: PostgresServer, measured: Measured
) -> None:
    # The tenant is set per transaction (set_config(..., true)): a server connection that served
    # one tenant's transaction serves the next client's with that client's tenant, never the
    # previous one. 10 clients of two tenants share 2 server connections.
    throwaway_postgres.psql(
        f"DO $$ BEGIN CREATE ROLE {RLS_ROLE} LOGIN; "
        "EXCEPTION WHEN duplicate_object THEN NULL; END $$;"
        f"GRANT SELECT ON hr_project TO {RLS_ROLE};"
        "ALTER TABLE hr_project ENABLE ROW LEVEL SECURITY;"
        "DROP POLICY IF EXISTS tenant_rows ON hr_project;"
        "CREATE POLICY tenant_rows ON hr_project "
        "USING (tenant_id = current_setting('herorepo.tenant', true));"
        "INSERT INTO hr_project (tenant_id, code, name) VALUES ('a', 'p', ''), ('b', 'p', '');",
        database="test",
    )
    seen: Counter[str] = Counter()
    url = bouncer.url.replace("/test", "/test_rls")
    scope = TenantScope(row_level_security=True)
    try:
        async with Database(url, EngineConfig(pgbouncer=True), policies=[scope]) as db:

            async def worker(number: int) -> None:
                for i in range(40):
                    mine = "ab"[(number + i) % 2]
                    async with db.unit_of_work(tenant=mine) as uow:
                        rows = await uow.session.exec(text("SELECT tenant_id FROM hr_project"))  # type: ignore[call-overload]
                        found = [row[0] for row in rows]
                    seen["right" if found == [mine] else f"wrong: {found} for {mine}"] += 1

            await asyncio.gather(*(worker(n) for n in range(WORKERS)))
    finally:
        throwaway_postgres.psql(
            "DROP POLICY IF EXISTS tenant_rows ON hr_project;"
            "ALTER TABLE hr_project DISABLE ROW LEVEL SECURITY;"
            f"REVOKE ALL ON hr_project FROM {RLS_ROLE};"
            "DELETE FROM hr_project;",
            database="test",
        )
    assert seen == Counter({"right": WORKERS * 40}), seen
    measured(
        "row-level security (`TenantScope(row_level_security=True)`) through the same PgBouncer",
        f"{WORKERS * 40} units of work of two tenants from {WORKERS} clients: each saw only its "
        "tenant's rows",
    )
