"""Settings of replicas and of the PgBouncer profile that herorepo refuses, with no server."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.pool import NullPool

from herorepo import ConfigurationError, Database, EngineConfig, Replicas

REPLICA = "postgresql+asyncpg://app@127.0.0.1:1/app"


def test_the_pgbouncer_profile_is_for_postgresql_without_client_pool_settings() -> None:
    with pytest.raises(ConfigurationError, match="pool_size cannot be set with pgbouncer=True"):
        EngineConfig(pgbouncer=True, pool_size=5)
    with pytest.raises(ConfigurationError, match="pgbouncer=True is for PostgreSQL"):
        Database("sqlite+aiosqlite:///:memory:", EngineConfig(pgbouncer=True))
    with pytest.raises(ConfigurationError, match="must be True or False"):
        EngineConfig(pgbouncer="yes")  # type: ignore[arg-type]


def test_the_pgbouncer_profile_keeps_no_pool_and_no_statement_cache() -> None:
    db = Database(REPLICA, EngineConfig(pgbouncer=True))
    assert isinstance(db.engine.pool, NullPool)
    assert db.pool_stats().size == 0


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"urls": REPLICA}, "takes a list of URLs"),
        ({"urls": [REPLICA], "read_your_writes": "sometimes"}, "read_your_writes must be a"),
        ({"urls": [REPLICA], "read_your_writes": 0}, "read_your_writes must be a"),
        ({"urls": [REPLICA], "max_lag": -1}, "max_lag must be a number of seconds > 0"),
        ({"urls": [REPLICA], "timeout": float("inf")}, "timeout must be"),
    ],
)
def test_replica_settings_are_checked(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Replicas(**settings)


def test_replicas_are_for_postgresql() -> None:
    with pytest.raises(ConfigurationError, match="Read replicas are supported on PostgreSQL only"):
        Database("sqlite+aiosqlite:///:memory:", replicas=Replicas([REPLICA]))
    with pytest.raises(ConfigurationError, match="is not a PostgreSQL URL"):
        Database(REPLICA, replicas=Replicas(["mysql+aiomysql://root:pw@127.0.0.1/app"]))
    with pytest.raises(ConfigurationError, match="must be a Replicas"):
        Database(REPLICA, replicas=[REPLICA])  # type: ignore[arg-type]


def test_a_database_without_replicas_is_unchanged() -> None:
    db = Database(REPLICA)
    assert db.replicas is None
    assert db.engines == (db.engine,)
    assert repr(db) == f"Database({REPLICA!r})"
    with_replicas = Database(REPLICA, replicas=Replicas([REPLICA, REPLICA]))
    assert len(with_replicas.engines) == 3
    assert repr(with_replicas) == f"Database({REPLICA!r}, replicas=2)"
    assert with_replicas.pool_stats().size == 15


def test_replicas_never_show_a_password() -> None:
    secret = "postgresql+asyncpg://app:s3cret@127.0.0.1:1/app"
    replicas = Replicas([secret, "not a url"])
    assert "s3cret" not in repr(replicas)
    assert "app:***@127.0.0.1:1/app" in repr(replicas)
    with pytest.raises(ConfigurationError, match="got a list") as caught:
        Database(REPLICA, replicas=[secret])  # type: ignore[arg-type]
    assert "s3cret" not in str(caught.value)
