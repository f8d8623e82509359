"""A probe for tests that check something did not happen (a paused channel's notification still
queued): instead of sleeping a fixed time and hoping it was long enough, wait for a later event
that proves the earlier one would have happened by then."""

from __future__ import annotations

import httpx

from herald.sharding import shard_of_tag
from tests.conftest import ADMIN_KEY, Service
from tests.support.waiting import until


def sent_beside(service: Service, tag: str, number: str, shards: int = 4) -> str:
    """Post an SMS to the user of ``tag`` (so it lands on the same shard) and wait until it is
    sent: that shard has handed out work since ``tag`` was queued, so ``tag`` would have been
    leased by now too had its channel not been held. The probe's tag."""
    with httpx.Client(base_url=service.base_url, timeout=30.0,
                      headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as admin:
        uid = admin.get(f"/v1/admin/notifications/{tag}").json()["uid"]
        sms = {"type": "OTP_SMS", "user": {"uid": uid}, "requester": {"service": "AUTH"},
               "details": {"to": number, "content": "a probe beside a held notification"}}
        with service.client() as tenant:
            answer = tenant.post("/v1/notifications", json=sms)
        assert answer.status_code == 202, answer.text
        probe = str(answer.json()["details"]["tag"])
        assert shard_of_tag(probe, shards) == shard_of_tag(tag, shards)

        def sent() -> bool:
            found = admin.get(f"/v1/admin/notifications/{probe}")
            return found.status_code == 200 and found.json()["status"] in ("sent", "delivered")

        until(sent, f"the probe {probe} beside {tag} sent", timeout=60, every=0.2)
    return probe
