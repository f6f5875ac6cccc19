"""Outside input never escapes as anything but a herorepo error.

Hypothesis feeds the public entry points that take input from clients (``FilterSet.parse``
and the query it builds, keyset cursors, limits and offsets, create and update data) and from
configuration (URLs) with arbitrary values, on every backend: any text (NUL, lone surrogates,
other scripts), numbers of any size, wrong types. Only ``HeroRepoError`` subclasses may escape,
and a password never shows in a message. ``HEROREPO_FUZZ_EXAMPLES`` sets the number of examples.
"""

from __future__ import annotations

import base64
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from herorepo import Database, HeroRepoError, Repository

from ..models import HERO_FILTERS, Hero

pytestmark = pytest.mark.asyncio

EXAMPLES = int(os.environ.get("HEROREPO_FUZZ_EXAMPLES", "60"))
fuzz = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

ANY_TEXT = st.text(alphabet=st.characters(exclude_categories=()), max_size=30)
NUMBERS = st.integers(-(2**70), 2**70).map(str) | st.floats().map(str)
WORDS = ANY_TEXT | NUMBERS | st.sampled_from(["", "true", "null", "1,2", "²", "-1", " 5", "1e3"])
FILTER_KEYS = st.sampled_from(
    [
        "name",
        "name__icontains",
        "name__startswith",
        "name__in",
        "age",
        "age__gte",
        "age__lt",
        "age__in",
        "age__isnull",
        "team_id",
        "team_id__in",
        "team_id__isnull",
        "order_by",
        "limit",
        "offset",
        "secret_name",
        "age__regex",
    ]
)
PARAMS = st.dictionaries(FILTER_KEYS | ANY_TEXT, WORDS | st.lists(WORDS, max_size=3), max_size=4)
ANYTHING = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | ANY_TEXT
    | st.binary(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ANY_TEXT, inner, max_size=2),
    max_leaves=4,
)
FIELDS = st.sampled_from(["name", "secret_name", "age", "team_id", "id", "status", "team"])
DATA = st.dictionaries(FIELDS | ANY_TEXT, ANYTHING, max_size=4)
SIZES = st.integers(-(2**70), 2**70) | ANY_TEXT | st.floats() | st.none() | st.booleans()


async def seed(db: Database) -> None:
    async with db.unit_of_work() as uow:
        heroes = uow.repository(Hero)
        if not await heroes.exists():
            await heroes.add_many(
                [{"name": f"Hero {i}", "secret_name": "s", "age": i * 10} for i in range(4)]
            )


@fuzz
@given(params=PARAMS)
@example(params={"name__icontains": "\x00"})
@example(params={"name": "\ud800"})
@example(params={"age__gte": str(2**70)})
@example(params={"limit": "²"})
@example(params={"order_by": "-secret_name"})
async def test_filter_parameters(db: Database, params: dict[str, Any]) -> None:
    await seed(db)
    try:
        query = HERO_FILTERS.parse(params)
        async with db.unit_of_work(read_only=True) as uow:
            heroes = uow.repository(Hero)
            await heroes.list(
                *query.where, order_by=query.order_by, limit=query.limit, offset=query.offset
            )
            await heroes.count(*query.where)
            await heroes.keyset(*query.where, order_by=query.order_by, limit=query.limit)
    except HeroRepoError:
        pass


@fuzz
@given(
    cursor=ANY_TEXT | st.binary(max_size=120).map(lambda b: base64.urlsafe_b64encode(b).decode())
)
@example(cursor="[" * 1400)
@example(cursor="A" * 5000)
async def test_cursors(db: Database, cursor: str) -> None:
    await seed(db)
    async with db.unit_of_work(read_only=True) as uow:
        heroes = uow.repository(Hero)
        real = (await heroes.keyset(order_by="-age", limit=1)).next_cursor
        assert real is not None
        for candidate in (cursor, real[: len(real) // 2] + cursor, real + cursor):
            try:
                await heroes.keyset(order_by="-age", after=candidate, limit=2)
            except HeroRepoError:
                pass


@fuzz
@given(limit=SIZES, offset=SIZES)
@example(limit="²", offset="0")
@example(limit=2**70, offset=-1)
async def test_limits_and_offsets(db: Database, limit: Any, offset: Any) -> None:
    await seed(db)
    async with db.unit_of_work(read_only=True) as uow:
        heroes = uow.repository(Hero)
        for read in (
            lambda: heroes.page(limit=limit, offset=offset),
            lambda: heroes.keyset(limit=limit),
            lambda: heroes.list(limit=limit, offset=offset),
        ):
            try:
                await read()
            except HeroRepoError:
                pass


@fuzz
@given(data=DATA, key=SIZES)
@example(data={"name": "a\x00", "secret_name": "s"}, key=1)
@example(data={"name": "x", "secret_name": "s", "age": 2**63}, key="abc")
@example(data={"name": "x", "secret_name": "s", "team_id": 999_999}, key=2**70)
@example(data={"team": {"name": "t"}}, key=1)
async def test_create_and_update_data(db: Database, data: dict[str, Any], key: Any) -> None:
    await seed(db)
    for write in ("create", "add_many", "update", "update_key", "upsert"):
        try:
            async with db.unit_of_work() as uow:
                heroes = uow.repository(Hero)
                if write == "create":
                    await heroes.create(data)
                elif write == "add_many":
                    await heroes.add_many([data, data])
                elif write == "update":
                    await heroes.update(await heroes.find_one(name="Hero 1"), data)
                elif write == "update_key":
                    await heroes.update(key, data)
                else:
                    await heroes.upsert(data, conflict=["id"])
                await uow.rollback()  # keep the table as seeded
        except HeroRepoError:
            pass
    async with db.session() as session:
        assert await Repository(session, Hero).count() == 4


@settings(max_examples=EXAMPLES * 3, deadline=None)
@given(
    scheme=st.sampled_from(["postgresql", "mysql", "mariadb", "sqlite", "postgres", "oracle", ""]),
    rest=ANY_TEXT,
    password=st.text(alphabet="abcdefghij@:/%#?", min_size=6, max_size=12),
)
async def test_urls(scheme: str, rest: str, password: str) -> None:
    marker = f"Pw{password}"
    for url in (f"{scheme}://app:{marker}@{rest}/db", f"{scheme}://{rest}", rest):
        try:
            database = Database(url)
        except HeroRepoError as error:
            refusal = str(error)
        else:
            refusal = ""
            await database.dispose()
        assert marker not in refusal
        if refusal:
            continue
        assert marker not in repr(database)
        assert marker not in database.safe_url
