"""The hero API: heroes and teams over HTTP, on FastAPI and herorepo, for many tenants.

From the repository root::

    pip install "herorepo[fastapi,aiosqlite]" uvicorn
    uvicorn examples.heroes_api.app:app --reload

It keeps its data in heroes.db (SQLite), or in the database named by DATABASE_URL, and creates
its tables, api_team and api_hero, on startup. Each request names its tenant in the X-Tenant
header, and sees and writes that tenant's teams and heroes only; a request without it gets a
400. (A client must not choose its tenant: serve the app behind a gateway that sets the header
from the authenticated user, or resolve the tenant from the user, see docs/fastapi.md.)
DELETE /heroes/{id} keeps the row, marked deleted, and POST /heroes/{id}/restore brings it back.

Reads return response schemas straight from the rows (``repository(Hero, into=HeroPublic)``):
only the columns the schema has, no ORM objects, and GET /teams/{id} reads the team's heroes
with one more SELECT. ``check_response_models(app)``, at the end of this module, refuses to
start an app whose response models need relationships that their routes do not load.

Try ``curl -H 'X-Tenant: acme' 'localhost:8000/heroes/?name__icontains=man&order_by=-age&
limit=10'``; the answer's ``next_cursor``, passed back as ``after=`` with the same filters and
order, reads the next page; http://127.0.0.1:8000/docs lists every parameter.
tests/examples/test_heroes_api.py runs it on SQLite, PostgreSQL and MySQL, and
tests/examples/test_schemathesis.py sends it requests generated from its OpenAPI schema.
"""

import logging
from datetime import datetime
from typing import Annotated

from fastapi import BackgroundTasks, Depends, FastAPI, HTTPException
from sqlalchemy import UniqueConstraint
from sqlalchemy.orm import registry
from sqlmodel import Field, Relationship, SQLModel

from herorepo import (
    Database,
    FilterQuery,
    FilterSet,
    Projection,
    Repository,
    SoftDelete,
    TenantScope,
)
from herorepo.integrations.fastapi import (
    DatabaseDep,
    add_exception_handlers,
    check_response_models,
    filter_query,
    lifespan,
    repository,
    scope_to_tenants,
    tenant_header,
)

logger = logging.getLogger("heroes_api")


class Base(SQLModel, registry=registry()):
    """The API's own registry and MetaData, so its tables never mix with other SQLModel apps'."""


# --- tables and schemas --------------------------------------------------------------------------
# The tables have a tenant_id, which the TenantScope policy fills and filters on; the schemas
# have none: the client never sends nor sees it.


class TeamBase(Base):
    name: str = Field(max_length=100)
    headquarters: str = Field(max_length=200)


class Team(TeamBase, table=True):
    __tablename__ = "api_team"  # pyright: ignore[reportAssignmentType]  (fastapi/sqlmodel#98)
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)  # each tenant names its own teams

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(max_length=40)
    # Deleting a team leaves its heroes without one: ON DELETE SET NULL, which reaches the
    # soft-deleted heroes too (the ORM, which does not see them, would leave them pointing at it).
    heroes: list["Hero"] = Relationship(back_populates="team", passive_deletes=True)


class HeroBase(Base):
    name: str = Field(max_length=100, index=True)
    secret_name: str = Field(max_length=100)
    age: int | None = Field(default=None, index=True)
    team_id: int | None = Field(default=None, foreign_key="api_team.id", ondelete="SET NULL")


class Hero(HeroBase, table=True):
    __tablename__ = "api_hero"  # pyright: ignore[reportAssignmentType]

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(max_length=40, index=True)
    deleted_at: datetime | None = None  # set by DELETE (SoftDelete): reads leave the hero out
    team: Team | None = Relationship(back_populates="heroes")


class HeroCreate(HeroBase):
    model_config = {"extra": "forbid"}  # a misspelt field is a 422, not silently dropped


class HeroUpdate(Base):
    """Every field optional: a PATCH changes only the fields it sends."""

    model_config = {"extra": "forbid"}

    # May be left out, but not sent as null: the columns are NOT NULL.
    name: str = Field(default=None, max_length=100)
    secret_name: str = Field(default=None, max_length=100)
    age: int | None = None
    team_id: int | None = None


class HeroPublic(HeroBase):
    id: int


class HeroPage(SQLModel):
    items: list[HeroPublic]
    next_cursor: str | None
    previous_cursor: str | None = None  # pass it as before= to read the page before


class TeamCreate(TeamBase):
    model_config = {"extra": "forbid"}


class TeamPublic(TeamBase):
    id: int


class TeamPublicWithHeroes(TeamPublic):
    heroes: list[HeroPublic] = []


# --- the app -------------------------------------------------------------------------------------

# Every statement of every request is scoped to the request's tenant and skips deleted heroes.
POLICIES = [TenantScope(), SoftDelete()]
db = Database.from_env(default="sqlite+aiosqlite:///heroes.db", policies=POLICIES)
app = FastAPI(title="Heroes", lifespan=lifespan(db, create_tables=True, metadata=Base.metadata))
add_exception_handlers(app)  # NotFoundError -> 404, ConflictError -> 409, bad filters -> 422
# The tenant of each request, from its X-Tenant header; a request without it gets a 400.
scope_to_tenants(app, tenant_header("X-Tenant"))

# One unit of work per request, shared by its repositories: committed before the response is
# sent, rolled back if the endpoint raises.
Heroes = Annotated[Repository[Hero], Depends(repository(Hero))]
Teams = Annotated[Repository[Team], Depends(repository(Team))]
# Reads that return response schemas, selecting only their columns: nothing to lazy-load.
HeroesOut = Annotated[Projection[Hero, HeroPublic], Depends(repository(Hero, into=HeroPublic))]
TeamsOut = Annotated[Projection[Team, TeamPublic], Depends(repository(Team, into=TeamPublic))]
TeamsWithHeroes = Annotated[
    Projection[Team, TeamPublicWithHeroes],
    Depends(repository(Team, into=TeamPublicWithHeroes)),
]

hero_filters = FilterSet(
    Hero,
    filters={
        "name": ["eq", "icontains"],
        "age": ["eq", "lt", "le", "gt", "ge", "isnull"],
        "team_id": ["eq", "in", "isnull"],
    },
    sort=["name", "age"],
    default_limit=20,
    max_limit=100,
)
# Declares the parameters above in the OpenAPI schema (and /docs); pages with after= only.
HeroQuery = Annotated[FilterQuery, Depends(filter_query(hero_filters, paging="keyset"))]
team_filters = FilterSet(Team, filters={"name": ["eq", "icontains"]}, sort=["name"])
TeamQuery = Annotated[FilterQuery, Depends(filter_query(team_filters, paging="offset"))]


async def check_team(team_id: int | None, teams: Repository[Team]) -> None:
    """Answer a team_id that names none of the tenant's teams with 404, as an unknown hero_id is.

    The foreign key would take another tenant's team: it only checks that the row exists.
    """
    if team_id is not None and not await teams.exists(id=team_id):
        raise HTTPException(status_code=404, detail="Team not found")


@app.post("/heroes/", response_model=HeroPublic)
async def create_hero(
    data: HeroCreate, heroes: Heroes, teams: Teams, database: DatabaseDep, tasks: BackgroundTasks
) -> Hero:
    await check_team(data.team_id, teams)
    hero = await heroes.create(data)  # its tenant_id is the request's
    assert hero.id is not None  # the INSERT has run: create() flushes
    # The task runs after the commit and the response, when the request's session is closed:
    # it gets the database and the tenant, and opens a unit of work of its own.
    tasks.add_task(notify_new_hero, database, hero.tenant_id, hero.id)
    return hero


@app.get("/heroes/")
async def read_heroes(heroes: HeroesOut, query: HeroQuery) -> HeroPage:
    """Heroes filtered by ``name``, ``age`` and ``team_id``, one keyset page at a time."""
    page = await heroes.keyset(
        *query.where,
        order_by=query.order_by,
        after=query.after,
        before=query.before,
        limit=query.limit,
    )
    return HeroPage(
        items=page.items, next_cursor=page.next_cursor, previous_cursor=page.previous_cursor
    )


@app.get("/heroes/{hero_id}")
async def read_hero(hero_id: int, heroes: HeroesOut) -> HeroPublic:
    # NotFoundError: 404 "Hero with the id asked for does not exist."
    return await heroes.get_one(hero_id)


@app.patch("/heroes/{hero_id}", response_model=HeroPublic)
async def update_hero(hero_id: int, data: HeroUpdate, heroes: Heroes, teams: Teams) -> Hero:
    await check_team(data.team_id, teams)
    return await heroes.update(hero_id, data)  # only the fields the client sent


@app.delete("/heroes/{hero_id}", status_code=204)
async def delete_hero(hero_id: int, heroes: Heroes) -> None:
    await heroes.delete(hero_id)  # sets deleted_at; a second DELETE is a 404


@app.post("/heroes/{hero_id}/restore", response_model=HeroPublic)
async def restore_hero(hero_id: int, heroes: Heroes) -> Hero:
    """Bring a deleted hero back (a hero that was not deleted is returned as it is)."""
    return await heroes.restore(hero_id)


@app.post("/teams/", response_model=TeamPublic)
async def create_team(data: TeamCreate, teams: Teams) -> Team:
    return await teams.create(data)  # a taken name: 409 "A record with the same unique value..."


@app.get("/teams/")
async def read_teams(teams: TeamsOut, query: TeamQuery) -> list[TeamPublic]:
    """Teams filtered by ``name``, one offset page at a time."""
    return await teams.list(
        *query.where, order_by=query.order_by, offset=query.offset, limit=query.limit
    )


@app.get("/teams/{team_id}")
async def read_team(team_id: int, teams: TeamsWithHeroes) -> TeamPublicWithHeroes:
    # Two SELECTs: the team's columns, then its (live) heroes' columns. Had the route read a
    # Team with plain repository(Team), check_response_models() below would refuse to start
    # the app: serialising team.heroes would need a load that async code cannot run.
    return await teams.get_one(team_id)


@app.delete("/teams/{team_id}", status_code=204)
async def delete_team(team_id: int, teams: Teams) -> None:
    # Its heroes stay, without a team: the foreign key sets their team_id to NULL.
    await teams.delete(team_id)


async def notify_new_hero(database: Database, tenant_id: str, hero_id: int) -> None:
    """Tell the world about a new hero, reading it again in a unit of work of its own.

    The request's tenant ended with the request: the task names it again.
    """
    async with database.unit_of_work(tenant=tenant_id) as uow:
        hero = await uow.repository(Hero).get(hero_id)
    if hero is not None:
        logger.info("New hero: %s (id=%s)", hero.name, hero.id)


# Last, once every route is in: fail at startup, naming the route, if a response model needs a
# relationship that the route's query does not load.
check_response_models(app)
