"""The OpenTelemetry side of :class:`~herorepo.Telemetry`: spans, pool metrics and their hooks.

Imported only when a database is given ``telemetry=``; this is the one module of herorepo that
imports ``opentelemetry``. What it installs, and where:

* **Units of work**: ``UnitOfWork`` asks ``telemetry_of()`` at ``async with``; with tracing,
  :meth:`Instrumentation.unit_started` opens the span, makes it current for the block (so
  repository and statement spans are its children) and ends it with the outcome.
* **Repository calls**: every public coroutine method of ``Repository`` (and of its
  projections) is wrapped once per process, when the first database that traces is built. A
  wrapper looks in the session's ``info`` for this database's instrumentation, so a call on a
  database without telemetry costs one dictionary lookup, and one that calls another (``get_one``
  calls ``get``) makes one span. The class keeps its methods as they are written: no method
  knows about telemetry, and a process that never builds a ``Telemetry`` runs them unwrapped.
* **Statements**: ``before_cursor_execute`` / ``after_cursor_execute`` / ``handle_error`` on
  each engine of the database (replicas included) open and end a ``CLIENT`` span and record
  ``db.client.operation.duration``. The span's parent is the caller's current span:
  SQLAlchemy runs the driver in a greenlet that shares the caller's context.
* **Pools**: ``checkout`` / ``checkin`` pool events, and a wrapper around the pool's
  ``_do_get`` (where a checkout waits for a free connection), put back on the new pool when
  ``dispose()`` replaces it. Connection counts are observed from the pool when the metric
  reader asks.

Parameters are never recorded. Exceptions are recorded with herorepo's own message (which
shows no values unless ``show_values_in_errors=True``); a driver's message, which may quote
values (MySQL's ``Duplicate entry 'x'``), is left out, and so are chained exceptions.
"""

from __future__ import annotations

import functools
import inspect
import time
import traceback
import weakref
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import SpanKind, Status, StatusCode
from sqlalchemy import Table, event
from sqlalchemy.exc import StatementError
from sqlalchemy.exc import TimeoutError as SATimeoutError
from sqlalchemy.pool import QueuePool

from ._errors import AfterCommitError, HeroRepoError
from ._telemetry import TELEMETRY_KEY
from ._version import __version__

if TYPE_CHECKING:
    from sqlalchemy.engine import Dialect, Engine, ExceptionContext
    from sqlalchemy.ext.asyncio import AsyncEngine
    from sqlalchemy.pool import Pool

    from ._repository_base import RepositoryBase
    from ._telemetry import Telemetry
    from ._unit_of_work import UnitOfWork

__all__ = ["Instrumentation", "UnitTrace"]

_SCHEMA = "https://opentelemetry.io/schemas/1.37.0"
_DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306}
_DURATION_BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10]  # the semantic conventions'
_STARTED = "herorepo_otel"  # key in an execution context's __dict__: (span, start, shape)
_SHAPE = "herorepo_otel_shape"  # key in a compiled statement's __dict__: its _Shape
_CHECKED_OUT = "herorepo_otel_checked_out"  # key in a pooled connection's info

Attributes = dict[str, Any]

# Set while a repository call is traced: the calls it makes to other repository methods are
# part of it, and make no span of their own.
_in_call: ContextVar[bool] = ContextVar("herorepo_otel_in_call", default=False)


class Instrumentation:
    """One database's telemetry: its tracer and meters, and the hooks on its engines."""

    def __init__(self, config: Telemetry) -> None:
        self.tracer = trace.get_tracer(
            "herorepo", __version__, config.tracer_provider, schema_url=_SCHEMA
        )
        # A NoOpTracerProvider (or an SDK turned off) gives a NoOpTracer: nothing to hook then.
        self.tracing = not isinstance(self.tracer, trace.NoOpTracer)
        self.meters = _meters(config.meter_provider or metrics.get_meter_provider())
        self.query_text = config.query_text
        self._attributes: weakref.WeakKeyDictionary[Dialect, Attributes] = (
            weakref.WeakKeyDictionary()
        )
        self._calls: dict[tuple[Dialect | None, type[Any], str], _Shape] = {}
        if self.tracing:
            _wrap_repository_methods()

    # --- attributes ------------------------------------------------------------------------------

    def attributes(self, engine: Engine) -> Attributes:
        """The database attributes of ``engine``'s spans (cached once it has connected)."""
        dialect = engine.dialect
        found = self._attributes.get(dialect)
        if found is not None:
            return found
        found = database_attributes(engine)
        if dialect.server_version_info is not None:  # MariaDB is known after the first connect
            self._attributes[dialect] = found
        return found

    # --- engines ---------------------------------------------------------------------------------

    def add_engine(self, engine: AsyncEngine) -> None:
        """Trace the statements of ``engine`` and measure its pool."""
        sync = engine.sync_engine
        if self.tracing or self.meters is not None:
            self._hook_statements(sync)
        if self.meters is not None:
            self.meters.add_pool(sync)

    def _hook_statements(self, engine: Engine) -> None:
        tracer, meters, tracing = self.tracer, self.meters, self.tracing
        query_text = self.query_text

        def before(
            _conn: Any, _cursor: Any, sql: str, params: Any, context: Any, many: bool
        ) -> None:
            if context is None:
                return
            shape = self._shape(engine, context, sql)
            span = None
            if tracing:
                name, attributes = shape.name, shape.attributes
                batch = len(params) if many and hasattr(params, "__len__") else 0
                if batch > 1 or query_text:
                    attributes = dict(attributes)
                    if query_text:
                        attributes["db.query.text"] = sql
                    if batch > 1:
                        attributes["db.operation.batch.size"] = batch
                        name = f"BATCH {name}"
                span = tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes)
            context.__dict__[_STARTED] = (span, time.perf_counter(), shape)

        def after(
            _conn: Any, _cursor: Any, _sql: str, _params: Any, context: Any, _many: bool
        ) -> None:
            started = context.__dict__.pop(_STARTED, None) if context is not None else None
            if started is None:
                return
            span, at, shape = started
            if meters is not None:
                meters.duration.record(time.perf_counter() - at, shape.attributes)
            if span is not None:
                span.end()

        def failed(error_context: ExceptionContext) -> None:
            context = error_context.execution_context
            started = context.__dict__.pop(_STARTED, None) if context is not None else None
            if started is None:
                return
            span, at, shape = started
            # What the handlers before this one made of the driver's error: herorepo's class.
            error: BaseException = (
                getattr(error_context, "chained_exception", None)
                or error_context.sqlalchemy_exception
                or error_context.original_exception
            )
            if meters is not None:
                failure = {**shape.attributes, "error.type": error_type(error)}
                meters.duration.record(time.perf_counter() - at, failure)
            if span is not None:
                code = _status_code(engine.dialect.name, error_context.original_exception)
                if code is not None:
                    span.set_attribute("db.response.status_code", code)
                record_error(span, error)
                span.end()

        event.listen(engine, "before_cursor_execute", before)
        event.listen(engine, "after_cursor_execute", after)
        event.listen(engine, "handle_error", failed)

    def _shape(self, engine: Engine, context: Any, sql: str) -> _Shape:
        """The span name and attributes of a statement: made once per compiled statement (which
        SQLAlchemy caches per engine), and for text and driver-level SQL at each execution."""
        compiled = context.compiled
        if compiled is not None:
            found: _Shape | None = compiled.__dict__.get(_SHAPE)
            if found is not None:
                return found
        database = self.attributes(engine)
        operation, table = _target(compiled.statement if compiled is not None else None, sql)
        attributes = {**database, "db.operation.name": operation}
        if table is not None:
            attributes["db.collection.name"] = table
        target = table or database.get("db.namespace")
        shape = _Shape(f"{operation} {target}" if target else operation, attributes)
        if compiled is not None and engine.dialect.server_version_info is not None:
            compiled.__dict__[_SHAPE] = shape  # the attributes are final once it has connected
        return shape

    # --- spans -----------------------------------------------------------------------------------

    def unit_started(
        self, unit: UnitOfWork, *, read_only: bool, isolation_level: str | None
    ) -> UnitTrace:
        """Open the span of ``unit``, current until :meth:`UnitTrace.ended`."""
        name = unit.name
        attributes: Attributes = {"herorepo.attempt": unit.attempt, "herorepo.read_only": read_only}
        if name is not None:
            attributes["herorepo.unit_of_work.name"] = name
        if isolation_level is not None:
            attributes["herorepo.isolation_level"] = isolation_level
        span = self.tracer.start_span(
            f"unit_of_work {name}" if name else "unit_of_work", attributes=attributes
        )
        return UnitTrace(self, span)

    async def repository_call(
        self,
        repository: RepositoryBase[Any],
        method: str,
        call: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        model = repository.model
        bind = repository.session.bind
        engine = bind.sync_engine if bind is not None else None
        key = (engine.dialect if engine is not None else None, model, method)
        shape = self._calls.get(key)
        if shape is None:
            attributes: Attributes = {
                "db.operation.name": method,
                "db.collection.name": model.__table__.name,  # pyright: ignore[reportAttributeAccessIssue]
            }
            if engine is not None:
                attributes.update(self.attributes(engine))
            shape = _Shape(f"{model.__name__}.{method}", attributes)
            if engine is None or engine.dialect.server_version_info is not None:
                self._calls[key] = shape
        span = self.tracer.start_span(shape.name, attributes=shape.attributes)
        token = otel_context.attach(trace.set_span_in_context(span))
        inside = _in_call.set(True)
        try:
            return await call(repository, *args, **kwargs)
        except BaseException as error:
            record_error(span, error)
            raise
        finally:
            _in_call.reset(inside)
            otel_context.detach(token)
            span.end()


class _Shape:
    """A statement's span name, and the attributes its span and duration metric share."""

    __slots__ = ("attributes", "name")

    def __init__(self, name: str, attributes: Attributes) -> None:
        self.name = name
        self.attributes = attributes


class UnitTrace:
    """The span of one unit of work, current from ``async with`` to its end."""

    def __init__(self, instrumentation: Instrumentation, span: trace.Span) -> None:
        self._instrumentation = instrumentation
        self.span = span
        self._token: object = otel_context.attach(trace.set_span_in_context(span))

    def entered(self, unit: UnitOfWork) -> None:
        """The transaction began (or the savepoint of a joined unit of work): say where."""
        span = self.span
        span.set_attribute("herorepo.joined", unit.joined)
        if span.is_recording():
            bind = unit.session.bind
            if bind is not None:
                span.set_attributes(self._instrumentation.attributes(bind.sync_engine))

    def ended(self, error: BaseException | None, *, raised: bool) -> None:
        """End the span: ``error`` is the block's exception, or what leaving it raised."""
        if error is None:
            outcome = "committed"
        elif not raised or isinstance(error, AfterCommitError):
            # The block raised: everything was rolled back. An on_commit callback that raised
            # did so after the COMMIT.
            outcome = "committed" if isinstance(error, AfterCommitError) else "rolled_back"
        else:
            outcome = "failed"  # BEGIN, COMMIT, or a transaction failed earlier
        span = self.span
        span.set_attribute("herorepo.outcome", outcome)
        if error is not None:
            record_error(span, error)
        try:
            otel_context.detach(self._token)  # type: ignore[arg-type]  # attach()'s token
        finally:
            span.end()


# --- errors ---------------------------------------------------------------------------------------


def error_type(error: BaseException) -> str:
    """The semantic conventions' ``error.type``: the exception's fully qualified class name."""
    cls = type(error)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def _safe_message(error: BaseException) -> str:
    """The message, unless a driver wrote it: driver messages may quote the values."""
    if isinstance(error, StatementError):
        orig = error.orig
        return type(orig).__name__ if orig is not None else type(error).__name__
    if isinstance(error, HeroRepoError):
        return str(error)
    cause = error.__cause__ or error.__context__
    if isinstance(cause, StatementError) and str(cause.orig) in str(error):
        return type(error).__name__
    return str(error)


def record_error(span: trace.Span, error: BaseException) -> None:
    """Mark ``span`` failed with ``error``: its type, message and frames, not its chain."""
    kind = error_type(error)
    span.set_attribute("error.type", kind)
    if not span.is_recording():
        return
    message = _safe_message(error)
    frames = "".join(traceback.format_tb(error.__traceback__))
    frames = f"Traceback (most recent call last):\n{frames}"
    span.add_event(
        "exception",
        {
            "exception.type": kind,
            "exception.message": message,
            "exception.stacktrace": f"{frames}{kind}: {message}",
        },
    )
    span.set_status(Status(StatusCode.ERROR, message))


def _status_code(dialect: str, orig: BaseException | None) -> str | None:
    """``db.response.status_code``, as each system's conventions define it: PostgreSQL's
    SQLSTATE, MySQL's and MariaDB's error number, SQLite's error name."""
    if dialect in ("mysql", "mariadb"):
        args = getattr(orig, "args", ())
        return str(args[0]) if args and isinstance(args[0], int) else None
    found = getattr(orig, "sqlstate" if dialect == "postgresql" else "sqlite_errorname", None)
    return str(found) if found else None


# --- statements -----------------------------------------------------------------------------------


def database_attributes(engine: Engine) -> Attributes:
    """``db.system.name``, ``db.namespace``, ``server.address`` and ``server.port``."""
    url = engine.url
    system = engine.dialect.name
    if system == "mysql" and getattr(engine.dialect, "is_mariadb", False):
        system = "mariadb"
    attributes: Attributes = {"db.system.name": system}
    if url.database:
        attributes["db.namespace"] = url.database
    if url.host:
        attributes["server.address"] = url.host
        port = url.port or _DEFAULT_PORTS.get(engine.dialect.name)
        if port:
            attributes["server.port"] = port
    return attributes


def _target(statement: Any, sql: str) -> tuple[str, str | None]:
    """The operation (``SELECT``) and the one table a statement works on (None for several):
    the first word of the SQL, and the table of the compiled statement."""
    table: Any = None
    if getattr(statement, "is_dml", False):
        table = getattr(statement, "table", None)
    elif getattr(statement, "is_select", False):
        try:
            froms: list[Any] = list(statement.get_final_froms())
        except Exception:
            froms = []
        table = froms[0] if len(froms) == 1 else None
    name = table.name if isinstance(table, Table) else None
    return _first_word(sql), name


def _first_word(sql: str) -> str:
    words = sql.split(None, 1)
    return words[0].upper() if words else ""


# --- repository calls -----------------------------------------------------------------------------

_wrapped = False


def _wrap_repository_methods() -> None:
    """Wrap the public coroutine methods of the repository classes, once per process."""
    global _wrapped
    if _wrapped:
        return
    from ._projections import Projection
    from ._repository import Repository
    from ._repository_reads import RepositoryReads
    from ._repository_rows import RepositoryRows

    for cls in (Repository, RepositoryRows, RepositoryReads, Projection):
        for name, member in list(vars(cls).items()):
            if not name.startswith("_") and inspect.iscoroutinefunction(member):
                setattr(cls, name, _traced(name, member))
    _wrapped = True


def _traced(name: str, method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(method)
    async def call(self: RepositoryBase[Any], *args: Any, **kwargs: Any) -> Any:
        instrumentation = self.session.sync_session.info.get(TELEMETRY_KEY)
        if instrumentation is None or _in_call.get():
            return await method(self, *args, **kwargs)
        return await instrumentation.repository_call(self, name, method, args, kwargs)

    return call


# --- pool metrics ---------------------------------------------------------------------------------


class _PoolState:
    """What the metrics of one engine's pool need between events."""

    def __init__(self, engine: Engine, attributes: Attributes) -> None:
        self.engine = weakref.ref(engine)
        self.attributes = attributes
        self.idle = {**attributes, "db.client.connection.state": "idle"}
        self.used = {**attributes, "db.client.connection.state": "used"}
        self.pending = 0
        self.checked_out = 0  # for pools that keep no count (NullPool)


class _Meters:
    """The instruments of one meter, shared by every database that uses it."""

    def __init__(self, meter: metrics.Meter) -> None:
        self.pools: weakref.WeakSet[_PoolState] = weakref.WeakSet()
        self.wait_time = meter.create_histogram(
            "db.client.connection.wait_time",
            unit="s",
            description="The time it took to obtain an open connection from the pool.",
        )
        self.use_time = meter.create_histogram(
            "db.client.connection.use_time",
            unit="s",
            description="The time between borrowing a connection and returning it to the pool.",
        )
        self.timeouts = meter.create_counter(
            "db.client.connection.timeouts",
            unit="{timeout}",
            description="The number of connection timeouts that have occurred trying to obtain "
            "a connection from the pool.",
        )
        self.duration = meter.create_histogram(
            "db.client.operation.duration",
            unit="s",
            description="Duration of database client operations.",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        meter.create_observable_up_down_counter(
            "db.client.connection.count",
            [self._counts],
            unit="{connection}",
            description="The number of connections that are currently in state described by "
            "the state attribute.",
        )
        meter.create_observable_up_down_counter(
            "db.client.connection.pending_requests",
            [self._pending],
            unit="{request}",
            description="The number of current pending requests for an open connection.",
        )
        meter.create_observable_up_down_counter(
            "db.client.connection.max",
            [self._max],
            unit="{connection}",
            description="The maximum number of open connections allowed.",
        )
        meter.create_observable_up_down_counter(
            "db.client.connection.idle.max",
            [self._idle_max],
            unit="{connection}",
            description="The maximum number of idle open connections allowed.",
        )

    # --- the pool's events ---

    def add_pool(self, engine: Engine) -> None:
        attributes = {"db.client.connection.pool.name": pool_name(engine)}
        state = _PoolState(engine, attributes)
        self.pools.add(state)
        wait_time, use_time, timeouts = self.wait_time, self.use_time, self.timeouts

        def wrap(pool: Pool) -> None:
            take = pool._do_get  # pyright: ignore[reportPrivateUsage]  # where checkouts wait

            def do_get() -> Any:
                state.pending += 1
                started = time.perf_counter()
                try:
                    record = take()
                except SATimeoutError:
                    timeouts.add(1, attributes)
                    raise
                finally:
                    state.pending -= 1
                wait_time.record(time.perf_counter() - started, attributes)
                return record

            pool._do_get = do_get  # type: ignore[method-assign]

        def checked_out(_dbapi: Any, record: Any, _proxy: Any) -> None:
            state.checked_out += 1
            record.info[_CHECKED_OUT] = time.perf_counter()

        def checked_in(_dbapi: Any, record: Any) -> None:
            started = record.info.pop(_CHECKED_OUT, None) if record is not None else None
            if started is not None:
                state.checked_out -= 1
                use_time.record(time.perf_counter() - started, attributes)

        def disposed(replaced: Engine) -> None:
            # dispose() replaces the pool; its events carry over to the new one, this not.
            wrap(replaced.pool)

        wrap(engine.pool)
        event.listen(engine, "engine_disposed", disposed)
        event.listen(engine, "checkout", checked_out)
        event.listen(engine, "checkin", checked_in)

    # --- observed when the reader collects ---

    def _live(self) -> Iterator[tuple[_PoolState, Pool]]:
        for state in list(self.pools):
            engine = state.engine()
            if engine is not None:
                yield state, engine.pool

    def _counts(self, _options: CallbackOptions) -> Iterator[Observation]:
        for state, pool in self._live():
            if isinstance(pool, QueuePool):
                idle, used = pool.checkedin(), pool.checkedout()
            else:  # NullPool (PgBouncer): nothing kept idle
                idle, used = 0, state.checked_out
            yield Observation(idle, state.idle)
            yield Observation(used, state.used)

    def _pending(self, _options: CallbackOptions) -> Iterator[Observation]:
        for state, _pool in self._live():
            yield Observation(state.pending, state.attributes)

    def _max(self, _options: CallbackOptions) -> Iterator[Observation]:
        for state, pool in self._live():
            if isinstance(pool, QueuePool):
                overflow: int = getattr(pool, "_max_overflow", 0)
                yield Observation(pool.size() + max(0, overflow), state.attributes)

    def _idle_max(self, _options: CallbackOptions) -> Iterator[Observation]:
        for state, pool in self._live():
            if isinstance(pool, QueuePool):
                yield Observation(pool.size(), state.attributes)


_METERS: weakref.WeakKeyDictionary[metrics.MeterProvider, _Meters] = weakref.WeakKeyDictionary()


def _meters(provider: metrics.MeterProvider) -> _Meters | None:
    """The instruments of ``provider``'s herorepo meter, or None when it measures nothing.

    Made once per provider and shared by the databases that use it: a meter keeps the first
    instrument of each name, so a second set would never be collected.
    """
    found = _METERS.get(provider)
    if found is None:
        meter = provider.get_meter("herorepo", __version__, _SCHEMA)
        if isinstance(meter, metrics.NoOpMeter):  # a NoOpMeterProvider, or an SDK turned off
            return None
        found = _METERS[provider] = _Meters(meter)
    return found


def pool_name(engine: Engine) -> str:
    """``db.client.connection.pool.name``: ``host:port/database``, or the SQLite database."""
    url = engine.url
    if not url.host:
        return url.database or engine.dialect.name
    port = url.port or _DEFAULT_PORTS.get(engine.dialect.name)
    return f"{url.host}:{port}/{url.database or ''}"
