"""The slow-statement log, on every backend: duration and SQL, never the parameters."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest
from sqlalchemy import text

from herorepo import ConfigurationError, Database, EngineConfig

pytestmark = pytest.mark.asyncio

SLOW = {
    "postgresql": "SELECT pg_sleep(0.6), :marker",
    "mysql": "SELECT SLEEP(0.6), :marker",
    # No sleep function in SQLite: count to a few million instead (0.6 s or more here).
    "sqlite": (
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000000) "
        "SELECT count(*), :marker FROM n"
    ),
}
MARKER = "Mx-Secret-5521"


async def test_slow_statements_are_logged_without_their_parameters(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    # Far from both statements, so that a loaded machine does not move one across it.
    config = replace(db.config, slow_statement=0.3)
    async with Database(db.url, config) as logged:
        with caplog.at_level(logging.WARNING, logger="herorepo.slow"):
            async with logged.unit_of_work() as uow:
                connection = await uow.session.connection()
                await connection.execute(text("SELECT 1"))  # fast: not logged
                await connection.execute(text(SLOW[logged.backend]), {"marker": MARKER})
    slow = [r for r in caplog.records if r.name == "herorepo.slow"]
    assert len(slow) == 1, [r.getMessage() for r in slow]
    message = slow[0].getMessage()
    assert message.startswith("Slow statement: ")
    assert "SELECT" in message
    assert "(threshold 0.300 s)" in message
    assert MARKER not in message  # parameters may be personal data


async def test_without_a_threshold_nothing_is_logged(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="herorepo.slow"):
        async with db.unit_of_work() as uow:
            connection = await uow.session.connection()
            await connection.execute(text(SLOW[db.backend]), {"marker": MARKER})
    assert not [r for r in caplog.records if r.name == "herorepo.slow"]


async def test_the_threshold_is_checked() -> None:
    for wrong in (-1, "1", float("nan")):
        with pytest.raises(ConfigurationError, match="slow_statement must be a number of seconds"):
            EngineConfig(slow_statement=wrong)  # type: ignore[arg-type]
