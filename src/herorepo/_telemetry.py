"""``Telemetry``: OpenTelemetry spans and pool metrics for a :class:`~herorepo.Database`.

This module is what the rest of herorepo sees of telemetry, and it does not import
OpenTelemetry: a ``Database`` without ``telemetry=`` installs nothing and pays nothing, and
``import herorepo`` works without the ``otel`` extra. Building a :class:`Telemetry` imports
``opentelemetry-api``; a ``Database`` given one imports :mod:`herorepo._otel`, which builds the
spans and metrics and installs the hooks, on that database's engines and sessions only:

* the unit of work asks :func:`telemetry_of` at ``async with`` (a lookup in its sessionmaker's
  ``info``, ``None`` for a database without telemetry);
* engine and pool events for statements and connections, on each engine of the database
  (replicas included), as the slow-statement log does;
* repository calls: the public coroutine methods of ``Repository`` are wrapped once per
  process, when the first database with tracing is built (see :mod:`herorepo._otel`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider
    from sqlalchemy.ext.asyncio import async_sessionmaker
    from sqlmodel.ext.asyncio.session import AsyncSession

    from ._otel import Instrumentation

__all__ = ["TELEMETRY_KEY", "Telemetry", "instrument", "telemetry_of"]

TELEMETRY_KEY = "herorepo_telemetry"
"""Key of a database's :class:`~herorepo._otel.Instrumentation` in its sessions' ``info``
(present only when that database traces)."""

_MISSING = (
    'Telemetry needs the OpenTelemetry API: pip install "herorepo[otel]" (and an SDK, such as '
    "opentelemetry-sdk, to export what it records)."
)


@dataclass(frozen=True, kw_only=True)
class Telemetry:
    """OpenTelemetry spans and metrics for a database: ``Database(url, telemetry=Telemetry())``.

    Spans: one per unit of work (``unit_of_work transfer``, with its outcome and attempt), one
    per repository call (``Hero.get``) and one per SQL statement (``SELECT hero``, a ``CLIENT``
    span), each with the database semantic-convention attributes (``db.system.name``,
    ``db.namespace``, ``db.operation.name``, ``db.collection.name``, ``server.address``,
    ``server.port``). Never the statements' parameters. Metrics: the
    ``db.client.connection.*`` pool metrics of every engine of the database, replicas included,
    and ``db.client.operation.duration`` per statement. docs/observability.md lists them all.

    Requires the ``otel`` extra (``pip install "herorepo[otel]"``): the OpenTelemetry API.
    Without an SDK configured, the spans and metrics go nowhere, at a small cost.

    Args:
        tracer_provider: Where spans go; the global one (``opentelemetry.trace``'s) when
            omitted. A ``NoOpTracerProvider`` turns tracing off: no span hooks are installed.
        meter_provider: Where metrics go; the global one when omitted. A ``NoOpMeterProvider``
            turns metrics off: no pool hooks are installed.
        query_text: Put each statement's SQL in ``db.query.text`` (with its placeholders:
            parameter values are never recorded). Off by default: SQL that embeds literals
            would carry them.

    Raises:
        ConfigurationError: the OpenTelemetry API is not installed, or a provider is not one.

    .. versionadded:: 0.1.0
    """

    tracer_provider: TracerProvider | None = None
    meter_provider: MeterProvider | None = None
    query_text: bool = False

    def __post_init__(self) -> None:
        try:
            from opentelemetry import metrics, trace
        except ImportError:
            raise ConfigurationError(_MISSING) from None
        if not isinstance(self.query_text, bool):
            raise ConfigurationError(f"query_text must be True or False, got {self.query_text!r}.")
        checks: tuple[tuple[str, object, type], ...] = (
            ("tracer_provider", self.tracer_provider, trace.TracerProvider),
            ("meter_provider", self.meter_provider, metrics.MeterProvider),
        )
        for name, value, kind in checks:
            if value is not None and not isinstance(value, kind):
                raise ConfigurationError(
                    f"{name} must be an OpenTelemetry {kind.__name__} (or None for the global "
                    f"one), got a {type(value).__name__}."
                )


def instrument(telemetry: Telemetry, session_info: dict[str, object]) -> Instrumentation:
    """Start ``telemetry`` for one database; its sessions get ``session_info``."""
    if not isinstance(telemetry, Telemetry):
        raise ConfigurationError(
            f"telemetry must be a Telemetry(...), got a {type(telemetry).__name__}."
        )
    from ._otel import Instrumentation

    instrumentation = Instrumentation(telemetry)
    if instrumentation.tracing:
        session_info[TELEMETRY_KEY] = instrumentation
    return instrumentation


def telemetry_of(sessionmaker: async_sessionmaker[AsyncSession]) -> Instrumentation | None:
    """The instrumentation that traces the units of work of ``sessionmaker``, if any."""
    info: Mapping[str, object] | None = sessionmaker.kw.get("info")
    if not info:
        return None
    found: Any = info.get(TELEMETRY_KEY)
    return found  # type: ignore[no-any-return]  # only instrument() puts it there
