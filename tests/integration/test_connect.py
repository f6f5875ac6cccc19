"""A connection that cannot be opened raises CannotConnectError, saying why, on every backend."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy.engine import make_url

from herorepo import CannotConnectError, ConnectionLostError, Database
from herorepo._translate import cannot_connect

from ..conftest import backend_url


async def open_and_use(url: str) -> None:
    async with Database(url) as db, db.unit_of_work() as uow:
        await uow.session.connection()


@pytest.mark.asyncio
async def test_a_refused_login_is_a_cannot_connect_error(server_backend: str) -> None:
    url = make_url(backend_url(server_backend))
    # PostgreSQL trusts every password here, so it is told about a user that does not exist.
    wrong = (
        url.set(username="herorepo_nobody", password="s3cret-pw")
        if server_backend == "postgres"
        else url.set(password="s3cret-pw")
    )
    with pytest.raises(CannotConnectError, match="refused the login") as caught:
        await open_and_use(wrong.render_as_string(hide_password=False))
    assert "s3cret-pw" not in str(caught.value)
    assert isinstance(caught.value, ConnectionLostError)


@pytest.mark.asyncio
async def test_an_unknown_database_is_a_cannot_connect_error(server_backend: str) -> None:
    url = make_url(backend_url(server_backend)).set(database="herorepo_no_such_database")
    with pytest.raises(CannotConnectError, match="does not exist on the server"):
        await open_and_use(url.render_as_string(hide_password=False))


@pytest.mark.asyncio
async def test_no_server_is_a_cannot_connect_error(server_backend: str) -> None:
    url = make_url(backend_url(server_backend)).set(port=1)
    with pytest.raises(CannotConnectError, match="Could not connect to the database server"):
        await open_and_use(url.render_as_string(hide_password=False))


def test_an_sqlite_file_that_cannot_be_opened_is_named() -> None:
    # Checked on the translation alone: a failed aiosqlite connect leaves its worker thread to
    # report to a closed event loop at the end of the run (an aiosqlite race, not ours).
    refused = cannot_connect("sqlite", sqlite3.OperationalError("unable to open database file"))
    assert isinstance(refused, CannotConnectError)
    assert "SQLite cannot open the database file" in str(refused)
    assert cannot_connect("sqlite", sqlite3.OperationalError("database is locked")) is None
