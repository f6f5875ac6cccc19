"""What a repository knows about its model, computed once per model, and the checks of data
from outside (which fields it may set) that follow from it."""

from __future__ import annotations

import builtins
from collections.abc import Collection, Iterable
from typing import Any, cast

from pydantic import BaseModel, TypeAdapter
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import Column, Integer, Table, UniqueConstraint, inspect
from sqlalchemy.orm import MANYTOONE, Mapper
from sqlalchemy.orm.exc import UnmappedColumnError
from sqlmodel import SQLModel

from ._bulk import (
    bulk_insertable,
    deletes_directly,
    has_integer_autoincrement_key,
    rows_validator,
    updates_directly,
)
from ._errors import ConfigurationError, InvalidDataError, short_repr
from ._loading import guard_detached_loads
from ._pagination import CursorCodec, SortKey
from ._values import integer_range

__all__ = ["ModelInfo", "invalid_values", "model_info"]


class ModelInfo:
    """What a repository needs to know about a model, computed once per model."""

    def __init__(self, model: type[SQLModel]) -> None:
        mapper: Mapper[Any] | None = inspect(model, raiseerr=False)
        if not isinstance(mapper, Mapper) or getattr(model, "__table__", None) is None:
            raise ConfigurationError(
                f"{model.__name__} is not a table model, so it has no table to query. "
                f"Declare it as class {model.__name__}(SQLModel, table=True)."
            )
        self.name = model.__name__
        self.mapper: Mapper[Any] = mapper
        guard_detached_loads(mapper)
        self.primary_key = tuple(mapper.primary_key)
        self.pk_names = tuple(mapper.get_property_by_column(c).key for c in self.primary_key)
        self.pk_ranges = {
            name: integer_range(column.type)[:2]
            for name, column in zip(self.pk_names, self.primary_key, strict=True)
            if isinstance(column.type, Integer)
        }
        self.columns = frozenset(mapper.column_attrs.keys())
        self.table = cast("Table", model.__table__)  # type: ignore[attr-defined]
        self.column_names = {prop.key: prop.columns[0].key for prop in mapper.column_attrs}
        self.nullable = {prop.key for prop in mapper.column_attrs if prop.columns[0].nullable}
        self.unique_sets = _unique_sets(mapper, self.table, self.pk_names)
        self.defaulted = {
            prop.key
            for prop in mapper.column_attrs
            if prop.columns[0].server_default is not None
            or prop.columns[0].default is not None
            or (prop.columns[0].primary_key and prop.columns[0].autoincrement in (True, "auto"))
        }
        self.fields = frozenset(model.model_fields)
        version = mapper.version_id_col
        self.version: str | None = (
            mapper.get_property_by_column(version).key if version is not None else None
        )
        self.protected = frozenset(self.pk_names) | frozenset(
            [self.version] if self.version else []
        )
        self._adapters: dict[str, TypeAdapter[Any]] = {}
        self._model = model
        self.rowid_key = has_integer_autoincrement_key(self.primary_key)
        self.bulk_insertable = bulk_insertable(mapper)
        self.direct_delete = deletes_directly(mapper)
        self.direct_update = updates_directly(mapper)
        self._rows_validator: TypeAdapter[builtins.list[BaseModel]] | bool | None = False
        self._codecs: dict[tuple[tuple[SortKey, ...], tuple[bytes, ...]], CursorCodec] = {}

    def rows_validator(self) -> TypeAdapter[builtins.list[BaseModel]] | None:
        if self._rows_validator is False:
            self._rows_validator = rows_validator(self._model)
        return cast("TypeAdapter[builtins.list[BaseModel]] | None", self._rows_validator)

    def adapter(self, field: str) -> TypeAdapter[Any]:
        adapter = self._adapters.get(field)
        if adapter is None:
            info = self._model.model_fields[field]
            adapter = TypeAdapter(info.rebuild_annotation())
            self._adapters[field] = adapter
        return adapter

    def codec(self, keys: tuple[SortKey, ...], signing: tuple[bytes, ...]) -> CursorCodec:
        """The cursor codec of a sort order, kept for the few orders a model is read in."""
        codec = self._codecs.get((keys, signing))
        if codec is None:
            adapters = [self.adapter(k.key) for k in keys]
            codec = CursorCodec(self.name, keys, adapters, signing)
            if len(self._codecs) < 256:  # sort orders can come from requests: stay bounded
                self._codecs[keys, signing] = codec
        return codec

    def describe_ident(self, ident: Any, *, show: bool) -> str:
        names = self.pk_names[0] if len(self.pk_names) == 1 else f"({', '.join(self.pk_names)})"
        return f"{names}={short_repr(ident)}" if show else f"the {names} asked for"

    # --- data from outside: which fields it may set --------------------------------------------

    def check_protected(self, keys: Iterable[str], allow: Collection[str]) -> None:
        refused = sorted(set(keys) & self.protected - set(allow))
        if refused:
            raise InvalidDataError(
                f"{self.name}.{refused[0]} cannot be set from request data: it is the "
                f"{'version column' if refused[0] == self.version else 'primary key'}. "
                f"If this is intended, pass allow={{{refused[0]!r}}}."
            )

    def check_fields(self, keys: Iterable[str]) -> None:
        unknown = sorted(set(keys) - self.fields)
        if unknown:
            relationships = self.mapper.relationships
            related = next((key for key in unknown if key in relationships), None)
            if related is not None:
                raise InvalidDataError(self.relationship_in_data(related))
            raise InvalidDataError(
                f"{self.name} has no field {', '.join(map(repr, unknown))}. "
                f"Its fields are: {', '.join(sorted(self.fields))}."
            )

    def relationship_in_data(self, key: str) -> str:
        relationship = self.mapper.relationships[key]
        name, other = self.name, relationship.mapper.class_.__name__
        if relationship.direction is MANYTOONE:
            columns = " and ".join(sorted(str(c.key) for c in relationship.local_columns))
            fix = f"set {columns} to the {other}'s key instead"
        else:
            fix = f"create or update the {other} rows with their key to this {name} instead"
        return f"{name}.{key} is a relationship, which data cannot set: {fix}."


_INFO: dict[type[SQLModel], ModelInfo] = {}


def model_info(model: type[SQLModel]) -> ModelInfo:
    info = _INFO.get(model)
    if info is None:
        info = _INFO[model] = ModelInfo(model)
    return info


def invalid_values(model: str, exc: PydanticValidationError, *, rows: bool = False) -> str:
    problems: list[str] = []
    for error in exc.errors():
        location = error["loc"]
        where = ""
        if rows:  # a list was validated at once: the location starts with the item's index
            where, location = f" (item {location[0]})", location[1:]
        problems.append(f"{model}.{'.'.join(map(str, location))}{where}: {error['msg']}")
    return f"Invalid value for {'; '.join(problems)}."


def _unique_sets(
    mapper: Mapper[Any], table: Table, pk_names: tuple[str, ...]
) -> tuple[frozenset[str], ...]:
    """The attribute sets that identify one row: the primary key, and unique keys whose columns
    are NOT NULL (a unique column may hold NULL many times). A sort on one of them is total."""
    keys: list[frozenset[str]] = [frozenset(pk_names)]
    column_sets: list[list[Any]] = [list(index.columns) for index in table.indexes if index.unique]
    column_sets += [
        list(constraint.columns)
        for constraint in table.constraints
        if isinstance(constraint, UniqueConstraint)
    ]
    column_sets += [[column] for column in table.columns if column.unique]
    for columns in column_sets:
        if columns and all(isinstance(c, Column) and not c.nullable for c in columns):
            try:
                keys.append(frozenset(mapper.get_property_by_column(c).key for c in columns))
            except UnmappedColumnError:  # a column no attribute maps: no use for sorting
                continue
    return tuple(dict.fromkeys(keys))
