"""A throwaway ``redis-server`` on a free loopback port, data in a temp dir, for the Celery peer.

Never 6379 (a local Ray's GCS may hold it) and never the system's Redis: the port is one the
kernel handed out. ``fsync=True`` gives Redis the durability Herald's ``202`` has (SQLite with
``synchronous=FULL``): an append-only file fsynced before each reply (``appendfsync always``);
``fsync=False`` keeps everything in memory (``--save '' --appendonly no``).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time

from capture.net import free_port

HOST = "127.0.0.1"


class RedisServer:
    """``with RedisServer(fsync=True) as redis:`` → ``redis.url``; stopped and removed after."""

    def __init__(self, fsync: bool = True) -> None:
        self.fsync = fsync
        self.port = free_port()
        if self.port == 6379:  # cannot happen with an ephemeral port; never take Ray's
            raise RuntimeError("refusing port 6379")
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    @property
    def durability(self) -> str:
        return "appendonly, appendfsync always" if self.fsync else "in memory (no save, no AOF)"

    def start(self, timeout: float = 15.0) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (make bench installs it with apt-get)")
        self._dir = tempfile.TemporaryDirectory(prefix="herald-bench-redis-")
        persistence = (["--appendonly", "yes", "--appendfsync", "always"] if self.fsync
                       else ["--appendonly", "no"])
        self._process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", HOST, "--dir", self._dir.name,
             "--save", "", *persistence, "--daemonize", "no", "--protected-mode", "yes",
             "--loglevel", "warning", "--logfile", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start on {HOST}:{self.port}")
            time.sleep(0.05)
        return self

    def _answers(self) -> bool:
        try:
            with socket.create_connection((HOST, self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(5)
        self._process = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
