"""Which shard holds a notification: chosen from ``user.uid``, and written into the tag.

One user's notifications always land on the same shard (so they leave in order), and the tag
carries its shard in its first 16 bits, so a status lookup goes straight to the right shard.
"""

from __future__ import annotations

import os
import uuid
import zlib

from herald.actor_names import SHARD_POOL, actor_name


def shard_hosts(shards: int, per_process: int) -> list[range]:
    """Which shards each queue process hosts: runs of ``per_process`` in order (the last may
    hold fewer)."""
    return [range(first, min(first + per_process, shards))
            for first in range(0, shards, max(1, per_process))]


def host_of(shard: int, per_process: int) -> int:
    """The first shard of the queue process that hosts ``shard``: the process is named after it."""
    return shard - shard % max(1, per_process)


def host_name(shard: int, per_process: int) -> str:
    """The Ray actor name of the process that hosts ``shard``: named after its first shard, so
    with one shard per process each is ``herald-shard-<index>`` as it always was."""
    return actor_name(SHARD_POOL, host_of(shard, per_process))


def shard_for_uid(uid: str, shards: int) -> int:
    """Stable across processes and restarts (unlike ``hash()``)."""
    return zlib.crc32(uid.encode()) % shards


class _Entropy:
    """Random bytes from the OS, read 4 KiB at a time: one system call per 256 tags instead of
    one each (``uuid4`` reads 16 bytes per call). A forked child reads its own."""

    def __init__(self) -> None:
        self._pid = -1
        self._buffer = b""
        self._at = 0

    def take(self, count: int) -> bytes:
        if self._pid != os.getpid() or self._at + count > len(self._buffer):
            self._pid, self._buffer, self._at = os.getpid(), os.urandom(4096), 0
        chunk = self._buffer[self._at:self._at + count]
        self._at += count
        return chunk


_ENTROPY = _Entropy()


def make_tag(shard: int) -> str:
    """A random UUID (version 4 bits set) whose first 16 bits are the shard index."""
    raw = bytearray(_ENTROPY.take(16))
    raw[0], raw[1] = (shard >> 8) & 0xFF, shard & 0xFF
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
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
