"""Connect to one of several MariaDB / MySQL nodes: a Galera cluster's, or a server and its spare.

aiomysql connects to one host. For a URL that lists several (see :mod:`herorepo._hosts`), the
engine gets a :class:`NodeConnector` as its ``async_creator``: each new connection tries the
nodes in turn and keeps the first that is usable. A node is passed over when it refuses the
connection, does not answer within the connect timeout, or is a Galera node that is not ready
(``wsrep_ready`` OFF, or ``wsrep_local_state_comment`` not ``Synced``: joining, a donor, or
cut off from the primary component). A server without Galera (``wsrep_on`` OFF or missing) is
usable as soon as it answers.

Where a connection starts (``load_balance_hosts``):

* ``round-robin`` (the default): at the node after the one the previous connection of this
  engine started at, the first start chosen at random. A pool's connections spread evenly over
  the nodes (at random, five connections over three nodes often put three on one), and many
  processes started at once do not all start at the first node.
* ``disable``: always at the first listed node, the others only while it is down: one node
  takes every write, so rows written from several processes never conflict at certification.

Writes of one hot row from several nodes conflict at COMMIT (MySQL error 1213, a
:class:`~herorepo.DeadlockError`, retried by :meth:`Database.run <herorepo.Database.run>`);
on one node they wait for the row lock instead.
"""

from __future__ import annotations

import asyncio
import importlib
import random
import weakref
from collections.abc import Generator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._errors import CannotConnectError

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Dialect

__all__ = ["NODE_TIMEOUT", "Node", "NodeConnector", "node_of", "preferring"]

NODE_TIMEOUT = 10.0
"""Seconds one node may take to connect and answer, unless ``connect_timeout`` says otherwise."""

# Driver errors of a login that the node turned down: another node would turn it down too,
# and the error is raised as it is (a refused CannotConnectError, never retried).
_REFUSED = frozenset({1044, 1045, 1049, 1698})
_UNREACHABLE = frozenset({2003, 2005, 2006, 2013})


@dataclass(frozen=True)
class Node:
    """The node a connection was made to, and its Galera identity (``wsrep_gcomm_uuid``, new at
    each start of the node; None when it is not a Galera node)."""

    host: str
    port: int
    galera_id: str | None = None

    def same_server(self, other: Node | None) -> bool:
        return other is not None and (self.host, self.port) == (other.host, other.port)


# The node of each connection a NodeConnector made (keyed by the driver's connection).
_NODES: weakref.WeakKeyDictionary[Any, Node] = weakref.WeakKeyDictionary()
# The node a task wants its next connections to try first (see preferring()).
_PREFERRED: ContextVar[Node | None] = ContextVar("herorepo_preferred_node", default=None)


def node_of(driver_connection: Any) -> Node | None:
    """The node of a connection made through a list of nodes; None for a URL with one host."""
    try:
        return _NODES.get(driver_connection)
    except TypeError:  # not weakly referenceable: not one of ours
        return None


@contextmanager
def preferring(node: Node | None) -> Generator[None]:
    """Let new connections of this task try ``node`` first (asking it about a lost COMMIT)."""
    token = _PREFERRED.set(node)
    try:
        yield
    finally:
        _PREFERRED.reset(token)


class NodeConnector:
    """The ``async_creator`` of an engine whose MariaDB / MySQL URL lists several nodes.

    Args:
        url: The engine's URL, with the nodes in its ``host`` parameter.
        nodes: The ``(host, port)`` pairs, in the URL's order.
        connect_args: The engine's extra arguments for ``aiomysql.connect()``.
    """

    def __init__(
        self, url: URL, nodes: list[tuple[str, int]], connect_args: Mapping[str, Any]
    ) -> None:
        self.nodes = nodes
        self.url = url.difference_update_query(["host", "load_balance_hosts"])
        self.connect_args = dict(connect_args)
        self.rotate = url.query.get("load_balance_hosts", "round-robin") == "round-robin"
        self._start = random.randrange(len(nodes)) if self.rotate else 0
        self.dialect: Dialect | None = None  # set once the engine exists

    def order(self) -> list[tuple[str, int]]:
        """The nodes in the order the next connection tries them."""
        start = self._start
        if self.rotate:
            self._start = (start + 1) % len(self.nodes)
        ordered = self.nodes[start:] + self.nodes[:start]
        preferred = _PREFERRED.get()
        if preferred is not None and (preferred.host, preferred.port) in ordered:
            ordered.remove((preferred.host, preferred.port))
            ordered.insert(0, (preferred.host, preferred.port))
        return ordered

    async def __call__(self) -> Any:
        """Connect to the first usable node, in :meth:`order`.

        Raises:
            CannotConnectError: no node is usable; the message says why, node by node.
        """
        failures: list[str] = []
        refused: BaseException | None = None
        for host, port in self.order():
            try:
                return await self._connect(host, port)
            except _NotUsable as error:
                failures.append(f"{host}:{port} {error}")
            except (OSError, asyncio.TimeoutError) as error:
                reason = "no answer" if isinstance(error, asyncio.TimeoutError) else error.strerror
                failures.append(f"{host}:{port} could not be reached ({reason or 'error'})")
            except Exception as error:  # a driver error, such as 2003: nothing answered
                code = _code(error)
                if code in _REFUSED and refused is None:
                    refused = error
                what = (
                    "refused the login"
                    if code in _REFUSED
                    else "could not be reached"
                    if code in _UNREACHABLE
                    else "failed"
                )
                failures.append(f"{host}:{port} {what} ({_describe(error, code)})")
        if refused is not None:
            raise refused
        raise CannotConnectError(
            f"None of the URL's {len(self.nodes)} nodes could be used: {'; '.join(failures)}. "
            "A Galera node that is joining, a donor, or cut off from the cluster is passed over "
            "until it is Synced again."
        )

    async def _connect(self, host: str, port: int) -> Any:
        aiomysql: Any = importlib.import_module("aiomysql")  # resolve_url checked it is there
        assert self.dialect is not None, "the engine sets the dialect before connecting"
        cargs, cparams = self.dialect.create_connect_args(self.url.set(host=host, port=port))
        params = {**cparams, **self.connect_args}
        timeout = float(params.get("connect_timeout") or NODE_TIMEOUT)
        connection = await asyncio.wait_for(aiomysql.connect(*cargs, **params), timeout)
        try:
            reason, galera_id = await asyncio.wait_for(_not_ready(connection), timeout)
        except BaseException:
            connection.close()
            raise
        if reason is not None:
            connection.close()
            raise _NotUsable(reason)
        _NODES[connection] = Node(host, port, galera_id)
        return connection


class _NotUsable(Exception):
    pass


async def _not_ready(connection: Any) -> tuple[str | None, str | None]:
    """Why a node that answered cannot take work (a Galera node out of sync), else None; and
    its Galera identity."""
    async with connection.cursor() as cursor:
        await cursor.execute("SHOW GLOBAL VARIABLES LIKE 'wsrep_on'")
        row = await cursor.fetchone()
        if row is None or str(row[1]).upper() != "ON":
            return None, None  # not a Galera node
        await cursor.execute(
            "SHOW GLOBAL STATUS WHERE Variable_name IN "
            "('wsrep_ready', 'wsrep_local_state_comment', 'wsrep_gcomm_uuid')"
        )
        status = {str(name).lower(): str(value) for name, value in await cursor.fetchall()}
    galera_id = status.get("wsrep_gcomm_uuid") or None
    if status.get("wsrep_ready", "").upper() != "ON":
        return "is a Galera node that is not ready (wsrep_ready OFF)", galera_id
    state = status.get("wsrep_local_state_comment", "")
    if state != "Synced":
        return f"is a Galera node that is not Synced ({state or 'no state'})", galera_id
    return None, galera_id


def _code(error: BaseException) -> int | None:
    args: tuple[object, ...] = getattr(error, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def _describe(error: BaseException, code: int | None) -> str:
    return f"MySQL error {code}" if code is not None else type(error).__name__
