"""The throw-away servers' skip rule (tests/servers.py): skipped for users, failed in CI."""

from __future__ import annotations

import pytest

from ..servers import free_port, skip_or_fail


@pytest.mark.parametrize("server", ["postgres", "mysql"])
def test_missing_server_binaries_skip_unless_the_backend_is_required(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEROREPO_REQUIRE_BACKENDS", "sqlite")
    with pytest.raises(pytest.skip.Exception, match=f"throw-away {server} server unavailable"):
        skip_or_fail(server, "initdb not found")
    monkeypatch.setenv("HEROREPO_REQUIRE_BACKENDS", f"sqlite, {server}")
    with pytest.raises(pytest.fail.Exception, match=f"HEROREPO_REQUIRE_BACKENDS lists {server}"):
        skip_or_fail(server, "initdb not found")


def test_missing_pgbouncer_skips_unless_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEROREPO_REQUIRE_BACKENDS", "sqlite,postgres,mysql")  # not about it
    monkeypatch.delenv("HEROREPO_REQUIRE_PGBOUNCER", raising=False)
    with pytest.raises(pytest.skip.Exception, match="pgbouncer not found"):
        skip_or_fail("pgbouncer", "pgbouncer not found")
    monkeypatch.setenv("HEROREPO_REQUIRE_PGBOUNCER", "1")
    with pytest.raises(pytest.fail.Exception, match="HEROREPO_REQUIRE_PGBOUNCER=1"):
        skip_or_fail("pgbouncer", "pgbouncer not found")


def test_free_port_is_on_loopback_and_unused() -> None:
    import socket

    port = free_port()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))
