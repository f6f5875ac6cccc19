"""Developer tasks. `nox -s tests` runs the suite, `nox -s demo` the demo; CI runs `.ci/run`."""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True

PYPROJECT = nox.project.load_toml("pyproject.toml")
PYTHONS = ["3.10", "3.11", "3.12", "3.13"]


def _install(session: nox.Session, *groups: str, extras: str = "all") -> None:
    session.install("-e", f".[{extras}]")
    for group in groups:
        session.install(*nox.project.dependency_groups(PYPROJECT, group))


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite on every backend that is reachable (SQLite always)."""
    _install(session, "test")
    session.run("pytest", *session.posargs, env={"PYTHONDONTWRITEBYTECODE": "1"})


@nox.session(python=PYTHONS)
def tests_all_pythons(session: nox.Session) -> None:
    """Run the suite on each supported interpreter found on this machine."""
    _install(session, "test")
    session.run("pytest", "-q", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """Walk through herorepo on an embedded SQLite database (`-- --url URL` for a server)."""
    session.install("-e", ".[all]")
    session.run("python", "-m", "herorepo", "demo", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    _install(session, "lint", extras="aiosqlite")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmark herorepo against the drivers, Core, SQLModel, advanced-alchemy and fastcrud.

    Rewrites docs/benchmarks.md and docs/benchmarks.png, taking the test suite's lock first.
    `nox -s bench -- --backends sqlite` runs one backend; `-- profile --backend postgres`
    profiles herorepo's get and create instead. Not run by default, and not part of the tests.
    """
    _install(session, "bench")
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict and pyright (strict) on src/ and the typing tests."""
    _install(session, "typecheck")
    session.run("mypy")
    # pyright does not find the session's packages by itself.
    session.run("pyright", "--pythonpath", str(Path(session.bin) / "python"))
