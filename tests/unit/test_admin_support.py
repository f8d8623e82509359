"""The admin console's small pieces: sessions and CSRF, the overview's rates and events, masking,
the outbox reader, the admin views of a record."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from herald.admin_session import (
    SESSION_SECONDS,
    Forbidden,
    LoginThrottle,
    Revocations,
    check_csrf,
    client_key,
    csrf_token,
    is_admin_key,
    mint_session,
    session_nonce,
    verify_session,
)
from herald.admin_views import detail, summary
from herald.errors import AuthError, NotFound, TooManyRequests
from herald.masking import mask_contact, mask_email, mask_payload
from herald.metrics import ChannelActorStats
from herald.outbox import newest
from herald.overview import RateTracker, ShardFigures, build_overview, notable
from herald.pauses import pausable
from herald.pool_views import SupervisorView
from herald.record import Record
from tests.unit.conftest import T0, make_notification

KEY = "admin-" + "k" * 30


# -- sessions ------------------------------------------------------------------------------------
def test_a_session_verifies_until_it_expires() -> None:
    token, expires_at = mint_session(KEY, T0, ttl=60)
    assert expires_at == T0 + 60
    assert verify_session(KEY, token, T0 + 59) == expires_at
    with pytest.raises(AuthError, match="expired"):
        verify_session(KEY, token, T0 + 60)
    assert KEY not in token  # the cookie never holds the key


@pytest.mark.parametrize("mangle", [
    lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # forged signature
    lambda t: t.replace(".", ".9", 1),  # a later expiry, same signature
    lambda t: "a1.x.y.z", lambda t: "", lambda t: t + "." * 600,
])
def test_a_tampered_session_is_refused(mangle: object) -> None:
    token, _ = mint_session(KEY, T0)
    with pytest.raises(AuthError):
        verify_session(KEY, mangle(token), T0)  # type: ignore[operator]


def test_another_admin_key_ends_every_session_and_csrf_goes_with_its_session() -> None:
    token, _ = mint_session(KEY, T0)
    with pytest.raises(AuthError):
        verify_session(KEY + "2", token, T0)
    check_csrf(KEY, token, csrf_token(KEY, token))
    other, _ = mint_session(KEY, T0)
    for wrong in (None, "", csrf_token(KEY, other)):
        with pytest.raises(Forbidden):
            check_csrf(KEY, token, wrong)
    assert is_admin_key(KEY, KEY) and not is_admin_key(KEY, KEY[:-1]) and not is_admin_key("", "")


def test_wrong_keys_are_throttled_for_a_window_per_client() -> None:
    throttle = LoginThrottle(limit=3, window=60)
    for i in range(3):
        throttle.check("192.0.2.7", T0 + i)
        throttle.failed("192.0.2.7", T0 + i)
    with pytest.raises(TooManyRequests) as caught:
        throttle.check("192.0.2.7", T0 + 10)
    assert caught.value.retry_after == pytest.approx(50)
    throttle.check("192.0.2.8", T0 + 10)  # another address is not locked out
    throttle.check("192.0.2.7", T0 + 61)  # the first failure is out of the window


def test_the_throttle_remembers_a_bounded_number_of_clients() -> None:
    throttle = LoginThrottle(limit=1, window=60, max_clients=2)
    for client in ("a", "b", "c"):
        throttle.failed(client, T0)
    throttle.check("a", T0)  # forgotten: the one that failed longest ago
    with pytest.raises(TooManyRequests):
        throttle.check("c", T0)


def test_a_client_is_its_address_and_an_ipv6_client_its_slash_64() -> None:
    assert client_key("203.0.113.9") == "203.0.113.9"
    assert client_key("::ffff:203.0.113.9") == "203.0.113.9"
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::2") \
        == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key(None) == "unknown"


def test_a_revoked_session_stays_revoked_until_it_would_have_expired() -> None:
    token, expires_at = mint_session(KEY, T0, ttl=SESSION_SECONDS)
    revocations = Revocations()
    assert not revocations.revoked(session_nonce(token), expires_at, T0 + 1)
    revocations.revoke(session_nonce(token), expires_at, T0 + 1)
    assert revocations.revoked(session_nonce(token), expires_at, T0 + 2)
    other, other_expiry = mint_session(KEY, T0 + 3)
    assert not revocations.revoked(session_nonce(other), other_expiry, T0 + 3)


def test_revocations_that_lost_their_memory_refuse_older_sessions() -> None:
    before, before_expiry = mint_session(KEY, T0)
    after, after_expiry = mint_session(KEY, T0 + 20)
    restarted = Revocations(since=T0 + 10)
    assert restarted.revoked(session_nonce(before), before_expiry, T0 + 30)
    assert not restarted.revoked(session_nonce(after), after_expiry, T0 + 30)


# -- the overview ---------------------------------------------------------------------------------
def figures(shard: int, accepted: int, sent: int = 0, **extra: object) -> ShardFigures:
    return ShardFigures(shard=shard, depth=extra.pop("depth", {}),  # type: ignore[arg-type]
                        counters={"accepted": accepted, "sent": sent}, **extra)  # type: ignore[arg-type]


def test_rates_survive_a_shard_restart_and_history_keeps_minutes() -> None:
    tracker = RateTracker(window=10, keep=60)
    tracker.add(T0, [figures(0, 100), figures(1, 50)])
    tracker.add(T0 + 5, [figures(0, 150, 20), figures(1, 60)])
    assert tracker.rates()["incoming"] == pytest.approx(12.0)  # (50 + 10) / 5
    tracker.add(T0 + 10, [figures(0, 10), figures(1, 60)])  # shard 0 restarted: 10 new
    assert tracker.history()[-1]["incoming"] == pytest.approx(2.0)
    assert tracker.rates()["sent"] == pytest.approx(2.0)  # 20 over the 10 s window
    tracker.add(T0 + 100, [figures(0, 10), figures(1, 60)])
    assert [p["at"] for p in tracker.history()] == []  # older points dropped, one left


def test_the_overview_adds_up_channels_pools_and_pauses() -> None:
    tracker = RateTracker()
    shards = [
        figures(0, 5, depth={"EMAIL": {"queued": 3, "retrying": 1, "sending": 0}},
                oldest_waiting={"email": T0 - 30}, dead_letters=2, paused={"email": T0 - 5}),
        None,  # shard 1 did not answer
        figures(2, 1, depth={"EMAIL": {"queued": 1, "retrying": 0, "sending": 2}},
                oldest_waiting={"email": T0 - 90}),
    ]
    actors = [ChannelActorStats("EMAIL", 0, {}, {"smtp": "open"}),
              ChannelActorStats("EMAIL", 1, {}, {"smtp": "closed"})]
    supervisor = SupervisorView(pools={"email": 2, "webhook": 1}, restarts={"email": 1},
                                draining=["herald-email-2"], health_rounds=7)
    o = build_overview(T0, shards, supervisor, actors, tracker)
    email = next(c for c in o["channels"] if c["channel"] == "email")
    assert (email["queued"], email["retrying"], email["sending"]) == (4, 1, 2)
    assert email["oldest_queued_age"] == 90 and o["oldest_queued_age"] == 90
    assert email["paused"] and email["paused_shards"] == 1 and o["paused"] == ["email"]
    assert email["pool"] == {"size": 2, "running": 2, "draining": 1, "restarts": 1,
                             "open_circuits": ["smtp"]}
    assert o["health_rounds"] == 7  # the Supervisor's health loop, going on while a pool drains
    assert o["dead_letters"] == 2 and o["retries_pending"] == 1
    assert [s["up"] for s in o["shards"]] == [True, False, True]
    assert o["depth"] == {"queued": 4, "retrying": 1, "sending": 2}


def test_notable_events_name_what_changed() -> None:
    tracker = RateTracker()
    before = build_overview(T0, [figures(0, 1), figures(1, 1)], SupervisorView(), [], tracker)
    after = build_overview(
        T0 + 2, [figures(0, 1, dead_letters=3, paused={"sms": T0}), None],
        SupervisorView(restarts={"email": 1}), [ChannelActorStats("EMAIL", 0, {}, {"smtp": "open"})], tracker)
    texts = [e["text"] for e in notable(before, after)]
    assert "3 new dead letters" in texts
    assert any(t.startswith("sms paused") for t in texts)
    assert "shard 1 is not answering" in texts
    assert "email: 1 actor restart (1 in all)" in texts
    assert "circuit open: smtp (email)" in texts
    assert [e["text"] for e in notable(after, before)][:2] == ["sms resumed", "shard 1 is answering again"]
    assert notable(None, after) == []


# -- masking, outbox, views -----------------------------------------------------------------------
def test_contacts_are_partly_masked_wherever_they_are() -> None:
    assert mask_email("bob@example.com") == "b…@example.com"
    assert mask_contact("+1 (415) 555-0100") == "+1…00"
    payload = {"user": {"uid": 7, "email": "bob@example.com", "phone": "+14155550100",
                        "name": {"first": "Bob"}},
               "details": {"to": ["x@y.org"], "vars": {"backup": "+442071838750", "day": "2026-03-01",
                                                        "n": 5}}}
    masked = mask_payload(payload)
    assert masked["user"] == {"uid": 7, "email": "b…@example.com", "phone": "+1…00",
                              "name": {"first": "Bob"}}
    assert masked["details"] == {"to": ["x…@y.org"],
                                 "vars": {"backup": "+4…50", "day": "2026-03-01", "n": 5}}
    assert payload["user"]["email"] == "bob@example.com"  # a copy: the record is untouched


def test_the_outbox_reads_its_newest_lines_masked(tmp_path: Path) -> None:
    lines = [orjson.dumps({"at": T0 + i, "channel": "sms", "to": "+14155550100", "body": f"m{i}"})
             for i in range(3000)]
    (tmp_path / "sms.jsonl").write_bytes(b"\n".join(lines) + b"\n{cut sh")
    (tmp_path / "email.jsonl").write_bytes(orjson.dumps({"at": T0 + 2998.5, "to": ["a@b.co"]}) + b"\n")
    latest = newest(tmp_path, None, 3)
    assert [e.get("body") for e in latest] == ["m2999", None, "m2998"]
    assert latest[0]["to"] == "+1…00" and latest[1]["to"] == ["a…@b.co"]
    assert newest(tmp_path, "fax", 5) == []
    assert len(newest(tmp_path, "sms", 2500)) == 2500


def test_admin_views_show_tenant_masked_contacts_and_rendered_content() -> None:
    notification = make_notification("EMAIL", tenant="acme", subject="Hi {user.name.first}")
    record = Record.new(notification, 1)
    row = summary(record)
    assert row["tenant"] == "acme" and row["recipient"] == "b…@example.com"
    assert row["subject"] == "Hi {user.name.first}" and row["service"] == "CM_DA_MESSAGE_SERVICE"
    page = detail(record)
    assert page["rendered"]["subject"] == "Hi Bob" and page["rendered"]["text"] == "Hi Bob"
    assert page["payload"]["details"]["to"] == "b…@example.com" and page["history"] == []


def test_only_client_channels_are_pausable() -> None:
    assert pausable("email").key == "email" and pausable("BROWSER").key == "browser"
    for name in ("webhook", "pigeon", ""):
        with pytest.raises(NotFound):
            pausable(name)
