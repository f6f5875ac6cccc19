"""Turn results into docs/benchmarks.md (tables, targets) and docs/benchmarks.png (the chart).

The page ends with the policies', the telemetry, the bulk, the paths and the statements
sections, rendered by :mod:`.policies`, :mod:`.telemetry`, :mod:`.bulk`, :mod:`.paths` and
:mod:`.statements` from their stored results.
The chart's upper panels are the main run's ratios; its lower panels, when
benchmarks/results/paths.json exists, the documented paths' (:func:`write_chart`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from . import bulk, paths, policies, statements, telemetry
from .contenders import ORDER
from .contenders.base import MIN_AGE, PAGE_SIZE
from .environment import BACKEND_NAMES, BACKENDS, DRIVERS
from .runner import NOISY
from .sections import RESULTS_DIR, paired

RUN_RESULTS = RESULTS_DIR / "run.json"
"""The results of the main run that last wrote the page, for ``render`` and the chart."""

LABELS = {
    "raw": "raw driver",
    "raw_copy": "asyncpg COPY",
    "core": "SQLAlchemy Core",
    "sqlmodel": "SQLModel AsyncSession",
    "herorepo": "herorepo",
    "advanced_alchemy": "advanced-alchemy",
    "fastcrud": "fastcrud",
}
TIMES = "\u00d7"  # the multiplication sign, as in "1.05 times"
DASH = "\u2013"  # an en dash: no value

COLUMNS = [key for key in ORDER if key != "raw_copy"]
RATIO_COLUMNS = [key for key in COLUMNS if key != "raw"]
COLORS = {
    "raw": "#7f7f7f",
    "core": "#1f77b4",
    "herorepo": "#d62728",
    "advanced_alchemy": "#2ca02c",
    "fastcrud": "#9467bd",
}


def fmt_time(seconds: float) -> str:
    if seconds < 0.001:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 0.01:
        return f"{seconds * 1e3:.2f} ms"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def _ratio(value: float) -> str:
    return f"{value:.2f}{TIMES}" if value < 10 else f"{value:.0f}{TIMES}"


def _median(workload: dict[str, Any], key: str) -> float | None:
    result = workload["results"].get(key)
    return result.get("median") if result else None


def _short(workload: dict[str, Any]) -> str:
    return str(workload.get("short") or workload["label"])


def _cell_time(result: dict[str, Any] | None) -> str:
    if not result or result.get("unsupported"):
        return "n/a"
    flag = " †" if result["noisy"] else ""
    begins = " + BEGIN" if result.get("begins") else ""
    return f"{fmt_time(result['median'])}{flag} · {result['statements']}{begins}"


def _cell_ratio(workload: dict[str, Any], key: str) -> str:
    mine = _median(workload, key)
    if mine is None:
        return "n/a"
    idiom = _median(workload, "sqlmodel")
    raw = _median(workload, "raw")
    left = _ratio(mine / idiom) if idiom else f"{DASH}"
    right = _ratio(mine / raw) if raw else f"{DASH}"
    if key == "herorepo" and idiom and mine / idiom > 1.05:
        left = f"**{left}**"
    return f"{left} / {right}"


def _time_table(backend: dict[str, Any]) -> list[str]:
    lines = [
        "| workload | " + " | ".join(LABELS[k] for k in COLUMNS) + " |",
        "|---|" + "---:|" * len(COLUMNS),
    ]
    for key, workload in backend["workloads"].items():
        cells = [_cell_time(workload["results"].get(c)) for c in COLUMNS]
        lines.append(f"| {workload['label']} | " + " | ".join(cells) + " |")
        copy = workload["results"].get("raw_copy")
        if key == "bulk_insert" and copy and not copy.get("unsupported"):
            cells = [_cell_time(copy)] + ["" for _ in COLUMNS[1:]]
            lines.append(f"| {workload['label']}, asyncpg COPY | " + " | ".join(cells) + " |")
    return lines


def _ratio_table(backend: dict[str, Any]) -> list[str]:
    lines = [
        "| workload | " + " | ".join(LABELS[k] for k in RATIO_COLUMNS) + " |",
        "|---|" + "---:|" * len(RATIO_COLUMNS),
    ]
    for workload in backend["workloads"].values():
        cells = [_cell_ratio(workload, c) for c in RATIO_COLUMNS]
        lines.append(f"| {workload['label']} | " + " | ".join(cells) + " |")
    return lines


def _stream_table(backend: dict[str, Any], sizes: dict[str, Any]) -> list[str]:
    workload = backend["workloads"].get("stream")
    memory = backend.get("memory", {})
    if not workload:
        return []
    lines = [
        f"| contender | time | rows/s | {TIMES} SQLModel | peak heap growth, "
        f"{sizes['stream_rows'] // 5:,} rows | peak heap growth, {sizes['stream_rows']:,} rows |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    idiom = _median(workload, "sqlmodel")
    for key in COLUMNS:
        median = _median(workload, key)
        if median is None:
            continue
        mem = memory.get(key, {})
        lines.append(
            f"| {LABELS[key]} | {fmt_time(median)} | {sizes['stream_rows'] / median:,.0f} | "
            f"{_ratio(median / idiom) if idiom else '{DASH}'} | "
            f"{mem.get('small_peak_bytes', 0) / 1e6:.2f} MB | "
            f"{mem.get('peak_bytes', 0) / 1e6:.2f} MB |"
        )
    return lines


def _pages_table(backend: dict[str, Any]) -> list[str]:
    first = backend["workloads"].get("keyset_first")
    deep = backend["workloads"].get("keyset_deep")
    offset = backend["workloads"].get("offset_deep")
    if not (first and deep and offset):
        return []
    lines = [
        "| contender | page 1 | keyset page N | keyset N / page 1 | offset page N | "
        "offset N / page 1 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key in COLUMNS:
        one, keyset, skip = (_median(w, key) for w in (first, deep, offset))
        if one is None or keyset is None or skip is None:
            continue
        lines.append(
            f"| {LABELS[key]} | {fmt_time(one)} | {fmt_time(keyset)} | {_ratio(keyset / one)} | "
            f"{fmt_time(skip)} | {_ratio(skip / one)} |"
        )
    return lines


# --- targets -------------------------------------------------------------------------------------


TARGETS_INTRO = (
    "What herorepo aims for, and whether this run met each aim on each backend; "
    '"Misses, and why" below explains every miss.'
)


def _targets(results: dict[str, Any]) -> list[str]:
    backends = [b for b in BACKENDS if b in results["backends"]]
    rows: list[tuple[str, list[str]]] = []

    def per_backend(name: str, check: Any) -> None:
        rows.append((name, [check(results["backends"][b], b) for b in backends]))

    def overhead(backend: dict[str, Any], _: str) -> str:
        worst = []
        for workload in backend["workloads"].values():
            mine, idiom = _median(workload, "herorepo"), _median(workload, "sqlmodel")
            if mine and idiom and mine / idiom > 1.05:
                noisy = workload["results"]["herorepo"]["noisy"]
                worst.append(f"{_short(workload)} {mine / idiom:.2f}{TIMES}{' †' if noisy else ''}")
        return "met" if not worst else "missed: " + "; ".join(worst)

    def statements(backend: dict[str, Any], _: str) -> str:
        more, fewer = [], []
        for workload in backend["workloads"].values():
            mine = workload["results"].get("herorepo", {}).get("statements")
            idiom = workload["results"].get("sqlmodel", {}).get("statements")
            if mine is None or idiom is None:
                continue
            if mine > idiom:
                more.append(f"{_short(workload)} {mine} vs {idiom}")
            elif mine < idiom:
                fewer.append(f"{_short(workload)} {mine} vs {idiom}")
        verdict = "met" if not more else "missed: " + "; ".join(more)
        return verdict + (f" (fewer: {'; '.join(fewer)})" if fewer else "")

    def peers(backend: dict[str, Any], _: str) -> str:
        slower = []
        for workload in backend["workloads"].values():
            mine = _median(workload, "herorepo")
            for peer in ("advanced_alchemy", "fastcrud"):
                theirs = _median(workload, peer)
                if mine and theirs and mine > theirs:
                    slower.append(f"{_short(workload)} {mine / theirs:.2f}{TIMES} {LABELS[peer]}")
        return "met" if not slower else "missed: " + "; ".join(slower)

    def bulk(backend: dict[str, Any], name: str) -> str:
        workload = backend["workloads"].get("bulk_insert")
        if not workload:
            return f"{DASH}"
        mine, core = _median(workload, "herorepo"), _median(workload, "core")
        limit = 1.6 if name == "sqlite" else 1.3
        if not mine or not core:
            return f"{DASH}"
        verdict = "met" if mine / core <= limit else "missed"
        return f"{verdict}: {mine / core:.2f}{TIMES} Core (≤ {limit}{TIMES})"

    def stream(backend: dict[str, Any], _: str) -> str:
        workload = backend["workloads"].get("stream")
        memory = backend.get("memory", {}).get("herorepo")
        if not workload or not memory:
            return f"{DASH}"
        mine, idiom = _median(workload, "herorepo"), _median(workload, "sqlmodel")
        if not mine or not idiom:
            return f"{DASH}"
        per_100k = memory["peak_bytes"] / memory["rows"] * 100_000 / 1e6
        ok = mine / idiom <= 1.1 and per_100k < 5
        return (
            f"{'met' if ok else 'missed'}: {mine / idiom:.2f}{TIMES} partitions(); "
            f"{memory['small_peak_bytes'] / 1e6:.1f} → {memory['peak_bytes'] / 1e6:.1f} MB"
        )

    def keyset(backend: dict[str, Any], _: str) -> str:
        first, deep = (
            backend["workloads"].get("keyset_first"),
            backend["workloads"].get("keyset_deep"),
        )
        if not first or not deep:
            return f"{DASH}"
        one, last = _median(first, "herorepo"), _median(deep, "herorepo")
        if not one or not last:
            return f"{DASH}"
        return f"{'met' if last / one <= 1.5 else 'missed'}: {last / one:.2f}{TIMES} page 1"

    def eager(backend: dict[str, Any], _: str) -> str:
        workload = backend["workloads"].get("teams_with_heroes")
        if not workload:
            return f"{DASH}"
        mine, idiom = _median(workload, "herorepo"), _median(workload, "sqlmodel")
        count = workload["results"]["herorepo"].get("statements")
        if not mine or not idiom:
            return f"{DASH}"
        ok = mine / idiom <= 1.1 and count == 2
        return f"{'met' if ok else 'missed'}: {mine / idiom:.2f}{TIMES}, {count} queries"

    per_backend(f"Every read and write within 1.05{TIMES} of hand-written SQLModel", overhead)
    per_backend("No more SQL statements than hand-written SQLModel", statements)
    per_backend("Faster than advanced-alchemy and fastcrud where they have the API", peers)
    per_backend(f"`add_many` of 10,000 rows within 1.3{TIMES} (1.6{TIMES} SQLite) of Core", bulk)
    per_backend(f"Streaming within 1.1{TIMES} of `partitions()`, < 5 MB per 100,000 rows", stream)
    per_backend(f"Keyset page N within 1.5{TIMES} of page 1", keyset)
    per_backend(f"100 teams with heroes in 2 queries, within 1.1{TIMES} of selectinload", eager)
    lines = [
        "| target | " + " | ".join(BACKEND_NAMES[b] for b in backends) + " |",
        "|---|" + "---|" * len(backends),
    ]
    lines += [f"| {name} | " + " | ".join(cells) + " |" for name, cells in rows]
    imports = results.get("import_time")
    if imports:
        ratio = imports["ratio"]
        verdict = "met" if ratio < 1.5 else "missed"
        lines.append(
            f"| `import herorepo` under 1.5{TIMES} `import sqlmodel` | "
            + " | ".join([f"{verdict}: {ratio:.2f}{TIMES}"] * len(backends))
            + " |"
        )
    return lines


UOW_READ = (
    "herorepo reads in a unit of work, as its docs tell users to: a transaction per call, BEGIN "
    "to COMMIT, with the unit of work's enter and exit steps, where the idiom's session sends "
    "the SELECT alone and gives the connection back with a rollback"
)
WHY_SLOWER = {
    "get_by_pk": UOW_READ + "; the SELECT is the same",
    "list_page": UOW_READ + "; the SELECT is the same (`ORDER BY name` alone: `name` is unique, "
    "so herorepo adds no key to the sort)",
    "teams_with_heroes": UOW_READ + "; the two SELECTs are the same",
    "offset_deep": UOW_READ + "; the SELECT is the same",
    "stream": UOW_READ + "; and `stream()` reads in keyset batches, one SELECT each",
    "keyset_first": UOW_READ + "; and a keyset page reads one row more than the page, to know "
    "whether another follows, and encodes a signed cursor for it",
    "keyset_deep": UOW_READ + "; and a keyset page decodes and checks the signed cursor, reads "
    "one row more than the page, and encodes the next cursor",
}
WHY_SLOWER_DEFAULT = (
    "the same statements as the idiom; what remains is herorepo's own Python per call "
    "(argument checks, building the statement, the error guard), tens of µs"
)


def _misses(results: dict[str, Any]) -> list[str]:
    """Say, for each target this run missed, by how much and why (generated, like the tables)."""
    backends = [b for b in BACKENDS if b in results["backends"]]
    lines: list[str] = []
    slower: dict[str, list[str]] = {}
    for b in backends:
        for key, workload in results["backends"][b]["workloads"].items():
            mine, idiom = _median(workload, "herorepo"), _median(workload, "sqlmodel")
            if key == "bulk_insert" or not mine or not idiom or mine / idiom <= 1.05:
                continue
            noisy = " †" if workload["results"]["herorepo"]["noisy"] else ""
            slower.setdefault(key, []).append(
                f"{BACKEND_NAMES[b]} {mine / idiom:.2f}{TIMES}{noisy}"
            )
    for key, cells in slower.items():
        label = _short(next(results["backends"][b]["workloads"][key] for b in backends))
        why = WHY_SLOWER.get(key, WHY_SLOWER_DEFAULT)
        lines.append(f"- **{label}** above 1.05{TIMES} the idiom ({'; '.join(cells)}): {why}.")
    more = [
        b
        for b in backends
        if (s := results["backends"][b]["workloads"].get("stream"))
        and s["results"].get("herorepo", {}).get("statements", 0)
        > s["results"].get("sqlmodel", {}).get("statements", 0)
    ]
    if more:
        lines.append(
            "- **Statements, stream**: `stream()` sends one keyset SELECT per 1,000 rows where "
            "`partitions()` keeps one server-side cursor open. By design: no cursor stays open "
            "between batches, so leaving the loop early holds nothing on the server. Its time "
            "and memory still meet their target (table above)."
        )
    bulk_cells = []
    for b in backends:
        workload = results["backends"][b]["workloads"].get("bulk_insert")
        if not workload:
            continue
        mine, core = _median(workload, "herorepo"), _median(workload, "core")
        idiom = _median(workload, "sqlmodel")
        limit = 1.6 if b == "sqlite" else 1.3
        if mine and core and idiom and mine / core > limit:
            bulk_cells.append(
                f"{BACKEND_NAMES[b]} {mine / core:.1f}{TIMES} Core, "
                f"{idiom / mine:.1f}{TIMES} faster than the idiom"
            )
    if bulk_cells:
        lines.append(
            f"- **`add_many` against Core** ({'; '.join(bulk_cells)}): `add_many` returns "
            "complete objects in the session, with keys and server defaults; Core's "
            "executemany returns nothing. herorepo validates the list in one pass and sends "
            "one `INSERT ... RETURNING` (the whole difference to the idiom), but building "
            "10,000 ORM objects from the returned rows (SQLAlchemy's loading and SQLModel's "
            "`__new__`, 10 to 20 µs an object) costs more than Core's whole insert. The target "
            "cannot be met while `add_many` returns objects; the profile "
            "(`python -m benchmarks profile`) times each step."
        )
    peers: list[str] = []
    for b in backends:
        for workload in results["backends"][b]["workloads"].values():
            mine = _median(workload, "herorepo")
            for peer in ("advanced_alchemy", "fastcrud"):
                theirs = _median(workload, peer)
                if mine and theirs and mine > theirs:
                    peers.append(
                        f"{BACKEND_NAMES[b]} {_short(workload)} "
                        f"{mine / theirs:.2f}{TIMES} {LABELS[peer]}"
                    )
    if peers:
        lines.append(
            f"- **Slower than a peer** ({'; '.join(peers)}): both send the same statements "
            "there (see the tables); the gap is herorepo's per-call Python named above, and "
            "gaps of a few percent are within this shared machine's noise (compare the † marks)."
        )
    if not lines:
        return []
    return ["### Misses, and why", "", *lines, ""]


# --- the page ------------------------------------------------------------------------------------


INTRO = """\
# Benchmarks

What each data-access layer costs per operation, measured side by side in one process on the
same data: the raw driver with hand-written SQL, SQLAlchemy Core, hand-written SQLModel
`AsyncSession` code (as in SQLModel's async reference), herorepo, advanced-alchemy's repository
and fastcrud. The program in `benchmarks/` writes this page and its chart; rerun it rather than
editing them:

```bash
python -m pip install nox && nox -s bench
```

It takes a lock (`/tmp/herorepo-bench.lock`) so that two runs never overlap, creates its own
`bench_*` tables and drops them at the end; test runs use databases of their own, but they still
load the machine, so benchmark on a quiet one. `nox -s bench -- --backends sqlite` runs one
backend, `nox -s bench -- --help` lists the options, and `python -m benchmarks profile --backend
postgres` profiles herorepo's get and create and splits its overhead into engine defaults, unit
of work and repository.
"""

METHOD = """\
## Method

- Data: {teams} teams; {heroes:,} heroes (unique names, an index on age), {in_teams:,} of them
  in a team ({per_team} each), enough rows for the query plans to matter; a large table of
  {large_rows:,} rows for pages and streaming; bulk inserts of {bulk_rows:,} rows into an empty
  table. Statistics are gathered (`ANALYZE`) after loading.
- Each op is a whole request: take a session or connection, run the statements, commit where
  the workload writes, give the connection back. herorepo runs every op, reads included, in
  `db.unit_of_work()` with `uow.repository(Model)`, as its README and guide tell users to: a
  read is a transaction, BEGIN to COMMIT. The others read in a session or on a connection
  without a transaction block, as their documentation shows.
- The list is written as a person writes it, the same for every contender: heroes aged
  {min_age} or more, `ORDER BY name` alone, {page_size} rows. `name` is unique, so the order is
  total, and herorepo adds no primary-key tie-breaker to it.
- Contenders as their documentation shows them: the raw drivers on their own pools (aiosqlite
  on one connection), `RETURNING` for the inserted row; Core and SQLModel on a plain
  `create_async_engine(url)`; herorepo on `Database(url)` with its defaults (on PostgreSQL and
  MariaDB a pre-ping that checks the socket and pings only connections idle over 10 s; on
  SQLite `BEGIN IMMEDIATE` for units of work, `BEGIN` before a session's first write);
  advanced-alchemy with its defaults (`auto_refresh=True`) and `auto_commit=True`; fastcrud with
  its defaults (it commits, and returns dicts).
- Before timing, one op per contender is checked: reads must return the same rows as every
  other contender, writes must leave the expected rows. Its SQL statements are counted then
  (SQLAlchemy's `before_cursor_execute`; the raw contenders count their execute calls).
  `BEGIN` and `COMMIT` are not counted: most drivers send them outside the cursor. A bulk
  insert counts one statement per batch sent; herorepo's `stream()` reads in keyset batches
  of 1,000 rows, one SELECT each, by design (no server cursor stays open).
- Then a warm-up batch, then rounds: in each round every contender runs one batch of the same
  ops, in a shuffled order. A sample is a batch's time divided by its ops; cells show the
  median over the rounds. † marks a noisy cell (interquartile range over {noisy:.0%} of the
  median): read its ratios loosely.
- Ratios are against hand-written SQLModel code (the idiom herorepo replaces) and the raw
  driver (the floor). "n/a": the library has no API for the workload (advanced-alchemy and
  fastcrud cannot stream; fastcrud has no bulk insert).
- Pages are {page_size} rows; page N is the last page of the large table (offset
  {deep_offset:,}); each contender's keyset cursor is made before timing.
- Stream memory is the peak growth of the Python heap (tracemalloc) during one walk, in a
  separate untimed pass; time and rows/s come from the timed rounds.
- End-to-end FastAPI requests (`GET` one hero, `GET` 100 heroes: a whole HTTP request in
  process through `httpx.ASGITransport`, herorepo's FastAPI integration against the same app
  hand-written on SQLModel's `AsyncSession`) are timed with the documented paths, in their
  section at the end of this page, and drawn in the chart's lower panels.
"""


def _header(results: dict[str, Any], chart: Path) -> list[str]:
    meta = results["meta"]
    m, v, sizes = meta["machine"], meta["versions"], meta["sizes"]
    servers = ", ".join(
        f"{BACKEND_NAMES[b]} {results['backends'][b]['server']}"
        for b in BACKENDS
        if b in results["backends"]
    )
    packages = ", ".join(f"{name} {version}" for name, version in v.items())
    method = METHOD.format(
        in_teams=sizes["teams"] * sizes["heroes_per_team"],
        per_team=sizes["heroes_per_team"],
        noisy=NOISY,
        page_size=PAGE_SIZE,
        min_age=MIN_AGE,
        **sizes,
    )
    return [
        INTRO,
        f"Last run: {meta['date']}, `{meta['command']}`, {meta['seconds'] / 60:.1f} minutes.",
        "",
        f"![Time per operation relative to hand-written SQLModel code]({chart.name})",
        "",
        "## Machine and versions",
        "",
        f"- {m['cpu']}, {m['cores']} cores, {m['memory']}, {m['os']}; shared with other work,",
        "  so compare ratios within one run: absolute times drift between runs.",
        f"- Python {m['python']}; {packages}.",
        f"- herorepo from {meta.get('herorepo_source', 'an unknown commit')}.",
        f"- Servers, local on the same machine: {servers}.",
        "",
        method,
    ]


def _backend_section(name: str, backend: dict[str, Any], results: dict[str, Any]) -> list[str]:
    sizes = results["meta"]["sizes"]
    title = f"{BACKEND_NAMES[name]} {backend['server']} ({DRIVERS[name]})"
    section = [
        f"## {title}",
        "",
        "Median time per operation · SQL statements per operation (+ BEGIN: the contender also",
        "sends `BEGIN` through the cursor itself, one more driver call; the others' drivers begin",
        "implicitly or outside the cursor):",
        "",
        *_time_table(backend),
        "",
        f"Ratios: {TIMES} hand-written SQLModel / {TIMES} raw driver "
        f"(herorepo above 1.05{TIMES} in bold):",
        "",
        *_ratio_table(backend),
        "",
    ]
    pages = _pages_table(backend)
    if pages:
        section += ["Keyset against offset pagination:", "", *pages, ""]
    stream = _stream_table(backend, sizes)
    if stream:
        section += [f"Streaming {sizes['stream_rows']:,} rows:", "", *stream, ""]
    if backend.get("problems"):
        section += ["Checks that failed in this run:", ""]
        section += [f"- {problem}" for problem in backend["problems"]] + [""]
    return section


def _import_section(imports: dict[str, Any] | None) -> list[str]:
    if not imports:
        return []
    med = imports["median_us"]
    lines = [
        "## Import time",
        "",
        f"`python -X importtime -c 'import X'`, cumulative time of the top module, median of "
        f"{imports['runs']} fresh interpreters each, alternating:",
        "",
        f"| import | time | {TIMES} sqlmodel |",
        "|---|---:|---:|",
        f"| `import sqlmodel` | {med['sqlmodel'] / 1000:.0f} ms | 1.00{TIMES} |",
        f"| `import herorepo` | {med['herorepo'] / 1000:.0f} ms | {imports['ratio']:.2f}{TIMES} |",
        "",
        f"herorepo adds {imports['extra_modules']} modules to sqlmodel's "
        f"({imports['extra_self_us'] / 1000:.0f} ms of own time); the largest:",
        "",
    ]
    lines += [f"- `{name}` {own / 1000:.1f} ms" for name, own in imports["extra_top"]]
    return [*lines, ""]


# What a second run and the run before issue #14 showed: the page claims no more than reruns
# reproduce (rewrite it after the next pair of runs).
RERUNS = """\
### Reruns, and what got slower

Two full runs on 2026-12-06, on the same code, gave every ratio against the idiom within about 0.1x
of each other, except SQLite get (1.25x and 1.40x), PostgreSQL keyset page N (1.18x and 1.26x) and
PostgreSQL delete (0.85x and 0.95x): read those loosely. Cells near a target flip between runs:
MariaDB get (0.99x, 1.06x), MariaDB keyset page N (1.09x, 1.04x), SQLite eager load (1.08x, 1.01x)
and offset page N (1.02x, 1.07x). The documented-paths section below times the same reads with more
rounds, call by call, and reproduced within 0.04x.

Against the run of 2026-11-25 (before issue #14), writes on PostgreSQL and MariaDB are slower
relative to the idiom (insert 0.65x then, 0.80-0.89x now on PostgreSQL; 0.61x, 0.71-0.72x on
MariaDB; update, delete and the unit of work alike), though still faster than it. That is the round
trip before COMMIT that records what a lost COMMIT's outcome can be asked with (issue #16, [commit
outcome](reliability.md#commit-outcome)): `python -m benchmarks profile --breakdown-only` times a
create at 0.87x the idiom on PostgreSQL and 0.73x on MariaDB with it, 0.68x and 0.58x with
`EngineConfig(commit_outcome=False)`. SQLite records nothing, and its writes got faster (insert
0.86x then, 0.67x now). Reads are not comparable: that run read through `db.session()`.
"""


def write_report(results: dict[str, Any], markdown: Path, chart: Path) -> None:
    lines = _header(results, chart)
    lines += ["", "## herorepo's targets", "", TARGETS_INTRO, "", *_targets(results), ""]
    lines += _misses(results)
    lines += [RERUNS]
    for name in BACKENDS:
        if name in results["backends"]:
            lines += _backend_section(name, results["backends"][name], results)
    lines += _import_section(results.get("import_time"))
    # These sections have runs of their own (python -m benchmarks policies, ... telemetry, ...);
    # the page keeps them, rendered from what those runs stored.
    sections = (policies, telemetry, bulk, paths, statements)
    for section in (module.SECTION for module in sections):
        stored = section.stored()
        if stored and lines[-1] != "":
            lines.append("")  # a blank line before the section's marker
        lines += stored
    markdown.parent.mkdir(parents=True, exist_ok=True)
    markdown.write_text("\n".join(lines).rstrip() + "\n")
    write_chart(results, chart, paths.SECTION.saved())


def redraw_chart(paths_results: dict[str, Any], chart: Path) -> bool:
    """Draw the chart again with new paths results and the stored main run's (False: none)."""
    if not RUN_RESULTS.exists():
        return False
    write_chart(json.loads(RUN_RESULTS.read_text()), chart, paths_results)
    return True


def _path_rows(backend: dict[str, Any]) -> list[tuple[str, float, float]]:
    """``(label, herorepo's time / the other way's, the target as such a ratio)`` for each
    target of the paths ops one backend timed (an older run may lack the newer ops)."""
    rows = []
    for op in paths.OPS:
        timed = backend["ops"].get(op.key)
        if timed is None:
            continue
        for target in op.targets:
            results = timed["results"]
            ratio = paired(results[target.way]["samples"], results[target.base]["samples"])[0]
            limit = 1 / target.most if target.faster else target.most
            rows.append((f"{op.label} vs {paths.LABELS[target.base]}", ratio, limit))
    return rows


def _draw_paths(ax: Any, name: str, rows: list[tuple[str, float, float]], labels: bool) -> None:
    """One backend's documented paths: herorepo's ratio per target, the target as a tick; the
    rows named on the left of the first panel only (every backend has the same rows)."""
    ys = range(len(rows))
    ratios = [ratio for _, ratio, _ in rows]
    ax.barh(ys, ratios, height=0.6, color=COLORS["herorepo"])
    for y, (_, ratio, limit) in enumerate(rows):
        ax.plot([limit, limit], [y - 0.4, y + 0.4], color="black", linewidth=2)
        ax.text(
            max(ratio, limit) * 1.06, y, f"{ratio:.2f}", va="center", fontsize=7,
            color=COLORS["herorepo"],
        )  # fmt: skip
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_xscale("log")
    low = min(0.5, *(min(ratio, limit) * 0.8 for _, ratio, limit in rows))
    high = max(2.0, *(max(ratio, limit) * 1.3 for _, ratio, limit in rows))
    ax.set_xlim(low, high)
    ticks = [t for t in (0.25, 0.5, 0.67, 1, 1.25, 1.5, 2, 3, 4) if low <= t <= high]
    ax.set_xticks(ticks, labels=[f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.set_title(f"{BACKEND_NAMES[name]}: documented paths", fontsize=10)
    ax.set_xlabel("herorepo / the hand-written way (log scale; black ticks: targets)")
    ax.set_yticks(list(ys))
    ax.set_yticklabels([label for label, _, _ in rows] if labels else [], fontsize=9)
    ax.invert_yaxis()
    ax.grid(axis="x", which="both", alpha=0.3)


def write_chart(
    results: dict[str, Any], path: Path, paths_results: dict[str, Any] | None = None
) -> None:
    """The main run's ratios to the idiom, one panel per backend; below them, with
    ``paths_results``, each backend's documented paths against hand-written code."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    backends = [b for b in BACKENDS if b in results["backends"]]
    shown = [k for k in COLUMNS if k != "sqlmodel"]
    timed_paths = paths_results["backends"] if paths_results else {}
    path_rows = {b: _path_rows(timed_paths[b]) for b in backends if b in timed_paths}
    extra = max((len(rows) for rows in path_rows.values()), default=0)
    workloads_count = len(next(iter(results["backends"].values()))["workloads"])
    fig = plt.figure(figsize=(6 * len(backends), 9 + (0.3 * extra + 1.6 if extra else 0)))
    grid = fig.add_gridspec(
        2 if extra else 1,
        len(backends),
        height_ratios=[workloads_count + 2, extra + 2] if extra else [1],
    )
    axes: list[Any] = []
    for column in range(len(backends)):
        first = axes[0] if axes else None
        axes.append(fig.add_subplot(grid[0, column], sharex=first, sharey=first))
    for ax, name in zip(axes, backends, strict=True):
        workloads = list(results["backends"][name]["workloads"].values())
        height = 0.8 / len(shown)
        for i, key in enumerate(shown):
            ys, xs = [], []
            for row, workload in enumerate(workloads):
                mine, idiom = _median(workload, key), _median(workload, "sqlmodel")
                if mine and idiom:
                    ys.append(row - 0.4 + height * (i + 0.5))
                    xs.append(mine / idiom)
            ax.barh(ys, xs, height=height, color=COLORS[key], label=LABELS[key])
            if key == "herorepo":
                for y, x in zip(ys, xs, strict=True):
                    ax.text(
                        x * 1.08, y, f"{x:.2f}", va="center", fontsize=7, color=COLORS[key],
                        bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.3},
                    )  # fmt: skip
        ax.axvline(1.0, color="black", linewidth=1)
        ax.axvline(1.05, color="black", linewidth=0.8, linestyle="--")
        ax.set_xscale("log")
        ax.set_title(f"{BACKEND_NAMES[name]} ({DRIVERS[name]})")
        ax.set_xlabel(f"time per op / hand-written SQLModel (log scale; dashed: 1.05{TIMES})")
        ax.set_yticks(range(len(workloads)))
        ax.set_yticklabels([w["label"] for w in workloads])
        if ax is axes[0]:
            ax.invert_yaxis()  # shared: once for the row
        else:
            ax.tick_params(labelleft=False)
        ax.grid(axis="x", which="both", alpha=0.3)
    for column, name in enumerate(backends):
        if name in path_rows:
            _draw_paths(fig.add_subplot(grid[1, column]), name, path_rows[name], column == 0)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(
        handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.975), ncol=len(shown),
        frameon=False,
    )  # fmt: skip
    fig.suptitle(
        "Time per operation relative to hand-written SQLModel AsyncSession code "
        "(1 = the idiom; herorepo's ratio printed)"
    )
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(path, dpi=90)
    plt.close(fig)
