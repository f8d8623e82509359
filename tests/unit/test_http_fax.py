"""HttpFaxProvider against the capture fax API over real loopback HTTP, and Telnyx-signed receipts.

The forged, stale and malformed cases of the signature itself are in ``test_receipts.py``.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import orjson
import pytest
from aiohttp import ClientSession, web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from actors.providers.http_fax import HttpFaxProvider
from capture import outbox
from capture.fax_api import CaptureFaxApi
from capture.net import free_port
from herald.errors import AuthError
from herald.fax_document import count_pages
from herald.outcome import Outcome
from herald.receipts import (
    TELNYX_SIGNATURE_HEADER,
    TELNYX_TIMESTAMP_HEADER,
    fax_client_state,
    fax_receipt,
)
from herald.render import Message
from tests.support.connection_count import counting_connections
from tests.support.providers import deliver

API_KEY = "KEY-test-secret"
TO = "+15551234567"

Webhook = tuple[bytes, str | None, str | None, str]  # raw body, signature, timestamp, query


def _message(tag: str = "tag-1", **changes: object) -> Message:
    message = Message(
        tag=tag, tenant="acme", type="NOTICE_FAX", channel="fax", uid="7", attempt=1, to=TO,
        sender=None, subject=None, title="Invoice 42", text="Your invoice is ready.", html=None,
        media_url=None, bill_to=None, expires_at=time.time() + 60,
    )
    return replace(message, **changes)  # type: ignore[arg-type]


@pytest.fixture
async def webhooks() -> AsyncIterator[tuple[str, asyncio.Queue[Webhook]]]:
    """A receiver for fax webhooks: its URL and the queue of what it got."""
    received: asyncio.Queue[Webhook] = asyncio.Queue()

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        received.put_nowait((body, request.headers.get(TELNYX_SIGNATURE_HEADER),
                             request.headers.get(TELNYX_TIMESTAMP_HEADER), request.query_string))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hooks/fax", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/hooks/fax", received
    await runner.cleanup()


@pytest.fixture
async def fax_api(tmp_path: Path) -> AsyncIterator[CaptureFaxApi]:
    api = CaptureFaxApi(API_KEY, tmp_path)
    await api.start()
    yield api
    await api.stop()


def _provider(
    base_url: str, webhook_url: str | None = None, api_key: str = API_KEY
) -> HttpFaxProvider:
    return HttpFaxProvider(
        api_key, connection_id="conn-1", default_from="+15550001111", base_url=base_url,
        webhook_url=webhook_url, timeout=2.0,
    )


@pytest.fixture
async def provider(
    fax_api: CaptureFaxApi, webhooks: tuple[str, asyncio.Queue[Webhook]]
) -> AsyncIterator[HttpFaxProvider]:
    fax = _provider(fax_api.base_url, webhooks[0])
    await fax.start()
    yield fax
    await fax.close()


async def _receipt(received: asyncio.Queue[Webhook], public_key: str) -> Outcome:
    """Wait for the first webhook that is a receipt (skipping ``fax.queued`` and the like)."""
    while True:
        body, signature, timestamp, _ = await asyncio.wait_for(received.get(), timeout=5)
        receipt = fax_receipt(body, signature, timestamp, public_key, time.time())
        if receipt is not None:
            return receipt


async def test_text_fax_arrives_as_a_one_page_pdf(
    provider: HttpFaxProvider, fax_api: CaptureFaxApi, tmp_path: Path
) -> None:
    (outcome,) = await deliver(provider, [_message()])
    assert outcome.kind == "sent" and outcome.provider == "telnyx"
    assert outcome.info == {"pages": 1}
    (fax,) = fax_api.faxes
    assert outcome.provider_id == fax["id"]
    assert (fax["to"], fax["from"], fax["connection_id"]) == (TO, "+15550001111", "conn-1")
    assert fax["pdf"].startswith(b"%PDF-") and count_pages(fax["pdf"]) == 1
    (entry,) = outbox.read(tmp_path, "fax")
    assert entry["id"] == fax["id"] and entry["pages"] == 1
    stored = await asyncio.to_thread(Path(entry["pdf"]).read_bytes)
    assert stored == fax["pdf"] and entry["bytes"] == len(fax["pdf"])


async def test_media_url_fax_passes_the_url_through(
    provider: HttpFaxProvider, fax_api: CaptureFaxApi
) -> None:
    url = "https://files.example.com/contract.pdf"
    (outcome,) = await deliver(provider, [_message(media_url=url, sender="+15559998888")])
    assert outcome.kind == "sent"
    (fax,) = fax_api.faxes
    assert fax["media_url"] == url and fax["pdf"] is None and fax["from"] == "+15559998888"


async def test_delivered_webhook_carries_the_tag_and_a_valid_signature(
    provider: HttpFaxProvider, fax_api: CaptureFaxApi, webhooks: tuple[str, asyncio.Queue[Webhook]]
) -> None:
    (sent,) = await deliver(provider, [_message(tag="tag-delivered")])
    receipt = await _receipt(webhooks[1], fax_api.public_key)
    assert receipt == Outcome(
        "tag-delivered", "delivered", "telnyx", provider_id=sent.provider_id, info={"pages": 1}
    )


async def test_the_tag_travels_in_client_state_not_in_the_url(
    provider: HttpFaxProvider, fax_api: CaptureFaxApi, webhooks: tuple[str, asyncio.Queue[Webhook]]
) -> None:
    await deliver(provider, [_message(tag="tag-state")])
    (fax,) = fax_api.faxes
    assert fax["client_state"] == fax_client_state("tag-state") == base64.b64encode(b"tag-state").decode()
    assert fax["webhook_url"] == webhooks[0]  # no ?tag=: the signature would not cover it
    body, _, _, query = await asyncio.wait_for(webhooks[1].get(), timeout=5)
    assert query == ""
    assert orjson.loads(body)["data"]["payload"]["client_state"] == fax_client_state("tag-state")


async def test_webhook_is_signed_like_telnyx_ed25519_over_timestamp_and_body(
    provider: HttpFaxProvider, fax_api: CaptureFaxApi, webhooks: tuple[str, asyncio.Queue[Webhook]]
) -> None:
    await deliver(provider, [_message()])
    body, signature, timestamp, _ = await asyncio.wait_for(webhooks[1].get(), timeout=5)
    assert signature is not None and timestamp is not None
    assert abs(int(timestamp) - time.time()) < 5  # unix seconds, sent now
    # Checked here with the primitive itself, independently of herald.receipts:
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(fax_api.public_key))
    key.verify(base64.b64decode(signature), timestamp.encode() + b"|" + body)  # raises if not
    assert orjson.loads(body)["data"]["event_type"] == "fax.queued"
    assert fax_receipt(body, signature, timestamp, fax_api.public_key, time.time()) is None


async def test_a_webhook_is_refused_with_another_peers_key(
    provider: HttpFaxProvider,
    fax_api: CaptureFaxApi,
    webhooks: tuple[str, asyncio.Queue[Webhook]],
    tmp_path: Path,
) -> None:
    other = CaptureFaxApi(API_KEY, tmp_path)  # another account: a key pair of its own
    assert other.public_key != fax_api.public_key
    await deliver(provider, [_message()])
    body, signature, timestamp, _ = await asyncio.wait_for(webhooks[1].get(), timeout=5)
    with pytest.raises(AuthError):
        fax_receipt(body, signature, timestamp, other.public_key, time.time())


async def test_client_state_must_be_base64_as_at_telnyx(fax_api: CaptureFaxApi) -> None:
    fields = {"connection_id": "c", "to": TO, "from": "+15550001111",
              "media_url": "https://files.example.com/a.pdf", "client_state": "not base64!"}
    async with ClientSession() as session, session.post(
        f"{fax_api.base_url}/v2/faxes", json=fields, headers={"Authorization": f"Bearer {API_KEY}"}
    ) as answer:
        assert answer.status == 422
        assert (await answer.json())["errors"][0]["source"] == {"pointer": "/client_state"}
    assert fax_api.faxes == []


async def test_503_is_retried(provider: HttpFaxProvider, fax_api: CaptureFaxApi) -> None:
    fax_api.fail_next(1, status=503)
    (first,) = await deliver(provider, [_message()])
    assert first.kind == "retry" and first.code == "10007" and first.retry_after is None
    (second,) = await deliver(provider, [_message()])
    assert second.kind == "sent" and len(fax_api.faxes) == 1


async def test_429_is_retried_after_retry_after(
    provider: HttpFaxProvider, fax_api: CaptureFaxApi
) -> None:
    fax_api.fail_next(1, status=429, retry_after=7)
    (outcome,) = await deliver(provider, [_message()])
    assert (outcome.kind, outcome.code, outcome.retry_after) == ("retry", "10011", 7.0)


async def test_invalid_number_fails_for_good(
    provider: HttpFaxProvider, fax_api: CaptureFaxApi
) -> None:
    (outcome,) = await deliver(provider, [_message(to="555-1234")])
    assert outcome.kind == "failed" and outcome.code == "10016"
    assert "555-1234" not in (outcome.error or "")
    assert fax_api.faxes == []


async def test_rejected_number_is_sent_then_failed_by_receipt(
    provider: HttpFaxProvider,
    fax_api: CaptureFaxApi,
    webhooks: tuple[str, asyncio.Queue[Webhook]],
) -> None:
    fax_api.reject_numbers({TO})
    (sent,) = await deliver(provider, [_message(tag="tag-busy")])
    assert sent.kind == "sent"
    receipt = await _receipt(webhooks[1], fax_api.public_key)
    assert (receipt.tag, receipt.kind, receipt.code) == ("tag-busy", "failed", "user_busy")
    assert receipt.provider_id == sent.provider_id


async def test_wrong_api_key_fails_for_good(fax_api: CaptureFaxApi) -> None:
    fax = _provider(fax_api.base_url, api_key="KEY-wrong")
    await fax.start()
    try:
        (outcome,) = await deliver(fax, [_message()])
    finally:
        await fax.close()
    assert outcome.kind == "failed" and outcome.code == "10009"
    assert "KEY-wrong" not in repr(fax)


async def test_closed_port_is_retried() -> None:
    fax = _provider(f"http://127.0.0.1:{free_port()}")  # nobody listens there
    await fax.start()
    try:
        (outcome,) = await deliver(fax, [_message()])
    finally:
        await fax.close()
    assert outcome.kind == "retry" and outcome.code == "network"


async def test_batch_is_delivered_concurrently_over_one_session(
    provider: HttpFaxProvider, fax_api: CaptureFaxApi
) -> None:
    outcomes = await deliver(provider, [_message(tag=f"tag-{i}") for i in range(5)])
    assert [o.kind for o in outcomes] == ["sent"] * 5
    assert len({o.provider_id for o in outcomes}) == 5 == len(fax_api.faxes)


async def test_sends_keep_alive_at_most_connections_sockets(fax_api: CaptureFaxApi) -> None:
    fax = HttpFaxProvider(API_KEY, connection_id="conn-1", default_from="+15550001111",
                          base_url=fax_api.base_url, connections=2)
    with counting_connections() as opened:
        await fax.start()
    try:
        for batch in range(2):
            outcomes = await deliver(fax, [
                _message(tag=f"tag-{batch}-{i}", media_url="https://example.com/doc.pdf")
                for i in range(10)])
            assert [o.kind for o in outcomes] == ["sent"] * 10
    finally:
        await fax.close()
    assert len(fax_api.faxes) == 20
    assert 1 <= len(opened) <= 2


async def test_timeout_is_retried() -> None:
    release = asyncio.Event()

    async def stall(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(status=202)

    app = web.Application()
    app.router.add_post("/v2/faxes", stall)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    fax = HttpFaxProvider(
        API_KEY, connection_id="conn-1", default_from="+15550001111",
        base_url=f"http://127.0.0.1:{runner.addresses[0][1]}", timeout=0.2,
    )
    await fax.start()
    try:
        (outcome,) = await deliver(fax, [_message()])
    finally:
        release.set()
        await fax.close()
        await runner.cleanup()
    assert (outcome.kind, outcome.code) == ("retry", "network")


async def test_message_without_number_or_content_fails_for_good(
    provider: HttpFaxProvider, fax_api: CaptureFaxApi
) -> None:
    no_number, no_content = await deliver(provider,
        [_message(to=None), _message(title=None, text="")]
    )
    assert (no_number.kind, no_number.code) == ("failed", "no_recipient")
    assert (no_content.kind, no_content.code) == ("failed", "no_content")
    assert fax_api.faxes == []


@pytest.mark.parametrize("status", [408, 425])
async def test_request_timeout_and_too_early_are_retried(
    provider: HttpFaxProvider, fax_api: CaptureFaxApi, status: int
) -> None:
    # The same rule as every HTTP provider (herald.http_status): the moment was wrong, not the fax.
    fax_api.fail_next(1, status=status, retry_after=3)
    (first,) = await deliver(provider, [_message()])
    assert (first.kind, first.code, first.retry_after) == ("retry", "10007", 3.0)
    (second,) = await deliver(provider, [_message()])
    assert second.kind == "sent" and len(fax_api.faxes) == 1
