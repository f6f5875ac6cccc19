"""The hero API: heroes and teams over HTTP, on FastAPI and herorepo.

From the repository root::

    pip install "herorepo[fastapi,aiosqlite]" uvicorn
    uvicorn examples.heroes_api.app:app --reload

It keeps its data in heroes.db (SQLite), or in the database named by DATABASE_URL, and creates
its tables, api_team and api_hero, on startup. Try ``GET /heroes/?name__icontains=man&
order_by=-age&limit=10``; the answer's ``next_cursor``, passed back as ``after=`` with the same
filters and order, reads the next page; http://127.0.0.1:8000/docs lists every parameter.
tests/examples/test_heroes_api.py runs it on SQLite, PostgreSQL and MySQL, and
tests/examples/test_schemathesis.py sends it requests generated from its OpenAPI schema.
"""

import logging
from collections.abc import Generator
from contextlib import contextmanager
from typing import Annotated

from fastapi import BackgroundTasks, Depends, FastAPI, HTTPException
from sqlalchemy.orm import registry
from sqlmodel import Field, Relationship, SQLModel

from herorepo import (
    Database,
    FilterQuery,
    FilterSet,
    ForeignKeyViolationError,
    KeysetPage,
    Repository,
)
from herorepo.integrations.fastapi import (
    DatabaseDep,
    add_exception_handlers,
    filter_query,
    lifespan,
    repository,
)

logger = logging.getLogger("heroes_api")


class Base(SQLModel, registry=registry()):
    """The API's own registry and MetaData, so its tables never mix with other SQLModel apps'."""


# --- tables and schemas --------------------------------------------------------------------------


class TeamBase(Base):
    name: str = Field(max_length=100, unique=True)
    headquarters: str = Field(max_length=200)


class Team(TeamBase, table=True):
    __tablename__ = "api_team"  # pyright: ignore[reportAssignmentType]  (fastapi/sqlmodel#98)

    id: int | None = Field(default=None, primary_key=True)
    heroes: list["Hero"] = Relationship(back_populates="team")


class HeroBase(Base):
    name: str = Field(max_length=100, index=True)
    secret_name: str = Field(max_length=100)
    age: int | None = Field(default=None, index=True)
    team_id: int | None = Field(default=None, foreign_key="api_team.id")


class Hero(HeroBase, table=True):
    __tablename__ = "api_hero"  # pyright: ignore[reportAssignmentType]

    id: int | None = Field(default=None, primary_key=True)
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


class TeamCreate(TeamBase):
    model_config = {"extra": "forbid"}


class TeamPublic(TeamBase):
    id: int


class TeamPublicWithHeroes(TeamPublic):
    heroes: list[HeroPublic] = []


# --- the app -------------------------------------------------------------------------------------

db = Database.from_env(default="sqlite+aiosqlite:///heroes.db")
app = FastAPI(title="Heroes", lifespan=lifespan(db, create_tables=True, metadata=Base.metadata))
add_exception_handlers(app)  # NotFoundError -> 404, ConflictError -> 409, bad filters -> 422

# One unit of work per request, shared by its repositories: committed before the response is
# sent, rolled back if the endpoint raises.
Heroes = Annotated[Repository[Hero], Depends(repository(Hero))]
Teams = Annotated[Repository[Team], Depends(repository(Team))]

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


@contextmanager
def team_must_exist() -> Generator[None, None, None]:
    """Answer a hero's team_id that names no team with 404, as an unknown hero_id is."""
    try:
        yield
    except ForeignKeyViolationError:
        raise HTTPException(status_code=404, detail="Team not found") from None


@app.post("/heroes/", response_model=HeroPublic)
async def create_hero(
    data: HeroCreate, heroes: Heroes, database: DatabaseDep, tasks: BackgroundTasks
) -> Hero:
    with team_must_exist():
        hero = await heroes.create(data)
    assert hero.id is not None  # the INSERT has run: create() flushes
    # The task runs after the commit and the response, when the request's session is closed:
    # it gets the database and opens a session of its own.
    tasks.add_task(notify_new_hero, database, hero.id)
    return hero


@app.get("/heroes/")
async def read_heroes(heroes: Heroes, query: HeroQuery) -> HeroPage:
    """Heroes filtered by ``name``, ``age`` and ``team_id``, one keyset page at a time."""
    page: KeysetPage[Hero] = await heroes.keyset(
        *query.where, order_by=query.order_by, after=query.after, limit=query.limit
    )
    return HeroPage.model_validate(page)


@app.get("/heroes/{hero_id}", response_model=HeroPublic)
async def read_hero(hero_id: int, heroes: Heroes) -> Hero:
    # NotFoundError: 404 "Hero with the id asked for does not exist."
    return await heroes.get_one(hero_id)


@app.patch("/heroes/{hero_id}", response_model=HeroPublic)
async def update_hero(hero_id: int, data: HeroUpdate, heroes: Heroes) -> Hero:
    with team_must_exist():
        return await heroes.update(hero_id, data)  # only the fields the client sent


@app.delete("/heroes/{hero_id}", status_code=204)
async def delete_hero(hero_id: int, heroes: Heroes) -> None:
    await heroes.delete(hero_id)


@app.post("/teams/", response_model=TeamPublic)
async def create_team(data: TeamCreate, teams: Teams) -> Team:
    return await teams.create(data)  # a taken name: 409 "A record with the same unique value..."


@app.get("/teams/", response_model=list[TeamPublic])
async def read_teams(teams: Teams, query: TeamQuery) -> list[Team]:
    """Teams filtered by ``name``, one offset page at a time."""
    return await teams.list(
        *query.where, order_by=query.order_by, offset=query.offset, limit=query.limit
    )


@app.get("/teams/{team_id}", response_model=TeamPublicWithHeroes)
async def read_team(team_id: int, teams: Teams) -> Team:
    # Two SELECTs: the team, then its heroes. Without load=, serializing team.heroes would
    # raise LazyLoadError instead of running a query behind your back.
    return await teams.get_one(team_id, load=[Team.heroes])


@app.delete("/teams/{team_id}", status_code=204)
async def delete_team(team_id: int, teams: Teams) -> None:
    # Its heroes stay, without a team: the ORM sets their team_id to NULL first.
    await teams.delete(team_id)


async def notify_new_hero(database: Database, hero_id: int) -> None:
    """Tell the world about a new hero, reading it again in a session of its own."""
    async with database.session() as session:
        hero = await Repository(session, Hero).get(hero_id)
    if hero is not None:
        logger.info("New hero: %s (id=%s)", hero.name, hero.id)
