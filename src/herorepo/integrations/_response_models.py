"""The startup check of response models (:func:`check_response_models` in ``fastapi.py``).

A route's ``response_model`` that nests relationship schemas (``TeamPublicWithHeroes.heroes``)
is serialised from whatever the endpoint returns; if that is an ORM object whose relationship
was not loaded, serialising it lazy-loads, which async code cannot do (``MissingGreenlet``, or
herorepo's ``LazyLoadError``), and the request fails with a 500. The check cannot read endpoint
code, so it reads what routes declare: the repository dependencies
``repository(Team, load=[...])`` (whose reads then load those relationships) and
``repository(Team, into=Schema)`` (whose reads return schemas, never ORM objects).
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Callable, Collection, Iterator
from typing import Any, get_args, get_origin, get_type_hints

from pydantic import BaseModel
from sqlalchemy import inspect
from sqlalchemy.orm import Mapper, QueryableAttribute
from sqlmodel import SQLModel

from .._loading import Joined, LoadSpec, eager
from .._projection_plans import relationship_paths

__all__ = ["Declared", "declare", "route_problems"]

Chain = tuple[QueryableAttribute[Any], ...]


@dataclasses.dataclass(frozen=True)
class Declared:
    """What a repository dependency's reads load."""

    model: type[Any]
    load: tuple[LoadSpec, ...] = ()
    into: type[BaseModel] | None = None

    def loaded(self) -> set[tuple[str, ...]]:
        """The relationship chains its reads load, as names, with every prefix."""
        chains: list[tuple[str, ...]] = []
        if self.into is not None:
            paths = relationship_paths(self.model, self.into)
            chains = [tuple(a.key for a in chain) for chain in paths]
        else:
            for spec in self.load:
                raw: tuple[object, ...]
                if isinstance(spec, Joined):
                    raw = spec.path
                elif isinstance(spec, tuple):
                    raw = tuple(spec)  # pyright: ignore[reportUnknownArgumentType]
                else:
                    raw = (spec,)
                chains.append(_keys(raw))
        return {chain[:end] for chain in chains for end in range(1, len(chain) + 1)}


def _keys(raw: tuple[object, ...]) -> tuple[str, ...]:
    """The names along a load spec's chain (checked by eager() when it was declared)."""
    keys: list[str] = []
    for item in raw:
        if isinstance(item, str):
            keys.extend(item.split("."))
        else:
            keys.append(str(getattr(item, "key", item)))
    return tuple(keys)


_DECLARED: weakref.WeakKeyDictionary[Callable[..., Any], Declared] = weakref.WeakKeyDictionary()


def declare(dependency: Callable[..., Any], declared: Declared) -> None:
    """Record what ``dependency``'s repository reads load (its specs are checked here)."""
    if declared.load:
        eager(*declared.load, model=declared.model)
    _DECLARED[dependency] = declared


def _declarations(dependant: Any) -> Iterator[Declared]:
    for sub in getattr(dependant, "dependencies", ()):
        call = getattr(sub, "call", None)
        if call is not None:
            try:
                found = _DECLARED.get(call)
            except TypeError:  # not weak-referenceable: not ours
                found = None
            if found is not None:
                yield found
        yield from _declarations(sub)


def _mapper(model: type[Any]) -> Mapper[Any]:
    mapper: Mapper[Any] = inspect(model)
    return mapper


def _fits(schema: type[BaseModel], mapper: Mapper[Any]) -> bool:
    """Whether ``schema`` looks like a schema of ``mapper``'s model: each required field is a
    column or relationship of it, and some field is."""
    fields = schema.model_fields
    names = mapper.attrs.keys()
    return any(name in names for name in fields) and all(
        name in names for name, field in fields.items() if field.is_required()
    )


def _roots(annotation: Any, mapper: Mapper[Any], seen: set[object]) -> Iterator[type[BaseModel]]:
    """The schemas of ``mapper``'s model in a response model: itself, or inside a list, a
    page or another wrapper."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if annotation in seen:
            return
        seen.add(annotation)
        if _fits(annotation, mapper):
            yield annotation
            return
        for field in annotation.model_fields.values():
            yield from _roots(field.annotation, mapper, seen)
        return
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        if annotation in seen:
            return
        seen.add(annotation)
        for hint in get_type_hints(annotation).values():
            yield from _roots(hint, mapper, seen)
        return
    for arg in get_args(annotation):
        yield from _roots(arg, mapper, seen)


def _needs(response_model: Any, model: type[Any]) -> tuple[bool, list[Chain]]:
    """Whether the response model holds schemas of ``model``, and the chains they read."""
    mapper = _mapper(model)
    roots = list(_roots(response_model, mapper, set()))
    chains: dict[tuple[str, ...], Chain] = {}
    for root in roots:
        for chain in relationship_paths(model, root):
            chains.setdefault(tuple(a.key for a in chain), chain)
    return bool(roots), list(chains.values())


def _table_models() -> list[type[Any]]:
    found: list[type[Any]] = []
    pending: list[type[Any]] = [SQLModel]
    while pending:
        cls = pending.pop()
        for sub in cls.__subclasses__():
            pending.append(sub)
            if getattr(sub, "__table__", None) is not None and sub not in found:
                found.append(sub)
    return found


def type_name(annotation: Any) -> str:
    args = get_args(annotation)
    origin = get_origin(annotation)
    if origin is not None and args:
        inner = ", ".join(type_name(arg) for arg in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    return str(getattr(annotation, "__name__", annotation))


def _spec(chain: Chain) -> str:
    names = [f"{a.parent.class_.__name__}.{a.key}" for a in chain]
    return names[0] if len(names) == 1 else f"({', '.join(names)})"


def route_problems(
    label: str, response_model: Any, dependant: Any, exclude: Collection[str] = ()
) -> list[str]:
    """What ``response_model`` needs that the route's declared reads do not load."""
    if response_model is None or label in exclude:
        return []
    declared = list(_declarations(dependant))
    shown = type_name(response_model)
    problems: list[str] = []
    models = list(dict.fromkeys(d.model for d in declared))
    fitting = [(model, *_needs(response_model, model)) for model in models]
    if any(fits for _, fits, _ in fitting):
        for model, _fits_it, chains in fitting:
            loaded: set[tuple[str, ...]] = set()
            for each in declared:
                if each.model is model:
                    loaded |= each.loaded()
            missing = [c for c in chains if tuple(a.key for a in c) not in loaded]
            if missing:
                needs = ", ".join(_spec(c) for c in missing)
                load = ", ".join(_spec(c) for c in chains)
                problems.append(
                    f"{label}: response_model {shown} needs {needs}, which the query does not "
                    f"load; add load=[{load}] to its repository({model.__name__}) dependency, "
                    f"or use repository({model.__name__}, into=...) with the schema."
                )
        return problems
    for model in _table_models():
        fits, chains = _needs(response_model, model)
        if fits and chains:
            load = ", ".join(_spec(c) for c in chains)
            problems.append(
                f"{label}: response_model {shown} needs {load}, and the route has no "
                f"repository({model.__name__}, ...) dependency that says what its query loads; "
                f"take Depends(repository({model.__name__}, load=[{load}])) (or into=...), or "
                "leave the route out of the check with exclude=."
            )
            break
    return problems
