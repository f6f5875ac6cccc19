"""Inferred types of projections, load plans and the FastAPI startup check. Checked by mypy
--strict and pyright; never run."""

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, FastAPI
from sqlmodel import Field, Relationship, SQLModel
from typing_extensions import assert_type

from herorepo import Database, LoadSpec, Projection, Repository, UnitOfWork, load_plan
from herorepo.integrations.fastapi import check_response_models, repository


class Squad(SQLModel, table=True):
    __tablename__ = "typing_squad"  # pyright: ignore[reportAssignmentType]  (fastapi/sqlmodel#98)

    id: int | None = Field(default=None, primary_key=True)
    name: str
    members: list["Member"] = Relationship(back_populates="squad")


class Member(SQLModel, table=True):
    __tablename__ = "typing_member"  # pyright: ignore[reportAssignmentType]

    id: int | None = Field(default=None, primary_key=True)
    name: str
    squad_id: int | None = Field(default=None, foreign_key="typing_squad.id")
    squad: Squad | None = Relationship(back_populates="members")


class MemberOut(SQLModel):
    id: int
    name: str


class SquadOut(SQLModel):
    id: int
    name: str
    members: list[MemberOut] = []


class MemberWithSquad(MemberOut):
    squad: SquadOut | None = None


async def check_nested_projections(db: Database) -> None:
    async with db.unit_of_work() as uow:
        squads = uow.repository(Squad).into(SquadOut)
        assert_type(squads, Projection[Squad, SquadOut])
        assert_type(await squads.get_one(1), SquadOut)
        assert_type(await squads.get(1), SquadOut | None)
        assert_type(await squads.get_many([1, 2]), list[SquadOut])
        assert_type(await squads.find(name="x"), SquadOut | None)
        assert_type(await squads.find_one(name="x"), SquadOut)
        assert_type(await squads.list(limit=3), list[SquadOut])
        assert_type((await squads.page()).items, list[SquadOut])
        assert_type((await squads.keyset()).items, list[SquadOut])
        async for squad in squads.stream():
            assert_type(squad.members, list[MemberOut])
        member = await uow.repository(Member).into(MemberWithSquad).get_one(1)
        assert_type(member.squad, SquadOut | None)


async def check_load_plans(db: Database) -> None:
    plan = load_plan(Squad, SquadOut)
    assert_type(plan, list[LoadSpec])
    async with db.unit_of_work() as uow:
        loaded = uow.repository(Squad).with_load(*plan)
        assert_type(loaded, Repository[Squad])
        assert_type(await loaded.get_one(1), Squad)
        assert_type(await uow.repository(Squad).list(load=plan), list[Squad])


Squads = Annotated[Repository[Squad], Depends(repository(Squad, load=[Squad.members]))]
SquadsOut = Annotated[Projection[Squad, SquadOut], Depends(repository(Squad, into=SquadOut))]
app = FastAPI()


@app.get("/squads/{squad_id}")
async def read_squad(squad_id: int, squads: SquadsOut) -> SquadOut:
    return await squads.get_one(squad_id)


def check_fastapi() -> None:
    assert_type(
        repository(Squad, load=[Squad.members]),
        Callable[[UnitOfWork], Coroutine[Any, Any, Repository[Squad]]],
    )
    assert_type(
        repository(Squad, into=SquadOut),
        Callable[[UnitOfWork], Coroutine[Any, Any, Projection[Squad, SquadOut]]],
    )
    assert_type(check_response_models(app, exclude=["GET /squads/{squad_id}"]), None)
