"""Read replicas: read-only units of work go to a healthy replica that has the caller's writes.

Routing, for a :class:`~herorepo.Database` built with ``replicas=Replicas([...])``:

* ``db.unit_of_work(read_only=True)`` runs on a replica, in a ``READ ONLY`` transaction;
  everything else (a unit of work that may write or lock, ``db.session()``, ``db.run()``, DDL)
  runs on the primary. A read-only unit of work that falls back to the primary is ``READ ONLY``
  there too, so a write or a ``FOR UPDATE`` in it fails the same way wherever it runs. A
  ``SERIALIZABLE`` one runs on the primary: a hot standby does not offer that level.
* Read-your-writes: when a unit of work that may write commits, herorepo notes the primary's WAL
  position (``pg_current_wal_insert_lsn()``, read right after the commit) in a context variable,
  so the current task, and tasks it starts afterwards, read from the primary until a replica has
  replayed past it (``pg_last_wal_replay_lsn()``). With ``read_your_writes=SECONDS`` they read from
  the primary for that long instead, with no extra query.
* Health: each replica is checked at most every ``check_interval`` seconds (one query, bounded by
  ``timeout``). One that cannot be reached is skipped for ``retry_after`` seconds; one further
  behind than ``max_lag`` seconds, or no longer in recovery, is skipped until a check finds it fit
  again. Each change is logged on the ``herorepo`` logger, with the password hidden. With no
  usable replica, reads go to the primary.

PostgreSQL only: the lag check and the WAL positions are PostgreSQL's.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
from collections import deque
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import KW_ONLY, dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import text

from ._errors import ConfigurationError, ConnectionLostError
from ._unit_of_work import UnitOfWork
from ._url import parse_url, redact

if TYPE_CHECKING:
    from sqlalchemy.engine import URL
    from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
    from sqlmodel.ext.asyncio.session import AsyncSession
    from typing_extensions import Self

    from ._unit_of_work import IsolationLevel

__all__ = ["Replicas"]

logger = logging.getLogger("herorepo")


@dataclass(frozen=True)
class Replicas:
    """Read replicas of a PostgreSQL primary, and how reads are routed to them.

    ::

        db = Database(
            "postgresql://app@primary/app",
            replicas=Replicas(["postgresql://app@replica1/app", "postgresql://app@replica2/app"]),
        )
        async with db.unit_of_work(read_only=True) as uow:  # a replica, or the primary
            ...

    Args:
        urls: The replicas' URLs (streaming replicas of the primary).
        read_your_writes: ``"lsn"``: after a commit, the same task reads from the primary until a
            replica has replayed past the commit. A number of seconds: it reads from the primary
            for that long, with no extra query.
        max_lag: A replica further behind than this many seconds is skipped.
        check_interval: Seconds between two health checks of a replica.
        retry_after: Seconds a replica that could not be reached is skipped.
        timeout: Seconds a health check, or a connection to a replica, may take.

    Raises:
        ConfigurationError: a value has the wrong type or is out of range.

    .. versionadded:: 0.1.0
    """

    urls: Sequence[str | URL]
    _: KW_ONLY
    read_your_writes: Literal["lsn"] | float = "lsn"
    max_lag: float = 10.0
    check_interval: float = 1.0
    retry_after: float = 10.0
    timeout: float = 2.0

    def __repr__(self) -> str:
        # The dataclass repr would print each URL with its password.
        urls = ", ".join(repr(_safe(url)) for url in self.urls)
        return (
            f"Replicas([{urls}], read_your_writes={self.read_your_writes!r}, "
            f"max_lag={self.max_lag!r}, check_interval={self.check_interval!r}, "
            f"retry_after={self.retry_after!r}, timeout={self.timeout!r})"
        )

    def __post_init__(self) -> None:
        given: object = self.urls
        if isinstance(given, str) or not isinstance(given, Sequence):
            raise ConfigurationError(
                "Replicas takes a list of URLs, e.g. Replicas(['postgresql://app@replica/app'])."
            )
        object.__setattr__(self, "urls", tuple(given))
        if self.read_your_writes != "lsn":
            _check_seconds("read_your_writes", self.read_your_writes, hint=' or "lsn"')
        for name in ("max_lag", "check_interval", "retry_after", "timeout"):
            _check_seconds(name, getattr(self, name))


def _safe(url: str | URL) -> str:
    """``url`` with its password hidden, or a placeholder when it does not parse."""
    try:
        return redact(parse_url(url))
    except ConfigurationError:
        return "<a URL that does not parse>"


def _check_seconds(name: str, value: object, *, hint: str = "") -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigurationError(f"{name} must be a number of seconds > 0{hint}, got {value!r}.")


def parse_lsn(value: str) -> int:
    """``'16/B374D848'`` -> an integer that orders as the WAL position does."""
    high, _, low = value.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


@dataclass(frozen=True)
class _Write:
    """What the current context wrote last: the WAL position, or a time until which it reads
    from the primary (while the position is being read, or in window mode)."""

    lsn: int | None
    until: float | None


# The last write of the current context, per router: set where a unit of work commits (the
# caller's task), copied into the tasks it starts. It carries no session.
_writes: ContextVar[Mapping[int, _Write] | None] = ContextVar("herorepo_writes", default=None)
_keys = itertools.count()

_HEALTH = text(
    "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text, "
    "EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float"
)
_REPLAYED = text("SELECT pg_last_wal_replay_lsn()::text")
_INSERTED = text("SELECT pg_current_wal_insert_lsn()::text")
_WRITTEN = text("SELECT pg_current_wal_lsn()::text")
_IN_FLIGHT_WAIT = 0.02  # WAL streamed a moment ago is usually replayed this soon


class Replica:
    """One replica: its engine, and what the last health check found."""

    def __init__(self, engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]):
        self.engine = engine
        self.sessionmaker = sessionmaker
        self.state = "unchecked"  # "usable", "down", "lagging", "not a replica"
        self.lag: float | None = None
        self.replayed = -1
        self.next_check = 0.0

    @property
    def safe_url(self) -> str:
        return redact(self.engine.url)


class Router:
    """Picks the engine of each unit of work and tracks the current context's last write."""

    def __init__(
        self,
        primary: async_sessionmaker[AsyncSession],
        primary_engine: AsyncEngine,
        replicas: Sequence[Replica],
        settings: Replicas,
    ) -> None:
        self.primary = primary
        self.primary_engine = primary_engine
        self.replicas = tuple(replicas)
        self.settings = settings
        self._key = next(_keys)
        self._turn = itertools.count()
        # (time, primary WAL position) seen at health checks, to tell how old a replay position is
        self._samples: deque[tuple[float, int]] = deque(maxlen=512)

    # --- read-your-writes ----------------------------------------------------------------------

    def last_write(self) -> _Write | None:
        return (_writes.get() or {}).get(self._key)

    def _remember(self, write: _Write) -> None:
        _writes.set({**(_writes.get() or {}), self._key: write})

    def writing(self) -> None:
        """A commit is about to run: read from the primary until its position is known."""
        previous = self.last_write()
        window = self.settings.read_your_writes
        seconds = self.settings.max_lag if window == "lsn" else window
        self._remember(_Write(previous.lsn if previous else None, time.monotonic() + seconds))

    async def written(self) -> None:
        """A commit succeeded: note the primary's WAL position (or restart the window)."""
        window = self.settings.read_your_writes
        if window != "lsn":
            self._remember(_Write(None, time.monotonic() + window))
            return
        try:
            row = await asyncio.wait_for(self._primary_query(_INSERTED), self.settings.timeout)
            lsn = parse_lsn(str(row[0]))
        except Exception as exc:  # the commit stands; reads stay on the primary for max_lag
            logger.warning(
                "herorepo: could not read the primary's WAL position after a commit (%s); "
                "reads of this task go to the primary for %g s",
                type(exc).__name__,
                self.settings.max_lag,
            )
            return
        self._remember(_Write(lsn, None))

    # --- routing -------------------------------------------------------------------------------

    async def choose(self, skip: Replica | None = None) -> Replica | None:
        """A replica fit for a read-only unit of work of this context, or None: the primary."""
        last = self.last_write()
        now = time.monotonic()
        if last is not None and last.until is not None and now < last.until:
            return None
        start = next(self._turn)
        count = len(self.replicas)
        for offset in range(count):
            replica = self.replicas[(start + offset) % count]
            if replica is skip or not await self._usable(replica):
                continue
            if last is not None and last.lsn is not None and replica.replayed < last.lsn:
                try:
                    await self._read_replayed(replica)
                except Exception as exc:
                    self.down(replica, exc)
                    continue
                if replica.replayed < last.lsn:
                    continue
            return replica
        return None

    async def _usable(self, replica: Replica) -> bool:
        now = time.monotonic()
        if now >= replica.next_check:
            replica.next_check = now + self.settings.check_interval  # one check at a time
            await self._check(replica)
        return replica.state == "usable"

    async def _check(self, replica: Replica) -> None:
        primary = await self._primary_position()
        try:
            row = await asyncio.wait_for(self._query(replica, _HEALTH), self.settings.timeout)
            in_recovery, replayed, since_commit = row
            if not in_recovery:
                self._set(replica, "not a replica", "it is not in recovery (promoted?); skipped")
                return
            replica.replayed = max(replica.replayed, parse_lsn(str(replayed)) if replayed else -1)
            if primary is not None and replica.replayed < primary:
                await asyncio.sleep(_IN_FLIGHT_WAIT)
                await self._read_replayed(replica)
        except Exception as exc:
            self.down(replica, exc)
            return
        replica.lag = self._lag(replica.replayed, primary, since_commit)
        if replica.lag > self.settings.max_lag:
            self._set(
                replica,
                "lagging",
                f"it is {replica.lag:.1f} s behind (max_lag={self.settings.max_lag:g}); skipped",
            )
            return
        self._set(replica, "usable", "in use")

    async def _read_replayed(self, replica: Replica) -> None:
        row = await asyncio.wait_for(self._query(replica, _REPLAYED), self.settings.timeout)
        if row[0]:
            replica.replayed = max(replica.replayed, parse_lsn(str(row[0])))

    async def _primary_position(self) -> int | None:
        """The primary's WAL position now (one query per check round), or None if unknown."""
        now = time.monotonic()
        if self._samples and now - self._samples[-1][0] < self.settings.check_interval / 2:
            return self._samples[-1][1]
        try:
            row = await asyncio.wait_for(self._primary_query(_WRITTEN), self.settings.timeout)
        except Exception:
            return None  # the primary is away: the replicas cannot be compared with it
        self._samples.append((now, parse_lsn(str(row[0]))))
        return self._samples[-1][1]

    async def _primary_query(self, statement: Any) -> Any:
        async with self.primary_engine.connect() as connection:
            autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
            return (await autocommit.execute(statement)).one()

    def _lag(self, replayed: int, primary: int | None, since_commit: float | None) -> float:
        """Seconds the replica is behind at most: 0 when it has what the primary had just now.

        Otherwise the smaller of two upper bounds: the time since the primary was at a position
        the replica has replayed (from earlier checks), and the time since the last commit the
        replica replayed (``pg_last_xact_replay_timestamp()``).
        """
        if primary is None or replayed >= primary:
            return 0.0
        now = time.monotonic()
        bounds = [since_commit] if since_commit is not None else []
        reached = [at for at, position in self._samples if position <= replayed]
        if reached:
            bounds.append(now - max(reached))
        if bounds:
            return max(0.0, min(bounds))
        return now - self._samples[0][0]  # behind every sample: at least this far behind

    async def _query(self, replica: Replica, statement: Any) -> Any:
        async with replica.engine.connect() as connection:
            autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
            return (await autocommit.execute(statement)).one()

    def down(self, replica: Replica, exc: BaseException) -> None:
        """Skip ``replica`` for ``retry_after`` seconds: it could not be reached."""
        replica.next_check = time.monotonic() + self.settings.retry_after
        timed_out = isinstance(exc, (TimeoutError, asyncio.TimeoutError))  # distinct on 3.10
        reason = "timed out" if timed_out else type(exc).__name__
        self._set(
            replica,
            "down",
            f"it could not be reached ({reason}); skipped for {self.settings.retry_after:g} s",
        )

    def _set(self, replica: Replica, state: str, message: str) -> None:
        if replica.state == state:
            return
        level = logging.INFO if state == "usable" else logging.WARNING
        if state == "usable" and replica.state == "unchecked":
            level = logging.DEBUG
        replica.state = state
        logger.log(level, "herorepo: replica %s: %s", replica.safe_url, message)


class RoutedUnitOfWork(UnitOfWork):
    """A unit of work of a database with replicas: routed at ``async with``, noted at commit."""

    def __init__(
        self,
        router: Router,
        *,
        isolation_level: IsolationLevel | None = None,
        read_only: bool = False,
        independent: bool = False,
        session_info: Mapping[str, object] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(
            router.primary,
            isolation_level=isolation_level,
            read_only=read_only,
            independent=independent,
            session_info=session_info,
            name=name,
        )
        self._router = router
        self._read_only = read_only
        # A hot standby refuses SERIALIZABLE: such a unit of work reads on the primary.
        self._to_replica = read_only and isolation_level != "SERIALIZABLE"
        if read_only:
            # READ ONLY on the primary as on a replica: a write or FOR UPDATE fails on both.
            self._options = {**self._options, "postgresql_readonly": True}

    async def __aenter__(self) -> Self:
        if not self._to_replica or (self._open_outer() is not None and not self._independent):
            return await super().__aenter__()  # the primary; or joining an outer transaction
        failed: Replica | None = None
        while True:
            replica = await self._router.choose(skip=failed)
            self._sessionmaker = replica.sessionmaker if replica else self._router.primary
            self._connect_at_start = replica is not None  # a replica down is skipped here
            try:
                return await super().__aenter__()
            except ConnectionLostError as exc:
                if replica is None:
                    raise
                self._router.down(replica, exc)  # died since its last check: try elsewhere
                failed = replica

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None or self._read_only or self.joined:
            await super().__aexit__(exc_type, exc, tb)
            return
        self._router.writing()
        await super().__aexit__(exc_type, exc, tb)
        await self._router.written()

    async def commit(self) -> None:
        if self._read_only or self.joined:
            await super().commit()
            return
        self._router.writing()
        await super().commit()
        await self._router.written()
