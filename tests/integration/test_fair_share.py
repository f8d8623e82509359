"""Issue 17, item 3, on real Ray: a tenant whose callbacks all wait on a dead endpoint cannot
make another tenant's intake answer 429 below its fair share of the queue limit.

The repro, scaled down (limit 200 over 2 shards): tenant A's emails are sent, each queues a
callback to a closed loopback port, and those callbacks are deferred (their breaker open) as the
webhook pool would defer them; A then holds the whole limit. Tenant B's notifications go through
intake's own router to the real shard actors: B gets its share, A is refused.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import ray

from actors.clients import ShardClient, shard_clients
from actors.queue import QueueActor
from herald.channels import Channel, Lane
from herald.config import Settings
from herald.errors import QueueFull
from herald.exchange import Exchange
from herald.notification import Accepted
from herald.outcome import Outcome
from herald.sharding import shard_hosts
from serve.enqueue import ShardRouter
from tests.unit.conftest import make_notification

LIMIT, SHARDS = 200, 2
DEAD_HOOK = "http://127.0.0.1:9/hook"  # discard port: nothing listens


def test_a_tenant_whose_callbacks_all_wait_cannot_429_another_below_its_share(
        ray_session: None, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, shards=SHARDS, queue_limit=LIMIT,
                        sqlite_synchronous="OFF", callback_allow="127.0.0.1/32")
    # Every shard in one process, as on a small box (HERALD_SHARDS_PER_PROCESS).
    host = QueueActor.options(name=f"fair-{time.time()}").remote(  # type: ignore[attr-defined]
        list(range(SHARDS)), settings)
    try:
        asyncio.run(_scenario(shard_clients([host], shard_hosts(SHARDS, SHARDS))))
    finally:
        ray.kill(host, no_restart=True)


async def _scenario(shards: list[ShardClient]) -> None:
    router = ShardRouter(shards)
    now = time.time()
    pool = [make_notification("EMAIL", tenant="a", uid=i, now=now, callback_url=DEAD_HOOK,
                              shards=SHARDS) for i in range(3 * LIMIT)]
    # Exactly each shard's part of the limit (users are spread over shards by uid).
    flood = [n for s in range(SHARDS) for n in [m for m in pool if m.shard == s][:LIMIT // SHARDS]]
    answers = await router.enqueue(flood)
    assert all(isinstance(a, Accepted) for a in answers), answers[:3]
    # The email pool sends them all; each final state queues a callback to the dead endpoint,
    # which the webhook pool defers (its breaker is open): A's work now waits, and counts.
    for shard in shards:
        while leased := (await shard.exchange(Exchange(Lane(Channel.EMAIL), want=100))).leased:
            await shard.ack([Outcome(d.tag, "sent", "smtp", lease=d.lease) for d in leased])
        hooks = (await shard.exchange(Exchange(Lane(Channel.WEBHOOK), want=500))).leased
        await shard.ack([Outcome(d.tag, "defer", "none", lease=d.lease, retry_after=60.0,
                                        error="every provider's circuit is open") for d in hooks])
    stats = [await shard.stats("a") for shard in shards]
    assert sum(s.depth["WEBHOOK"]["queued"] for s in stats) == LIMIT  # A holds the whole limit

    more_of_a = await router.enqueue([make_notification("EMAIL", tenant="a", uid=i, now=now, shards=SHARDS)
                                       for i in range(10)])
    assert all(isinstance(a, QueueFull) for a in more_of_a)  # A is over its share: refused
    # B's share on each shard is half of that shard's limit: 50 of each 100.
    b = [make_notification("SMS", tenant="b", uid=i, now=now, shards=SHARDS)
         for i in range(400)]
    per_shard = {s: [n for n in b if n.shard == s][:LIMIT // SHARDS // 2] for s in range(SHARDS)}
    within = [n for s in range(SHARDS) for n in per_shard[s]]
    answers = await router.enqueue(within)
    refused = [a for a in answers if not isinstance(a, Accepted)]
    assert not refused, f"{len(refused)} of tenant b's {len(within)} refused: {refused[:1]}"
    beyond = [n for n in b if n not in within][:SHARDS]
    assert all(isinstance(a, QueueFull) for a in await router.enqueue(beyond))
