"""Inferred types of pages in both directions and of preload(). Checked by mypy --strict and
pyright; never run."""

from sqlmodel import Field, Relationship, SQLModel
from typing_extensions import assert_type

from herorepo import Database, KeysetPage, Page, Repository, joined


class Squad(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    members: list["Member"] = Relationship(back_populates="squad")


class Member(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str
    squad_id: int | None = Field(default=None, foreign_key="squad.id")
    squad: Squad | None = Relationship(back_populates="members")


class MemberOut(SQLModel):
    id: int
    name: str


class MemberRepository(Repository[Member]):
    pass


async def check(db: Database) -> None:
    async with db.unit_of_work() as uow:
        members = uow.repository(Member)

        page = await members.page(limit=10)
        assert_type(page, Page[Member])
        assert_type(page.has_next, bool | None)
        assert_type(page.total, int | None)

        forwards = await members.keyset(order_by="name", limit=10)
        assert_type(forwards, KeysetPage[Member])
        assert_type(forwards.previous_cursor, str | None)
        assert_type(forwards.has_previous, bool)
        assert_type(forwards.has_next, bool)
        backwards = await members.keyset(order_by="name", before=forwards.next_cursor, limit=10)
        assert_type(backwards, KeysetPage[Member])

        projected = members.into(MemberOut)
        assert_type(await projected.keyset(before=backwards.previous_cursor), KeysetPage[MemberOut])
        assert_type((await projected.page(limit=5)).has_next, bool | None)

        read = await members.list(limit=10)
        assert_type(await members.preload(read, load=[Member.squad]), list[Member])
        squads = await uow.repository(Squad).list()
        loaded = await uow.repository(Squad).preload(
            squads, load=[(Squad.members, Member.squad), "members", joined(Squad.members)]
        )
        assert_type(loaded, list[Squad])
        assert_type(
            await uow.repository(MemberRepository).preload(read, load=["squad"]), list[Member]
        )
