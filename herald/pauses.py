"""Paused channels: an operator stops a channel's deliveries, and the stop survives a restart.

A paused channel's lanes lease nothing (``QueueShard.lease``): its notifications stay ``queued``
(retries fall due and wait in line too) and leave in their usual order once it is resumed.
Each shard keeps its pauses in its own storage (``Storage.save_pause``), written before the
call that paused it returns, and reads them back when it starts; intake asks every shard.
Only the channels a client can name are pausable: requester callbacks (``WEBHOOK``) are not.
"""

from __future__ import annotations

from collections.abc import Mapping

from herald.channels import CLIENT_CHANNELS, Channel
from herald.errors import NotFound

__all__ = ["PAUSABLE", "Pauses", "pausable"]

PAUSABLE = CLIENT_CHANNELS


def pausable(name: str) -> Channel:
    """``"email"`` → ``Channel.EMAIL``; ``NotFound`` for a name that is not a pausable channel."""
    try:
        channel = Channel.from_key(name)
    except ValueError:
        channel = None
    if channel not in PAUSABLE:
        names = ", ".join(c.key for c in PAUSABLE)
        raise NotFound(f"no channel {name[:40]!r} to pause or resume (one of {names})")
    assert channel is not None
    return channel


class Pauses:
    """The channels a shard leases nothing from, each with when it was paused."""

    def __init__(self, stored: Mapping[str, float] | None = None) -> None:
        self._since: dict[Channel, float] = {Channel(name): at for name, at in (stored or {}).items()}

    def __contains__(self, channel: object) -> bool:
        return channel in self._since

    def add(self, channel: Channel, at: float) -> None:
        self._since.setdefault(channel, at)

    def discard(self, channel: Channel) -> None:
        self._since.pop(channel, None)

    def since(self) -> dict[str, float]:
        """Channel key (``email``) → when it was paused."""
        return {channel.key: at for channel, at in self._since.items()}
