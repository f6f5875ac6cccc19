"""Telemetry without a database: its arguments, and the OpenTelemetry import it needs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from herorepo import ConfigurationError, Database, Telemetry


def test_herorepo_without_telemetry_imports_no_opentelemetry() -> None:
    code = (
        "import sys, herorepo; herorepo.Database('sqlite+aiosqlite:///:memory:'); "
        "print('opentelemetry' in sys.modules, 'herorepo._otel' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False False"


def test_telemetry_without_the_extra_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(ConfigurationError, match=r'pip install "herorepo\[otel\]"'):
        Telemetry()


def test_telemetry_checks_its_arguments() -> None:
    with pytest.raises(ConfigurationError, match="tracer_provider"):
        Telemetry(tracer_provider=object())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="query_text"):
        Telemetry(query_text="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="Telemetry"):
        Database("sqlite+aiosqlite:///:memory:", telemetry=object())  # type: ignore[arg-type]
