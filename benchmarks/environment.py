"""Where the benchmark runs: server URLs, the machine, package versions, the run lock."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import IO, Any

DEFAULT_URLS = {
    "postgres": "postgresql+asyncpg://postgres@127.0.0.1:5432/test",
    "mysql": "mysql+aiomysql://root@127.0.0.1:3306/test",
}
ENV_VARS = {"postgres": "HEROREPO_POSTGRES_URL", "mysql": "HEROREPO_MYSQL_URL"}
BACKENDS = ("sqlite", "postgres", "mysql")
BACKEND_NAMES = {"sqlite": "SQLite", "postgres": "PostgreSQL", "mysql": "MariaDB"}
DRIVERS = {"sqlite": "aiosqlite", "postgres": "asyncpg", "mysql": "aiomysql"}
PACKAGES = [
    "herorepo", "sqlalchemy", "sqlmodel", "pydantic", "greenlet", "asyncpg", "aiomysql",
    "pymysql", "aiosqlite", "advanced-alchemy", "fastcrud", "fastapi", "httpx",
]  # fmt: skip
LOCK_PATH = Path(tempfile.gettempdir()) / "herorepo-bench.lock"


def backend_url(backend: str, sqlite_dir: str) -> tuple[str, str | None]:
    """The SQLAlchemy URL for ``backend`` (and the SQLite file's path)."""
    if backend == "sqlite":
        path = str(Path(sqlite_dir) / "bench.sqlite")
        return f"sqlite+aiosqlite:///{path}", path
    return os.environ.get(ENV_VARS[backend], DEFAULT_URLS[backend]), None


def herorepo_source() -> str:
    """The commit the measured herorepo came from, and whether its source had local changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        changed = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "src/herorepo"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown commit"
    return f"commit {commit}" + (" with uncommitted changes in src/herorepo" if changed else "")


def versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    memory = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB"
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": memory,
        "os": platform.platform(),
        "python": sys.version.split()[0],
    }


# --- the run lock --------------------------------------------------------------------------------

_held: IO[str] | None = None


def take_run_lock(log: Any = print) -> float:
    """Take the benchmarks' lock, so that two benchmark runs never share the servers.

    (Test runs work in databases of their own and take no lock; they still add noise, so run
    benchmarks on a quiet machine.) ``flock /tmp/herorepo-bench.lock nox -s bench`` already
    holds it for us: then the holder is
    one of our ancestors and waiting would deadlock, so we go on. Returns the seconds waited.
    """
    global _held
    try:
        import fcntl
    except ImportError:  # not POSIX
        return 0.0
    handle = LOCK_PATH.open("a")
    started = time.perf_counter()
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        if _held_by_ancestor():
            log("benchmarks: the run lock is held by a parent process (flock); going on")
            handle.close()
            return 0.0
        log(f"benchmarks: waiting for the test run that holds {LOCK_PATH}")
        fcntl.flock(handle, fcntl.LOCK_EX)
        log(f"benchmarks: got the lock after {time.perf_counter() - started:.0f}s")
    _held = handle
    return time.perf_counter() - started


def _held_by_ancestor() -> bool:
    try:
        inode = LOCK_PATH.stat().st_ino
        holders = set()
        for line in Path("/proc/locks").read_text().splitlines():
            parts = line.split()
            if len(parts) > 5 and parts[1] == "FLOCK" and parts[5].split(":")[-1] == str(inode):
                holders.add(int(parts[4]))
        pid = os.getppid()
        while pid > 1:
            if pid in holders:
                return True
            stat = Path(f"/proc/{pid}/stat").read_text()
            pid = int(stat.rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return False
    return False
