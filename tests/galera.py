"""A throw-away 3-node MariaDB Galera cluster on loopback ports, for tests/scaling/test_galera.py.

The facts behind it are in ../shared/research/galera-probe.sh: the first node bootstraps the
cluster (``--wsrep-new-cluster``), the others join one at a time by rsync SST; as root, mariadbd
runs as ``mysql`` (the rsync daemon of a joiner drops to ``nobody`` otherwise, and SST fails),
so the node directories belong to ``mysql``. Every node has its own SQL, group (gcomm), IST and
SST port, all free loopback ports checked before each start, its own tmpdir (a starting mariadbd
deletes the ``#sql`` files of its tmpdir), and a cluster name of its own, so a node left over
from another run can never join. Failure detection is tuned (a dead node is evicted in about
3 s instead of 6) and the buffer pool small. Every wait is bounded; the nodes (and the rsync
daemons of their SST scripts, in their process groups) are killed on teardown and at exit.

Fixture: ``galera_cluster`` (module scope). Without galera-4, mariadbd or rsync the tests skip
with the reason, unless HEROREPO_REQUIRE_GALERA=1 (CI): then they fail.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .servers import (
    START_TIMEOUT,
    STOP_TIMEOUT,
    ServerError,
    ServerUnavailable,
    _is_root,
    _new_directory,
    _tail,
    free_port,
    skip_or_fail,
)

PROVIDER = Path(os.environ.get("HEROREPO_GALERA_PROVIDER", "/usr/lib/galera/libgalera_smm.so"))
SIZE = 3
# Faster failure detection than the defaults (5 s suspect, 15 s inactive); keepalive_period
# must stay below suspect_timeout / 3, or gcomm refuses to open.
EVS = (
    "evs.keepalive_period=PT0.5S;evs.suspect_timeout=PT2S;evs.inactive_timeout=PT4S;"
    "evs.install_timeout=PT3S"
)
SYNC_TIMEOUT = 120.0  # a joiner's SST on a loaded 2-core machine
_SEARCH_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=_SEARCH_PATH)
    if found is None:
        raise ServerUnavailable(f"{name} not found (Galera nodes need it)")
    return found


def galera_tools() -> dict[str, str]:
    """The programs a Galera node needs, or ServerUnavailable naming the first one missing."""
    if not PROVIDER.is_file():
        raise ServerUnavailable(
            f"the Galera provider {PROVIDER} is missing; install the galera-4 package "
            "(or set HEROREPO_GALERA_PROVIDER)"
        )
    tools = {
        name: _tool(name)
        for name in ("mariadbd", "mariadb-install-db", "wsrep_sst_rsync", "wsrep_sst_common")
    }
    tools["rsync"] = _tool("rsync")
    if shutil.which("ss", path=_SEARCH_PATH) is None and shutil.which("lsof") is None:
        raise ServerUnavailable("neither ss nor lsof found (the rsync SST script needs one)")
    if _is_root():
        import pwd

        try:
            pwd.getpwnam("mysql")
        except KeyError as exc:
            raise ServerUnavailable("running as root, and there is no 'mysql' user") from exc
    return tools


def _port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


class GaleraNode:
    """One mariadbd of the cluster, with its directory and its four ports."""

    def __init__(self, cluster: GaleraCluster, number: int, directory: Path) -> None:
        self.cluster = cluster
        self.number = number
        self.name = f"n{number}"
        self.directory = directory
        self.data = directory / "data"
        self.log = directory / "error.log"
        self.port, self.group_port, self.ist_port, self.sst_port = (free_port() for _ in range(4))
        self._process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"<GaleraNode {self.name} 127.0.0.1:{self.port}>"

    @property
    def url(self) -> str:
        return f"mysql+aiomysql://root@127.0.0.1:{self.port}/test"

    @property
    def pid(self) -> int | None:
        if self._process is None or self._process.poll() is not None:
            return None
        return self._process.pid

    @property
    def running(self) -> bool:
        return self.pid is not None

    def write_config(self) -> None:
        peers = ",".join(f"127.0.0.1:{node.group_port}" for node in self.cluster.nodes)
        options = (
            f"gmcast.listen_addr=tcp://127.0.0.1:{self.group_port};"
            f"ist.recv_addr=127.0.0.1:{self.ist_port};gcache.size=32M;{EVS}"
        )
        (self.directory / "tmp").mkdir(exist_ok=True)
        (self.directory / "my.cnf").write_text(
            "[mysqld]\n"
            f"datadir={self.data}\n"
            f"tmpdir={self.directory / 'tmp'}\n"
            f"socket={self.directory / 'mysqld.sock'}\n"
            f"pid-file={self.directory / 'mysqld.pid'}\n"
            f"log-error={self.log}\n"
            f"port={self.port}\n"
            "bind-address=127.0.0.1\n"
            "skip-name-resolve\n"
            "innodb_buffer_pool_size=32M\n"
            "innodb_log_file_size=16M\n"
            "innodb_flush_log_at_trx_commit=2\n"
            "performance_schema=OFF\n"
            "max_connections=100\n"
            "binlog_format=ROW\n"
            "default_storage_engine=InnoDB\n"
            "innodb_autoinc_lock_mode=2\n"
            "wsrep_on=ON\n"
            f"wsrep_provider={PROVIDER}\n"
            f"wsrep_cluster_name={self.cluster.name}\n"
            f"wsrep_cluster_address=gcomm://{peers}\n"
            f"wsrep_node_name={self.name}\n"
            f"wsrep_node_address=127.0.0.1:{self.group_port}\n"
            f'wsrep_provider_options="{options}"\n'
            "wsrep_sst_method=rsync\n"
            f"wsrep_sst_receive_address=127.0.0.1:{self.sst_port}\n",
            encoding="utf-8",
        )

    def start(self, *, bootstrap: bool = False) -> None:
        """Start mariadbd (bootstrapping a new cluster, or joining); return once it runs."""
        if self.running:
            return
        taken = [
            port
            for port in (self.port, self.group_port, self.ist_port, self.sst_port)
            if _port_taken(port)
        ]
        if taken:
            raise ServerError(f"{self.name}: ports {taken} are already taken; not starting")
        command = [
            self.cluster.tools["mariadbd"],
            f"--defaults-file={self.directory / 'my.cnf'}",  # must come first
            *(["--user=mysql"] if _is_root() else []),
            *(["--wsrep-new-cluster"] if bootstrap else []),
        ]
        env = {**os.environ, "PATH": f"{os.environ.get('PATH', '')}:{_SEARCH_PATH}"}
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: SST scripts and rsync included
            env=env,
        )

    def kill(self) -> None:
        """SIGKILL the node (and its SST helpers): a crash. Returns once it is gone."""
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise ServerError(f"{self.name} survived SIGKILL for {STOP_TIMEOUT:g} s") from None

    def status(self, name: str) -> str | None:
        """``SHOW GLOBAL STATUS LIKE name`` on this node, or None when it does not answer."""
        import pymysql

        try:
            connection = pymysql.connect(
                host="127.0.0.1", port=self.port, user="root", connect_timeout=2, read_timeout=5
            )
        except pymysql.err.MySQLError:
            return None
        try:
            with connection.cursor() as cursor:
                cursor.execute("SHOW GLOBAL STATUS LIKE %s", (name,))
                row = cursor.fetchone()
        except pymysql.err.MySQLError:
            return None
        finally:
            connection.close()
        return None if row is None else str(row[1])

    def query(
        self, statement: str, *, sync_wait: bool = True, database: str | None = "test"
    ) -> list[tuple[object, ...]]:
        """Run ``statement`` in the ``test`` database; with ``sync_wait`` after every write the
        cluster had ordered when it was sent has been applied here (causal read)."""
        import pymysql

        connection = pymysql.connect(
            host="127.0.0.1",
            port=self.port,
            user="root",
            database=database,
            connect_timeout=5,
            read_timeout=60,
        )
        try:
            with connection.cursor() as cursor:
                if sync_wait:
                    cursor.execute("SET SESSION wsrep_sync_wait = 1")
                cursor.execute(statement)
                rows = list(cursor.fetchall())
            connection.commit()
        finally:
            connection.close()
        return rows

    def wait_synced(self, *, size: int | None = None, timeout: float = SYNC_TIMEOUT) -> float:
        """Wait until the node is Synced (in a cluster of ``size``); return the seconds waited."""
        started = time.monotonic()
        while True:
            if not self.running:
                raise ServerError(f"{self.name} exited:\n{_tail(self.log)}")
            if self.status("wsrep_local_state_comment") == "Synced" and (
                size is None or self.status("wsrep_cluster_size") == str(size)
            ):
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise ServerError(f"{self.name} not Synced after {timeout:g} s:\n{_tail(self.log)}")
            time.sleep(0.1)


class GaleraCluster:
    """Three Galera nodes on loopback; :attr:`started_in` is the bring-up time from nothing."""

    def __init__(self) -> None:
        self.tools = galera_tools()
        self.name = f"herorepo-{secrets.token_hex(4)}"
        self.directory = _new_directory("herorepo-galera-", owner="mysql")
        self.nodes: list[GaleraNode] = []
        self.started_in = 0.0
        _live.add(self)

    @classmethod
    def create(cls) -> GaleraCluster:
        """Install three data directories, bootstrap the first node, join the other two."""
        cluster = cls()
        try:
            cluster._bring_up()
        except BaseException:
            cluster.close()
            raise
        return cluster

    def _bring_up(self) -> None:
        started = time.monotonic()
        for number in range(1, SIZE + 1):
            directory = self.directory / f"n{number}"
            directory.mkdir()
            self.nodes.append(GaleraNode(self, number, directory))
        installs: list[subprocess.Popen[bytes]] = []
        for node in self.nodes:
            node.write_config()
            if _is_root():
                _chown_tree(node.directory, "mysql")
            installs.append(
                subprocess.Popen(
                    [
                        self.tools["mariadb-install-db"],
                        "--no-defaults",
                        f"--datadir={node.data}",
                        f"--tmpdir={node.directory / 'tmp'}",
                        *(["--user=mysql"] if _is_root() else []),
                        "--auth-root-authentication-method=normal",  # root, empty password
                        "--skip-test-db",
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        for install in installs:  # in parallel: about 1 s each
            try:
                code = install.wait(timeout=START_TIMEOUT)
            except subprocess.TimeoutExpired:
                install.kill()
                install.wait(timeout=STOP_TIMEOUT)
                raise ServerError("mariadb-install-db hung") from None
            if code != 0:
                raise ServerError(f"mariadb-install-db exited with {code}")
        first, *joiners = self.nodes
        first.start(bootstrap=True)
        first.wait_synced()
        first.query("CREATE DATABASE test", sync_wait=False, database=None)
        for node in joiners:  # one at a time: a donor serves one SST at a time
            node.start()
            node.wait_synced()
        for node in self.nodes:
            node.wait_synced(size=SIZE)
        self.started_in = time.monotonic() - started

    @property
    def url(self) -> str:
        """The ``test`` database through the list of all nodes."""
        hosts = "&".join(f"host=127.0.0.1:{node.port}" for node in self.nodes)
        return f"mysql+aiomysql://root@/test?{hosts}"

    def node_by_port(self, port: int) -> GaleraNode:
        return next(node for node in self.nodes if node.port == port)

    def ensure_whole(self) -> None:
        """Restart any node that is down, and wait until all are Synced in one cluster."""
        for node in self.nodes:
            if not node.running:
                node.start()
                node.wait_synced()
        for node in self.nodes:
            node.wait_synced(size=SIZE)

    def close(self) -> None:
        """Kill every node (and its helpers), then delete the cluster's directory."""
        try:
            for node in self.nodes:
                with contextlib.suppress(Exception):
                    node.kill()
        finally:
            _live.discard(self)
            shutil.rmtree(self.directory, ignore_errors=True)


def _chown_tree(path: Path, user: str) -> None:
    shutil.chown(path, user=user, group=user)
    for root, directories, files in os.walk(path):
        for name in (*directories, *files):
            shutil.chown(Path(root) / name, user=user, group=user)


_live: set[GaleraCluster] = set()


@atexit.register
def _stop_leftovers() -> None:  # a teardown that never ran must not leave nodes behind
    for cluster in list(_live):
        with contextlib.suppress(Exception):
            cluster.close()


@pytest.fixture(scope="module")
def galera_cluster() -> Iterator[GaleraCluster]:
    """A 3-node Galera cluster of this module's own, all nodes Synced at the start of each test
    (a node a test killed is restarted)."""
    try:
        cluster = GaleraCluster.create()
    except ServerUnavailable as exc:
        skip_or_fail("galera", str(exc))
    try:
        yield cluster
    finally:
        cluster.close()
