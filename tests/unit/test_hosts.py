"""URLs that list several hosts (a PostgreSQL primary and its standbys, MariaDB Galera nodes): no
database needed."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from herorepo import ConfigurationError, Database, Replicas
from herorepo._nodes import Node, NodeConnector, preferring
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
        ("mysql://root@h/app?target_session_attrs=any", "PostgreSQL setting"),
        ("mysql://root@/app?host=a&host=b&target_session_attrs=any", "PostgreSQL setting"),
        ("mysql://root@/app?host=a&host=b&load_balance_hosts=random", "is not one of"),
        ("postgresql://app@/app?host=a&host=b&load_balance_hosts=disable", "MariaDB / MySQL"),
        ("mysql://root@/app?host=a&host=b&unix_socket=/run/mysqld.sock", "remove unix_socket"),
        ("mysql://root@n0/app?host=n1&host=n2", "host before its path"),
        ("mysql://root@/app?host=n1,n2&port=1,2,3", "2 hosts and 3 ports"),
        ("mysql://root@/app?host=n1:0&host=n2", "out of range"),
        ("mysql://root@/app?host=n-1:x&host=n-2", "not NAME or NAME:PORT"),
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


@pytest.mark.parametrize(
    "given",
    [
        "mysql://root:pw@/app?host=node-1:3306&host=node-2:3307",
        "mysql://root:pw@node-1:3306,node-2:3307/app",  # libpq's form, as for PostgreSQL
        "mariadb://root:pw@/app?host=node-1,node-2&port=3306,3307",
        "mysql+aiomysql://root:pw@/app?host=node-1:3306,node-2:3307",
    ],
)
def test_mariadb_nodes_are_written_one_way_without_target_session_attrs(given: str) -> None:
    url, backend = resolve_url(given)
    assert backend == "mysql"
    assert url.host is None
    assert url.query["host"] == ("node-1:3306", "node-2:3307")
    assert "target_session_attrs" not in url.query
    assert url.password == "pw"
    assert resolve_url(url)[0] == url


def test_a_mariadb_node_without_a_port_gets_3306() -> None:
    url, _ = resolve_url("mysql://root@/app?host=node-1&host=node-2:3307&host=node-3")
    assert url.query["host"] == ("node-1:3306", "node-2:3307", "node-3:3306")


def test_load_balance_hosts_is_kept_for_nodes_and_dropped_for_one_host() -> None:
    url, _ = resolve_url("mysql://root@/app?host=a&host=b&load_balance_hosts=disable")
    assert url.query["load_balance_hosts"] == "disable"
    url, _ = resolve_url("mysql://root@a:3306/app?load_balance_hosts=disable")
    assert "load_balance_hosts" not in url.query


def test_a_mariadb_node_list_hides_the_password() -> None:
    db = Database("mysql://root:topsecret@node-1:3306,node-2:3306/app?password=hush")
    shown = repr(db)
    assert "topsecret" not in shown
    assert "hush" not in shown
    assert "host=node-1:3306&host=node-2:3306" in shown


def test_the_node_connector_rotates_its_start_unless_disabled() -> None:
    db = Database("mysql://root@/app?host=a:1&host=b:2&host=c:3")
    nodes = [("a", 1), ("b", 2), ("c", 3)]
    rotating = NodeConnector(db.url, nodes, {})
    starts = [rotating.order()[0] for _ in range(6)]
    assert sorted(starts[:3]) == nodes  # each node starts a connection in turn
    assert starts[3:] == starts[:3]
    fixed = NodeConnector(db.url.update_query_dict({"load_balance_hosts": "disable"}), nodes, {})
    assert [fixed.order() for _ in range(2)] == [nodes, nodes]
    with preferring(Node("c", 3)):
        assert fixed.order() == [("c", 3), ("a", 1), ("b", 2)]
