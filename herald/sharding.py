"""Which shard holds a notification: chosen from ``user.uid``, and written into the tag.

One user's notifications always land on the same shard (so they leave in order), and the tag
carries its shard in its first 16 bits, so a status lookup goes straight to the right shard.
"""

from __future__ import annotations

import uuid
import zlib


def shard_for_uid(uid: str, shards: int) -> int:
    """Stable across processes and restarts (unlike ``hash()``)."""
    return zlib.crc32(uid.encode()) % shards


def make_tag(shard: int) -> str:
    """A random UUID (version 4 bits kept) whose first 16 bits are the shard index."""
    raw = bytearray(uuid.uuid4().bytes)
    raw[0], raw[1] = (shard >> 8) & 0xFF, shard & 0xFF
    return str(uuid.UUID(bytes=bytes(raw)))


def shard_of_tag(tag: str, shards: int) -> int | None:
    """The shard a tag was made for, or None when ``tag`` is not a Herald tag."""
    try:
        parsed = uuid.UUID(tag)
    except ValueError:
        return None
    index = (parsed.bytes[0] << 8) | parsed.bytes[1]
    return index if index < shards else None


def shard_for_key(tenant: str, key: str, shards: int) -> int:
    """The shard that answers for an idempotency key (``user.mq-uuid-btag``) of a tenant.

    A notification lives on its user's shard; its key is also claimed on this shard when that
    is another one, so the same key with another ``uid`` is still recognised.
    """
    return zlib.crc32(f"{tenant}\x00{key}".encode()) % shards
