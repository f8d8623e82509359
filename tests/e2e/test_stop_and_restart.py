"""Stopping `herald up` every way it is stopped, then starting it again on the same data.

SIGINT to the process, Ctrl-C in a terminal (SIGINT to its process group), SIGTERM to the
process (`kill`), SIGTERM to its whole process group (systemd's default KillMode, `docker stop`
of a process group): each stops Herald within 5 s,
and the next start finds every notification as it was and never answers a client 404 for a
valid path while it starts (Serve's proxy listens before Herald's app is deployed).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from capture.smtp_sink import SmtpSink
from tests.support.herald_up import HeraldUp
from tests.support.payloads import email_payload

pytestmark = pytest.mark.e2e
KEY = "stop-key-" + "s" * 24
#: The contract: however it is stopped, `herald up` is gone within this many seconds.
STOP_BOUND = 5.0
WAYS = {
    "sigint": (signal.SIGINT, False),
    "ctrl-c-in-a-terminal": (signal.SIGINT, True),  # the terminal signals the foreground group
    "sigterm": (signal.SIGTERM, False),
    "sigterm-to-the-group": (signal.SIGTERM, True),
}


class Story:
    """One data dir stopped and started again test after test; the tags it must keep."""

    def __init__(self, data_dir: Path, sink: SmtpSink) -> None:
        self.up = HeraldUp.configure(data_dir, HERALD_SMTP_URL=sink.url,
                                     HERALD_API_KEYS=f"acme:{KEY}", HERALD_SHARDS="2")
        self.sink = sink
        self.sent: list[str] = []


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Story]:
    sink = SmtpSink().start()
    story = Story(tmp_path_factory.mktemp("stop-data"), sink)
    yield story
    story.up.kill()
    sink.stop()


@pytest.mark.parametrize("way", list(WAYS))
def test_each_way_of_stopping_takes_under_5_s_and_the_restart_keeps_everything(
    story: Story, way: str,
) -> None:
    up = story.up
    probe = email_payload(subject=f"probe before {way}")
    up.start(probe=probe)
    try:
        # Never a 404 for a valid path while starting: a client takes it as final.
        for path, answers in up.start_answers.items():
            assert 404 not in answers, f"{path} answered {dict(answers)} while starting"
        with httpx.Client(base_url=up.base_url, timeout=60,
                          headers={"Authorization": f"Bearer {KEY}"}) as client:
            for tag in story.sent:  # what earlier runs delivered is still known, and sent
                status = client.get(f"/v1/notifications/{tag}")
                assert status.status_code == 200 and status.json()["status"] == "sent", status.text
            answer = client.post("/v1/notifications", json=email_payload(subject=f"before {way}"))
            assert answer.status_code == 202, answer.text
            tag = answer.json()["details"]["tag"]
            status = client.get(f"/v1/notifications/{tag}", params={"wait": 30})
            assert status.json()["status"] == "sent", status.text
        assert story.sink.wait_for_tag(tag)["Subject"] == f"before {way}"
        story.sent.append(tag)
    except BaseException:
        up.kill()
        raise
    sig, group = WAYS[way]
    took = up.signal(sig, group=group)
    output = up.console.text() if up.console else ""
    up.kill()  # whatever it left in its group (nothing, if it stopped well)
    assert took < STOP_BOUND, f"{way}: stopped {took:.1f} s after the signal:\n{output}"
    assert up.process.returncode in (0, 130), output


def test_a_last_start_finds_everything_delivered(story: Story) -> None:
    up = story.up
    up.start()
    try:
        with httpx.Client(base_url=up.base_url, timeout=60,
                          headers={"Authorization": f"Bearer {KEY}"}) as client:
            for tag in story.sent:
                status = client.get(f"/v1/notifications/{tag}")
                assert status.status_code == 200 and status.json()["status"] == "sent", status.text
        assert len(story.sent) == len(WAYS)
    finally:
        up.kill()
