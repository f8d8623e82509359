"""Idempotency across shards: a tenant's ``mq-uuid-btag`` is accepted once, whatever its ``uid``.

The protocol intake runs around an enqueue (check, claim, withdraw), over the shards' clients.

A notification lives on its user's shard, where the shard's own index catches a repeated key.
A key is also answered for by one shard chosen from the key (``herald.sharding.shard_for_key``);
when that is another shard, intake checks the key there before and claims it there after the
notification is accepted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import TypeVar

from actors.clients import Call, ShardClient
from herald.errors import HeraldError
from herald.notification import Accepted, Notification
from herald.sharding import shard_for_key

A = TypeVar("A")

log = logging.getLogger("herald.intake")


def keyed_elsewhere(shards: Sequence[ShardClient], notifications: list[Notification]) -> dict[int, int]:
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


async def claimed(shards: Sequence[ShardClient], which: dict[int, int],
                  notifications: list[Notification]) -> dict[int, str]:
    """Before: index → the tag already holding the key, for keys taken on their key shard."""
    def ask(shard: ShardClient, idx: list[int]) -> Call[dict[tuple[str, str], str]]:
        return shard.claimed([_key(notifications[i]) for i in idx])

    answers = await _each_key_shard(shards, which, ask, "check")
    return {i: holder for idx, answer in answers for i in idx
            if (holder := answer.get(_key(notifications[i]))) is not None}


async def claim(shards: Sequence[ShardClient], which: dict[int, int],
                notifications: list[Notification]) -> dict[int, str]:
    """After: index → the holder of each key claimed on its key shard (the notification's own
    tag, or the tag of one accepted first by a request racing with it)."""
    def ask(shard: ShardClient, idx: list[int]) -> Call[list[str]]:
        return shard.claim([(*_key(notifications[i]), notifications[i].tag) for i in idx])

    answers = await _each_key_shard(shards, which, ask, "claim")
    return {i: holder for idx, answer in answers for i, holder in zip(idx, answer, strict=True)}


def _key(notification: Notification) -> tuple[str, str]:
    return notification.tenant, str(notification.idempotency_key)


async def _each_key_shard(shards: Sequence[ShardClient], which: dict[int, int],
                          ask: Callable[[ShardClient, list[int]], Call[A]],
                          what: str) -> list[tuple[list[int], A]]:
    """One call per key shard, with the indexes it was asked about. A key shard that cannot
    answer is skipped: accepting twice is better than losing one."""
    by_shard: dict[int, list[int]] = {}
    for i, key_shard in which.items():
        by_shard.setdefault(key_shard, []).append(i)
    answers = await asyncio.gather(*(ask(shards[s], idx) for s, idx in by_shard.items()),
                                   return_exceptions=True)
    out = []
    for idx, answer in zip(by_shard.values(), answers, strict=True):
        if isinstance(answer, BaseException):
            log.warning("idempotency %s failed", what, exc_info=answer)
        else:
            out.append((idx, answer))
    return out


async def withdraw(shards: Sequence[ShardClient], notification: Notification, holder: str,
                   accepted: Accepted | HeraldError | None) -> Accepted | HeraldError | None:
    """A notification accepted while another held its key: cancel it if it still waits."""
    try:
        await shards[notification.shard].cancel(notification.tag, notification.tenant)
    except HeraldError:
        return accepted  # already on its way: both are sent (counted as a duplicate)
    return Accepted(holder, 0, duplicate=True)
