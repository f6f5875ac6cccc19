"""Inferred types of the telemetry API. Checked by mypy --strict and pyright; never run."""

from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.trace import TracerProvider
from typing_extensions import assert_type

from herorepo import Database, Telemetry

telemetry = Telemetry(tracer_provider=TracerProvider(), meter_provider=NoOpMeterProvider())
assert_type(telemetry, Telemetry)
assert_type(telemetry.query_text, bool)
assert_type(Telemetry(query_text=True), Telemetry)

db = Database("sqlite+aiosqlite:///app.db", telemetry=telemetry)
assert_type(db.telemetry, Telemetry | None)
assert_type(
    Database.from_env(default="sqlite+aiosqlite:///app.db", telemetry=Telemetry()), Database
)


def frozen(config: Telemetry) -> None:
    config.query_text = True  # type: ignore[misc]  # pyright: ignore[reportAttributeAccessIssue]
