"""A FastAPI app on herorepo, called in-process through httpx, as a test would.

Runs on an in-memory SQLite database, or on the database named by DATABASE_URL:

    pip install "herorepo[fastapi,aiosqlite]" httpx
    python fastapi_app.py

Serve it with uvicorn instead (``uvicorn fastapi_app:app``) to try it from a browser. It creates
the table ex_api_hero and drops it at the end.
"""

import asyncio
from typing import Annotated

import httpx
from fastapi import BackgroundTasks, Depends, FastAPI
from sqlmodel import Field, SQLModel

from herorepo import Database, FilterQuery, FilterSet, Repository
from herorepo.integrations.fastapi import (
    DatabaseDep,
    add_exception_handlers,
    filter_query,
    lifespan,
    repository,
)


class HeroBase(SQLModel):
    name: str = Field(max_length=100, unique=True)
    secret_name: str = Field(max_length=100)
    age: int | None = None


class Hero(HeroBase, table=True):
    __tablename__ = "ex_api_hero"

    id: int | None = Field(default=None, primary_key=True)


class HeroPublic(HeroBase):
    id: int


class HeroUpdate(SQLModel):
    name: str | None = None
    secret_name: str | None = None
    age: int | None = None


db = Database.from_env(default="sqlite+aiosqlite:///:memory:")
app = FastAPI(lifespan=lifespan(db, create_tables=True))  # disposes the pool on shutdown
add_exception_handlers(app)  # NotFoundError -> 404, ConflictError -> 409, bad filters -> 422

# A repository on the request's unit of work: committed before the response is sent.
Heroes = Annotated[Repository[Hero], Depends(repository(Hero))]
# The filters, sort keys and paging a listing allows, declared in the OpenAPI schema.
hero_filters = FilterSet(Hero, filters={"age": ["ge", "lt"]}, sort=["name", "age"])
HeroQuery = Annotated[FilterQuery, Depends(filter_query(hero_filters, paging="offset"))]
welcomed: list[str] = []


async def welcome(database: Database, hero_id: int) -> None:
    """A background task: it runs after the response, in a session of its own."""
    async with database.session() as session:
        hero = await Repository(session, Hero).get_one(hero_id)
    welcomed.append(hero.name)


@app.post("/heroes/", response_model=HeroPublic)
async def create_hero(
    data: HeroBase, heroes: Heroes, database: DatabaseDep, tasks: BackgroundTasks
) -> Hero:
    hero = await heroes.create(data)
    assert hero.id is not None
    tasks.add_task(welcome, database, hero.id)  # the database, never the request's session
    return hero


@app.get("/heroes/", response_model=list[HeroPublic])
async def list_heroes(heroes: Heroes, query: HeroQuery) -> list[Hero]:
    return await heroes.list(
        *query.where, order_by=query.order_by, offset=query.offset, limit=query.limit
    )


@app.get("/heroes/{hero_id}", response_model=HeroPublic)
async def read_hero(hero_id: int, heroes: Heroes) -> Hero:
    return await heroes.get_one(hero_id)


@app.patch("/heroes/{hero_id}", response_model=HeroPublic)
async def update_hero(hero_id: int, data: HeroUpdate, heroes: Heroes) -> Hero:
    return await heroes.update(hero_id, data)


@app.delete("/heroes/{hero_id}", status_code=204)
async def delete_hero(hero_id: int, heroes: Heroes) -> None:
    await heroes.delete(hero_id)


async def main() -> None:
    async with app.router.lifespan_context(app):  # what a server does at startup and shutdown
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://heroes") as client:
            try:
                await tour(client)
            finally:
                await db.drop_all()


async def tour(client: httpx.AsyncClient) -> None:
    deadpond = {"name": "Deadpond", "secret_name": "Dive Wilson", "age": 30}
    response = await client.post("/heroes/", json=deadpond)
    assert response.status_code == 200, response.text
    hero_id = response.json()["id"]
    assert welcomed == ["Deadpond"]  # the task ran once the response was out

    response = await client.post("/heroes/", json=deadpond)  # the name is taken
    print(response.status_code, response.json())
    assert response.status_code == 409
    assert response.json() == {"detail": "A record with the same unique value already exists."}

    response = await client.patch(f"/heroes/{hero_id}", json={"age": 31})  # only age changes
    assert response.json() == {**deadpond, "age": 31, "id": hero_id}

    await client.post("/heroes/", json={"name": "Spider-Boy", "secret_name": "Pedro Parqueador"})
    response = await client.get("/heroes/", params={"age__ge": "18", "order_by": "name"})
    assert [hero["name"] for hero in response.json()] == ["Deadpond"]

    response = await client.get("/heroes/", params={"colour": "red"})
    print(response.status_code, response.json())
    assert response.status_code == 422
    assert response.json()["detail"][0]["msg"] == (
        "Cannot filter Hero by 'colour'. Filterable fields: age."
    )

    response = await client.get("/heroes/", params={"age__ge": "old"})  # FastAPI checks types
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "age__ge"]

    schema = (await client.get("/openapi.json")).json()  # what /docs shows
    parameters = schema["paths"]["/heroes/"]["get"]["parameters"]
    print([(parameter["name"], parameter["schema"]["type"]) for parameter in parameters])
    assert [parameter["name"] for parameter in parameters] == [
        "age__lt",
        "age__ge",
        "order_by",
        "limit",
        "offset",
    ]

    assert (await client.delete(f"/heroes/{hero_id}")).status_code == 204
    response = await client.get(f"/heroes/{hero_id}")
    print(response.status_code, response.json())
    assert response.status_code == 404
    assert response.json() == {"detail": "Hero with the id asked for does not exist."}


if __name__ == "__main__":
    asyncio.run(main())
