"""The FastAPI integration without a database: refusals at definition time, and what it imports."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from enum import Enum
from typing import Annotated

import httpx
import pytest
from fastapi import Depends, FastAPI
from sqlalchemy import JSON, SmallInteger
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from herorepo import ConfigurationError, FilterQuery, FilterSet, Repository
from herorepo.integrations.fastapi import add_exception_handlers, filter_query, repository


class NotATable(SQLModel):
    name: str


def test_repository_refuses_what_it_cannot_build() -> None:
    with pytest.raises(ConfigurationError, match="takes a table model"):
        repository(NotATable)
    with pytest.raises(ConfigurationError, match="names no model"):
        repository(Repository)
    with pytest.raises(ConfigurationError, match="takes a table model"):
        repository(42)  # type: ignore[call-overload]


def test_core_never_imports_fastapi() -> None:
    code = (
        "import sys, herorepo, herorepo.testing\n"
        "assert 'fastapi' not in sys.modules, 'herorepo imported FastAPI'\n"
        "assert 'httpx' not in sys.modules, 'herorepo imported httpx'\n"
    )
    subprocess.run([sys.executable, "-W", "error", "-c", code], check=True, timeout=60)


def test_pytest_entry_point_loads_no_fixtures() -> None:
    """pytest imports the entry point in every run: it must not pull in the fixtures."""
    code = (
        "import sys, herorepo._pytest_entry\n"
        "assert 'herorepo.testing' not in sys.modules\n"
        "assert 'pytest_asyncio' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-W", "error", "-c", code], check=True, timeout=60)


class Colour(str, Enum):
    RED = "red"
    BLUE = "blue"


class Own(SQLModel, registry=registry()):
    pass


class Gadget(Own, table=True):
    __tablename__ = "setup_gadget"

    id: int | None = Field(default=None, primary_key=True)
    name: str
    price: float | None = None
    active: bool = True
    made: datetime | None = None
    colour: Colour = Colour.RED
    size: int = Field(default=0, sa_type=SmallInteger)
    limit: int = 0  # a column named like a paging parameter
    specs: dict[str, str] = Field(default_factory=dict, sa_type=JSON)


gadget_filters = FilterSet(
    Gadget,
    filters={
        "name": ["eq", "icontains", "in"],
        "price": ["lt"],
        "active": ["eq"],
        "made": ["ge", "isnull"],
        "colour": ["eq"],
        "size": ["le"],
        "limit": ["eq"],
        "specs": ["isnull"],
    },
)
GadgetQuery = Annotated[FilterQuery, Depends(filter_query(gadget_filters, paging="offset"))]
gadgets = FastAPI()
add_exception_handlers(gadgets)


@gadgets.get("/gadgets/")
async def list_gadgets(query: GadgetQuery) -> dict[str, int]:
    return {"conditions": len(query.where), "limit": query.limit}


def test_filter_query_declares_each_parameter_as_its_field_is_typed() -> None:
    operation = gadgets.openapi()["paths"]["/gadgets/"]["get"]
    schemas = {param["name"]: param["schema"] for param in operation["parameters"]}
    assert {name: schema.get("type") for name, schema in schemas.items()} == {
        "name": "string",
        "name__in": "array",
        "name__icontains": "string",
        "price__lt": "number",
        "active": "boolean",
        "made__ge": "string",
        "made__isnull": "boolean",
        "colour": None,  # a reference to the enum's schema
        "size__le": "integer",
        "limit__eq": "integer",  # "limit" is the page size
        "specs__isnull": "boolean",
        "limit": "integer",
        "offset": "integer",
    }
    assert schemas["made__ge"]["format"] == "date-time"
    assert schemas["colour"]["$ref"] == "#/components/schemas/Colour"
    assert (schemas["size__le"]["minimum"], schemas["size__le"]["maximum"]) == (-32768, 32767)
    assert all(schema["title"] == name for name, schema in schemas.items())


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("params", "status", "body"),
    [
        ({"name__in": "a,b", "active": "true"}, 200, {"conditions": 2, "limit": 50}),
        (
            {"made__ge": "2024-05-01T12:00:00", "colour": "blue"},
            200,
            {"conditions": 2, "limit": 50},
        ),
        ({"limit__eq": "3", "limit": "7"}, 200, {"conditions": 1, "limit": 7}),
        ({"active": "maybe"}, 422, ["query", "active"]),
        ({"colour": "green"}, 422, ["query", "colour"]),
        ({"price__lt": "cheap"}, 422, ["query", "price__lt"]),
        ({"after": "x"}, 422, ["query"]),
    ],
)
async def test_filter_query_validates_declared_parameters(
    params: dict[str, str], status: int, body: object
) -> None:
    transport = httpx.ASGITransport(app=gadgets)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/gadgets/", params=params)
    assert response.status_code == status, response.text
    assert (response.json() if status == 200 else response.json()["detail"][0]["loc"]) == body
