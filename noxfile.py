"""Developer tasks. `nox -s tests` runs the suite, `nox -s demo` the demo; CI runs `.ci/run`.

`nox -s docs` builds the documentation site in strict mode, and `nox -s build` builds the sdist
and the wheel and smoke-tests the wheel outside the source tree (see docs/releasing.md).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True

PYPROJECT = nox.project.load_toml("pyproject.toml")
PYTHONS = ["3.11", "3.12", "3.13"]  # keep in step with the classifiers in pyproject.toml
ROOT = Path(__file__).resolve().parent
EXTRAS = ["none", "aiosqlite", "asyncpg", "aiomysql", "fastapi", "all"]


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in path.parts[-3].split(".") if part.isdigit())


def _find_pyenv_pythons() -> None:
    """Put pyenv's interpreters on PATH, so that nox and uv find each of PYTHONS.

    pyenv's shims answer only for the versions pyenv has selected; `python3.12` then fails even
    though pyenv has installed 3.12. Each version's own bin directory always works.
    """
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found = []
    for version in PYTHONS:
        candidates = sorted(root.glob(f"{version}.*/bin/python{version}"), key=_version_key)
        if candidates:
            found.append(str(candidates[-1].parent))
    if found:
        os.environ["PATH"] = os.pathsep.join([*found, os.environ.get("PATH", "")])


_find_pyenv_pythons()


def _install(session: nox.Session, *groups: str, extras: str = "all") -> None:
    session.install("-e", f".[{extras}]")
    for group in groups:
        session.install(*nox.project.dependency_groups(PYPROJECT, group))


def _parallel(posargs: list[str]) -> list[str]:
    """pytest-xdist workers, one per core (at most 4), unless the arguments choose (`-n 0`)."""
    if any(arg.startswith(("-n", "--numprocesses", "--dist")) for arg in posargs):
        return posargs
    workers = min(os.cpu_count() or 1, 4)
    return ["-n", str(workers), "--dist", "loadgroup", *posargs]


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite on every backend that is reachable (SQLite always), in parallel.

    Each pytest process (each xdist worker) works in databases of its own, so runs may overlap.
    """
    _install(session, "test")
    args = _parallel(session.posargs)
    session.run("pytest", *args, env={"PYTHONDONTWRITEBYTECODE": "1"})


@nox.session(python=PYTHONS)
def tests_all_pythons(session: nox.Session) -> None:
    """Run the suite on each supported interpreter (3.11 to 3.13; pyenv's are found too)."""
    _install(session, "test")
    session.run("pytest", "-q", *session.posargs, env={"PYTHONDONTWRITEBYTECODE": "1"})


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

    Rewrites docs/benchmarks.md and docs/benchmarks.png, taking the benchmarks' lock first.
    `nox -s bench -- --backends sqlite` runs one backend; `-- profile --backend postgres`
    profiles herorepo's get and create instead; `-- policies` times the tenant, soft-delete and
    audit policies and rewrites their section of the page only; `-- telemetry` times `Telemetry`
    (off, API only, SDK) against none and rewrites its section; `-- paths` times the documented
    reads and FastAPI requests against hand-written code and rewrites its section. Not run by
    default, and not part of the tests.
    """
    _install(session, "bench")
    # `paths` calls its FastAPI apps through httpx, in process. Without sniffio, httpx's ASGI
    # transport tries to import it on every request, a failed import that searches sys.path.
    session.install("httpx>=0.27", "sniffio>=1.3")
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict and pyright (strict) on src/ and the typing tests."""
    _install(session, "typecheck")
    session.run("mypy")
    # pyright does not find the session's packages by itself.
    session.run("pyright", "--pythonpath", str(Path(session.bin) / "python"))


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site into site/ with `mkdocs build --strict` (warnings fail)."""
    _install(session, "docs")
    session.run("mkdocs", "build", "--strict", env={"NO_MKDOCS_2_WARNING": "1"})


@nox.session
def build(session: nox.Session) -> None:
    """Build sdist and wheel, `twine check` them, and smoke-test the wheel outside the tree.

    The wheel is installed into a brand-new virtual environment for each extra (and for none),
    and scripts/smoke.py runs there from a temporary directory: the public API imports, the
    version and py.typed are there, drivers match the extra, and a repository round trip works
    on SQLite. The `all` environment also type-checks a program with mypy against the wheel.
    """
    session.install(*nox.project.dependency_groups(PYPROJECT, "build"))
    dist = ROOT / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    # The wheel is built from the sdist, which proves the sdist complete as well.
    session.run("python", "-m", "build", "--installer", "uv", "--outdir", str(dist), str(ROOT))
    artifacts = sorted(str(path) for path in dist.iterdir())
    session.run("twine", "check", "--strict", *artifacts)
    [wheel] = dist.glob("herorepo-*.whl")
    python = str(Path(session.bin) / "python")
    env = {"PYTHONPATH": None, "VIRTUAL_ENV": None}
    for extra in EXTRAS:
        with tempfile.TemporaryDirectory(prefix=f"herorepo-smoke-{extra}-") as directory:
            place = Path(directory)
            venv = place / "venv"
            venv_python = str(venv / "bin" / "python")
            session.run("uv", "venv", "--quiet", "--python", python, str(venv), env=env)
            requirement = str(wheel) if extra == "none" else f"{wheel}[{extra}]"
            packages = [requirement, *(["mypy"] if extra == "all" else [])]
            session.run(
                "uv", "pip", "install", "--quiet", "--python", venv_python, *packages, env=env
            )
            shutil.copy(ROOT / "scripts" / "smoke.py", place / "smoke.py")
            typecheck = ["--typecheck"] if extra == "all" else []
            with session.chdir(place):
                session.run(
                    venv_python,
                    "smoke.py",
                    "--extra",
                    extra,
                    "--source",
                    str(ROOT),
                    *typecheck,
                    env=env,
                    external=True,
                )
