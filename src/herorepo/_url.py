"""Turn what a user pastes as a database URL into the async URL herorepo runs on.

Only the three supported async drivers pass: aiosqlite, asyncpg and aiomysql. Plain forms
(``postgresql://``, ``postgres://``, ``mysql://``, ``mariadb://``, ``sqlite:///``) get the async
driver; any other driver is refused with the right form named. No message here ever shows a
password: a URL is rendered with :func:`redact` before it is printed.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Literal

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from ._errors import ConfigurationError
from ._hosts import libpq_host_list, with_hosts

Backend = Literal["sqlite", "postgresql", "mysql"]


@dataclass(frozen=True)
class _Driver:
    backend: Backend
    module: str
    extra: str
    example: str


_DRIVERS: dict[Backend, _Driver] = {
    "sqlite": _Driver("sqlite", "aiosqlite", "aiosqlite", "sqlite+aiosqlite:///path/to/file.db"),
    "postgresql": _Driver(
        "postgresql", "asyncpg", "asyncpg", "postgresql+asyncpg://user:password@host:5432/dbname"
    ),
    "mysql": _Driver(
        "mysql", "aiomysql", "aiomysql", "mysql+aiomysql://user:password@host:3306/dbname"
    ),
}

# Dialect names a user may write, and the backend each one means.
_DIALECTS: dict[str, Backend] = {
    "sqlite": "sqlite",
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
}


def redact(url: URL) -> str:
    """Render a URL with its password replaced by ``***`` (a ``password=`` parameter's too).

    A host list reads as written (``host=db-1:5432``), not percent-encoded.
    """
    hidden = "password" in url.query
    if hidden:
        url = url.difference_update_query(["password"])
    text = url.render_as_string(hide_password=True)
    if hidden:
        text += f"{'&' if '?' in text else '?'}password=***"
    base, mark, query = text.partition("?")
    return base + mark + query.replace("%3A", ":").replace("%2C", ",")


def parse_url(url: str | URL) -> URL:
    """Parse ``url`` into a SQLAlchemy URL, or raise a :class:`ConfigurationError` that hides it."""
    if isinstance(url, URL):
        return url
    given: object = url  # checked at runtime too: untyped callers pass None from os.environ
    if not isinstance(given, str) or not given.strip():
        raise ConfigurationError(
            "The database URL is empty. Give one such as "
            f"{_DRIVERS['postgresql'].example!r} or 'sqlite+aiosqlite:///:memory:'."
        )
    try:
        parsed = make_url(libpq_host_list(url.strip()) or url.strip())
    except (ArgumentError, ValueError):
        # The text may hold a password, so it is neither shown nor chained.
        raise ConfigurationError(
            "Could not parse the database URL (not shown, as it may contain a password). "
            "Expected a form such as "
            f"{_DRIVERS['postgresql'].example!r}, {_DRIVERS['mysql'].example!r} or "
            f"{_DRIVERS['sqlite'].example!r}."
        ) from None
    return _with_at_signs_in_password(parsed)


def _with_at_signs_in_password(parsed: URL) -> URL:
    """Read ``user:p@ss@host`` as the password ``p@ss``, not as the host ``ss@host``.

    SQLAlchemy splits at the first ``@``; a host name never holds one, so the part of the "host"
    up to its last ``@`` belongs to the password (which a URL should write ``%40``), or, with no
    password, to the user name (``app@tenant@host``, as some hosted databases name users).
    """
    host = parsed.host or ""
    if "@" not in host:
        return parsed
    rest, _, real_host = host.rpartition("@")
    if parsed.password is not None:
        return parsed.set(password=f"{parsed.password}@{rest}", host=real_host)
    return parsed.set(username=f"{parsed.username or ''}@{rest}", host=real_host)


def resolve_url(url: str | URL, *, target_session_attrs: str = "read-write") -> tuple[URL, Backend]:
    """Return the async form of ``url`` and its backend, refusing unsupported drivers.

    A PostgreSQL or MariaDB / MySQL URL may list several hosts (see :mod:`herorepo._hosts`); a
    PostgreSQL one then gets ``target_session_attrs`` unless it sets it.

    Raises:
        ConfigurationError: the URL does not parse, names an unsupported database or driver, lists
            hosts wrongly, or the driver package is not installed.
    """
    parsed = parse_url(url)
    dialect, _, driver = parsed.drivername.partition("+")
    backend = _DIALECTS.get(dialect.lower())
    if backend is None:
        supported = ", ".join(d.example.partition(":")[0] for d in _DRIVERS.values())
        raise ConfigurationError(
            f"herorepo does not support the database {dialect!r} in {redact(parsed)!r}. "
            f"Supported: {supported}."
        )
    expected = _DRIVERS[backend]
    if driver and driver.lower() != expected.module:
        raise ConfigurationError(
            f"The driver {driver!r} in {redact(parsed)!r} is not supported: herorepo runs on the "
            f"async driver {expected.module}. Write the URL as {expected.example!r} "
            f"(install it with: pip install 'herorepo[{expected.extra}]')."
        )
    target = "mariadb" if dialect.lower() == "mariadb" else expected.backend
    parsed = parsed.set(drivername=f"{target}+{expected.module}")
    parsed = with_hosts(parsed, backend, target_session_attrs=target_session_attrs)
    if importlib.util.find_spec(expected.module) is None:
        raise ConfigurationError(
            f"The {expected.module} driver for {redact(parsed)!r} is not installed. "
            f"Install it with: pip install 'herorepo[{expected.extra}]'."
        )
    return parsed, backend


def is_sqlite_memory(url: URL) -> bool:
    """Whether ``url`` is a private in-memory SQLite database (one connection holds it)."""
    return (url.database or "") in ("", ":memory:")
