"""Several hosts in one database URL: a PostgreSQL primary that fails over to a standby, or
the nodes of a MariaDB Galera cluster.

::

    postgresql://app:secret@/app?host=db-1:5432&host=db-2:5432   (SQLAlchemy's form)
    postgresql://app:secret@db-1:5432,db-2:5432/app               (libpq's, rewritten to it)
    postgresql://app:secret@/app?host=db-1,db-2&port=5432,5432    (libpq's query form, too)
    mysql://app:secret@/app?host=node-1:3306&host=node-2:3306     (the same forms for MariaDB)

asyncpg tries the hosts in order on every new connection and keeps the first one that fits
``target_session_attrs``. Unless the URL says otherwise, herorepo asks for ``read-write`` on a
database's URL (a standby that has not been promoted refuses writes) and for ``prefer-standby``
on a replica's. aiomysql takes one host, so herorepo connects to MariaDB nodes itself
(:mod:`herorepo._nodes`); ``load_balance_hosts`` says where each new connection starts. A host
without a port gets the backend's default one: asyncpg needs every port spelled out. A URL
naming one host is left exactly as it was (a Unix socket directory included).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ._errors import CannotConnectError, ConfigurationError

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

    from ._url import Backend

__all__ = [
    "LOAD_BALANCE_HOSTS",
    "TARGET_SESSION_ATTRS",
    "libpq_host_list",
    "listed_hosts",
    "no_host_fits",
    "with_hosts",
]

TARGET_SESSION_ATTRS = ("any", "primary", "standby", "prefer-standby", "read-write", "read-only")
"""The values asyncpg (like libpq) takes for ``target_session_attrs``."""

LOAD_BALANCE_HOSTS = ("round-robin", "disable")
"""Where a new connection to a list of MariaDB nodes starts: at the node after the one the
previous connection started at (``round-robin``, the default), or always at the first
(``disable``: one node takes every write while it is up)."""

_DEFAULT_PORTS: dict[str, int] = {"postgresql": 5432, "mysql": 3306}
_HOST = re.compile(r"^([A-Za-z0-9_.-]+)(?::(\d{1,5}))?$")
# scheme://[userinfo@]host1[:port1],host2[:port2]...[/path][?query]: a comma in the host part.
_NETLOC_LIST = re.compile(
    r"^(?P<scheme>[A-Za-z0-9+.-]+://)(?P<user>[^/?#]*@)?(?P<hosts>[^/?#@]*,[^/?#@]*)(?P<rest>[/?].*)?$"
)
_FORM = "host=NAME:PORT&host=NAME:PORT (e.g. postgresql://app@/app?host=db-1:5432&host=db-2:5432)"


def libpq_host_list(url: str) -> str | None:
    """``scheme://user@h1:p1,h2:p2/db?x=y`` as ``scheme://user@/db?host=h1:p1&host=h2:p2&x=y``.

    None when ``url`` has no comma-separated host list. The result goes through the same checks
    as a URL written with ``host=`` parameters.
    """
    match = _NETLOC_LIST.match(url)
    if match is None:
        return None
    path, _, query = (match["rest"] or "/").partition("?")
    hosts = "&".join(f"host={host.strip()}" for host in match["hosts"].split(","))
    return f"{match['scheme']}{match['user'] or ''}{path}?{hosts}{'&' + query if query else ''}"


def with_hosts(url: URL, backend: Backend, *, target_session_attrs: str) -> URL:
    """``url`` with its list of hosts checked and written one way: ``host=NAME:PORT`` each.

    Args:
        url: A parsed URL of ``backend``.
        backend: The backend the URL is for.
        target_session_attrs: What a URL with several hosts asks of the one it connects to,
            unless it says itself.

    Raises:
        ConfigurationError: a host or port is malformed, the hosts are given two ways, there is
            a different number of hosts and ports, ``target_session_attrs`` is not a value asyncpg
            knows, ``load_balance_hosts`` is not one of :data:`LOAD_BALANCE_HOSTS` (or is given
            for PostgreSQL), or the backend cannot connect through a list of hosts.
    """
    attrs = url.query.get("target_session_attrs")
    if attrs is not None:
        if backend != "postgresql":
            raise ConfigurationError(
                "target_session_attrs is a PostgreSQL setting; remove it from the URL."
            )
        if attrs not in TARGET_SESSION_ATTRS:
            raise ConfigurationError(
                f"target_session_attrs={attrs!r} is not one of {', '.join(TARGET_SESSION_ATTRS)}."
            )
    balance = url.query.get("load_balance_hosts")
    if balance is not None:
        if backend != "mysql":
            raise ConfigurationError(
                "load_balance_hosts is a setting of a list of MariaDB / MySQL nodes; remove it "
                "from the URL."
            )
        if balance not in LOAD_BALANCE_HOSTS:
            raise ConfigurationError(
                f"load_balance_hosts={balance!r} is not one of {', '.join(LOAD_BALANCE_HOSTS)}."
            )
    hosts = _listed(url, backend)
    if hosts is None:
        # One node: nothing to balance, and the driver would not know the parameter.
        return url if balance is None else url.difference_update_query(["load_balance_hosts"])
    if backend == "sqlite":
        raise ConfigurationError(
            "A URL with several hosts is supported on PostgreSQL and MariaDB / MySQL; this one "
            "is sqlite. Give one database file."
        )
    if backend == "mysql" and "unix_socket" in url.query:
        raise ConfigurationError(
            "A URL that lists several MariaDB / MySQL nodes connects over TCP; remove "
            "unix_socket from it."
        )
    query = {name: value for name, value in url.query.items() if name not in ("host", "port")}
    query["host"] = tuple(f"{host}:{port}" for host, port in hosts)
    if backend == "postgresql":
        query.setdefault("target_session_attrs", target_session_attrs)
    return url.set(query=query)


def listed_hosts(url: URL) -> list[tuple[str, int]] | None:
    """The ``(host, port)`` pairs of a URL :func:`with_hosts` wrote; None for one host."""
    raw = url.query.get("host")
    if raw is None or isinstance(raw, str):
        return None
    pairs = [item.rpartition(":") for item in raw]
    return [(host, int(port)) for host, _, port in pairs]


def _listed(url: URL, backend: Backend) -> list[tuple[str, int]] | None:
    """The ``(host, port)`` pairs of a URL that lists several hosts; None for one host."""
    raw = url.query.get("host")
    items = [] if raw is None else [raw] if isinstance(raw, str) else list(raw)
    names = [part.strip() for item in items for part in item.split(",")]
    if len(names) < 2:
        return None  # one host, or a socket directory: as SQLAlchemy and the driver read it
    if url.host or url.port:
        raise ConfigurationError(
            "The URL names a host before its path and more hosts in its query; write every "
            f"host in the query: {_FORM}."
        )
    given = url.query.get("port")
    port_items = [] if given is None else [given] if isinstance(given, str) else list(given)
    ports = [part.strip() for item in port_items for part in item.split(",")]
    if len(ports) == 1:
        ports *= len(names)  # libpq: one port for every host
    if ports and len(ports) != len(names):
        raise ConfigurationError(
            f"The URL lists {len(names)} hosts and {len(ports)} ports; give one port per host, "
            f"or write them as {_FORM}."
        )
    hosts: list[tuple[str, int]] = []
    for index, name in enumerate(names):
        match = _HOST.match(name)
        port_text = ports[index] if ports else ""
        if match is None or (match[2] and port_text) or not (port_text or "0").isdigit():
            raise ConfigurationError(
                f"The host {name!r} in the URL's host list is not NAME or NAME:PORT (an IPv6 "
                f"address cannot be listed; use a host name). Write the hosts as {_FORM}."
            )
        port = int(match[2] or port_text or _DEFAULT_PORTS[backend])
        if not 0 < port < 65536:
            raise ConfigurationError(f"The port {port} of host {match[1]!r} is out of range.")
        hosts.append((match[1], port))
    return hosts


def no_host_fits(exc: BaseException) -> CannotConnectError | None:
    """The error for asyncpg's "none of the hosts match the target attribute", else None.

    Every host answered, and none is what ``target_session_attrs`` asks for: in a failover, the
    old primary is already a standby (or fenced) and the new one is not promoted yet.
    """
    if type(exc).__name__ != "TargetServerAttributeNotMatched":
        return None
    return CannotConnectError(
        "None of the URL's hosts is what target_session_attrs asks for (a primary that accepts "
        f"writes, by default): {exc}. During a failover this lasts until a standby is promoted."
    )
