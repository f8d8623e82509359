"""Delivery log round trip: a shard's real events → segments → rollup (Ray) → report numbers.

The scenario is driven through the queue's own state machine with known outcomes, so the
report's numbers must equal what happened: counted once per notification, by its last final state.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from actors.log_shipper import LogShipper
from analytics.report import compute
from herald.data_dir import DataDir
from herald.outcome import Outcome
from herald.queue import QueueShard
from herald.retry import RetryPolicy
from herald.storage import SQLiteStorage
from herald.suppressions import BOUNCED, MANUAL, Suppression
from jobs.rollup import rollup
from tests.unit.conftest import TENANT, lane, make_notification

pytestmark = pytest.mark.ray
NOW = 1_790_000_000.0  # a fixed day, so the report's window is known


def _drive(shard: QueueShard) -> None:
    """30 emails sent, 20 SMS sent then delivered by receipt, 10 browser dead after 2 retries,
    5 faxes failed for good, 5 emails cancelled while queued; 3 emails to an address that
    bounced and 2 SMS to a number suppressed by hand, never sent."""
    t = NOW
    shard.suppressions.add(TENANT, Suppression("gone@example.com", BOUNCED, t), t)
    shard.suppressions.add(TENANT, Suppression("+14155550123", MANUAL, t), t)
    suppressed = [*(make_notification("EMAIL", now=t, uid=400 + i, to="gone@example.com")
                    for i in range(3)),
                  *(make_notification("SMS", now=t, uid=500 + i, to="+14155550123")
                    for i in range(2))]
    emails = [make_notification("EMAIL", now=t, uid=i) for i in range(35)]
    sms = [make_notification("SMS", now=t, uid=100 + i) for i in range(20)]
    browser = [make_notification("BROWSER", now=t, uid=200 + i) for i in range(10)]
    faxes = [make_notification("FAX", now=t, uid=300 + i) for i in range(5)]
    shard.enqueue([*emails, *sms, *browser, *faxes, *suppressed], t)
    for notification in emails[30:]:
        shard.cancel(notification.tag, notification.tenant, t + 1)
    for channel, kind, code in (("EMAIL", "sent", None), ("SMS", "sent", None),
                                ("FAX", "failed", "invalid_number")):
        for delivery in shard.lease(lane(channel), 100, t + 2, 60.0):
            shard.ack([Outcome(delivery.tag, kind, channel.lower(), code=code,
                               provider_id=f"p-{delivery.tag}", lease=delivery.lease)], t + 3)
    for notification in sms:
        shard.receipt(Outcome(notification.tag, "delivered", "twilio",
                              provider_id=f"p-{notification.tag}"), t + 5)
    for attempt in range(2):
        for delivery in shard.lease(lane("BROWSER"), 100, t + 10 + attempt * 10, 60.0):
            shard.ack([Outcome(delivery.tag, "retry", "websocket", code="no_ack",
                               lease=delivery.lease)], t + 11 + attempt * 10)
    shard.flush()


def test_segments_to_parquet_to_report_equal_what_happened(ray_session: None,
                                                            tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "queue" / "shard-0.db", synchronous="OFF")
    policies = {"BROWSER": RetryPolicy(base_seconds=0.0, max_attempts=2)}
    shard = QueueShard(storage, policies, NOW, rng=random.Random(0))
    _drive(shard)
    shipper = LogShipper(storage, DataDir(tmp_path), 0, rotate_seconds=60.0, max_rows=10_000)
    shipper.ship(NOW + 30)
    shipper.close(NOW + 31)
    assert storage.read_events(0, 10) == []  # shipped and closed: gone from SQLite

    first = rollup(tmp_path, now=NOW + 40)
    again = rollup(tmp_path, now=NOW + 50)  # idempotent: nothing new, nothing counted twice
    assert first.rows > 0 and again.rows_written == 0

    numbers = compute(tmp_path)
    assert numbers["notifications"] == 75
    assert numbers["outcomes"] == {"sent": 30, "delivered": 20, "failed": 5, "dead": 10,
                                   "cancelled": 5, "suppressed": 5, "bounced": 0, "pending": 0}
    assert numbers["suppressed_by_reason"] == [  # the reason, from the final event's error code
        {"reason": "bounced", "count": 3, "by_channel": {"email": 3}},
        {"reason": "manual", "count": 2, "by_channel": {"sms": 2}}]
    email, sms, fax = (numbers["by_channel"][c] for c in ("email", "sms", "fax"))
    assert (email["notifications"], email["sent"], email["cancelled"]) == (38, 30, 5)
    assert (sms["delivered"], sms["success_rate"]) == (20, 1.0)
    assert (fax["failed"], fax["success_rate"]) == (5, 0.0)
    assert numbers["by_channel"]["browser"]["dead"] == 10
    errors = {e["code"]: e["count"] for e in numbers["top_errors"]}
    assert errors["invalid_number"] == 5 and errors["no_ack"] == 20
