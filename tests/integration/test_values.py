"""Values come back exactly as written, or are refused with a clear error before any SQL.

Hypothesis throws every kind of value at every kind of column (text with NUL and lone
surrogates, integers past 64 bits, decimals past their scale, NaN, single-precision floats,
time zones, microseconds on MySQL, JSON with tuples and odd keys) through every write path.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from sqlalchemy import event, insert

from herorepo import Database, InvalidDataError, Repository

from ..models import Sample

UTC = timezone.utc
ZONES = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=3), inner, max_size=3)
        | st.tuples(inner)
        | st.dictionaries(st.integers(0, 3), inner, min_size=1, max_size=1)
    ),
    max_leaves=6,
)
VALUES = {
    "text": st.text(alphabet=st.characters(exclude_categories=()), max_size=300),
    "big": st.integers(-(2**65), 2**65),
    "small": st.integers(-(2**33), 2**33),
    "amount": st.decimals(places=None) | st.decimals(-(10**9), 10**9, places=4),
    "ratio": st.floats(),
    "single": st.floats() | st.floats(width=32) | st.decimals(-(10**6), 10**6, places=2).map(float),
    "at": st.datetimes() | st.datetimes(timezones=ZONES),
    "at_plain": st.datetimes() | st.datetimes().map(lambda d: d.replace(microsecond=0)),
    "moment": st.datetimes(timezones=ZONES)
    | st.datetimes(timezones=ZONES).map(lambda d: d.replace(microsecond=0))
    | st.datetimes(),
    "day": st.dates(),
    "data": JSON_VALUES,
}
FIELD_AND_VALUE = st.one_of(*(st.tuples(st.just(k), v) for k, v in VALUES.items()))
PATHS = ["create", "add_many", "update", "update_many", "upsert"]


@contextmanager
def counting_statements(db: Database) -> Iterator[list[str]]:
    sent: list[str] = []

    def record(*args: Any) -> None:
        sent.append(str(args[2]))

    event.listen(db.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", record)


def same(written: Any, read: Any) -> bool:
    if isinstance(written, datetime) and written.tzinfo is not None:
        return isinstance(read, datetime) and read.tzinfo is not None and written == read
    if isinstance(written, float):  # -0.0 may come back as 0.0 (SQLite, MySQL): equal by ==
        return isinstance(read, float) and written == read
    if isinstance(written, Decimal):
        return isinstance(read, Decimal) and written == read
    if isinstance(written, (dict, list)):
        return json.dumps(written, sort_keys=True) == json.dumps(read, sort_keys=True)
    return type(written) is type(read) and written == read


async def write(db: Database, path: str, field: str, value: Any) -> int | None:
    """Write ``value`` to ``field`` through ``path``; return the row's id."""
    async with db.unit_of_work() as uow:
        samples = uow.repository(Sample)
        if path == "create":
            return (await samples.create({field: value})).id
        if path == "add_many":
            return (await samples.add_many([{}, {field: value}]))[1].id
        row = await samples.create({})
        if path == "update":
            await samples.update(row, {field: value})
        elif path == "update_many":
            await samples.update_many(Sample.id == row.id, values={field: value})
        else:
            await samples.upsert({"id": row.id, field: value}, conflict=["id"])
        return row.id


@pytest.mark.asyncio
@settings(max_examples=int(os.environ.get("HEROREPO_VALUE_EXAMPLES", "150")))
@given(field_and_value=FIELD_AND_VALUE, path=st.sampled_from(PATHS))
@example(field_and_value=("text", "a\x00b"), path="create")
@example(field_and_value=("text", "🦸" * 255), path="update")
@example(field_and_value=("big", 2**63), path="update_many")
@example(field_and_value=("amount", Decimal("1.23456")), path="create")
@example(field_and_value=("amount", Decimal("12345678.1234")), path="upsert")
@example(field_and_value=("ratio", math.nan), path="add_many")
@example(field_and_value=("ratio", -0.0), path="create")
@example(field_and_value=("single", 1.2345678), path="create")
@example(field_and_value=("at", datetime(2024, 2, 29, 23, 59, 59, 999999)), path="create")
@example(field_and_value=("at", datetime(2024, 1, 1, tzinfo=UTC)), path="update")
@example(field_and_value=("at_plain", datetime(2024, 1, 1, 0, 0, 0, 1)), path="create")
@example(field_and_value=("moment", datetime(2024, 1, 1, 12, tzinfo=UTC)), path="create")
@example(field_and_value=("moment", datetime(2024, 1, 1, 12)), path="update")
@example(
    field_and_value=("moment", datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5)))),
    path="create",
)
@example(
    field_and_value=("moment", datetime(9999, 12, 31, 23, tzinfo=timezone(-timedelta(hours=3)))),
    path="update",
)
@example(field_and_value=("data", {"a": [1, 2.5, None, True], "b": {"c": "🦸"}}), path="create")
@example(field_and_value=("data", {"a": (1, 2)}), path="update")
@example(field_and_value=("data", 2**70), path="create")
async def test_a_value_comes_back_exactly_or_is_refused_before_any_sql(
    db: Database, field_and_value: tuple[str, Any], path: str
) -> None:
    field, value = field_and_value
    with counting_statements(db) as sent:
        try:
            ident = await write(db, path, field, value)
        except InvalidDataError as exc:
            assert f"Sample.{field}" in str(exc)  # noqa: PT017 (the except needs the return)
            # Nothing carrying the refused value reached the server: the only write sent is
            # the empty row that the update paths start from.
            writes = [s.split()[0].upper() for s in sent if "hr_sample" in s and "SELECT" not in s]
            assert writes == ([] if path in ("create", "add_many") else ["INSERT"]), sent
            return
    async with db.session() as session:
        stored = await Repository(session, Sample).get_one(ident)
    read = getattr(stored, field)
    assert same(value, read), f"{field}: wrote {value!r}, read back {read!r}"


@pytest.mark.asyncio
async def test_values_sent_around_the_checks_are_refused_or_kept_whole(db: Database) -> None:
    """A raw INSERT skips herorepo's checks: the servers refuse a too-long value (MySQL in
    strict mode) with InvalidDataError, SQLite keeps it whole; it is never truncated."""
    long_text = "x" * 300
    statement = insert(Sample).values(text=long_text)
    if db.backend == "sqlite":
        async with db.unit_of_work() as uow:
            await uow.session.exec(statement)
    else:
        with pytest.raises(InvalidDataError, match="The database refused a value: "):
            async with db.unit_of_work() as uow:
                await uow.session.exec(statement)
    async with db.session() as session:
        stored = [s.text for s in await Repository(session, Sample).list()]
    assert stored == ([long_text] if db.backend == "sqlite" else [])
