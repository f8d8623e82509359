"""Which processes a benchmark counts as a Herald's, and what each one is."""

from __future__ import annotations

import os

from bench.procinfo import ProcInfo, ray_session_of, read_proc, role_of, select_family

SESSION = "/tmp/ray/session_2026-11-28_12-55-45_632473_16495"


def proc(pid: int, ppid: int, sid: int, cmdline: str) -> ProcInfo:
    return ProcInfo(pid=pid, ppid=ppid, sid=sid, rss_kib=pid, pss_kib=pid, cmdline=cmdline)


def test_roles_come_from_ray_titles_and_command_lines() -> None:
    assert role_of("ray::ServeReplica:herald:Intake") == "Serve replica"
    assert role_of("ray::QueueActor.lease") == "QueueActor (shard)"
    assert role_of("ray::herald-email-1:ChannelActor.__init__") == "other Ray worker"
    assert role_of(f".../ray/raylet/raylet --raylet_socket_name={SESSION}/sockets/raylet") == "raylet"
    assert role_of(f".../gcs/gcs_server --log_dir={SESSION}/logs") == "gcs_server"
    assert role_of("/venv/bin/python .venv/bin/herald up") == "herald up (driver)"
    assert role_of("vim notes.md") == "other"
    # PostgreSQL's processes (its benchmarks count them): the postmaster and every backend.
    assert role_of("/usr/lib/postgresql/16/bin/postgres -D /tmp/herald-pg-x/data") == "postgres"
    assert role_of("postgres: herald herald 127.0.0.1(40112) COMMIT") == "postgres"
    assert role_of("postgres: walwriter ") == "postgres"


def test_the_ray_session_is_read_from_a_command_line() -> None:
    assert ray_session_of(f"raylet --raylet_socket_name={SESSION}/sockets/raylet") == \
        "session_2026-11-28_12-55-45_632473_16495"
    assert ray_session_of("ray::IDLE") is None


def test_family_is_session_descendants_and_same_ray_session_never_another_ray() -> None:
    processes = [
        proc(100, 1, 100, "herald up"),
        proc(101, 100, 100, f"raylet --raylet_socket_name={SESSION}/sockets/raylet"),
        proc(102, 101, 102, "ray::QueueActor"),  # own process group and session: a descendant
        proc(103, 1, 103, f"log_monitor.py --session-dir={SESSION}"),  # re-parented daemon
        proc(200, 1, 200, "raylet --raylet_socket_name=/tmp/ray/session_2026-01-01_00-00-00_1_2/x"),
        proc(201, 200, 200, "ray::QueueActor"),  # another Ray's worker
    ]
    assert {p.pid for p in select_family(processes, 100)} == {100, 101, 102, 103}


def test_this_process_reads_with_memory() -> None:
    me = read_proc(os.getpid())
    assert me is not None and me.rss_kib > 0 and me.pss_kib > 0 and me.ppid == os.getppid()
