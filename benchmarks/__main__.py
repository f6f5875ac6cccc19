"""The benchmark program: ``python -m benchmarks [run|render|profile|...|bulk]``.

``run`` (the default) sets up the bench tables on each backend, times every contender on every
workload, measures import time, and writes docs/benchmarks.md, docs/benchmarks.png and
benchmarks/results/run.json. ``render`` rewrites the page and the chart from saved JSON results
(benchmarks/results/run.json by default). ``profile`` profiles herorepo's
get-by-primary-key and create. ``policies`` times the tenant, soft-delete and audit policies
against the same calls with the filters written by hand, and rewrites the policies section of
docs/benchmarks.md (which ``run`` and ``render`` keep, from benchmarks/results/policies.json).
``telemetry`` times ``Telemetry`` off, with the API only and with the SDK against no telemetry,
and rewrites its section the same way (from benchmarks/results/telemetry.json); ``bulk`` times
``insert_rows()`` against hand-written Core executemany (benchmarks/results/bulk.json); ``paths``
times the documented reads (unit of work, projections, keyset) and FastAPI requests against
hand-written SQLModel and Core (benchmarks/results/paths.json), and redraws the chart, whose
lower panels show its ratios, from benchmarks/results/run.json.
Run it through ``nox -s bench`` (see noxfile.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import bulk, environment, importtime, paths, policies, statements, telemetry
from .contenders import Env
from .data import Sizes
from .report import RUN_RESULTS, redraw_chart, write_report
from .runner import run_backend
from .sections import MARKDOWN

ROOT = Path(__file__).resolve().parent.parent


def _log(message: str) -> None:
    print(message, flush=True)


def _split(value: str | None) -> set[str] | None:
    return {part.strip() for part in value.split(",") if part.strip()} if value else None


async def _run_backends(args: argparse.Namespace, sizes: Sizes) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="herorepo-bench-") as sqlite_dir:
        for backend in args.backends.split(","):
            url, sqlite_path = environment.backend_url(backend, sqlite_dir)
            env = Env(backend=backend, url=url, sqlite_path=sqlite_path)
            results[backend] = await run_backend(
                env,
                sizes,
                only=_split(args.contenders),
                selected=_split(args.workloads),
                scale=args.scale,
                log=_log,
            )
            _log(f"[{backend}] done in {results[backend]['seconds']:.0f}s")
    return results


def run(args: argparse.Namespace) -> int:
    environment.take_run_lock(_log)
    started = time.perf_counter()
    sizes = Sizes(heroes=args.heroes, large_rows=args.large_rows, stream_rows=args.stream_rows)
    backends = asyncio.run(_run_backends(args, sizes))
    imports = None
    if not args.skip_import_time:
        _log("import time: measuring")
        imports = importtime.measure()
        _log(f"import time: herorepo / sqlmodel = {imports['ratio']:.2f}")
    results = {
        "meta": {
            "command": args.command_line,
            "machine": environment.machine(),
            "versions": environment.versions(),
            "herorepo_source": environment.herorepo_source(),
            "sizes": sizes.__dict__ | {"deep_offset": sizes.deep_offset},
            "scale": args.scale,
            "date": time.strftime("%Y-%m-%d"),
            "seconds": time.perf_counter() - started,
        },
        "backends": backends,
        "import_time": imports,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
        _log(f"results saved to {args.json}")
    if not args.no_report:
        write_report(results, Path(args.markdown), Path(args.chart))
        _log(f"wrote {args.markdown} and {args.chart}")
        if Path(args.markdown) == MARKDOWN:
            # What the page shows, kept: `render` and `paths` redraw the chart from it.
            RUN_RESULTS.write_text(json.dumps(results, indent=1) + "\n")
            _log(f"results saved to {RUN_RESULTS}")
    problems = [p for b in backends.values() for p in b["problems"]]
    for problem in problems:
        _log(f"CHECK FAILED: {problem}")
    _log(f"total {time.perf_counter() - started:.0f}s")
    return 1 if problems else 0


def render(args: argparse.Namespace) -> int:
    """Merge saved results (one file per backend, or one for all) and write the report."""
    merged: dict[str, Any] = {}
    for path in args.inputs or [RUN_RESULTS]:
        data = json.loads(Path(path).read_text())
        if not merged:
            merged = data
        else:
            merged["backends"].update(data["backends"])
            merged["import_time"] = data.get("import_time") or merged.get("import_time")
            merged["meta"]["seconds"] += data["meta"]["seconds"]
    write_report(merged, Path(args.markdown), Path(args.chart))
    _log(f"wrote {args.markdown} and {args.chart}")
    return 0


OUTPUT_OPTIONS = {"--json", "--markdown", "--chart"}
"""Options that only say where results go: left out of the command the report shows."""


def _command_line(argv: list[str]) -> str:
    """The ``nox -s bench`` command that reproduces this run's numbers."""
    shown: list[str] = [] if argv[0] == "run" else [argv[0]]
    skip = False
    for arg in argv[1:]:  # argv[0] is the subcommand, "run" by default
        if skip:
            skip = False
        elif arg in OUTPUT_OPTIONS:
            skip = True
        elif arg.split("=", 1)[0] not in OUTPUT_OPTIONS:
            shown.append(arg)
    return "nox -s bench" + (" -- " + " ".join(shown) if shown else "")


def _redraw_chart(args: argparse.Namespace) -> None:
    """After ``paths``: the chart next to the page, with the paths' new ratios in its lower
    panels and the main run's from its stored results."""
    chart = Path(args.markdown).with_suffix(".png")
    paths_results = json.loads(Path(args.render or args.json).read_text())
    if redraw_chart(paths_results, chart):
        _log(f"redrew {chart}")
    else:
        _log(f"{chart} not redrawn: no {RUN_RESULTS} (the next `nox -s bench` draws it)")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    sub = parser.add_subparsers(dest="what")
    run_parser = sub.add_parser("run", help="run the suite and write the report (default)")
    run_parser.add_argument("--backends", default=",".join(environment.BACKENDS))
    run_parser.add_argument("--contenders", help="comma-separated keys (default: all)")
    run_parser.add_argument("--workloads", help="comma-separated keys (default: all)")
    run_parser.add_argument("--scale", type=float, default=1.0, help="ops and rounds factor")
    run_parser.add_argument("--heroes", type=int, default=Sizes.heroes, help="hero rows")
    run_parser.add_argument("--large-rows", type=int, default=Sizes.large_rows)
    run_parser.add_argument("--stream-rows", type=int, default=Sizes.stream_rows)
    run_parser.add_argument("--json", help="also save the raw results here")
    run_parser.add_argument("--no-report", action="store_true", help="do not write docs/")
    run_parser.add_argument("--skip-import-time", action="store_true")
    render_parser = sub.add_parser("render", help="write the report from saved JSON results")
    render_parser.add_argument("inputs", nargs="*", help=f"default: {RUN_RESULTS}")
    for p in (run_parser, render_parser):
        p.add_argument("--markdown", default=str(MARKDOWN))
        p.add_argument("--chart", default=str(ROOT / "docs" / "benchmarks.png"))
    profile_parser = sub.add_parser("profile", help="profile herorepo's get and create")
    profile_parser.add_argument("--backend", default="sqlite", choices=environment.BACKENDS)
    profile_parser.add_argument("--ops", type=int, default=2000)
    profile_parser.add_argument("--out", default=None, help="directory for the HTML profiles")
    profile_parser.add_argument("--breakdown-only", action="store_true", help="skip pyinstrument")
    sub.add_parser("importtime", help="measure import herorepo against import sqlmodel")
    policies.add_parser(sub)
    telemetry.add_parser(sub)
    bulk.add_parser(sub)
    paths.add_parser(sub)
    statements.add_parser(sub)
    commands = {
        "run",
        "render",
        "profile",
        "importtime",
        "policies",
        "telemetry",
        "bulk",
        "paths",
        "statements",
    }
    commands |= {"-h", "--help"}
    if not argv or argv[0] not in commands:
        argv = ["run", *argv]
    args = parser.parse_args(argv)
    args.command_line = _command_line(argv)
    if args.what == "render":
        return render(args)
    if args.what == "profile":
        from .profile import main as profile_main

        environment.take_run_lock(_log)
        return profile_main(args)
    if args.what == "policies":
        return policies.main(args)
    if args.what == "telemetry":
        return telemetry.main(args)
    if args.what == "bulk":
        return bulk.main(args)
    if args.what == "paths":
        status = paths.main(args)
        if not args.no_report:
            _redraw_chart(args)
        return status
    if args.what == "statements":
        return statements.main(args)
    if args.what == "importtime":
        result = importtime.measure()
        print(json.dumps(result, indent=1))
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
