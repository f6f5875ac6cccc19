"""Eager loading: load specs become loader options, and implicit IO becomes a clear error.

In async code an attribute access cannot run SQL: SQLAlchemy's lazy load then fails with
``MissingGreenlet``, which names neither the attribute nor the fix. herorepo does two things:

* :func:`eager` (and the repositories' ``load=``) turns relationships into ``selectinload`` (one
  extra SELECT per relationship) or, with :func:`joined`, ``joinedload`` (a JOIN in the same
  query), validating the chain when the query is built.
* Sessions made by herorepo run every ORM statement through :func:`refuse_implicit_io`, which
  turns an implicit load outside ``await`` into :class:`~herorepo.LazyLoadError` naming the
  attribute.
* After the unit of work ended, an object is detached and SQLAlchemy would raise its
  ``DetachedInstanceError``; :func:`guard_detached_loads` makes that a
  :class:`~herorepo.DetachedLoadError` (a ``LazyLoadError``) that says how to load it.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias, cast

import greenlet
from sqlalchemy import inspect
from sqlalchemy.orm import (
    Mapper,
    QueryableAttribute,
    RelationshipProperty,
    joinedload,
    selectinload,
)
from sqlalchemy.orm.exc import DetachedInstanceError

from ._errors import DetachedLoadError, InvalidLoadError, LazyLoadError

if TYPE_CHECKING:
    from sqlalchemy.orm import ORMExecuteState

    # What selectinload() and joinedload() return; SQLAlchemy has no public name for it.
    from sqlalchemy.orm.strategy_options import (
        _AbstractLoad,  # pyright: ignore[reportPrivateUsage]
    )

__all__ = ["LoadSpec", "eager", "guard_detached_loads", "joined", "refuse_implicit_io"]


@dataclass(frozen=True)
class Joined:
    """A relationship chain to load with a JOIN instead of a separate SELECT; see :func:`joined`."""

    path: tuple[object, ...]


# The union ends in ``object`` because SQLModel types a relationship attribute as its value.
LoadSpec: TypeAlias = QueryableAttribute[Any] | str | tuple[object, ...] | Joined | object
"""What ``load=`` and :func:`eager` accept: a relationship to read along with the rows.

Each spec is one of:

- a relationship attribute, such as ``Team.heroes``: read with one more SELECT for all the
  rows (``selectinload``);
- a chain, as a tuple: ``(Team.heroes, Hero.powers)`` reads the heroes and each hero's powers,
  one more SELECT per link;
- a dotted name from the model read: ``"heroes.powers"`` is the same chain;
- :func:`joined` around any of these, such as ``joined(Hero.team)``: read by a LEFT OUTER JOIN
  in the same query (``joinedload``), which suits many-to-one relationships.

To a type checker a spec is any ``object``: SQLModel types ``Team.heroes`` as its value, a
``list[Hero]``, which no narrower type would accept. herorepo checks every spec when the query
is built, before any SQL is sent, and raises :class:`~herorepo.InvalidLoadError` for one that is
not a relationship of the model, or a chain whose links do not follow each other.

.. versionadded:: 0.1.0
"""


def joined(*path: object) -> Joined:
    """Load a relationship chain with ``joinedload`` (a LEFT OUTER JOIN) instead of a SELECT.

    A JOIN suits many-to-one relationships (``Hero.team``); for collections the extra SELECT of
    the default selectin loading is usually cheaper.

    .. versionadded:: 0.1.0
    """
    if not path:
        raise InvalidLoadError("joined() needs at least one relationship, e.g. joined(Hero.team).")
    return Joined(path)


def eager(*specs: LoadSpec, model: type[Any] | None = None) -> list[_AbstractLoad]:
    """Build loader options for ``select(...).options(*eager(...))``.

    Args:
        specs: Relationships to load. A tuple is a chain (``(Team.heroes, Hero.powers)``); a
            string is a dotted path from ``model`` (``"heroes.powers"``).
        model: The entity being selected. Required for string specs; when given, attribute
            specs are checked to start from it.

    Returns:
        Loader options, one per spec.

    Raises:
        InvalidLoadError: a spec is not a relationship, does not start at ``model`` or does not
            continue from the previous link of its chain.

    .. versionadded:: 0.1.0
    """
    options: list[_AbstractLoad] = []
    for spec in specs:
        use_join = isinstance(spec, Joined)
        raw: tuple[object, ...]
        if isinstance(spec, Joined):
            raw = spec.path
        elif isinstance(spec, tuple):
            raw = cast("tuple[object, ...]", spec)
        else:
            raw = (spec,)
        option: _AbstractLoad | None = None
        for attr in _resolve_chain(raw, model):
            if option is None:
                option = joinedload(attr) if use_join else selectinload(attr)
            else:
                option = option.joinedload(attr) if use_join else option.selectinload(attr)
        assert option is not None
        options.append(option)
    return options


def load_chains(specs: Iterable[LoadSpec], model: type[Any]) -> list[list[QueryableAttribute[Any]]]:
    """The relationship chain of each spec, from ``model``, checked as :func:`eager` checks it;
    :func:`joined` marks nothing here (used by ``Repository.preload()``, which has no JOIN)."""
    chains: list[list[QueryableAttribute[Any]]] = []
    for spec in specs:
        if isinstance(spec, Joined):
            raw = spec.path
        elif isinstance(spec, tuple):
            raw = cast("tuple[object, ...]", spec)
        else:
            raw = (spec,)
        chains.append(_resolve_chain(raw, model))
    return chains


def has_joined(specs: Iterable[LoadSpec]) -> bool:
    """Whether any spec loads a collection by JOIN (results then need ``.unique()``)."""
    return any(isinstance(spec, Joined) for spec in specs)


def _resolve_chain(raw: Sequence[object], model: type[Any] | None) -> list[QueryableAttribute[Any]]:
    if not raw:
        raise InvalidLoadError("An empty tuple is not a load spec; name at least one relationship.")
    parts: list[object] = []
    for item in raw:
        parts.extend(item.split(".") if isinstance(item, str) else [item])
    current: Mapper[Any] | None = _mapper_of(model) if model is not None else None
    chain: list[QueryableAttribute[Any]] = []
    for part in parts:
        attr = _relationship_attribute(part, current)
        chain.append(attr)
        current = attr.property.mapper
    return chain


def _mapper_of(model: type[Any]) -> Mapper[Any]:
    mapper: Mapper[Any] | None = inspect(model, raiseerr=False)
    if not isinstance(mapper, Mapper):
        raise InvalidLoadError(f"{model!r} is not a mapped table model.")
    return mapper


def _relationship_names(mapper: Mapper[Any]) -> str:
    names = sorted(mapper.relationships.keys())
    return ", ".join(names) if names else "(none)"


def _relationship_attribute(part: object, current: Mapper[Any] | None) -> QueryableAttribute[Any]:
    if isinstance(part, str):
        if current is None:
            raise InvalidLoadError(
                f"The load spec {part!r} is a name; pass the model too (eager(..., model=Team)) "
                "or use the attribute itself, e.g. Team.heroes."
            )
        if part not in current.relationships:
            raise InvalidLoadError(
                f"{current.class_.__name__} has no relationship {part!r}. "
                f"Its relationships are: {_relationship_names(current)}."
            )
        attr: Any = getattr(current.class_, part)
        return attr  # type: ignore[no-any-return]
    if not isinstance(part, QueryableAttribute):
        raise InvalidLoadError(
            f"{part!r} is not a load spec: use a relationship attribute such as Team.heroes, a "
            "tuple chain such as (Team.heroes, Hero.powers), or joined(Hero.team)."
        )
    attribute: QueryableAttribute[Any] = part  # pyright: ignore[reportUnknownVariableType]
    return _check_relationship(attribute, current)


def _check_relationship(
    part: QueryableAttribute[Any], current: Mapper[Any] | None
) -> QueryableAttribute[Any]:
    owner = part.parent.class_.__name__
    if not isinstance(part.property, RelationshipProperty):
        raise InvalidLoadError(
            f"{owner}.{part.key} is a column, not a relationship; columns are always loaded. "
            f"{owner}'s relationships are: {_relationship_names(part.parent.mapper)}."
        )
    if current is not None and not current.common_parent(part.parent.mapper):
        raise InvalidLoadError(
            f"{owner}.{part.key} does not belong to {current.class_.__name__}: a chain must go "
            f"from each relationship to the next, e.g. (Team.heroes, Hero.powers). "
            f"{current.class_.__name__}'s relationships are: {_relationship_names(current)}."
        )
    return part


# --- the guard against implicit IO (wired up in _session.py) -------------------------------------


def _in_async_bridge() -> bool:
    # SQLAlchemy marks the greenlets it runs ORM code in; outside one, IO cannot happen.
    return bool(getattr(greenlet.getcurrent(), "__sqlalchemy_greenlet_provider__", False))


def refuse_implicit_io(state: ORMExecuteState) -> None:
    if _in_async_bridge():
        return
    path = state.loader_strategy_path
    prop = path[-1] if path is not None and len(path) else None
    if state.is_relationship_load and isinstance(prop, RelationshipProperty):
        owner = prop.parent.class_.__name__
        name = f"{owner}.{prop.key}"
        raise LazyLoadError(
            f"{name} was not loaded, and async code cannot load it on attribute access. "
            f"Ask for it when reading: repository.get(..., load=[{name}]), or "
            f"select({owner}).options(*eager({name})); or await session.refresh(obj, "
            f"[{prop.key!r}]) on an object you already have."
        )
    mapper = state.bind_mapper
    what = f"A {mapper.class_.__name__} object" if mapper is not None else "An object"
    raise LazyLoadError(
        f"{what} has expired attributes (after a rollback or an explicit expire), and async "
        "code cannot reload them on attribute access. Call await session.refresh(obj) first, "
        "or read the object again."
    )


_GUARDED: weakref.WeakSet[Mapper[Any]] = weakref.WeakSet()


def guard_detached_loads(mapper: Mapper[Any]) -> None:
    """Make a lazy load on a detached object of any model of ``mapper``'s registry raise
    :class:`~herorepo.DetachedLoadError` instead of SQLAlchemy's ``DetachedInstanceError``.

    Each relationship's lazy loader is wrapped once, on its class attribute: nothing is added
    per object or per query. (``impl.callable_`` is where SQLAlchemy keeps an attribute's lazy
    loader; the wrapper only changes the error that a load which cannot run already raises.)
    """
    for each in mapper.registry.mappers:
        if each in _GUARDED:
            continue
        _GUARDED.add(each)
        for prop in each.relationships:
            impl: Any = each.class_manager[prop.key].impl
            loader = getattr(impl, "callable_", None)
            if loader is not None:
                impl.callable_ = _DetachedGuard(loader, f"{each.class_.__name__}.{prop.key}")


class _DetachedGuard:
    __slots__ = ("loader", "name")

    def __init__(self, loader: Any, name: str) -> None:
        self.loader = loader
        self.name = name

    def __call__(self, state: Any, passive: Any) -> Any:
        try:
            return self.loader(state, passive)
        except DetachedInstanceError:
            owner = self.name.partition(".")[0]
            raise DetachedLoadError(
                f"{self.name} was not loaded, and the unit of work that read this {owner} has "
                f"ended, so it cannot be loaded any more. Ask for it when reading: "
                f"repository.get(..., load=[{self.name}]), or select({owner}).options("
                f"*eager({self.name})); or read the object again in a new unit of work."
            ) from None
