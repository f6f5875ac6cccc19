"""The slow-statement log: statements that ran longer than ``EngineConfig(slow_statement)``.

Each goes to the ``herorepo.slow`` logger at WARNING with its duration and SQL text, never its
parameters (unless ``show_values_in_errors=True``: they may be personal data). The hooks are
installed only when a threshold is set: connection events put SQLAlchemy on a slower path for
every statement, which an engine without the log should not pay for.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

__all__ = ["install_slow_statement_log", "logger"]

logger = logging.getLogger("herorepo.slow")

_STARTED = "herorepo_statement_started"


def install_slow_statement_log(engine: Engine, threshold: float, *, show_values: bool) -> None:
    """Log the statements of ``engine`` that take longer than ``threshold`` seconds."""

    def before(
        _conn: Any, _cursor: Any, _sql: str, _params: Any, context: Any, _many: bool
    ) -> None:
        if context is not None:
            context.__dict__[_STARTED] = time.perf_counter()

    def after(_conn: Any, _cursor: Any, sql: str, params: Any, context: Any, _many: bool) -> None:
        started = context.__dict__.get(_STARTED) if context is not None else None
        if started is None:
            return
        elapsed = time.perf_counter() - started
        if elapsed < threshold:
            return
        statement = " ".join(sql.split())
        if len(statement) > 2000:
            statement = statement[:1997] + "..."
        shown = f" with parameters {params!r}" if show_values else ""
        logger.warning(
            "Slow statement: %.3f s (threshold %.3f s): %s%s", elapsed, threshold, statement, shown
        )

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
