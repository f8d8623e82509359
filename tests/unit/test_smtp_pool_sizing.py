"""SmtpProvider sizes its pool from the relay's latency: real aiosmtpd relays on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from actors.providers.smtp_email import SmtpProvider
from herald.config import SmtpTarget
from tests.support.providers import deliver
from tests.unit.test_smtp_email import HOST, SENDER, Recorder, Server, make_message


class SlowRecorder(Recorder):
    """Takes ``seconds`` over each DATA (a relay with a fixed latency), or when ``overloaded``
    ``seconds`` times the cube of the messages in DATA at once (each session slows the others
    down: more connections, fewer messages a second)."""

    def __init__(self, seconds: float, overloaded: bool) -> None:
        super().__init__()
        self.seconds, self.overloaded = seconds, overloaded
        self.active = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.active += 1
        try:
            await asyncio.sleep(self.seconds * (self.active ** 3 if self.overloaded else 1))
        finally:
            self.active -= 1
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def slow_server(request: pytest.FixtureRequest) -> Iterator[Server]:
    seconds, overloaded = request.param
    server = Server(SlowRecorder(seconds, overloaded))
    server.start()
    yield server
    server.stop()


def provider_for(server: Server, samples: int) -> SmtpProvider:
    provider = SmtpProvider(SmtpTarget(HOST, server.port), SENDER, pool_size=6, timeout=10)
    provider.sizer.samples = samples  # decide sooner than in production: a short test
    return provider


@pytest.mark.parametrize("slow_server", [(0.05, False)], indirect=True)
async def test_a_relay_with_a_fixed_latency_gets_more_connections(slow_server: Server) -> None:
    provider = provider_for(slow_server, samples=16)
    try:
        outcomes = await deliver(provider, [make_message(f"tag-{n}") for n in range(40)])
    finally:
        await provider.close()
    assert [o.kind for o in outcomes] == ["sent"] * 40
    # Starts with two and opens more while sends queue. How many stay depends on how loaded
    # the box is (this process runs the relay too): the unit tests of ConnectionSizer pin that.
    assert 3 <= slow_server.connections <= 6


@pytest.mark.parametrize("slow_server", [(0.002, True)], indirect=True)
async def test_an_overloaded_relay_gets_back_the_connection_that_hurt_it(
    slow_server: Server,
) -> None:
    provider = provider_for(slow_server, samples=16)
    try:
        outcomes = await deliver(provider, [make_message(f"tag-{n}") for n in range(100)])
        assert [o.kind for o in outcomes] == ["sent"] * 100
        # The connection added made the relay send less: the pool went back one (closing a
        # connection) and holds there.
        assert provider.sizer.held_until > 0 and slow_server.recorder.quits >= 1
        assert provider.gate.capacity == provider.sizer.size < slow_server.connections
    finally:
        await provider.close()
    # Every connection still open was closed politely: none leaked.
    assert slow_server.recorder.quits == slow_server.connections
