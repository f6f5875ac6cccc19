"""check_response_models(): a route whose response model needs a relationship that its query
does not load fails at startup, naming the route and the load; and the declared loads work."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Generic, TypeVar

import httpx
import pytest
from fastapi import Depends, FastAPI
from sqlmodel import SQLModel

from herorepo import (
    ConfigurationError,
    Database,
    InvalidLoadError,
    Projection,
    Repository,
)
from herorepo.integrations.fastapi import (
    SessionDep,
    add_exception_handlers,
    check_response_models,
    get_database,
    repository,
)
from herorepo.testing import assert_max_queries

from ..integration.helpers import seed
from ..models import Hero, Power, Team

T = TypeVar("T")


class PowerOut(SQLModel):
    name: str


class HeroOut(SQLModel):
    id: int
    name: str


class HeroWithPowers(SQLModel):
    name: str
    powers: list[PowerOut] = []


class TeamOut(SQLModel):
    id: int
    name: str


class TeamWithHeroes(TeamOut):
    heroes: list[HeroOut] = []


class TeamWithPowers(TeamOut):
    heroes: list[HeroWithPowers] = []


class HeroWithTeam(HeroOut):
    team: TeamOut | None = None


class TeamPage(SQLModel):
    items: list[TeamWithHeroes]
    next_cursor: str | None = None


@dataclass
class Listing(Generic[T]):
    items: list[T]


Teams = Annotated[Repository[Team], Depends(repository(Team))]
TeamsWithHeroes = Annotated[Repository[Team], Depends(repository(Team, load=[Team.heroes]))]
TeamsDeep = Annotated[
    Repository[Team], Depends(repository(Team, load=[(Team.heroes, Hero.powers)]))
]
TeamsOut = Annotated[
    Projection[Team, TeamWithHeroes], Depends(repository(Team, into=TeamWithHeroes))
]


async def service(teams: TeamsWithHeroes) -> Repository[Team]:
    """A dependency of the endpoint's, which takes the repository."""
    return teams


def problems(app: FastAPI, **kwargs: list[str]) -> list[str]:
    with pytest.raises(ConfigurationError) as raised:
        check_response_models(app, **kwargs)
    return str(raised.value).splitlines()[1:]


def test_a_route_that_does_not_load_what_its_response_needs_fails() -> None:
    app = FastAPI()

    @app.get("/teams/{team_id}", response_model=TeamWithHeroes)
    async def read_team(team_id: int, teams: Teams) -> Team:
        return await teams.get_one(team_id)

    assert problems(app) == [
        "- GET /teams/{team_id}: response_model TeamWithHeroes needs Team.heroes, which the "
        "query does not load; add load=[Team.heroes] to its repository(Team) dependency, or use "
        "repository(Team, into=...) with the schema."
    ]
    check_response_models(app, exclude=["GET /teams/{team_id}"])


def test_declared_loads_and_projections_pass() -> None:
    app = FastAPI()

    @app.get("/loaded/{team_id}", response_model=TeamWithHeroes)
    async def loaded(team_id: int, teams: TeamsWithHeroes) -> Team:
        return await teams.get_one(team_id)

    @app.get("/projected/{team_id}")
    async def projected(team_id: int, teams: TeamsOut) -> TeamWithHeroes:
        return await teams.get_one(team_id)

    @app.get("/flat", response_model=list[TeamOut])
    async def flat(teams: Teams) -> list[Team]:
        return await teams.list()

    @app.get("/nothing")
    async def nothing() -> dict[str, int]:
        return {}

    @app.delete("/teams/{team_id}", status_code=204)
    async def delete(team_id: int, teams: Teams) -> None:
        await teams.delete(team_id)

    check_response_models(app)


def test_wrappers_chains_and_sub_dependencies_are_seen() -> None:
    app = FastAPI()

    @app.get("/page", response_model=TeamPage)
    async def page(teams: Teams) -> TeamPage:
        raise NotImplementedError

    @app.get("/listing", response_model=Listing[TeamWithHeroes])
    async def listing(teams: Teams) -> Listing[TeamWithHeroes]:
        raise NotImplementedError

    @app.get("/powers", response_model=list[TeamWithPowers])
    async def powers(teams: TeamsWithHeroes) -> list[Team]:
        raise NotImplementedError

    @app.get("/service", response_model=TeamWithHeroes)
    async def via_service(teams: Annotated[Repository[Team], Depends(service)]) -> Team:
        raise NotImplementedError

    @app.get("/heroes", response_model=list[HeroWithTeam])
    async def heroes(
        heroes: Annotated[Repository[Hero], Depends(repository(Hero, load=[Hero.team]))],
        teams: Teams,
    ) -> list[Hero]:
        raise NotImplementedError

    found = problems(app)
    assert [line.split(":")[0] for line in found] == [
        "- GET /page",
        "- GET /listing",
        "- GET /powers",
    ]
    assert "response_model Listing[TeamWithHeroes] needs Team.heroes" in found[1]
    assert "needs (Team.heroes, Hero.powers)" in found[2]
    assert "add load=[(Team.heroes, Hero.powers)]" in found[2]


def test_a_route_with_no_repository_dependency_must_be_excluded() -> None:
    app = FastAPI()

    @app.get("/teams/{team_id}", response_model=TeamWithHeroes)
    async def read_team(team_id: int, session: SessionDep) -> Team:
        raise NotImplementedError

    [problem] = problems(app)
    assert re.fullmatch(
        r"- GET /teams/\{team_id\}: response_model TeamWithHeroes needs Team\.heroes, and the "
        r"route has no repository\(Team, \.\.\.\) dependency .*exclude=\.",
        problem,
    ), problem
    check_response_models(app, exclude={"GET /teams/{team_id}"})


def test_repository_checks_its_declarations_when_made() -> None:
    with pytest.raises(InvalidLoadError, match=r"Team\.name is a column"):
        repository(Team, load=[Team.name])
    with pytest.raises(InvalidLoadError, match="neither a column nor a relationship"):
        repository(Hero, into=TeamPage)
    with pytest.raises(ConfigurationError, match="load= or into=, not both"):
        repository(Team, load=[Team.heroes], into=TeamWithHeroes)  # type: ignore[call-overload]


@pytest.mark.asyncio
async def test_declared_loads_serve_nested_responses_without_lazy_loads(db: Database) -> None:
    ids = await seed(db)
    async with db.unit_of_work() as uow:
        await uow.repository(Power).add_many([{"name": "wit", "hero_id": ids["Deadpond"]}])
    app = FastAPI()
    add_exception_handlers(app)

    @app.get("/loaded/{team_id}", response_model=TeamWithPowers)
    async def loaded(team_id: int, teams: TeamsDeep) -> Team:
        return await teams.get_one(team_id)

    @app.get("/projected/", response_model=list[TeamWithHeroes])
    async def projected(teams: TeamsOut) -> list[TeamWithHeroes]:
        return await teams.list(order_by="name")

    check_response_models(app)
    app.dependency_overrides[get_database] = lambda: db
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        with assert_max_queries(db, 3):
            response = await client.get(f"/loaded/{ids['X-Force']}")
        assert response.status_code == 200, response.text
        assert response.json()["heroes"] == [{"name": "Deadpond", "powers": [{"name": "wit"}]}]
        with assert_max_queries(db, 2):
            response = await client.get("/projected/")
        assert [[h["name"] for h in t["heroes"]] for t in response.json()] == [
            ["Spider-Boy", "Rusty-Man"],
            ["Deadpond"],
        ]
