"""What building a statement costs, and what caching it would save: ``python -m benchmarks
statements`` (``nox -s bench -- statements``).

Issue #14 asks to build each repository statement once "where that measurably helps"
(SQLAlchemy lambda statements or cached constructs). SQLAlchemy already caches the compiled SQL
of every statement by its cache key; what a call still pays is building the statement and its
cache key. This times that, with no database, for the list and keyset statements of the paths
benchmark (``benchmarks.paths``), each way in alternating batches (the median of the batches):

* **herorepo**: what the repository builds (``_query`` for a list; the seek condition and
  ORDER BY of a keyset page), then its cache key;
* **hand-written**: the SQLModel idiom's ``select().where().order_by().limit()``, then its key;
* **cached construct**: the keyset page's condition and ORDER BY built once, with a bind
  parameter for the cursor value, reused by every call;
* **lambda statement**: ``lambda_stmt`` for the same statement, its criteria fixed in the lambda.

Rewrites the statements section of docs/benchmarks.md, as the other sections do.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import bindparam, lambda_stmt, select

from herorepo import Repository
from herorepo._model_info import model_info
from herorepo._pagination import SortKey, order_clauses, seek_condition

from .path_models import PathHero
from .paths import PAGE
from .sections import Section, log

BATCH = 2_000
BATCHES = 15

Build = Callable[[], Any]


def _repository() -> Repository[PathHero]:
    # The statement building needs no session: a repository with none, never executed.
    repository = Repository.__new__(Repository)
    repository._info = model_info(PathHero)  # pyright: ignore[reportPrivateUsage]
    repository.model = PathHero
    return repository


def _ways() -> dict[str, dict[str, Build]]:
    repository = _repository()
    keys = [SortKey("name")]
    age, last = 30, "hero-050000"

    def list_herorepo() -> Any:
        statement = repository._query(  # pyright: ignore[reportPrivateUsage]
            select(PathHero), [PathHero.age >= age], PathHero.name, limit=PAGE
        )
        return statement._generate_cache_key()

    def list_idiom() -> Any:
        statement = (
            select(PathHero).where(PathHero.age >= age).order_by(PathHero.name).limit(PAGE)  # type: ignore[operator]
        )
        return statement._generate_cache_key()

    def keyset_herorepo() -> Any:
        statement = (
            select(PathHero)
            .where(seek_condition(PathHero, keys, [last], set()))
            .order_by(*order_clauses(PathHero, keys, set()))
            .limit(PAGE + 1)
        )
        return statement._generate_cache_key()

    def keyset_idiom() -> Any:
        statement = (
            select(PathHero).where(PathHero.name > last).order_by(PathHero.name).limit(PAGE + 1)
        )
        return statement._generate_cache_key()

    seek = PathHero.name > bindparam("after")  # built once: the cached construct
    order = order_clauses(PathHero, keys, set())

    def keyset_cached() -> Any:
        statement = select(PathHero).where(seek).order_by(*order).limit(PAGE + 1)
        return statement._generate_cache_key()

    def keyset_lambda() -> Any:
        statement = lambda_stmt(lambda: select(PathHero))
        statement += lambda s: s.where(PathHero.name > last).order_by(PathHero.name)
        statement += lambda s: s.limit(PAGE + 1)
        return statement._generate_cache_key()

    return {
        "list": {"herorepo": list_herorepo, "hand-written": list_idiom},
        "keyset": {
            "herorepo": keyset_herorepo,
            "hand-written": keyset_idiom,
            "cached construct": keyset_cached,
            "lambda statement": keyset_lambda,
        },
    }


def _time(build: Build) -> float:
    started = time.perf_counter()
    for _ in range(BATCH):
        build()
    return (time.perf_counter() - started) / BATCH


def measure() -> dict[str, Any]:
    results: dict[str, Any] = {}
    for statement, ways in _ways().items():
        samples: dict[str, list[float]] = {way: [] for way in ways}
        for build in ways.values():
            build()  # warm: SQLAlchemy's own caches
        for _ in range(BATCHES):
            for way, build in ways.items():
                samples[way].append(_time(build))
        results[statement] = {way: statistics.median(s) for way, s in samples.items()}
        shown = ", ".join(f"{way} {t * 1e6:.1f} µs" for way, t in results[statement].items())
        log(f"{statement}: {shown}")
    return results


# --- the section ---------------------------------------------------------------------------------


def render_section(results: dict[str, Any]) -> list[str]:
    built = results["statements"]
    rows = [
        f"| {statement} | {way} | {seconds * 1e6:.1f} µs |"
        for statement, ways in built.items()
        for way, seconds in ways.items()
    ]
    keyset = built["keyset"]
    saved = (keyset["herorepo"] - keyset["cached construct"]) * 1e6
    lambda_saved = (keyset["herorepo"] - keyset["lambda statement"]) * 1e6
    return [
        "",
        "## Statement caching",
        "",
        "Issue #14 asked to build each repository statement once where that measurably helps. "
        "SQLAlchemy already caches every statement's compiled SQL by its cache key; a call still "
        "builds the statement and its key. `python -m benchmarks statements` times that, with no "
        "database (the median of alternating batches):",
        "",
        "| statement | built by | statement + cache key |",
        "|---|---|---|",
        *rows,
        "",
        f"Building a keyset page's condition and ORDER BY once, with a bind parameter for the "
        f"cursor, would save {saved:.0f} µs a call: about 1 % of a page read of 1 to 2 ms "
        "(the paths section above), below the noise of one run, so herorepo builds its "
        f"statements per call. A lambda statement would save {lambda_saved:.0f} µs, and it "
        "caches the criteria written in its lambda: a repository's criteria are the caller's "
        "own expressions, which it cannot hold. Of a list's cost, the statement is a few tens "
        "of µs either way; the rows are the rest.",
        "",
    ]


SECTION = Section("statements", render_section)


def add_parser(sub: Any) -> argparse.ArgumentParser:
    return SECTION.add_parser(sub, help="time building statements, cached and not", seed=1)


def _measure(_args: argparse.Namespace, _urls: dict[str, str]) -> dict[str, Any]:
    return {"statements": measure(), "backends": {}}


def main(args: argparse.Namespace) -> int:
    return SECTION.main(args, _measure)
