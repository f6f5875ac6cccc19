"""Keyset cursors are signed by default, and a cursor is checked whole before any SQL.

Forged cursors below are signed with the Database's real key, as an attacker who learnt it (or
a bug in herorepo) would: the checks after the signature must still hold.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from herorepo import ConfigurationError, Database, InvalidCursorError, Repository
from herorepo.testing import count_queries

from ..models import Hero

pytestmark = pytest.mark.asyncio

KEY = b"cursor-key-for-the-tests-0123456"
OLD_KEY = b"the-key-before-rotation-98765432"


def sign(payload: bytes, key: bytes) -> str:
    token = payload + hashlib.blake2b(payload, digest_size=12, key=key).digest()
    return base64.urlsafe_b64encode(token).decode().rstrip("=")


def content(cursor: str) -> list[Any]:
    token = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    return json.loads(token[:-12])  # type: ignore[no-any-return]


@pytest_asyncio.fixture
async def keyed(db: Database) -> AsyncIterator[Database]:
    """The test database, with a known cursor key, holding ten heroes."""
    async with Database(db.url, cursor_keys=[KEY]) as database:
        async with database.unit_of_work() as uow:
            await uow.repository(Hero).add_many(
                [{"name": f"Hero {i:02d}", "secret_name": "s", "age": i} for i in range(10)]
            )
        yield database


async def first_cursor(database: Database, order_by: str = "age") -> str:
    async with database.unit_of_work(read_only=True) as uow:
        page = await uow.repository(Hero).keyset(order_by=order_by, limit=3)
    assert page.next_cursor is not None
    return page.next_cursor


async def refused(database: Database, cursor: str, order_by: str = "age") -> str:
    """The message of the InvalidCursorError for ``cursor``; no statement may have run."""
    async with database.unit_of_work(read_only=True) as uow:
        with count_queries(database) as queries, pytest.raises(InvalidCursorError) as caught:
            await uow.repository(Hero).keyset(order_by=order_by, after=cursor, limit=3)
        assert queries.count == 0, queries
    return str(caught.value)


async def test_a_cursor_signed_without_a_key_is_refused(keyed: Database) -> None:
    # What herorepo accepted before cursors were signed by default: a checksum with no key.
    version, fingerprint, _ = content(await first_cursor(keyed))
    forged = sign(json.dumps([version, fingerprint, [5, 5]]).encode(), b"")
    assert "signature does not match" in await refused(keyed, forged)


async def test_a_cursor_of_another_database_is_refused(keyed: Database, db: Database) -> None:
    cursor = await first_cursor(keyed)
    async with Database(db.url) as other:  # a random key of its own
        message = await refused(other, cursor)
    assert "signed with another key" in message
    assert "cursor_keys=" in message


async def test_rotated_keys_still_verify_cursors_of_the_old_key(db: Database) -> None:
    async with Database(db.url, cursor_keys=[OLD_KEY]) as before:
        await before.create_all()
        async with before.unit_of_work() as uow:
            await uow.repository(Hero).add_many(
                [{"name": f"Hero {i:02d}", "secret_name": "s", "age": i} for i in range(10)]
            )
        cursor = await first_cursor(before)
    async with Database(db.url, cursor_keys=[KEY, OLD_KEY]) as rotated:
        async with rotated.unit_of_work(read_only=True) as uow:
            page = await uow.repository(Hero).keyset(order_by="age", after=cursor, limit=3)
            assert [h.age for h in page.items] == [3, 4, 5]
            assert page.next_cursor is not None
        # New cursors are signed with the new key only: they outlive the old key's removal.
        async with Database(db.url, cursor_keys=[KEY]) as after:
            assert "signature does not match" in await refused(after, cursor)
            async with after.unit_of_work(read_only=True) as uow:
                follow = await uow.repository(Hero).keyset(
                    order_by="age", after=page.next_cursor, limit=3
                )
            assert [h.age for h in follow.items] == [6, 7, 8]


@pytest.mark.parametrize(
    ("values", "why"),
    [
        pytest.param("DEEP-1400", "longer than", id="nested-1400-levels"),
        pytest.param("DEEP-700", "does not fit", id="nested-700-levels"),
        pytest.param([2**70, 1], "does not fit", id="integer-beyond-64-bits"),
        pytest.param([3, 2**63], "does not fit", id="key-beyond-64-bits"),
        pytest.param([3.5, 1], "does not fit", id="float-for-an-integer"),
        pytest.param([[1, 2], 1], "does not fit", id="list-for-an-integer"),
        pytest.param([{"a": 1}, 1], "does not fit", id="object-for-an-integer"),
        pytest.param([3], "wrong number", id="too-few-values"),
        pytest.param([3, 1, 1], "wrong number", id="too-many-values"),
    ],
)
async def test_a_forged_cursor_with_the_right_key_is_still_checked(
    keyed: Database, values: object, why: str
) -> None:
    version, fingerprint, _ = content(await first_cursor(keyed))
    if isinstance(values, str):  # nested lists: json.loads recursed until RecursionError
        depth = int(values.removeprefix("DEEP-"))
        body = f'[{version},"{fingerprint}",[' + "[" * depth + "]" * depth + ",1]]"
    else:
        body = json.dumps([version, fingerprint, values])
    assert why in await refused(keyed, sign(body.encode(), KEY))


@pytest.mark.parametrize(
    "value", [pytest.param("A\x00B", id="nul"), pytest.param("\ud800", id="lone-surrogate")]
)
async def test_a_forged_text_value_that_no_column_holds_is_refused(
    keyed: Database, value: str
) -> None:
    version, fingerprint, _ = content(await first_cursor(keyed, order_by="name"))
    body = json.dumps([version, fingerprint, [value, 1]]).encode()
    assert "does not fit" in await refused(keyed, sign(body, KEY), order_by="name")


async def test_long_cursors_are_refused_before_they_are_decoded(keyed: Database) -> None:
    assert "longer than 2048" in await refused(keyed, "A" * 2049)


async def test_a_repository_cursor_secret_overrides_the_database_keys(keyed: Database) -> None:
    class OwnKey(Repository[Hero]):
        cursor_secret = b"a-repository-key-of-its-own-0000"

    async with keyed.unit_of_work(read_only=True) as uow:
        own = await OwnKey(uow.session).keyset(order_by="age", limit=3)
        assert own.next_cursor is not None
        with pytest.raises(InvalidCursorError, match="signature"):
            await uow.repository(Hero).keyset(order_by="age", after=own.next_cursor, limit=3)
        follow = await OwnKey(uow.session).keyset(order_by="age", after=own.next_cursor, limit=3)
        assert [h.age for h in follow.items] == [3, 4, 5]


@pytest.mark.parametrize(
    "keys",
    [
        pytest.param(["short"], id="too-short"),
        pytest.param([b"x" * 65], id="too-long"),
        pytest.param([], id="empty"),
        pytest.param("a-single-string-not-a-list-000000", id="a-string"),
        pytest.param([1234567890123456789], id="not-text"),
    ],
)
async def test_unusable_cursor_keys_are_refused_without_showing_them(keys: Any) -> None:
    with pytest.raises(ConfigurationError, match="cursor_keys") as caught:
        Database("sqlite://", cursor_keys=keys)
    for key in keys if isinstance(keys, list) else [keys]:
        assert str(key) not in str(caught.value)
