"""The benchmark's tables. Every name starts with ``bench_``; the suite creates and drops them.

Kept on their own ``MetaData`` so that ``SQLModel.metadata.create_all()`` elsewhere never sees
them, and so that creating them never touches another suite's tables.
"""

from datetime import datetime

from sqlalchemy import MetaData, text
from sqlmodel import Field, Relationship, SQLModel

metadata = MetaData()


class BenchBase(SQLModel):
    metadata = metadata


class Team(BenchBase, table=True):
    __tablename__ = "bench_team"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, unique=True)
    headquarters: str = Field(default="", max_length=200)

    heroes: list["Hero"] = Relationship(back_populates="team")


class Hero(BenchBase, table=True):
    __tablename__ = "bench_hero"

    id: int | None = Field(default=None, primary_key=True)
    # Unique: ORDER BY name alone is then a total order, as the list workload writes it.
    name: str = Field(max_length=100, unique=True, index=True)
    secret_name: str = Field(max_length=100)
    age: int | None = Field(default=None, index=True)
    team_id: int | None = Field(default=None, foreign_key="bench_team.id", index=True)
    created_at: datetime | None = Field(
        default=None, sa_column_kwargs={"server_default": text("CURRENT_TIMESTAMP")}
    )

    team: Team | None = Relationship(back_populates="heroes")


class BulkHero(BenchBase, table=True):
    """Target of the bulk insert: emptied after every timed insert, so every op starts equal."""

    __tablename__ = "bench_bulk_hero"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100)
    secret_name: str = Field(max_length=100)
    age: int | None = None
    created_at: datetime | None = Field(
        default=None, sa_column_kwargs={"server_default": text("CURRENT_TIMESTAMP")}
    )


class Row(BenchBase, table=True):
    """The large table: keyset and offset pages, and streaming."""

    __tablename__ = "bench_row"

    id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    name: str = Field(max_length=50)
    value: int
    score: float


class HeroCreate(SQLModel):
    name: str
    secret_name: str
    age: int | None = None
    team_id: int | None = None


class HeroUpdate(SQLModel):
    name: str | None = None
    secret_name: str | None = None
    age: int | None = None
    team_id: int | None = None


TABLES = [Team.__table__, Hero.__table__, BulkHero.__table__, Row.__table__]  # type: ignore[attr-defined]
HERO_COLUMNS = ("name", "secret_name", "age", "team_id")
ROW_COLUMNS = ("id", "name", "value", "score")
