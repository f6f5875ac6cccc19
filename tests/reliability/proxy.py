"""A fault-injecting TCP proxy for the commit-outcome tests: loopback only, asyncio.

It listens on a free port of 127.0.0.1 and forwards every connection to a database server,
reading the client's messages as it goes: PostgreSQL's frontend protocol (a simple ``Query`` or an
extended-protocol ``Parse`` whose SQL is ``COMMIT``) or MySQL's (a ``COM_QUERY`` packet whose
SQL is ``COMMIT``). Armed with :meth:`FaultProxy.arm`, it breaks the next COMMIT it sees:

* ``"after"``: forwards the COMMIT, cuts the client off at once, waits for the server's reply
  (so the server has committed) and throws it away. The server committed; the client never
  hears of it.
* ``"before"``: cuts the client off and closes the server side without forwarding the COMMIT.
  The server sees its client leave and rolls back.
* ``"hold"``: cuts the client off but keeps the server side open, COMMIT unsent, until the
  proxy closes: a half-open connection whose transaction stays "in progress" on the server
  until something ends it.

A COMMIT right after a ``SET`` is left alone: aiomysql sends one after its ``init_command``
while connecting. Every wait is bounded; :meth:`FaultProxy.close` ends every connection it forwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal

Mode = Literal["after", "before", "hold"]
Protocol = Literal["postgres", "mysql"]

_PG_UNTYPED = {80877103, 80877104}  # SSLRequest, GSSENCRequest: the startup packet comes next
_REPLY_WAIT = 10.0  # seconds the "after" mode waits for the server's reply to the COMMIT


@dataclass
class _Pair:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    tasks: list[asyncio.Task[None]] = field(default_factory=list[asyncio.Task[None]])


class FaultProxy:
    """Forward loopback connections to ``host:port``; break the next COMMIT when armed."""

    def __init__(self, host: str, port: int, protocol: Protocol) -> None:
        self.upstream = (host, port)
        self.protocol = protocol
        self.port = 0
        self.cuts: list[Mode] = []  # what was done, in order
        self._armed: Mode | None = None
        self.refuse_new = False  # refuse new connections, as an unreachable server would
        self._server: asyncio.Server | None = None
        self._pairs: list[_Pair] = []
        self._held: list[asyncio.StreamWriter] = []
        self._cutting: set[asyncio.StreamWriter] = set()  # server sides cut "after" COMMIT
        self.committed_reply = asyncio.Event()  # "after": the server answered the COMMIT

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def arm(self, mode: Mode) -> None:
        """Break the next COMMIT that any connection sends, in ``mode``."""
        self._armed = mode

    def disarm(self) -> None:
        self._armed = None

    @property
    def armed(self) -> bool:
        return self._armed is not None

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for pair in self._pairs:
            for task in pair.tasks:
                task.cancel()
            for writer in (pair.client, pair.server):
                writer.transport.abort()
        for writer in self._held:
            writer.transport.abort()
        for pair in self._pairs:
            for task in pair.tasks:
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(task, 5)
        if self._server is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- forwarding ---------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refuse_new:
            writer.transport.abort()
            return
        try:
            server_reader, server_writer = await asyncio.wait_for(
                asyncio.open_connection(*self.upstream), 10
            )
        except (OSError, asyncio.TimeoutError):
            writer.transport.abort()
            return
        pair = _Pair(writer, server_writer)
        self._pairs.append(pair)
        pair.tasks.append(asyncio.create_task(self._downstream(server_reader, pair)))
        pair.tasks.append(asyncio.create_task(self._upstream(reader, pair)))

    async def _downstream(self, server: asyncio.StreamReader, pair: _Pair) -> None:
        """Server to client: forwarded as is."""
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await server.read(65536):
                if pair.client.is_closing():
                    if pair.server in self._cutting:
                        self.committed_reply.set()  # the reply the client will never see
                    continue
                pair.client.write(data)
                await pair.client.drain()
        if not pair.client.is_closing():
            pair.client.close()

    async def _upstream(self, client: asyncio.StreamReader, pair: _Pair) -> None:
        """Client to server, message by message, watching for COMMIT."""
        read = self._pg_messages if self.protocol == "postgres" else self._mysql_packets
        after_work = False  # the last statement did something: not a SET of a connection's setup
        try:
            async for message, sql in read(client):
                is_commit = sql is not None and _is_commit(sql)
                # aiomysql sends COMMIT after its init_command while connecting: not ours.
                mode = self._armed if is_commit and after_work else None
                if sql is not None:
                    after_work = not is_commit and not sql.lstrip()[:4].upper().startswith(b"SET")
                if mode is None:
                    pair.server.write(message)
                    await pair.server.drain()
                    continue
                self._armed = None
                self.cuts.append(mode)
                await self._cut(pair, message, mode)
                return
        except (OSError, asyncio.IncompleteReadError):
            pass
        if not pair.server.is_closing():
            pair.server.close()

    async def _cut(self, pair: _Pair, commit: bytes, mode: Mode) -> None:
        if mode == "after":
            self._cutting.add(pair.server)
            pair.server.write(commit)
            await pair.server.drain()
            pair.client.transport.abort()
            # The reply proves the server committed; keep the server side until it comes.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.committed_reply.wait(), _REPLY_WAIT)
            pair.server.close()
        elif mode == "before":
            pair.client.transport.abort()
            pair.server.close()
        else:  # hold: the server keeps waiting for a COMMIT that never comes
            pair.client.transport.abort()
            self._held.append(pair.server)

    # --- the two protocols --------------------------------------------------------------------

    @staticmethod
    async def _pg_messages(
        reader: asyncio.StreamReader,
    ) -> AsyncIterator[tuple[bytes, bytes | None]]:
        """Each message, with its SQL if it carries one."""
        # Startup: untyped packets (length, code), an SSL or GSS request answered "N" first.
        while True:
            head = await reader.readexactly(8)
            length, code = struct.unpack("!ii", head)
            rest = await reader.readexactly(length - 8)
            yield head + rest, None
            if code not in _PG_UNTYPED:
                break
        while True:
            head = await reader.readexactly(5)
            kind = head[:1]
            (length,) = struct.unpack("!i", head[1:])
            body = await reader.readexactly(length - 4)
            sql = None
            if kind == b"Q":
                sql = body.rstrip(b"\x00")
            elif kind == b"P":  # Parse: statement name, then the query, NUL-terminated
                sql = body.partition(b"\x00")[2].partition(b"\x00")[0]
            yield head + body, sql

    @staticmethod
    async def _mysql_packets(
        reader: asyncio.StreamReader,
    ) -> AsyncIterator[tuple[bytes, bytes | None]]:
        """Each packet, with its SQL if it is a COM_QUERY."""
        while True:
            head = await reader.readexactly(4)
            length = head[0] | head[1] << 8 | head[2] << 16
            body = await reader.readexactly(length)
            yield head + body, body[1:] if body[:1] == b"\x03" else None


def _is_commit(sql: bytes) -> bool:
    return sql.strip().rstrip(b";").strip().upper() == b"COMMIT"
