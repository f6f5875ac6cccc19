"""Tenant scoping, soft delete and audit columns, on every read and write path and backend.

Two tenants, ``a`` and ``b``, each with a project coded ``p1`` and tasks; one task of ``b``
points at ``a``'s project (made by admin work), so that a relationship load would show it if
the scope did not reach relationships. Every check is made as tenant ``a``, and reads the
database independently (plain Core on the unscoped engine) where it asserts that nothing of
``b`` changed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import (
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    exists,
    func,
    text,
    true,
)
from sqlmodel import select

from herorepo import (
    AuditColumns,
    ConfigurationError,
    Database,
    FilterSet,
    InvalidCursorError,
    MissingTenantError,
    NotFoundError,
    SoftDelete,
    TenantMismatchError,
    TenantScope,
    TransactionError,
    UniqueViolationError,
    UnitOfWork,
    acting_as,
    joined,
    tenant,
)

from ..models import Hero, Project, Task, Ticket
from .helpers import UNIT_OF_WORK_OBJECTS, cyclic_garbage

pytestmark = pytest.mark.asyncio

POLICIES = [TenantScope(), SoftDelete(), AuditColumns()]
PROJECTS = FilterSet(Project, filters={"code": "*", "name": "*"}, sort=["code", "id"])


@dataclass
class World:
    db: Database  # with the policies
    plain: Database  # the same database, no policies: the independent view
    a: int  # project ids
    b: int
    a_tasks: list[int]
    b_task_on_a: int  # a task of b pointing at a's project


async def rows(plain: Database, model: Any) -> list[dict[str, Any]]:
    table = model.__table__
    async with plain.engine.connect() as connection:
        result = await connection.execute(select(table).order_by(table.c.id))
        return [dict(row._mapping) for row in result]


@pytest_asyncio.fixture
async def world(write_db: Database) -> AsyncIterator[World]:
    async with Database(write_db.url, policies=POLICIES) as db:
        with tenant("a"), acting_as("ann"):
            async with db.unit_of_work() as uow:
                a = await uow.repository(Project).create({"code": "p1", "name": "alpha"})
                tasks = await uow.repository(Task).add_many(
                    [{"title": f"a{i}", "project_id": a.id} for i in range(3)]
                )
        async with db.unit_of_work(tenant="b", actor="bob") as uow:
            b = await uow.repository(Project).create({"code": "p1", "name": "beta"})
            await uow.repository(Task).create({"title": "b0", "project_id": b.id})
        async with db.unit_of_work(all_tenants=True) as uow:  # admin work may link anything
            cross = await uow.repository(Task).create(
                {"tenant_id": "b", "title": "b-on-a", "project_id": a.id}
            )
        assert a.id is not None
        assert b.id is not None
        assert cross.id is not None
        yield World(db, write_db, a.id, b.id, [t.id for t in tasks if t.id], cross.id)


def a_only(objects: list[Any]) -> None:
    assert objects, "the read found nothing at all"
    assert {o.tenant_id for o in objects} == {"a"}


# --- reads ----------------------------------------------------------------------------------------

READS: dict[str, Callable[[UnitOfWork, World], Awaitable[list[Any]]]] = {}


def read(name: str) -> Callable[[Any], Any]:
    def register(function: Any) -> Any:
        READS[name] = function
        return function

    return register


@read("get")
async def _get(uow: UnitOfWork, w: World) -> list[Any]:
    projects = uow.repository(Project)
    assert await projects.get(w.b) is None
    with pytest.raises(NotFoundError):
        await projects.get_one(w.b)
    return [await projects.get_one(w.a)]


@read("get_many")
async def _get_many(uow: UnitOfWork, w: World) -> list[Any]:
    return await uow.repository(Project).get_many([w.a, w.b])


@read("find")
async def _find(uow: UnitOfWork, w: World) -> list[Any]:
    projects = uow.repository(Project)
    return [await projects.find_one(code="p1"), await projects.find(Project.code == "p1")]


@read("list")
async def _list(uow: UnitOfWork, w: World) -> list[Any]:
    found = await uow.repository(Project).list(order_by="code")
    assert len(found) == 1
    return found


@read("count-exists")
async def _count(uow: UnitOfWork, w: World) -> list[Any]:
    projects = uow.repository(Project)
    assert await projects.count() == 1
    assert await uow.repository(Task).count() == 3
    assert not await projects.exists(Project.id == w.b)
    assert not await uow.repository(Task).exists(id=w.b_task_on_a)
    return await projects.list()


@read("page")
async def _page(uow: UnitOfWork, w: World) -> list[Any]:
    page = await uow.repository(Task).page(count=True, limit=10)
    assert page.total == 3
    return page.items


@read("keyset")
async def _keyset(uow: UnitOfWork, w: World) -> list[Any]:
    tasks = uow.repository(Task)
    first = await tasks.keyset(order_by="title", limit=2)
    assert first.next_cursor is not None
    rest = await tasks.keyset(order_by="title", after=first.next_cursor, limit=2)
    assert rest.next_cursor is None
    return [*first.items, *rest.items]


@read("stream")
async def _stream(uow: UnitOfWork, w: World) -> list[Any]:
    return [task async for task in uow.repository(Task).stream(batch_size=1)]


@read("filterset")
async def _filterset(uow: UnitOfWork, w: World) -> list[Any]:
    query = PROJECTS.parse({"code": "p1", "order_by": "-id"})
    return await uow.repository(Project).list(*query.where, order_by=query.order_by)


@read("own-select")
async def _own_select(uow: UnitOfWork, w: World) -> list[Any]:
    session = uow.session
    assert (await session.exec(select(func.count()).select_from(Project))).one() == 1
    gone = select(exists().where(Task.id == w.b_task_on_a))
    assert (await session.exec(gone)).one() is False
    in_subquery = select(Project).where(Project.id.in_(select(Task.project_id)))
    assert len((await session.exec(in_subquery)).all()) == 1
    joined_rows = (await session.exec(select(Task).join(Project))).all()
    assert len(joined_rows) == 3
    assert (await session.exec(select(Project.tenant_id))).all() == ["a"]
    assert await session.get(Project, w.b) is None
    return [*(await session.exec(select(Project))).all(), *joined_rows]


@read("eager-selectin")
async def _selectin(uow: UnitOfWork, w: World) -> list[Any]:
    project = await uow.repository(Project).get_one(w.a, load=[Project.tasks])
    assert sorted(t.title for t in project.tasks) == ["a0", "a1", "a2"]
    return [project, *project.tasks]


@read("eager-joined")
async def _joined(uow: UnitOfWork, w: World) -> list[Any]:
    project = await uow.repository(Project).get_one(w.a, load=[joined(Project.tasks)])
    assert sorted(t.title for t in project.tasks) == ["a0", "a1", "a2"]
    tasks = await uow.repository(Task).list(load=[joined(Task.project)])
    assert {t.project.code for t in tasks if t.project} == {"p1"}
    return [project, *project.tasks, *tasks]


@pytest.mark.parametrize("path", sorted(READS))
async def test_reads_see_their_tenant_only(world: World, path: str) -> None:
    async with world.db.unit_of_work(tenant="a", read_only=True) as uow:
        a_only(await READS[path](uow, world))


async def test_a_cursor_is_bound_to_its_tenant(world: World) -> None:
    async with world.db.unit_of_work(tenant="a", read_only=True) as uow:
        page = await uow.repository(Task).keyset(order_by="title", limit=1)
    assert page.next_cursor is not None
    async with world.db.unit_of_work(tenant="b", read_only=True) as uow:
        with pytest.raises(InvalidCursorError, match="signature"):
            await uow.repository(Task).keyset(order_by="title", after=page.next_cursor, limit=1)


# --- writes ---------------------------------------------------------------------------------------


async def b_unchanged(w: World) -> None:
    (b_project,) = [r for r in await rows(w.plain, Project) if r["tenant_id"] == "b"]
    assert (b_project["name"], b_project["deleted_at"]) == ("beta", None)
    b_tasks = [r for r in await rows(w.plain, Task) if r["tenant_id"] == "b"]
    assert sorted((t["title"], t["deleted_at"]) for t in b_tasks) == [
        ("b-on-a", None),
        ("b0", None),
    ]


WRITES: dict[str, Callable[[UnitOfWork, World], Awaitable[None]]] = {}


def write(name: str) -> Callable[[Any], Any]:
    def register(function: Any) -> Any:
        WRITES[name] = function
        return function

    return register


@write("update-by-key")
async def _update_key(uow: UnitOfWork, w: World) -> None:
    with pytest.raises(NotFoundError):
        await uow.repository(Project).update(w.b, {"name": "stolen"})


@write("delete-by-key")
async def _delete_key(uow: UnitOfWork, w: World) -> None:
    with pytest.raises(NotFoundError):
        await uow.repository(Project).delete(w.b)
    with pytest.raises(NotFoundError):
        await uow.repository(Task).purge(w.b_task_on_a)


@write("update_many")
async def _update_many(uow: UnitOfWork, w: World) -> None:
    assert await uow.repository(Project).update_many(true(), values={"name": "all"}) == 1
    assert await uow.repository(Task).update_many(Task.project_id == w.a, values={"done": 1}) == 3


@write("delete_many")
async def _delete_many(uow: UnitOfWork, w: World) -> None:
    assert await uow.repository(Task).delete_many(Task.project_id == w.a) == 3


@write("move-to-another-tenant")
async def _move(uow: UnitOfWork, w: World) -> None:
    with pytest.raises(TenantMismatchError):
        await uow.repository(Project).update(w.a, {"tenant_id": "b"})


@write("create-for-another-tenant")
async def _create_other(uow: UnitOfWork, w: World) -> None:
    with pytest.raises(TenantMismatchError):
        await uow.repository(Project).create({"code": "x", "tenant_id": "b"})


@write("add_many-for-another-tenant")
async def _add_many_other(uow: UnitOfWork, w: World) -> None:
    with pytest.raises(TenantMismatchError):
        await uow.repository(Task).add_many([{"title": "x"}, {"title": "y", "tenant_id": "b"}])


@write("session-add-for-another-tenant")
async def _session_add(uow: UnitOfWork, w: World) -> None:
    uow.session.add(Task(tenant_id="b", title="sneaky"))
    with pytest.raises(TenantMismatchError):
        await uow.session.flush()


@write("upsert-onto-another-tenants-row")
async def _upsert(uow: UnitOfWork, w: World) -> None:
    with pytest.raises(TenantMismatchError, match="another tenant holds the same id"):
        await uow.repository(Project).upsert({"id": w.b, "code": "z", "name": "x"}, conflict=["id"])


@write("upsert-onto-another-tenants-key")
async def _upsert_code(uow: UnitOfWork, w: World) -> None:
    # (tenant_id, code) is unique: a's p1 is the conflicting row, b's is not reachable.
    row = await uow.repository(Project).upsert(
        {"code": "p1", "name": "renamed"}, conflict=["tenant_id", "code"]
    )
    assert (row.id, row.tenant_id, row.name) == (w.a, "a", "renamed")


@pytest.mark.parametrize("path", sorted(WRITES))
async def test_writes_never_touch_another_tenant(world: World, path: str) -> None:
    try:
        async with world.db.unit_of_work(tenant="a") as uow:
            await WRITES[path](uow, world)
    except (TransactionError, TenantMismatchError):
        pass  # the refused write failed the unit of work (or its commit), as a database error would
    await b_unchanged(world)


async def test_writes_fill_the_tenant(world: World) -> None:
    async with world.db.unit_of_work(tenant="a") as uow:
        created = await uow.repository(Project).create({"code": "new"})
        many = await uow.repository(Task).add_many([{"title": "n1"}, {"title": "n2"}])
        upserted = await uow.repository(Project).upsert(
            {"code": "up"}, conflict=["tenant_id", "code"]
        )
        uow.session.add(added := Task(title="added"))
        await uow.session.flush()
    assert {o.tenant_id for o in [created, *many, upserted, added]} == {"a"}


# --- fail closed, and the escape hatch ------------------------------------------------------------


async def test_a_scoped_model_without_a_tenant_is_refused(world: World) -> None:
    for attempt in (
        lambda uow: uow.repository(Project).list(),
        lambda uow: uow.repository(Task).create({"title": "x"}),
        lambda uow: uow.session.exec(select(Task)),
        lambda uow: uow.session.exec(select(func.count()).select_from(Project)),
    ):
        with pytest.raises(MissingTenantError, match="no tenant is set"):
            async with world.db.unit_of_work() as uow:
                await attempt(uow)
    async with world.db.unit_of_work() as uow:  # models without a tenant column still work
        assert await uow.repository(Hero).count() == 0


async def test_all_tenants_is_explicit_admin_work(world: World) -> None:
    async with world.db.unit_of_work(all_tenants=True) as uow:
        assert await uow.repository(Project).count() == 2
        with pytest.raises(TenantMismatchError, match="set explicitly"):
            await uow.repository(Project).create({"code": "orphan"})


async def test_the_tenant_is_fixed_per_unit_of_work(world: World) -> None:
    with tenant("a"):
        async with world.db.unit_of_work() as uow:
            with tenant("b"):  # too late: the session took a's tenant when it was made
                assert await uow.repository(Project).count() == 1
                assert (await uow.repository(Project).find_one(code="p1")).name == "alpha"
            with pytest.raises(TransactionError, match="tenant"):
                async with world.db.unit_of_work(tenant="b"):
                    pass


# --- soft delete ----------------------------------------------------------------------------------


async def test_soft_delete_hides_rows_until_restored_and_purge_removes_them(world: World) -> None:
    task = world.a_tasks[0]
    async with world.db.unit_of_work(tenant="a") as uow:
        tasks = uow.repository(Task)
        loaded = await tasks.get_one(task)
        await tasks.delete(task)
        assert loaded.deleted_at is not None
        assert await tasks.get(task) is None  # also when the object is in the session
        assert await tasks.count() == 2
        project = await uow.repository(Project).get_one(world.a, load=[Project.tasks])
        assert sorted(t.title for t in project.tasks) == ["a1", "a2"]
        assert await tasks.with_deleted().count() == 3
        assert (await tasks.with_deleted().get_one(task)).title == "a0"
        with pytest.raises(NotFoundError):
            await tasks.delete(task)  # deleted already
        assert await tasks.delete_many(Task.title.in_(["a0", "a1"])) == 1
    stored = {r["title"]: r["deleted_at"] for r in await rows(world.plain, Task)}
    assert stored["a0"] is not None
    assert stored["a1"] is not None
    assert stored["a2"] is None
    async with world.db.unit_of_work(tenant="a") as uow:
        restored = await uow.repository(Task).restore(task)
        assert restored.deleted_at is None
        await uow.repository(Task).purge(world.a_tasks[1])
    titles = sorted(r["title"] for r in await rows(world.plain, Task) if r["tenant_id"] == "a")
    assert titles == ["a0", "a2"]
    await b_unchanged(world)


async def test_an_upsert_brings_a_soft_deleted_row_back(world: World) -> None:
    async with world.db.unit_of_work(tenant="a") as uow:
        await uow.repository(Project).delete(world.a)
    async with world.db.unit_of_work(tenant="a") as uow:
        back = await uow.repository(Project).upsert(
            {"code": "p1", "name": "again"}, conflict=["tenant_id", "code"]
        )
        assert (back.id, back.name, back.deleted_at) == (world.a, "again", None)


# --- audit columns --------------------------------------------------------------------------------


async def test_the_audit_clock_leaves_no_cycle_behind(world: World) -> None:
    with cyclic_garbage() as kept:
        for n in range(3):
            async with world.db.unit_of_work(tenant="a", actor="carol") as uow:
                await uow.repository(Project).create({"code": f"cycle{n}"})
        del uow
    assert not kept & UNIT_OF_WORK_OBJECTS


async def test_audit_columns_on_every_write_path(world: World) -> None:
    async with world.db.unit_of_work(tenant="a", actor="carol") as uow:
        projects = uow.repository(Project)
        one = await projects.create({"code": "c1"})
        two, three = await projects.add_many([{"code": "c2"}, {"code": "c3"}])
        four = await projects.upsert({"code": "c4"}, conflict=["tenant_id", "code"])
    made = [one, two, three, four]
    assert {p.created_by for p in made} == {"carol"} == {p.updated_by for p in made}
    assert len({p.created_at for p in made}) == 1  # one clock per transaction
    stamp = one.created_at
    assert isinstance(stamp, datetime)
    assert stamp.utcoffset() is not None  # SQLModel's datetime columns are aware UTC
    assert {p.updated_at for p in made} == {stamp}
    if world.db.backend == "mysql":
        await asyncio.sleep(1.05)  # DATETIME keeps whole seconds there: let the clock move on
    with acting_as("dave"):
        async with world.db.unit_of_work(tenant="a") as uow:
            projects = uow.repository(Project)
            changed = await projects.update(one.id, {"name": "by key"})
            loaded = await projects.get_one(two.id)
            await projects.update(loaded, {"name": "by object"})
            assert await projects.update_many(Project.code == "c3", values={"name": "bulk"}) == 1
            await projects.upsert(
                {"code": "c4", "name": "upserted"}, conflict=["tenant_id", "code"]
            )
    by_code = {r["code"]: r for r in await rows(world.plain, Project) if r["tenant_id"] == "a"}
    for code in ("c1", "c2", "c3", "c4"):
        row = by_code[code]
        assert (row["created_by"], row["updated_by"]) == ("carol", "dave"), code
        assert row["updated_at"] > row["created_at"], code
    assert changed.updated_by == "dave"


# --- PostgreSQL row-level security ----------------------------------------------------------------

ROLE = "herorepo_rls_app"


async def test_row_level_security_stops_raw_sql_too(world: World) -> None:
    if world.db.backend != "postgresql":  # the scoping above holds there; RLS does not exist
        with pytest.raises(ConfigurationError, match="PostgreSQL"):
            Database(world.db.url, policies=[TenantScope(row_level_security=True)])
        return
    statements = [
        f"DO $$ BEGIN CREATE ROLE {ROLE} LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON hr_project TO {ROLE}",
        "ALTER TABLE hr_project ENABLE ROW LEVEL SECURITY",
        "DROP POLICY IF EXISTS tenant_rows ON hr_project",
        "CREATE POLICY tenant_rows ON hr_project "
        "USING (tenant_id = current_setting('herorepo.tenant', true))",
    ]
    undo = [
        "DROP POLICY IF EXISTS tenant_rows ON hr_project",
        "ALTER TABLE hr_project DISABLE ROW LEVEL SECURITY",
        f"REVOKE ALL ON hr_project FROM {ROLE}",
    ]
    async with world.plain.engine.begin() as connection:
        for statement in statements:
            await connection.execute(text(statement))
    url = world.db.url.set(username=ROLE)
    try:
        scope = TenantScope(row_level_security=True)
        async with Database(url, policies=[scope]) as app:
            raw = text("SELECT tenant_id FROM hr_project")
            async with app.unit_of_work(tenant="a") as uow:
                assert (await uow.session.exec(raw)).scalars().all() == ["a"]  # type: ignore[call-overload]
            async with app.unit_of_work(tenant="b") as uow:
                assert (await uow.session.exec(raw)).scalars().all() == ["b"]  # type: ignore[call-overload]
            async with app.unit_of_work(all_tenants=True) as uow:  # no tenant: no rows
                assert (await uow.session.exec(raw)).scalars().all() == []  # type: ignore[call-overload]
    finally:
        async with world.plain.engine.begin() as connection:
            for statement in undo:
                await connection.execute(text(statement))


async def test_a_number_of_a_soft_deleted_row_can_be_used_again(world: World) -> None:
    # The recipe of docs/policies.md: a unique index on a generated column that is NULL for
    # deleted rows. The same model on every backend.
    async with world.db.unit_of_work(tenant="a") as uow:
        tickets = uow.repository(Ticket)
        first = await tickets.create({"number": "T-1"})
        assert first.live_number == "T-1"
        with pytest.raises(UniqueViolationError):
            async with uow.savepoint():
                await tickets.create({"number": "T-1"})
        await tickets.delete(first.id)
        again = await tickets.create({"number": "T-1"})
        assert again.id != first.id
        with pytest.raises(UniqueViolationError):  # the deleted one cannot come back beside it
            async with uow.savepoint():
                await tickets.restore(first.id)
    async with world.db.unit_of_work(tenant="b") as uow:  # unique per tenant
        await uow.repository(Ticket).create({"number": "T-1"})


PARTIAL = MetaData()
PARTIAL_TABLE = Table(
    "hr_partial_ticket",
    PARTIAL,
    Column("id", Integer, primary_key=True),
    Column("number", String(20), nullable=False),
    Column("deleted_at", DateTime, nullable=True),
    Index(
        "uq_hr_partial_live",
        "number",
        unique=True,
        postgresql_where=text("deleted_at IS NULL"),
        sqlite_where=text("deleted_at IS NULL"),
    ),
)


async def test_the_partial_index_recipe_on_postgresql_and_sqlite(write_db: Database) -> None:
    await write_db.create_all(PARTIAL)
    insert = PARTIAL_TABLE.insert()
    deleted, live = {"number": "T-1", "deleted_at": datetime(2026, 1, 1)}, {"number": "T-1"}
    try:
        async with write_db.engine.begin() as connection:
            await connection.execute(insert, deleted)
        if write_db.backend == "mysql":
            # No partial indexes there: the index covers deleted rows too, which is why MySQL
            # and MariaDB take the generated column of the test above.
            with pytest.raises(UniqueViolationError):
                async with write_db.engine.begin() as connection:
                    await connection.execute(insert, live)
            return
        async with write_db.engine.begin() as connection:
            await connection.execute(insert, live)
        with pytest.raises(UniqueViolationError):
            async with write_db.engine.begin() as connection:
                await connection.execute(insert, live)
    finally:
        await write_db.drop_all(PARTIAL)


async def test_a_soft_deleted_row_is_left_out_of_every_read(world: World) -> None:
    gone = world.a_tasks[1]
    async with world.db.unit_of_work(tenant="a") as uow:
        await uow.repository(Task).delete(gone)
    async with world.db.unit_of_work(tenant="a", read_only=True) as uow:
        tasks = uow.repository(Task)
        session = uow.session
        reads = {
            "get_many": await tasks.get_many(world.a_tasks),
            "find": [await tasks.find_one(title="a0"), await tasks.find(title="a1")],
            "list": await tasks.list(),
            "page": (await tasks.page(limit=10)).items,
            "keyset": (await tasks.keyset(limit=10)).items,
            "stream": [task async for task in tasks.stream(batch_size=1)],
            "own select": list((await session.exec(select(Task))).all()),
            "relationship": (
                await uow.repository(Project).get_one(world.a, load=[Project.tasks])
            ).tasks,
        }
        for path, found in reads.items():
            ids = [task.id for task in found if task is not None]
            assert gone not in ids, path
            assert ids, path
        assert await tasks.get(gone) is None
        assert not await tasks.exists(id=gone)
        assert gone in [t.id for t in await tasks.with_deleted().list()]


async def test_purging_a_parent_reaches_its_soft_deleted_children(world: World) -> None:
    # The ORM sets the children's foreign key to NULL when it deletes the parent; it must load
    # the soft-deleted children for that too, or they would keep pointing at a deleted row.
    async with world.db.unit_of_work(tenant="a") as uow:
        await uow.repository(Task).delete(world.a_tasks[0])
    async with world.db.unit_of_work(all_tenants=True) as uow:  # b's task points at a's project
        await uow.repository(Project).purge(world.a)
    orphans = {r["title"]: r["project_id"] for r in await rows(world.plain, Task)}
    assert orphans["a0"] is None  # soft-deleted, and still reached
    assert orphans["a1"] is None
    assert orphans["b-on-a"] is None
