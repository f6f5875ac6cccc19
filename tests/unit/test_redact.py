"""Driver messages of shapes the integration tests cannot easily provoke lose their values."""

from __future__ import annotations

import pytest

from herorepo._redact import HIDDEN, hide_values

MARK = "Mx-Secret-9137"


@pytest.mark.parametrize(
    ("errno", "message", "kept"),
    [
        (1062, f"Duplicate entry '{MARK}' for key 'uq_name'", "for key 'uq_name'"),
        # a value that holds a quote and the words that follow values
        (1062, f"Duplicate entry '{MARK}' for key 'x' at line 1' for key 'k'", "for key 'k'"),
        (1062, f"Duplicate entry '{MARK}-7' for key 'hr_hero.uq'", "for key 'hr_hero.uq'"),
        (1366, f"Incorrect integer value: '{MARK}' for column `t`.`hr_hero`.`age` at row 1", "age"),
        (1292, f"Truncated incorrect DOUBLE value: '{MARK}'", "Truncated incorrect DOUBLE"),
        (1064, f"You have an error in your SQL syntax; near '{MARK}')' at line 1", "at line 1"),
        (1644, f"custom error for '{MARK}' raised by a trigger", "custom error for"),
    ],
)
def test_mysql_messages_lose_their_values(errno: int, message: str, kept: str) -> None:
    error = Exception(errno, message)
    hide_values("mysql", error, None)
    assert error.args[0] == errno
    assert MARK not in error.args[1]
    assert HIDDEN in error.args[1]
    assert kept in error.args[1]


@pytest.mark.parametrize(
    ("errno", "message"),
    [
        (1054, "Unknown column 'nope' in 'field list'"),
        (1452, "Cannot add or update a child row: a foreign key constraint fails (...)"),
        (1406, "Data too long for column 'name' at row 1"),
    ],
)
def test_mysql_messages_without_values_are_kept(errno: int, message: str) -> None:
    error = Exception(errno, message)
    hide_values("mysql", error, None)
    assert error.args == (errno, message)


class FakeAsyncpgError(Exception):
    """The fields asyncpg's exceptions carry."""

    def __init__(self, message: str, sqlstate: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.detail = detail
        self.context: str | None = None
        self.constraint_name = "uq_name"


@pytest.mark.parametrize(
    ("sqlstate", "message"),
    [
        ("22P02", f'invalid input syntax for type integer: "{MARK}"'),
        ("22003", f'value "{MARK}" is out of range for type integer'),
        ("22021", 'invalid byte sequence for encoding "UTF8": 0xe2 0x28'),
    ],
)
def test_postgres_data_exceptions_lose_the_value(sqlstate: str, message: str) -> None:
    error = FakeAsyncpgError(message, sqlstate)
    hide_values("postgresql", error, None)
    assert MARK not in str(error)
    assert "0xe2" not in str(error)
    assert HIDDEN in str(error)


def test_postgres_details_and_context_are_hidden_and_names_kept() -> None:
    error = FakeAsyncpgError("duplicate key value", "23505", detail=f"Key (name)=({MARK})")
    error.context = f"COPY hr_hero, line 1, column name: {MARK!r}"
    hide_values("postgresql", error, None)
    assert str(error) == "duplicate key value"  # the message names no value
    assert MARK not in str(error.detail) + str(error.context)
    assert error.constraint_name == "uq_name"
    assert error.sqlstate == "23505"


def test_hiding_twice_changes_nothing_more() -> None:
    error = Exception(1062, f"Duplicate entry '{MARK}' for key 'k'")
    hide_values("mysql", error, None)
    once = error.args
    hide_values("mysql", error, None)
    assert error.args == once


def test_sqlite_messages_are_kept() -> None:
    error = Exception("UNIQUE constraint failed: hr_team.name")
    hide_values("sqlite", error, None)
    assert error.args == ("UNIQUE constraint failed: hr_team.name",)


def test_sqlalchemys_wrapper_is_made_again_from_the_hidden_text() -> None:
    from sqlalchemy.exc import DBAPIError

    error = Exception(1644, f"refused '{MARK}'")
    wrapper = DBAPIError.instance("CALL p(%s)", (MARK,), error, Exception, hide_parameters=True)
    assert MARK in str(wrapper)  # SQLAlchemy copied the driver's text when it made it
    hide_values("mysql", error, wrapper)
    assert MARK not in str(wrapper)
    assert str(wrapper).startswith("(builtins.Exception) (1644, \"refused '<hidden>'")
