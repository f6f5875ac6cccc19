"""Preloading: relationships read onto objects already in hand (``Repository.preload()``).

``load=`` on a read adds ``selectinload`` to the statement that reads the rows. Objects read
earlier, in this unit of work or in one that has ended, have no statement left to add it to;
re-reading them only to load a relationship costs a SELECT of rows already held. Instead each
relationship of the plan is read by the keys the objects already carry, one SELECT per
relationship (per 30,000 keys), and set on them as loaded (``set_committed_value``, which
neither marks them changed nor fires events):

* many-to-one (``Hero.team``): the targets whose key is among the objects' foreign keys;
* one-to-many (``Team.heroes``): the rows whose foreign key is among the objects' keys;
* many-to-many: the targets joined to the link table, by the link table's column;
* any other join condition (extra criteria in ``primaryjoin``): the targets joined from the
  objects' table through the relationship itself, by the objects' primary keys.

Each SELECT is an ORM statement of the session, so its policies (tenant scope, soft delete)
filter the rows it finds as they filter ``load=``. A relationship already loaded on an object is
kept as it is (it may hold changes not yet flushed); a chain goes on from what it holds.
"""

from __future__ import annotations

import builtins
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import ColumnElement, Select, inspect, select, tuple_
from sqlalchemy.orm import MANYTOONE, ONETOMANY, QueryableAttribute, RelationshipProperty, aliased
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import BinaryExpression, BooleanClauseList, ColumnClause

from ._errors import InvalidDataError
from ._loading import LoadSpec, load_chains
from ._upsert import MAX_PARAMETERS

__all__ = ["PreloadPlan", "preload_plan"]

Fetch = Callable[[Select[Any]], Awaitable[Sequence[Any]]]
"""Runs one statement in the repository's session and returns its rows."""


def _no_steps() -> dict[str, _Step]:
    return {}


@dataclass
class _Step:
    """One relationship of the plan, and the relationships to load from its targets."""

    link: _Link
    then: dict[str, _Step] = field(default_factory=_no_steps)


@dataclass(frozen=True)
class PreloadPlan:
    """The relationships to load, as a tree of steps from the model (shared prefixes once)."""

    model: type[Any]
    steps: dict[str, _Step]

    def check(self, items: Sequence[object]) -> None:
        """Refuse objects the plan cannot start from, before any SQL runs."""
        name = self.model.__name__
        for position, item in enumerate(items):
            if not isinstance(item, self.model):
                raise InvalidDataError(
                    f"preload() of a {name} repository got {type(item).__name__} at "
                    f"position {position}; pass {name} objects."
                )
            if not inspect(item).has_identity:
                raise InvalidDataError(
                    f"preload() got a {name} that is not stored yet (position {position}): "
                    "flush it first (await uow.flush()), or read it with load=."
                )

    async def run(self, items: Sequence[object], fetch: Fetch) -> None:
        await _run(self.steps.values(), items, fetch)


def preload_plan(model: type[Any], specs: Iterable[LoadSpec]) -> PreloadPlan:
    """The plan for ``specs`` from ``model``.

    Raises:
        InvalidLoadError: a spec is not a relationship, or a chain does not follow on.
    """
    steps: dict[str, _Step] = {}
    for chain in load_chains(specs, model):
        level = steps
        for attribute in chain:
            step = level.get(attribute.key)
            if step is None:
                step = level[attribute.key] = _Step(_link(_relationship(attribute)))
            level = step.then
    return PreloadPlan(model, steps)


async def _run(steps: Iterable[_Step], parents: Sequence[object], fetch: Fetch) -> None:
    for step in steps:
        targets = await step.link.load(parents, fetch)
        if step.then and targets:
            await _run(step.then.values(), targets, fetch)


def _relationship(attribute: QueryableAttribute[Any]) -> RelationshipProperty[Any]:
    return cast("RelationshipProperty[Any]", attribute.property)


_LINKS: dict[RelationshipProperty[Any], _Link] = {}


def _link(prop: RelationshipProperty[Any]) -> _Link:
    """The link of ``prop``, built once: its statement costs more to build than to reuse."""
    link = _LINKS.get(prop)
    if link is None:
        link = _LINKS[prop] = _Link(prop)
    return link


class _Link:
    """How one relationship is read for many objects at once: the statement, the key each
    object matches by, and the column of each row that holds that key."""

    def __init__(self, prop: RelationshipProperty[Any]) -> None:
        self.prop = prop
        self.key = prop.key
        target: Any = prop.mapper.class_
        pairs: list[tuple[ColumnElement[Any], ColumnElement[Any]]]
        base: Any  # a Select of the target and the matched columns (pyright: of any arity)
        self.reverse: str | None = None
        if prop.secondary is not None and _is_plain(prop.primaryjoin, prop.synchronize_pairs):
            pairs = list(prop.synchronize_pairs)  # (object's column, link table's column)
            base = select(target, *(c for _, c in pairs)).join(prop.secondary, prop.secondaryjoin)
        elif prop.secondary is None and _is_plain(prop.primaryjoin, prop.local_remote_pairs):
            pairs = list(prop.local_remote_pairs)  # (object's column, target's column)
            base = select(target, *(c for _, c in pairs))
            self.reverse = _many_to_one_back(prop)
        else:
            parent = prop.parent
            pairs = [(c, c) for c in parent.primary_key]
            alias = aliased(target)  # the target's table may be the object's (self-referential)
            base = select(alias, *parent.primary_key).join_from(
                parent.class_, getattr(parent.class_, prop.key).of_type(alias)
            )
        if prop.order_by:
            base = base.order_by(*prop.order_by)
        self.base: Select[Any] = base
        self.attributes = [prop.parent.get_property_by_column(c).key for c, _ in pairs]
        self.matched = [c for _, c in pairs]

    async def load(self, parents: Sequence[object], fetch: Fetch) -> builtins.list[object]:
        """Load the relationship onto the parents that lack it; return every parent's targets."""
        waiting: dict[tuple[Any, ...] | None, builtins.list[object]] = {}
        for parent in parents:
            if self.key not in inspect(parent).dict:
                waiting.setdefault(self._key_of(parent), []).append(parent)
        found: dict[tuple[Any, ...], builtins.list[object]] = {}
        keys = [key for key in waiting if key is not None]
        for statement in self._statements(keys):
            for row in await fetch(statement):
                found.setdefault(tuple(row[1:]), []).append(row[0])
        for key, owners in waiting.items():
            rows = found.get(key, []) if key is not None else []
            for owner in owners:
                self._set(owner, rows)
        return self._targets(parents)

    def _targets(self, parents: Sequence[object]) -> builtins.list[object]:
        """What the relationship holds on each parent, once each (by identity)."""
        seen: dict[int, object] = {}
        for parent in parents:
            value = inspect(parent).dict.get(self.key)
            if value is None:
                continue
            # A model object is iterable too (pydantic): ask the relationship, not the value.
            for target in value if self.prop.uselist else [value]:
                seen.setdefault(id(target), target)
        return builtins.list(seen.values())

    def _key_of(self, parent: object) -> tuple[Any, ...] | None:
        state = inspect(parent)
        values = tuple(
            state.dict[name] if name in state.dict else getattr(parent, name)
            for name in self.attributes
        )
        return None if any(v is None for v in values) else values  # NULL matches nothing

    def _statements(self, keys: Sequence[tuple[Any, ...]]) -> builtins.list[Select[Any]]:
        width = len(self.matched)
        size = max(1, MAX_PARAMETERS // width)
        statements: builtins.list[Select[Any]] = []
        for start in range(0, len(keys), size):
            part = keys[start : start + size]
            if width == 1:
                condition = self.matched[0].in_([k[0] for k in part])
            else:
                condition = tuple_(*self.matched).in_(part)
            statements.append(self.base.where(condition))
        return statements

    def _set(self, owner: object, rows: builtins.list[object]) -> None:
        if self.prop.uselist:
            set_committed_value(owner, self.key, rows)
        else:
            set_committed_value(owner, self.key, rows[0] if rows else None)
        if self.reverse is not None:
            # Each row's many-to-one back to its owner, which is known: without it, reading
            # it on an owner from an ended unit of work would need a query.
            for row in rows:
                if self.reverse not in inspect(row).dict:
                    set_committed_value(row, self.reverse, owner)


def _is_plain(
    condition: ColumnElement[bool],
    pairs: Sequence[tuple[ColumnElement[Any], ColumnElement[Any]]],
) -> bool:
    """Whether ``condition`` is exactly the equality of ``pairs`` of columns (and nothing else,
    such as a filter on a column, which a read by key values would leave out)."""
    found = _equalities(condition)
    return found is not None and found == {frozenset(pair) for pair in pairs}


def _equalities(condition: ColumnElement[Any]) -> set[frozenset[ColumnElement[Any]]] | None:
    if isinstance(condition, BooleanClauseList) and condition.operator is operators.and_:
        found: set[frozenset[ColumnElement[Any]]] = set()
        for clause in condition.clauses:
            part = _equalities(clause)
            if part is None:
                return None
            found |= part
        return found
    if (
        isinstance(condition, BinaryExpression)
        and condition.operator is operators.eq
        and isinstance(condition.left, ColumnClause)
        and isinstance(condition.right, ColumnClause)
    ):
        return {frozenset((condition.left, condition.right))}
    return None


def _many_to_one_back(prop: RelationshipProperty[Any]) -> str | None:
    """The many-to-one that mirrors one-to-many ``prop`` (``Hero.team`` for ``Team.heroes``)."""
    if prop.direction is not ONETOMANY or not prop.back_populates:
        return None
    back = prop.mapper.relationships.get(prop.back_populates)
    if back is None or back.direction is not MANYTOONE or back.secondary is not None:
        return None
    return back.key
