"""Counting the SQL statements a block runs, and finding the shapes it repeats (N+1 queries).

:mod:`herorepo.testing` exports these; its ``herorepo_no_n_plus_one`` marker uses
:func:`repeated_shapes` on the statements of a whole test.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Generator, Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from ._database import Database

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection


@dataclass
class QueryLog:
    """The SQL statements run inside :func:`count_queries`, transaction control left out.

    ``BEGIN``, ``START TRANSACTION``, ``COMMIT``, ``ROLLBACK``, ``SAVEPOINT``, ``RELEASE`` and
    SQLite's ``PRAGMA query_only`` are not counted: a unit of work adds them (at its first
    statement) whatever the code inside does.
    """

    statements: list[str] = field(default_factory=list[str])

    @property
    def count(self) -> int:
        """How many statements ran."""
        return len(self.statements)

    def __str__(self) -> str:
        lines = [
            f"{number}. {' '.join(sql.split())}" for number, sql in enumerate(self.statements, 1)
        ]
        return "\n".join(lines) or "(no statements)"


_TRANSACTION_CONTROL = re.compile(
    r"\s*(BEGIN|START\s+TRANSACTION|COMMIT|ROLLBACK|SAVEPOINT|RELEASE|PRAGMA\s+query_only)\b",
    re.IGNORECASE,
)


def sync_engine(target: Database | AsyncEngine) -> Any:
    return (target.engine if isinstance(target, Database) else target).sync_engine


@contextmanager
def count_queries(target: Database | AsyncEngine) -> Generator[QueryLog, None, None]:
    """Record the SQL statements that run on ``target``'s engine inside the block.

    ::

        with count_queries(db) as queries:
            team = await uow.repository(Team).get_one(team_id, load=[Team.heroes])
        assert queries.count == 2, queries  # the team, then its heroes

    Statements of every connection of the engine count, including other tasks' work.

    .. versionadded:: 0.1.0
    """
    log = QueryLog()
    engine = sync_engine(target)

    def record(
        conn: Connection,
        cursor: object,
        statement: str,
        parameters: object,
        context: object,
        executemany: bool,
    ) -> None:
        if not _TRANSACTION_CONTROL.match(statement):
            log.statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield log
    finally:
        event.remove(engine, "before_cursor_execute", record)


@contextmanager
def assert_max_queries(
    target: Database | AsyncEngine, limit: int
) -> Generator[QueryLog, None, None]:
    """Fail with the statements listed if the block runs more than ``limit`` SQL statements.

    ::

        with assert_max_queries(db, 2):  # an N+1 regression would run one SELECT per team
            await client.get("/teams/1")

    Raises:
        AssertionError: more than ``limit`` statements ran (and the block raised nothing else).

    .. versionadded:: 0.1.0
    """
    with count_queries(target) as log:
        yield log
    if log.count > limit:
        raise AssertionError(
            f"Expected at most {limit} SQL statement(s), but {log.count} ran:\n{log}"
        )


# Placeholders of one statement shape: $1 (asyncpg), ? (sqlite3), %s (aiomysql); a list of
# them (an expanded IN) counts as one, whatever its length.
_PLACEHOLDER = r"(?:\$\d+|\?|%s|%\(\w+\)s)"
_PLACEHOLDER_LIST = re.compile(rf"\(\s*{_PLACEHOLDER}(?:\s*,\s*{_PLACEHOLDER})*\s*\)")


def statement_shape(statement: str) -> str:
    """``statement`` with its parameters' places and lists of them made alike: two executions
    of one query with other values have the same shape."""
    shape = _PLACEHOLDER_LIST.sub("(...)", " ".join(statement.split()))
    return re.sub(r"\$\d+", "$n", shape)


@contextmanager
def assert_no_n_plus_one(
    target: Database | AsyncEngine, max_repeats: int = 3
) -> Generator[QueryLog, None, None]:
    """Fail if one statement shape runs more than ``max_repeats`` times inside the block.

    A query run once per row of an earlier query (an N+1: the team of each hero, read one by
    one) repeats one shape; ``load=[...]`` reads the same in one or two statements::

        with assert_no_n_plus_one(db):
            await client.get("/heroes/")

    Statements with other values but the same text (and lists of values of any length, as in
    ``IN (...)``) count as one shape.

    Raises:
        AssertionError: a shape ran more than ``max_repeats`` times (and the block raised
            nothing else); the message shows it and how often it ran.

    .. versionadded:: 0.1.0
    """
    max_repeats = check_max_repeats(max_repeats)
    with count_queries(target) as log:
        yield log
    repeated = repeated_shapes(log.statements, max_repeats)
    if repeated:
        shape, times = repeated[0]
        raise AssertionError(
            f"N+1: one statement ran {times} times (at most {max_repeats} allowed); load what "
            f"it reads with load=[...] in the first query instead:\n  {shape}\n"
            f"All {log.count} statements:\n{log}"
        )


def check_max_repeats(max_repeats: object) -> int:
    """``max_repeats`` if it is a whole number >= 1; checked as if untyped (markers take any)."""
    if isinstance(max_repeats, bool) or not isinstance(max_repeats, int) or max_repeats < 1:
        raise ValueError(f"max_repeats must be a whole number >= 1, got {max_repeats!r}.")
    return max_repeats


def repeated_shapes(statements: Iterable[str], max_repeats: int) -> list[tuple[str, int]]:
    """The shapes that ran more than ``max_repeats`` times, and how often: most often first."""
    shapes = Counter(statement_shape(statement) for statement in statements)
    return [(shape, times) for shape, times in shapes.most_common() if times > max_repeats]
