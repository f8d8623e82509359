"""The Ray names of Herald's actors and the namespace they live in, spelled here and nowhere else.

Every named actor (the Supervisor, the queue shards, the channel actors, the rate limiter, the
admin sessions) is detached in namespace ``herald``: whoever looks one up (intake, the launcher,
a restarted Supervisor taking its pools over) finds it by these names.
"""

from __future__ import annotations

from typing import Final, Literal, TypeAlias

from herald.channels import Channel

#: The Ray namespace of every named actor of Herald (and of the drivers that look them up).
NAMESPACE: Final = "herald"
#: The Supervisor, one per deployment.
SUPERVISOR_NAME: Final = "herald-supervisor"
#: The pool of queue shards, beside the channel pools: ``actor_name(SHARD_POOL, 0)`` is ``herald-shard-0``.
SHARD_POOL: Final = "shard"

#: A pool of actors the Supervisor keeps: the queue shards or one channel's actors.
Pool: TypeAlias = Channel | Literal["shard"]


def pool_key(pool: Pool) -> str:
    """``shard`` or the channel's lower-case key (``email``)."""
    return pool.key if isinstance(pool, Channel) else pool


def actor_prefix(pool: Pool) -> str:
    """What the names of ``pool``'s actors start with (``herald-email-``)."""
    return f"herald-{pool_key(pool)}-"


def actor_name(pool: Pool, index: int) -> str:
    """The Ray name of actor ``index`` of ``pool``: ``herald-shard-0``, ``herald-email-1``
    (browser actor ``i`` is gateway ``i``)."""
    return f"{actor_prefix(pool)}{index}"
