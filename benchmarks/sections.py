"""What the benchmarks with a section of their own in docs/benchmarks.md share.

``python -m benchmarks policies`` and ``python -m benchmarks telemetry`` each time their own
ways of making the same calls, save ``benchmarks/results/<name>.json`` and rewrite their
section of the page between its markers (``nox -s bench`` puts the section back from that file
when it rewrites the page). A :class:`Section` holds that command: its options, the run lock,
the timing, the saved JSON and the section; the module that uses it keeps its workloads, what
it measures and how its tables render. Also here: what both measure and render with.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import text

from herorepo import Database

from . import environment
from .environment import BACKEND_NAMES, BACKENDS, DRIVERS

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
MARKDOWN = ROOT / "docs" / "benchmarks.md"

TIMES = "\u00d7"
DASH = "\u2013"

Measure = Callable[[argparse.Namespace, dict[str, str]], dict[str, Any]]
RunBackend = Callable[[str, str, float, int, Callable[[str], None]], Awaitable[dict[str, Any]]]


def each_backend(run_backend: RunBackend) -> Measure:
    """A :data:`Measure` that runs ``run_backend(backend, url, scale, seed, log)`` on each
    backend in turn and keeps what each returns under ``"backends"``."""

    def measure(args: argparse.Namespace, urls: dict[str, str]) -> dict[str, Any]:
        async def run_all() -> dict[str, Any]:
            return {
                backend: await run_backend(backend, url, args.scale, args.seed, log)
                for backend, url in urls.items()
            }

        return {"backends": asyncio.run(run_all())}

    return measure


"""``(args, urls)``: the results of a run on the backends' URLs, without the run's ``meta``."""


def log(message: str) -> None:
    print(message, flush=True)


# --- measuring -----------------------------------------------------------------------------------


def paired(mine: Sequence[float], base: Sequence[float]) -> tuple[float, float, float]:
    """The median of the rounds' ratios ``mine / base``, and its interquartile range.

    Both ran in the same rounds, op by op in turn, so a round's ratio cancels the drift of a
    shared machine that the two medians alone would keep.
    """
    ratios = [a / b for a, b in zip(mine, base, strict=True)]
    q1, median, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
    return median, q1, q3


async def interleaved(
    ways: Sequence[Any], method: str, steps: Sequence[Sequence[tuple[Any, ...]]]
) -> dict[str, float]:
    """One round: each step's arguments go to every way in turn, in the order of ``ways``.

    A step holds the arguments of each place in that order; the result is each way's (by its
    ``key``) mean seconds a call. Interleaved op by op rather than batch by batch: a burst of
    other work on the shared machine then lands on all the ways alike, and the round's ratios
    keep little of it.
    """
    spent = dict.fromkeys((way.key for way in ways), 0.0)
    methods = [(way.key, getattr(way, method)) for way in ways]
    gc.collect()
    for step in steps:
        for (key, call), arg in zip(methods, step, strict=True):
            start = time.perf_counter()
            await call(*arg)
            spent[key] += time.perf_counter() - start
    return {key: total / len(steps) for key, total in spent.items()}


async def server_version(db: Database) -> str:
    """The database server's version, as the section shows it (``16.4``, ``11.4.2``)."""
    query = {
        "postgresql": "SHOW server_version",
        "mysql": "SELECT VERSION()",
        "sqlite": "SELECT sqlite_version()",
    }[db.engine.dialect.name]
    async with db.engine.connect() as conn:
        version = str((await conn.execute(text(query))).scalar_one())
    return version.split(" (")[0].split("-")[0]


# --- rendering -----------------------------------------------------------------------------------


def fmt(seconds: float) -> str:
    return f"{seconds * 1e6:.0f} µs" if seconds < 0.001 else f"{seconds * 1e3:.2f} ms"


def shown_backends(results: dict[str, Any]) -> list[str]:
    """The backends of a run, in the page's order."""
    return [b for b in BACKENDS if b in results["backends"]]


def last_run(results: dict[str, Any]) -> str:
    """``Last run: <date>, `<command>`, <minutes>, herorepo from <commit>; <servers>.``"""
    meta, data = results["meta"], results["backends"]
    servers = ", ".join(
        f"{BACKEND_NAMES[b]} {data[b]['server']} ({DRIVERS[b]})" for b in shown_backends(results)
    )
    return (
        f"Last run: {meta['date']}, `{meta['command']}`, {meta['seconds'] / 60:.1f} minutes, "
        f"herorepo from {meta['herorepo_source']}; {servers}."
    )


def op_sizes(ops: dict[str, Any]) -> str:
    """How many ops a round and how many rounds each op ran."""
    return "; ".join(
        f"{op['label']}: {op['ops']} ops a round, {op['rounds']} rounds" for op in ops.values()
    )


# --- the section and its command -----------------------------------------------------------------


@dataclass(frozen=True)
class Section:
    """A benchmark with a section of its own: ``python -m benchmarks <name>``."""

    name: str
    render: Callable[[dict[str, Any]], list[str]]
    """The section's lines between its markers, from a run's results."""

    @property
    def begin(self) -> str:
        return (
            f"<!-- {self.name}: written by `python -m benchmarks {self.name}`; rerun it, do not "
            "edit -->"
        )

    @property
    def end(self) -> str:
        return f"<!-- /{self.name} -->"

    @property
    def results(self) -> Path:
        return RESULTS_DIR / f"{self.name}.json"

    def lines(self, results: dict[str, Any]) -> list[str]:
        return [self.begin, *self.render(results), self.end]

    def write(self, results: dict[str, Any], markdown: Path) -> None:
        """Put the section in ``markdown`` in place of the old one (at the end if there is none)."""
        section = "\n".join(self.lines(results))
        page = markdown.read_text() if markdown.exists() else ""
        if self.begin in page and self.end in page:
            head, rest = page.split(self.begin, 1)
            page = head + section + rest.split(self.end, 1)[1]
        else:
            page = page.rstrip() + "\n\n" + section + "\n"
        markdown.write_text(page)

    def saved(self) -> dict[str, Any] | None:
        """The stored results of the last run that wrote the page, if any."""
        if not self.results.exists():
            return None
        results: dict[str, Any] = json.loads(self.results.read_text())
        return results

    def stored(self) -> list[str]:
        """The section from the stored results, for the full report (nothing when none stored)."""
        results = self.saved()
        return [] if results is None else self.lines(results)

    def add_parser(self, sub: Any, help: str, seed: int) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = sub.add_parser(self.name, help=help)
        parser.add_argument("--backends", default=",".join(BACKENDS))
        parser.add_argument("--scale", type=float, default=1.0, help="ops and rounds factor")
        parser.add_argument("--seed", type=int, default=seed)
        parser.add_argument("--json", default=str(self.results), help="where the results are saved")
        parser.add_argument("--markdown", default=str(MARKDOWN))
        parser.add_argument("--no-report", action="store_true", help="write neither JSON nor docs/")
        parser.add_argument("--render", metavar="JSON", help="only rewrite the section from JSON")
        return parser

    def main(self, args: argparse.Namespace, measure: Measure) -> int:
        """Run ``measure`` under the run lock, save its results and rewrite the section.

        The results get the run's ``meta`` (what a ``meta`` of ``measure``'s adds to, in its
        place); a backend's ``problems``, if any, are logged and make the exit status 1.
        """
        if args.render:
            self.write(json.loads(Path(args.render).read_text()), Path(args.markdown))
            log(f"wrote the {self.name} section of {args.markdown}")
            return 0
        environment.take_run_lock(log)
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="herorepo-bench-") as sqlite_dir:
            urls = {b: environment.backend_url(b, sqlite_dir)[0] for b in args.backends.split(",")}
            results = measure(args, urls)
        results["meta"] = {
            "command": args.command_line,
            "machine": environment.machine(),
            "versions": environment.versions(),
            "herorepo_source": environment.herorepo_source(),
            "date": time.strftime("%Y-%m-%d"),
            "seconds": time.perf_counter() - started,
            **results.get("meta", {}),
        }
        if not args.no_report:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
            self.write(results, Path(args.markdown))
            log(f"wrote {args.json} and the {self.name} section of {args.markdown}")
        problems = [p for b in results["backends"].values() for p in b.get("problems", [])]
        for problem in problems:
            log(f"CHECK FAILED: {problem}")
        log(f"total {time.perf_counter() - started:.0f}s")
        return 1 if problems else 0
