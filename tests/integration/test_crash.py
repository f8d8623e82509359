"""Nothing accepted is lost when a QueueActor, a ChannelActor or the Supervisor is SIGKILLed.

2,000 emails go in through the batch endpoint; while they are being delivered we kill a queue
shard's process and then an email channel actor's process. Every accepted tag must reach
``sent``; duplicates (a mail sent but not acked before the kill, redelivered after the lease
expired) are counted and reported, and bounded by what can be in flight.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
import ray

from actors.clients import ChannelClient, ShardClient, SupervisorClient
from herald.actor_names import NAMESPACE, SHARD_POOL, SUPERVISOR_NAME
from herald.channels import Channel
from herald.config import Settings
from herald.sharding import host_of
from herald.supervision_events import MemberId
from tests.conftest import METRICS_TOKEN, Service
from tests.support.payloads import email_payload

pytestmark = pytest.mark.ray
TOTAL = 2000
#: The process that hosts shard 1 (with the default HERALD_SHARDS_PER_PROCESS, every shard).
SHARD_1 = MemberId(SHARD_POOL, host_of(1, Settings().shards_per_process))
EMAIL_0 = MemberId(Channel.EMAIL, 0)


def _pid_of(member: MemberId) -> int:
    handle = ray.get_actor(member.actor, namespace=NAMESPACE)
    if member.channel is None:
        return ShardClient(handle, member.index).pid().get(timeout=30)
    return ChannelClient(handle).ping().get(timeout=30).pid


def _kill(member: MemberId) -> int:
    pid = _pid_of(member)
    os.kill(pid, signal.SIGKILL)
    return pid


def _kill_supervisor() -> None:
    supervisor = SupervisorClient(ray.get_actor(SUPERVISOR_NAME, namespace=NAMESPACE))
    pid = supervisor.pid().get(timeout=30)
    os.kill(pid, signal.SIGKILL)


def test_sigkill_of_queue_and_channel_actors_loses_nothing(service: Service) -> None:
    tags: list[str] = []
    with service.client() as client:
        for start in range(0, TOTAL, 500):
            batch = [email_payload(to=f"user{i}@example.com", uid=i)
                     for i in range(start, start + 500)]
            response = client.post("/v1/notifications/batch", json={"notifications": batch})
            assert response.status_code == 202
            tags += [r["details"]["tag"] for r in response.json()["results"]]
            if start == 500:
                old_shard = _kill(SHARD_1)
            if start == 1000:
                old_channel = _kill(EMAIL_0)
            if start == 1500:
                _kill_supervisor()
        assert len(set(tags)) == TOTAL

        deadline = time.monotonic() + 240
        pending = set(tags)
        while pending and time.monotonic() < deadline:
            for tag in list(pending)[:200]:
                status = client.get(f"/v1/notifications/{tag}").json()
                if status.get("status") == "sent":
                    pending.discard(tag)
                else:
                    assert status.get("status") in ("queued", "sending", "retrying"), status["history"]
            time.sleep(0.2)
    assert not pending, f"{len(pending)} of {TOTAL} never reached sent"
    assert _pid_of(SHARD_1) != old_shard
    assert _pid_of(EMAIL_0) != old_channel

    with service.client() as client:
        metrics = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
    assert "herald_actor_restarts" in metrics

    counts = service.sink.handler.by_tag
    missing = [t for t in tags if counts[t] == 0]
    duplicates = sum(counts[t] - 1 for t in tags if counts[t] > 1)
    print(f"\ncrash test: {TOTAL} accepted, 0 lost, {duplicates} duplicates")
    assert not missing
    assert duplicates <= 200  # at most what one channel actor can have in flight
