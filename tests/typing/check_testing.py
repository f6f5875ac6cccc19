"""Inferred types of herorepo.testing's N+1 and worker-database helpers. Checked, never run."""

from sqlalchemy.engine import make_url
from typing_extensions import assert_type

from herorepo import Database
from herorepo.testing import QueryLog, assert_no_n_plus_one, statement_shape, worker_database


async def check_worker_database() -> None:
    async with worker_database("sqlite+aiosqlite:///tests.db", "gw0") as url:
        assert_type(url, str)
    async with worker_database(make_url("postgresql+asyncpg://app@localhost/test"), "gw1") as url:
        assert_type(url, str)


async def check_n_plus_one(db: Database) -> None:
    with assert_no_n_plus_one(db, max_repeats=1) as log:
        assert_type(log, QueryLog)
    with assert_no_n_plus_one(db.engine) as log:
        assert_type(log, QueryLog)
    assert_type(statement_shape("SELECT 1"), str)
