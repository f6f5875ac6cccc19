"""No values in the whole traceback of a herorepo error, chained driver exceptions included.

The message of a herorepo error never shows a value (test_error_values.py); its ``__cause__`` is
the driver's exception, whose text quotes them on PostgreSQL and MariaDB ("Key (name)=(...)
already exists", "Duplicate entry '...'"). With ``show_values_in_errors=False`` (the default)
the formatted traceback, ``__cause__`` and ``__context__`` chains and all, shows none; with
``True`` it shows what the driver says.
"""

from __future__ import annotations

import traceback
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import pytest
import pytest_asyncio
from sqlalchemy import text

from herorepo import (
    CheckViolationError,
    Database,
    ForeignKeyViolationError,
    HeroRepoError,
    InvalidDataError,
    NotNullViolationError,
    TransactionError,
    UniqueViolationError,
)

from ..models import Hero

pytestmark = pytest.mark.asyncio

MARK = "Mx-Secret-9137"
NUMBER = 913_791_379
HUGE = 9_137_913_791_379_137_913_791  # beyond 64 bits: refused by every backend


@dataclass(frozen=True)
class Case:
    sql: str | dict[str, str]  # one statement, or one per backend ("" where it cannot fail)
    value: object
    error: type[HeroRepoError]
    shown_by: frozenset[str]  # backends whose driver quotes the value in its messages

    def statement(self, backend: str) -> str:
        return self.sql if isinstance(self.sql, str) else self.sql.get(backend, "")


SERVERS = frozenset({"postgresql", "mysql"})

CASES = {
    # hr_team.name is unique; the first row is inserted before (see failure()).
    "unique": Case(
        "INSERT INTO hr_team (name, headquarters) VALUES (:v, '')",
        MARK,
        UniqueViolationError,
        SERVERS,
    ),
    "foreign_key": Case(
        "INSERT INTO hr_hero (name, secret_name, team_id) VALUES ('a', 'b', :v)",
        NUMBER,
        ForeignKeyViolationError,
        frozenset({"postgresql"}),  # Key (team_id)=(...) is not present in table "hr_team"
    ),
    "not_null": Case(
        "INSERT INTO hr_hero (name, secret_name) VALUES (:v, NULL)",
        MARK,
        NotNullViolationError,
        frozenset({"postgresql"}),  # Failing row contains (...)
    ),
    "check": Case(
        "INSERT INTO hr_hero (name, secret_name, age) VALUES (:v, 'b', -1)",
        MARK,
        CheckViolationError,
        frozenset({"postgresql"}),  # Failing row contains (...)
    ),
    # SQLite does not enforce VARCHAR lengths (repositories check them: test_error_values.py).
    "too_long": Case(
        {
            "postgresql": "INSERT INTO hr_hero (name, secret_name) VALUES (:v, 'b')",
            "mysql": "INSERT INTO hr_hero (name, secret_name) VALUES (:v, 'b')",
        },
        MARK * 10,
        InvalidDataError,
        frozenset(),  # neither quotes a value that is too long
    ),
    "out_of_range": Case(
        "INSERT INTO hr_hero (name, secret_name, age) VALUES ('a', 'b', :v)",
        HUGE,
        InvalidDataError,
        frozenset({"postgresql"}),  # asyncpg: invalid input for query argument $1: 9137...
    ),
    # PostgreSQL checks it on the server: value "..." is out of range for type integer.
    "out_of_range_on_the_server": Case(
        {"postgresql": "SELECT CAST(CAST(:v AS TEXT) AS INTEGER)"},
        str(HUGE),
        InvalidDataError,
        frozenset({"postgresql"}),
    ),
    # An INTEGER PRIMARY KEY on SQLite refuses text (datatype mismatch); asyncpg refuses the
    # parameter before sending it; MariaDB: Incorrect integer value: '...'.
    "invalid_input": Case(
        "INSERT INTO hr_hero (id, name, secret_name) VALUES (:v, 'a', 'b')",
        MARK,
        InvalidDataError,
        SERVERS,
    ),
    "invalid_input_on_the_server": Case(
        {"postgresql": "SELECT CAST(CAST(:v AS TEXT) AS INTEGER)"},
        MARK,
        InvalidDataError,
        frozenset({"postgresql"}),  # invalid input syntax for type integer: "..."
    ),
}


@pytest_asyncio.fixture(params=[False, True], ids=["default", "show-values"])
async def database(request: pytest.FixtureRequest, db: Database) -> AsyncIterator[Database]:
    config = replace(db.config, show_values_in_errors=request.param)
    async with Database(db.url, config) as database:
        yield database


def formatted(error: BaseException) -> str:
    return "".join(traceback.format_exception(error))


async def failure(database: Database, case: Case) -> HeroRepoError:
    statement = case.statement(database.backend)
    if not statement:
        pytest.skip(f"{database.backend} does not refuse this value")
    if case.error is UniqueViolationError:
        async with database.unit_of_work() as uow:
            await (await uow.session.connection()).execute(text(statement), {"v": case.value})
    with pytest.raises(case.error) as caught:
        async with database.unit_of_work() as uow:
            await (await uow.session.connection()).execute(text(statement), {"v": case.value})
    return caught.value


@pytest.mark.parametrize("name", list(CASES))
async def test_the_traceback_shows_values_only_when_asked(database: Database, name: str) -> None:
    case = CASES[name]
    error = await failure(database, case)
    shown = database.config.show_values_in_errors and database.backend in case.shown_by
    assert (str(case.value) in formatted(error)) is shown, formatted(error)


async def test_the_cause_keeps_the_codes_and_names(database: Database) -> None:
    error = await failure(database, CASES["unique"])
    cause = error.__cause__
    assert cause is not None
    text_of_cause = formatted(cause)
    if database.backend == "postgresql":
        assert getattr(cause, "sqlstate", None) == "23505"
        native = cause.__cause__
        assert type(native).__name__ == "UniqueViolationError"  # asyncpg's own class
        assert getattr(native, "constraint_name", None) == "hr_team_name_key"
        assert getattr(native, "table_name", None) == "hr_team"
        assert 'unique constraint "hr_team_name_key"' in text_of_cause
        if not database.config.show_values_in_errors:
            assert "DETAIL:  <hidden>" in text_of_cause
    elif database.backend == "mysql":
        assert cause.args[0] == 1062
        assert "for key 'name'" in text_of_cause
    else:
        assert type(cause).__name__ == "IntegrityError"
        assert "UNIQUE constraint failed: hr_team.name" in text_of_cause
    if not database.config.show_values_in_errors and database.backend != "sqlite":
        assert "show_values_in_errors=True" in text_of_cause  # says how to see them


async def test_a_later_transaction_error_chains_the_hidden_failure(database: Database) -> None:
    statement = CASES["unique"].statement(database.backend)
    async with database.unit_of_work() as uow:
        await (await uow.session.connection()).execute(text(statement), {"v": MARK})
    with pytest.raises(TransactionError) as caught:
        async with database.unit_of_work() as uow:
            connection = await uow.session.connection()
            with pytest.raises(UniqueViolationError):
                await connection.execute(text(statement), {"v": MARK})
            await uow.repository(Hero).count()  # refused: the transaction failed
    shown = database.config.show_values_in_errors and database.backend != "sqlite"
    assert (MARK in formatted(caught.value)) is shown
