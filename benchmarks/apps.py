"""The FastAPI app of the end-to-end request ops of ``python -m benchmarks paths``, twice.

The same app, routes, query parameters and ``response_model=HeroPublic`` both ways; only the
data layer differs:

* :func:`herorepo_app`: herorepo's FastAPI integration as docs/fastapi.md shows it:
  ``lifespan(db)``, ``add_exception_handlers(app)`` and a repository dependency,
  ``Annotated[Repository[Hero], Depends(repository(Hero))]``, on the request's unit of work
  (committed before the response is sent).
* :func:`sqlmodel_app`: the hand-written FastAPI + SQLModel idiom of the SQLModel async
  reference: a ``get_session`` dependency yielding an ``AsyncSession`` from
  ``async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)``,
  ``session.get`` and ``session.exec(select(...))``, a lifespan that disposes the engine.

:func:`serve` starts an app as a server would (its lifespan) and calls it in process through
``httpx.AsyncClient(transport=httpx.ASGITransport(app=app))``: a timed call is a whole HTTP
request, routing, dependencies, the query, validation and JSON serialization included.
"""

# No ``from __future__ import annotations``: FastAPI reads the endpoints' annotations, and those
# of the hand-written app name a dependency made inside its factory.

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Annotated

import httpx
from fastapi import Depends, FastAPI, HTTPException
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from herorepo import Database, Repository
from herorepo.integrations.fastapi import add_exception_handlers, lifespan, repository

from .path_models import HeroPublic, PathHero

PAGE = 100
"""The list endpoint's default and the benchmark's ``limit``."""

Heroes = Annotated[Repository[PathHero], Depends(repository(PathHero))]


def herorepo_app(db: Database) -> FastAPI:
    """The app on herorepo's FastAPI integration."""
    app = FastAPI(lifespan=lifespan(db))  # disposes the pool on shutdown
    add_exception_handlers(app)  # NotFoundError -> 404

    @app.get("/heroes/{hero_id}", response_model=HeroPublic)
    async def read_hero(hero_id: int, heroes: Heroes) -> PathHero:
        return await heroes.get_one(hero_id)

    @app.get("/heroes/", response_model=list[HeroPublic])
    async def read_heroes(heroes: Heroes, min_age: int = 0, limit: int = PAGE) -> list[PathHero]:
        return await heroes.list(
            PathHero.age >= min_age,  # type: ignore[operator]
            order_by=PathHero.name,
            limit=limit,
        )

    return app


def sqlmodel_app(engine: AsyncEngine) -> FastAPI:
    """The same app, hand-written on SQLModel's ``AsyncSession``."""
    async_session = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)

    async def get_session() -> AsyncIterator[AsyncSession]:
        async with async_session() as session:
            yield session

    SessionDep = Annotated[AsyncSession, Depends(get_session)]

    @asynccontextmanager
    async def dispose_engine(app: FastAPI) -> AsyncIterator[None]:
        yield
        await engine.dispose()

    app = FastAPI(lifespan=dispose_engine)

    @app.get("/heroes/{hero_id}", response_model=HeroPublic)
    async def read_hero(hero_id: int, session: SessionDep) -> PathHero:
        hero = await session.get(PathHero, hero_id)
        if hero is None:
            raise HTTPException(status_code=404, detail="Hero not found")
        return hero

    @app.get("/heroes/", response_model=list[HeroPublic])
    async def read_heroes(
        session: SessionDep, min_age: int = 0, limit: int = PAGE
    ) -> Sequence[PathHero]:
        statement = (
            select(PathHero)
            .where(PathHero.age >= min_age)  # type: ignore[operator]
            .order_by(PathHero.name)
            .limit(limit)
        )
        return (await session.exec(statement)).all()

    return app


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """``app`` started as a server starts it (its lifespan), and a client calling it in process."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://heroes") as client:
            yield client
