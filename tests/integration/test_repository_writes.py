"""Writes run on four variants: SQLite, PostgreSQL, MariaDB, and MariaDB without RETURNING
(which is how MySQL 8 behaves)."""

from __future__ import annotations

from datetime import datetime

import pytest
from pydantic import BaseModel, ConfigDict
from sqlalchemy import inspect

from herorepo import (
    ConcurrentUpdateError,
    Database,
    InvalidDataError,
    NotFoundError,
    Repository,
    UniqueViolationError,
)
from herorepo.testing import count_queries

from ..models import Account, Hero, HeroCreate, HeroUpdate, Note, Team
from .helpers import hero_rows, seed

pytestmark = pytest.mark.asyncio


async def test_create_from_instance_schema_and_mapping(write_db: Database) -> None:
    async with write_db.unit_of_work() as uow:
        heroes = uow.repository(Hero)
        one = await heroes.create(Hero(name="Deadpond", secret_name="Dive Wilson"))
        two = await heroes.create(HeroCreate(name="Spider-Boy", secret_name="Pedro Parqueador"))
        three = await heroes.create({"name": "Rusty-Man", "secret_name": "Tommy Sharp", "age": 48})
    rows = await hero_rows(write_db)
    assert [r["name"] for r in rows] == ["Deadpond", "Spider-Boy", "Rusty-Man"]
    assert [one.id, two.id, three.id] == [r["id"] for r in rows]
    assert three.age == 48


async def test_created_object_has_key_and_server_defaults_after_the_transaction(
    write_db: Database,
) -> None:
    async with write_db.unit_of_work() as uow:
        hero = await uow.repository(Hero).create({"name": "Deadpond", "secret_name": "Dive"})
    # The unit of work has ended and its session is closed: nothing here may need SQL.
    assert isinstance(hero.id, int)
    assert hero.status == "active"
    assert isinstance(hero.created_at, datetime)
    assert not inspect(hero).unloaded - {"team", "powers"}


async def test_add_many_returns_every_row_loaded(write_db: Database) -> None:
    async with write_db.unit_of_work() as uow:
        heroes = await uow.repository(Hero).add_many(
            [{"name": f"Hero {i}", "secret_name": f"Secret {i}", "age": i} for i in range(25)]
        )
        assert await uow.repository(Hero).add_many([]) == []
    assert [h.age for h in heroes] == list(range(25))
    assert len({h.id for h in heroes}) == 25
    assert all(h.status == "active" and h.created_at is not None for h in heroes)
    assert [r["id"] for r in await hero_rows(write_db)] == [h.id for h in heroes]


def returning(db: Database) -> bool:
    return bool(db.engine.dialect.insert_executemany_returning)


async def test_add_many_sends_one_insert_per_run_of_rows_setting_the_same_columns(
    write_db: Database,
) -> None:
    rows: list[dict[str, object]] = [
        {"name": f"Hero {i}", "secret_name": "s", "age": None if i % 2 else i} for i in range(6)
    ]
    rows.insert(3, {"name": "Banned", "secret_name": "s", "status": "banned"})
    async with write_db.unit_of_work() as uow:
        with count_queries(write_db) as queries:
            heroes = await uow.repository(Hero).add_many(rows)
    # age has no default, so None is sent as NULL; status has one, so setting it starts a run.
    # Without RETURNING (MySQL 8) a flush inserts row by row and reads the defaults back.
    assert queries.count == (3 if returning(write_db) else 2 * len(rows)), queries
    assert [h.name for h in heroes] == [r["name"] for r in rows]
    assert [h.status for h in heroes] == ["active"] * 3 + ["banned"] + ["active"] * 3
    ids = [h.id for h in heroes]
    assert ids == sorted(ids)  # keys follow the input order, as with a flush
    assert [r["id"] for r in await hero_rows(write_db)] == ids
    assert all(isinstance(h.created_at, datetime) for h in heroes)


async def test_add_many_of_schemas_and_of_instances(write_db: Database) -> None:
    async with write_db.unit_of_work() as uow:
        heroes = uow.repository(Hero)
        with count_queries(write_db) as queries:
            schemas = await heroes.add_many(
                [HeroCreate(name=f"Schema {i}", secret_name="s", age=i) for i in range(3)]
            )
        assert queries.count == (1 if returning(write_db) else 6), queries
        built = [Hero(name="Built", secret_name="s")]
        instances = await heroes.add_many(built)
        assert instances[0] is built[0]  # the objects given are the ones inserted
    assert [h.age for h in schemas] == [0, 1, 2]
    assert all(h.status == "active" for h in [*schemas, *instances])
    assert [r["name"] for r in await hero_rows(write_db)] == [
        "Schema 0",
        "Schema 1",
        "Schema 2",
        "Built",
    ]


async def test_add_many_validates_and_protects_every_row(write_db: Database) -> None:
    async with write_db.unit_of_work() as uow:
        heroes = uow.repository(Hero)
        good = {"name": "Fine", "secret_name": "s"}
        with pytest.raises(InvalidDataError, match=r"Invalid value for Hero\.age \(item 1\): "):
            await heroes.add_many([good, {"name": "X", "secret_name": "Y", "age": "old"}])
        with pytest.raises(InvalidDataError, match=r"Hero\.age"):  # checked for the backend too
            await heroes.add_many([good, {**good, "age": 2**70}])
        with pytest.raises(InvalidDataError, match="Hero has no field 'power'"):
            await heroes.add_many([good, {**good, "power": "flight"}])
        with pytest.raises(InvalidDataError, match=r"allow=\{'id'\}"):
            await heroes.add_many([good, {**good, "id": 5}])
        with pytest.raises(InvalidDataError, match=r"max_length|at most 100"):
            await heroes.add_many([{"name": "n" * 101, "secret_name": "s"}])
        coerced = await heroes.add_many([{"name": "Seven", "secret_name": "s", "age": "7"}])
        assert coerced[0].age == 7
        chosen = await heroes.add_many([{**good, "id": 1000}], allow={"id"})
        assert chosen[0].id == 1000
    assert sorted(r["name"] for r in await hero_rows(write_db)) == ["Fine", "Seven"]


async def test_add_many_refused_row_keeps_none_of_the_batch(write_db: Database) -> None:
    rows = [{"name": f"Team {i}"} for i in range(3)] + [{"name": "Team 0", "headquarters": "x"}]
    async with write_db.unit_of_work() as uow:
        with pytest.raises(UniqueViolationError):
            async with uow.savepoint():
                await uow.repository(Team).add_many(rows)
        assert await uow.repository(Team).count() == 0


async def test_create_refuses_unknown_fields_and_invalid_values(write_db: Database) -> None:
    async with write_db.unit_of_work() as uow:
        heroes = uow.repository(Hero)
        with pytest.raises(InvalidDataError, match="Hero has no field 'power'"):
            await heroes.create({"name": "X", "secret_name": "Y", "power": "flight"})
        with pytest.raises(InvalidDataError, match=r"Invalid value for Hero\.age: ") as caught:
            await heroes.create({"name": "X", "secret_name": "Y", "age": "old"})
        assert "age" in str(caught.value)
        with pytest.raises(InvalidDataError, match="Cannot make a Hero from int"):
            await heroes.create(42)  # type: ignore[arg-type]
    assert await hero_rows(write_db) == []


async def test_update_changes_only_the_fields_set(write_db: Database) -> None:
    ids = await seed(write_db)
    before = {r["id"]: r for r in await hero_rows(write_db)}
    async with write_db.unit_of_work() as uow:
        hero = await uow.repository(Hero).update(ids["Deadpond"], HeroUpdate(age=31))
        assert hero.age == 31
    after = {r["id"]: r for r in await hero_rows(write_db)}
    changed = after[ids["Deadpond"]]
    assert changed["age"] == 31
    unchanged = {k: v for k, v in changed.items() if k != "age"}
    assert unchanged == {k: v for k, v in before[ids["Deadpond"]].items() if k != "age"}
    assert {k: v for k, v in after.items() if k != ids["Deadpond"]} == {
        k: v for k, v in before.items() if k != ids["Deadpond"]
    }


async def test_update_can_set_a_field_to_none_and_takes_instances(write_db: Database) -> None:
    ids = await seed(write_db)
    async with write_db.unit_of_work() as uow:
        heroes = uow.repository(Hero)
        hero = await heroes.get_one(ids["Rusty-Man"])
        updated = await heroes.update(hero, {"age": None, "name": "Rusty"})
        assert updated is hero
    rows = {r["id"]: r for r in await hero_rows(write_db)}
    assert rows[ids["Rusty-Man"]]["age"] is None
    assert rows[ids["Rusty-Man"]]["name"] == "Rusty"


async def test_update_coerces_values_like_the_model_does(write_db: Database) -> None:
    ids = await seed(write_db)
    async with write_db.unit_of_work() as uow:
        hero = await uow.repository(Hero).update(ids["Deadpond"], {"age": "33"})
        assert hero.age == 33


async def test_update_refuses_unknown_fields_and_bad_values(write_db: Database) -> None:
    ids = await seed(write_db)
    before = await hero_rows(write_db)
    async with write_db.unit_of_work() as uow:
        heroes = uow.repository(Hero)
        with pytest.raises(InvalidDataError, match="Hero has no field 'nmae'"):
            await heroes.update(ids["Deadpond"], {"nmae": "typo"})
        with pytest.raises(InvalidDataError, match=r"Invalid value for Hero\.age"):
            await heroes.update(ids["Deadpond"], {"age": "old"})
        with pytest.raises(InvalidDataError, match=r"Invalid value for Hero\.name"):
            await heroes.update(ids["Deadpond"], {"name": "x" * 101})
    assert await hero_rows(write_db) == before


async def test_update_of_a_missing_id_is_not_found(write_db: Database) -> None:
    async with write_db.unit_of_work() as uow:
        with pytest.raises(NotFoundError, match="Hero with the id asked for does not exist"):
            await uow.repository(Hero).update(999, {"age": 1})


async def test_delete_by_id_and_by_instance(write_db: Database) -> None:
    ids = await seed(write_db)
    async with write_db.unit_of_work() as uow:
        heroes = uow.repository(Hero)
        await heroes.delete(ids["Deadpond"])
        await heroes.delete(await heroes.get_one(ids["Spider-Boy"]))
    assert [r["name"] for r in await hero_rows(write_db)] == ["Rusty-Man"]


async def test_delete_by_key_is_one_statement_when_the_orm_has_nothing_to_do(
    write_db: Database,
) -> None:
    async with write_db.unit_of_work() as uow:
        notes = uow.repository(Note)
        kept, gone = await notes.add_many(
            [{"body": "kept", "number": 1}, {"body": "gone", "number": 2}]
        )
        uow.session.expunge(gone)
        with count_queries(write_db) as queries:
            await notes.delete(gone.id)
        assert queries.count == 1, queries  # DELETE ... WHERE id = ?, no SELECT first
        with pytest.raises(NotFoundError, match="Note with the id asked for does not exist"):
            await notes.delete(gone.id)
        with pytest.raises(NotFoundError):  # a key as a tuple, as session.get takes it
            await notes.delete((gone.id,))
        with count_queries(write_db) as queries:
            await notes.delete(kept.id)  # in the session: deleted through it, which forgets it
        assert queries.count == 1, queries
        assert inspect(kept).deleted
        assert await notes.get(kept.id) is None
    async with write_db.session() as session:
        assert await Repository(session, Note).count() == 0


async def test_delete_by_key_reads_first_when_the_orm_must_act(write_db: Database) -> None:
    ids = await seed(write_db)
    async with write_db.unit_of_work() as uow:
        with count_queries(write_db) as queries:
            await uow.repository(Hero).delete(ids["Deadpond"])  # Hero.powers: one-to-many
        assert queries.count == 3, queries  # the hero, its powers (to unlink), the DELETE
    assert "Deadpond" not in [r["name"] for r in await hero_rows(write_db)]


async def test_update_by_key_is_one_update_returning_the_row(write_db: Database) -> None:
    async with write_db.unit_of_work() as uow:
        notes = uow.repository(Note)
        (note,) = await notes.add_many([{"body": "old", "number": 1}])
        ident = note.id
        uow.session.expunge(note)
        with count_queries(write_db) as queries:
            changed = await notes.update(ident, {"body": "new", "number": "2"})
        returning = write_db.engine.dialect.update_returning
        assert queries.count == (1 if returning else 2), queries
        assert (changed.id, changed.body, changed.number) == (ident, "new", 2)
        assert await notes.get(ident) is changed  # in the session now, no SQL
        with count_queries(write_db) as queries:  # in the session: changed through it
            again = await notes.update(ident, {"body": "newer"})
        assert again is changed
        assert changed.body == "newer"
        assert queries.count == 1, queries
        with pytest.raises(NotFoundError, match="Note with the id asked for does not exist"):
            await notes.update(123456, {"body": "x"})
        uow.session.expunge(changed)
        assert (await notes.update((ident,), {"number": 3})).number == 3
        with pytest.raises(InvalidDataError, match=r"allow=\{'id'\}"):
            await notes.update(ident, {"id": 7})
    async with write_db.session() as session:
        stored = await Repository(session, Note).get_one(ident)
    assert (stored.body, stored.number) == ("newer", 3)


async def test_deleting_twice_is_not_found(write_db: Database) -> None:
    ids = await seed(write_db)
    async with write_db.unit_of_work() as uow:
        await uow.repository(Hero).delete(ids["Deadpond"])
    async with write_db.unit_of_work() as uow:
        with pytest.raises(NotFoundError):
            await uow.repository(Hero).delete(ids["Deadpond"])


async def test_repositories_flush_but_never_commit(write_db: Database) -> None:
    async with write_db.session() as session:
        hero = await Repository(session, Hero).create({"name": "Ghost", "secret_name": "Boo"})
        assert hero.id is not None
        assert await hero_rows(write_db) == []  # not visible to other connections
        await session.rollback()
    assert await hero_rows(write_db) == []


async def test_team_update_and_delete_with_relationship_not_loaded(write_db: Database) -> None:
    async with write_db.unit_of_work() as uow:
        team = await uow.repository(Team).create({"name": "Solo"})
        renamed = await uow.repository(Team).update(team, {"headquarters": "Nowhere"})
        assert renamed.headquarters == "Nowhere"
        await uow.repository(Team).delete(team)
    async with write_db.session() as session:
        assert await Repository(session, Team).count() == 0


async def test_an_object_from_an_earlier_unit_of_work_is_updated_and_deleted(
    write_db: Database,
) -> None:
    async with write_db.unit_of_work() as uow:
        hero = await uow.repository(Hero).create({"name": "Old", "secret_name": "S"})
    async with write_db.unit_of_work() as uow:
        updated = await uow.repository(Hero).update(hero, {"name": "New"})
    assert updated.name == "New"
    assert hero.name == "New"  # the object passed in holds the row as saved, too
    assert not inspect(hero).modified  # as loaded: nothing for another session to write again
    assert [r["name"] for r in await hero_rows(write_db)] == ["New"]
    async with write_db.unit_of_work() as uow:
        await uow.repository(Hero).delete(hero)
    assert await hero_rows(write_db) == []


async def test_a_stale_object_from_an_earlier_unit_of_work_is_a_concurrent_update(
    write_db: Database,
) -> None:
    async with write_db.unit_of_work() as uow:
        account = await uow.repository(Account).create({"owner": "ann", "balance": 10})
    async with write_db.unit_of_work() as uow:  # someone else changes the row meanwhile
        await uow.repository(Account).update(account.id, {"balance": 20})
    with pytest.raises(ConcurrentUpdateError):
        async with write_db.unit_of_work() as uow:
            await uow.repository(Account).update(account, {"balance": 0})
    async with write_db.session() as session:
        assert (await Repository(session, Account).get_one(account.id)).balance == 20


async def test_an_object_never_stored_cannot_be_updated(write_db: Database) -> None:
    async with write_db.unit_of_work() as uow:
        with pytest.raises(InvalidDataError, match="is not stored yet"):
            await uow.repository(Hero).update(Hero(name="X", secret_name="Y"), {"name": "Z"})


class OpenHeroCreate(BaseModel):
    """A request schema that keeps undeclared fields: validation reads them too."""

    model_config = ConfigDict(extra="allow")
    name: str
    secret_name: str


async def test_a_schema_with_extra_fields_cannot_set_protected_or_unknown_fields(
    write_db: Database,
) -> None:
    async with write_db.unit_of_work() as uow:
        heroes = uow.repository(Hero)
        sneaky = OpenHeroCreate(name="Sneaky", secret_name="s", id=4242)  # type: ignore[call-arg]
        for write in (heroes.create, lambda data: heroes.add_many([data])):
            with pytest.raises(InvalidDataError, match=r"Hero\.id cannot be set.*allow=\{'id'\}"):
                await write(sneaky)
        unknown = OpenHeroCreate(name="Odd", secret_name="s", power="flight")  # type: ignore[call-arg]
        with pytest.raises(InvalidDataError, match="Hero has no field 'power'"):
            await heroes.create(unknown)
        chosen = await heroes.create(sneaky, allow={"id"})
        assert chosen.id == 4242
        fine = await heroes.create(OpenHeroCreate(name="Fine", secret_name="s"))
        assert fine.id != 4242
    assert sorted(r["name"] for r in await hero_rows(write_db)) == ["Fine", "Sneaky"]
