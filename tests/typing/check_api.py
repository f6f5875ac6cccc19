"""Inferred types of the public API. Checked by mypy --strict and pyright; never run."""

from collections.abc import Sequence
from typing import Literal

from sqlalchemy import select as sa_select
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel import Field, Relationship, SQLModel, col
from sqlmodel.ext.asyncio.session import AsyncSession
from typing_extensions import assert_type

from herorepo import (
    AfterCommitError,
    AuditColumns,
    Database,
    DetachedLoadError,
    EngineConfig,
    FilterQuery,
    FilterSet,
    KeysetPage,
    LazyLoadError,
    Page,
    PoolStats,
    QueryTags,
    ReadOnlyTransactionError,
    Replicas,
    Repository,
    RetryPolicy,
    SoftDelete,
    TenantScope,
    TransactionError,
    UnitOfWork,
    acting_as,
    eager,
    joined,
    tenant,
)


class Team(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    heroes: list["Hero"] = Relationship(back_populates="team")


class Hero(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str
    age: int | None = None
    team_id: int | None = Field(default=None, foreign_key="team.id")
    team: Team | None = Relationship(back_populates="heroes")


class HeroRepository(Repository[Hero]):
    async def adults(self) -> list[Hero]:
        return await self.list(col(Hero.age) >= 18)


async def check(db: Database, session: AsyncSession) -> None:
    assert_type(db.engine, AsyncEngine)
    assert_type(db.sessionmaker, async_sessionmaker[AsyncSession])
    assert_type(db.session(), AsyncSession)
    assert_type(db.unit_of_work(), UnitOfWork)
    assert_type(Database.from_env(), Database)
    assert_type(EngineConfig(pool_size=3).pool_size, int | None)

    heroes = Repository(session, Hero)
    assert_type(heroes, Repository[Hero])
    assert_type(await heroes.get(1), Hero | None)
    assert_type(await heroes.get_one(1), Hero)
    assert_type(await heroes.get_many([1, 2]), list[Hero])
    assert_type(await heroes.find(name="x"), Hero | None)
    assert_type(await heroes.find_one(Hero.name == "x"), Hero)
    assert_type(await heroes.list(Hero.name == "x", order_by=Hero.name, limit=10), list[Hero])
    assert_type(await heroes.count(), int)
    assert_type(await heroes.exists(name="x"), bool)
    assert_type(await heroes.create({"name": "x"}), Hero)
    assert_type(await heroes.add_many([Hero(name="x")]), list[Hero])
    assert_type(await heroes.update(1, {"name": "y"}), Hero)
    assert_type(await heroes.delete(1), None)

    # Relationship attributes are typed as their values by SQLModel; load= still takes them.
    assert_type(await Repository(session, Team).get_one(1, load=[Team.heroes]), Team)
    assert_type(
        await heroes.list(load=[joined(Hero.team), "team", (Hero.team, Team.heroes)]), list[Hero]
    )

    custom = HeroRepository(session)
    assert_type(await custom.get_one(1), Hero)
    assert_type(await custom.adults(), list[Hero])

    async with db.unit_of_work() as uow:
        assert_type(uow, UnitOfWork)
        assert_type(uow.session, AsyncSession)
        assert_type(uow.repository(Hero), Repository[Hero])
        assert_type(uow.repository(HeroRepository), HeroRepository)
        assert_type(uow.joined, bool)
        assert_type(uow.on_commit(lambda: None), None)

        async def notify() -> None: ...

        uow.on_commit(notify)  # an async callback is awaited after the commit
        async with db.unit_of_work(independent=True) as audit:
            assert_type(audit, UnitOfWork)
        assert_type(await uow.repository(Hero).get_one(1), Hero)
        async with uow.savepoint():
            pass

    async with Database("sqlite://") as scoped:
        assert_type(scoped, Database)

    policies = [TenantScope(row_level_security=False), SoftDelete(), AuditColumns(created_by=None)]
    tenanted = Database("sqlite://", policies=policies, cursor_keys=["k" * 16])
    with tenant("acme"), acting_as("ann"):
        async with tenanted.unit_of_work(actor="ann") as uow:
            heroes_view = uow.repository(Hero).with_deleted()
            assert_type(heroes_view, Repository[Hero])
            assert_type(await heroes_view.restore(1), Hero)
            assert_type(await heroes_view.purge(1), None)

    class HeroOut(SQLModel):
        id: int
        name: str

    async with db.unit_of_work() as uow:
        projected = uow.repository(Hero).into(HeroOut)
        assert_type(await projected.get_one(1), HeroOut)
        assert_type(await projected.get(1), HeroOut | None)
        assert_type(await projected.list(limit=3), list[HeroOut])
        assert_type(await projected.find(name="x"), HeroOut | None)
        assert_type((await projected.page()).items, list[HeroOut])
        assert_type((await projected.keyset()).items, list[HeroOut])
        async for row in projected.stream():
            assert_type(row, HeroOut)
    async with tenanted.unit_of_work(all_tenants=True) as admin:
        assert_type(admin, UnitOfWork)
        assert_type(admin.repository(HeroRepository).with_deleted(), HeroRepository)

    options = eager(joined("x"), model=Hero)
    result = await session.scalars(sa_select(Hero).options(*options))
    assert_type(result.all(), Sequence[Hero])


async def check_queries_and_reliability(db: Database, session: AsyncSession) -> None:
    heroes = Repository(session, Hero)
    page = await heroes.page(limit=10, count=True)
    assert_type(page, Page[Hero])
    assert_type(page.items, list[Hero])
    assert_type(page.total, int | None)
    keyset = await heroes.keyset(order_by="-age,name", after=None, limit=10)
    assert_type(keyset, KeysetPage[Hero])
    assert_type(keyset.next_cursor, str | None)
    async for hero in heroes.stream(batch_size=100):
        assert_type(hero, Hero)
    assert_type(await heroes.update_many(col(Hero.age) > 1, values={"age": 2}), int)
    assert_type(await heroes.delete_many(name="x"), int)
    assert_type(await heroes.upsert({"name": "x"}, conflict=["name"]), Hero)
    assert_type(await heroes.upsert_many([{"name": "x"}], conflict=["name"]), list[Hero])

    filters = FilterSet(Hero, filters={"name": "*"}, sort=["name"])
    assert_type(filters, FilterSet[Hero])
    query = filters.parse({"name__icontains": "x"})
    assert_type(query, FilterQuery)
    assert_type(await heroes.list(*query.where, order_by=query.order_by), list[Hero])

    async def work(uow: UnitOfWork) -> int:
        return await uow.repository(Hero).count()

    assert_type(await db.run(work), int)
    assert_type(await db.run(work, retry=RetryPolicy(attempts=3)), int)
    assert_type(db.unit_of_work(isolation_level="SERIALIZABLE", read_only=True), UnitOfWork)
    assert_type(db.pool_stats(), PoolStats)


async def check_scaling_out() -> None:
    replicas = Replicas(["postgresql://app@replica/app"], read_your_writes=2.0, max_lag=5)
    assert_type(replicas.urls, Sequence[str | URL])
    assert_type(replicas.read_your_writes, Literal["lsn"] | float)
    db = Database("postgresql://app@primary/app", replicas=replicas)
    assert_type(db.replicas, Replicas | None)
    assert_type(db.engines, tuple[AsyncEngine, ...])
    assert_type(db.unit_of_work(read_only=True), UnitOfWork)
    async with db.unit_of_work(read_only=True) as uow:
        assert_type(uow, UnitOfWork)
    assert_type(EngineConfig(pgbouncer=True).pgbouncer, bool)


def check_query_tags() -> None:
    tags = QueryTags(application="billing", route=False)
    assert_type(tags.application, str | None)
    assert_type(tags.route, bool)
    assert_type(tags.unit_of_work, bool)
    assert_type(EngineConfig(query_tags=tags).query_tags, QueryTags | None)


def check_errors(after: AfterCommitError, read_only: ReadOnlyTransactionError) -> None:
    assert_type(after.errors, list[Exception])
    _: TransactionError = read_only
    __: LazyLoadError = DetachedLoadError("Hero.team was not loaded")
