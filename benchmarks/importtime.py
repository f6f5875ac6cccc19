"""Import time of ``import herorepo`` against ``import sqlmodel``, each in a fresh interpreter.

Each sample is one ``python -X importtime -c "import X"`` subprocess; the sample is the cumulative
microseconds CPython reports for the top-level module, which leaves interpreter start-up out.
The two imports alternate, so drift on the machine hits both; a first, untimed import of each
writes the bytecode the timed ones load, as an installed package has it. herorepo imports
sqlmodel, so the ratio is (sqlmodel + what herorepo adds) / sqlmodel. The modules herorepo adds
are listed by their own (self) time, the largest first.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from typing import Any

MODULES = ("sqlmodel", "herorepo")

# Measure imports as users get them, from bytecode: the untimed first import writes it, even
# where the caller's environment says not to (as CI shells often do).
_ENV = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}


def _importtime(module: str) -> dict[str, tuple[int, int]]:
    """``{module: (self_us, cumulative_us)}`` for one fresh ``import module``."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        check=True,
        env=_ENV,
    )
    times: dict[str, tuple[int, int]] = {}
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        own, cumulative, name = (part.strip() for part in line[len("import time:") :].split("|"))
        times[name.strip()] = (int(own), int(cumulative))
    return times


def measure(runs: int = 9) -> dict[str, Any]:
    samples: dict[str, list[int]] = {module: [] for module in MODULES}
    last: dict[str, dict[str, tuple[int, int]]] = {}
    for module in MODULES:  # warm the file system cache; not counted
        _importtime(module)
    for _ in range(runs):
        for module in MODULES:
            times = _importtime(module)
            samples[module].append(times[module][1])
            last[module] = times
    medians = {module: statistics.median(values) for module, values in samples.items()}
    extra = {
        name: own
        for name, (own, _) in last["herorepo"].items()
        if name not in last["sqlmodel"] and name != "herorepo"
    }
    top = sorted(extra.items(), key=lambda item: -item[1])[:12]
    return {
        "runs": runs,
        "median_us": medians,
        "samples_us": samples,
        "ratio": medians["herorepo"] / medians["sqlmodel"],
        "extra_modules": len(extra),
        "extra_top": top,
        "extra_self_us": sum(extra.values()),
    }


if __name__ == "__main__":
    result = measure()
    print(result["median_us"], f"ratio {result['ratio']:.2f}")
    for name, own in result["extra_top"]:
        print(f"{own:>8} us  {name}")
