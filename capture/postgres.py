"""A real PostgreSQL on loopback for the tests and the benchmarks: Debian's server, started on a
free port in a temp dir.

``postgres`` refuses to run as root, so as root the server runs as the ``postgres`` user (its
files owned by it); as anyone else it runs as that user. Nothing listens beyond 127.0.0.1, and
the Unix socket lives in the server's own directory. ``make test`` and ``make bench`` install
the package (``make pg-deps``); without it the tests that need one skip with the reason.
``durable`` keeps PostgreSQL's defaults (fsync, ``synchronous_commit`` and full page writes
on): what ``make bench`` measures; unit tests turn them off.

A primary can be given a streaming standby (``standby``): a base backup with
``primary_conninfo``, synchronous when asked, promoted with ``promote``: how the failover test
loses its primary.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from capture.net import free_port

BIN_ROOT = Path("/usr/lib/postgresql")
USER = "herald"
DATABASE = "herald"


def pg_bin() -> Path | None:
    """The newest installed server's bin directory, or None without one."""
    versions = sorted((p for p in BIN_ROOT.glob("*/bin") if (p / "postgres").exists()),
                      key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    return versions[-1] if versions else None


def _as_postgres(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


class PostgresServer:
    """One running server (``start``), its database ``herald`` owned by user ``herald``."""

    def __init__(self, root: Path, port: int, *, durable: bool = True) -> None:
        self.root = root
        self.port = port
        self.durable = durable
        self.data = root / "data"
        self.log = root / "server.log"

    # -- life ------------------------------------------------------------------------------
    @classmethod
    def create(cls, *, durable: bool = True, parent: Path | None = None) -> PostgresServer:
        """initdb a new cluster in a temp dir and start it."""
        bindir = pg_bin()
        if bindir is None:
            raise RuntimeError("PostgreSQL is not installed (make pg-deps)")
        root = Path(tempfile.mkdtemp(prefix="herald-pg-", dir=parent))
        os.chmod(root, 0o755)
        if os.geteuid() == 0:
            shutil.chown(root, "postgres", "postgres")
        server = cls(root, free_port(), durable=durable)
        server._run([str(bindir / "initdb"), "-D", str(server.data), "-U", USER, "--auth=trust",
                     "-E", "UTF8", "--no-instructions"])
        with open(server.data / "postgresql.conf", "a") as conf:
            conf.write(server._settings())
        with open(server.data / "pg_hba.conf", "a") as hba:
            hba.write(f"host replication {USER} 127.0.0.1/32 trust\n")
        server.start()
        server.sql(f"CREATE DATABASE {DATABASE}", database="postgres")
        return server

    def _settings(self) -> str:
        lines = [f"port = {self.port}", "listen_addresses = '127.0.0.1'",
                 f"unix_socket_directories = '{self.root}'", "max_connections = 200",
                 "wal_level = replica", "max_wal_senders = 5", "hot_standby = on",
                 "shared_buffers = 32MB", "logging_collector = off"]
        if not self.durable:  # unit tests only: what they test is not the disk
            lines += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
        return "\n" + "\n".join(lines) + "\n"

    def _run(self, argv: list[str]) -> None:
        subprocess.run(_as_postgres(argv), check=True, capture_output=True, cwd=self.root)

    def start(self) -> None:
        bindir = pg_bin()
        assert bindir is not None
        self._run([str(bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w",
                   "-t", "60", "start"])

    def stop(self, mode: str = "fast") -> None:
        bindir = pg_bin()
        assert bindir is not None
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run([str(bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"])

    def kill(self) -> None:
        """SIGKILL the postmaster and every backend: a machine that dies."""
        pid = self.pid()
        if pid is None:
            return
        subprocess.run(["pkill", "-KILL", "-P", str(pid)], check=False)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    def freeze(self, sig: signal.Signals = signal.SIGSTOP) -> None:
        """SIGSTOP the postmaster and every backend: a server that answers nothing while its
        kernel still accepts connections and acknowledges what is sent (a stalled disk, a
        paused VM); no error ever reaches a client. ``thaw`` (SIGCONT) lets it go on; ``kill``
        ends it either way."""
        pid = self.pid()
        assert pid is not None, "the server is not running"
        children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
        for each in (pid, *map(int, children.stdout.split())):
            with contextlib.suppress(ProcessLookupError):
                os.kill(each, sig)

    def thaw(self) -> None:
        self.freeze(signal.SIGCONT)

    def pid(self) -> int | None:
        pidfile = self.data / "postmaster.pid"
        try:
            return int(pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    # -- use -------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"postgresql://{USER}:herald@127.0.0.1:{self.port}/{DATABASE}"

    def sql(self, statement: str, database: str = DATABASE) -> str:
        """Run one statement with psql; its output (unaligned, tuples only)."""
        bindir = pg_bin()
        assert bindir is not None
        done = subprocess.run(
            [str(bindir / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", USER,
             "-d", database, "-At", "-v", "ON_ERROR_STOP=1", "-c", statement],
            check=True, capture_output=True, text=True)
        return done.stdout.strip()

    def fresh_database(self, name: str) -> str:
        """An empty database of its own on this server: its URL."""
        self.sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", database="postgres")
        self.sql(f"CREATE DATABASE {name}", database="postgres")
        return f"postgresql://{USER}:herald@127.0.0.1:{self.port}/{name}"

    # -- replication -----------------------------------------------------------------------
    def standby(self, *, synchronous: bool = True) -> PostgresServer:
        """A streaming standby of this server, started; with ``synchronous`` this primary's
        commits wait for it (``synchronous_commit = on``: flushed on both)."""
        bindir = pg_bin()
        assert bindir is not None
        root = Path(tempfile.mkdtemp(prefix="herald-pg-standby-", dir=self.root.parent))
        os.chmod(root, 0o755)
        if os.geteuid() == 0:
            shutil.chown(root, "postgres", "postgres")
        replica = PostgresServer(root, free_port(), durable=self.durable)
        replica._run([str(bindir / "pg_basebackup"), "-D", str(replica.data), "-R",
                      "-X", "stream", "-c", "fast", "-d", f"host=127.0.0.1 port={self.port} user={USER}"
                      " application_name=standby"])
        with open(replica.data / "postgresql.conf", "a") as conf:
            conf.write(replica._settings())
        replica.start()
        if synchronous:
            self.sql("ALTER SYSTEM SET synchronous_standby_names = 'standby'")
            self.sql("SELECT pg_reload_conf()")
            deadline = time.monotonic() + 30
            while self.sql("SELECT sync_state FROM pg_stat_replication") != "sync":
                if time.monotonic() > deadline:
                    raise RuntimeError("the standby never became synchronous")
                time.sleep(0.2)
        return replica

    def promote(self) -> None:
        bindir = pg_bin()
        assert bindir is not None
        self._run([str(bindir / "pg_ctl"), "-D", str(self.data), "-w", "promote"])


@contextlib.contextmanager
def running_postgres(*, durable: bool = True) -> Iterator[PostgresServer]:
    server = PostgresServer.create(durable=durable)
    try:
        yield server
    finally:
        server.destroy()
