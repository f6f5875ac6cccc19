"""Primary keys given by callers: their forms, checked against the key's types before any SQL.

A key of the wrong type must fail the same way everywhere: PostgreSQL refuses ``"abc"`` for an
integer column, while SQLite and MySQL compare it anyway (MySQL as ``0``) and find nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from pydantic import BaseModel, TypeAdapter
from pydantic import ValidationError as PydanticValidationError

from ._errors import InvalidDataError

__all__ = ["key_values"]


def key_values(
    model: str,
    names: Sequence[str],
    adapter: Callable[[str], TypeAdapter[Any]],
    ident: Any,
    ranges: Mapping[str, tuple[int, int]] | None = None,
) -> tuple[Any, ...] | None:
    """The primary key values in ``ident``, checked and converted (``"5"`` becomes ``5``), or
    ``None`` for a form left to ``session.get`` (a mapping, an object, a tuple of another size).

    Raises:
        InvalidDataError: a value does not fit its key field; the message names the key, not
            the value.
    """
    if isinstance(ident, (tuple, list)):
        values = tuple(cast("Sequence[Any]", ident))
    elif isinstance(ident, (Mapping, BaseModel)):
        return None  # {"id": 3}, or an object of another model: session.get decides
    else:
        values = (ident,)
    if len(values) != len(names):
        return None
    checked: list[Any] = []
    for name, value in zip(names, values, strict=True):
        if value is None:  # the field may be Optional (autoincrement), a stored key never is
            raise InvalidDataError(
                f"The key {model}.{name} cannot be None: pass the key of a stored row."
            )
        try:
            checked.append(adapter(name).validate_python(value))
        except PydanticValidationError as exc:
            problem = exc.errors()[0]["msg"]  # pydantic's message does not repeat the value
            raise InvalidDataError(
                f"The key {model}.{name} does not take the value given "
                f"({type(value).__name__}): {problem}."
            ) from None
        bounds = (ranges or {}).get(name)
        value = checked[-1]
        if bounds is not None and isinstance(value, int) and not bounds[0] <= value <= bounds[1]:
            raise InvalidDataError(  # no row can have it; the database would refuse it
                f"The key {model}.{name} does not take the value given: it is outside the "
                f"range of its column ({bounds[0]} to {bounds[1]})."
            )
    return tuple(checked)
