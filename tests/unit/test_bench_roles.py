"""Which part of Herald a process is, from the command line Ray gives it, and the CPU table."""

from __future__ import annotations

import pytest

from bench.roles import CLIENT, cpu_by_role, herald_role, role_table

SESSION = "/tmp/ray/session_2026-11-28_12-55-45_632473_16495"


@pytest.mark.parametrize(("title", "role"), [
    ("ray::ProxyActor", "proxy"),
    ("ray::HTTPProxyActor", "proxy"),
    ("ray::ServeReplica:herald:Intake", "replica"),
    ("ray::ServeReplica:herald:Intake.handle_request_with_rejection", "replica"),
    ("ray::QueueActor", "shards"),
    ("ray::QueueActor.lease", "shards"),
    ("ray::ChannelActor.run", "channel actors"),
    ("ray::herald-email-1:ChannelActor.__init__", "channel actors"),
    ("ray::ServeController", "others"),
    ("ray::Supervisor.watch", "others"),
    ("ray::RateLimiter", "others"),
    ("ray::IDLE", "others"),
    (f"/venv/lib/python3.11/site-packages/ray/core/src/ray/raylet/raylet "
     f"--raylet_socket_name={SESSION}/sockets/raylet", "others"),
    (f"/venv/.../ray/core/src/ray/gcs/gcs_server --log_dir={SESSION}/logs", "others"),
    ("/venv/bin/python -u /venv/.../ray/dashboard/agent.py --node-ip-address=127.0.0.1", "others"),
    # A command line naming an actor is not that actor: only Ray's title says what runs.
    ("/venv/bin/python -m tools.grep QueueActor", "others"),
    (CLIENT, "client + driver"),
    ("/usr/lib/postgresql/16/bin/postgres -D /tmp/herald-pg-x/data", "PostgreSQL"),
    ("postgres: herald herald 127.0.0.1(40112) COMMIT", "PostgreSQL"),
    ("postgres: walwriter ", "PostgreSQL"),
])
def test_each_process_has_one_role(title: str, role: str) -> None:
    assert herald_role(title) == role


def test_cpu_is_summed_per_role_in_print_order() -> None:
    seconds = cpu_by_role([("ray::QueueActor.lease", 2.0), ("raylet --x", 0.5),
                           ("ray::QueueActor", 1.0), (CLIENT, 0.25), ("ray::ProxyActor", 1.5),
                           ("ray::herald-sms-0:ChannelActor.run", 4.0)])
    assert seconds == {"proxy": 1.5, "shards": 3.0, "channel actors": 4.0, "others": 0.5,
                       "client + driver": 0.25}
    assert list(seconds) == ["proxy", "shards", "channel actors", "others", "client + driver"]


def test_the_table_sets_herald_roles_beside_the_peers_totals() -> None:
    herald = {"Herald": {"proxy": 0.3, "shards": 0.9, "channel actors": 1.5, "others": 0.3}}
    text = role_table(herald, {"ceiling": 0.26, "Celery": 3.6},
                      {"Herald": 1000, "ceiling": 1000, "Celery": 1000})
    lines = [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()]
    assert lines[0] == ["role (ms CPU / delivered)", "Herald", "ceiling", "Celery"]
    assert lines[2] == ["proxy", "0.300", "", ""]
    assert [row[0] for row in lines[2:]] == ["proxy", "shards", "channel actors", "others", "total"]
    assert lines[-1] == ["total", "3.000", "0.260", "3.600"]
