"""End to end: `herald up` as a subprocess, the DESIGN.md payload as EMAIL, mail at our server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from capture.net import free_port
from capture.smtp_sink import SmtpSink
from tests.support.payloads import email_payload

pytestmark = pytest.mark.e2e
KEY = "e2e-key-" + "z" * 24


@pytest.fixture(scope="module")
def herald_up(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, SmtpSink, subprocess.Popen[str]]]:
    sink = SmtpSink().start()
    port = free_port()
    data_dir: Path = tmp_path_factory.mktemp("e2e-data")
    env = dict(os.environ, HERALD_PORT=str(port), HERALD_DATA_DIR=str(data_dir),
               HERALD_SMTP_URL=sink.url, HERALD_API_KEYS=f"acme:{KEY}", HERALD_SHARDS="2",
               HERALD_QUEUE_LIMIT="200",
               HERALD_BROWSER_PORT=str(free_port()))
    process = subprocess.Popen(
        [sys.executable, "-m", "launcher.cli", "up"], env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        time.sleep(0.5)
    else:
        process.kill()
        pytest.fail("herald up did not become healthy")
    yield base, sink, process
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    sink.stop()


def test_design_payload_as_email_arrives_at_our_smtp_server(herald_up) -> None:
    base, sink, _ = herald_up
    headers = {"Authorization": f"Bearer {KEY}"}
    response = httpx.post(f"{base}/v1/notifications", json=email_payload(), headers=headers)
    assert response.status_code == 202, response.text
    tag = response.json()["details"]["tag"]
    mail = sink.wait_for_tag(tag, timeout=60)
    assert mail["Subject"] == "New Message"
    assert "Hello Bob, your..." in mail.get_body(("plain",)).get_content()
    status = httpx.get(f"{base}/v1/notifications/{tag}", params={"wait": 30}, headers=headers)
    assert status.json()["status"] == "sent"


def test_cli_send_and_status(herald_up, tmp_path: Path) -> None:
    base, sink, _ = herald_up
    port = base.rsplit(":", 1)[1]
    env = dict(os.environ, HERALD_PORT=port, HERALD_API_KEYS=f"acme:{KEY}")
    payload_file = tmp_path / "notification.json"
    payload_file.write_text(json.dumps(email_payload(subject="From the CLI")))
    sent = subprocess.run([sys.executable, "-m", "launcher.cli", "send", str(payload_file)],
                          env=env, capture_output=True, text=True, timeout=60)
    assert sent.returncode == 0, sent.stderr
    tag = json.loads(sent.stdout)["details"]["tag"]
    status = subprocess.run([sys.executable, "-m", "launcher.cli", "status", tag, "--wait", "30"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["status"] == "sent"
    assert sink.wait_for_tag(tag)["Subject"] == "From the CLI"


def test_over_the_queue_limit_is_a_429_with_retry_after(herald_up) -> None:
    base, sink, _ = herald_up
    sink.handler.refuse["busy@example.com"] = "451 4.3.0 mailbox busy, try later"
    headers = {"Authorization": f"Bearer {KEY}"}
    # One uid → one shard, whose share of HERALD_QUEUE_LIMIT=200 over 2 shards is 100.
    batch = [email_payload(to="busy@example.com", uid="full") for _ in range(100)]
    response = httpx.post(f"{base}/v1/notifications/batch", json={"notifications": batch},
                          headers=headers, timeout=60)
    assert response.status_code == 202
    assert all("details" in r for r in response.json()["results"])
    over = httpx.post(f"{base}/v1/notifications", json=email_payload(uid="full"), headers=headers)
    assert over.status_code == 429, over.text
    assert over.json()["error"]["code"] == "queue_full"
    assert int(over.headers["Retry-After"]) >= 1


def test_sigterm_drains_and_exits_cleanly(herald_up) -> None:
    _, _, process = herald_up
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail("herald up did not stop within 90 s of SIGTERM")
    output = process.stdout.read() if process.stdout else ""
    assert process.returncode == 0, output
    assert "stopped" in output
