"""How a process on this box reaches the Ray that `herald up` started: its address, recorded
in the data dir, and joining it over loopback (Ray's switch for that: ``jobs.ray_private``).

`herald up` starts a Ray of one box that listens on 127.0.0.1 only, and writes its GCS address
to ``DATA_DIR/ray-address.json`` (with its own pid) while it runs. `herald rollup` and
``python -m jobs.rollup`` join that Ray through the record, not through Ray's ``address="auto"``
(which finds whichever Ray on the machine started last and, without the loopback switch, calls
its GCS at the machine's network address, where nothing answers: ``ray.init`` then waits for
minutes), and as Ray joins a local Ray it finds (with its token, when it has one). Before
joining they check with a short connect that the GCS answers.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from herald.data_dir import DataDir
from jobs.ray_private import enable_token_auth_if_token_exists, stay_on_loopback

#: How long a GCS has to accept a connection before it counts as not answering.
CONNECT_SECONDS = 2.0


class RayUnreachable(ConnectionError):
    """The Ray a record names does not answer (its message is one line for a user)."""


@dataclass(frozen=True)
class RayRecord:
    """A local Herald's Ray: its GCS at ``gcs_address`` (``127.0.0.1:PORT``), kept by ``pid``."""

    gcs_address: str
    pid: int

    def host_port(self) -> tuple[str, int]:
        host, _, port = self.gcs_address.rpartition(":")
        return host.strip("[]"), int(port)

    def owner_running(self) -> bool:
        """Whether the `herald up` that wrote this record still runs (a crash leaves it)."""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # someone else's process of that pid: it runs
            return True
        return True


def write_record(data_dir: Path, gcs_address: str) -> Path:
    """Record this process's local Ray in ``data_dir`` (atomically: a reader never sees half)."""
    path = DataDir(data_dir).ray_record
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps({"gcs_address": gcs_address, "pid": os.getpid()}) + "\n")
    partial.replace(path)
    return path


def remove_record(data_dir: Path) -> None:
    """Remove the record if this process wrote it (another `herald up` may have replaced it)."""
    record = read_record(data_dir)
    if record is not None and record.pid == os.getpid():
        DataDir(data_dir).ray_record.unlink(missing_ok=True)


def read_record(data_dir: Path) -> RayRecord | None:
    """The recorded Ray; None if there is none or it cannot be read (then there is none)."""
    try:
        values = json.loads(DataDir(data_dir).ray_record.read_text())
        return RayRecord(str(values["gcs_address"]), int(values["pid"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def answers(host: str, port: int, timeout: float = CONNECT_SECONDS) -> bool:
    """Whether something accepts a TCP connection at ``host:port`` within ``timeout`` s."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def recorded_address(data_dir: Path) -> str | None:
    """The GCS address of the local Herald's Ray recorded in ``data_dir``, checked to answer.

    None when there is no record, or the `herald up` that wrote it is gone (a stale record of a
    crash: the caller uses a Ray of its own). Raises RayUnreachable when that `herald up` still
    runs but its Ray does not answer.
    """
    record = read_record(data_dir)
    if record is None:
        return None
    host, port = record.host_port()
    if answers(host, port):
        return record.gcs_address
    if not record.owner_running():
        return None
    raise RayUnreachable(
        f"no Ray answers at {record.gcs_address}, the Ray of `herald up` (pid {record.pid}) "
        f"recorded in {DataDir(data_dir).ray_record}; if that Herald is not running, delete the file")


def is_loopback(address: str) -> bool:
    host = address.rpartition(":")[0].strip("[]")
    return host in ("localhost", "::1") or host.startswith("127.")


def join_locally() -> None:
    """Join a Ray of this box as Ray joins one it finds itself (``address="auto"``): over
    loopback, and with token authentication if a token exists (``ray.init`` of a new local Ray,
    as `herald up` does, turns it on and makes a token; an explicit address never does)."""
    stay_on_loopback()
    enable_token_auth_if_token_exists()
