"""The documentation works: README and docs code blocks, docs/examples/*.py, and the demo.

Everything runs in a subprocess with the interpreter that runs the tests, as a user would run
``python file.py``, with warnings turned into errors. Nothing here imports ``herorepo._demo`` or an
example: their table models would join ``SQLModel.metadata``, which conftest creates and drops on
every backend.

* Each ```python block of README.md and docs/**/*.md runs on its own, unless the line right
  before its fence is ``<!-- no-run -->`` (a fragment, or a server that would never stop). A block
  that uses a database takes its URL from DATABASE_URL (``Database.from_env(default=...)``) and
  runs three times: with DATABASE_URL unset (its SQLite default), then on PostgreSQL and on MySQL,
  each time in an empty scratch database (the test process's database + ``_docs``). It must leave
  that database as empty as it found it, dropping the tables it creates (``await db.drop_all()``
  in a ``finally:``), so that a reader can run it again, or another page's block, on the same
  server: the test checks.
  A block marked ``<!-- offline -->`` builds a ``Database`` but never connects; it runs once.
  Other blocks run once. A block whose first line names a file (``# models.py``) is also saved as
  that file next to the later blocks of its page, which may import it.
* A block preceded by ``<!-- example: docs/examples/NAME.py -->`` must be that file, verbatim. A
  block preceded by ``<!-- excerpt -->`` is not run, but must appear verbatim in a block of its
  page that runs: side-by-side excerpts cannot drift from the programs they come from.
* The README's quickstart and the programs of getting-started.md also run one after another in
  one database per backend (a file on SQLite), as a newcomer runs them: each twice in a row, and
  each right after each other one (test_first_programs_run_again_in_any_order).
* Each docs/examples/*.py runs on every backend, with DATABASE_URL set: test_example[NAME-postgres].
* ``python -m herorepo demo`` runs on in-memory SQLite and on every backend, never prints a
  password, and exits 2 with the ConfigurationError message for a bad URL.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import inspect, text
from sqlalchemy.dialects.postgresql.base import PGInspector
from sqlalchemy.engine import Connection, make_url

from herorepo import Database

from ..conftest import RUN_DATABASE, backend_url, require

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
EXAMPLES = sorted((DOCS / "examples").glob("*.py"))
MARKDOWN = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
SCRATCH_DATABASE = f"{RUN_DATABASE}_docs"  # of this process: runs and workers run side by side
TIMEOUT = 60

NO_RUN = "<!-- no-run -->"
EXCERPT = "<!-- excerpt -->"
OFFLINE = "<!-- offline -->"  # builds a Database but never connects: runs once, any URL
FILE_NAME = re.compile(r"^# (?P<name>\w+\.py)\n")
EXAMPLE_MARKER = re.compile(r"^<!-- example: (?P<path>\S+) -->$")
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[ \t]*$")

README_COMMANDS = [
    "python -m pip install nox && nox -s demo",
    "python -m pip install nox && nox -s tests",
    'nox -s tests -- -m "not postgres and not mysql"',
    "nox -s tests -- -m postgres",
]

DEMO_LINES = [
    "1. Models and tables",
    "6. Savepoint",
    "7. Eager loading",
    "raised NotFoundError",
    "raised UniqueViolationError",
    "raised LazyLoadError",
    "Dropped the tables demo_team and demo_hero.",
    "Done: every step worked on",
]


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    before: str  # the line right before the fence, stripped

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT).as_posix()}:{self.line}"


def code_blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a Markdown file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None or not opening["lang"]:
            index += 1
            continue
        indent = opening["indent"]
        end = index + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        if end == len(lines):
            raise AssertionError(f"{path.name}:{index + 1}: code block is never closed")
        body = [line.removeprefix(indent) for line in lines[index + 1 : end]]
        blocks.append(
            Block(
                path=path,
                line=index + 1,
                lang=opening["lang"],
                code="\n".join(body) + "\n",
                before=lines[index - 1].strip() if index else "",
            )
        )
        index = end + 1
    return blocks


def python_blocks() -> list[Block]:
    return [b for path in MARKDOWN for b in code_blocks(path) if b.lang in ("python", "py")]


# An example block is its docs/examples file, which test_example runs on every backend.
RUNNABLE = [
    block
    for block in python_blocks()
    if block.before not in (NO_RUN, EXCERPT) and not EXAMPLE_MARKER.match(block.before)
]
USES_DATABASE = re.compile(r"\bDatabase\(|\bcreate_(async_)?engine\(|from_env\(|DATABASE_URL")


def reads_database_url(block: Block) -> bool:
    return "from_env(" in block.code or "DATABASE_URL" in block.code


ON_EVERY_BACKEND = [block for block in RUNNABLE if reads_database_url(block)]
ONCE = [block for block in RUNNABLE if not reads_database_url(block)]


def run_python(
    *args: str, cwd: Path, database_url: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -W error ARGS`` in a subprocess, with DATABASE_URL set or unset."""
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    env["PYTHONIOENCODING"] = "utf-8"
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    command = [sys.executable, "-W", "error", *args]
    try:
        return subprocess.run(
            command,
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"{' '.join(args)} did not finish within {TIMEOUT} s.\n"
            f"--- stdout ---\n{exc.stdout!r}\n--- stderr ---\n{exc.stderr!r}",
            pytrace=False,
        )


def report(result: subprocess.CompletedProcess[str]) -> str:
    return (
        f"exit status {result.returncode}\n"
        f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
    )


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    if result.returncode != 0:
        pytest.fail(f"Failed with {report(result)}", pytrace=False)


# --- Markdown ------------------------------------------------------------------------------------


def start_block(
    block: Block, tmp_path: Path, database_url: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``block`` as a script in ``tmp_path``, next to the files its page saved before it."""
    for earlier in RUNNABLE:
        named = FILE_NAME.match(earlier.code)
        if named and earlier.path == block.path and earlier.line < block.line:
            (tmp_path / named["name"]).write_text(earlier.code, encoding="utf-8")
    script = tmp_path / f"{block.path.stem}_{block.line}.py"
    script.write_text(block.code, encoding="utf-8")
    return run_python(str(script), cwd=tmp_path, database_url=database_url)


def run_block(block: Block, tmp_path: Path, database_url: str | None = None) -> None:
    assert_ok(start_block(block, tmp_path, database_url))


def _schema_objects(connection: Connection) -> list[str]:
    inspector = inspect(connection)
    # herorepo's own table of commit markers (MySQL/MariaDB), which it creates when it connects.
    tables = [name for name in inspector.get_table_names() if name != "herorepo_commit_markers"]
    found = [f"table {name}" for name in tables]
    if isinstance(inspector, PGInspector):  # objects that may outlive a table
        found += [f"sequence {name}" for name in inspector.get_sequence_names()]
        found += [f"type {enum['name']}" for enum in inspector.get_enums()]
    return found


def leftovers(url: str) -> list[str]:
    """The tables (and on PostgreSQL, sequences and enum types) in the database at ``url``."""

    async def look() -> list[str]:
        database = Database(url)
        try:
            async with database.engine.connect() as connection:
                return await connection.run_sync(_schema_objects)
        finally:
            await database.dispose()

    return asyncio.run(look())


@pytest.mark.parametrize("block", ONCE, ids=[block.id for block in ONCE])
def test_doc_block_runs(block: Block, tmp_path: Path) -> None:
    run_block(block, tmp_path)


@pytest_asyncio.fixture
async def scratch_url(backend: str) -> str | None:
    """An empty scratch database on ``backend`` (None on SQLite: blocks use their default).

    A scratch database rather than the suite's: doc blocks name their tables as a reader would
    (``hero``, ``team``), and one that fails may leave them behind.
    """
    if backend == "sqlite":
        return None
    server = make_url(backend_url(backend))
    scratch = server.set(database=SCRATCH_DATABASE)
    admin = Database(server)
    try:
        async with admin.engine.connect() as connection:
            connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
            if backend == "mysql":
                await connection.execute(text(f"DROP DATABASE IF EXISTS {SCRATCH_DATABASE}"))
                await connection.execute(text(f"CREATE DATABASE {SCRATCH_DATABASE}"))
            else:
                exists = await connection.execute(
                    text("SELECT 1 FROM pg_database WHERE datname = :name"),
                    {"name": SCRATCH_DATABASE},
                )
                if exists.first() is None:
                    await connection.execute(text(f"CREATE DATABASE {SCRATCH_DATABASE}"))
    finally:
        await admin.dispose()
    if backend == "postgres":
        scratch_db = Database(scratch)
        try:
            async with scratch_db.engine.begin() as connection:
                await connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
                await connection.execute(text("CREATE SCHEMA public"))
        finally:
            await scratch_db.dispose()
    return scratch.render_as_string(hide_password=False)


@pytest.mark.parametrize("block", ON_EVERY_BACKEND, ids=[block.id for block in ON_EVERY_BACKEND])
def test_doc_block_runs_on_backend(block: Block, scratch_url: str | None, tmp_path: Path) -> None:
    """The block runs, and leaves the database empty: it can run again, and so can the others."""
    run_block(block, tmp_path, database_url=scratch_url)
    if scratch_url is not None:  # in-memory SQLite keeps nothing
        left = leftovers(scratch_url)
        assert not left, (
            f"{block.id} left {left} in the database: a reader's second run (or the next page's "
            "program) would meet them. Drop what the block creates: `await db.drop_all()` in a "
            "`finally:`."
        )


# The README's quickstart, then getting-started.md's first_repository.py and first_unit_of_work.py.
FIRST_PROGRAMS = [
    block for block in ON_EVERY_BACKEND if block.path.name in ("README.md", "getting-started.md")
]


def each_after_each(count: int) -> list[int]:
    """0..count-1 in an order where each index follows each index, itself included, once.

    The greedy "prefer the largest" construction of a de Bruijn sequence: 0 2 2 1 2 0 1 1 0 0.
    """
    order: list[int] = [0]
    used: set[tuple[int, int]] = set()
    while True:
        after = [j for j in reversed(range(count)) if (order[-1], j) not in used]
        if not after:
            return order
        used.add((order[-1], after[0]))
        order.append(after[0])


def test_first_programs_run_again_in_any_order(scratch_url: str | None, tmp_path: Path) -> None:
    """A newcomer runs the README's and getting-started's programs on one database, again and again.

    Each runs twice in a row and right after each of the others, in one database (a SQLite file
    rather than memory, so that runs share it), and the database is empty at the end.
    """
    assert len(FIRST_PROGRAMS) >= 3, [block.id for block in FIRST_PROGRAMS]
    url = scratch_url or f"sqlite+aiosqlite:///{tmp_path / 'newcomer.db'}"
    order = each_after_each(len(FIRST_PROGRAMS))
    pairs = set(pairwise(order))
    assert len(pairs) == len(FIRST_PROGRAMS) ** 2, order
    ran: list[str] = []
    for index in order:
        block = FIRST_PROGRAMS[index]
        result = start_block(block, tmp_path, url)
        if result.returncode != 0:
            pytest.fail(
                f"{block.id} failed after {ran or 'nothing'} ran on the same database, with "
                f"{report(result)}",
                pytrace=False,
            )
        ran.append(block.id)
    assert leftovers(url) == []


def test_database_blocks_read_database_url() -> None:
    """A block that opens a database takes its URL from DATABASE_URL, so it runs everywhere."""
    fixed = [
        block.id
        for block in RUNNABLE
        if USES_DATABASE.search(block.code)
        and not reads_database_url(block)
        and block.before != OFFLINE
    ]
    assert not fixed, (
        f"these blocks open a database with a fixed URL, so they would run on SQLite only: "
        f"{fixed}. Use Database.from_env(default='sqlite+aiosqlite:///:memory:')."
    )


def test_code_blocks_reads_fences_and_markers(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "Text\n"
        "<!-- no-run -->\n"
        "```python\n"
        "fragment()\n"
        "```\n"
        "- a list item:\n"
        "\n"
        "  ```python\n"
        "  if True:\n"
        "      print('indented')\n"
        "  ```\n"
        "```\n"
        "no language: not a code block we run\n"
        "```\n",
        encoding="utf-8",
    )
    blocks = code_blocks(page)
    assert [(b.line, b.lang, b.before) for b in blocks] == [
        (3, "python", NO_RUN),
        (8, "python", ""),
    ]
    assert blocks[1].code == "if True:\n    print('indented')\n"


def contains(program: str, excerpt: str) -> bool:
    """Whether ``excerpt`` is a run of whole lines of ``program``, at any indentation."""
    wanted = textwrap.dedent(excerpt).strip("\n")
    lines = program.splitlines()
    size = len(wanted.splitlines())
    return any(
        textwrap.dedent("\n".join(lines[start : start + size])) == wanted
        for start in range(len(lines) - size + 1)
    )


def test_excerpts_match_their_programs() -> None:
    excerpts = [block for block in python_blocks() if block.before == EXCERPT]
    for block in excerpts:
        programs = [b.code for b in RUNNABLE if b.path == block.path]
        assert any(contains(program, block.code) for program in programs), (
            f"{block.id}: this excerpt is in no runnable block of its page; copy it again"
        )


def test_readme_and_docs_have_runnable_blocks() -> None:
    pages = {block.path.name for block in RUNNABLE}
    assert {"README.md", "getting-started.md"} <= pages


def test_readme_commands() -> None:
    """The README's bash blocks hold exactly the demo and tests commands (CI reads the latter)."""
    commands = [
        line.strip()
        for block in code_blocks(ROOT / "README.md")
        if block.lang == "bash"
        for line in block.code.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert commands == README_COMMANDS


def test_example_blocks_match_files() -> None:
    """A block marked as an example shows the file as it is, and every example is shown."""
    shown: set[Path] = set()
    for block in python_blocks():
        marker = EXAMPLE_MARKER.match(block.before)
        if marker is None:
            continue
        example = ROOT / marker["path"]
        assert example in EXAMPLES, f"{block.id}: no example {marker['path']}"
        assert block.code == example.read_text(encoding="utf-8"), (
            f"{block.id} differs from {marker['path']}; copy the file into the page again"
        )
        shown.add(example)
    assert shown == set(EXAMPLES), f"examples not shown in docs: {set(EXAMPLES) - shown}"


# --- docs/examples -------------------------------------------------------------------------------


@pytest.fixture(scope="session", params=EXAMPLES, ids=[path.name for path in EXAMPLES])
def example(request: pytest.FixtureRequest) -> Path:
    path: Path = request.param
    return path


def test_example(example: Path, database_url: str, tmp_path: Path) -> None:
    assert_ok(run_python(str(example), cwd=tmp_path, database_url=database_url))


# --- the demo ------------------------------------------------------------------------------------


def assert_demo_output(result: subprocess.CompletedProcess[str]) -> None:
    assert_ok(result)
    missing = [line for line in DEMO_LINES if line not in result.stdout]
    assert not missing, f"missing from the demo's output: {missing}\n{report(result)}"


def test_demo_runs_on_sqlite_in_memory(tmp_path: Path) -> None:
    result = run_python("-m", "herorepo", "demo", cwd=tmp_path)
    assert_demo_output(result)
    assert "demo on sqlite+aiosqlite://" in result.stdout


def test_demo_runs_on_backend(database_url: str, tmp_path: Path) -> None:
    result = run_python("-m", "herorepo", "demo", "--url", database_url, cwd=tmp_path)
    assert_demo_output(result)
    password = make_url(database_url).password
    if password:
        assert password not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "server",
    [
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ],
)
def test_demo_hides_password_on_server(server: str, tmp_path: Path) -> None:
    """With a password in the URL the demo runs, or the server refuses it; it is never shown."""
    require(server)
    url = make_url(backend_url(server))
    if not url.password:
        url = url.set(password="s3cret-demo-pw")
    password = str(url.password)
    rendered = url.render_as_string(hide_password=False)
    result = run_python("-m", "herorepo", "demo", "--url", rendered, cwd=tmp_path)
    output = result.stdout + result.stderr
    assert password not in output, report(result)
    assert result.returncode in (0, 1), report(result)
    assert "Traceback" not in output, report(result)


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("postgresql+asyncpg://u:s3cret@127.0.0.1:1/x", 1),
        ("postgres://u:s3cret@127.0.0.1:1/x", 1),
        ("mysql+aiomysql://u:s3cret@127.0.0.1:1/x", 1),
        ("postgresql+psycopg2://u:s3cret@127.0.0.1:1/x", 2),
        ("oracle://u:s3cret@127.0.0.1:1/x", 2),
        ("sqlite+aiosqlite://u:s3cret@/demo.db", 2),
    ],
    ids=[
        "asyncpg-refused",
        "plain-postgres-refused",
        "aiomysql-refused",
        "wrong-driver",
        "unsupported-database",
        "sqlite-with-host",
    ],
)
def test_demo_never_prints_password(url: str, status: int, tmp_path: Path) -> None:
    result = run_python("-m", "herorepo", "demo", "--url", url, cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == status, report(result)
    assert "s3cret" not in output, report(result)
    assert "***" in output, report(result)
    assert "Traceback" not in output, report(result)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("nonsense", "Could not parse the database URL"),
        ("", "The database URL is empty"),
        ("postgresql+psycopg2://app@db/app", "not supported: herorepo runs on the async driver"),
    ],
    ids=["nonsense", "empty", "wrong-driver"],
)
def test_demo_rejects_bad_url(url: str, message: str, tmp_path: Path) -> None:
    result = run_python("-m", "herorepo", "demo", "--url", url, cwd=tmp_path)
    assert result.returncode == 2, report(result)
    assert message in result.stderr, report(result)
    assert result.stderr.startswith("herorepo demo: error: "), report(result)
    assert "Traceback" not in result.stderr, report(result)
    assert "1. Models" not in result.stdout


def test_command_without_subcommand_prints_usage(tmp_path: Path) -> None:
    result = run_python("-m", "herorepo", cwd=tmp_path)
    assert result.returncode == 2, report(result)
    assert "usage: herorepo" in result.stderr


def test_console_script_runs_demo(tmp_path: Path) -> None:
    scripts = Path(sys.executable).parent
    script = scripts / ("herorepo.exe" if os.name == "nt" else "herorepo")
    if not script.exists():
        pytest.skip(f"the herorepo console script is not installed next to {sys.executable}")
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    result = subprocess.run(
        [str(script), "demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=TIMEOUT,
        check=False,
    )
    assert_demo_output(result)


def test_import_herorepo_does_not_import_demo(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "import herorepo, herorepo.__main__\n"
        "from sqlmodel import SQLModel\n"
        "assert 'herorepo._demo' not in sys.modules, 'importing herorepo imported the demo'\n"
        "assert not any(name.startswith('demo_') for name in SQLModel.metadata.tables)\n"
    )
    assert_ok(run_python("-c", code, cwd=tmp_path))
