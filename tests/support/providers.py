"""Sends through a provider as the channel actor makes them: each its own ``attempt``, at once."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from actors.providers.base import Provider, attempt
from herald.outcome import Outcome
from herald.render import Message


async def deliver(provider: Provider, messages: Sequence[Message]) -> list[Outcome]:
    """One outcome per message, in order; an error a send raises comes back as its outcome."""
    return list(await asyncio.gather(*(attempt(provider, m) for m in messages)))
