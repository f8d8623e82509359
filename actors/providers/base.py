"""The provider interface: deliver a batch of rendered messages, get one outcome per message."""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Sequence

from herald.outcome import Outcome, outcome_from_error
from herald.render import Message


class Provider(abc.ABC):
    """A provider adapter. Subclasses implement ``send`` and raise ``ProviderError`` kinds.

    ``send`` returns the outcome of a message the provider took (``sent``, or ``delivered`` when
    the provider confirms delivery synchronously). Anything raised becomes an outcome in
    ``herald.outcome.outcome_from_error``: transient → retry, permanent → failed.
    """

    #: Name recorded on each attempt (``smtp``, ``twilio``, ``capture``…).
    name: str = "provider"
    #: Where clients connect to this provider once started, for those they connect to: the
    #: browser gateway's WebSocket URL. None for providers that only send.
    endpoint: str | None = None

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Open pooled connections/clients (one per actor, never one per message)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release what ``start`` opened."""

    async def acked(self, outcomes: Sequence[Outcome]) -> None:  # noqa: B027 - optional hook
        """These outcomes (of this actor's sends) are now durable at their shard.

        The browser gateway uses it to close a race: a user who reconnected while their park was
        on its way to the shard is released again once the park is recorded.
        """

    def breaker_key(self, message: Message) -> str:
        """Which circuit breaker ``message`` counts against: by default the provider's.

        A provider whose destinations fail independently (requester callbacks: one tenant's
        dead URL says nothing of another's) returns ``<name>:<destination>`` instead.
        """
        return self.name

    @abc.abstractmethod
    async def send(self, message: Message) -> Outcome:
        """Deliver one message or raise a ``ProviderError``."""

    async def deliver(self, messages: Sequence[Message]) -> list[Outcome]:
        """Deliver a batch concurrently; never raises."""
        results = await asyncio.gather(
            *(self.send(m) for m in messages), return_exceptions=True
        )
        outcomes = []
        for message, result in zip(messages, results, strict=True):
            if isinstance(result, Outcome):
                outcomes.append(result)
            elif isinstance(result, BaseException):
                if isinstance(result, asyncio.CancelledError | KeyboardInterrupt | SystemExit):
                    raise result
                outcomes.append(outcome_from_error(message.tag, self.name, result))
        return outcomes
