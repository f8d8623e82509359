"""The Python client (``clients/python``) against a running Herald: every call it makes, typed
answers, errors as exceptions carrying status, code and field; and the ``herald`` commands that
use it, pointed at this Herald with ``--url`` and ``--key``."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from herald_client import (
    Accepted,
    AsyncHerald,
    AuthError,
    Conflict,
    Herald,
    InvalidRequest,
    NotFound,
    QuietHours,
    Refused,
    Status,
    Suppression,
    UserSettings,
)

from launcher.cli import main
from tests.conftest import KEYS, Service
from tests.support.payloads import email_payload

pytestmark = pytest.mark.ray
TOMORROW = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() + 86400))


@pytest.fixture
def herald(service: Service) -> Iterator[Herald]:
    with Herald(service.base_url, KEYS["tenant-a"]) as client:
        yield client


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def test_send_then_wait_for_the_final_status(service: Service, herald: Herald) -> None:
    accepted = herald.send(email_payload(subject="Hi {user.name.first}"))
    assert accepted.pos >= 1 and not accepted.duplicate
    final = herald.status(accepted.tag, wait=20)
    assert (final.tag, final.status, final.channel, final.type) == (
        accepted.tag, Status.SENT, "EMAIL", "CM_EMAIL")
    assert final.final and final.attempts == 1
    assert final.history[0].provider == "smtp" and final.history[0].outcome == "sent"
    assert service.sink.wait_for_tag(accepted.tag)["Message-ID"] == final.provider_id


def test_an_idempotency_key_answers_the_first_tag(herald: Herald) -> None:
    payload = email_payload()
    payload["user"].pop("mq-uuid-btag")
    key = _unique("client-idem")
    first = herald.send(payload, idempotency_key=key)
    again = herald.send(payload, idempotency_key=key)
    assert not first.duplicate
    assert (again.tag, again.duplicate) == (first.tag, True)
    with pytest.raises(InvalidRequest) as both:  # a different btag with the same header
        herald.send(email_payload(btag="another"), idempotency_key=key)
    assert both.value.field == "Idempotency-Key"


def test_a_batch_answers_each_entry_in_order(herald: Herald) -> None:
    broken = email_payload()
    broken["details"]["content"] = "{missing}"
    first, second, third = herald.send_batch([email_payload(), broken, email_payload()])
    assert isinstance(first, Accepted) and isinstance(third, Accepted)
    assert isinstance(second, Refused)
    assert (second.index, second.field) == (1, "notifications.1.details.content")
    assert herald.status(third.tag, wait=20).status is Status.SENT


def test_errors_carry_status_code_and_field(service: Service, herald: Herald) -> None:
    with pytest.raises(InvalidRequest) as bad:
        herald.send({**email_payload(), "type": "CM_PIGEON"})
    assert (bad.value.status, bad.value.code, bad.value.field) == (422, "invalid", "type")
    assert bad.value.body["error"]["field"] == "type"
    with pytest.raises(InvalidRequest) as too_long:
        herald.status("any-tag", wait=61)
    assert too_long.value.field == "wait"
    with pytest.raises(NotFound) as missing:
        herald.status("not-a-tag")
    assert (missing.value.status, missing.value.code) == (404, "not_found")
    tag = herald.send(email_payload()).tag
    with Herald(service.base_url, KEYS["tenant-b"]) as other, pytest.raises(NotFound):
        other.status(tag)  # another tenant's notification does not exist for it
    with Herald(service.base_url, "wrong-key-" + "w" * 20) as stranger, \
            pytest.raises(AuthError) as refused:
        stranger.queue()
    assert (refused.value.status, refused.value.code) == (401, "unauthorized")


def test_cancel_while_waiting_then_too_late(herald: Herald) -> None:
    tag = herald.send(email_payload(send_at=TOMORROW)).tag
    waiting = herald.status(tag)
    assert waiting.status is Status.QUEUED and waiting.not_before is not None
    assert herald.cancel(tag).status is Status.CANCELLED
    with pytest.raises(Conflict) as again:
        herald.cancel(tag)
    assert again.value.status == 409


def test_retry_revives_a_dead_notification(service: Service, herald: Herald) -> None:
    address = f"{_unique('client-dead')}@example.com"
    service.sink.handler.refuse[address] = "451 4.3.0 try again later"
    tag = herald.send(email_payload(to=address)).tag
    deadline = time.monotonic() + 60
    while (dead := herald.status(tag, wait=10)).status is not Status.DEAD:
        assert time.monotonic() < deadline, f"never reached dead: {dead.status}"
    assert dead.history and all(entry.code == "451" for entry in dead.history)
    del service.sink.handler.refuse[address]
    assert herald.retry(tag).status is Status.QUEUED
    assert herald.status(tag, wait=20).status is Status.SENT
    with pytest.raises(Conflict):  # only a dead notification is retried
        herald.retry(tag)


def test_browser_token_and_endpoint(service: Service, herald: Herald) -> None:
    token = herald.browser_token(_unique("client-user"))
    assert token.expires_at > time.time()
    with Herald(service.base_url) as browser:  # no key: the token is the credential
        url = browser.browser_endpoint(token.token)
        assert url.startswith("ws://") and "token=" in url
        with pytest.raises(AuthError):
            browser.browser_endpoint("v1.nope.nope")
    with pytest.raises(InvalidRequest) as no_uid:
        herald.browser_token("")
    assert no_uid.value.field == "uid"


def test_user_settings_round_trip(herald: Herald) -> None:
    uid = _unique("client-user")
    settings = UserSettings(timezone="Europe/Berlin", quiet_hours=QuietHours("22:00", "07:00"),
                            preferences={"CM": {"email": False}})
    assert herald.put_user(uid, settings) == settings
    assert herald.get_user(uid) == settings
    with pytest.raises(InvalidRequest) as bad:
        herald.put_user(uid, UserSettings(timezone="Mars/Olympus"))
    assert bad.value.field == "timezone"
    assert herald.delete_user(uid) == UserSettings()
    assert herald.get_user(uid) == UserSettings()
    after = herald.status(herald.send(email_payload(uid=uid)).tag, wait=20)
    assert after.status is Status.SENT  # its settings are gone: it gets everything


def test_suppressions_add_list_and_lift(herald: Herald) -> None:
    address = f"{_unique('Client-Sup')}@Example.com"
    added = herald.add_suppression(address)
    assert (added.contact, added.reason, added.sender) == (address.lower(), "manual", None)
    assert added in herald.list_suppressions()
    never = herald.status(herald.send(email_payload(to=address)).tag, wait=20)
    assert (never.status, never.reason) == (Status.SUPPRESSED, "manual")
    assert herald.lift_suppression(address) == address.lower()
    assert address.lower() not in {s.contact for s in herald.list_suppressions()}
    with pytest.raises(NotFound):
        herald.lift_suppression(address)
    with pytest.raises(InvalidRequest) as bad:
        herald.add_suppression("not a contact")
    assert bad.value.field == "contact"
    assert isinstance(added, Suppression)


def _browser(herald: Herald, uid: str, content: str) -> str:
    return herald.send({"type": "CM_BROWSER", "user": {"uid": uid},
                        "details": {"title": "T", "content": content}}).tag


def test_the_inbox_feed_pages_and_marks_read(service: Service, herald: Herald) -> None:
    uid = _unique("client-feed")
    tags = [_browser(herald, uid, f"message {i}") for i in range(3)]
    page = herald.feed(uid, limit=2)
    assert [item.tag for item in page.items] == tags[:0:-1]  # newest first
    assert (page.unread, page.items[0].content, page.items[0].read) == (3, "message 2", False)
    assert page.items[0].channel == "BROWSER" and isinstance(page.items[0].status, Status)
    rest = herald.feed(uid, limit=2, cursor=page.next)
    assert [item.tag for item in rest.items] == tags[:1] and rest.next is None
    token = herald.browser_token(uid).token
    with Herald(service.base_url) as browser:  # the user's page: its token, no key
        assert browser.browser_feed(token) == herald.feed(uid)
        marked = browser.browser_mark_read(token, [tags[0]])
        assert (marked.read, marked.unread) == (1, 2)
        assert [item.tag for item in browser.browser_feed(token, unread=True).items] == \
            tags[:0:-1]
        assert browser.browser_mark_all_read(token).unread == 0
        with pytest.raises(AuthError):
            browser.browser_feed("forged")
    assert herald.mark_read(uid, tags).read == 0  # already read
    read = herald.feed(uid).items[-1]
    assert read.read and read.read_at is not None
    _browser(herald, uid, "one more")
    assert herald.mark_all_read(uid).read == 1
    with pytest.raises(InvalidRequest) as bad:
        herald.feed(uid, limit=0)
    assert bad.value.field == "limit"
    with pytest.raises(InvalidRequest) as empty:
        herald.mark_read(uid, [])
    assert empty.value.field == "tags"


def test_queue_depth_per_shard(herald: Herald) -> None:
    shards = herald.queue()
    assert [s.shard for s in shards] == [0, 1, 2, 3]
    assert all(isinstance(n, int) for s in shards for states in s.depth.values()
               for n in states.values())


def test_the_async_client_makes_the_same_calls(service: Service) -> None:
    async def scenario() -> tuple[Status, Status]:
        async with AsyncHerald(service.base_url, KEYS["tenant-a"]) as herald:
            later = await herald.send(email_payload(send_at=TOMORROW))
            now = await herald.send(email_payload())
            final, cancelled = await asyncio.gather(herald.status(now.tag, wait=20),
                                                    herald.cancel(later.tag))
            with pytest.raises(Conflict):
                await herald.cancel(later.tag)
            return final.status, cancelled.status
    assert asyncio.run(scenario()) == (Status.SENT, Status.CANCELLED)


def test_the_herald_commands_reach_this_herald_with_url_and_key(
    service: Service, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in ("HERALD_URL", "HERALD_KEY", "HERALD_API_KEYS", "HERALD_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    remote = ["--url", service.base_url, "--key", KEYS["tenant-b"]]
    (tmp_path / "n.json").write_text(json.dumps(email_payload()))
    (tmp_path / "later.json").write_text(json.dumps(email_payload(send_at=TOMORROW)))
    assert main(["send", "n.json", *remote]) == 0
    tag = json.loads(capsys.readouterr().out)["tag"]
    assert main(["status", tag, "--wait", "20", *remote]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "sent"
    assert main(["send", "later.json", *remote]) == 0
    later = json.loads(capsys.readouterr().out)["tag"]
    assert main(["cancel", later, *remote]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "cancelled"
    assert main(["retry", later, *remote]) == 1  # not dead: Herald's 409, shown
    out, err = capsys.readouterr()
    assert json.loads(out)["error"]["code"] == "conflict"
    assert err.startswith("herald: HTTP 409 conflict: ")
