"""The query parameters of :func:`~herorepo.integrations.fastapi.filter_query`, declared for
FastAPI, so that a FilterSet's fields, operators and paging appear typed in the OpenAPI schema."""

from __future__ import annotations

from datetime import date, time, timedelta
from decimal import Decimal
from enum import Enum
from types import UnionType
from typing import Annotated, Any, Union, cast, get_args, get_origin
from uuid import UUID

from fastapi import Query
from sqlalchemy import Integer
from sqlmodel import SQLModel

from .._filters import OPERATORS, TEXT, FilterSet
from .._values import integer_range

__all__ = ["PAGING_ONLY", "query_parameters"]

PAGING_ONLY = {
    "offset": "Pass after=<next_cursor of the previous page>, not offset.",
    "after": "This list pages with offset=, not after=.",
    "before": "This list pages with offset=, not before=.",
}
_RESERVED = ("order_by", "limit", "offset", "after", "before")  # FilterSet.parse's own
_MEANING = {
    "eq": "{field} equals this value.",
    "ne": "{field} differs from this value.",
    "lt": "{field} is less than this value.",
    "le": "{field} is at most this value.",
    "gt": "{field} is greater than this value.",
    "ge": "{field} is at least this value.",
    "in": "{field} is one of these values: repeat the parameter, or separate values by commas.",
    "not_in": "{field} is none of these values: repeat the parameter, or separate them by commas.",
    "isnull": "true: {field} is null; false: it is not.",
    "contains": "{field} contains this text; case matters.",
    "icontains": "{field} contains this text, in any case.",
    "startswith": "{field} starts with this text; case matters.",
    "istartswith": "{field} starts with this text, in any case.",
}
# Types FastAPI reads from a query string; a field of another type is declared as text.
_SCALARS = (str, int, float, Decimal, UUID, date, time, timedelta, Enum)


def query_parameters(filter_set: FilterSet[Any], paging: str | None) -> list[tuple[Any, Any]]:
    """The annotation and default of each parameter ``filter_set.parse`` reads."""
    model = filter_set.model
    found: list[tuple[Any, Any]] = []

    def add(alias: str, type_: Any, default: Any = None, **constraints: Any) -> None:
        query = Query(alias=alias, title=alias, **constraints)
        found.append((cast("Any", Annotated)[type_, query], default))

    for field, operators in filter_set.allowed.items():
        type_ = _field_type(model, field)
        column_type = getattr(model, field).type
        bounds: dict[str, int] = {}
        if isinstance(column_type, Integer) and type_ is int:
            low, high, _ = integer_range(column_type)
            bounds = {"ge": low, "le": high}  # FilterSet refuses what the column cannot hold
        for op in sorted(operators, key=OPERATORS.index):
            alias = field if op == "eq" and field not in _RESERVED else f"{field}__{op}"
            meaning = _MEANING[op].format(field=field)
            if op in ("in", "not_in"):
                add(alias, list[str], description=meaning)
            elif op == "isnull":
                add(alias, bool, description=meaning)
            elif op in TEXT:
                add(alias, str, description=meaning)
            else:
                add(alias, type_, description=meaning, **bounds)
    sortable = sorted(filter_set.sortable)
    if sortable:
        add(
            "order_by",
            str,
            description=(
                "Fields to sort by, separated by commas; a field preceded by - sorts in "
                f"descending order. Sortable: {', '.join(sortable)}."
            ),
        )
    add(
        "limit",
        int,
        filter_set.default_limit,
        ge=1,
        le=filter_set.max_limit,
        description="How many rows to return at most.",
    )
    if paging != "keyset":
        add("offset", int, ge=0, le=10**12 - 1, description="How many rows to skip.")
    if paging != "offset":
        add("after", str, description="The cursor of the previous page, to read the next one.")
        add("before", str, description="The cursor of the next page, to read the previous one.")
    return found


def _field_type(model: type[SQLModel], field: str) -> Any:
    """The field's type without ``None``, or ``str`` if FastAPI cannot read it from a query."""
    annotation = model.model_fields[field].annotation
    args = [arg for arg in get_args(annotation) if arg is not type(None)]
    if get_origin(annotation) in (Union, UnionType) and len(args) == 1:
        annotation = args[0]
    if isinstance(annotation, type) and issubclass(annotation, _SCALARS):
        return annotation
    return str
