"""Property tests: what goes in comes out, byte for byte, on every backend."""

from __future__ import annotations

import asyncio
import os

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    MultipleResults,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import true

from herorepo import Database, NotFoundError, Repository

from ..conftest import CONNECT_ARGS, backend_url
from ..models import Hero, Note

# Any unicode a user can type: no surrogates (not encodable) and no NUL (PostgreSQL refuses it
# in text), up to the column's 255-character limit.
TEXT = st.text(
    alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=255
)
BIGINT = st.integers(min_value=-(2**63), max_value=2**63 - 1)


@pytest.mark.asyncio
@given(body=TEXT, number=BIGINT)
@example(body="🦸" * 255, number=2**63 - 1)
@example(body=" trailing spaces  ", number=-(2**63))
@example(body="", number=0)
async def test_text_and_integers_round_trip(db: Database, body: str, number: int) -> None:
    async with db.unit_of_work() as uow:
        created = await uow.repository(Note).create({"body": body, "number": number})
    async with db.session() as session:
        read = await Repository(session, Note).get_one(created.id)
    assert read.body == body
    assert read.body.encode("utf-8") == body.encode("utf-8")
    assert read.number == number


NUMBERS = st.integers(-3, 3) | BIGINT  # small ranges make ties, which sorting must break by id
SORTS_BY_NUMBER = ["number", "-number"]


class RepositoryAgreesWithADict(RuleBasedStateMachine):
    """Drive a repository and a plain dict with the same operations; they must always agree.

    Rows are sorted by ``number`` only: text order depends on each server's collation, which
    herorepo leaves to the database on purpose.
    """

    notes = Bundle("notes")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.model: dict[int, tuple[str, int]] = {}
        self.gone: set[int] = set()
        self.db: Database | None = None

    def run(self, coroutine):  # type: ignore[no-untyped-def]
        return self.loop.run_until_complete(coroutine)

    @initialize()
    def open_database(self) -> None:
        backend = type(self).backend_name
        self.db = Database(backend_url(backend), connect_args=CONNECT_ARGS[backend])
        self.run(self._clear())

    backend_name = "sqlite"

    async def _clear(self) -> None:
        assert self.db is not None
        async with self.db.unit_of_work() as uow:
            await uow.repository(Note).delete_many(true())

    def expected_order(self, sort: str) -> list[int]:
        sign = -1 if sort.startswith("-") else 1
        return sorted(self.model, key=lambda i: (sign * self.model[i][1], i))

    @rule(target=notes, body=TEXT, number=NUMBERS)
    def create(self, body: str, number: int) -> int:
        async def go() -> int:
            assert self.db is not None
            async with self.db.unit_of_work() as uow:
                note = await uow.repository(Note).create({"body": body, "number": number})
            assert note.id is not None
            return note.id

        ident = self.run(go())
        self.model[ident] = (body, number)
        return ident

    @rule(target=notes, rows=st.lists(st.tuples(TEXT, NUMBERS), min_size=1, max_size=8))
    def add_many(self, rows: list[tuple[str, int]]) -> MultipleResults[int]:
        async def go() -> list[int]:
            assert self.db is not None
            async with self.db.unit_of_work() as uow:
                notes = await uow.repository(Note).add_many(
                    [{"body": body, "number": number} for body, number in rows]
                )
            return [n.id for n in notes if n.id is not None]

        idents = self.run(go())
        assert len(idents) == len(rows)
        self.model.update(zip(idents, rows, strict=True))
        return multiple(*idents)

    @rule(ident=notes)
    def get(self, ident: int) -> None:
        async def go() -> tuple[str, int] | None:
            assert self.db is not None
            async with self.db.session() as session:
                note = await Repository(session, Note).get(ident)
            return None if note is None else (note.body, note.number)

        assert self.run(go()) == self.model.get(ident)

    @rule(ident=notes, body=st.none() | TEXT, number=st.none() | NUMBERS)
    def update(self, ident: int, body: str | None, number: int | None) -> None:
        changes = {k: v for k, v in {"body": body, "number": number}.items() if v is not None}

        async def go() -> None:
            assert self.db is not None
            async with self.db.unit_of_work() as uow:
                await uow.repository(Note).update(ident, changes)

        if ident in self.model:
            self.run(go())
            old_body, old_number = self.model[ident]
            self.model[ident] = (changes.get("body", old_body), changes.get("number", old_number))
        else:
            with pytest.raises(NotFoundError):
                self.run(go())

    @rule(ident=consumes(notes))
    def delete(self, ident: int) -> None:
        async def go() -> None:
            assert self.db is not None
            async with self.db.unit_of_work() as uow:
                await uow.repository(Note).delete(ident)

        if ident in self.model:
            self.run(go())
            del self.model[ident]
        else:
            with pytest.raises(NotFoundError):
                self.run(go())

    @rule(below=NUMBERS)
    def delete_many(self, below: int) -> None:
        async def go() -> int:
            assert self.db is not None
            async with self.db.unit_of_work() as uow:
                return await uow.repository(Note).delete_many(Note.number < below)

        doomed = [i for i, (_, number) in self.model.items() if number < below]
        assert self.run(go()) == len(doomed)
        for ident in doomed:
            del self.model[ident]

    @rule(at_least=NUMBERS)
    def count(self, at_least: int) -> None:
        async def go() -> int:
            assert self.db is not None
            async with self.db.session() as session:
                return await Repository(session, Note).count(Note.number >= at_least)

        assert self.run(go()) == sum(1 for _, n in self.model.values() if n >= at_least)

    @rule(sort=st.sampled_from(SORTS_BY_NUMBER), offset=st.integers(0, 12), limit=st.integers(1, 5))
    def page(self, sort: str, offset: int, limit: int) -> None:
        async def go() -> tuple[list[int], int | None]:
            assert self.db is not None
            async with self.db.session() as session:
                page = await Repository(session, Note).page(
                    order_by=sort, offset=offset, limit=limit, count=True
                )
            return [n.id for n in page.items if n.id is not None], page.total

        ids, total = self.run(go())
        assert ids == self.expected_order(sort)[offset : offset + limit]
        assert total == len(self.model)

    @rule(sort=st.sampled_from(SORTS_BY_NUMBER), limit=st.integers(1, 4))
    def keyset_walk(self, sort: str, limit: int) -> None:
        async def go() -> list[int]:
            assert self.db is not None
            walked: list[int] = []
            cursor = None
            async with self.db.session() as session:
                notes = Repository(session, Note)
                for _ in range(len(self.model) + 1):
                    page = await notes.keyset(order_by=sort, after=cursor, limit=limit)
                    walked.extend(n.id for n in page.items if n.id is not None)
                    cursor = page.next_cursor
                    if cursor is None:
                        break
            return walked

        assert self.run(go()) == self.expected_order(sort)

    @invariant()
    def same_contents(self) -> None:
        if self.db is None:
            return

        async def read() -> dict[int, tuple[str, int]]:
            assert self.db is not None
            async with self.db.session() as session:
                rows = await Repository(session, Note).list()
                return {n.id: (n.body, n.number) for n in rows if n.id is not None}

        assert self.run(read()) == self.model

    def teardown(self) -> None:
        if self.db is not None:
            db = self.db

            async def close() -> None:
                await self._clear()
                await db.dispose()

            self.run(close())
        self.loop.close()


STATEFUL_EXAMPLES = int(os.environ.get("HEROREPO_STATEFUL_EXAMPLES", "200"))


def test_repository_behaves_like_a_dict(backend: str, db: Database) -> None:
    # `db` makes sure the tables exist; the machine opens its own engine on its own loop.
    machine = type(f"Machine_{backend}", (RepositoryAgreesWithADict,), {"backend_name": backend})
    run_state_machine_as_test(
        machine,
        settings=settings(max_examples=STATEFUL_EXAMPLES, stateful_step_count=15, deadline=None),
    )


# --- keyset pagination ------------------------------------------------------------------------

SORTS = ["age", "-age", "secret_name", "-secret_name", "age,-secret_name", "-age,secret_name"]
ROWS = st.lists(
    st.tuples(st.one_of(st.none(), st.integers(0, 3)), st.sampled_from(["a", "b", "c"])),
    max_size=25,
)


def python_order(rows: list[Hero], sort: str) -> list[int | None]:
    """The order herorepo promises: NULLs last in both directions, then the primary key."""
    keyed: list[tuple[tuple[object, ...], Hero]] = []
    for row in rows:
        parts: list[object] = []
        for item in sort.split(","):
            name = item.lstrip("-")
            value = getattr(row, name)
            if value is None:
                parts.append((1, 0))
            elif isinstance(value, int):
                parts.append((0, -value if item.startswith("-") else value))
            else:
                parts.append((0, [-ord(c) for c in value] if item.startswith("-") else value))
        parts.append(row.id)
        keyed.append((tuple(parts), row))
    keyed.sort(key=lambda pair: pair[0])  # type: ignore[arg-type, return-value]
    return [row.id for _, row in keyed]


@pytest.mark.asyncio
@given(rows=ROWS, sort=st.sampled_from(SORTS), size=st.integers(1, 6))
async def test_keyset_walk_yields_every_row_once_in_order(
    db: Database, rows: list[tuple[int | None, str]], sort: str, size: int
) -> None:
    async with db.unit_of_work() as uow:
        heroes = uow.repository(Hero)
        await heroes.delete_many(true())
        created = await heroes.add_many(
            [{"name": f"h{i}", "secret_name": s, "age": a} for i, (a, s) in enumerate(rows)]
        )
    walked: list[int | None] = []
    async with db.session() as session:
        repository = Repository(session, Hero)
        cursor = None
        for _ in range(len(rows) + 2):
            page = await repository.keyset(order_by=sort, after=cursor, limit=size)
            walked.extend(h.id for h in page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
    assert walked == python_order(created, sort)


@pytest.mark.asyncio
@given(rows=ROWS, sort=st.sampled_from(SORTS), data=st.data())
async def test_changes_during_a_keyset_walk_cause_no_repeats(
    db: Database, rows: list[tuple[int | None, str]], sort: str, data: st.DataObject
) -> None:
    async with db.unit_of_work() as uow:
        heroes = uow.repository(Hero)
        await heroes.delete_many(true())
        created = await heroes.add_many(
            [{"name": f"h{i}", "secret_name": s, "age": a} for i, (a, s) in enumerate(rows)]
        )
    original = {h.id for h in created}
    deleted: set[int | None] = set()
    walked: list[int | None] = []
    cursor = None
    for step in range(len(rows) + 10):
        async with db.session() as session:
            page = await Repository(session, Hero).keyset(order_by=sort, after=cursor, limit=3)
        walked.extend(h.id for h in page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
        # Between pages, another writer inserts and deletes rows.
        async with db.unit_of_work() as uow:
            heroes = uow.repository(Hero)
            age = data.draw(st.one_of(st.none(), st.integers(0, 3)), label="new age")
            await heroes.create({"name": f"new{step}", "secret_name": "b", "age": age})
            remaining = sorted(i for i in original - deleted if i is not None)
            if remaining and data.draw(st.booleans(), label="delete one"):
                victim = data.draw(st.sampled_from(remaining), label="victim")
                await heroes.delete(victim)
                deleted.add(victim)
    assert len(walked) == len(set(walked)), "a row was repeated"
    assert original - deleted <= set(walked), "a row that stayed was skipped"
