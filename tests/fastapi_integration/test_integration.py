"""herorepo.integrations.fastapi on every backend, with real commits (no outer transaction).

The app below commits for real, so that what a client is told can be checked against what the
database holds afterwards, through a plain SELECT.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx
import pytest
import pytest_asyncio
from fastapi import BackgroundTasks, Depends, FastAPI, HTTPException
from sqlalchemy import delete, func, inspect, select
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel
from sqlmodel import select as select_model

from herorepo import (
    ConfigurationError,
    Database,
    FilterQuery,
    FilterSet,
    Repository,
    TenantScope,
    TransactionError,
    UnitOfWork,
)
from herorepo.integrations.fastapi import (
    DatabaseDep,
    SessionDep,
    UnitOfWorkDep,
    add_exception_handlers,
    filter_query,
    get_database,
    get_unit_of_work,
    lifespan,
    repository,
    scope_to_tenants,
    tenant_header,
)
from herorepo.testing import checked_out_connections

from ..conftest import CONNECT_ARGS, backend_url

pytestmark = pytest.mark.asyncio


class Base(SQLModel, registry=registry()):
    pass


class Item(Base, table=True):
    __tablename__ = "api_item"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=50, unique=True)
    qty: int = 0


class ItemCreate(SQLModel):
    name: str
    qty: int = 0


class ItemRepository(Repository[Item]):
    pass


Items = Annotated[Repository[Item], Depends(repository(Item))]
ItemRepo = Annotated[ItemRepository, Depends(repository(ItemRepository))]
item_filters = FilterSet(Item, filters={"name": ["eq", "in"], "qty": ["ge"]}, sort=["name"])
ItemQuery = Annotated[FilterQuery, Depends(filter_query(item_filters))]
ItemOffsetQuery = Annotated[FilterQuery, Depends(filter_query(item_filters, paging="offset"))]
# The default scope, on purpose: its exit runs after the response has been sent.
LateUnitOfWork = Annotated[UnitOfWork, Depends(get_unit_of_work)]


def make_app(database: Database | None, notes: list[str]) -> FastAPI:
    app = FastAPI(lifespan=lifespan(database) if database is not None else None)
    add_exception_handlers(app)

    @app.post("/items/")
    async def create(data: ItemCreate, items: Items) -> Item:
        return await items.create(data)

    @app.get("/items/")
    async def listing(items: Items, query: ItemQuery) -> list[Item]:
        page = await items.keyset(*query.where, order_by=query.order_by, after=query.after)
        return page.items

    @app.get("/item-pages/")
    async def offset_pages(items: Items, query: ItemOffsetQuery) -> list[Item]:
        return await items.list(
            *query.where, order_by=query.order_by, offset=query.offset, limit=query.limit
        )

    @app.get("/items/{item_id}")
    async def read(item_id: int, items: ItemRepo) -> Item:
        return await items.get_one(item_id)

    @app.patch("/items/{item_id}")
    async def patch(item_id: int, data: dict[str, Any], items: Items) -> Item:
        return await items.update(item_id, data)

    @app.post("/unflushed/")
    async def unflushed(data: ItemCreate, uow: UnitOfWorkDep) -> dict[str, str]:
        uow.session.add(Item(name=data.name))  # flushed, and refused, only by the commit
        return {"status": "queued"}

    @app.post("/unflushed-late/")
    async def unflushed_late(data: ItemCreate, uow: LateUnitOfWork) -> dict[str, str]:
        uow.session.add(Item(name=data.name))
        return {"status": "queued"}

    @app.post("/fails/")
    async def fails(data: ItemCreate, items: Items) -> None:
        await items.create(data)
        raise HTTPException(status_code=400, detail="refused after the insert")

    @app.get("/shared/")
    async def shared(items: Items, item_repo: ItemRepo, uow: UnitOfWorkDep) -> dict[str, bool]:
        return {"shared": items.session is uow.session and item_repo.session is uow.session}

    @app.post("/session/")
    async def with_session(data: ItemCreate, session: SessionDep, commit: bool = True) -> None:
        session.add(Item(name=data.name))
        if commit:
            await session.commit()

    async def add_audit_row(database: Database, name: str) -> None:
        """A service function with a unit of work of its own: inside a request, it joins."""
        async with database.unit_of_work() as uow:
            await uow.repository(Item).create({"name": f"{name}-audit"})

    @app.post("/compose/")
    async def compose(data: ItemCreate, items: Items, database: DatabaseDep, fail: bool = False):  # type: ignore[no-untyped-def]
        await items.create(data)
        await add_audit_row(database, data.name)
        if fail:
            raise HTTPException(status_code=400, detail="refused after both writes")
        return {"status": "created"}

    @app.post("/on-commit/")
    async def after_commit(data: ItemCreate, items: Items, uow: UnitOfWorkDep) -> None:
        uow.on_commit(lambda: notes.append(f"committed {data.name}"))
        uow.session.add(Item(name=data.name))  # flushed, and maybe refused, by the commit

    @app.post("/notify/{item_id}")
    async def notify(item_id: int, database: DatabaseDep, tasks: BackgroundTasks) -> None:
        async def task() -> None:  # its own session: the request's is closed by now
            async with database.session() as session:
                item = await Repository(session, Item).get_one(item_id)
            notes.append(f"read {item.name}")

        tasks.add_task(task)

    @app.post("/notify-wrongly/{item_id}")
    async def notify_wrongly(item_id: int, items: Items, tasks: BackgroundTasks) -> None:
        async def task() -> None:  # captured the request's repository: its session is closed
            try:
                await items.get_one(item_id)
            except TransactionError as error:
                notes.append(f"refused: {error}")

        tasks.add_task(task)

    return app


@pytest_asyncio.fixture(scope="session")
async def api_database(backend: str) -> AsyncIterator[Database]:
    url = backend_url(backend)
    if backend == "sqlite":  # its own file: no queueing on the suite's SQLite lock
        url = url.replace("tests.db", "api.db")
    database = Database(url, connect_args=CONNECT_ARGS[backend])
    await database.drop_all(Base.metadata)
    await database.create_all(Base.metadata)
    yield database
    await database.drop_all(Base.metadata)
    await database.dispose()


@pytest_asyncio.fixture
async def db(api_database: Database) -> AsyncIterator[Database]:
    before = checked_out_connections(api_database)
    yield api_database
    leaked = checked_out_connections(api_database) - before
    async with api_database.engine.begin() as connection:
        await connection.execute(delete(Item.__table__))  # type: ignore[arg-type]
    assert leaked == 0, f"the test left {leaked} connection(s) checked out"


@pytest.fixture
def notes() -> list[str]:
    return []


@pytest_asyncio.fixture
async def client(db: Database, notes: list[str]) -> AsyncIterator[httpx.AsyncClient]:
    app = make_app(db, notes)
    app.dependency_overrides[get_database] = lambda: db  # the shared database; no lifespan
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def names(db: Database) -> list[str]:
    async with db.engine.connect() as connection:
        rows = await connection.execute(select(Item.__table__.c.name).order_by("name"))  # type: ignore[attr-defined]
        return [row[0] for row in rows]


# --- composition --------------------------------------------------------------------------------


async def test_a_service_unit_of_work_joins_the_request(
    client: httpx.AsyncClient, db: Database
) -> None:
    response = await client.post("/compose/", json={"name": "kept"})
    assert response.status_code == 200, response.text
    assert await names(db) == ["kept", "kept-audit"]
    response = await client.post("/compose/", params={"fail": "true"}, json={"name": "undone"})
    assert response.status_code == 400
    assert await names(db) == ["kept", "kept-audit"]  # the service's write went with the request


async def test_on_commit_runs_before_the_response_and_only_after_a_commit(
    client: httpx.AsyncClient, db: Database, notes: list[str]
) -> None:
    assert (await client.post("/on-commit/", json={"name": "once"})).status_code == 200
    assert notes == ["committed once"]
    response = await client.post("/on-commit/", json={"name": "once"})  # refused by the COMMIT
    assert response.status_code == 409
    assert notes == ["committed once"]


# --- lifespan ------------------------------------------------------------------------------------


async def test_lifespan_creates_tables_and_disposes_the_pool(backend: str) -> None:
    database = Database(backend_url(backend), connect_args=CONNECT_ARGS[backend])
    other = registry()

    class Own(SQLModel, registry=other):
        pass

    class Gadget(Own, table=True):
        __tablename__ = "api_gadget"
        id: int | None = Field(default=None, primary_key=True)

    app = FastAPI(lifespan=lifespan(database, create_tables=True, metadata=other.metadata))

    @app.get("/gadgets/")
    async def count(session: SessionDep) -> int:
        return (await session.exec(select(func.count()).select_from(Gadget))).one()[0]

    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                assert (await client.get("/gadgets/")).json() == 0
            assert database.engine.pool.checkedin() >= 1  # type: ignore[attr-defined]
        assert database.engine.pool.checkedin() == 0  # type: ignore[attr-defined]
    finally:
        async with database.engine.begin() as connection:
            assert await connection.run_sync(lambda c: inspect(c).has_table("api_gadget"))
            await connection.run_sync(other.metadata.drop_all)
        await database.dispose()


async def test_lifespan_disposes_the_pool_when_startup_fails() -> None:
    disposed: list[bool] = []

    class BrokenDatabase(Database):
        async def create_all(self, metadata: Any = None) -> None:
            raise RuntimeError("cannot create tables")

        async def dispose(self) -> None:
            disposed.append(True)
            await super().dispose()

    app = FastAPI(lifespan=lifespan(BrokenDatabase("sqlite+aiosqlite://"), create_tables=True))
    with pytest.raises(RuntimeError, match="cannot create tables"):
        async with app.router.lifespan_context(app):
            pass
    assert disposed == [True]


async def test_without_lifespan_the_error_says_how_to_fix_it(notes: list[str]) -> None:
    app = make_app(None, notes)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        with pytest.raises(ConfigurationError, match=r"lifespan\(db\)"):
            await client.get("/items/1")


# --- the unit of work per request -----------------------------------------------------------------


async def test_commits_before_the_response(client: httpx.AsyncClient, db: Database) -> None:
    response = await client.post("/items/", json={"name": "anvil", "qty": 2})
    assert response.status_code == 200
    assert response.json() == {"id": response.json()["id"], "name": "anvil", "qty": 2}
    assert await names(db) == ["anvil"]


async def test_a_failed_commit_is_answered_409_not_200(
    client: httpx.AsyncClient, db: Database
) -> None:
    assert (await client.post("/items/", json={"name": "anvil"})).status_code == 200
    # The duplicate is only flushed by the commit; the client must not be told "queued".
    response = await client.post("/unflushed/", json={"name": "anvil"})
    assert response.status_code == 409, response.text
    assert response.json() == {"detail": "A record with the same unique value already exists."}
    assert await names(db) == ["anvil"]


async def test_default_scope_would_answer_200_for_a_failed_commit(
    db: Database, notes: list[str]
) -> None:
    """Why the dependencies use scope="function": FastAPI's default ends them after sending."""
    app = make_app(db, notes)
    app.dependency_overrides[get_database] = lambda: db
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.post("/items/", json={"name": "anvil"})).status_code == 200
        response = await client.post("/unflushed-late/", json={"name": "anvil"})
    assert response.status_code == 200  # the client believes it; nothing was saved
    assert await names(db) == ["anvil"]


async def test_rolls_back_when_the_endpoint_raises(client: httpx.AsyncClient, db: Database) -> None:
    response = await client.post("/fails/", json={"name": "ghost"})
    assert response.status_code == 400
    assert await names(db) == []


async def test_repositories_of_a_request_share_its_unit_of_work(
    client: httpx.AsyncClient,
) -> None:
    assert (await client.get("/shared/")).json() == {"shared": True}


async def test_session_dependency_keeps_only_what_was_committed(
    client: httpx.AsyncClient, db: Database
) -> None:
    assert (await client.post("/session/", json={"name": "kept"})).status_code == 200
    response = await client.post("/session/", params={"commit": "false"}, json={"name": "lost"})
    assert response.status_code == 200
    assert await names(db) == ["kept"]


# --- errors as HTTP ------------------------------------------------------------------------------


async def test_not_found_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/items/424242")
    assert response.status_code == 404
    assert response.json() == {"detail": "Item with the id asked for does not exist."}


async def test_conflict_is_409_without_database_internals(
    client: httpx.AsyncClient, database_url: str
) -> None:
    await client.post("/items/", json={"name": "anvil"})
    response = await client.post("/items/", json={"name": "anvil"})
    assert response.status_code == 409
    body = response.text.lower()
    for internal in ("api_item", "insert", "unique constraint", "duplicate", "name", "anvil"):
        assert internal not in body, f"{internal!r} leaked into the 409 body: {response.text}"
    password = httpx.URL(database_url.replace("+asyncpg", "").replace("+aiomysql", "")).password
    assert not password or password not in response.text


async def test_conflict_is_logged_with_details(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    await client.post("/items/", json={"name": "anvil"})
    with caplog.at_level("INFO", logger="herorepo"):
        await client.post("/items/", json={"name": "anvil"})
    assert any("409 Conflict: Unique constraint" in record.message for record in caplog.records)


async def test_invalid_filter_is_422_naming_what_is_allowed(client: httpx.AsyncClient) -> None:
    response = await client.get("/items/", params={"colour": "red"})
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["type"] == "invalid_filter"
    assert error["loc"] == ["query"]
    assert "Filterable fields: name, qty" in error["msg"]


async def test_invalid_cursor_is_422(client: httpx.AsyncClient) -> None:
    response = await client.get("/items/", params={"after": "not-a-cursor"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "invalid_cursor"


async def test_invalid_data_is_422(client: httpx.AsyncClient) -> None:
    created = (await client.post("/items/", json={"name": "anvil"})).json()
    response = await client.patch(f"/items/{created['id']}", json={"qty": "many"})
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert (error["type"], error["loc"]) == ("invalid_data", ["body"])
    assert "Item.qty" in error["msg"]


async def test_filter_query_keeps_repeated_parameters(client: httpx.AsyncClient) -> None:
    for name in ("a", "b", "c"):
        await client.post("/items/", json={"name": name})
    response = await client.get("/items/", params=[("name__in", "a"), ("name__in", "c")])
    assert [item["name"] for item in response.json()] == ["a", "c"]


async def test_filter_query_lists_its_parameters_in_openapi(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    params = {p["name"]: p for p in paths["/items/"]["get"]["parameters"]}
    assert list(params) == [
        *("name", "name__in", "qty__ge", "order_by", "limit", "offset", "after", "before")
    ]
    assert all(p["in"] == "query" and not p["required"] for p in params.values())
    assert params["name"]["schema"]["type"] == "string"
    assert params["name__in"]["schema"]["items"] == {"type": "string"}
    assert "repeat the parameter, or separate values by commas" in params["name__in"]["description"]
    qty = params["qty__ge"]["schema"]
    assert (qty["type"], qty["minimum"], qty["maximum"]) == ("integer", -(2**31), 2**31 - 1)
    assert "Sortable: name." in params["order_by"]["description"]
    limit = params["limit"]["schema"]
    assert (limit["default"], limit["minimum"], limit["maximum"]) == (50, 1, 500)
    assert params["offset"]["schema"]["minimum"] == 0
    assert params["after"]["schema"]["type"] == "string"
    assert params["before"]["schema"]["type"] == "string"
    offset_paged = [p["name"] for p in paths["/item-pages/"]["get"]["parameters"]]
    assert offset_paged == ["name", "name__in", "qty__ge", "order_by", "limit", "offset"]


@pytest.mark.parametrize(
    ("params", "kind", "loc"),
    [
        ({"qty__ge": "many"}, "int_parsing", ["query", "qty__ge"]),
        ({"qty__ge": str(2**31)}, "less_than_equal", ["query", "qty__ge"]),
        ({"limit": "0"}, "greater_than_equal", ["query", "limit"]),
        ({"offset": "-1"}, "greater_than_equal", ["query", "offset"]),
        ({"name__in": ""}, "invalid_filter", ["query"]),
        ({"qty": "1"}, "invalid_filter", ["query"]),
    ],
    ids=["not-a-number", "out-of-range", "limit", "offset", "empty-list", "not-allowed"],
)
async def test_filter_query_refuses_bad_parameters_with_422(
    client: httpx.AsyncClient, params: dict[str, str], kind: str, loc: list[str]
) -> None:
    response = await client.get("/items/", params=params)
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert (error["type"], error["loc"]) == (kind, loc)


async def test_filter_query_pages_by_offset_only_when_asked(client: httpx.AsyncClient) -> None:
    for name in ("a", "b", "c"):
        await client.post("/items/", json={"name": name})
    params = {"order_by": "-name", "offset": "1", "limit": "1"}
    response = await client.get("/item-pages/", params=params)
    assert [item["name"] for item in response.json()] == ["b"]
    response = await client.get("/item-pages/", params={"after": "x"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["msg"] == "This list pages with offset=, not after=."
    response = await client.get("/item-pages/", params={"before": "x"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["msg"] == "This list pages with offset=, not before=."


# --- background tasks ----------------------------------------------------------------------------


async def test_background_task_reads_in_its_own_session(
    client: httpx.AsyncClient, notes: list[str]
) -> None:
    created = (await client.post("/items/", json={"name": "anvil"})).json()
    assert (await client.post(f"/notify/{created['id']}")).status_code == 200
    assert notes == ["read anvil"]


async def test_background_task_never_uses_the_request_session(
    client: httpx.AsyncClient, notes: list[str]
) -> None:
    created = (await client.post("/items/", json={"name": "anvil"})).json()
    assert (await client.post(f"/notify-wrongly/{created['id']}")).status_code == 200
    [note] = notes
    assert note.startswith("refused: This unit of work has ended, and its session and repositories")


# --- tenants -------------------------------------------------------------------------------------


class Note(Base, table=True):
    """Scoped to a tenant; declared in this module's own registry, as apps may."""

    __tablename__ = "api_note"

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(max_length=20)
    text: str = Field(max_length=50)


class NoteCreate(SQLModel):
    text: str
    tenant_id: str | None = None  # a client may try to write for another tenant


Notes = Annotated[Repository[Note], Depends(repository(Note))]


@pytest_asyncio.fixture
async def tenant_client(api_database: Database) -> AsyncIterator[httpx.AsyncClient]:
    scoped = Database(api_database.url, policies=[TenantScope()])
    app = FastAPI()
    add_exception_handlers(app)
    scope_to_tenants(app, tenant_header("X-Tenant"))
    app.dependency_overrides[get_database] = lambda: scoped

    @app.post("/notes", status_code=201)
    async def create(note: NoteCreate, notes: Notes) -> Note:
        return await notes.create(note.model_dump(exclude_none=True))

    @app.get("/notes")
    async def list_notes(notes: Notes) -> list[Note]:
        return await notes.list()

    @app.get("/notes/{note_id}")
    async def read(note_id: int, notes: Notes) -> Note:
        return await notes.get_one(note_id)

    @app.get("/session-notes")
    async def via_session(session: SessionDep) -> list[str]:
        return [n.text for n in (await session.exec(select_model(Note))).all()]

    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client
    finally:
        async with api_database.engine.begin() as connection:
            await connection.execute(delete(Note.__table__))  # type: ignore[arg-type]
        await scoped.dispose()


async def test_requests_are_scoped_to_the_tenant_of_their_header(
    tenant_client: httpx.AsyncClient,
) -> None:
    acme, globex = {"X-Tenant": "acme"}, {"X-Tenant": "globex"}
    created = await tenant_client.post("/notes", json={"text": "a"}, headers=acme)
    assert created.status_code == 201
    assert created.json()["tenant_id"] == "acme"
    note_id = created.json()["id"]
    await tenant_client.post("/notes", json={"text": "g"}, headers=globex)

    listed = await tenant_client.get("/notes", headers=globex)
    assert [n["text"] for n in listed.json()] == ["g"]
    assert (await tenant_client.get(f"/notes/{note_id}", headers=globex)).status_code == 404
    assert (await tenant_client.get(f"/notes/{note_id}", headers=acme)).status_code == 200
    session_notes = await tenant_client.get("/session-notes", headers=acme)
    assert session_notes.json() == ["a"]

    missing = await tenant_client.get("/notes")
    assert missing.status_code == 400
    assert "X-Tenant" in missing.json()["detail"]
    forged = await tenant_client.post(
        "/notes", json={"text": "x", "tenant_id": "acme"}, headers=globex
    )
    assert forged.status_code == 403
    assert [n["text"] for n in (await tenant_client.get("/notes", headers=acme)).json()] == ["a"]
