"""Run every workload on one backend: check, warm up, then time interleaved rounds.

For each workload, each contender first runs one checked op (its result compared with the other
contenders', or the database inspected after a write) while its SQL statements are counted, then
a warm-up batch. Then come the timed rounds: in each round every contender runs one batch of the
same ops, in a shuffled order, so drift on a shared machine spreads over all of them instead of
landing on whoever ran last. A batch's time divided by its ops is one sample; the report takes
the median of the rounds' samples and flags a cell whose interquartile range is large.
"""

from __future__ import annotations

import gc
import random
import statistics
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from .contenders import Contender, Env, contenders_for, supports
from .data import Dataset, Sizes
from .workloads import Workload, workloads

NOISY = 0.15
"""A cell whose IQR is more than this fraction of its median is flagged as noisy."""


def summarize(samples: list[float]) -> dict[str, Any]:
    median = statistics.median(samples)
    if len(samples) >= 4:
        q1, _, q3 = statistics.quantiles(samples, n=4, method="inclusive")
    else:
        q1, q3 = min(samples), max(samples)
    spread = (q3 - q1) / median if median else 0.0
    return {"samples": samples, "median": median, "iqr_ratio": spread, "noisy": spread > NOISY}


async def _time_batch(
    contender: Contender, workload: Workload, args: list[tuple[Any, ...]]
) -> float:
    method = getattr(contender, workload.method)
    gc.collect()
    start = time.perf_counter()
    for arg in args:
        await method(*arg)
    return (time.perf_counter() - start) / len(args)


async def _check(
    ds: Dataset, workload: Workload, active: list[Contender], rng_seed: int
) -> tuple[dict[str, dict[str, int]], list[str]]:
    """Run one op per contender, count its statements, and compare or verify its result."""
    statements: dict[str, int] = {}
    begins: dict[str, int] = {}
    problems: list[str] = []
    expected: Any = None
    expected_from = ""
    for contender in active:
        rng = random.Random(rng_seed)
        args = await workload.make_args(ds, contender, 1, rng)
        before, begun = contender.statements, contender.begins
        result = await getattr(contender, workload.method)(*args[0])
        statements[contender.key] = contender.statements - before
        begins[contender.key] = contender.begins - begun
        if workload.normalize is not None:
            got = workload.normalize(result)
            if expected_from and got != expected:
                problems.append(
                    f"{workload.key}: {contender.key} returned {str(got)[:120]}, but "
                    f"{expected_from} returned {str(expected)[:120]}"
                )
            elif not expected_from:
                expected, expected_from = got, contender.key
        if workload.verify is not None:
            problem = await workload.verify(ds, args[0], result)
            if problem:
                problems.append(f"{workload.key}: {contender.key}: {problem}")
        if workload.after is not None:
            await workload.after(ds)
    return {"statements": statements, "begins": begins}, problems


async def _stream_memory(contender: Contender, rows: int) -> int:
    """Peak Python heap growth (tracemalloc) while ``contender`` streams ``rows`` rows."""
    gc.collect()
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        await contender.stream(rows)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak - baseline


async def run_backend(
    env: Env,
    sizes: Sizes,
    *,
    only: set[str] | None = None,
    selected: set[str] | None = None,
    scale: float = 1.0,
    seed: int = 6,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Set up the bench tables on ``env``, run the workloads, drop the tables; return results."""
    started = time.perf_counter()
    ds = Dataset(env.backend, env.url, sizes, env.sqlite_path)
    log(f"[{env.backend}] creating bench tables ({sizes.large_rows:,} rows in bench_row)")
    await ds.create()
    setup_seconds = time.perf_counter() - started
    out: dict[str, Any] = {
        "server": await ds.server_version(),
        "setup_seconds": setup_seconds,
        "workloads": {},
        "problems": [],
    }
    contenders = contenders_for(env, only)
    for contender in contenders:
        await contender.open()
    rng = random.Random(seed)
    try:
        for workload in workloads(sizes, scale):
            if selected and workload.key not in selected:
                continue
            t0 = time.perf_counter()
            active = [c for c in contenders if supports(c, workload.method)]
            counts, problems = await _check(ds, workload, active, seed)
            out["problems"] += problems
            for contender in active if workload.warmup else ():  # warm-up
                args = await workload.make_args(ds, contender, workload.warmup, rng)
                await _time_batch(contender, workload, args)
                if workload.after is not None:
                    await workload.after(ds)
            samples: dict[str, list[float]] = {c.key: [] for c in active}
            for round_no in range(workload.rounds):
                order = list(active)
                rng.shuffle(order)
                for contender in order:
                    args = await workload.make_args(
                        ds, contender, workload.ops, random.Random(seed * 1000 + round_no)
                    )
                    samples[contender.key].append(await _time_batch(contender, workload, args))
                    if workload.after is not None:
                        await workload.after(ds)
            results: dict[str, Any] = {}
            for contender in contenders:
                if contender in active:
                    results[contender.key] = summarize(samples[contender.key])
                    results[contender.key]["statements"] = counts["statements"][contender.key]
                    results[contender.key]["begins"] = counts["begins"][contender.key]
                else:
                    results[contender.key] = {"unsupported": True}
            out["workloads"][workload.key] = {
                "label": workload.label,
                "short": workload.short,
                "ops": workload.ops,
                "rounds": workload.rounds,
                "results": results,
            }
            medians = ", ".join(
                f"{key} {r['median'] * 1000:.2f}ms" for key, r in results.items() if "median" in r
            )
            log(f"[{env.backend}] {workload.key} ({time.perf_counter() - t0:.0f}s): {medians}")
            for problem in problems:
                log(f"[{env.backend}] CHECK FAILED {problem}")
        if not selected or "stream" in selected:
            out["memory"] = await _memory(contenders, sizes, log, env.backend)
    finally:
        for contender in contenders:
            await contender.close()
        await ds.drop()
    out["seconds"] = time.perf_counter() - started
    return out


async def _memory(
    contenders: list[Contender], sizes: Sizes, log: Callable[[str], None], backend: str
) -> dict[str, Any]:
    memory: dict[str, Any] = {}
    small = max(1, sizes.stream_rows // 5)
    for contender in contenders:
        if not supports(contender, "stream"):
            continue
        full = await _stream_memory(contender, sizes.stream_rows)
        part = await _stream_memory(contender, small)
        memory[contender.key] = {
            "rows": sizes.stream_rows,
            "peak_bytes": full,
            "small_rows": small,
            "small_peak_bytes": part,
        }
        log(
            f"[{backend}] stream memory {contender.key}: {part / 1e6:.2f} MB at {small:,} rows, "
            f"{full / 1e6:.2f} MB at {sizes.stream_rows:,}"
        )
    return memory
