"""Channels, lanes and notification types: ``type`` is ``<CATEGORY>_<CHANNEL>``.

A *channel* is how a notification travels (``EMAIL``, ``SMS``, ``FAX``, ``BROWSER``, and the
internal ``WEBHOOK`` of requester callbacks). A *lane* is the queue a channel actor leases from:
the channel itself, or ``BROWSER.<gateway>`` so that each browser gateway leases only the users
routed to it. Both are built here and nowhere else.
"""

from __future__ import annotations

import enum
import re
import zlib
from dataclasses import dataclass

from herald.errors import ValidationError


class Channel(str, enum.Enum):
    BROWSER = "BROWSER"
    SMS = "SMS"
    EMAIL = "EMAIL"
    FAX = "FAX"
    #: Requester callbacks: an internal channel, never a client's ``type``.
    WEBHOOK = "WEBHOOK"

    @property
    def key(self) -> str:
        """The lower-case name configuration uses (``HERALD_POOLS="email=2"``)."""
        return self.value.lower()

    @classmethod
    def from_key(cls, name: str) -> Channel:
        """``"email"`` or ``"EMAIL"`` → ``Channel.EMAIL``; ValueError for anything else."""
        return cls(name.upper())


#: The channels a client may name in ``type``.
CLIENT_CHANNELS = (Channel.BROWSER, Channel.SMS, Channel.EMAIL, Channel.FAX)

_TYPE_RE = re.compile(r"^([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*)_(BROWSER|SMS|EMAIL|FAX)\Z")


def parse_type(notification_type: str) -> tuple[str, Channel]:
    """Split ``CM_BROWSER`` into (``CM``, Channel.BROWSER); raise ValidationError otherwise."""
    match = _TYPE_RE.fullmatch(notification_type)
    if match is None:
        raise ValidationError(
            "type must be <CATEGORY>_<CHANNEL> with CHANNEL one of BROWSER, SMS, EMAIL, FAX",
            field="type",
        )
    return match.group(1), Channel(match.group(2))


def gateway_for(tenant: str, uid: str, gateways: int) -> int:
    """The browser gateway that owns a user's connections (and so their notifications)."""
    return zlib.crc32(f"{tenant}\x00{uid}".encode()) % max(1, gateways)


@dataclass(frozen=True, slots=True)
class Lane:
    """One ready queue of a shard: a channel, or one browser gateway's share of BROWSER."""

    channel: Channel
    gateway: int | None = None

    def __str__(self) -> str:
        return self.channel.value if self.gateway is None else f"{self.channel.value}.{self.gateway}"

    @classmethod
    def of(cls, channel: Channel, tenant: str, uid: str, gateways: int) -> Lane:
        """The lane of a notification: its channel, or its user's gateway for BROWSER."""
        if channel is Channel.BROWSER:
            return cls(channel, gateway_for(tenant, uid, gateways))
        return cls(channel)

    @classmethod
    def of_actor(cls, channel: Channel, index: int) -> Lane:
        """The lane channel actor ``index`` leases from (browser actor ``i`` is gateway ``i``)."""
        return cls(channel, index) if channel is Channel.BROWSER else cls(channel)

    @classmethod
    def parse(cls, text: str) -> Lane:
        """``"EMAIL"`` or ``"BROWSER.0"`` → Lane (for logs, tests and the admin API)."""
        name, _, gateway = text.partition(".")
        return cls(Channel(name), int(gateway) if gateway else None)
