"""Idempotency across shards: a tenant's ``mq-uuid-btag`` is accepted once, whatever its ``uid``.

A notification lives on its user's shard, where the shard's own index catches a repeated key.
A key is also answered for by one shard chosen from the key (``herald.sharding.shard_for_key``);
when that is another shard, intake checks the key there before and claims it there after the
notification is accepted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from herald.errors import HeraldError
from herald.notification import Accepted, Notification
from herald.sharding import shard_for_key
from serve.answers import shard_call

log = logging.getLogger("herald.intake")


def keyed_elsewhere(shards: Sequence[Any], notifications: list[Notification]) -> dict[int, int]:
    """Index → key shard of the notifications whose idempotency key is answered for by
    another shard than their user's. The key is checked there before, and claimed there
    after, the notification is accepted: nothing accepted is ever lost, and only two
    requests racing with one key can both be accepted (the later one is then cancelled
    while still queued)."""
    out = {}
    for i, n in enumerate(notifications):
        if n.idempotency_key:
            key_shard = shard_for_key(n.tenant, n.idempotency_key, len(shards))
            if key_shard != n.shard:
                out[i] = key_shard
    return out


async def claims(shards: Sequence[Any], method: str, which: dict[int, int],
                 notifications: list[Notification]) -> dict[int, str]:
    """``claimed`` (keys already taken → their tag) or ``claim`` (→ the holder of each key),
    one call per key shard. A key shard that cannot answer is skipped: accepting twice is
    better than losing one."""
    by_shard: dict[int, list[int]] = {}
    for i, key_shard in which.items():
        by_shard.setdefault(key_shard, []).append(i)
    calls = []
    for key_shard, idx in by_shard.items():
        keys = [(notifications[i].tenant, str(notifications[i].idempotency_key)) for i in idx]
        handle = getattr(shards[key_shard], method)
        calls.append(handle.remote(keys) if method == "claimed" else
                     handle.remote([(*k, notifications[i].tag) for k, i in zip(keys, idx, strict=True)]))
    answers = await asyncio.gather(*calls, return_exceptions=True)
    out: dict[int, str] = {}
    for (_, idx), answer in zip(by_shard.items(), answers, strict=True):
        if isinstance(answer, BaseException):
            log.warning("idempotency %s failed", method, exc_info=answer)
            continue
        for j, i in enumerate(idx):
            n = notifications[i]
            holder = answer.get((n.tenant, n.idempotency_key)) if method == "claimed" else answer[j]
            if holder is not None:
                out[i] = holder
    return out


async def withdraw(shards: Sequence[Any], notification: Notification, holder: str,
                    accepted: Accepted | HeraldError | None) -> Accepted | HeraldError | None:
    """A notification accepted while another held its key: cancel it if it still waits."""
    try:
        await shard_call(shards[notification.shard].cancel.remote(
            notification.tag, notification.tenant))
    except HeraldError:
        return accepted  # already on its way: both are sent (counted as a duplicate)
    return Accepted(holder, 0, duplicate=True)
