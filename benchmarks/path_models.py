"""The models of ``python -m benchmarks paths``: its hero table and the response schema.

Kept on a registry of their own, so that no other ``create_all()`` sees ``bench_paths_hero``;
shared by the timed ways (:mod:`.paths`) and the FastAPI apps (:mod:`.apps`).
"""

from __future__ import annotations

from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

own = registry()


class _Base(SQLModel, registry=own):
    pass


class PathHero(_Base, table=True):
    __tablename__ = "bench_paths_hero"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, unique=True)
    secret_name: str = Field(max_length=100)
    age: int | None = Field(default=None, index=True)


class HeroPublic(SQLModel):
    """The response schema, as in the docs' FastAPI example."""

    id: int
    name: str
    secret_name: str
    age: int | None = None


TABLE = PathHero.__table__  # type: ignore[attr-defined]
PUBLIC_COLUMNS = (PathHero.id, PathHero.name, PathHero.secret_name, PathHero.age)
