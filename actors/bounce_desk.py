"""Where bounces and complaints come in: the Supervisor's inbound SMTP listener and what a report
does (issue 20, 4).

With ``HERALD_BOUNCE_DOMAIN`` set, emails go out with the return path ``bounce+{tag}@`` that
domain, whose MX is this listener (``HERALD_BOUNCE_PORT``, on ``HERALD_HOST``;
``actors/bounce_listener.py``). A hard bounce (a DSN: ``Action: failed``, 5.x.x) of a sent email
makes it ``bounced`` at its shard (the tag says which) and suppresses the address for its tenant
on every shard (``reason: bounced``); a complaint (an ARF report) suppresses it too (``reason:
complained``) and turns that category off for email for its user; a soft bounce changes nothing.
A report that fails to apply is answered 451, and the sender sends it again: applying twice
changes nothing more. One listener per deployment: the Supervisor runs one.
"""

from __future__ import annotations

import logging

from actors.bounce_listener import BounceListener
from actors.clients import ShardClient, on_every_shard
from herald.bounce_reports import BounceKind, BounceReport
from herald.config import Settings
from herald.sharding import shard_of_tag

log = logging.getLogger("herald.bounces")


class BounceDesk:
    def __init__(self, settings: Settings, shards: list[ShardClient]) -> None:
        self._settings = settings
        self._shards = shards
        self.listener: BounceListener | None = None

    async def start(self) -> None:
        """Listen, if a bounce domain is configured (nothing would send here otherwise)."""
        domain = self._settings.bounce_domain
        if domain is None or self.listener is not None:
            return
        self.listener = BounceListener(self._settings.host, self._settings.bounce_port, domain,
                                       self.on_report)
        await self.listener.start()
        log.info("bounce listener up", extra={"port": self.listener.port, "domain": domain})

    async def on_report(self, report: BounceReport) -> None:
        if report.kind is BounceKind.SOFT or report.tag is None:
            return
        index = shard_of_tag(report.tag, len(self._shards))
        if index is None:
            return
        found = await self._shards[index].bounce(report)
        if found is not None:
            tenant, entry = found
            await on_every_shard(self._shards, lambda shard: shard.suppress(tenant, entry))

    async def close(self) -> None:
        if self.listener is not None:
            listener, self.listener = self.listener, None
            await listener.close()
