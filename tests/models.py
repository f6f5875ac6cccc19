"""Models the test suite runs on; table names are prefixed so they never meet a user's tables."""

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    Computed,
    DateTime,
    Double,
    Index,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import declared_attr
from sqlmodel import Field, Relationship, SQLModel

from herorepo import FilterSet

metadata = SQLModel.metadata


class Team(SQLModel, table=True):
    __tablename__ = "hr_team"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, unique=True)
    headquarters: str = Field(default="", max_length=200)

    heroes: list["Hero"] = Relationship(back_populates="team")


class Hero(SQLModel, table=True):
    __tablename__ = "hr_hero"
    __table_args__ = (CheckConstraint("age IS NULL OR age >= 0", name="ck_hr_hero_age"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, index=True)
    secret_name: str = Field(max_length=100)
    age: int | None = None
    team_id: int | None = Field(default=None, foreign_key="hr_team.id")
    status: str | None = Field(
        default=None, max_length=20, sa_column_kwargs={"server_default": text("'active'")}
    )
    created_at: datetime | None = Field(
        default=None, sa_column_kwargs={"server_default": text("CURRENT_TIMESTAMP")}
    )

    team: Team | None = Relationship(back_populates="heroes")
    powers: list["Power"] = Relationship(back_populates="hero")


class Power(SQLModel, table=True):
    __tablename__ = "hr_power"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100)
    hero_id: int = Field(foreign_key="hr_hero.id")

    hero: Hero = Relationship(back_populates="powers")


class HeroMissionLink(SQLModel, table=True):
    __tablename__ = "hr_hero_mission"

    hero_id: int = Field(foreign_key="hr_hero.id", primary_key=True)
    mission_id: int = Field(foreign_key="hr_mission.id", primary_key=True)


class Mission(SQLModel, table=True):
    """Many-to-many heroes, a many-to-one leader, and one with a join condition of its own
    (tests/integration/test_preload.py)."""

    __tablename__ = "hr_mission"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100)
    leader_id: int | None = Field(default=None, foreign_key="hr_hero.id")

    heroes: list[Hero] = Relationship(link_model=HeroMissionLink)
    leader: Hero | None = Relationship()
    adult_leader: Hero | None = Relationship(
        sa_relationship_kwargs={
            "primaryjoin": "and_(Mission.leader_id == Hero.id, Hero.age >= 18)",
            "viewonly": True,
        }
    )


class Note(SQLModel, table=True):
    """Free text and wide integers, for round-trip property tests."""

    __tablename__ = "hr_note"

    id: int | None = Field(default=None, primary_key=True)
    body: str = Field(max_length=255)
    number: int = Field(sa_column=Column(BigInteger, nullable=False))


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


class NotATable(SQLModel):
    name: str


HERO_FILTERS = FilterSet(
    Hero,
    filters={"name": "*", "age": "*", "team_id": ["eq", "in", "isnull"]},
    sort=["name", "age", "id"],
    max_limit=5,
)


class Account(SQLModel, table=True):
    """A bank account with optimistic locking through a version column."""

    __tablename__ = "hr_account"

    id: int | None = Field(default=None, primary_key=True)
    owner: str = Field(max_length=50, unique=True)
    balance: int = Field(default=0)
    version: int = Field(default=1)

    @declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:
        return {"version_id_col": cls.__table__.c.version}  # type: ignore[attr-defined]


class Sample(SQLModel, table=True):
    """One column per kind of value, for the round-trip tests of tests/integration/test_values."""

    __tablename__ = "hr_sample"

    id: int | None = Field(default=None, primary_key=True)
    text: str | None = Field(default=None, max_length=255)
    big: int | None = Field(default=None, sa_type=BigInteger)
    small: int | None = None
    amount: Decimal | None = Field(default=None, sa_type=Numeric(12, 4))
    ratio: float | None = Field(default=None, sa_type=Double)
    single: float | None = None  # plain Float: single precision on MySQL
    at: datetime | None = Field(
        default=None, sa_type=DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql")
    )
    at_plain: datetime | None = Field(default=None, sa_type=DateTime())  # MySQL: whole seconds
    moment: datetime | None = None  # SQLModel's own mapping: an aware UTC instant
    day: date | None = None
    data: Any = Field(default=None, sa_type=JSON, nullable=True)


class Document(SQLModel, table=True):
    """A unique word and a long body: text comparison and size limits, tests/integration."""

    __tablename__ = "hr_document"

    id: int | None = Field(default=None, primary_key=True)
    word: str = Field(max_length=50, unique=True)
    body: str = Field(default="", sa_type=Text().with_variant(mysql.LONGTEXT(), "mysql"))


class Project(SQLModel, table=True):
    """Scoped to a tenant, soft-deleted, audited: the policies' tests (test_policies.py)."""

    __tablename__ = "hr_project"
    __table_args__ = (UniqueConstraint("tenant_id", "code", name="uq_hr_project_code"),)

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(max_length=40, index=True)
    code: str = Field(max_length=40)
    name: str = Field(default="", max_length=100)
    deleted_at: datetime | None = None  # SQLModel's datetime: an aware UTC instant
    created_at: datetime | None = None
    updated_at: datetime | None = None
    created_by: str | None = Field(default=None, max_length=40)
    updated_by: str | None = Field(default=None, max_length=40)

    tasks: list["Task"] = Relationship(back_populates="project")


class Task(SQLModel, table=True):
    __tablename__ = "hr_task"

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(max_length=40, index=True)
    project_id: int | None = Field(default=None, foreign_key="hr_project.id")
    title: str = Field(max_length=100)
    done: bool = False
    deleted_at: datetime | None = None

    project: Project | None = Relationship(back_populates="tasks")


class Ticket(SQLModel, table=True):
    """Soft-deleted, with a number unique among live rows: the recipe of docs/policies.md."""

    __tablename__ = "hr_ticket"
    __table_args__ = (Index("uq_hr_ticket_live_number", "tenant_id", "live_number", unique=True),)

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(max_length=40)
    number: str = Field(max_length=20)
    deleted_at: datetime | None = None
    # NULL for deleted rows, and a unique index allows many NULLs: the same on every backend.
    live_number: str | None = Field(
        default=None,
        sa_column=Column(
            String(20),
            Computed("CASE WHEN deleted_at IS NULL THEN number END", persisted=True),
        ),
    )


class Job(SQLModel, table=True):
    """A job queue's row: tests/integration/test_locks.py claims them with row locks."""

    __tablename__ = "hr_job"

    id: int | None = Field(default=None, primary_key=True)
    status: str = Field(default="ready", max_length=20, index=True)
    claimed_by: str | None = Field(default=None, max_length=20)
