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
from tests.support.herald_up import Console
from tests.support.payloads import email_payload

pytestmark = pytest.mark.e2e
KEY = "e2e-key-" + "z" * 24
#: SMTP is configured (a sink), so nothing is captured and no capture peer starts.
PROGRESS = ["starting Ray…", "starting the Supervisor, shards and channel pools…",
            "starting the HTTP API…", "Herald is up on http://127.0.0.1:"]


@pytest.fixture(scope="module")
def herald_up(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, SmtpSink, Console]]:
    sink = SmtpSink().start()
    port = free_port()
    data_dir: Path = tmp_path_factory.mktemp("e2e-data")
    env = dict(os.environ, HERALD_PORT=str(port), HERALD_DATA_DIR=str(data_dir),
               HERALD_SMTP_URL=sink.url, HERALD_API_KEYS=f"acme:{KEY}", HERALD_SHARDS="2",
               HERALD_QUEUE_LIMIT="200",
               HERALD_BROWSER_PORT=str(free_port()), HERALD_DASHBOARD_PORT=str(free_port()))
    process = subprocess.Popen(
        [sys.executable, "-m", "launcher.cli", "up"], env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    console = Console(process)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert process.poll() is None, console.text()
        time.sleep(0.5)
    else:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail("herald up did not become healthy:\n" + console.text())
    yield base, sink, console
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
    tag = json.loads(sent.stdout)["tag"]
    status = subprocess.run([sys.executable, "-m", "launcher.cli", "status", tag, "--wait", "30"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["status"] == "sent"
    assert sink.wait_for_tag(tag)["Subject"] == "From the CLI"


def test_cli_queue_cancel_and_retry_against_herald(herald_up) -> None:
    base, _, _ = herald_up
    env = dict(os.environ, HERALD_PORT=base.rsplit(":", 1)[1], HERALD_API_KEYS=f"acme:{KEY}")
    headers = {"Authorization": f"Bearer {KEY}"}
    tag = httpx.post(f"{base}/v1/notifications", json=email_payload(subject="cancel me late"),
                     headers=headers).json()["details"]["tag"]
    status = httpx.get(f"{base}/v1/notifications/{tag}", params={"wait": 30}, headers=headers,
                       timeout=40)
    assert status.json()["status"] == "sent", status.text

    def herald(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "launcher.cli", *argv], env=env,
                              capture_output=True, text=True, timeout=60)

    queue = herald("queue")
    assert queue.returncode == 0, queue.stderr
    assert "shards" in json.loads(queue.stdout)
    for argv in (("cancel", tag), ("retry", tag)):  # it is sent: too late for either
        answer = herald(*argv)
        assert answer.returncode == 1, answer
        assert json.loads(answer.stdout)["error"]["code"] == "conflict"
        assert answer.stderr.startswith("herald: HTTP 409 conflict: "), answer.stderr
        assert answer.stderr.count("\n") == 1 and "Traceback" not in answer.stderr


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


def test_up_reports_each_start_step_in_order(herald_up) -> None:
    _, _, console = herald_up
    console.wait_for("Ctrl-C to stop", timeout=30)
    lines = list(console.lines)
    where = [next((i for i, line in enumerate(lines) if line.startswith(step)), -1)
             for step in PROGRESS]
    assert -1 not in where and where == sorted(where), console.text()
    assert any(line.startswith("no provider configured for sms, fax") for line in lines)


def test_a_channel_without_provider_or_capture_is_refused_at_intake(herald_up) -> None:
    """SMTP is configured, so nothing is captured: an SMS is a 422 naming ``type``, never a
    silent fallback to the local peers that would report ``sent``."""
    base, _, _ = herald_up
    sms = {"type": "OTP_SMS", "user": {"uid": 7}, "details": {"to": "+14155550100",
                                                            "content": "123456"}}
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {KEY}"}) as client:
        response = client.post("/v1/notifications", json=sms)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == "type"


def test_sigterm_stops_herald_within_seconds(herald_up) -> None:
    _, _, console = herald_up
    process = console.process  # nothing in flight but the quick refusals of busy@example.com
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)  # generous for a shared machine; about 3 s alone
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail(f"herald up did not stop within 20 s of SIGTERM:\n{console.text()}")
    output = console.text()
    assert process.returncode == 0, output
    assert "stopped in" in output, output
    print(f"stopped {time.monotonic() - started:.1f} s after SIGTERM")
