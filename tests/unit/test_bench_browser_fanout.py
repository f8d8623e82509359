"""The fan-out benchmark's batches: 1,000 a batch, spread over the users in turn."""

from __future__ import annotations

from bench.browser_fanout import BATCH, batches_for, payload


def test_batches_spread_over_every_user() -> None:
    batches = batches_for(2500, 1000)
    assert [len(b) for b in batches] == [BATCH, BATCH, 500]
    assert [n["user"]["uid"] for n in batches[1][:2]] == ["u0", "u1"]
    assert {n["user"]["uid"] for n in batches[0]} == {f"u{i}" for i in range(1000)}


def test_a_payload_is_a_browser_notification() -> None:
    assert payload(7)["type"].endswith("_BROWSER")


def test_the_payload_is_valid_at_intake() -> None:
    from herald.channels import Channel
    from herald.models import validate_notification

    notification = validate_notification(payload(7), "bench", 1_000_000.0, 4)
    assert notification.channel is Channel.BROWSER
