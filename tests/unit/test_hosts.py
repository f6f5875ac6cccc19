"""URLs that list several hosts (a PostgreSQL primary and its standbys): no database needed."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from herorepo import ConfigurationError, Database, Replicas
from herorepo._url import redact, resolve_url

TWO_HOSTS = ("db-1:5432", "db-2:5433")


@pytest.mark.parametrize(
    "given",
    [
        "postgresql://app:pw@/app?host=db-1:5432&host=db-2:5433",
        "postgresql://app:pw@db-1:5432,db-2:5433/app",  # libpq's form
        "postgresql://app:pw@/app?host=db-1,db-2&port=5432,5433",  # libpq's query form
        "postgresql+asyncpg://app:pw@/app?host=db-1:5432,db-2:5433",
    ],
)
def test_several_hosts_are_written_one_way_and_ask_for_a_primary(given: str) -> None:
    url, backend = resolve_url(given)
    assert backend == "postgresql"
    assert url.host is None
    assert url.query["host"] == TWO_HOSTS
    assert url.query["target_session_attrs"] == "read-write"
    assert url.password == "pw"
    assert resolve_url(url)[0] == url  # resolving again changes nothing


def test_a_host_without_a_port_gets_the_default_and_one_port_serves_all() -> None:
    url, _ = resolve_url("postgresql://app@/app?host=db-1&host=db-2:6000")
    assert url.query["host"] == ("db-1:5432", "db-2:6000")
    url, _ = resolve_url("postgresql://app@/app?host=db-1,db-2&port=6432")
    assert url.query["host"] == ("db-1:6432", "db-2:6432")


def test_a_url_with_one_host_is_left_as_it_was() -> None:
    for given in (
        "postgresql+asyncpg://app@db-1:5432/app",
        "postgresql+asyncpg://app@/app?host=/var/run/postgresql",  # a Unix socket directory
    ):
        assert resolve_url(given)[0] == make_url(given)


def test_the_url_may_ask_for_something_else_than_read_write() -> None:
    url, _ = resolve_url("postgresql://app@/app?host=a:1&host=b:2&target_session_attrs=primary")
    assert url.query["target_session_attrs"] == "primary"


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("postgresql://app@db-0/app?host=db-1&host=db-2", "host before its path"),
        ("postgresql://app@/app?host=db-1,db-2&port=1,2,3", "2 hosts and 3 ports"),
        ("postgresql://app@/app?host=db-1:x&host=db-2", "not NAME or NAME:PORT"),
        ("postgresql://app@/app?host=[::1]:5432&host=db-2", "IPv6"),
        ("postgresql://app@/app?host=a:70000&host=b", "out of range"),
        ("postgresql://app@/app?host=a&host=b&target_session_attrs=master", "is not one of"),
        ("mysql://root@/app?host=a:3306&host=b:3306", "supported on PostgreSQL"),
        ("mysql://root@h/app?target_session_attrs=any", "PostgreSQL setting"),
    ],
)
def test_malformed_host_lists_are_refused(given: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Database(given)


def test_a_host_list_and_a_password_parameter_are_shown_readably_and_hidden() -> None:
    db = Database("postgresql://app:topsecret@/app?host=db-1:5432&host=db-2:5432&password=hush")
    shown = repr(db)
    assert "topsecret" not in shown
    assert "hush" not in shown
    assert "host=db-1:5432&host=db-2:5432" in shown
    assert shown.endswith("password=***')")
    assert "hush" not in redact(db.url)


def test_replicas_with_several_hosts_prefer_a_standby() -> None:
    db = Database(
        "postgresql://app@/app?host=db-1:5432&host=db-2:5432",
        replicas=Replicas(["postgresql://app:pw@db-2:5432,db-1:5432/app"]),
    )
    replica = db.engines[1].url
    assert replica.query["host"] == ("db-2:5432", "db-1:5432")
    assert replica.query["target_session_attrs"] == "prefer-standby"
    assert db.url.query["target_session_attrs"] == "read-write"


def test_from_env_takes_a_host_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:s3cret@db-1:5432,db-2:5432/app")
    db = Database.from_env()
    assert db.url.query["host"] == ("db-1:5432", "db-2:5432")
    assert "s3cret" not in db.safe_url
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:s3cret@/app?host=db-1&host=db-2:x")
    with pytest.raises(ConfigurationError) as caught:
        Database.from_env()
    assert "s3cret" not in str(caught.value)
