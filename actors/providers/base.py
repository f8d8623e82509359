"""The provider interface: send one rendered message, get its outcome (``attempt``: never raises)."""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence

from herald.outcome import Outcome, outcome_from_error
from herald.priority_gate import PriorityGate
from herald.render import Message


class Provider(abc.ABC):
    """A provider adapter. Subclasses implement ``send`` and raise ``ProviderError`` kinds.

    ``send`` returns the outcome of a message the provider took (``sent``, or ``delivered`` when
    the provider confirms delivery synchronously). Anything raised becomes an outcome in
    ``attempt`` (by ``herald.outcome.outcome_from_error``): transient → retry, permanent →
    failed. A channel actor sends many messages at once, each its own ``send``: there is no
    batch call (no provider API here takes one).
    """

    #: Name recorded on each attempt (``smtp``, ``twilio``, ``capture``…).
    name: str = "provider"
    #: Where clients connect to this provider once started, for those they connect to: the
    #: browser gateway's WebSocket URL. None for providers that only send.
    endpoint: str | None = None
    #: The provider's connections, for those that hold a bounded number (SMTP, HTTP APIs).
    gate: PriorityGate | None = None
    #: Who hears of slots released early (``set_slot_release``); nobody by default.
    _slot_release: Callable[[str], None] | None = None

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Open pooled connections/clients (one per actor, never one per message)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release what ``start`` opened."""

    async def acked(self, outcomes: Sequence[Outcome]) -> None:  # noqa: B027 - optional hook
        """These outcomes (of this actor's sends) are now durable at their shard.

        The browser gateway uses it to close a race: a user who reconnected while their park was
        on its way to the shard is released again once the park is recorded.
        """

    def set_slot_release(self, release: Callable[[str], None]) -> None:
        """Let this provider free a send's concurrency slot before the send ends.

        The channel actor passes ``release``; a provider calls it (through ``release_slot``)
        with the tag of a send that no longer occupies it though its outcome is still to come:
        the browser gateway once the frame is written and only the browser's ack is awaited.
        The actor may then lease more; the send's lease stays held (and renewed) until its
        outcome. Providers that never call it cost nothing.
        """
        self._slot_release = release

    def release_slot(self, tag: str) -> None:
        """``tag``'s send no longer needs its slot (see ``set_slot_release``)."""
        if self._slot_release is not None:
            self._slot_release(tag)

    def waiting(self) -> int:
        """Sends this provider holds that wait for a free connection: work leased out of the
        shards but not started, which the Supervisor counts as backlog when it sizes the pool."""
        return self.gate.waiting if self.gate is not None else 0

    def breaker_key(self, message: Message) -> str:
        """Which circuit breaker ``message`` counts against: by default the provider's.

        A provider whose destinations fail independently (requester callbacks: one tenant's
        dead URL says nothing of another's) returns ``<name>:<destination>`` instead.
        """
        return self.name

    @abc.abstractmethod
    async def send(self, message: Message) -> Outcome:
        """Deliver one message or raise a ``ProviderError``."""


async def attempt(provider: Provider, message: Message) -> Outcome:
    """``provider.send(message)``, an error it raises made an outcome; never raises but for
    cancellation (the actor stopping, the attempt's deadline)."""
    try:
        return await provider.send(message)
    except Exception as exc:  # noqa: BLE001 - every error is an outcome, decided by its type
        return outcome_from_error(message.tag, provider.name, exc)
