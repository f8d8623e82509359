"""End to end: a pool that grew shrinks back without sending anything twice (issue 17, item 8).

`herald up` as a subprocess, a slow SMTP server on loopback, driven over HTTP only. The email pool
grows to two actors under a backlog; then the queue empties while every send still waits on the
server. The pool must not shrink before those sends are answered (an actor removed mid-send was
killed after a 30 s drain, and its leases came back and were sent again), and the Supervisor's
health checks go on meanwhile (they used to wait for the drain).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from capture.net import free_port
from capture.smtp_sink import RecordingHandler, SmtpSink
from tests.e2e.test_herald_up import Console
from tests.support.payloads import email_payload

pytestmark = pytest.mark.e2e
KEY = "shrink-key-" + "s" * 22
ADMIN = "shrink-admin-" + "a" * 20
#: How long the server holds each message before answering: longer than an actor being removed
#: used to get (a 30 s drain, then its SMTP pool's close, cut at 40 s), shorter than the attempt
#: deadline below (so no attempt times out and is retried).
SEND_SECONDS = 47.0
ATTEMPT_TIMEOUT = 60.0
#: One shard, two sends per actor: four notifications fill two actors with none left waiting.
NOTIFICATIONS = 4
#: The overview must answer within this while the pool grows, sends and drains (a bound, not a
#: speed: a Supervisor waiting for a drain took up to 40 s).
ANSWER_WITHIN = 10.0


class SlowHandler(RecordingHandler):
    """Counts each message when its data arrives (a resend is seen even if never answered), then
    answers it only ``delay`` seconds later."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.answered = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        await asyncio.sleep(self.delay)
        with self.lock:
            self.answered += 1
        return reply

    def figures(self) -> tuple[int, int, dict[str, int]]:
        """Messages received, answered, and the tags received more than once."""
        with self.lock:
            received = sum(self.by_tag.values())
            return received, self.answered, {t: n for t, n in self.by_tag.items() if n > 1}


@dataclass
class Herald:
    base: str
    handler: SlowHandler
    console: Console


@pytest.fixture()
def herald_slow_smtp(tmp_path: Path) -> Iterator[Herald]:
    handler = SlowHandler(SEND_SECONDS)
    sink = SmtpSink(handler).start()
    port = free_port()
    env = dict(os.environ, HERALD_PORT=str(port), HERALD_DATA_DIR=str(tmp_path / "data"),
               HERALD_SMTP_URL=sink.url, HERALD_SMTP_TIMEOUT=str(ATTEMPT_TIMEOUT + 5),
               HERALD_ATTEMPT_TIMEOUT=str(ATTEMPT_TIMEOUT), HERALD_LEASE_SECONDS="6",
               HERALD_API_KEYS=f"acme:{KEY}", HERALD_ADMIN_KEY=ADMIN, HERALD_SHARDS="1",
               HERALD_CHANNEL_CONCURRENCY="2", HERALD_POOLS="email=1,sms=1,browser=1",
               HERALD_POOL_MAX="email=2,sms=1", HERALD_POOL_GROW_BACKLOG="1",
               HERALD_POOL_IDLE_SECONDS="1",
               HERALD_BROWSER_PORT=str(free_port()), HERALD_DASHBOARD_PORT="0")
    process = subprocess.Popen(
        [sys.executable, "-m", "launcher.cli", "up"], env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    console = Console(process)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, console.text()
            if time.monotonic() > deadline:
                pytest.fail("herald up did not become healthy:\n" + console.text())
            time.sleep(0.5)
        yield Herald(base, handler, console)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        sink.stop()


@dataclass
class Watch:
    """What the test saw of the email pool, one overview every half second."""

    sizes: list[int] = field(default_factory=list)
    slow_answers: list[float] = field(default_factory=list)
    #: Overviews without the Supervisor's figures: it did not answer the console in time.
    unanswered: int = 0
    #: (pool size, sends the server had not answered yet) seen after the pool had grown.
    shrunk_while_sending: list[tuple[int, int]] = field(default_factory=list)
    #: (when the overview was asked for, the Supervisor's health rounds it reported).
    rounds: list[tuple[float, int]] = field(default_factory=list)


def _email_pool(overview: dict[str, Any]) -> dict[str, Any]:
    return next(c["pool"] for c in overview["channels"] if c["channel"] == "email")


def test_a_grown_pool_shrinks_only_once_its_sends_are_answered(herald_slow_smtp: Herald) -> None:
    herald = herald_slow_smtp
    api = httpx.Client(base_url=herald.base, timeout=30,
                       headers={"Authorization": f"Bearer {KEY}"})
    admin = httpx.Client(base_url=herald.base, timeout=30,
                         headers={"Authorization": f"Bearer {ADMIN}"})
    tags = []
    for i in range(NOTIFICATIONS):  # one user each: nothing orders them behind each other
        payload = email_payload(to=f"user{i}@example.com", uid=1000 + i)
        payload["requester"]["asap"] = "no"  # the normal slots only: two per actor
        answer = api.post("/v1/notifications", json=payload)
        assert answer.status_code == 202, answer.text
        tags.append(answer.json()["details"]["tag"])

    watch = Watch()
    grown = False
    duplicates: dict[str, int] = {}
    statuses: dict[str, str] = {}
    deadline = time.monotonic() + 2 * SEND_SECONDS + 25
    while time.monotonic() < deadline:
        asked = time.monotonic()
        answer = admin.get("/v1/admin/overview")
        took = time.monotonic() - asked
        assert answer.status_code == 200, answer.text
        if took > ANSWER_WITHIN:
            watch.slow_answers.append(round(took, 1))
        overview = answer.json()
        pool = _email_pool(overview)
        if pool["size"] == 0:  # the console asked the Supervisor and had no answer within 5 s
            watch.unanswered += 1
            time.sleep(0.5)
            continue
        # Read after the overview: a send the server still holds now was in flight when the
        # overview was taken.
        received, answered, duplicates = herald.handler.figures()
        watch.sizes.append(pool["size"])
        watch.rounds.append((asked, overview["health_rounds"]))
        grown = grown or pool["size"] == 2
        if grown and pool["size"] < 2 and received > answered:
            watch.shrunk_while_sending.append((pool["size"], received - answered))
        if duplicates:
            break  # proven: a send was repeated
        if grown and answered >= NOTIFICATIONS and pool["size"] == 1 and not pool["draining"]:
            statuses = {t: api.get(f"/v1/notifications/{t}").json()["status"] for t in tags}
            if all(s in ("sent", "failed", "dead") for s in statuses.values()):
                break
        time.sleep(0.5)

    log = "\n".join(line for line in herald.console.text().splitlines()
                    if "a pool" in line or "drain" in line)[-3000:]
    received, answered, duplicates = herald.handler.figures()
    assert not duplicates, (f"sent more than once: {duplicates}; the pool shrank while "
                            f"(size, sends unanswered) = {watch.shrunk_while_sending[:3]}\n{log}")
    assert grown, f"the email pool never grew to 2: sizes {watch.sizes}\n{log}"
    assert not watch.shrunk_while_sending, (
        f"the pool shrank while the server still held sends: {watch.shrunk_while_sending[:3]}")
    assert statuses and set(statuses.values()) == {"sent"}, (statuses, watch.sizes[-5:], log)
    assert (received, answered) == (NOTIFICATIONS, NOTIFICATIONS)
    assert watch.sizes[-1] == 1, f"the pool did not shrink back: sizes {watch.sizes}"
    assert not watch.slow_answers, f"overviews that took over {ANSWER_WITHIN} s: {watch.slow_answers}"
    assert not watch.unanswered, f"{watch.unanswered} overviews had no answer from the Supervisor"
    # The health loop (a round a second; one round waits 15 s at most for an actor) never stood
    # still the way it did for a drain (up to 40 s).
    rounds = [(at, n) for at, n in watch.rounds if n is not None]
    assert rounds, "the overview does not say how many health rounds the Supervisor did"
    stuck = [s for s in _runs(rounds) if s > 15.0]
    assert not stuck, f"the Supervisor's health loop stood still for {stuck} s"


def _runs(rounds: list[tuple[float, int]]) -> list[float]:
    """How long each stretch of equal round counts lasted."""
    out, start = [], 0
    for i in range(1, len(rounds) + 1):
        if i == len(rounds) or rounds[i][1] != rounds[start][1]:
            out.append(round(rounds[i - 1][0] - rounds[start][0], 1))
            start = i
    return out
