"""The record of a local Herald's Ray in the data dir: written, read, checked, removed."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from herald.data_dir import DataDir
from jobs.local_ray import (
    RayUnreachable,
    is_loopback,
    read_record,
    recorded_address,
    remove_record,
    write_record,
)


@pytest.fixture
def listening() -> Iterator[int]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_record_written_is_read_back_and_removed_by_its_writer(tmp_path: Path) -> None:
    write_record(tmp_path, "127.0.0.1:6380")
    record = read_record(tmp_path)
    assert record is not None and record.gcs_address == "127.0.0.1:6380"
    assert record.pid == os.getpid() and record.owner_running()
    assert record.host_port() == ("127.0.0.1", 6380)
    remove_record(tmp_path)
    assert not (DataDir(tmp_path).ray_record).exists()


def test_another_processes_record_is_not_removed(tmp_path: Path) -> None:
    (DataDir(tmp_path).ray_record).write_text(json.dumps({"gcs_address": "127.0.0.1:1", "pid": 1}))
    remove_record(tmp_path)
    assert (DataDir(tmp_path).ray_record).exists()


@pytest.mark.parametrize("text", ["", "{", "[]", '{"pid": 3}', '{"gcs_address": "x", "pid": "y"}'])
def test_an_unreadable_record_is_no_record(tmp_path: Path, text: str) -> None:
    (DataDir(tmp_path).ray_record).write_text(text)
    assert read_record(tmp_path) is None
    assert recorded_address(tmp_path) is None


def test_no_record_names_no_address(tmp_path: Path) -> None:
    assert recorded_address(tmp_path) is None


def test_a_recorded_ray_that_answers_is_joined(tmp_path: Path, listening: int) -> None:
    write_record(tmp_path, f"127.0.0.1:{listening}")
    assert recorded_address(tmp_path) == f"127.0.0.1:{listening}"


def test_a_running_heralds_ray_that_does_not_answer_is_one_clear_error(tmp_path: Path) -> None:
    write_record(tmp_path, f"127.0.0.1:{_closed_port()}")  # written by us: the owner runs
    with pytest.raises(RayUnreachable) as error:
        recorded_address(tmp_path)
    message = str(error.value)
    assert "\n" not in message and "no Ray answers" in message
    assert str(DataDir(tmp_path).ray_record) in message


def test_the_stale_record_of_a_herald_that_is_gone_is_ignored(tmp_path: Path) -> None:
    (DataDir(tmp_path).ray_record).write_text(json.dumps(
        {"gcs_address": f"127.0.0.1:{_closed_port()}", "pid": _dead_pid()}))
    assert recorded_address(tmp_path) is None


@pytest.mark.parametrize(("address", "loopback"), [
    ("127.0.0.1:6379", True), ("localhost:1", True), ("[::1]:6379", True),
    ("10.0.0.5:6379", False), ("ray://head:10001", False), ("auto", False)])
def test_loopback_addresses(address: str, loopback: bool) -> None:
    assert is_loopback(address) is loopback


def test_the_rollup_refuses_at_once_a_recorded_ray_that_does_not_answer(tmp_path: Path) -> None:
    # In a process of its own: the full suite has joined a Ray in this one already, and a
    # process joined to Ray does not connect again.
    check = f"""
import pytest, ray
from pathlib import Path
from jobs.local_ray import RayUnreachable, write_record
from jobs.rollup import connect
write_record(Path({str(tmp_path)!r}), "127.0.0.1:{_closed_port()}")
with pytest.raises(RayUnreachable):
    connect(None, Path({str(tmp_path)!r}))
with pytest.raises(RayUnreachable, match=r"no Ray answers at 127\\.0\\.0\\.1:"):
    connect("127.0.0.1:{_closed_port()}")
assert not ray.is_initialized()
"""
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True,
                          timeout=60, cwd=Path(__file__).parents[2])
    assert done.returncode == 0, done.stderr[-2000:]
