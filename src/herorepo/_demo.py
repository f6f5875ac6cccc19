"""``herorepo demo``: a walk-through of the library on a database of your choice.

The demo declares two table models of its own, ``DemoTeam`` (table ``demo_team``) and
``DemoHero`` (table ``demo_hero``), creates those two tables, shows each feature once and prints
what it does, then drops the two tables again. It touches no other table, and it refuses to start
when a table of either name already exists, so it never changes data it did not create.

This module declares table models, so importing it adds them to ``SQLModel.metadata``. That is
why ``import herorepo`` never imports it: only ``python -m herorepo demo`` does.
"""

# No ``from __future__ import annotations`` here: SQLModel reads the relationship annotations at
# class creation, and strings it cannot resolve break the mapping.

import asyncio
import sys
import textwrap

from sqlalchemy import Connection, MetaData, inspect
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlmodel import Field, Relationship, SQLModel, col

from ._database import Database
from ._errors import (
    ConfigurationError,
    ConnectionLostError,
    LazyLoadError,
    NotFoundError,
    UniqueViolationError,
)
from ._loading import joined
from ._version import __version__

__all__ = ["DemoHero", "DemoHeroUpdate", "DemoTeam", "run"]

TABLES = ("demo_team", "demo_hero")


class DemoTeam(SQLModel, table=True):
    __tablename__ = "demo_team"  # pyright: ignore[reportAssignmentType]

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, unique=True)
    headquarters: str = Field(default="", max_length=200)

    heroes: list["DemoHero"] = Relationship(back_populates="team")


class DemoHero(SQLModel, table=True):
    __tablename__ = "demo_hero"  # pyright: ignore[reportAssignmentType]

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, unique=True)
    secret_name: str = Field(max_length=100)
    age: int | None = None
    team_id: int | None = Field(default=None, foreign_key="demo_team.id")

    team: DemoTeam | None = Relationship(back_populates="heroes")


class DemoHeroUpdate(SQLModel):
    """The fields a client may change; the ones it leaves out are not touched."""

    name: str | None = None
    secret_name: str | None = None
    age: int | None = None
    team_id: int | None = None


class DemoFailed(Exception):
    """Something the demo showed did not behave as it said; a bug in herorepo or the demo."""


class _Undo(Exception):
    """Raised on purpose inside the savepoint, to show that only the savepoint is undone."""


def _metadata() -> MetaData:
    """A MetaData holding only the demo tables, so create/drop cannot reach any other table."""
    metadata = MetaData()
    for name in TABLES:
        SQLModel.metadata.tables[name].to_metadata(metadata)
    return metadata


def _say(text: str) -> None:
    for line in text.splitlines():
        print(textwrap.fill(line, 100, initial_indent="   ", subsequent_indent="     "), flush=True)


def _step(number: int, title: str) -> None:
    print(f"\n{number}. {title}", flush=True)


def _check(condition: bool, claim: str) -> None:
    if not condition:
        raise DemoFailed(f"The demo expected that {claim}, but it did not happen.")


def _existing_tables(connection: Connection) -> list[str]:
    inspector = inspect(connection)
    return [name for name in TABLES if inspector.has_table(name)]


async def _find_obstacle(db: Database) -> str | None:
    """Connect and look for the demo tables; return why the demo cannot run, or ``None``."""
    try:
        async with db.engine.connect() as connection:
            existing = await connection.run_sync(_existing_tables)
    except (ConnectionLostError, OSError, asyncio.TimeoutError, DBAPIError) as error:
        return f"Could not connect to {db.safe_url}: {_scrub(str(error), db)}"
    if existing:
        return (
            f"The table(s) {', '.join(existing)} already exist in {db.safe_url}. The demo "
            "creates and drops its own tables and will not touch existing ones. If they are "
            "left over from an earlier demo run, drop them and run the demo again."
        )
    return None


def _scrub(text: str, db: Database) -> str:
    """Hide the password should a driver ever repeat it in a message."""
    password = db.url.password
    return text.replace(password, "***") if password else text


async def _crud(db: Database) -> tuple[int, int]:
    _step(2, "Create rows in a unit of work")
    async with db.unit_of_work() as uow:
        teams = uow.repository(DemoTeam)
        heroes = uow.repository(DemoHero)
        preventers = await teams.create({"name": "Preventers", "headquarters": "Sharp Tower"})
        z_force = await teams.create(DemoTeam(name="Z-Force", headquarters="Sister Margaret's"))
        created = await heroes.add_many(
            [
                {"name": "Deadpond", "secret_name": "Dive Wilson", "team_id": preventers.id},
                {
                    "name": "Rusty-Man",
                    "secret_name": "Tommy Sharp",
                    "age": 48,
                    "team_id": preventers.id,
                },
                {"name": "Spider-Boy", "secret_name": "Pedro Parqueador", "team_id": z_force.id},
            ]
        )
        _say(
            "async with db.unit_of_work() as uow: opens one session and one transaction.\n"
            f"uow.repository(DemoTeam).create(...) inserted {preventers.name} "
            f"(id={preventers.id}) and {z_force.name} (id={z_force.id}).\n"
            "uow.repository(DemoHero).add_many([...]) inserted, in one flush,\n"
            + ", ".join(f"{hero.name} (id={hero.id})" for hero in created)
            + "."
        )
    _say("The block ended without an error, so the unit of work committed.")
    assert preventers.id is not None
    assert created[0].id is not None
    deadpond_id, spider_boy_id = created[0].id, created[2].id
    assert spider_boy_id is not None

    _step(3, "Read")
    async with db.unit_of_work() as uow:
        heroes = uow.repository(DemoHero)
        deadpond = await heroes.get_one(deadpond_id)
        _say(f"get_one({deadpond_id}) -> {deadpond.name}, secret name {deadpond.secret_name}")
        by_name = await heroes.list(order_by=DemoHero.name)
        _say("list(order_by=DemoHero.name) -> " + ", ".join(h.name for h in by_name))
        older = await heroes.list(col(DemoHero.age) >= 40)
        _say("list(col(DemoHero.age) >= 40) -> " + ", ".join(h.name for h in older))
        in_team = await heroes.count(team_id=preventers.id)
        _say(f"count(team_id={preventers.id}) -> {in_team}")
        spider_boy = await heroes.find_one(name="Spider-Boy")
        _say(f"find_one(name='Spider-Boy') -> id={spider_boy.id}")
        _check(len(by_name) == 3 and in_team == 2, "three heroes exist, two in Preventers")

    _step(4, "Update only some fields (partial update)")
    async with db.unit_of_work() as uow:
        heroes = uow.repository(DemoHero)
        rusty = await heroes.find_one(name="Rusty-Man")
        before = rusty.age
        await heroes.update(rusty, DemoHeroUpdate(age=49))
        _say(
            "update(hero, DemoHeroUpdate(age=49)) changes only the fields that were set:\n"
            f"Rusty-Man's age went from {before} to {rusty.age}; "
            f"his secret name is still {rusty.secret_name}."
        )
        _check(rusty.age == 49 and rusty.secret_name == "Tommy Sharp", "only the age changed")

    _step(5, "Delete")
    async with db.unit_of_work() as uow:
        heroes = uow.repository(DemoHero)
        await heroes.delete(spider_boy_id)
        gone = await heroes.get(spider_boy_id)
        _say(f"delete({spider_boy_id}) removed Spider-Boy; get({spider_boy_id}) now -> {gone}.")
        _check(gone is None, "the deleted hero is gone")
    return preventers.id, deadpond_id


async def _savepoint(db: Database, team_id: int) -> None:
    _step(6, "Savepoint: undo part of a unit of work, keep the rest")
    async with db.unit_of_work() as uow:
        heroes = uow.repository(DemoHero)
        await heroes.create({"name": "Tarantula", "secret_name": "Natalia Roman-on"})
        _say("In one unit of work: created Tarantula.")
        try:
            async with uow.savepoint():
                await heroes.create(
                    {"name": "Dr. Weird", "secret_name": "Steve Weird", "team_id": team_id}
                )
                _say(
                    "Inside async with uow.savepoint(): created Dr. Weird, then an error occurred."
                )
                raise _Undo
        except _Undo:
            _say("The savepoint was rolled back: Dr. Weird is undone. The unit of work goes on.")
    async with db.unit_of_work() as uow:
        heroes = uow.repository(DemoHero)
        kept = await heroes.exists(name="Tarantula")
        undone = not await heroes.exists(name="Dr. Weird")
    _say(
        f"After the commit: Tarantula saved: {'yes' if kept else 'no'}; "
        f"Dr. Weird saved: {'no' if undone else 'yes'}."
    )
    _check(kept and undone, "the outer work was saved and the savepoint's work was not")


async def _eager(db: Database, team_id: int, hero_id: int) -> None:
    _step(7, "Eager loading: ask for relationships when reading")
    async with db.unit_of_work() as uow:
        # Type checkers see DemoTeam.heroes as list[DemoHero] and DemoHero.team as DemoTeam | None,
        # which LoadSpec and joined() do not accept; at runtime they are relationship attributes.
        team = await uow.repository(DemoTeam).get_one(
            team_id,
            load=[DemoTeam.heroes],
        )
        names = sorted(hero.name for hero in team.heroes)
        _say(
            f"get_one({team_id}, load=[DemoTeam.heroes]) -> {team.name} with heroes "
            f"{', '.join(names)}\n(one SELECT for the team, one more for its heroes)."
        )
        hero = await uow.repository(DemoHero).get_one(
            hero_id,
            load=[joined(DemoHero.team)],
        )
        team_name = hero.team.name if hero.team is not None else None
        _say(
            f"get_one({hero_id}, load=[joined(DemoHero.team)]) -> {hero.name} of {team_name} "
            "(one SELECT with a JOIN)."
        )
        _check(names == ["Deadpond", "Rusty-Man"], "Preventers has Deadpond and Rusty-Man")
        _check(team_name == "Preventers", "Deadpond's team is Preventers")


async def _errors(db: Database, team_id: int, *, missing_id: int) -> None:
    _step(8, "Errors: the same classes on SQLite, PostgreSQL and MySQL")
    async with db.unit_of_work() as uow:
        try:
            await uow.repository(DemoHero).get_one(missing_id)
        except NotFoundError as error:
            _say(f"get_one({missing_id}) raised NotFoundError: {error}")
        else:
            raise DemoFailed(f"get_one({missing_id}) found a hero that was never created")

    try:
        async with db.unit_of_work() as uow:
            await uow.repository(DemoTeam).create({"name": "Preventers"})
    except UniqueViolationError as error:
        _say(f"create({{'name': 'Preventers'}}) raised UniqueViolationError: {error}")
        _say("That unit of work was rolled back; nothing of it was saved.")
    else:
        raise DemoFailed("a second team named Preventers was accepted")

    async with db.unit_of_work() as uow:
        team = await uow.repository(DemoTeam).get_one(team_id)
        try:
            _say(f"{len(team.heroes)} heroes")
        except LazyLoadError as error:
            _say(f"team.heroes, read without load=, raised LazyLoadError: {error}")
        else:
            raise DemoFailed("an unloaded relationship was loaded implicitly")


async def _walk(db: Database) -> int:
    problem = await _find_obstacle(db)
    if problem is not None:
        print(f"herorepo demo: error: {problem}", file=sys.stderr, flush=True)
        return 1
    metadata = _metadata()
    _step(1, "Models and tables")
    _say(
        "DemoTeam (table demo_team) and DemoHero (table demo_hero) are SQLModel table models;\n"
        "a team has many heroes through DemoHero.team_id."
    )
    try:
        await db.create_all(metadata)
        _say("db.create_all(metadata) created the two tables.")
        team_id, deadpond_id = await _crud(db)
        await _savepoint(db, team_id)
        await _eager(db, team_id, deadpond_id)
        await _errors(db, team_id, missing_id=999)
    finally:
        await db.drop_all(metadata)
        print(f"\nDropped the tables {' and '.join(TABLES)}.", flush=True)
    print(f"Done: every step worked on {db.backend}.", flush=True)
    return 0


async def _main(db: Database) -> int:
    async with db:  # disposes the connection pool on the way out
        return await _walk(db)


def run(url: str) -> int:
    """Run the demo on ``url`` and return the exit status.

    Returns:
        0 when every step worked; 1 when the database cannot be reached, the demo tables already
        exist or a step did not behave as shown; 2 when ``url`` cannot be used.
    """
    try:
        db = Database(url)
    except (ConfigurationError, ArgumentError) as error:
        # ArgumentError: SQLAlchemy refusing a malformed URL that herorepo let through (such as
        # sqlite://host/app.db); its message hides the password too.
        print(f"herorepo demo: error: {error}", file=sys.stderr, flush=True)
        return 2
    print(f"herorepo {__version__} demo on {db.safe_url} ({db.backend})", flush=True)
    print(
        f"It creates the tables {' and '.join(TABLES)}, works on them, and drops them at the end.",
        flush=True,
    )
    try:
        return asyncio.run(_main(db))
    except DemoFailed as error:
        print(f"herorepo demo: error: {error}", file=sys.stderr, flush=True)
        return 1
