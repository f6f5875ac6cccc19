"""One rule for values in messages: none by default, all with ``show_values_in_errors=True``.

Values may be personal data, and messages end up in logs and API responses (docs/errors.md).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from herorepo import (
    Database,
    EngineConfig,
    HeroRepoError,
    InvalidDataError,
    NotFoundError,
    UniqueViolationError,
    UnitOfWork,
)

from ..models import Hero

pytestmark = pytest.mark.asyncio

MARK = "Mx-Secret-9137"
"""Every value below contains it; a message that shows a value shows it."""


@pytest_asyncio.fixture(params=[False, True], ids=["default", "show-values"])
async def database(request: pytest.FixtureRequest, db: Database) -> AsyncIterator[Database]:
    config = replace(db.config, show_values_in_errors=request.param)
    async with Database(db.url, config) as database:
        yield database


async def failure(database: Database, work: Callable[[UnitOfWork], Awaitable[object]]) -> str:
    """The message of what ``work`` raised, and its whole traceback text through SQLAlchemy."""
    with pytest.raises((HeroRepoError, DBAPIError)) as caught:
        async with database.unit_of_work() as uow:
            await work(uow)
    return str(caught.value)


def shown(database: Database) -> bool:
    return database.config.show_values_in_errors


async def test_a_value_refused_before_sql(database: Database) -> None:
    async def work(uow: UnitOfWork) -> None:
        await uow.repository(Hero).create({"name": f"{MARK}\x00", "secret_name": "s"})

    message = await failure(database, work)
    assert "Hero.name" in message
    assert "NUL" in message
    assert (MARK in message) is shown(database)


async def test_criteria_of_a_search_that_found_nothing(database: Database) -> None:
    async def work(uow: UnitOfWork) -> None:
        await uow.repository(Hero).find_one(name=MARK)

    message = await failure(database, work)
    assert "No Hero matches name=" in message
    assert (MARK in message) is shown(database)


async def test_a_key_that_is_not_there(database: Database) -> None:
    with pytest.raises(NotFoundError) as caught:
        async with database.unit_of_work() as uow:
            await uow.repository(Hero).get_one(913_791_379)
    assert caught.value.ident == 913_791_379  # for code, always
    assert ("913791379" in str(caught.value)) is shown(database)


async def test_a_value_the_server_refused_in_a_raw_statement(database: Database) -> None:
    # PostgreSQL and MySQL quote the refused value in their messages; SQLite cannot hold it.
    value: object = 2**70 if database.backend == "sqlite" else MARK
    mark = str(value)

    async def work(uow: UnitOfWork) -> None:
        await (await uow.session.connection()).execute(
            text("INSERT INTO hr_hero (name, secret_name, age) VALUES ('a', 'b', :age)"),
            {"age": value},
        )

    with pytest.raises(InvalidDataError) as caught:
        async with database.unit_of_work() as uow:
            await work(uow)
    assert "The database refused a value" in str(caught.value)
    if not shown(database):
        assert mark not in str(caught.value)


async def test_statement_errors_herorepo_does_not_name_hide_their_parameters(
    database: Database,
) -> None:
    async def work(uow: UnitOfWork) -> None:
        await (await uow.session.connection()).execute(
            text("SELECT no_such_column FROM hr_hero WHERE name = :name"), {"name": MARK}
        )

    message = await failure(database, work)
    assert "no_such_column" in message  # the statement itself is not a value
    assert (MARK in message) is shown(database)


async def test_a_unique_violation_names_the_constraint_not_the_value(database: Database) -> None:
    async with database.unit_of_work() as uow:
        await uow.repository(Hero).create({"name": "first", "secret_name": MARK})
    with pytest.raises(UniqueViolationError) as caught:
        async with database.unit_of_work() as uow:
            await (await uow.session.connection()).execute(
                text(
                    "INSERT INTO hr_hero (id, name, secret_name) SELECT id, name, :s FROM hr_hero"
                ),
                {"s": MARK},
            )
    assert MARK not in str(caught.value)


async def test_show_values_in_errors_must_be_a_bool() -> None:
    with pytest.raises(Exception, match="show_values_in_errors must be True or False"):
        EngineConfig(show_values_in_errors="yes")  # type: ignore[arg-type]
