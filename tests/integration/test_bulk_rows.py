"""Bulk writes without objects, ``insert_rows()`` and ``upsert_rows()``, on the four write
variants: SQLite, PostgreSQL, MariaDB, and MariaDB without RETURNING (as MySQL 8)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import Column, String, select
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from herorepo import (
    AuditColumns,
    ConfigurationError,
    Database,
    InvalidDataError,
    ReadOnlyTransactionError,
    SoftDelete,
    TenantMismatchError,
    TenantScope,
    UniqueViolationError,
    tenant,
)
from herorepo.testing import count_queries

from ..models import Account, Hero, HeroCreate, Project, Team
from .helpers import hero_rows

pytestmark = pytest.mark.asyncio


async def rows_of(db: Database, model: Any) -> list[dict[str, Any]]:
    table = model.__table__
    async with db.engine.connect() as connection:
        result = await connection.execute(select(table).order_by(table.c.id))
        return [dict(row._mapping) for row in result]


def returning(db: Database) -> bool:
    return bool(db.engine.dialect.insert_executemany_returning)


def inserts(statements: list[str]) -> int:
    return sum(1 for s in statements if s.lstrip().upper().startswith("INSERT"))


# --- insert_rows --------------------------------------------------------------------------------


async def test_insert_rows_stores_mappings_and_schemas_and_returns_nothing(
    write_db: Database,
) -> None:
    rows: list[Any] = [
        {"name": "Deadpond", "secret_name": "Dive Wilson", "age": "30"},
        HeroCreate(name="Spider-Boy", secret_name="Pedro Parqueador"),
        {"name": "Banned", "secret_name": "s", "status": "banned"},
    ]
    async with write_db.unit_of_work() as uow:
        with count_queries(write_db) as queries:
            assert await uow.repository(Hero).insert_rows(rows) is None
        assert not uow.session.new
        assert not uow.session.identity_map  # no object was built or tracked
    # The rows set different columns (status): two executemany calls.
    assert inserts(queries.statements) == 2, queries
    stored = await hero_rows(write_db)
    assert [(r["name"], r["age"], r["status"]) for r in stored] == [
        ("Deadpond", 30, "active"),  # validated ("30"), and the server default applied
        ("Spider-Boy", None, "active"),
        ("Banned", None, "banned"),
    ]
    assert all(r["created_at"] is not None for r in stored)


async def test_insert_rows_returns_keys_in_input_order(write_db: Database) -> None:
    names = [f"Team {n:03d}" for n in (5, 1, 9, 3, 7, 2)]
    async with write_db.unit_of_work() as uow:
        keys = await uow.repository(Team).insert_rows(
            [{"name": name} for name in names], returning="keys"
        )
        assert await uow.repository(Team).insert_rows([], returning="keys") == []
        assert await uow.repository(Team).insert_rows([]) is None
    by_name = {r["name"]: r["id"] for r in await rows_of(write_db, Team)}
    assert keys == [by_name[name] for name in names]


async def test_given_keys_come_back_as_validated_without_returning(write_db: Database) -> None:
    async with write_db.unit_of_work() as uow:
        with count_queries(write_db) as queries:
            keys = await uow.repository(Hero).insert_rows(
                [
                    {"id": "41", "name": "a", "secret_name": "s"},
                    {"id": 7, "name": "b", "secret_name": "s"},
                ],
                returning="keys",
                allow={"id"},
            )
    assert keys == [41, 7]
    assert inserts(queries.statements) == 1
    assert not any("RETURNING" in s.upper() for s in queries.statements)
    assert [r["id"] for r in await hero_rows(write_db)] == [7, 41]


async def test_generated_keys_without_returning_and_without_a_unique_key_are_refused(
    write_db: Database,
) -> None:
    rows = [{"name": f"Hero {i}", "secret_name": "s"} for i in range(3)]
    async with write_db.unit_of_work() as uow:
        heroes = uow.repository(Hero)
        if returning(write_db):
            keys = await heroes.insert_rows(rows, returning="keys")
            assert len(keys) == 3
            assert keys == sorted(keys)
            return
        with count_queries(write_db) as queries, pytest.raises(ConfigurationError) as caught:
            await heroes.insert_rows(rows, returning="keys")
        assert queries.count == 0
        assert "need not be consecutive" in str(caught.value)
        assert "unique key" in str(caught.value)
        await heroes.insert_rows(rows)  # returning nothing works everywhere
    assert len(await hero_rows(write_db)) == 3


async def test_rows_past_the_parameter_limit_are_chunked(write_db: Database) -> None:
    # Two columns a row (name, headquarters): 31,000 rows are 62,000 values, past every
    # driver's limit of about 32,000 for one statement.
    names = [f"t{n:05d}" for n in range(31_000)]
    names.reverse()
    async with write_db.unit_of_work() as uow:
        with count_queries(write_db) as queries:
            keys = await uow.repository(Team).insert_rows(
                [{"name": name} for name in names], returning="keys"
            )
    assert inserts(queries.statements) >= 3, queries.count
    by_name = {r["name"]: r["id"] for r in await rows_of(write_db, Team)}
    assert len(by_name) == 31_000
    assert keys == [by_name[name] for name in names]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"name": "x" * 101, "secret_name": "s"}, "at most 100 characters"),
        ({"name": "nul\x00", "secret_name": "s"}, "NUL"),
        ({"name": "a", "secret_name": "s", "age": 2**31}, "outside the range of INTEGER"),
        ({"name": "a", "secret_name": "s", "age": "old"}, r"Hero.age \(item 1\)"),
        ({"name": "a", "secret_name": "s", "power": 3}, "has no field 'power'"),
        ({"name": "a", "secret_name": "s", "id": 5}, "cannot be set from request data"),
        ({"name": "a", "secret_name": "s", "team": {"name": "t"}}, "is a relationship"),
        ({"name": "a"}, "secret_name"),
    ],
)
async def test_values_are_refused_before_any_sql(
    write_db: Database, row: dict[str, Any], message: str
) -> None:
    async with write_db.unit_of_work() as uow:
        heroes = uow.repository(Hero)
        for call in (
            heroes.insert_rows([{"name": "ok", "secret_name": "s"}, row]),
            heroes.upsert_rows([{"name": "ok", "secret_name": "s"}, row], conflict=["name"]),
        ):
            with count_queries(write_db) as queries, pytest.raises(InvalidDataError, match=message):
                await call
            assert queries.count == 0, queries
        await heroes.insert_rows(
            [{"name": "after", "secret_name": "s"}]
        )  # the unit of work goes on
    assert [r["name"] for r in await hero_rows(write_db)] == ["after"]


async def test_model_instances_and_other_objects_are_refused(write_db: Database) -> None:
    async with write_db.unit_of_work() as uow:
        heroes = uow.repository(Hero)
        with pytest.raises(InvalidDataError, match="use add_many"):
            await heroes.insert_rows([Hero(name="a", secret_name="s")])
        with pytest.raises(InvalidDataError, match="from int"):
            await heroes.insert_rows([3])  # type: ignore[list-item]
        with pytest.raises(ConfigurationError, match="returning must be"):
            await heroes.insert_rows([], returning="key")  # type: ignore[call-overload]


async def test_a_refused_row_keeps_none_and_the_unit_of_work_goes_on(write_db: Database) -> None:
    async with write_db.unit_of_work() as uow:
        teams = uow.repository(Team)
        (avengers,) = await teams.insert_rows([{"name": "Avengers"}], returning="keys")
        rows = [{"name": f"New {i}"} for i in range(10)] + [{"name": "Avengers"}]
        with pytest.raises(UniqueViolationError) as caught:
            await teams.insert_rows(rows)
        if not write_db.config.show_values_in_errors:
            assert "Avengers" not in str(caught.value)
        with pytest.raises(UniqueViolationError):
            await teams.upsert_rows(
                [{"name": "Other", "id": avengers + 100}, {"name": "Third", "id": avengers}],
                conflict=["name"],
                allow={"id"},
            )
        await teams.insert_rows([{"name": "After"}])
    assert [r["name"] for r in await rows_of(write_db, Team)] == ["Avengers", "After"]


async def test_pending_objects_are_flushed_first(write_db: Database) -> None:
    async with write_db.unit_of_work() as uow:
        team = Team(name="Avengers")
        uow.session.add(team)
        await uow.session.flush()
        uow.session.add(other := Team(name="X-Force"))
        await uow.repository(Hero).insert_rows(
            [{"name": "a", "secret_name": "s", "team_id": team.id}]
        )
        assert other.id is not None  # flushed before the INSERT, as a flush would order it
    assert [r["team_id"] for r in await hero_rows(write_db)] == [team.id]


async def test_read_only_units_of_work_refuse_bulk_writes(write_db: Database) -> None:
    with pytest.raises(ReadOnlyTransactionError):
        async with write_db.unit_of_work(read_only=True) as uow:
            await uow.repository(Team).insert_rows([{"name": "x"}])
    assert await rows_of(write_db, Team) == []


# --- upsert_rows --------------------------------------------------------------------------------


async def test_upsert_rows_inserts_and_updates_and_returns_keys_in_order(
    write_db: Database,
) -> None:
    async with write_db.unit_of_work() as uow:
        teams = uow.repository(Team)
        first = await teams.insert_rows(
            [{"name": "Avengers", "headquarters": "NY"}, {"name": "X-Force"}], returning="keys"
        )
        keys = await teams.upsert_rows(
            [
                {"name": "New", "headquarters": "LA"},
                {"name": "X-Force", "headquarters": "Sister Margaret's"},
                {"name": "Avengers", "headquarters": "Stark Tower"},
            ],
            conflict=["name"],
            returning="keys",
        )
        assert (
            await teams.upsert_rows(
                [{"name": "X-Force", "headquarters": "kept"}], conflict=["name"], update=[]
            )
            is None
        )
    stored = {r["name"]: (r["id"], r["headquarters"]) for r in await rows_of(write_db, Team)}
    assert stored["Avengers"] == (first[0], "Stark Tower")
    assert stored["X-Force"] == (first[1], "Sister Margaret's")
    assert keys == [stored["New"][0], first[1], first[0]]


async def test_upsert_rows_refuses_unclear_rows_before_any_sql(write_db: Database) -> None:
    async with write_db.unit_of_work() as uow:
        teams = uow.repository(Team)
        cases: list[tuple[Any, str]] = [
            (teams.upsert_rows([{"name": "a"}, {"name": "a"}], conflict=["name"]), "Items 0 and 1"),
            (teams.upsert_rows([{"headquarters": "x"}], conflict=["nope"]), "unknown: nope"),
            (teams.upsert_rows([{"name": "a"}], conflict=[]), "needs conflict"),
            (teams.upsert_rows([{"name": "a"}], conflict=["name"], update=["id"]), "cannot update"),
            (
                teams.upsert_rows(
                    [{"name": "a", "id": 1}, {"name": "b"}], conflict=["name"], allow={"id"}
                ),
                "the same fields",
            ),
        ]
        for call, message in cases:
            with count_queries(write_db) as queries, pytest.raises(InvalidDataError, match=message):
                await call
            assert queries.count == 0


async def test_upsert_rows_never_updates_a_row_met_on_another_unique_key(
    write_db: Database,
) -> None:
    # MySQL's ON DUPLICATE KEY UPDATE takes any unique key: a row whose id belongs to another
    # team would update that team. herorepo finds it, and undoes the call.
    async with write_db.unit_of_work() as uow:
        teams = uow.repository(Team)
        avengers, xforce = await teams.insert_rows(
            [{"name": "Avengers"}, {"name": "X-Force"}], returning="keys"
        )
        with pytest.raises(UniqueViolationError):
            await teams.upsert_rows(
                [{"id": xforce, "name": "Avengers", "headquarters": "moved"}],
                conflict=["name"],
                allow={"id"},
            )
    stored = [(r["id"], r["name"], r["headquarters"]) for r in await rows_of(write_db, Team)]
    assert stored == [(avengers, "Avengers", ""), (xforce, "X-Force", "")]


# --- policies -----------------------------------------------------------------------------------

POLICIES = [TenantScope(), SoftDelete(), AuditColumns()]


@pytest_asyncio.fixture
async def scoped(write_db: Database) -> AsyncIterator[Database]:
    async with Database(write_db.url, policies=POLICIES) as db:
        yield db


async def test_policies_fill_the_tenant_and_audit_columns(
    scoped: Database, write_db: Database
) -> None:
    async with scoped.unit_of_work(tenant="a", actor="ann") as uow:
        keys = await uow.repository(Project).insert_rows(
            [{"code": "p1"}, {"code": "p2", "tenant_id": "a"}], returning="keys"
        )
        await uow.repository(Project).upsert_rows([{"code": "p3"}], conflict=["tenant_id", "code"])
    stored = await rows_of(write_db, Project)
    assert [r["id"] for r in stored[:2]] == keys
    assert {(r["tenant_id"], r["created_by"], r["updated_by"]) for r in stored} == {
        ("a", "ann", "ann")
    }
    assert all(r["created_at"] is not None and r["created_at"] == r["updated_at"] for r in stored)


async def test_policies_refuse_another_tenant_before_any_sql(
    scoped: Database, write_db: Database
) -> None:
    async with scoped.unit_of_work(tenant="a") as uow:
        projects = uow.repository(Project)
        with count_queries(scoped) as queries:
            with pytest.raises(TenantMismatchError):
                await projects.insert_rows([{"code": "x"}, {"code": "y", "tenant_id": "b"}])
            with pytest.raises(TenantMismatchError):
                await projects.upsert_rows(
                    [{"code": "y", "tenant_id": "b"}], conflict=["code", "tenant_id"]
                )
        assert queries.count == 0
    async with scoped.unit_of_work(all_tenants=True) as uow:
        with pytest.raises(TenantMismatchError, match="set explicitly"):
            await uow.repository(Project).insert_rows([{"code": "orphan"}])
    assert await rows_of(write_db, Project) == []


async def test_upsert_rows_never_touches_another_tenants_row(
    scoped: Database, write_db: Database
) -> None:
    async with scoped.unit_of_work(tenant="b") as uow:
        (theirs,) = await uow.repository(Project).insert_rows(
            [{"code": "p1", "name": "beta"}], returning="keys"
        )
    with tenant("a"):
        async with scoped.unit_of_work() as uow:
            projects = uow.repository(Project)
            with pytest.raises(TenantMismatchError, match="another tenant holds the same id"):
                await projects.upsert_rows(
                    [{"id": theirs, "code": "p9", "name": "stolen"}], conflict=["id"]
                )
            # (tenant_id, code): b's p1 is not the row a's p1 conflicts with.
            (mine,) = await projects.upsert_rows(
                [{"code": "p1", "name": "alpha"}], conflict=["tenant_id", "code"], returning="keys"
            )
    stored = {
        r["id"]: (r["tenant_id"], r["code"], r["name"]) for r in await rows_of(write_db, Project)
    }
    assert stored == {theirs: ("b", "p1", "beta"), mine: ("a", "p1", "alpha")}


async def test_upsert_rows_brings_a_soft_deleted_row_back(
    scoped: Database, write_db: Database
) -> None:
    async with scoped.unit_of_work(tenant="a") as uow:
        (key,) = await uow.repository(Project).insert_rows([{"code": "p1"}], returning="keys")
        await uow.repository(Project).delete(key)
    async with scoped.unit_of_work(tenant="a") as uow:
        again = await uow.repository(Project).upsert_rows(
            [{"code": "p1", "name": "again"}], conflict=["tenant_id", "code"], returning="keys"
        )
        assert again == [key]
        assert (await uow.repository(Project).get_one(key)).name == "again"
    (row,) = await rows_of(write_db, Project)
    assert row["deleted_at"] is None


async def test_a_version_column_is_protected(write_db: Database) -> None:
    async with write_db.unit_of_work() as uow:
        with pytest.raises(InvalidDataError, match="version column"):
            await uow.repository(Account).insert_rows([{"owner": "a", "version": 3}])
        await uow.repository(Account).insert_rows([{"owner": "a"}])
    assert [r["version"] for r in await rows_of(write_db, Account)] == [1]


class _Renamed(SQLModel, registry=registry()):
    pass


class Item(_Renamed, table=True):
    """A conflict column whose database name differs from its field name."""

    __tablename__ = "hr_bulk_renamed"

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(sa_column=Column("item_code", String(20), unique=True, nullable=False))
    qty: int = 0


async def test_upsert_rows_on_a_column_named_otherwise_in_the_database(write_db: Database) -> None:
    await write_db.create_all(_Renamed.metadata)
    try:
        for qty in (5, 7):
            async with write_db.unit_of_work() as uow:
                items = uow.repository(Item)
                await items.upsert_rows([{"code": "a", "qty": qty}], conflict=["code"])
        async with write_db.unit_of_work() as uow:
            assert [(i.code, i.qty) for i in await uow.repository(Item).list()] == [("a", 7)]
        with pytest.raises(InvalidDataError, match=r"same conflict values \(code\)"):
            async with write_db.unit_of_work() as uow:
                rows = [{"code": "b", "qty": 1}, {"code": "b", "qty": 2}]
                await uow.repository(Item).upsert_rows(rows, conflict=["code"])
    finally:
        await write_db.drop_all(_Renamed.metadata)
