"""The delivery log rows a shard writes with its state changes, over every storage backend."""

from __future__ import annotations

from herald.outcome import Outcome
from herald.retry import RetryPolicy
from herald.storage import Storage
from tests.unit.conftest import T0, lane, make_notification, make_shard


def _events(storage: Storage) -> list[tuple[str, str, int]]:
    return [(e.event, e.status, e.attempt) for _, e in storage.read_events(0, 1000)]


def test_accepted_attempts_and_final_are_logged_in_the_same_commits(storage: Storage) -> None:
    shard = make_shard(storage, policies={"SMS": RetryPolicy(base_seconds=0.0)})
    notification = make_notification("SMS", callback_url="https://example.com/hook")
    shard.enqueue([notification], T0)
    shard.flush()
    assert _events(storage) == [("accepted", "queued", 0)]
    [delivery] = shard.lease(lane("SMS"), 1, T0, 30.0)
    shard.ack([Outcome(delivery.tag, "retry", "twilio", code="30001", lease=delivery.lease)], T0 + 1)
    [delivery] = shard.lease(lane("SMS"), 1, T0 + 2, 30.0)
    shard.ack([Outcome(delivery.tag, "sent", "twilio", provider_id="SM1", lease=delivery.lease)],
              T0 + 3)
    shard.flush()
    shard.receipt(Outcome(delivery.tag, "delivered", "twilio", provider_id="SM1"), T0 + 9)
    shard.flush()
    assert _events(storage) == [("accepted", "queued", 0), ("attempt", "retry", 1),
                                ("attempt", "sent", 2), ("final", "sent", 2),
                                ("final", "delivered", 2)]
    rows = [e for _, e in storage.read_events(0, 1000)]
    assert {e.channel for e in rows} == {"sms"}  # the requester callback is not logged
    assert rows[1].error_code == "30001" and rows[1].provider == "twilio"
    assert rows[-1].latency_ms == 9000.0
    assert rows[0].requester_service == "CM_DA_MESSAGE_SERVICE"


def test_events_are_read_in_order_and_deleted_once_shipped(storage: Storage) -> None:
    shard = make_shard(storage)
    shard.enqueue([make_notification() for _ in range(5)], T0)
    shard.flush()
    first = storage.read_events(0, 2)
    assert [i for i, _ in first] == sorted(i for i, _ in first)
    storage.delete_events(first[-1][0])
    rest = storage.read_events(0, 100)
    assert len(rest) == 3 and rest[0][0] > first[-1][0]


def test_a_dead_letter_logs_its_last_error(storage: Storage) -> None:
    shard = make_shard(storage, policies={"BROWSER": RetryPolicy(max_attempts=1)})
    notification = make_notification()
    shard.enqueue([notification], T0)
    [delivery] = shard.lease(lane("BROWSER"), 1, T0, 30.0)
    shard.ack([Outcome(delivery.tag, "retry", "websocket", code="E1", lease=delivery.lease)], T0)
    shard.flush()
    final = [e for _, e in storage.read_events(0, 100) if e.event == "final"]
    assert [(e.status, e.error_code) for e in final] == [("dead", "E1")]
