"""FastAPI integration: a lifespan, request-scoped dependencies and HTTP errors.

::

    db = Database.from_env()
    app = FastAPI(lifespan=lifespan(db, create_tables=True))
    add_exception_handlers(app)
    Heroes = Annotated[Repository[Hero], Depends(repository(Hero))]

    @app.get("/heroes/{hero_id}")
    async def read_hero(hero_id: int, heroes: Heroes) -> HeroPublic:
        return await heroes.get_one(hero_id)  # NotFoundError becomes a 404

What each dependency gives an endpoint, and when it ends:

=================  ==============================  ===============================================
dependency         gives                           ends
=================  ==============================  ===============================================
``DatabaseDep``    the app's :class:`Database`     never; pass it to background tasks
``SessionDep``     an ``AsyncSession``; you        closed when the endpoint returns, before the
                   commit                          response is sent
``UnitOfWorkDep``  an active :class:`UnitOfWork`   committed when the endpoint returns, before the
                                                   response is sent; rolled back if it raises
``repository(M)``  a repository on the request's   as ``UnitOfWorkDep`` (all repositories of a
                   unit of work                    request share one unit of work)
=================  ==============================  ===============================================

The session and the unit of work end *before* the response is sent
(``Depends(..., scope="function")``, FastAPI 0.121+): a commit that fails (a constraint checked
at commit, a lost connection) becomes an error response instead of a 200 for data that was never
saved, and the connection is back in the pool before the client reads the body. Background tasks
run after that, so they must open their own session: take ``DatabaseDep`` and pass the database
to the task, never the request's session or repository.

FastAPI is imported only here: ``import herorepo`` never imports it.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Collection,
    Coroutine,
    Generator,
    Sequence,
)
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from typing import (
    TYPE_CHECKING,
    Annotated,
    Any,
    Literal,
    TypeVar,
    cast,
    overload,
)

try:
    from fastapi import Depends, FastAPI, HTTPException, Request
    from fastapi.responses import JSONResponse
    from fastapi.routing import APIRoute
    from starlette.requests import HTTPConnection
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "herorepo.integrations.fastapi needs FastAPI: pip install 'herorepo[fastapi]'"
    ) from exc
from pydantic import BaseModel
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from .._database import Database
from .._errors import (
    CheckViolationError,
    ConfigurationError,
    ConflictError,
    ForeignKeyViolationError,
    InvalidCursorError,
    InvalidDataError,
    InvalidFilterError,
    NotFoundError,
    NotNullViolationError,
    TenantMismatchError,
    UniqueViolationError,
)
from .._filters import FilterQuery, FilterSet
from .._loading import LoadSpec
from .._policies import tenant
from .._projection_plans import projection_plan
from .._projections import Projection
from .._query_tags import reset_route, set_route
from .._repository import Repository
from .._unit_of_work import UnitOfWork
from ._filter_params import PAGING_ONLY, query_parameters
from ._response_models import Declared, declare, route_problems

if TYPE_CHECKING:
    from sqlalchemy import MetaData

if "scope" not in inspect.signature(Depends).parameters:  # pragma: no cover
    raise ImportError(
        "herorepo.integrations.fastapi needs FastAPI 0.121 or later (dependency scopes): "
        "pip install --upgrade 'herorepo[fastapi]'"
    )

__all__ = [
    "DatabaseDep",
    "SessionDep",
    "TenantDep",
    "TenantResolver",
    "UnitOfWorkDep",
    "add_exception_handlers",
    "check_response_models",
    "filter_query",
    "get_database",
    "get_session",
    "get_unit_of_work",
    "lifespan",
    "repository",
    "request_tenant",
    "scope_to_tenants",
    "tenant_header",
]

ModelT = TypeVar("ModelT", bound=SQLModel)
RepositoryT = TypeVar("RepositoryT", bound="Repository[Any]")
SchemaT = TypeVar("SchemaT", bound=BaseModel)

logger = logging.getLogger("herorepo")

_STATE_KEY = "herorepo_database"
_TENANT_KEY = "herorepo_tenant"


TenantResolver = Callable[[HTTPConnection], object]
"""Where a request's tenant comes from: a function of the request (its headers, or the user an
authentication middleware put in ``request.state``) returning the tenant, or ``None``. It runs
on the event loop, once per request: keep it to reading the request (no blocking I/O; resolve
tokens in a middleware or an async dependency and leave the result in ``request.state``)."""


def tenant_header(name: str = "X-Tenant") -> TenantResolver:
    """A :data:`TenantResolver` reading the tenant from request header ``name``.

    Only behind a gateway that sets the header from the authenticated user: a client that may
    set it itself may name any tenant.
    """

    def resolve(connection: HTTPConnection) -> str | None:
        return connection.headers.get(name) or None

    resolve.tenant_source = f"the {name} header"  # type: ignore[attr-defined]
    return resolve


def scope_to_tenants(app: FastAPI, resolve: TenantResolver) -> None:
    """Scope every request of ``app`` to its tenant, as ``resolve`` finds it.

    ::

        db = Database.from_env(policies=[TenantScope()])
        app = FastAPI(lifespan=lifespan(db))
        scope_to_tenants(app, tenant_header("X-Tenant"))

    With a :class:`~herorepo.TenantScope` policy on the database, the session and unit of work
    of each request (and so every repository) see that tenant's rows only; a request that names
    no tenant gets a 400. Call it when building the app (herorepo.testing's client needs no
    lifespan, and sees it too).

    .. versionadded:: 0.1.0
    """
    setattr(app.state, _TENANT_KEY, resolve)


def lifespan(
    database: Database, *, create_tables: bool = False, metadata: MetaData | None = None
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Return a lifespan for ``FastAPI(lifespan=...)`` that serves ``database`` to the dependencies.

    On startup it makes ``database`` the app's database and, with ``create_tables=True``,
    creates the missing tables of ``metadata`` (default: every SQLModel table). On shutdown, or
    when startup fails, it disposes the connection pool. To combine it with startup code of your
    own, enter it inside your lifespan: ``async with lifespan(db)(app): ...``.

    Args:
        database: The database the app's requests use.
        create_tables: Create missing tables on startup (for demos and tests; use migrations
            in production).
        metadata: The tables to create; every SQLModel table when omitted.

    .. versionadded:: 0.1.0
    """

    @asynccontextmanager
    async def run(app: FastAPI) -> AsyncGenerator[None, None]:
        setattr(app.state, _STATE_KEY, database)
        try:
            if create_tables:
                await database.create_all(metadata)
            yield
        finally:
            await database.dispose()

    return run


async def get_database(connection: HTTPConnection) -> Database:
    """Return the app's database, as registered by :func:`lifespan`.

    ``async`` although it awaits nothing: FastAPI runs a plain ``def`` dependency in its thread
    pool, a thread hop on every request.

    Override this one dependency to point every herorepo dependency of an app at another
    database (herorepo.testing's ``herorepo_client`` does).

    Raises:
        ConfigurationError: the app has no database: its lifespan did not run.
    """
    database = getattr(connection.app.state, _STATE_KEY, None)
    if not isinstance(database, Database):
        raise ConfigurationError(
            "This app has no herorepo database. Create the app with "
            "FastAPI(lifespan=herorepo.integrations.fastapi.lifespan(db)) and run its lifespan: "
            "httpx's ASGITransport does not, so wrap the client in "
            "`async with app.router.lifespan_context(app):` (or use herorepo.testing's "
            "herorepo_client, which needs no lifespan)."
        )
    return database


@contextmanager
def _route_tagged(connection: HTTPConnection, database: Database) -> Generator[None, None, None]:
    """With query tags, the statements sent inside carry the request's route template."""
    tags = database.config.query_tags
    route = connection.scope.get("route") if tags is not None and tags.route else None
    # The template (/heroes/{hero_id}), never the URL: one statement text per route.
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    if not isinstance(template, str):
        yield
        return
    token = set_route(template)
    try:
        yield
    finally:
        reset_route(token)


async def _request_database(
    connection: HTTPConnection, database: Annotated[Database, Depends(get_database)]
) -> AsyncIterator[Database]:
    """The app's database; with query tags, the request's statements carry its route template."""
    with _route_tagged(connection, database):
        yield database


DatabaseDep = Annotated[Database, Depends(_request_database)]
"""The app's :class:`~herorepo.Database`; pass it to background tasks, which need their own
session. With ``EngineConfig(query_tags=...)``, statements the request sends through it are
tagged with its route's path template (the session, unit of work and repository dependencies
tag theirs themselves)."""


async def request_tenant(connection: HTTPConnection) -> object:
    """The request's tenant, from the resolver of :func:`scope_to_tenants` (``None`` without).

    Raises:
        HTTPException: 400, the app scopes requests to tenants and this one names none.
    """
    resolve: TenantResolver | None = getattr(connection.app.state, _TENANT_KEY, None)
    if resolve is None:
        return None
    value = resolve(connection)
    if value is None:
        source = getattr(resolve, "tenant_source", None)  # set by tenant_header()
        hint = f": set {source}" if isinstance(source, str) else ""
        raise HTTPException(400, f"This request names no tenant{hint}.")
    return value


TenantDep = Annotated[object, Depends(request_tenant)]


# The session and unit-of-work dependencies take the database from get_database, not from
# DatabaseDep, and tag the route themselves: one generator dependency less per request.
_AppDatabase = Annotated[Database, Depends(get_database)]


async def get_session(
    connection: HTTPConnection, database: _AppDatabase, value: TenantDep
) -> AsyncIterator[AsyncSession]:
    """Yield a session for one request; use :data:`SessionDep` rather than this function."""
    with _route_tagged(connection, database):
        if value is None:
            async with database.session() as session:
                yield session
            return
        with tenant(value):  # the session takes the tenant when it is made
            session = database.session()
        async with session:
            yield session


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
"""A session for one request. Commit it yourself; whatever is not committed when the endpoint
returns is rolled back, and the session is closed before the response is sent."""


async def get_unit_of_work(
    connection: HTTPConnection, database: _AppDatabase, value: TenantDep
) -> AsyncIterator[UnitOfWork]:
    """Yield a unit of work for one request; use :data:`UnitOfWorkDep` rather than this function."""
    with _route_tagged(connection, database):
        async with database.unit_of_work(tenant=value) as uow:
            yield uow


UnitOfWorkDep = Annotated[UnitOfWork, Depends(get_unit_of_work, scope="function")]
"""A unit of work for one request: committed after the endpoint returns and before the response is
sent (a failed commit becomes the response), rolled back if the endpoint raises."""


@overload
def repository(
    model: type[RepositoryT], *, load: Sequence[LoadSpec] = ()
) -> Callable[[UnitOfWork], Coroutine[Any, Any, RepositoryT]]: ...
@overload
def repository(
    model: type[ModelT], *, load: Sequence[LoadSpec] = ()
) -> Callable[[UnitOfWork], Coroutine[Any, Any, Repository[ModelT]]]: ...
@overload
def repository(
    model: type[ModelT], *, into: type[SchemaT]
) -> Callable[[UnitOfWork], Coroutine[Any, Any, Projection[ModelT, SchemaT]]]: ...
def repository(
    model: Any, *, load: Sequence[LoadSpec] = (), into: type[BaseModel] | None = None
) -> Callable[[UnitOfWork], Coroutine[Any, Any, Any]]:
    """Return a dependency that builds a repository on the request's unit of work.

    ::

        Heroes = Annotated[Repository[Hero], Depends(repository(Hero))]
        HeroRepo = Annotated[HeroRepository, Depends(repository(HeroRepository))]
        Teams = Annotated[Repository[Team], Depends(repository(Team, load=[Team.heroes]))]
        TeamsOut = Annotated[
            Projection[Team, TeamPublicWithHeroes],
            Depends(repository(Team, into=TeamPublicWithHeroes)),
        ]

    All repositories of one request share its unit of work (and the endpoint's
    ``UnitOfWorkDep``, if it has one): one transaction, committed before the response is sent.
    ``load`` and ``into`` say what the endpoint's reads give, which
    :func:`check_response_models` compares with the route's response model.

    Args:
        model: A table model, or a ``Repository`` subclass bound to one.
        load: Relationships every read of the repository loads (``with_load()``), as well
            as those a read's own ``load=`` names.
        into: Give ``repository(model).into(into)``: reads that return ``into`` schemas,
            nested relationships included, instead of ORM objects.

    Raises:
        ConfigurationError: ``model`` is neither a table model nor a repository class, or
            both ``load`` and ``into`` are given.
        InvalidLoadError: a ``load`` spec is not a relationship of the model, or ``into``
            cannot be read from it.

    .. versionadded:: 0.1.0
    """
    name = str(getattr(model, "__name__", model))
    if isinstance(model, type) and issubclass(model, Repository):
        repository_class: type[Repository[Any]] = cast("Any", model)
        bound: Any = getattr(repository_class, "model", None)
        if bound is None:
            raise ConfigurationError(
                f"{name} names no model; declare it as class {name}(Repository[Hero])."
            )
        table_model: type[SQLModel] = bound

        def build(session: AsyncSession) -> Repository[Any]:
            return repository_class(session)

    elif isinstance(model, type) and getattr(model, "__table__", None) is not None:
        table_model = model

        def build(session: AsyncSession) -> Repository[Any]:
            return Repository(session, table_model)

    else:
        raise ConfigurationError(
            f"repository() takes a table model or a Repository subclass, not {model!r}."
        )
    if into is not None and load:
        raise ConfigurationError(
            "repository() takes load= or into=, not both: into= reads what its schema nests."
        )
    specs = tuple(load)
    if into is not None:
        schema = into
        projection_plan(table_model, schema)  # refused now, not at the first request

        async def dependency(uow: UnitOfWorkDep) -> Any:
            return build(uow.session).into(schema)

    elif specs:

        async def dependency(uow: UnitOfWorkDep) -> Any:
            return build(uow.session).with_load(*specs)

    else:

        async def dependency(uow: UnitOfWorkDep) -> Any:
            return build(uow.session)

    declare(dependency, Declared(table_model, specs, into))
    dependency.__name__ = f"{name}_repository"
    return dependency


def check_response_models(app: FastAPI, *, exclude: Collection[str] = ()) -> None:
    """Check that each route of ``app`` loads what its response model reads; call it at startup.

    ::

        app = FastAPI(lifespan=lifespan(db))
        ...  # the routes
        check_response_models(app)  # after the last route: at import, before serving

    A response model that nests relationship schemas (``TeamPublicWithHeroes.heroes``) is
    serialised from what the endpoint returns; an ORM object whose relationship was not loaded
    would lazy-load then, which async code cannot do (``MissingGreenlet``, herorepo's
    ``LazyLoadError``): a 500 at the first request. For each route whose response model (in a
    list, a page or any other wrapper) holds schemas of a model with relationship fields, the
    check finds the route's ``repository(Model, ...)`` dependencies, at any depth, and requires
    that their ``load=`` (or their ``into=`` schema) covers every relationship chain the
    response model reads.

    It reads declarations, not endpoint code: it cannot see a ``load=`` passed to a single
    read, a ``select()`` of your own on ``SessionDep``, or what a repository subclass's own
    queries load. Such a route fails the check until it declares its loads on its repository
    dependency, or is named in ``exclude``.

    Args:
        app: The app, with its routes added.
        exclude: Routes to leave out, as ``"GET /teams/{team_id}"``.

    Raises:
        ConfigurationError: a route's response model needs relationships its repository
            dependencies do not load; the message names each route and the missing loads.

    .. versionadded:: 0.1.0
    """
    problems: list[str] = []
    for route in app.routes:
        if not isinstance(route, APIRoute):
            continue
        for method in sorted(route.methods or ()):
            label = f"{method} {route.path}"
            problems += route_problems(label, route.response_model, route.dependant, exclude)
    if problems:
        raise ConfigurationError(
            "Some response models need relationships that the routes' queries do not load:\n"
            + "\n".join(f"- {problem}" for problem in problems)
        )


def filter_query(
    filter_set: FilterSet[Any], *, paging: Literal["offset", "keyset"] | None = None
) -> Callable[[HTTPConnection], Coroutine[Any, Any, FilterQuery]]:
    """Return a dependency that parses the request's query parameters with ``filter_set``.

    ::

        HeroQuery = Annotated[FilterQuery, Depends(filter_query(hero_filters, paging="keyset"))]

    The dependency declares every parameter the set allows, so that they appear in the app's
    OpenAPI schema and its ``/docs``: ``field`` for equality and ``field__operator`` for the
    other operators, typed as the field is (integers bounded by their column's range;
    ``__in`` and ``__not_in`` as lists of strings, repeated or comma-separated; ``__isnull``
    as a boolean), ``order_by``, ``limit`` (with the set's default and maximum), and the
    paging parameters. FastAPI answers a value of the wrong type with its usual 422, naming
    the parameter. The set then parses the whole query string, so a parameter it does not
    allow raises :class:`~herorepo.InvalidFilterError`, which :func:`add_exception_handlers`
    turns into a 422 naming what is allowed. A parameter given several times
    (``team_id__in=1&team_id__in=2``) keeps all its values.

    Args:
        filter_set: The fields, operators and sort keys the endpoint allows.
        paging: ``"keyset"`` to page with ``after`` / ``before`` only, ``"offset"`` with
            ``offset`` only; the other parameters are left out of the schema and refused. All
            when omitted.

    .. versionadded:: 0.1.0
    """
    declared = [
        inspect.Parameter(
            f"p{number}", inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
        )
        for number, (annotation, default) in enumerate(query_parameters(filter_set, paging))
    ]
    refused = {"keyset": ("offset",), "offset": ("after", "before")}.get(paging or "", ())

    async def dependency(connection: HTTPConnection, **validated: object) -> FilterQuery:
        # FastAPI has validated the declared parameters; the set parses the raw query string
        # too, so that it refuses the parameters it does not allow.
        params = connection.query_params
        for name in refused:
            if name in params:
                raise InvalidFilterError(PAGING_ONLY[name])
        return filter_set.parse({key: params.getlist(key) for key in params})

    connection = inspect.Parameter(
        "connection", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=HTTPConnection
    )
    # FastAPI reads the parameters it declares and validates from the signature.
    dependency.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [connection, *declared], return_annotation=FilterQuery
    )
    dependency.__name__ = f"{filter_set.model.__name__}_filter_query"
    return dependency


# --- errors --------------------------------------------------------------------------------------

_CONFLICTS: dict[type[ConflictError], str] = {
    UniqueViolationError: "A record with the same unique value already exists.",
    ForeignKeyViolationError: (
        "The request refers to a record that does not exist, or the record is still in use."
    ),
    NotNullViolationError: "A required value is missing.",
    CheckViolationError: "A value is not allowed.",
}

_INVALID: dict[type[Exception], tuple[str, str]] = {
    InvalidFilterError: ("invalid_filter", "query"),
    InvalidCursorError: ("invalid_cursor", "query"),
    InvalidDataError: ("invalid_data", "body"),
}


def add_exception_handlers(app: FastAPI) -> None:
    """Answer herorepo errors that reach FastAPI with HTTP errors instead of a 500.

    =========================================  ======  ===========================================
    error                                      status  body
    =========================================  ======  ===========================================
    :class:`~herorepo.NotFoundError`           404     ``{"detail": "Hero with id=3 does not
                                                       exist."}``
    :class:`~herorepo.ConflictError`           409     ``{"detail": "A record with the same unique
                                                       value already exists."}``, one sentence per
                                                       kind of violation: no SQL, no constraint,
                                                       table or column name, no value
    :class:`~herorepo.TenantMismatchError`     403     ``{"detail": "This tenant may not write
                                                       that row."}``
    :class:`~herorepo.InvalidFilterError`,     422     FastAPI's validation error shape:
    :class:`~herorepo.InvalidCursorError`,             ``{"detail": [{"type": "invalid_filter",
    :class:`~herorepo.InvalidDataError`                "loc": ["query"], "msg": "..."}]}``
    =========================================  ======  ===========================================

    Conflicts are logged on the ``herorepo`` logger at INFO with the constraint details the
    response leaves out. Other herorepo errors (``LazyLoadError``, ``TransactionError``) are
    bugs in the app and stay 500s. Register your own handler after this call to replace one.

    .. versionadded:: 0.1.0
    """
    app.add_exception_handler(NotFoundError, _not_found)
    app.add_exception_handler(ConflictError, _conflict)
    app.add_exception_handler(TenantMismatchError, _forbidden)
    for error in _INVALID:
        app.add_exception_handler(error, _invalid)


async def _not_found(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, NotFoundError)
    # A search by criteria renders them as SQL; only a key lookup's message is for clients.
    detail = str(exc) if exc.ident is not None else f"{exc.model} not found."
    return JSONResponse({"detail": detail}, status_code=404)


async def _forbidden(request: Request, exc: Exception) -> JSONResponse:
    logger.info("%s %s answered 403 Forbidden: %s", request.method, request.url.path, exc)
    return JSONResponse({"detail": "This tenant may not write that row."}, status_code=403)


async def _conflict(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ConflictError)
    logger.info("%s %s answered 409 Conflict: %s", request.method, request.url.path, exc)
    detail = next(
        (_CONFLICTS[kind] for kind in type(exc).__mro__ if kind in _CONFLICTS),
        "The request conflicts with the current state of the data.",
    )
    return JSONResponse({"detail": detail}, status_code=409)


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    kind, location = next(
        (value for error, value in _INVALID.items() if isinstance(exc, error)),
        ("invalid", "query"),
    )
    error = {"type": kind, "loc": [location], "msg": str(exc)}
    return JSONResponse({"detail": [error]}, status_code=422)
