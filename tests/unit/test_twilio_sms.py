"""Twilio SMS provider against the capture Twilio API on loopback: sends, receipts, error mapping."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from twilio.request_validator import RequestValidator

from actors.providers.twilio_sms import TwilioSmsProvider
from capture import outbox
from capture.net import free_port
from capture.twilio_api import CaptureTwilioApi
from herald.errors import AuthError
from herald.receipts import twilio_receipt
from herald.render import Message
from herald.retry import parse_retry_after
from tests.support.connection_count import counting_connections
from tests.support.providers import deliver
from tests.support.waiting import until_async

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "test-token-not-a-secret"
FROM = "+15005550006"
TO = "+14155550100"

Callback = tuple[str, dict[str, str], str | None]


@dataclass
class Receiver:
    url: str
    received: asyncio.Queue[Callback]

    async def next(self) -> Callback:
        return await asyncio.wait_for(self.received.get(), 5)


def sms(text: str = "Your code is 123456", to: str = TO) -> Message:
    return Message(
        tag=str(uuid.uuid4()), tenant="acme", type="OTP_SMS", channel="sms", uid="42", attempt=1,
        to=to, sender=None, subject=None, title=None, text=text, html=None, media_url=None,
        bill_to=None, expires_at=time.time() + 60,
    )


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[CaptureTwilioApi]:
    server = CaptureTwilioApi(SID, TOKEN, tmp_path / "outbox")
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    received: asyncio.Queue[Callback] = asyncio.Queue()

    async def status(request: web.Request) -> web.Response:
        form = {key: str(value) for key, value in (await request.post()).items()}
        await received.put((str(request.url), form, request.headers.get("X-Twilio-Signature")))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/twilio/status", status)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    yield Receiver(f"http://127.0.0.1:{port}/twilio/status?account=main", received)
    await runner.cleanup()


async def started(
    base_url: str, token: str = TOKEN, status_callback_url: str | None = None,
    http_timeout: float = 5.0,
) -> TwilioSmsProvider:
    provider = TwilioSmsProvider(
        SID, token, base_url=base_url, default_from=FROM,
        status_callback_url=status_callback_url, timeout=http_timeout,
    )
    await provider.start()
    return provider


@pytest.fixture
async def provider(api: CaptureTwilioApi, receiver: Receiver) -> AsyncIterator[TwilioSmsProvider]:
    twilio = await started(api.base_url, status_callback_url=receiver.url)
    yield twilio
    await twilio.close()


async def test_send_reaches_the_api_and_returns_the_sid(
    provider: TwilioSmsProvider, api: CaptureTwilioApi
) -> None:
    message = sms("x" * 200)
    outcome = await provider.send(message)
    assert (outcome.tag, outcome.kind, outcome.provider) == (message.tag, "sent", "twilio")
    assert outcome.provider_id and outcome.provider_id.startswith("SM")
    assert len(outcome.provider_id) == 34
    assert outcome.info == {"segments": 2, "encoding": "GSM-7"}
    [got] = api.messages
    assert (got["sid"], got["to"], got["from"], got["body"]) == (outcome.provider_id, TO, FROM,
                                                                 "x" * 200)
    [entry] = outbox.read(api.outbox_dir, "sms")
    assert (entry["sid"], entry["to"], entry["segments"]) == (outcome.provider_id, TO, 2)


async def test_status_callback_is_signed_and_yields_delivered_with_the_tag(
    provider: TwilioSmsProvider, api: CaptureTwilioApi, receiver: Receiver
) -> None:
    message = sms()
    sent = await provider.send(message)
    url, form, signature = await receiver.next()
    assert "account=main" in url and f"tag={message.tag}" in url
    assert form["MessageStatus"] == "sent"
    assert twilio_receipt(url, form, signature, TOKEN) is None
    url, form, signature = await receiver.next()
    receipt = twilio_receipt(url, form, signature, TOKEN)
    assert receipt is not None
    assert (receipt.tag, receipt.kind, receipt.provider_id) == (message.tag, "delivered",
                                                                sent.provider_id)
    async with aiohttp.ClientSession(auth=aiohttp.BasicAuth(SID, TOKEN)) as session:
        path = f"/2010-04-01/Accounts/{SID}/Messages/{sent.provider_id}.json"
        async with session.get(api.base_url + path) as answer:
            assert (await answer.json())["status"] == "delivered"


async def test_tampered_or_missing_signature_raises_auth_error(
    provider: TwilioSmsProvider, receiver: Receiver
) -> None:
    await provider.send(sms())
    url, form, signature = await receiver.next()
    with pytest.raises(AuthError):
        twilio_receipt(url, {**form, "MessageStatus": "delivered"}, signature, TOKEN)
    with pytest.raises(AuthError):
        twilio_receipt(url.replace("tag=", "tag=0"), form, signature, TOKEN)
    with pytest.raises(AuthError):
        twilio_receipt(url, form, None, TOKEN)
    with pytest.raises(AuthError):
        twilio_receipt(url, form, signature, "another-token")


def test_undelivered_receipt_is_failed_with_the_error_code() -> None:
    url = "https://herald.example/twilio/status?tag=t-1"
    form = {"MessageSid": "SM1", "MessageStatus": "undelivered", "ErrorCode": "30003"}
    signature = RequestValidator(TOKEN).compute_signature(url, form)
    receipt = twilio_receipt(url, form, signature, TOKEN, provider="twilio-backup")
    assert receipt is not None
    assert (receipt.tag, receipt.kind, receipt.code, receipt.provider) == (
        "t-1", "failed", "30003", "twilio-backup")


async def test_invalid_number_is_failed_21211(provider: TwilioSmsProvider) -> None:
    [outcome] = await deliver(provider, [sms(to="+0123456789")])
    assert (outcome.kind, outcome.code) == ("failed", "21211")
    assert outcome.error and "+0…89" in outcome.error and "0123456789" not in outcome.error


async def test_rejected_number_is_failed_21610(
    provider: TwilioSmsProvider, api: CaptureTwilioApi
) -> None:
    api.reject_numbers({TO})
    [outcome] = await deliver(provider, [sms()])
    assert (outcome.kind, outcome.code) == ("failed", "21610")
    assert api.messages == []


async def test_wrong_credentials_are_failed_20003(api: CaptureTwilioApi) -> None:
    twilio = await started(api.base_url, token="wrong")
    try:
        [outcome] = await deliver(twilio, [sms()])
    finally:
        await twilio.close()
    assert (outcome.kind, outcome.code) == ("failed", "20003")


async def test_503_is_retried(provider: TwilioSmsProvider, api: CaptureTwilioApi) -> None:
    api.fail_next(1, 503)
    [first] = await deliver(provider, [sms()])
    [second] = await deliver(provider, [sms()])
    assert (first.kind, first.code, first.retry_after) == ("retry", "20503", None)
    assert second.kind == "sent"
    assert api.requests == 2 and len(api.messages) == 1


async def test_fail_until_a_deadline(provider: TwilioSmsProvider, api: CaptureTwilioApi) -> None:
    api.fail_until(time.monotonic() + 60, 500)
    [during] = await deliver(provider, [sms()])
    api.fail_until(0.0)
    [after] = await deliver(provider, [sms()])
    assert (during.kind, during.code, after.kind) == ("retry", "20500", "sent")


async def test_429_is_retried_after_retry_after(
    provider: TwilioSmsProvider, api: CaptureTwilioApi
) -> None:
    api.fail_next(1, 429, retry_after=7)
    [outcome] = await deliver(provider, [sms()])
    assert (outcome.kind, outcome.code, outcome.retry_after) == ("retry", "20429", 7.0)


async def test_closed_port_is_retried() -> None:
    twilio = await started(f"http://127.0.0.1:{free_port()}")
    try:
        [outcome] = await deliver(twilio, [sms()])
    finally:
        await twilio.close()
    assert (outcome.kind, outcome.code) == ("retry", "network")


async def test_silent_server_times_out_and_is_retried() -> None:
    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never answers; returns when the client gives up
        writer.close()

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    twilio = await started(f"http://127.0.0.1:{port}", http_timeout=0.2)
    try:
        [outcome] = await deliver(twilio, [sms()])
    finally:
        await twilio.close()
        server.close()
        await server.wait_closed()
    assert (outcome.kind, outcome.code) == ("retry", "timeout")


async def test_100_sends_share_one_keep_alive_session_of_4_connections(
    api: CaptureTwilioApi,
) -> None:
    twilio = TwilioSmsProvider(SID, TOKEN, base_url=api.base_url, default_from=FROM,
                               connections=4)
    with counting_connections() as opened:
        await twilio.start()
    session = twilio.session
    try:
        for batch in range(2):
            messages = [sms(f"message {n}", to=f"+1415555{batch}{n:03d}") for n in range(50)]
            outcomes = await deliver(twilio, messages)
            assert [o.kind for o in outcomes] == ["sent"] * 50
            assert [o.tag for o in outcomes] == [m.tag for m in messages]
        assert twilio.session is session and session is not None and not session.closed
    finally:
        await twilio.close()
    assert len({m["sid"] for m in api.messages}) == 100
    assert 1 <= len(opened) <= 4  # the gate keeps 4 in flight; the connector keeps them alive


async def test_asap_send_takes_the_next_free_connection(api: CaptureTwilioApi) -> None:
    """One connection, held by a slow send; normal sends queue, then an asap one: it goes next."""
    twilio = TwilioSmsProvider(SID, TOKEN, base_url=api.base_url, default_from=FROM,
                               connections=1)
    await twilio.start()
    try:
        api.delay_until(time.monotonic() + 60, 1.0)  # the first request is slow...
        first = asyncio.create_task(twilio.send(sms("first")))
        await until_async(lambda: api.requests == 1, "the first request at the API")
        api.delay_until(0.0, 0.0)  # ...and only the first
        normal = [asyncio.create_task(twilio.send(sms(f"normal {n}"))) for n in range(3)]
        await until_async(lambda: twilio.gate.waiting == 3, "3 normal sends waiting")
        urgent = sms("urgent")
        asap = asyncio.create_task(twilio.send(dataclasses.replace(urgent, priority=8)))
        await asyncio.wait_for(asyncio.gather(first, asap, *normal), 5)
    finally:
        await twilio.close()
    assert [m["body"] for m in api.messages] == [
        "first", "urgent", "normal 0", "normal 1", "normal 2"]


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Thu, 01 Jan 1970 00:00:30 GMT", now=10.0) == 20.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


async def test_408_is_retried(provider: TwilioSmsProvider, api: CaptureTwilioApi) -> None:
    api.fail_next(1, 408)
    [outcome] = await deliver(provider, [sms()])
    assert (outcome.kind, outcome.code) == ("retry", "408")


def test_twilio_20429_is_transient_whatever_the_status() -> None:
    from twilio.base.exceptions import TwilioRestException

    from actors.providers.twilio_sms import provider_error
    from herald.errors import PermanentProviderError, TransientProviderError

    limited = provider_error(TwilioRestException(400, "/Messages", "Too Many Requests", 20429), 5.0)
    refused = provider_error(TwilioRestException(400, "/Messages", "Invalid 'To' +14155550100", 21211))
    assert isinstance(limited, TransientProviderError) and limited.retry_after == 5.0
    assert isinstance(refused, PermanentProviderError) and refused.provider_code == "21211"
    assert "+14155550100" not in refused.message  # numbers are masked in outcomes
