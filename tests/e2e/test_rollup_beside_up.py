"""The rollup run the three ways docs/operations.md gives, each beside a running `herald up`, as a user
runs them from another terminal: `herald rollup`, `python -m jobs.rollup --data-dir …`, and
`ray job submit … -- python -m jobs.rollup …` against `herald up`'s dashboard. Each finishes
(bounded) and the notifications just delivered appear in the Parquet. And `herald rollup` told
of a Ray that no longer answers says so in one line within seconds, instead of waiting forever.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.ipc as ipc
import pytest

from capture.net import free_port
from capture.smtp_sink import SmtpSink
from herald.data_dir import DataDir
from tests.support.herald_up import ROOT, HeraldUp, user_env
from tests.support.payloads import email_payload

pytestmark = pytest.mark.e2e
KEY = "rollup-key-" + "r" * 24
#: Ray's dashboard agent's fixed port (`ray job submit` needs the agent; ray.init cannot move it).
AGENT_PORT = 52365
#: Held by another Ray on this machine before our `herald up` started: then no job can run.
AGENT_TAKEN = False
#: A rollup of a few segments takes seconds; a hang is what this bound catches.
ROLLUP_BOUND = 240


@pytest.fixture(scope="module")
def herald(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HeraldUp]:
    global AGENT_TAKEN
    AGENT_TAKEN = _taken(AGENT_PORT)
    sink = SmtpSink().start()
    up = HeraldUp.configure(tmp_path_factory.mktemp("rollup-data"), HERALD_SMTP_URL=sink.url,
                            HERALD_API_KEYS=f"acme:{KEY}", HERALD_SHARDS="2",
                            HERALD_LOG_ROTATE_SECONDS="1", HERALD_ROLLUP_SECONDS="0",
                            # a job's `python` is the one on the PATH its Ray was started with
                            PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    up.start()
    yield up
    up.kill()
    sink.stop()


def _deliver(up: HeraldUp, subject: str, count: int = 3) -> set[str]:
    """Send ``count`` emails, wait until each is sent and its events are in closed segments."""
    with httpx.Client(base_url=up.base_url, timeout=60,
                      headers={"Authorization": f"Bearer {KEY}"}) as client:
        tags = set()
        for i in range(count):
            answer = client.post("/v1/notifications", json=email_payload(subject=subject, uid=i))
            assert answer.status_code == 202, answer.text
            tags.add(answer.json()["details"]["tag"])
        for tag in tags:
            status = client.get(f"/v1/notifications/{tag}", params={"wait": 30})
            assert status.json()["status"] == "sent", status.text
    deadline = time.monotonic() + 60
    while not tags <= _segment_tags(up.data_dir):
        assert time.monotonic() < deadline, "the delivery log was not shipped within 60 s"
        time.sleep(0.5)
    return tags


def _segment_tags(data_dir: Path) -> set[str]:
    tags: set[str] = set()
    for path in (data_dir / "log").glob("shard-*/*.arrow"):
        with pa.memory_map(str(path)) as source:
            tags.update(ipc.open_file(source).read_all().column("tag").to_pylist())
    return tags


def _parquet_tags(data_dir: Path) -> set[str]:
    events = data_dir / "analytics" / "events"
    if not events.is_dir():
        return set()
    table = ds.dataset(events, format="parquet", partitioning="hive").to_table(columns=["tag"])
    return set(pc.unique(table.column("tag")).to_pylist())


def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True,
                              timeout=ROLLUP_BOUND)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{' '.join(argv[1:4])}… still running after {ROLLUP_BOUND} s "
                    f"(waiting for a Ray it cannot reach?):\n{exc.stderr!r}")


def test_herald_rollup_beside_herald_up(herald: HeraldUp) -> None:
    tags = _deliver(herald, "for herald rollup")
    done = _run([sys.executable, "-m", "launcher.cli", "rollup"], herald.env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("rollup: ") and " 0 rows" not in done.stdout, done.stdout
    assert tags <= _parquet_tags(herald.data_dir)


def test_python_m_jobs_rollup_beside_herald_up(herald: HeraldUp) -> None:
    tags = _deliver(herald, "for python -m jobs.rollup")
    env = user_env()  # no HERALD_*: the data dir is given on the command line, as docs/operations.md does
    done = _run([sys.executable, "-m", "jobs.rollup", "--data-dir", str(herald.data_dir)], env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "rollup: " in done.stdout and " 0 rows" not in done.stdout, done.stdout
    assert tags <= _parquet_tags(herald.data_dir)


def test_ray_job_submit_of_the_rollup_beside_herald_up(herald: HeraldUp) -> None:
    if AGENT_TAKEN:
        pytest.skip(f"Ray's dashboard agent port {AGENT_PORT} belongs to another Ray here")
    tags = _deliver(herald, "for ray job submit")
    ray = str(Path(sys.executable).with_name("ray"))
    dashboard = f"http://127.0.0.1:{herald.env['HERALD_DASHBOARD_PORT']}"
    excludes = json.dumps({"excludes": [".venv", ".git", ".herald", "**/__pycache__", ".mypy_cache",
                                        ".ruff_cache", ".hypothesis", ".pytest_cache"]})
    env = user_env(PATH=herald.env["PATH"])
    env.pop("RAY_ADDRESS", None)
    if (Path.home() / ".ray" / "auth_token").is_file():
        # Then the Ray that `herald up` started requires it (Ray's token auth turns itself on
        # when a token exists), and the job CLI sends it only when told to.
        env["RAY_AUTH_MODE"] = "token"
    deadline = time.monotonic() + 90
    while True:  # the dashboard answers a moment before its job agent takes submissions
        job = _run([ray, "job", "submit", "--address", dashboard, "--working-dir", str(ROOT),
                    "--runtime-env-json", excludes, "--", "python", "-m", "jobs.rollup",
                    "--data-dir", str(herald.data_dir)], env)
        output = job.stdout + job.stderr
        if "No available agent" not in output or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert job.returncode == 0 and "succeeded" in output, output
    assert "rollup: " in output and " 0 rows" not in output, output
    assert tags <= _parquet_tags(herald.data_dir)


def _taken(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_herald_rollup_told_of_a_ray_nobody_answers_fails_in_seconds(tmp_path: Path) -> None:
    """A recorded Ray that does not answer (Herald's Ray gone, its `herald up` still there):
    one line, exit 1, within seconds; never a wait in ray.init."""
    DataDir(tmp_path).ray_record.write_text(json.dumps(
        {"gcs_address": f"127.0.0.1:{free_port()}", "pid": os.getpid()}) + "\n")
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "launcher.cli", "rollup"],
                          env=user_env(HERALD_DATA_DIR=str(tmp_path)), cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    took = time.monotonic() - started
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.startswith("herald: ") and done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr and str(tmp_path) in done.stderr, done.stderr
    assert took < 30, f"took {took:.1f} s"  # a bound on a hang, not a speed test
