"""Plans from response schemas: which columns and relationships a schema needs of a model.

A schema field named after a column is read from that column; one named after a relationship
and typed as another schema (``heroes: list[HeroPublic]``, ``team: TeamPublic | None``) is the
related rows, read into that schema. Two things are built from that:

* :func:`projection_plan` for ``repository.into(Schema)``: the columns to select, and for each
  nested schema one more statement per level, a SELECT of only the child schema's columns and
  the foreign key, ``WHERE fk IN (...)`` the keys of the rows above, grouped in Python;
* :func:`load_plan`, the load specs that make ORM reads load what the schema will read.
"""

from __future__ import annotations

import builtins
import types
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel
from sqlalchemy import Select, inspect, select, tuple_
from sqlalchemy.orm import Mapper, QueryableAttribute, RelationshipProperty
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import BinaryExpression, BooleanClauseList

from ._errors import InvalidLoadError
from ._loading import LoadSpec
from ._upsert import MAX_PARAMETERS

__all__ = ["Plan", "load_plan", "projection_plan", "relationship_paths", "schema_target"]

Rows = Sequence[Sequence[Any]]
Run = Callable[[Select[Any]], Awaitable[builtins.list[Any]]]


@dataclass(frozen=True, eq=False)
class Nested:
    """A field holding related rows, read with one more statement."""

    name: str
    relationship: RelationshipProperty[Any]
    many: bool
    plan: Plan
    local: tuple[int, ...]  # where the link's values are among the parent's selected columns
    remote: tuple[str, ...]  # the child's columns holding them

    async def read(
        self, run: Run, keys: builtins.list[tuple[Any, ...]]
    ) -> dict[tuple[Any, ...], builtins.list[dict[str, Any]]]:
        """The child records of each parent key, in the relationship's order (or the
        child's primary key's)."""
        wanted = builtins.list(dict.fromkeys(k for k in keys if None not in k))
        if not wanted:
            return {}
        child = self.plan
        links = [getattr(child.model, key) for key in self.remote]
        columns = [getattr(child.model, key) for key in child.selected]
        order = self.relationship.order_by or builtins.list(self.relationship.mapper.primary_key)
        size = max(1, MAX_PARAMETERS // len(links))
        rows: builtins.list[Any] = []
        for start in range(0, len(wanted), size):
            part = wanted[start : start + size]
            condition = (
                links[0].in_([k[0] for k in part]) if len(links) == 1 else tuple_(*links).in_(part)
            )
            statement: Select[Any] = select(*columns, *links)  # pyright: ignore[reportAssignmentType]
            rows.extend(await run(statement.where(condition).order_by(*order)))
        records = [dict(zip(child.fields, row, strict=False)) for row in rows]
        await child.fill(run, rows, records)
        width = len(child.selected)
        groups: dict[tuple[Any, ...], builtins.list[dict[str, Any]]] = {}
        for row, record in zip(rows, records, strict=True):
            groups.setdefault(tuple(row[width:]), []).append(record)
        return groups


@dataclass(frozen=True, eq=False)
class Plan:
    """How to read ``schema`` instances from ``model``'s rows."""

    model: type[Any]
    schema: type[BaseModel]
    fields: tuple[str, ...]  # the schema's fields read from columns
    selected: tuple[str, ...]  # those, then the columns the nested reads link on
    nested: tuple[Nested, ...]

    async def fill(self, run: Run, rows: Rows, records: builtins.list[dict[str, Any]]) -> None:
        """Set the nested fields of ``records`` (made from ``rows``, which start with the
        ``selected`` columns): one statement per relationship and level, per 30,000 keys."""
        for nested in self.nested:
            keys = [tuple(row[i] for i in nested.local) for row in rows]
            groups = await nested.read(run, keys)
            for record, key in zip(records, keys, strict=True):
                found = groups.get(key, [])
                record[nested.name] = found if nested.many else (found[0] if found else None)


def schema_target(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The schema a field's type holds, and whether it holds a list of them.

    ``HeroPublic`` and ``HeroPublic | None`` give ``(HeroPublic, False)``; ``list[HeroPublic]``,
    ``Sequence[HeroPublic]`` and ``tuple[HeroPublic, ...]`` give ``(HeroPublic, True)``;
    anything else ``(None, ...)``.
    """
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin is Union or origin is types.UnionType:
        rest = [arg for arg in args if arg is not type(None)]
        return schema_target(rest[0]) if len(rest) == 1 else (None, False)
    if origin is builtins.list or origin is Sequence or origin is builtins.tuple:
        if origin is builtins.tuple and (len(args) != 2 or args[1] is not Ellipsis):
            return None, True
        inner = args[0] if args else None
        return (inner if _is_schema(inner) else None), True
    return (annotation if _is_schema(annotation) else None), False


def _is_schema(value: object) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def _mapper(model: type[Any]) -> Mapper[Any]:
    mapper: Mapper[Any] | None = inspect(model, raiseerr=False)
    if not isinstance(mapper, Mapper):
        raise InvalidLoadError(f"{model!r} is not a mapped table model.")
    return mapper


_PLANS: dict[tuple[type[Any], type[BaseModel]], Plan] = {}


def projection_plan(model: type[Any], schema: type[BaseModel]) -> Plan:
    """The plan for reading ``schema`` instances from ``model``, made once per pair.

    Raises:
        InvalidLoadError: a required field of ``schema`` is neither a column nor a relationship
            of ``model``, or a relationship field is not typed as a schema (or a list of them,
            as the relationship is), or cannot be read this way.
    """
    key = (model, schema)
    plan = _PLANS.get(key)
    if plan is None:
        plan = _PLANS[key] = _plan(model, schema, ())
    return plan


def _plan(model: type[Any], schema: type[BaseModel], stack: tuple[type[BaseModel], ...]) -> Plan:
    mapper = _mapper(model)
    owner = mapper.class_.__name__
    columns = mapper.column_attrs
    relationships = mapper.relationships
    fields: list[str] = []
    nested: list[tuple[str, RelationshipProperty[Any], type[BaseModel], bool]] = []
    missing: list[str] = []
    for name, field in schema.model_fields.items():
        if name in columns:
            fields.append(name)
        elif name in relationships:
            prop = relationships[name]
            target, many = schema_target(field.annotation)
            where = f"{schema.__name__}.{name} (for {owner}.{name})"
            if target is None:
                shape = (
                    f"list[{prop.mapper.class_.__name__}Public]"
                    if prop.uselist
                    else (f"{prop.mapper.class_.__name__}Public | None")
                )
                raise InvalidLoadError(
                    f"{where} must be typed as a schema of {prop.mapper.class_.__name__}, "
                    f"such as {shape}, to be read by into()."
                )
            if many != prop.uselist:
                wanted = "a list" if prop.uselist else "one object or None"
                raise InvalidLoadError(
                    f"{where}: {owner}.{name} holds {wanted}; type the field accordingly."
                )
            if target in stack or target is schema:
                raise InvalidLoadError(
                    f"{where}: {target.__name__} contains itself, so into() would read without "
                    "end; use a schema that stops at some depth."
                )
            nested.append((name, prop, target, many))
        elif field.is_required():
            missing.append(name)
    if missing:
        raise InvalidLoadError(
            f"{schema.__name__} cannot be read from {owner}: "
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} neither a column nor "
            f"a relationship of it. Its relationships are: "
            f"{', '.join(sorted(relationships.keys())) or '(none)'}."
        )
    selected = list(fields)
    built: list[Nested] = []
    for name, prop, target, many in nested:
        pairs = _link(prop, f"{owner}.{name}")
        local_keys = [mapper.get_property_by_column(local).key for local, _ in pairs]
        remote = tuple(prop.mapper.get_property_by_column(r).key for _, r in pairs)
        for key in local_keys:
            if key not in selected:
                selected.append(key)
        child = _plan(prop.mapper.class_, target, (*stack, schema))
        local = tuple(selected.index(key) for key in local_keys)
        built.append(Nested(name, prop, many, child, local, remote))
    return Plan(model, schema, tuple(fields), tuple(selected), tuple(built))


def _link(prop: RelationshipProperty[Any], name: str) -> builtins.list[tuple[Any, Any]]:
    """The (parent column, child column) pairs a relationship joins on, when it joins on them
    alone (a foreign key, either way)."""
    pairs = builtins.list(prop.local_remote_pairs or ())
    join = prop.primaryjoin
    parts = (
        builtins.list(join.clauses)
        if isinstance(join, BooleanClauseList) and join.operator is operators.and_
        else [join]
    )
    simple = len(parts) == len(pairs) and all(
        isinstance(part, BinaryExpression) and part.operator is operators.eq for part in parts
    )
    if prop.secondary is not None or not pairs or not simple:
        raise InvalidLoadError(
            f"into() reads relationships that join on foreign key columns only; {name} has an "
            f"association table or a join condition of its own. Read it with load=[{name}] "
            "and validate the objects."
        )
    return pairs


def relationship_paths(
    model: type[Any], schema: type[BaseModel]
) -> builtins.list[tuple[QueryableAttribute[Any], ...]]:
    """The relationship chains that reading ``schema`` from ``model`` objects touches, the
    longest ones only: ``[(Team.heroes, Hero.powers)]``. Fields that are not relationships are
    left to the model's attributes."""
    return _paths(_mapper(model), schema, ())


def _paths(
    mapper: Mapper[Any], schema: type[BaseModel], stack: tuple[type[BaseModel], ...]
) -> builtins.list[tuple[QueryableAttribute[Any], ...]]:
    chains: list[tuple[QueryableAttribute[Any], ...]] = []
    for name, field in schema.model_fields.items():
        prop = mapper.relationships.get(name)
        if prop is None:
            continue
        attribute: QueryableAttribute[Any] = getattr(mapper.class_, name)
        target, _ = schema_target(field.annotation)
        below = (
            _paths(prop.mapper, target, (*stack, schema))
            if target is not None and target not in stack and target is not schema
            else []
        )
        chains.extend([(attribute, *chain) for chain in below] or [(attribute,)])
    return chains


def load_plan(model: type[Any], schema: type[BaseModel]) -> builtins.list[LoadSpec]:
    """Return the load specs that read what ``schema`` needs of ``model`` objects.

    Each field of ``schema`` named after a relationship of ``model`` is loaded, and so are the
    relationships of the schemas it nests, as chains::

        teams = await uow.repository(Team).list(load=load_plan(Team, TeamPublicWithHeroes))
        # == load=[Team.heroes]: two SELECTs, and serialising never lazy-loads

    A relationship alone is returned as its attribute (``Team.heroes``), a chain as a tuple
    (``(Team.heroes, Hero.powers)``), each loaded with one more SELECT per link. Other fields
    are left to the model's attributes.

    Raises:
        InvalidLoadError: ``model`` is not a mapped table model.

    .. versionadded:: 0.1.0
    """
    return [chain[0] if len(chain) == 1 else chain for chain in relationship_paths(model, schema)]
