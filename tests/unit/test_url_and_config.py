"""URL resolution and engine settings: no database needed."""

from __future__ import annotations

import sys

import pytest
from sqlalchemy.engine import make_url

from herorepo import ConfigurationError, Database, EngineConfig
from herorepo._url import resolve_url


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u:p@h:5432/d", "postgresql+asyncpg://u:***@h:5432/d"),
        ("postgres://u:p@h/d", "postgresql+asyncpg://u:***@h/d"),
        ("postgresql+asyncpg://u@h/d", "postgresql+asyncpg://u@h/d"),
        ("mysql://root@h:3306/d", "mysql+aiomysql://root@h:3306/d"),
        ("mariadb://root@h/d", "mariadb+aiomysql://root@h/d"),
        ("mysql+aiomysql://root@h/d", "mysql+aiomysql://root@h/d"),
        ("sqlite:///./app.db", "sqlite+aiosqlite:///./app.db"),
        ("sqlite://", "sqlite+aiosqlite://"),
        ("sqlite+aiosqlite:///:memory:", "sqlite+aiosqlite:///:memory:"),
    ],
)
def test_plain_urls_get_their_async_driver(given: str, expected: str) -> None:
    url, _ = resolve_url(given)
    assert url == make_url(expected.replace("***", "p"))


@pytest.mark.parametrize(
    ("given", "names"),
    [
        ("postgresql+psycopg2://u:pw@h/d", ("psycopg2", "postgresql+asyncpg://")),
        ("postgresql+psycopg://u:pw@h/d", ("psycopg", "postgresql+asyncpg://")),
        ("mysql+pymysql://u:pw@h/d", ("pymysql", "mysql+aiomysql://")),
        ("mysql+asyncmy://u:pw@h/d", ("asyncmy", "mysql+aiomysql://")),
        ("sqlite+pysqlite:///x.db", ("pysqlite", "sqlite+aiosqlite://")),
    ],
)
def test_other_drivers_are_refused_with_the_right_form(given: str, names: tuple[str, str]) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Database(given)
    message = str(caught.value)
    for name in names:
        assert name in message
    assert "pw" not in message


def test_unsupported_database_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="does not support the database 'oracle'"):
        Database("oracle://scott:tiger@h/d")


@pytest.mark.parametrize(
    "garbage", ["nonsense", "://secret-password@", "postgresql://u:p@h:notaport/d"]
)
def test_unparseable_url_is_a_configuration_error_without_the_url(garbage: str) -> None:
    with pytest.raises(ConfigurationError, match="Could not parse") as caught:
        Database(garbage)
    assert garbage not in str(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_empty_url_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="empty"):
        Database("  ")


@pytest.mark.parametrize(
    ("url", "module", "extra"),
    [
        ("postgresql://u:topsecret@h/d", "asyncpg", "herorepo[asyncpg]"),
        ("mysql://u:topsecret@h/d", "aiomysql", "herorepo[aiomysql]"),
        ("sqlite:///x.db", "aiosqlite", "herorepo[aiosqlite]"),
    ],
)
def test_missing_driver_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, url: str, module: str, extra: str
) -> None:
    # A None entry in sys.modules is how Python itself marks a module as not importable.
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(
        ConfigurationError, match=f"pip install '{extra.replace('[', '.').replace(']', '.')}'"
    ):
        Database(url)
    with pytest.raises(ConfigurationError) as caught:
        Database(url)
    assert "topsecret" not in str(caught.value)


def test_password_never_in_repr_or_messages() -> None:
    db = Database("postgresql://app:hunter2@db.example:5432/app")
    assert "hunter2" not in repr(db)
    assert "hunter2" not in db.safe_url
    assert "hunter2" not in repr(db.engine.url)
    assert db.backend == "postgresql"
    with pytest.raises(ConfigurationError) as caught:
        Database("postgresql+psycopg2://app:hunter2@db/app")
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize("password", ["p@ss", "p@ss@word", "@start", "end@"])
def test_an_unencoded_at_sign_stays_in_the_password(password: str) -> None:
    db = Database(f"postgresql+asyncpg://app:{password}@db.example:5433/app")
    assert (db.url.password, db.url.host, db.url.port) == (password, "db.example", 5433)
    assert repr(db) == "Database('postgresql+asyncpg://app:***@db.example:5433/app')"
    assert password not in db.safe_url
    tenant = Database("postgresql+asyncpg://app@tenant@db.example/app")
    assert (tenant.url.username, tenant.url.host) == ("app@tenant", "db.example")


def test_from_env_reads_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "sqlite+aiosqlite:///:memory:")
    assert Database.from_env().backend == "sqlite"
    monkeypatch.setenv("OTHER_URL", "postgres://u@h/d")
    assert Database.from_env("OTHER_URL").backend == "postgresql"


def test_from_env_without_the_variable_says_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(ConfigurationError, match="DATABASE_URL is not set"):
        Database.from_env()
    assert Database.from_env(default="sqlite://").backend == "sqlite"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("pool_size", 0),
        ("pool_size", True),
        ("pool_size", "5"),
        ("max_overflow", -1),
        ("pool_recycle", -2),
        ("pool_timeout", 0),
        ("pool_timeout", float("nan")),
        ("pool_pre_ping", "yes"),
        ("sqlite_busy_timeout", -1.0),
        ("pool_ping_idle", -1),
        ("pool_ping_idle", float("inf")),
    ],
)
def test_engine_config_rejects_bad_values(field: str, value: object) -> None:
    with pytest.raises(ConfigurationError, match=field):
        EngineConfig(**{field: value})  # type: ignore[arg-type]


def test_engine_config_defaults_per_backend() -> None:
    config = EngineConfig()
    assert config.resolved("postgresql")["pool_pre_ping"] is True
    assert config.resolved("mysql")["pool_pre_ping"] is True
    assert config.resolved("sqlite")["pool_pre_ping"] is False
    assert config.resolved("mysql")["pool_recycle"] == 1800
    assert config.resolved("postgresql")["pool_recycle"] == -1
    custom = EngineConfig(pool_size=2, pool_recycle=60, pool_pre_ping=False)
    assert custom.resolved("mysql") == {
        "pool_size": 2,
        "max_overflow": 10,
        "pool_timeout": 30.0,
        "pool_recycle": 60,
        "pool_pre_ping": False,
    }


def test_engine_gets_the_pool_settings() -> None:
    db = Database("postgresql://u@h/d", EngineConfig(pool_size=3, max_overflow=1, pool_timeout=2))
    pool = db.engine.pool
    assert pool.size() == 3  # type: ignore[attr-defined]
    assert pool._max_overflow == 1  # type: ignore[attr-defined]
    assert pool._timeout == 2  # type: ignore[attr-defined]
    assert pool._pre_ping is False  # herorepo checks connections itself (see _engine)
    assert pool.dispatch.checkout
    mysql = Database("mysql://root@h/d")
    assert mysql.engine.pool._recycle == 1800
    assert mysql.engine.url.query["charset"] == "utf8mb4"


def test_a_url_sqlalchemy_refuses_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="Invalid SQLite URL"):
        Database("sqlite+aiosqlite://localhost/app.db")
