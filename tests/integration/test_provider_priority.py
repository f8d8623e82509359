"""asap first all the way out: an asap send jumps the sends queued inside a provider's pool.

Real peers on loopback: an aiosmtpd relay that holds every message at DATA until the test
releases it, and the Twilio-compatible capture API slowed down. The pool is full of slow normal
sends, more normal sends wait for a connection, then an asap one arrives: it is sent next.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from actors.providers.http_fax import HttpFaxProvider
from actors.providers.smtp_email import SmtpProvider
from capture.fax_api import CaptureFaxApi
from herald.channels import Channel
from herald.config import SmtpTarget
from herald.outcome import Outcome
from herald.priority import ASAP_PRIORITY, DEFAULT_PRIORITY
from herald.render import Message
from tests.support.waiting import until_async


class HoldingRelay:
    """An SMTP handler that notes each message's tag as its DATA arrives, then holds it until
    ``release()``; serves on the test's own loop."""

    def __init__(self) -> None:
        self.arrived: list[str] = []
        self._releases: asyncio.Queue[None] = asyncio.Queue()
        self._arrival = asyncio.Condition()
        self.server: asyncio.Server | None = None

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        tag = next(line.split(b":", 1)[1].strip().decode()
                   for line in content.splitlines() if line.startswith(b"X-Herald-Tag:"))
        async with self._arrival:
            self.arrived.append(tag)
            self._arrival.notify_all()
        await self._releases.get()
        return "250 OK"

    def release(self, count: int = 1) -> None:
        for _ in range(count):
            self._releases.put_nowait(None)

    async def arrivals(self, count: int) -> list[str]:
        """Wait until ``count`` messages reached DATA (5 s at most)."""
        async with asyncio.timeout(5), self._arrival:
            await self._arrival.wait_for(lambda: len(self.arrived) >= count)
        return list(self.arrived)

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: SMTP(self, hostname="localhost"), "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def stop(self) -> None:
        self.release(1000)
        if self.server is not None:
            self.server.close()


@pytest.fixture
async def relay() -> AsyncIterator[tuple[HoldingRelay, int]]:
    holding = HoldingRelay()
    port = await holding.start()
    yield holding, port
    await holding.stop()


def message(tag: str, channel: Channel, priority: int = DEFAULT_PRIORITY, **fields: Any) -> Message:
    plain = Message(
        tag=tag, tenant="acme", type="NOTICE", channel=channel, uid="7", attempt=1,
        to="bob@example.com", sender=None, subject="Hello", title=None, text="Hi",
        html=None, media_url=None, bill_to=None, expires_at=time.time() + 60, priority=priority,
    )
    return dataclasses.replace(plain, **fields)


async def test_asap_email_is_sent_next_when_the_smtp_pool_is_full(
    relay: tuple[HoldingRelay, int],
) -> None:
    holding, port = relay
    provider = SmtpProvider(SmtpTarget("127.0.0.1", port), "herald@example.org", pool_size=2,
                            timeout=10.0)
    await provider.start()
    sends: list[asyncio.Task[Outcome]] = []
    try:
        sends += [asyncio.create_task(provider.send(message(f"slow-{n}", Channel.EMAIL)))
                 for n in range(2)]
        busy = await holding.arrivals(2)
        # Both connections are busy (the two race each other to the relay: either may be first).
        assert sorted(busy) == ["slow-0", "slow-1"]
        for n in range(4):
            sends.append(asyncio.create_task(provider.send(message(f"queued-{n}", Channel.EMAIL))))
            await asyncio.sleep(0)
        await until_async(lambda: provider.gate.waiting == 4, "4 normal sends waiting")
        sends.append(asyncio.create_task(
            provider.send(message("asap", Channel.EMAIL, priority=ASAP_PRIORITY))))
        await until_async(lambda: provider.gate.waiting == 5, "the asap send waiting too")
        holding.release()  # one connection frees up...
        arrived = await holding.arrivals(3)
        assert arrived[2] == "asap"  # ...and the asap message takes it
        holding.release(6)
        outcomes = await asyncio.wait_for(asyncio.gather(*sends), 5)
    finally:
        holding.release(len(sends))
        await asyncio.gather(*sends, return_exceptions=True)
        await provider.close()
    assert [o.kind for o in outcomes] == ["sent"] * 7
    # The asap one left before every normal one queued ahead of it; those left after it (on two
    # connections, in an order the connections' race decides).
    assert holding.arrived[2] == "asap"
    assert sorted(holding.arrived[3:]) == ["queued-0", "queued-1", "queued-2", "queued-3"]


async def test_asap_fax_is_sent_next_when_the_connections_are_busy(tmp_path: Path) -> None:
    api = CaptureFaxApi("fax-key", tmp_path)
    await api.start()
    fax = HttpFaxProvider("fax-key", connection_id="conn-1", default_from="+15550001111",
                          base_url=api.base_url, connections=1)
    await fax.start()
    assert fax._session is not None
    real_post = fax._session.post
    order: list[str] = []

    def post(url: str, **request: Any) -> Any:
        order.append(request["json"]["to"])
        return real_post(url, **request)

    try:
        fax._session.post = post  # type: ignore[method-assign]
        sends: list[asyncio.Task[Outcome]] = []
        document = "https://example.com/a.pdf"
        async with fax.gate.slot(DEFAULT_PRIORITY):  # the only connection is busy
            sends += [asyncio.create_task(fax.send(message(
                f"queued-{n}", Channel.FAX, to=f"+1555000000{n}", media_url=document)))
                for n in range(3)]
            await until_async(lambda: fax.gate.waiting == 3, "3 normal faxes waiting")
            sends.append(asyncio.create_task(fax.send(message(
                "asap", Channel.FAX, ASAP_PRIORITY, to="+15550009999", media_url=document))))
            await until_async(lambda: fax.gate.waiting == 4, "the asap fax waiting too")
            assert order == []
        outcomes = await asyncio.wait_for(asyncio.gather(*sends), 5)
    finally:
        await asyncio.gather(*sends, return_exceptions=True)
        await fax.close()
        await api.stop()
    assert [o.kind for o in outcomes] == ["sent"] * 4
    assert order == ["+15550009999", "+15550000000", "+15550000001", "+15550000002"]
