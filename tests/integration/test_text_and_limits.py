"""Text compares exactly on every backend, and values past a server's limits are refused as
data errors, never as a lost connection or a constraint violation."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from herorepo import Database, InvalidDataError, Repository, UniqueViolationError

from ..models import Document, Sample

pytestmark = pytest.mark.asyncio

# Equal under MySQL's default collation (utf8mb4_general_ci), distinct everywhere else.
LOOKALIKES = ["😀", "😁", "Alpha", "alpha", "resume", "résumé", "strasse", "straße"]


async def test_distinct_text_is_distinct_on_every_backend(write_db: Database) -> None:
    async with write_db.unit_of_work() as uow:
        words = uow.repository(Document)
        await words.add_many([{"word": w} for w in LOOKALIKES])
        for word in LOOKALIKES:
            assert (await words.find_one(word=word)).word == word
        assert await words.count(Document.word == "alpha") == 1
    with pytest.raises(UniqueViolationError):
        async with write_db.unit_of_work() as uow:
            await uow.repository(Document).create({"word": "Alpha"})


async def test_tables_created_on_mysql_get_an_exact_collation(write_db: Database) -> None:
    if write_db.backend != "mysql":
        assert write_db.backend in ("sqlite", "postgresql")  # they compare text exactly already
        return
    async with write_db.engine.connect() as connection:
        collation = await connection.scalar(
            text(
                "SELECT table_collation FROM information_schema.tables "
                "WHERE table_schema = DATABASE() AND table_name = 'hr_document'"
            )
        )
    assert collation == "utf8mb4_bin"
    assert "mysql_collate" not in Document.__table__.dialect_kwargs  # the model is unchanged


async def test_a_text_larger_than_a_statement_may_be_is_a_data_error(write_db: Database) -> None:
    body = "x" * 17_000_000  # MariaDB's max_allowed_packet is 16 MiB by default
    if write_db.backend == "mysql":
        with pytest.raises(InvalidDataError, match="max_allowed_packet"):
            async with write_db.unit_of_work() as uow:
                await uow.repository(Document).create({"word": "big", "body": body})
        async with write_db.session() as session:  # the pool still works, nothing was stored
            assert await Repository(session, Document).count() == 0
        return
    async with write_db.unit_of_work() as uow:
        document = await uow.repository(Document).create({"word": "big", "body": body})
    async with write_db.session() as session:
        stored = await Repository(session, Document).get_one(document.id)
        assert len(stored.body) == len(body)


def nested(containers: int) -> object:
    value: object = 1
    for _ in range(containers):
        value = {"a": value}
    return value


@pytest.mark.parametrize("containers", [31, 32, 64, 100])
async def test_deep_json_is_stored_or_refused_before_sql(
    write_db: Database, containers: int
) -> None:
    if write_db.backend == "mysql" and containers > 31:  # not a CheckViolationError from MariaDB
        with pytest.raises(InvalidDataError, match="nests more than 31 arrays and objects"):
            async with write_db.unit_of_work() as uow:
                await uow.repository(Sample).create({"data": nested(containers)})
        return
    async with write_db.unit_of_work() as uow:
        sample = await uow.repository(Sample).create({"data": nested(containers)})
    async with write_db.session() as session:
        assert (await Repository(session, Sample).get_one(sample.id)).data == nested(containers)
