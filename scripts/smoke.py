"""Smoke-test an installed herorepo, outside the source tree. ``nox -s build`` runs it.

The build session installs the wheel into a brand-new virtual environment per extra and runs
this file there, from a temporary directory, so that nothing can come from the source tree::

    python smoke.py --extra aiosqlite --source /path/to/checkout [--typecheck]

It checks that the package imports from site-packages with its ``py.typed`` and the version of
its metadata; that ``import herorepo`` pulls in no test-only or optional package; that every
name of the public API imports; that each driver extra is installed exactly when asked for, and
a missing one is reported as a ``ConfigurationError`` naming the extra; that the FastAPI
integration imports exactly when its extra is installed; that the console script runs; and, when
aiosqlite is installed, a repository round trip on SQLite. With ``--typecheck`` it also runs mypy
--strict on a small program against the installed package.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.metadata
import importlib.resources
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

EXTRAS = ("none", "aiosqlite", "asyncpg", "aiomysql", "fastapi", "all")
DRIVERS = {
    "aiosqlite": "sqlite+aiosqlite:///:memory:",
    "asyncpg": "postgresql+asyncpg://smoke@127.0.0.1:1/smoke",
    "aiomysql": "mysql+aiomysql://smoke@127.0.0.1:1/smoke",
}
# Optional or test-only packages that `import herorepo` must not import.
NOT_ON_IMPORT = ("pytest", "pytest_asyncio", "fastapi", "httpx", "herorepo._demo", *DRIVERS)

TYPED_PROGRAM = """
from typing_extensions import assert_type
from sqlmodel import Field, SQLModel

from herorepo import Database, Repository


class Hero(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100)


async def read(db: Database, hero_id: int) -> str:
    async with db.unit_of_work() as uow:
        heroes = uow.repository(Hero)
        assert_type(heroes, Repository[Hero])
        hero = await heroes.get_one(hero_id)
        assert_type(hero, Hero)
        return hero.name
"""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise SystemExit(f"smoke: FAILED: {message}")


def check_import(source: Path) -> None:
    import herorepo

    location = Path(herorepo.__file__).resolve()
    check(
        not location.is_relative_to(source.resolve()),
        f"herorepo was imported from the source tree ({location})",
    )
    check(
        location.is_relative_to(Path(sys.prefix).resolve()),
        f"herorepo was not imported from this environment ({location})",
    )
    loaded = [name for name in NOT_ON_IMPORT if name in sys.modules]
    check(not loaded, f"import herorepo imported {loaded}")
    typed = importlib.resources.files("herorepo").joinpath("py.typed")
    check(typed.is_file(), "the installed package has no py.typed")
    version = importlib.metadata.version("herorepo")
    check(herorepo.__version__ == version, f"__version__ {herorepo.__version__} != {version}")
    for name in herorepo.__all__:
        check(hasattr(herorepo, name), f"herorepo.{name} is in __all__ but missing")
    entry_points = importlib.metadata.entry_points(group="pytest11")
    check(
        any(ep.value == "herorepo._pytest_entry" for ep in entry_points),
        "the pytest11 entry point is not declared",
    )
    print(f"smoke: herorepo {version} from {location.parent}, {len(herorepo.__all__)} names")


def check_drivers(extra: str) -> None:
    from herorepo import ConfigurationError, Database

    for driver, url in DRIVERS.items():
        wanted = extra in (driver, "all")
        installed = importlib.util.find_spec(driver) is not None
        check(installed == wanted, f"{driver} installed={installed} with the extra {extra!r}")
        if installed:
            database = Database(url)  # builds the engine; connects only on first use
            asyncio.run(database.dispose())
            continue
        try:
            Database(url)
        except ConfigurationError as error:
            hint = f"pip install 'herorepo[{driver}]'"
            check(hint in str(error), f"the error for a missing {driver} lacks {hint!r}: {error}")
        else:
            check(False, f"Database({url!r}) worked without {driver}")
    print(f"smoke: drivers as expected for the extra {extra!r}")


def check_fastapi(extra: str) -> None:
    wanted = extra in ("fastapi", "all")
    try:
        importlib.import_module("herorepo.integrations.fastapi")
    except ImportError as error:
        check(not wanted, f"herorepo.integrations.fastapi does not import: {error}")
        check("herorepo[fastapi]" in str(error), f"unhelpful ImportError: {error}")
    else:
        check(wanted, "herorepo.integrations.fastapi imported without the fastapi extra")
    print(f"smoke: FastAPI integration {'imports' if wanted else 'asks for its extra'}")


def check_console_script(extra: str) -> None:
    script = shutil.which("herorepo", path=str(Path(sys.executable).parent))
    check(script is not None, "the herorepo console script is not installed")
    assert script is not None
    result = subprocess.run(
        [script, "demo"], capture_output=True, text=True, timeout=120, check=False
    )
    if extra in ("aiosqlite", "all"):
        check(result.returncode == 0, f"herorepo demo failed:\n{result.stdout}{result.stderr}")
        check("Done: every step worked" in result.stdout, "herorepo demo did not finish")
    else:  # the demo's default database needs aiosqlite: a clear message, no traceback
        check(result.returncode == 2, f"herorepo demo exited {result.returncode}")
        check("herorepo[aiosqlite]" in result.stderr, f"unclear demo error: {result.stderr}")
        check("Traceback" not in result.stderr, f"herorepo demo crashed: {result.stderr}")
    print("smoke: the herorepo console script runs")


async def round_trip() -> None:
    from sqlmodel import Field, SQLModel

    from herorepo import Database, NotFoundError, UniqueViolationError

    class SmokeHero(SQLModel, table=True):
        __tablename__ = "smoke_hero"  # pyright: ignore[reportAssignmentType]

        id: int | None = Field(default=None, primary_key=True)
        name: str = Field(max_length=100, unique=True)

    async with Database("sqlite+aiosqlite:///:memory:") as db:
        await db.create_all()
        async with db.unit_of_work() as uow:
            hero = await uow.repository(SmokeHero).create({"name": "Deadpond"})
        check(hero.id is not None, "create() returned no primary key")
        async with db.unit_of_work() as uow:
            heroes = uow.repository(SmokeHero)
            check((await heroes.get_one(hero.id)).name == "Deadpond", "get_one() lost the row")
            await heroes.update(hero.id, {"name": "Rusty-Man"})
            try:
                async with uow.savepoint():
                    await heroes.create({"name": "Rusty-Man"})
            except UniqueViolationError:
                pass
            else:
                check(False, "a duplicate name raised no UniqueViolationError")
            check(await heroes.count() == 1, "the savepoint did not undo the duplicate")
            await heroes.delete(hero.id)
            try:
                await heroes.get_one(hero.id)
            except NotFoundError:
                pass
            else:
                check(False, "a deleted row was found")
    print("smoke: repository round trip on SQLite")


def check_types() -> None:
    with tempfile.TemporaryDirectory(prefix="herorepo-typed-") as directory:
        program = Path(directory) / "typed_program.py"
        program.write_text(textwrap.dedent(TYPED_PROGRAM), encoding="utf-8")
        result = subprocess.run(
            [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(program)],
            capture_output=True,
            text=True,
            cwd=directory,
            timeout=300,
            check=False,
        )
    check(result.returncode == 0, f"mypy --strict failed on the wheel's types:\n{result.stdout}")
    print("smoke: mypy --strict sees the installed package's types")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--extra", choices=EXTRAS, required=True)
    parser.add_argument("--source", type=Path, required=True, help="the checkout it must not use")
    parser.add_argument("--typecheck", action="store_true", help="also run mypy (needs mypy)")
    args = parser.parse_args()
    check("PYTHONPATH" not in os.environ, "PYTHONPATH is set; the smoke test must not use it")
    check_import(args.source)
    check_drivers(args.extra)
    check_fastapi(args.extra)
    check_console_script(args.extra)
    if importlib.util.find_spec("aiosqlite") is not None:
        asyncio.run(round_trip())
    if args.typecheck:
        check_types()
    print(f"smoke: ok ({args.extra})")


if __name__ == "__main__":
    main()
