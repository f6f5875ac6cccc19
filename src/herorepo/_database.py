"""``Database``: the engine, its sessionmaker, and the ways in (sessions, units of work)."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.pool import NullPool, QueuePool
from sqlmodel import SQLModel

from ._engine import EngineConfig, create_engine, create_sessionmaker
from ._errors import ConfigurationError
from ._pagination import CURSOR_KEYS, signing_keys
from ._policies import POLICIES_KEY, Policies, Policy, scope_info
from ._replicas import Replica, Replicas, RoutedUnitOfWork, Router
from ._retry import RetryPolicy, run_with_retries
from ._schema import create_tables
from ._telemetry import Telemetry, instrument
from ._unit_of_work import IsolationLevel, UnitOfWork
from ._url import redact, resolve_url

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from sqlalchemy import MetaData
    from sqlalchemy.engine import URL
    from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
    from sqlmodel.ext.asyncio.session import AsyncSession
    from typing_extensions import Self

__all__ = ["Database", "PoolStats"]

T = TypeVar("T")


@dataclass(frozen=True)
class PoolStats:
    """A snapshot of a database's connection pool.

    Attributes:
        size: Connections the pool keeps (``pool_size``).
        checked_out: Connections in use by sessions right now.
        idle: Open connections waiting in the pool.
        overflow: Connections opened above ``pool_size`` under load.

    .. versionadded:: 0.1.0
    """

    size: int
    checked_out: int
    idle: int
    overflow: int


class Database:
    """An async engine and its sessionmaker, with herorepo's defaults for the backend.

    ::

        async with Database("postgresql://app@db/app") as db:  # the pool is disposed on exit
            await db.create_all()
            async with db.unit_of_work() as uow:
                ...

    Args:
        url: The database URL. Plain forms get their async driver (``postgresql://`` becomes
            ``postgresql+asyncpg://``); other drivers are refused.
        config: Pool and engine settings; the backend's defaults when omitted.
        connect_args: Extra keyword arguments for the driver's ``connect()``.
        replicas: Read replicas (PostgreSQL): read-only units of work go to one of them, see
            :class:`Replicas`. Their engines share ``config`` and ``connect_args``.
        cursor_keys: Keys that sign keyset cursors, newest first: the first signs, any verifies
            (add a new key in front, drop the old one once its cursors have expired). Every
            process serving the same API needs the same keys; by default each Database makes a
            random key, so its cursors verify only in this process until it restarts.
        policies: :class:`TenantScope`, :class:`SoftDelete` and :class:`AuditColumns`, applied
            to every statement of this database's sessions (see docs/policies.md).
        telemetry: OpenTelemetry spans and pool metrics for this database, on every engine
            (replicas included); see :class:`Telemetry` and docs/observability.md. None
            (default) installs nothing.

    Raises:
        ConfigurationError: the URL, driver or a setting cannot be used, or the driver is not
            installed, or replicas are given for a database other than PostgreSQL.

    Attributes:
        url: The resolved async URL (it holds the password; log :attr:`safe_url` instead).
        backend: ``"sqlite"``, ``"postgresql"`` or ``"mysql"`` (MariaDB included).
        config: The :class:`EngineConfig` in use.
        engine: The ``AsyncEngine``.
        sessionmaker: The ``async_sessionmaker`` of SQLModel ``AsyncSession`` objects.
        telemetry: The :class:`Telemetry` given, or None.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        url: str | URL,
        config: EngineConfig | None = None,
        *,
        connect_args: Mapping[str, Any] | None = None,
        replicas: Replicas | None = None,
        cursor_keys: Sequence[str | bytes] | None = None,
        policies: Sequence[Policy] = (),
        telemetry: Telemetry | None = None,
    ) -> None:
        self.url, self.backend = resolve_url(url)
        self.config = config or EngineConfig()
        self.policies = Policies(policies) if policies else None
        if self.policies and self.policies.row_level_security and self.backend != "postgresql":
            raise ConfigurationError(
                "TenantScope(row_level_security=True) is for PostgreSQL, which has row-level "
                f"security; {self.safe_url!r} is {self.backend}. Leave it False there: the "
                "tenant scope of every ORM statement holds on every backend."
            )
        self._session_info: dict[str, object] = {CURSOR_KEYS: signing_keys(cursor_keys)}
        if self.policies is not None:
            self._session_info[POLICIES_KEY] = self.policies
        self.telemetry = telemetry
        instrumentation = None if telemetry is None else instrument(telemetry, self._session_info)
        self.engine: AsyncEngine = create_engine(self.url, self.config, connect_args=connect_args)
        self.sessionmaker: async_sessionmaker[AsyncSession] = create_sessionmaker(
            self.engine, info=self._session_info
        )
        self.replicas = replicas
        self._router = None if replicas is None else self._route(replicas, connect_args)
        if instrumentation is not None:
            for engine in self.engines:
                instrumentation.add_engine(engine)

    def _route(self, replicas: Replicas, connect_args: Mapping[str, Any] | None) -> Router:
        if not isinstance(replicas, Replicas):
            raise ConfigurationError(  # not the value: it may hold passwords
                "replicas must be a Replicas(...), e.g. replicas=Replicas(['postgresql://app@"
                f"replica/app']), got a {type(replicas).__name__}."
            )
        if self.backend != "postgresql":
            raise ConfigurationError(
                f"Read replicas are supported on PostgreSQL only; {self.safe_url!r} is "
                f"{self.backend}."
            )
        # A replica that does not answer must not hold a read up for asyncpg's 60 s default.
        replica_args = {"timeout": replicas.timeout, **(connect_args or {})}
        # Replicas are what gets restarted, promoted or cut off: ping their connections at every
        # checkout, so that a dead one is found there and the read moves to another server,
        # rather than after the unit of work has started.
        replica_config = replace(self.config, pool_ping_idle=0)
        engines: list[Replica] = []
        for url in replicas.urls:
            # Several hosts: the first standby among them, else whichever answers.
            resolved, backend = resolve_url(url, target_session_attrs="prefer-standby")
            if backend != "postgresql":
                raise ConfigurationError(
                    f"The replica {redact(resolved)!r} is not a PostgreSQL URL; replicas must be "
                    "of the primary's kind."
                )
            engine = create_engine(resolved, replica_config, connect_args=replica_args)
            engines.append(Replica(engine, create_sessionmaker(engine, info=self._session_info)))
        return Router(self.sessionmaker, self.engine, engines, replicas)

    @classmethod
    def from_env(
        cls,
        variable: str = "DATABASE_URL",
        *,
        default: str | None = None,
        config: EngineConfig | None = None,
        cursor_keys: Sequence[str | bytes] | None = None,
        policies: Sequence[Policy] = (),
        telemetry: Telemetry | None = None,
    ) -> Self:
        """Build a database from the URL in the environment variable ``variable``.

        The other arguments are those of ``Database(...)``.

        Raises:
            ConfigurationError: the variable is unset or empty and no ``default`` is given, or
                its URL cannot be used.
        """
        url = os.environ.get(variable) or default
        if not url:
            raise ConfigurationError(
                f"The environment variable {variable} is not set. Set it to a database URL, "
                "e.g. postgresql+asyncpg://user:password@localhost:5432/app, or pass default=."
            )
        return cls(url, config, cursor_keys=cursor_keys, policies=policies, telemetry=telemetry)

    def __repr__(self) -> str:
        if self.replicas is None:
            return f"Database({redact(self.url)!r})"
        return f"Database({redact(self.url)!r}, replicas={len(self.replicas.urls)})"

    @property
    def engines(self) -> tuple[AsyncEngine, ...]:
        """The primary's engine, then each replica's."""
        replicas = self._router.replicas if self._router else ()
        return (self.engine, *(replica.engine for replica in replicas))

    @property
    def safe_url(self) -> str:
        """The URL with its password hidden, for logs and messages."""
        return redact(self.url)

    def session(self) -> AsyncSession:
        """Return a new session; use it as ``async with db.session() as session:``.

        The session commits only when you call ``await session.commit()``; leaving the block
        rolls back whatever was not committed and returns the connection to the pool.
        """
        return self.sessionmaker()

    def unit_of_work(
        self,
        *,
        isolation_level: IsolationLevel | None = None,
        read_only: bool = False,
        independent: bool = False,
        tenant: object = None,
        all_tenants: bool = False,
        actor: object = None,
        name: str | None = None,
    ) -> UnitOfWork:
        """Return a new :class:`UnitOfWork`: ``async with db.unit_of_work() as uow:``.

        Opened inside another unit of work of this database, in the same task, it joins that
        one's transaction as a savepoint (see :class:`UnitOfWork`). With replicas, a read-only
        unit of work runs on a replica that has this task's last write (see :class:`Replicas`),
        in a ``READ ONLY`` transaction; any other on the primary.

        Args:
            isolation_level: e.g. ``"SERIALIZABLE"``; the backend's default when omitted.
            read_only: The work only reads; writes are refused (on SQLite it then does not
                take the write lock).
            independent: A transaction of its own even inside another unit of work.
            tenant: The tenant of this unit of work (with a :class:`TenantScope` policy),
                instead of the one of the enclosing ``with tenant(...)`` block.
            all_tenants: Admin work: no tenant filter at all.
            actor: Who is writing, for the ``created_by`` / ``updated_by`` audit columns,
                instead of the one of ``with acting_as(...)``.
            name: What the work is (``"transfer"``), for telemetry and query tags; a fixed
                name, never one built from ids or user input.
        """
        info = scope_info(tenant=tenant, all_tenants=all_tenants, actor=actor)
        if self._router is not None:
            return RoutedUnitOfWork(
                self._router,
                isolation_level=isolation_level,
                read_only=read_only,
                independent=independent,
                session_info=info,
                name=name,
            )
        return UnitOfWork(
            self.sessionmaker,
            isolation_level=isolation_level,
            read_only=read_only,
            independent=independent,
            session_info=info,
            name=name,
        )

    async def run(
        self,
        work: Callable[[UnitOfWork], Awaitable[T]],
        *,
        isolation_level: IsolationLevel | None = None,
        retry: RetryPolicy | None = None,
        name: str | None = None,
    ) -> T:
        """Run ``work`` in a unit of work, from the start again if it fails transiently.

        ``work`` gets a fresh unit of work on every attempt, which commits when it returns.
        A deadlock, serialization failure, lock timeout or SQLite busy error rolls the attempt
        back and, after an exponential backoff with jitter, runs ``work`` again. Keep side
        effects other than database writes out of ``work``: they would repeat too. When the
        connection is lost during COMMIT, herorepo asks the server whether it committed: if it
        did, this returns; if not, ``work`` runs again (docs/reliability.md, "Commit outcome").

        ::

            async def transfer(uow: UnitOfWork) -> None:
                ...

            await db.run(transfer, isolation_level="SERIALIZABLE")

        ``work`` must not call ``uow.commit()``: a retry would apply the committed part again,
        so it raises :class:`TransactionError` at once. Called inside an open unit of work of
        this database, ``work`` joins that transaction and runs once: only the outermost unit of
        work can be run again as a whole, so a transient error propagates to it.

        ``name`` names the work for telemetry and query tags; by default the qualified name of
        ``work`` (``"transfer"``). Each attempt's unit of work has its number in ``uow.attempt``.

        Returns:
            What ``work`` returned on the attempt that committed.

        Raises:
            RetriesExhaustedError: every attempt failed transiently (``__cause__`` is the last);
                none of them committed anything.
            TransactionError: ``work`` called ``uow.commit()``.
            CommitInterruptedError: the connection was lost during COMMIT, and whether it
                committed could not be found out (``committed is None``).
        """
        label = name if name is not None else getattr(work, "__qualname__", None)
        return await run_with_retries(
            lambda: self.unit_of_work(isolation_level=isolation_level, name=label),
            work,
            retry or RetryPolicy(),
        )

    def pool_stats(self) -> PoolStats:
        """Return how many pooled connections exist, are in use and are idle.

        With replicas, the figures add up the pools of the primary and every replica.
        """
        stats = [_pool_stats(engine) for engine in self.engines]
        return PoolStats(
            size=sum(s.size for s in stats),
            checked_out=sum(s.checked_out for s in stats),
            idle=sum(s.idle for s in stats),
            overflow=sum(s.overflow for s in stats),
        )

    async def create_all(self, metadata: MetaData | None = None) -> None:
        """Create the tables of ``metadata`` (default: every SQLModel table) that do not exist.

        On MySQL and MariaDB, tables get the ``utf8mb4_bin`` collation (exact text comparison,
        as on PostgreSQL and SQLite) unless they set their own; see docs/engine.md.
        """
        target = metadata if metadata is not None else SQLModel.metadata
        async with self.engine.begin() as connection:
            await connection.run_sync(create_tables, target)

    async def drop_all(self, metadata: MetaData | None = None) -> None:
        """Drop the tables of ``metadata`` (default: every SQLModel table) that exist."""
        target = metadata if metadata is not None else SQLModel.metadata
        async with self.engine.begin() as connection:
            await connection.run_sync(target.drop_all)

    async def dispose(self) -> None:
        """Close every pooled connection (replicas' too). The database can still be used."""
        for engine in self.engines:
            await engine.dispose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.dispose()


def _pool_stats(engine: AsyncEngine) -> PoolStats:
    pool = engine.pool
    if isinstance(pool, QueuePool):
        return PoolStats(
            size=pool.size(),
            checked_out=pool.checkedout(),
            idle=pool.checkedin(),
            overflow=max(0, pool.overflow()),
        )
    if isinstance(pool, NullPool):  # the PgBouncer profile: nothing kept, nothing counted
        return PoolStats(size=0, checked_out=0, idle=0, overflow=0)
    return PoolStats(size=1, checked_out=0, idle=1, overflow=0)
