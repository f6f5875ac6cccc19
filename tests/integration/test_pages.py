"""Offset pages that know ``has_next`` without a count, and keyset pages in both directions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import true
from sqlmodel import SQLModel

from herorepo import (
    Database,
    InvalidCursorError,
    InvalidFilterError,
    KeysetPage,
    Repository,
    TenantScope,
)
from herorepo.testing import count_queries

from ..models import Hero, Project
from .helpers import hero_rows

pytestmark = pytest.mark.asyncio

# Ties (30 three times, 12 twice) and NULLs, in an order that is neither the ids' nor the ages'.
AGES = [30, None, 48, 30, None, 12, 30, 99, 12, None]


async def add_heroes(db: Database, ages: list[int | None]) -> None:
    async with db.unit_of_work() as uow:
        heroes = uow.repository(Hero)
        await heroes.delete_many(true())
        await heroes.add_many(
            [
                {"name": f"Hero {i:02d}", "secret_name": f"s{i % 3}", "age": age}
                for i, age in enumerate(ages)
            ]
        )


def sort_key(row: dict[str, Any], key: str, descending: bool) -> tuple[Any, ...]:
    """The documented order: NULLs last in both directions, ties broken by ascending id."""
    value = row[key]
    if value is None:
        return (1, 0, row["id"])
    return (0, -value if descending else value, row["id"])


async def expected(db: Database, key: str, descending: bool) -> list[int]:
    rows = await hero_rows(db)
    return [row["id"] for row in sorted(rows, key=lambda r: sort_key(r, key, descending))]


async def walk_both_ways(
    heroes: Repository[Hero], order_by: str | None, limit: int
) -> tuple[list[KeysetPage[Hero]], list[KeysetPage[Hero]]]:
    """Every page forwards from the start, then every page backwards from the last one."""
    forwards = [await heroes.keyset(order_by=order_by, limit=limit)]
    while forwards[-1].next_cursor is not None:
        forwards.append(
            await heroes.keyset(order_by=order_by, after=forwards[-1].next_cursor, limit=limit)
        )
    backwards = [forwards[-1]]
    while backwards[-1].previous_cursor is not None:
        backwards.append(
            await heroes.keyset(
                order_by=order_by, before=backwards[-1].previous_cursor, limit=limit
            )
        )
    return forwards, backwards


def ids(page: KeysetPage[Hero]) -> list[int | None]:
    return [hero.id for hero in page.items]


# --- offset pages --------------------------------------------------------------------------------


async def test_has_next_without_a_count_reads_one_row_more(db: Database) -> None:
    await add_heroes(db, AGES)
    async with db.session() as session:
        heroes = Repository(session, Hero)
        with count_queries(db) as queries:
            first = await heroes.page(limit=4)
        assert queries.count == 1, queries  # no SELECT count(*)
        assert "count(" not in queries.statements[0].lower()
        assert (len(first.items), first.total, first.has_next) == (4, None, True)
        # Exactly the last rows: a full page, and still known to be the last.
        last = await heroes.page(offset=6, limit=4)
        assert (len(last.items), last.has_next) == (4, False)
        short = await heroes.page(offset=8, limit=4)
        assert (len(short.items), short.has_next) == (2, False)
        past = await heroes.page(offset=20, limit=4)
        assert (past.items, past.has_next) == ([], False)
        filtered = await heroes.page(Hero.age == 30, limit=3)
        assert (len(filtered.items), filtered.has_next) == (3, False)
        # Every row once, in order, following has_next alone.
        seen: list[int | None] = []
        offset = 0
        while True:
            page = await heroes.page(offset=offset, limit=3)
            seen.extend(hero.id for hero in page.items)
            if not page.has_next:
                break
            offset += 3
    assert seen == [row["id"] for row in await hero_rows(db)]


async def test_a_counted_page_takes_has_next_from_the_total(db: Database) -> None:
    await add_heroes(db, AGES)
    async with db.session() as session:
        with count_queries(db) as queries:
            page = await Repository(session, Hero).page(offset=6, limit=4, count=True)
    assert queries.count == 2, queries
    assert (len(page.items), page.total, page.has_next) == (4, 10, False)


async def test_a_locking_page_reads_no_row_it_does_not_return(db: Database) -> None:
    await add_heroes(db, AGES)
    async with db.unit_of_work() as uow:
        locked = uow.repository(Hero).for_update()
        full = await locked.page(limit=4)
        assert (len(full.items), full.has_next) == (4, None)  # unknown: no extra row locked
        assert (await locked.page(offset=8, limit=4)).has_next is False
        assert (await locked.page(limit=4, count=True)).has_next is True


# --- keyset pages in both directions -------------------------------------------------------------


@pytest.mark.parametrize(
    ("order_by", "key", "descending"),
    [
        pytest.param(None, "id", False, id="id"),
        pytest.param("age", "age", False, id="age-ties-and-nulls"),
        pytest.param("-age", "age", True, id="age-desc-ties-and-nulls"),
    ],
)
@pytest.mark.parametrize("limit", [1, 3, 4, 10, 11])
async def test_a_walk_back_shows_the_same_pages_in_reverse(
    db: Database, order_by: str | None, key: str, descending: bool, limit: int
) -> None:
    await add_heroes(db, AGES)
    order = await expected(db, key, descending)
    async with db.session() as session:
        forwards, backwards = await walk_both_ways(Repository(session, Hero), order_by, limit)
    assert [i for page in forwards for i in ids(page)] == order
    assert [ids(p) for p in backwards] == [ids(p) for p in reversed(forwards)]
    # The edges: nothing before the first page, nothing after the last, both between.
    assert (forwards[0].has_previous, forwards[-1].has_next) == (False, False)
    assert all(p.has_next for p in forwards[:-1])
    assert all(p.has_previous for p in forwards[1:])
    assert all(p.has_next for p in backwards[1:])
    assert backwards[-1].has_previous is False


async def test_several_sort_keys_with_ties_walk_back(db: Database) -> None:
    await add_heroes(db, AGES)
    rows = await hero_rows(db)
    # secret_name descending (three values, many ties), then age ascending with NULLs last.
    by_age = sorted(rows, key=lambda r: sort_key(r, "age", False))
    order = [r["id"] for r in sorted(by_age, key=lambda r: r["secret_name"], reverse=True)]
    async with db.session() as session:
        forwards, backwards = await walk_both_ways(
            Repository(session, Hero), "-secret_name,age", limit=3
        )
    assert [i for page in forwards for i in ids(page)] == order
    assert [ids(p) for p in backwards] == [ids(p) for p in reversed(forwards)]


async def test_forward_again_from_a_page_read_backwards(db: Database) -> None:
    await add_heroes(db, AGES)
    async with db.session() as session:
        heroes = Repository(session, Hero)
        one = await heroes.keyset(order_by="age", limit=4)
        two = await heroes.keyset(order_by="age", after=one.next_cursor, limit=4)
        back = await heroes.keyset(order_by="age", before=two.previous_cursor, limit=4)
        assert ids(back) == ids(one)
        assert (back.has_previous, back.has_next) == (False, True)
        again = await heroes.keyset(order_by="age", after=back.next_cursor, limit=4)
        assert ids(again) == ids(two)
        # A page read backwards from the middle holds the rows just before the cursor.
        three = await heroes.keyset(order_by="age", after=two.next_cursor, limit=4)
        middle = await heroes.keyset(order_by="age", before=three.previous_cursor, limit=3)
        assert ids(middle) == (ids(one) + ids(two))[-3:]
        assert (middle.has_previous, middle.has_next) == (True, True)


async def test_a_backward_page_is_one_statement(db: Database) -> None:
    await add_heroes(db, AGES)
    async with db.session() as session:
        heroes = Repository(session, Hero)
        last = await heroes.keyset(order_by="-age", after=None, limit=10)
        cursor = (await heroes.keyset(order_by="-age", limit=4)).next_cursor
        page = await heroes.keyset(order_by="-age", after=cursor, limit=4)
        with count_queries(db) as queries:
            await heroes.keyset(order_by="-age", before=page.previous_cursor, limit=4)
    assert queries.count == 1, queries
    assert last.previous_cursor is None


async def test_after_and_before_together_are_refused(db: Database) -> None:
    await add_heroes(db, AGES)
    async with db.session() as session:
        heroes = Repository(session, Hero)
        page = await heroes.keyset(order_by="age", limit=3)
        with pytest.raises(InvalidFilterError, match="not both"):
            await heroes.keyset(
                order_by="age", after=page.next_cursor, before=page.next_cursor, limit=3
            )


async def test_the_previous_cursor_is_signed_like_the_next(db: Database) -> None:
    await add_heroes(db, AGES)
    async with db.session() as session:
        heroes = Repository(session, Hero)
        one = await heroes.keyset(order_by="age", limit=3)
        two = await heroes.keyset(order_by="age", after=one.next_cursor, limit=3)
        previous = two.previous_cursor
        assert previous is not None
        altered = previous[:-2] + ("AA" if previous[-2:] != "AA" else "BB")
        with count_queries(db) as queries:
            with pytest.raises(InvalidCursorError, match="signature"):
                await heroes.keyset(order_by="age", before=altered, limit=3)
            with pytest.raises(InvalidCursorError, match="another sort order"):
                await heroes.keyset(order_by="-age", before=previous, limit=3)
        assert queries.count == 0, queries

        class OwnKey(Repository[Hero]):
            cursor_secret = b"a-repository-key-of-its-own-0000"

        with pytest.raises(InvalidCursorError, match="signature"):
            await OwnKey(session).keyset(order_by="age", before=previous, limit=3)


@pytest_asyncio.fixture
async def scoped(write_db: Database) -> AsyncIterator[Database]:
    async with Database(write_db.url, policies=[TenantScope()]) as db:
        for name in ("a", "b"):
            async with db.unit_of_work(tenant=name) as uow:
                await uow.repository(Project).add_many([{"code": f"p{i}"} for i in range(6)])
        yield db


async def test_a_previous_cursor_is_bound_to_its_tenant(scoped: Database) -> None:
    async with scoped.unit_of_work(tenant="a", read_only=True) as uow:
        projects = uow.repository(Project)
        one = await projects.keyset(order_by="code", limit=2)
        two = await projects.keyset(order_by="code", after=one.next_cursor, limit=2)
        back = await projects.keyset(order_by="code", before=two.previous_cursor, limit=2)
        assert [p.id for p in back.items] == [p.id for p in one.items]
    async with scoped.unit_of_work(tenant="b", read_only=True) as uow:
        with pytest.raises(InvalidCursorError, match="signature"):
            await uow.repository(Project).keyset(
                order_by="code", before=two.previous_cursor, limit=2
            )


async def test_projections_walk_back_too(db: Database) -> None:
    class HeroOut(SQLModel):
        id: int
        age: int | None

    await add_heroes(db, AGES)
    async with db.session() as session:
        heroes = Repository(session, Hero)
        projected = heroes.into(HeroOut)
        one = await projected.keyset(order_by="-age", limit=4)
        two = await heroes.keyset(order_by="-age", after=one.next_cursor, limit=4)
        back = await projected.keyset(order_by="-age", before=two.previous_cursor, limit=4)
        assert back.items == one.items
        assert (back.has_previous, back.has_next) == (False, True)
        assert back.next_cursor is not None
        again = await heroes.keyset(order_by="-age", after=back.next_cursor, limit=4)
        assert ids(again) == ids(two)


@given(
    ages=st.lists(st.none() | st.integers(0, 3), max_size=12),
    limit=st.integers(1, 5),
    order_by=st.sampled_from(["age", "-age", "age,-secret_name", "-secret_name,-age"]),
)
async def test_walking_back_retraces_every_walk_forward(
    db: Database, ages: list[int | None], limit: int, order_by: str
) -> None:
    await add_heroes(db, ages)
    async with db.session() as session:
        forwards, backwards = await walk_both_ways(Repository(session, Hero), order_by, limit)
    walked = [i for page in forwards for i in ids(page)]
    assert len(walked) == len(set(walked)) == len(ages)
    assert [ids(p) for p in backwards] == [ids(p) for p in reversed(forwards)]
    assert not forwards[0].has_previous
    assert not forwards[-1].has_next
