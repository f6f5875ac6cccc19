"""Property tests: what goes in comes out, byte for byte, on every backend."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from herorepo import Database, NotFoundError, Repository

from ..conftest import CONNECT_ARGS, backend_url
from ..models import Note

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


class RepositoryAgreesWithADict(RuleBasedStateMachine):
    """Drive a repository and a plain dict with the same operations; they must always agree."""

    notes = Bundle("notes")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.model: dict[int, tuple[str, int]] = {}
        self.db: Database | None = None

    def run(self, coroutine):  # type: ignore[no-untyped-def]
        return self.loop.run_until_complete(coroutine)

    @initialize()
    def open_database(self) -> None:
        backend = type(self).backend_name
        self.db = Database(backend_url(backend), connect_args=CONNECT_ARGS[backend])

        async def clear() -> None:
            assert self.db is not None
            async with self.db.unit_of_work() as uow:
                for note in await uow.repository(Note).list():
                    await uow.repository(Note).delete(note)

        self.run(clear())

    backend_name = "sqlite"

    @rule(target=notes, body=TEXT, number=BIGINT)
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

    @rule(ident=notes, body=TEXT)
    def update(self, ident: int, body: str) -> None:
        async def go() -> None:
            assert self.db is not None
            async with self.db.unit_of_work() as uow:
                await uow.repository(Note).update(ident, {"body": body})

        if ident in self.model:
            self.run(go())
            self.model[ident] = (body, self.model[ident][1])
        else:
            with pytest.raises(NotFoundError):
                self.run(go())

    @rule(ident=consumes(notes))
    def delete(self, ident: int) -> None:
        async def go() -> None:
            assert self.db is not None
            async with self.db.unit_of_work() as uow:
                await uow.repository(Note).delete(ident)

        self.run(go())
        del self.model[ident]

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
                async with db.unit_of_work() as uow:
                    for note in await uow.repository(Note).list():
                        await uow.repository(Note).delete(note)
                await db.dispose()

            self.run(close())
        self.loop.close()


def test_repository_behaves_like_a_dict(backend: str, db: Database) -> None:
    # `db` makes sure the tables exist; the machine opens its own engine on its own loop.
    machine = type(f"Machine_{backend}", (RepositoryAgreesWithADict,), {"backend_name": backend})
    run_state_machine_as_test(
        machine, settings=settings(max_examples=8, stateful_step_count=12, deadline=None)
    )
