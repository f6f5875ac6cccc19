"""Inferred types of the bulk writes without objects. Checked by mypy --strict and pyright;
never run."""

from typing import Any

from pydantic import BaseModel
from sqlmodel import Field, SQLModel
from typing_extensions import assert_type

from herorepo import Database


class Item(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True)


class ItemCreate(BaseModel):
    name: str


async def check(db: Database) -> None:
    async with db.unit_of_work() as uow:
        items = uow.repository(Item)
        assert_type(await items.insert_rows([{"name": "x"}]), None)
        assert_type(await items.insert_rows([ItemCreate(name="x")], returning="nothing"), None)
        assert_type(await items.insert_rows([{"name": "x"}], returning="keys"), list[Any])
        assert_type(await items.upsert_rows([{"name": "x"}], conflict=["name"]), None)
        assert_type(
            await items.upsert_rows(
                [ItemCreate(name="x")], conflict=["name"], update=[], returning="keys"
            ),
            list[Any],
        )
        await items.insert_rows([{"name": "x"}], returning="rows")  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue, reportArgumentType]
