"""The workloads: what each op receives, what is reset between batches, and how results are checked.

Arguments are made before the timed batch (victim rows for deletes are inserted then), so a
batch times only the contender's calls. Every contender gets the same arguments in a round.
Before timing, one op per contender is checked: reads must return the same rows as every other
contender, writes must leave the database as the workload says.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from .contenders import Contender, UowArgs
from .contenders.base import PAGE_SIZE
from .data import Dataset, Sizes

Args = tuple[Any, ...]


@dataclass(frozen=True)
class Workload:
    key: str
    label: str
    method: str
    ops: int
    """Ops per timed batch: one batch per contender per round."""
    rounds: int
    warmup: int
    """Ops per warm-up batch; 0 where the checked op is warm-up enough (bulk, stream)."""
    make_args: Callable[[Dataset, Contender, int, random.Random], Awaitable[list[Args]]]
    after: Callable[[Dataset], Awaitable[None]] | None = None
    normalize: Callable[[Any], Any] | None = None
    verify: Callable[[Dataset, Args, Any], Awaitable[str | None]] | None = None
    short: str = ""
    """A name for the targets table."""


# --- normalizing results for the cross-contender check -------------------------------------------


def _id(item: Any) -> Any:
    if isinstance(item, dict):
        return item["id"]
    if hasattr(item, "id"):
        return item.id
    try:
        return item["id"]  # asyncpg's Record
    except (TypeError, KeyError, IndexError):
        return item[0]  # aiomysql and aiosqlite tuples: the id comes first


def _ids(items: Sequence[Any]) -> list[Any]:
    return [_id(item) for item in items]


def _team(item: Any) -> tuple[Any, list[Any]]:
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], list):
        team, heroes = item
    elif isinstance(item, dict):
        team, heroes = item, item.get("heroes", [])
    else:
        team, heroes = item, item.heroes
    return _id(team), sorted(_id(hero) for hero in heroes)


def _teams(items: Sequence[Any]) -> list[tuple[Any, list[Any]]]:
    return sorted(_team(item) for item in items)


# --- arguments -----------------------------------------------------------------------------------


def _repeat(
    *args: Any,
) -> Callable[[Dataset, Contender, int, random.Random], Awaitable[list[Args]]]:
    async def make(ds: Dataset, c: Contender, n: int, rng: random.Random) -> list[Args]:
        return [args] * n

    return make


async def _hero_ids(ds: Dataset, c: Contender, n: int, rng: random.Random) -> list[Args]:
    return [(rng.randint(1, ds.base_max_id),) for _ in range(n)]


async def _new_heroes(ds: Dataset, c: Contender, n: int, rng: random.Random) -> list[Args]:
    return [(ds.next_hero(),) for _ in range(n)]


_BULK_CACHE: dict[int, list[dict[str, Any]]] = {}


async def _bulk_rows(ds: Dataset, c: Contender, n: int, rng: random.Random) -> list[Args]:
    size = ds.sizes.bulk_rows
    if size not in _BULK_CACHE:
        _BULK_CACHE[size] = [
            {"name": f"bulk-{i}", "secret_name": f"bulk-secret-{i}", "age": i % 90}
            for i in range(size)
        ]
    return [(_BULK_CACHE[size],) for _ in range(n)]


async def _updates(ds: Dataset, c: Contender, n: int, rng: random.Random) -> list[Args]:
    return [(rng.randint(1, ds.base_max_id), f"{c.key}-{rng.random():.12f}") for _ in range(n)]


async def _victims(ds: Dataset, c: Contender, n: int, rng: random.Random) -> list[Args]:
    return [(ident,) for ident in await ds.make_victims(n)]


_CURSORS: dict[tuple[str, str, int], Any] = {}


async def _deep_cursor(ds: Dataset, c: Contender, n: int, rng: random.Random) -> list[Args]:
    key = (ds.backend, c.key, ds.sizes.deep_offset)
    if key not in _CURSORS:
        _CURSORS[key] = await c.keyset_cursor(ds.sizes.deep_offset)
    return [(_CURSORS[key],)] * n


async def _deep_offset(ds: Dataset, c: Contender, n: int, rng: random.Random) -> list[Args]:
    return [(ds.sizes.deep_offset,)] * n


async def _stream(ds: Dataset, c: Contender, n: int, rng: random.Random) -> list[Args]:
    return [(ds.sizes.stream_rows,)] * n


async def _uow(ds: Dataset, c: Contender, n: int, rng: random.Random) -> list[Args]:
    victims = await ds.make_victims(n)
    return [
        (
            UowArgs(
                new=ds.next_hero(),
                update_id=rng.randint(1, ds.base_max_id),
                secret_name=f"{c.key}-uow-{rng.random():.12f}",
                delete_id=victim,
            ),
        )
        for victim in victims
    ]


# --- checks of writes ----------------------------------------------------------------------------


async def _check_insert(ds: Dataset, args: Args, result: Any) -> str | None:
    found = await ds.count("bench_hero", f"WHERE name = '{args[0]['name']}'")
    return None if found == 1 else f"expected 1 new row named {args[0]['name']}, found {found}"


async def _check_bulk(ds: Dataset, args: Args, result: Any) -> str | None:
    found = await ds.count("bench_bulk_hero")
    return None if found == len(args[0]) else f"expected {len(args[0])} rows, found {found}"


async def _check_update(ds: Dataset, args: Args, result: Any) -> str | None:
    found = await ds.secret_name(args[0])
    return None if found == args[1] else f"secret_name is {found!r}, expected {args[1]!r}"


async def _check_delete(ds: Dataset, args: Args, result: Any) -> str | None:
    found = await ds.count("bench_hero", f"WHERE id = {int(args[0])}")
    return None if found == 0 else f"hero {args[0]} still exists"


async def _check_uow(ds: Dataset, args: Args, result: Any) -> str | None:
    uow: UowArgs = args[0]
    problems = [
        await _check_insert(ds, (uow.new,), None),
        await _check_update(ds, (uow.update_id, uow.secret_name), None),
        await _check_delete(ds, (uow.delete_id,), None),
    ]
    return "; ".join(p for p in problems if p) or None


def _reset_heroes(ds: Dataset) -> Awaitable[None]:
    return ds.reset_heroes()


def _reset_bulk(ds: Dataset) -> Awaitable[None]:
    return ds.reset_bulk()


def workloads(sizes: Sizes, scale: float = 1.0) -> list[Workload]:
    """Every workload; ``scale`` multiplies ops and rounds (0.2 for a quick smoke run)."""

    def ops(n: int) -> int:
        return max(1, round(n * scale))

    def rounds(n: int) -> int:
        return max(3, round(n * min(1.0, scale)))

    last_page = f"{sizes.large_rows // PAGE_SIZE:,} (last)"
    w = Workload
    every = [
        w("get_by_pk", "get by primary key", "get_by_pk", ops(100), rounds(9), 30, _hero_ids,
          normalize=lambda r: (_id(r),)),
        w("list_page", "list 100 rows, filtered and sorted", "list_page", ops(20), rounds(9), 5,
          _repeat(), normalize=_ids),
        w("insert_one", "insert one + commit", "insert_one", ops(30), rounds(9), 10, _new_heroes,
          after=_reset_heroes, verify=_check_insert),
        w("update_one", "update one + commit", "update_one", ops(30), rounds(9), 10, _updates,
          verify=_check_update),
        w("delete_one", "delete one + commit", "delete_one", ops(30), rounds(9), 10, _victims,
          after=_reset_heroes, verify=_check_delete),
        w("unit_of_work", "unit of work: insert + update + delete", "unit_of_work", ops(20),
          rounds(9), 5, _uow, after=_reset_heroes, verify=_check_uow),
        w("bulk_insert", f"bulk insert {sizes.bulk_rows:,} rows", "bulk_insert", 1, rounds(5), 0,
          _bulk_rows, after=_reset_bulk, verify=_check_bulk),
        w("teams_with_heroes", f"{sizes.teams} teams with their heroes (eager)",
          "teams_with_heroes", ops(5), rounds(7), 2, _repeat(), normalize=_teams),
        w("keyset_first", "keyset page 1", "keyset_page", ops(20), rounds(7), 5, _repeat(None),
          normalize=_ids),
        w("keyset_deep", f"keyset page {last_page}", "keyset_page", ops(20), rounds(7), 5,
          _deep_cursor, normalize=_ids),
        w("offset_deep", f"offset page {last_page}", "offset_page", ops(3), rounds(5), 1,
          _deep_offset, normalize=_ids),
        w("stream", f"stream {sizes.stream_rows:,} rows", "stream", 1, rounds(5), 0, _stream,
          normalize=lambda n: n),
    ]  # fmt: skip
    return [replace(workload, short=SHORT[workload.key]) for workload in every]


SHORT = {
    "get_by_pk": "get", "list_page": "list", "insert_one": "insert", "update_one": "update",
    "delete_one": "delete", "unit_of_work": "unit of work", "bulk_insert": "bulk insert",
    "teams_with_heroes": "eager load", "keyset_first": "keyset page 1",
    "keyset_deep": "keyset page N", "offset_deep": "offset page N", "stream": "stream",
}  # fmt: skip
