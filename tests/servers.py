"""Throw-away PostgreSQL and MariaDB servers that tests start, restart and stop themselves.

A test that stops a server, or needs a streaming replica, must not touch the shared servers at
5432 and 3306: other test runs use them. These servers live in a temporary directory, listen on a
free 127.0.0.1 port, and are removed at the end of the session (kill on teardown, and at exit if
a teardown never ran). Every wait is bounded.

* :class:`PostgresServer`: ``initdb`` + ``pg_ctl`` (run as the ``postgres`` user when the tests
  run as root, as PostgreSQL refuses root), with ``wal_level=replica`` and trusted replication
  from 127.0.0.1, so :meth:`PostgresServer.create_replica` can add a streaming replica
  (``pg_basebackup -R``).
* :class:`MariaDBServer`: ``mariadb-install-db`` + ``mariadbd``, user ``root`` with an empty
  password, as on the shared server.

Fixtures (registered by tests/conftest.py): ``throwaway_postgres`` and ``throwaway_mariadb``, one
server each per session, and ``throwaway_server``, parametrized over both; ``failover_pairs`` makes
a fresh :class:`FailoverPair` (a primary and a standby to promote) per call. Missing binaries skip
the test with the reason, unless HEROREPO_REQUIRE_BACKENDS lists the backend: then they fail it.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Literal, NoReturn

import pytest

StopMode = Literal["fast", "immediate"]
"""``fast``: a clean shutdown that ends sessions; ``immediate``: a crash (SIGQUIT / SIGKILL)."""

START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
COMMAND_TIMEOUT = 120.0


class ServerUnavailable(Exception):
    """The binaries (or the user) a throw-away server needs are not on this machine."""


class ServerError(Exception):
    """A throw-away server did not start or stop; the message ends with its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def _run(
    command: Sequence[str], *, timeout: float = COMMAND_TIMEOUT, log: Path | None = None
) -> str:
    try:
        result = subprocess.run(
            list(command),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise ServerError(f"{shlex.join(command)} took more than {timeout:g} s") from exc
    if result.returncode != 0:
        extra = f"\n--- log ---\n{_tail(log)}" if log is not None else ""
        raise ServerError(
            f"{shlex.join(command)} exited with {result.returncode}:\n"
            f"{result.stdout}{result.stderr}{extra}"
        )
    return result.stdout


_live: set[ThrowAwayServer] = set()


@atexit.register
def _stop_leftovers() -> None:  # a teardown that never ran must not leave servers behind
    for server in list(_live):
        with contextlib.suppress(Exception):
            server.close()


class ThrowAwayServer:
    """A database server of the test session's own; subclasses know how to run one."""

    backend: str
    url_template: str

    def __init__(self, directory: Path, port: int) -> None:
        self.directory = directory
        self.port = port
        self.restarts = 0
        _live.add(self)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} 127.0.0.1:{self.port} {self.directory}>"

    @property
    def url(self) -> str:
        """The URL of the ``test`` database on this server."""
        return self.url_template.format(port=self.port)

    @property
    def running(self) -> bool:
        return self.pid is not None

    @property
    def pid(self) -> int | None:
        """The server's main process, or None when it is not running."""
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    def stop(self, mode: StopMode = "fast") -> None:
        raise NotImplementedError

    def restart(self, mode: StopMode = "fast") -> None:
        """Stop the server (ending every session) and start it again on the same port."""
        self.stop(mode)
        self.start()
        self.restarts += 1

    def ensure_running(self) -> None:
        if not self.running:
            self.start()

    def close(self) -> None:
        """Stop the server however it can be stopped, and delete its directory."""
        try:
            if self.running:
                self.stop("immediate")
        finally:
            _live.discard(self)
            shutil.rmtree(self.directory, ignore_errors=True)


# --- PostgreSQL ----------------------------------------------------------------------------------


def postgres_bin() -> Path:
    """The directory of initdb and pg_ctl (HEROREPO_PG_BIN, else the newest Debian layout)."""
    configured = os.environ.get("HEROREPO_PG_BIN")
    candidates = [Path(configured)] if configured else []
    candidates += sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    found = shutil.which("pg_ctl")
    if found:
        candidates.append(Path(found).parent)
    for candidate in candidates:
        if all((candidate / tool).is_file() for tool in ("initdb", "pg_ctl", "pg_basebackup")):
            return candidate
    raise ServerUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl, pg_basebackup) not found; install the "
        "postgresql package or set HEROREPO_PG_BIN to their directory"
    )


def _postgres_user() -> list[str]:
    """The command prefix that runs a PostgreSQL tool as a user PostgreSQL accepts."""
    if not _is_root():
        return []
    runuser = shutil.which("runuser") or "/usr/sbin/runuser"
    if not Path(runuser).exists():
        raise ServerUnavailable("running as root, and runuser is missing to drop to postgres")
    try:
        import pwd

        pwd.getpwnam("postgres")
    except KeyError as exc:
        raise ServerUnavailable("running as root, and there is no 'postgres' user") from exc
    return [runuser, "-u", "postgres", "--"]


POSTGRES_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "max_connections": "60",
    "shared_buffers": "32MB",
    "fsync": "off",  # a throw-away server: speed over durability across an OS crash
    "wal_level": "replica",
    "max_wal_senders": "5",
    "hot_standby": "on",
    "wal_keep_size": "64MB",
    "logging_collector": "off",
}


class PostgresServer(ThrowAwayServer):
    backend = "postgres"
    url_template = "postgresql+asyncpg://postgres@127.0.0.1:{port}/test"

    def __init__(self, directory: Path, port: int) -> None:
        super().__init__(directory, port)
        self.bin = postgres_bin()
        self.prefix = _postgres_user()
        self.data = directory / "data"
        self.log = directory / "server.log"

    @classmethod
    def create(cls, settings: Mapping[str, str] | None = None) -> PostgresServer:
        """initdb a new cluster with a ``test`` database, started and ready."""
        postgres_bin(), _postgres_user()  # raise ServerUnavailable before making a directory
        server = cls(_new_directory("herorepo-pg-", owner="postgres"), free_port())
        try:
            _run(
                [
                    *server.prefix,
                    str(server.bin / "initdb"),
                    "-D",
                    str(server.data),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                ]
            )
            server._append_settings({**POSTGRES_SETTINGS, **(settings or {})})
            server.start()
            server.psql("CREATE DATABASE test")
        except BaseException:
            server.close()
            raise
        return server

    def create_replica(self) -> PostgresServer:
        """A streaming replica of this server (``pg_basebackup -R``), started and ready."""
        replica = PostgresServer(_new_directory("herorepo-pg-replica-", owner="postgres"), 0)
        try:
            _run(
                [
                    *self.prefix,
                    str(self.bin / "pg_basebackup"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-U",
                    "postgres",
                    "-D",
                    str(replica.data),
                    "-R",  # standby.signal and primary_conninfo
                    "-X",
                    "stream",
                    "--checkpoint=fast",
                    "--no-sync",
                ]
            )
            replica.port = free_port()
            replica.start()
        except BaseException:
            replica.close()
            raise
        return replica

    def promote(self) -> None:
        """Make this streaming replica a primary (``pg_ctl promote``); return once it is one."""
        _run(
            [
                *self.prefix,
                str(self.bin / "pg_ctl"),
                "promote",
                "-D",
                str(self.data),
                "-w",
                "-t",
                str(int(START_TIMEOUT)),
            ],
            timeout=START_TIMEOUT + 10,
            log=self.log,
        )

    def _append_settings(self, settings: Mapping[str, str]) -> None:
        lines = "".join(f"{name} = {value}\n" for name, value in settings.items())
        conf = self.data / "postgresql.conf"
        with conf.open("a", encoding="utf-8") as out:
            out.write("\n# herorepo throw-away server\n" + lines)

    def psql(self, sql: str, *, database: str = "postgres") -> str:
        """Run ``sql`` with psql and return its unaligned, tuples-only output."""
        return _run(
            [
                str(self.bin / "psql"),
                "-X",
                "-q",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                database,
                "-c",
                sql,
            ],
            timeout=30,
        ).strip()

    @property
    def pid(self) -> int | None:
        try:
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
            os.kill(pid, 0)
        except (OSError, ValueError, IndexError):
            return None
        return pid

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
        _run(
            [
                *self.prefix,
                str(self.bin / "pg_ctl"),
                "start",
                "-D",
                str(self.data),
                "-l",
                str(self.log),
                "-w",
                "-t",
                str(int(START_TIMEOUT)),
                "-o",
                options,
            ],
            timeout=START_TIMEOUT + 10,
            log=self.log,
        )

    def stop(self, mode: StopMode = "fast") -> None:
        pid = self.pid
        if pid is None:
            return
        try:
            _run(
                [
                    *self.prefix,
                    str(self.bin / "pg_ctl"),
                    "stop",
                    "-D",
                    str(self.data),
                    "-m",
                    mode,
                    "-w",
                    "-t",
                    str(int(STOP_TIMEOUT)),
                ],
                timeout=STOP_TIMEOUT + 10,
                log=self.log,
            )
        except ServerError:
            _kill_and_wait(pid)  # the last resort: its backends exit when the postmaster dies
            raise


class FailoverPair:
    """A primary and a streaming standby of it, for one test to fail over (never shared).

    With ``synchronous=True`` the primary acknowledges a COMMIT only once the standby has
    flushed it (``synchronous_standby_names = '*'``, set after the standby is up: the primary
    would wait for one before that). Promoting the standby leaves it without a standby of its
    own, as after a real failover.
    """

    def __init__(self, *, synchronous: bool) -> None:
        self.primary = PostgresServer.create()
        try:
            self.standby = self.primary.create_replica()
            if synchronous:
                self.primary.psql("ALTER SYSTEM SET synchronous_standby_names = '*'")
                self.primary.psql("SELECT pg_reload_conf()")
                self._wait_for_sync_standby()
        except BaseException:
            self.primary.close()
            raise
        self.synchronous = synchronous

    def _wait_for_sync_standby(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.primary.psql("SELECT sync_state FROM pg_stat_replication") == "sync":
                return
            time.sleep(0.05)
        raise ServerError(f"the standby did not become synchronous in {START_TIMEOUT:g} s")

    @property
    def url(self) -> str:
        """The ``test`` database through both hosts, the primary first."""
        return (
            "postgresql+asyncpg://postgres@/test"
            f"?host=127.0.0.1:{self.primary.port}&host=127.0.0.1:{self.standby.port}"
        )

    def close(self) -> None:
        try:
            self.standby.close()
        finally:
            self.primary.close()


# --- MariaDB -------------------------------------------------------------------------------------


def _mariadb_tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise ServerUnavailable(f"{name} not found; install the mariadb-server package")
    return found


class MariaDBServer(ThrowAwayServer):
    backend = "mysql"
    url_template = "mysql+aiomysql://root@127.0.0.1:{port}/test"

    def __init__(self, directory: Path, port: int) -> None:
        super().__init__(directory, port)
        self.daemon = _mariadb_tool("mariadbd")
        self.data = directory / "data"
        self.log = directory / "server.log"
        self._process: subprocess.Popen[bytes] | None = None

    @classmethod
    def create(cls) -> MariaDBServer:
        """mariadb-install-db a new data directory with a ``test`` database, started and ready."""
        install = _mariadb_tool("mariadb-install-db")
        _mariadb_tool("mariadbd")
        server = cls(_new_directory("herorepo-mariadb-", owner=None), free_port())
        try:
            _run(
                [
                    install,
                    "--no-defaults",
                    f"--datadir={server.data}",
                    f"--tmpdir={server.directory}",
                    *(["--user=root"] if _is_root() else []),
                    "--auth-root-authentication-method=normal",  # root, empty password
                    "--skip-test-db",
                ]
            )
            server.start()
            server.sql("CREATE DATABASE test")
        except BaseException:
            server.close()
            raise
        return server

    def sql(self, statement: str) -> None:
        import pymysql

        connection = pymysql.connect(
            host="127.0.0.1", port=self.port, user="root", connect_timeout=5
        )
        try:
            with connection.cursor() as cursor:
                cursor.execute(statement)
            connection.commit()
        finally:
            connection.close()

    @property
    def pid(self) -> int | None:
        if self._process is None or self._process.poll() is not None:
            return None
        return self._process.pid

    def start(self) -> None:
        if self.running:
            return
        command = [
            self.daemon,
            "--no-defaults",
            f"--datadir={self.data}",
            # Its own: a starting mariadbd deletes the #sql temporary files it finds in its tmpdir,
            # including those of other servers running beside it (/tmp by default).
            f"--tmpdir={self.directory}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            f"--socket={self.directory / 'mysqld.sock'}",
            f"--pid-file={self.directory / 'mysqld.pid'}",
            f"--log-error={self.log}",
            "--skip-name-resolve",
            "--skip-log-bin",
            "--innodb-buffer-pool-size=64M",
            "--innodb-flush-log-at-trx-commit=2",
            *(["--user=root"] if _is_root() else []),
        ]
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C meant for pytest does not reach it first
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._process = None
                raise ServerError(f"mariadbd exited at start:\n{_tail(self.log)}")
            if self._ready():
                return
            time.sleep(0.1)
        self.stop("immediate")
        raise ServerError(f"mariadbd did not accept connections in {START_TIMEOUT:g} s")

    def _ready(self) -> bool:
        import pymysql

        try:
            pymysql.connect(
                host="127.0.0.1", port=self.port, user="root", connect_timeout=1
            ).close()
        except pymysql.err.MySQLError:
            return False
        return True

    def stop(self, mode: StopMode = "fast") -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM if mode == "fast" else signal.SIGKILL)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)
            raise ServerError(f"mariadbd ignored SIGTERM for {STOP_TIMEOUT:g} s") from None


# --- PgBouncer -----------------------------------------------------------------------------------


def pgbouncer_binary() -> str:
    found = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise ServerUnavailable("pgbouncer not found; install the pgbouncer package")
    return found


RLS_ROLE = "herorepo_rls_app"
"""A login role without BYPASSRLS, for the row-level security tests through PgBouncer."""


class PgBouncer:
    """PgBouncer in transaction pooling mode in front of ``server``'s ``test`` database."""

    def __init__(self, server: PostgresServer, *, pool_size: int) -> None:
        binary = pgbouncer_binary()
        self.directory = _new_directory("herorepo-pgbouncer-", owner="postgres")
        self.port = free_port()
        self.log = self.directory / "pgbouncer.log"
        (self.directory / "userlist.txt").write_text('"postgres" ""\n', encoding="utf-8")
        ini = self.directory / "pgbouncer.ini"
        ini.write_text(
            "[databases]\n"
            f"test = host=127.0.0.1 port={server.port} dbname=test user=postgres\n"
            # The same database as a role that row-level security applies to (not a superuser).
            f"test_rls = host=127.0.0.1 port={server.port} dbname=test user={RLS_ROLE}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {self.directory / 'userlist.txt'}\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {pool_size}\n"
            "max_client_conn = 500\n"
            f"logfile = {self.log}\n"
            "admin_users = postgres\n"
            "server_reset_query = DISCARD ALL\n",
            encoding="utf-8",
        )
        if _is_root():
            for path in self.directory.iterdir():
                shutil.chown(path, user="postgres", group="postgres")
        owner = "postgres" if _is_root() else None
        self._process: subprocess.Popen[bytes] | None = subprocess.Popen(
            [binary, str(ini)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            user=owner,  # PgBouncer refuses to run as root
            group=owner,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._process = None
                raise ServerError(f"pgbouncer exited at start:\n{_tail(self.log)}")
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            time.sleep(0.05)
        self.close()
        raise ServerError(f"pgbouncer did not listen within {START_TIMEOUT:g} s")

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/test"

    @staticmethod
    def version() -> str:
        """``PgBouncer 1.18.0``: the first line of ``pgbouncer --version``."""
        return _run([pgbouncer_binary(), "--version"], timeout=10).splitlines()[0].strip()

    def close(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT)
        shutil.rmtree(self.directory, ignore_errors=True)


# --- helpers -------------------------------------------------------------------------------------


def _new_directory(prefix: str, *, owner: str | None) -> Path:
    directory = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp" if os.name == "posix" else None))
    if owner is not None and _is_root():
        shutil.chown(directory, user=owner, group=owner)
    return directory


def _kill_and_wait(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def required(server: str) -> str | None:
    """The setting that requires ``server`` ("postgres", "mysql", "pgbouncer" or "galera"), if
    one does."""
    if server in ("pgbouncer", "galera"):
        setting = f"HEROREPO_REQUIRE_{server.upper()}"
        return f"{setting}=1" if os.environ.get(setting) == "1" else None
    raw = os.environ.get("HEROREPO_REQUIRE_BACKENDS", "")
    listed = server in {part.strip() for part in raw.split(",")}
    return f"HEROREPO_REQUIRE_BACKENDS lists {server}" if listed else None


def skip_or_fail(server: str, reason: str) -> NoReturn:
    """Skip for a missing tool, unless a setting requires the server (as CI does): then fail."""
    setting = required(server)
    if setting is not None:
        pytest.fail(
            f"{setting}, but the throw-away {server} server cannot run: {reason}", pytrace=False
        )
    pytest.skip(f"throw-away {server} server unavailable: {reason}")


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def throwaway_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this session's own, on a free 127.0.0.1 port."""
    try:
        server = PostgresServer.create()
    except ServerUnavailable as exc:
        skip_or_fail("postgres", str(exc))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def throwaway_mariadb() -> Iterator[MariaDBServer]:
    """A MariaDB server of this session's own, on a free 127.0.0.1 port."""
    try:
        server = MariaDBServer.create()
    except ServerUnavailable as exc:
        skip_or_fail("mysql", str(exc))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def replicated_postgres() -> Iterator[tuple[PostgresServer, PostgresServer]]:
    """A primary of this session's own and a streaming replica of it (pg_basebackup -R)."""
    try:
        primary = PostgresServer.create()
    except ServerUnavailable as exc:
        skip_or_fail("postgres", str(exc))
    try:
        replica = primary.create_replica()
        try:
            yield primary, replica
        finally:
            replica.close()
    finally:
        primary.close()


@pytest.fixture
def failover_pairs() -> Iterator[Callable[..., FailoverPair]]:
    """Make :class:`FailoverPair` objects (``failover_pairs(synchronous=True)``), each fresh:
    a failover changes the topology for good. All are removed when the test ends."""
    made: list[FailoverPair] = []

    def make(*, synchronous: bool) -> FailoverPair:
        try:
            pair = FailoverPair(synchronous=synchronous)
        except ServerUnavailable as exc:
            skip_or_fail("postgres", str(exc))
        made.append(pair)
        return pair

    try:
        yield make
    finally:
        for pair in made:
            pair.close()


@pytest.fixture(scope="session")
def pgbouncer(throwaway_postgres: PostgresServer) -> Iterator[PgBouncer]:
    """PgBouncer (transaction pooling, 2 server connections) before ``throwaway_postgres``.

    Skipped where pgbouncer is not installed, unless HEROREPO_REQUIRE_PGBOUNCER=1 (CI): failed.
    """
    try:
        bouncer = PgBouncer(throwaway_postgres, pool_size=2)
    except ServerUnavailable as exc:
        skip_or_fail("pgbouncer", str(exc))
    try:
        yield bouncer
    finally:
        bouncer.close()


@pytest.fixture(
    scope="session",
    params=[
        pytest.param("postgres", marks=pytest.mark.postgres, id="postgres"),
        pytest.param("mysql", marks=pytest.mark.mysql, id="mysql"),
    ],
)
def throwaway_backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def throwaway_server(throwaway_backend: str, request: pytest.FixtureRequest) -> ThrowAwayServer:
    """The session's throw-away server of ``throwaway_backend``, running."""
    name = "throwaway_postgres" if throwaway_backend == "postgres" else "throwaway_mariadb"
    server: ThrowAwayServer = request.getfixturevalue(name)
    server.ensure_running()
    return server
