"""Pagination, API filters, bulk writes, upsert and streaming, on every backend."""

from __future__ import annotations

import pytest
from sqlalchemy import true

from herorepo import (
    Database,
    InvalidCursorError,
    InvalidDataError,
    InvalidFilterError,
    Repository,
    TransactionError,
    UniqueViolationError,
)
from herorepo.testing import count_queries

from ..models import HERO_FILTERS, Hero, Team
from .helpers import hero_rows, seed, team_names

pytestmark = pytest.mark.asyncio

AGES = [30, None, 48, 30, None, 12, 30, 99, 12, None]


async def many_heroes(db: Database) -> list[int]:
    async with db.unit_of_work() as uow:
        heroes = await uow.repository(Hero).add_many(
            [
                {"name": f"Hero {i:02d}", "secret_name": f"s{i % 3}", "age": age}
                for i, age in enumerate(AGES)
            ]
        )
    return [h.id for h in heroes if h.id is not None]


def expected_order(heroes: list[dict[str, object]], key: str, descending: bool) -> list[object]:
    present = [h for h in heroes if h[key] is not None]
    missing = [h for h in heroes if h[key] is None]
    present.sort(key=lambda h: h["id"])  # type: ignore[arg-type, return-value]
    present.sort(key=lambda h: h[key], reverse=descending)  # type: ignore[arg-type, return-value]
    if descending:  # stable reverse keeps ids descending among equals: restore ascending ids
        groups: dict[object, list[dict[str, object]]] = {}
        for h in present:
            groups.setdefault(h[key], []).append(h)
        present = [h for value in groups for h in sorted(groups[value], key=lambda x: x["id"])]  # type: ignore[arg-type, return-value]
    missing.sort(key=lambda h: h["id"])  # type: ignore[arg-type, return-value]
    return [h["id"] for h in present + missing]


# --- offset pages -------------------------------------------------------------------------------


async def test_offset_page_with_and_without_total(db: Database) -> None:
    await many_heroes(db)
    async with db.session() as session:
        heroes = Repository(session, Hero)
        first = await heroes.page(limit=4, count=True)
        assert [h.name for h in first.items] == ["Hero 00", "Hero 01", "Hero 02", "Hero 03"]
        assert (first.offset, first.limit, first.total, first.has_next) == (0, 4, 10, True)
        last = await heroes.page(offset=8, limit=4, count=True)
        assert [h.name for h in last.items] == ["Hero 08", "Hero 09"]
        assert last.has_next is False
        uncounted = await heroes.page(Hero.age == 30, limit=2)
        assert uncounted.total is None
        assert len(uncounted.items) == 2


@pytest.mark.parametrize("limit", [0, -1, 1001, 2.0, True])
async def test_page_size_is_bounded(db: Database, limit: object) -> None:
    async with db.session() as session:
        with pytest.raises(InvalidFilterError, match="limit must be a whole number from 1 to 1000"):
            await Repository(session, Hero).page(limit=limit)  # type: ignore[arg-type]


# --- keyset pages -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("order_by", "key", "descending"),
    [(None, "id", False), ("age", "age", False), ("-age", "age", True)],
)
async def test_keyset_walk_sees_every_row_once_in_order(
    db: Database, order_by: str | None, key: str, descending: bool
) -> None:
    await many_heroes(db)
    expected = expected_order(await hero_rows(db), key, descending)
    seen: list[object] = []
    async with db.session() as session:
        heroes = Repository(session, Hero)
        cursor = None
        for _ in range(20):
            page = await heroes.keyset(order_by=order_by, after=cursor, limit=3)
            seen.extend(h.id for h in page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
    assert seen == expected


async def test_keyset_takes_column_expressions_and_several_keys(db: Database) -> None:
    await many_heroes(db)
    async with db.session() as session:
        heroes = Repository(session, Hero)
        walked = []
        page = await heroes.keyset(order_by=[Hero.secret_name.desc(), Hero.age], limit=4)
        walked.extend(page.items)
        while page.next_cursor:
            page = await heroes.keyset(
                order_by=[Hero.secret_name.desc(), Hero.age], after=page.next_cursor, limit=4
            )
            walked.extend(page.items)
        assert len({h.id for h in walked}) == len(AGES) == len(walked)
        assert [h.secret_name for h in walked] == sorted(
            (h.secret_name for h in walked), reverse=True
        )


async def test_keyset_cursor_is_url_safe_and_checked(db: Database) -> None:
    await many_heroes(db)
    async with db.session() as session:
        heroes = Repository(session, Hero)
        page = await heroes.keyset(order_by="-age", limit=2)
        cursor = page.next_cursor
        assert cursor is not None
        assert all(c.isalnum() or c in "-_" for c in cursor)
        tampered = cursor[:-3] + ("A" if cursor[-3] != "A" else "B") + cursor[-2:]
        bad_cursors = {
            "tampered": tampered,
            "truncated": cursor[: len(cursor) // 2],
            "not a cursor": "hello world",
            "empty": "",
            "sql": "' OR 1=1 --",
            "huge": "A" * 10_000,
        }
        for name, bad in bad_cursors.items():
            with pytest.raises(InvalidCursorError, match="Invalid pagination cursor"):
                await heroes.keyset(order_by="-age", after=bad, limit=2)
            assert name
        with pytest.raises(InvalidCursorError, match="another sort order"):
            await heroes.keyset(order_by="age", after=cursor, limit=2)
        with pytest.raises(InvalidCursorError, match="another sort order"):
            await Repository(session, Team).keyset(order_by="-id", after=cursor, limit=2)
        again = await heroes.keyset(order_by="-age", after=cursor, limit=2)
        assert again.items


async def test_cursor_secret_makes_cursors_repository_specific(db: Database) -> None:
    class SignedHeroes(Repository[Hero]):
        cursor_secret = b"k" * 32

    await many_heroes(db)
    async with db.session() as session:
        plain = await Repository(session, Hero).keyset(limit=2)
        assert plain.next_cursor is not None
        with pytest.raises(InvalidCursorError, match="altered"):
            await SignedHeroes(session).keyset(after=plain.next_cursor, limit=2)
        signed = await SignedHeroes(session).keyset(limit=2)
        assert signed.next_cursor is not None
        follow = await SignedHeroes(session).keyset(after=signed.next_cursor, limit=2)
        assert [h.name for h in follow.items] == ["Hero 02", "Hero 03"]


async def test_keyset_rejects_unknown_sort_keys(db: Database) -> None:
    async with db.session() as session:
        with pytest.raises(InvalidFilterError, match="Cannot sort Hero by 'power'"):
            await Repository(session, Hero).keyset(order_by="power")
        with pytest.raises(InvalidFilterError, match="is not a sort key of Hero"):
            await Repository(session, Hero).keyset(order_by=Team.name)


# --- filters from query parameters -----------------------------------------------------------


async def names_for(db: Database, params: dict[str, str]) -> list[str]:
    query = HERO_FILTERS.parse(params)
    async with db.session() as session:
        heroes = await Repository(session, Hero).list(
            *query.where, order_by=list(query.order_by) or None
        )
    return [h.name for h in heroes]


async def test_filters_from_query_parameters(db: Database) -> None:
    ids = await seed(db)
    assert await names_for(db, {"name": "Deadpond"}) == ["Deadpond"]
    assert await names_for(db, {"age__ge": "30", "order_by": "-age"}) == ["Rusty-Man", "Deadpond"]
    assert await names_for(db, {"age__isnull": "true"}) == ["Spider-Boy"]
    assert await names_for(db, {"age__ne": "30"}) == ["Rusty-Man"]
    assert await names_for(db, {"age__lt": "48", "age__gt": "1"}) == ["Deadpond"]
    team_ids = f"{ids['X-Force']},{ids['X-Force']}"
    assert await names_for(db, {"team_id__in": team_ids}) == ["Deadpond"]
    assert await names_for(db, {"name__not_in": "Deadpond,Rusty-Man"}) == ["Spider-Boy"]
    assert await names_for(db, {"order_by": "name"}) == ["Deadpond", "Rusty-Man", "Spider-Boy"]


async def test_text_operators_behave_the_same_on_every_backend(db: Database) -> None:
    async with db.unit_of_work() as uow:
        await uow.repository(Hero).add_many(
            [
                {"name": "Émile Dupont", "secret_name": "x"},
                {"name": "émile low", "secret_name": "x"},
                {"name": "50% Man", "secret_name": "x"},
                {"name": "500 Man", "secret_name": "x"},
                {"name": "Under_Score", "secret_name": "x"},
                {"name": "UnderXScore", "secret_name": "x"},
                {"name": "back\\slash", "secret_name": "x"},
            ]
        )
    assert await names_for(db, {"name__contains": "mile"}) == ["Émile Dupont", "émile low"]
    assert await names_for(db, {"name__startswith": "émile"}) == ["émile low"]
    assert await names_for(db, {"name__istartswith": "ÉMILE"}) == ["Émile Dupont", "émile low"]
    assert await names_for(db, {"name__icontains": "DUPONT"}) == ["Émile Dupont"]
    assert await names_for(db, {"name__contains": "dupont"}) == []
    assert await names_for(db, {"name__contains": "50%"}) == ["50% Man"]
    assert await names_for(db, {"name__contains": "r_S"}) == ["Under_Score"]
    assert await names_for(db, {"name__icontains": "R_s"}) == ["Under_Score"]
    assert await names_for(db, {"name__contains": "\\"}) == ["back\\slash"]
    assert await names_for(db, {"name__contains": "%"}) == ["50% Man"]


HOSTILE = [
    "name; DROP TABLE hr_hero; --",
    "name' OR '1'='1",
    "name__eq OR 1=1",
    "age__gte) OR (1=1",
    "__class__",
    "name__" + "x" * 200,
]


@pytest.mark.parametrize("key", HOSTILE)
async def test_hostile_field_names_and_operators_are_refused(db: Database, key: str) -> None:
    await seed(db)
    with pytest.raises(InvalidFilterError) as caught:
        HERO_FILTERS.parse({key: "1"})
    assert "Filterable fields: age, name, team_id" in str(caught.value) or "Allowed:" in str(
        caught.value
    )
    assert len(str(caught.value)) < 400
    assert len(await hero_rows(db)) == 3


@pytest.mark.parametrize(
    "value",
    ["' OR '1'='1", "Deadpond'; DROP TABLE hr_hero; --", "%' OR name LIKE '%", "\x7f\u202e"],
)
async def test_hostile_values_are_only_values(db: Database, value: str) -> None:
    await seed(db)
    assert await names_for(db, {"name": value}) == []
    assert await names_for(db, {"name__icontains": value}) == []
    assert len(await hero_rows(db)) == 3


async def test_filter_query_feeds_keyset_pages(db: Database) -> None:
    await many_heroes(db)
    query = HERO_FILTERS.parse({"age__isnull": "false", "order_by": "-age", "limit": "2"})
    async with db.session() as session:
        heroes = Repository(session, Hero)
        page = await heroes.keyset(*query.where, order_by=query.order_by, limit=query.limit)
        assert [h.age for h in page.items] == [99, 48]
        more = await heroes.keyset(
            *query.where, order_by=query.order_by, after=page.next_cursor, limit=query.limit
        )
        assert [h.age for h in more.items] == [30, 30]


# --- bulk writes and upsert ---------------------------------------------------------------------


async def test_update_many_and_delete_many(write_db: Database) -> None:
    await many_heroes(write_db)
    async with write_db.unit_of_work() as uow:
        heroes = uow.repository(Hero)
        loaded = await heroes.find_one(name="Hero 00")
        assert await heroes.update_many(Hero.age == 30, values={"secret_name": "thirty"}) == 3
        assert loaded.secret_name == "thirty"  # objects in the session follow
        assert await heroes.update_many(age=None, values={"age": 1}) == 3
        assert await heroes.delete_many(Hero.age < 13) == 5
        assert await heroes.delete_many(name="nobody") == 0
    rows = await hero_rows(write_db)
    assert len(rows) == 5
    assert sorted(r["secret_name"] for r in rows if r["age"] == 30) == ["thirty"] * 3


async def test_bulk_writes_need_criteria_and_valid_values(write_db: Database) -> None:
    await many_heroes(write_db)
    async with write_db.unit_of_work() as uow:
        heroes = uow.repository(Hero)
        with pytest.raises(InvalidDataError, match="update_many needs criteria"):
            await heroes.update_many(values={"age": 1})
        with pytest.raises(InvalidDataError, match="delete_many needs criteria"):
            await heroes.delete_many()
        with pytest.raises(InvalidDataError, match=r"Invalid value for Hero\.age"):
            await heroes.update_many(true(), values={"age": "old"})
        with pytest.raises(InvalidDataError, match="has no field 'power'"):
            await heroes.update_many(true(), values={"power": 1})
        assert await heroes.update_many(true(), values={"secret_name": "all"}) == 10
    assert {r["secret_name"] for r in await hero_rows(write_db)} == {"all"}


async def test_upsert_inserts_then_updates_the_chosen_columns(write_db: Database) -> None:
    async with write_db.unit_of_work() as uow:
        teams = uow.repository(Team)
        first = await teams.upsert({"name": "Avengers", "headquarters": "Tower"}, conflict=["name"])
        second = await teams.upsert(
            {"name": "Avengers", "headquarters": "Compound"}, conflict=["name"]
        )
        assert second.id == first.id
        assert second.headquarters == "Compound"
        kept = await teams.upsert(
            {"name": "Avengers", "headquarters": "Ignored"}, conflict=["name"], update=[]
        )
        assert kept.headquarters == "Compound"
    assert await team_names(write_db) == ["Avengers"]


async def test_upsert_many_returns_rows_in_input_order(write_db: Database) -> None:
    await seed(write_db)
    async with write_db.unit_of_work() as uow:
        teams = await uow.repository(Team).upsert_many(
            [
                {"name": "X-Force", "headquarters": "New HQ"},
                {"name": "Defenders", "headquarters": "Hell's Kitchen"},
                {"name": "Avengers", "headquarters": "Compound"},
            ],
            conflict=["name"],
            update=["headquarters"],
        )
        assert [t.name for t in teams] == ["X-Force", "Defenders", "Avengers"]
        assert [t.headquarters for t in teams] == ["New HQ", "Hell's Kitchen", "Compound"]
        assert all(t.id is not None for t in teams)
        assert await uow.repository(Team).upsert_many([], conflict=["name"]) == []
    assert await team_names(write_db) == ["Avengers", "Defenders", "X-Force"]


async def test_upsert_many_never_updates_the_row_its_object_key_belongs_to(
    write_db: Database,
) -> None:
    # A model object carries its key. One whose id belongs to another team than its conflict
    # row: MySQL's ON DUPLICATE KEY UPDATE took the id and overwrote that other team, and the
    # conflict row read back looked right. Now every backend refuses it and changes nothing.
    async with write_db.unit_of_work() as uow:
        teams = uow.repository(Team)
        avengers = await teams.create({"name": "Avengers", "headquarters": "Tower"})
        xforce = await teams.create({"name": "X-Force", "headquarters": "Mansion"})
    # The unit of work fails, as on a database error: its next statement raises, and so does
    # leaving it.
    with pytest.raises(TransactionError, match="failed earlier"):
        async with write_db.unit_of_work() as uow:
            moved = Team(id=xforce.id, name="Avengers", headquarters="moved")
            with pytest.raises(UniqueViolationError, match="another row"):
                await uow.repository(Team).upsert_many([moved], conflict=["name"])
            with pytest.raises(TransactionError):
                await uow.repository(Team).count()
    async with write_db.session() as session:
        stored = {(t.id, t.name, t.headquarters) for t in await Repository(session, Team).list()}
    assert stored == {(avengers.id, "Avengers", "Tower"), (xforce.id, "X-Force", "Mansion")}
    async with write_db.unit_of_work() as uow:  # its own id: the conflict row, updated
        same = Team(id=avengers.id, name="Avengers", headquarters="Compound")
        (kept,) = await uow.repository(Team).upsert_many([same], conflict=["name"])
        assert (kept.id, kept.headquarters) == (avengers.id, "Compound")


async def test_upsert_on_one_key_that_meets_another_is_a_unique_violation(
    write_db: Database,
) -> None:
    # MySQL's ON DUPLICATE KEY UPDATE takes any unique key: it updated the row named "Avengers",
    # then a bare KeyError escaped. Now every backend refuses the row, and changes nothing.
    ids = await seed(write_db)
    before = await team_names(write_db)
    with pytest.raises(TransactionError, match="failed earlier"):
        async with write_db.unit_of_work() as uow:
            with pytest.raises(UniqueViolationError):
                await uow.repository(Team).upsert(
                    {"id": 99_999, "name": "Avengers", "headquarters": "Elsewhere"},
                    conflict=["id"],
                )
    assert await team_names(write_db) == before
    async with write_db.session() as session:
        avengers = await Repository(session, Team).get_one(ids["Avengers"])
    assert avengers.headquarters == "New York"


async def test_upsert_refuses_bad_targets(write_db: Database) -> None:
    async with write_db.unit_of_work() as uow:
        teams = uow.repository(Team)
        with pytest.raises(InvalidDataError, match="unknown: nme"):
            await teams.upsert({"name": "A"}, conflict=["nme"])
        with pytest.raises(InvalidDataError, match="cannot update"):
            await teams.upsert({"name": "A"}, conflict=["name"], update=["id", "bogus"])


# --- streaming ----------------------------------------------------------------------------------


async def test_stream_walks_every_row_in_batches(db: Database) -> None:
    ids = await many_heroes(db)
    async with db.session() as session:
        heroes = Repository(session, Hero)
        streamed = [h.id async for h in heroes.stream(batch_size=3)]
        assert streamed == ids
        by_age = [h.age async for h in heroes.stream(order_by="-age", batch_size=4)]
        assert by_age == [99, 48, 30, 30, 30, 12, 12, None, None, None]
        assert [h.name async for h in heroes.stream(Hero.age == 12, batch_size=1)] == [
            "Hero 05",
            "Hero 08",
        ]


async def test_leaving_a_stream_early_holds_nothing(db: Database) -> None:
    await many_heroes(db)
    async with db.unit_of_work() as uow:
        heroes = uow.repository(Hero)
        async for hero in heroes.stream(batch_size=2):
            if hero.name == "Hero 03":
                break
        with pytest.raises(RuntimeError):
            async for hero in heroes.stream(batch_size=2):
                raise RuntimeError(hero.name)
        assert await heroes.count() == 10
    assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_stream_refuses_a_bad_batch_size(db: Database) -> None:
    async with db.session() as session:
        with pytest.raises(InvalidFilterError, match="batch_size"):
            async for _ in Repository(session, Hero).stream(batch_size=0):
                pass


async def test_a_sort_on_a_unique_column_gets_no_tie_breaker(db: Database) -> None:
    # Team.name is unique and NOT NULL: the order is total, and "ORDER BY name, id" would make
    # MariaDB sort with a filesort where the index on name alone reads only the page.
    await seed(db)
    async with db.session() as session:
        teams, heroes = Repository(session, Team), Repository(session, Hero)
        for read in (
            lambda: teams.list(order_by=Team.name, limit=1),
            lambda: teams.list(order_by="-name", limit=1),
            lambda: teams.page(order_by="name", limit=1),
            lambda: teams.keyset(order_by="name", limit=1),
        ):
            with count_queries(db) as log:
                await read()
            order = log.statements[0].upper().split("ORDER BY")[1]
            assert "ID" not in order, log
        with count_queries(db) as log:  # Hero.name is not unique: the key breaks ties
            await heroes.list(order_by=Hero.name, limit=1)
        assert "ID" in log.statements[0].upper().split("ORDER BY")[1], log
        first = await teams.keyset(order_by="name", limit=1)
        rest = await teams.keyset(order_by="name", after=first.next_cursor, limit=5)
        assert [t.name for t in [*first.items, *rest.items]] == sorted(await team_names(db))
