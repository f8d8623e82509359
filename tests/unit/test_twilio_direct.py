"""The direct form POST gives the outcomes the official Twilio client gave, answer for answer.

A loopback server plays a scripted answer (status, headers, body); the same message goes once
through ``TwilioSmsProvider`` and once through ``twilio.rest.Client`` with its aiohttp client,
as the provider sent before issue 19, and the two outcomes must be equal.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from actors.providers.twilio_sms import (
    MAPPED_ERRORS,
    TWILIO_API_URL,
    TwilioSmsProvider,
    provider_error,
)
from herald.outcome import Outcome, outcome_from_error
from herald.render import Message
from herald.retry import parse_retry_after
from herald.sms import segments
from tests.support.providers import deliver

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "test-token-not-a-secret"
FROM = "+15005550006"


@dataclass
class Script:
    """What the server answers next, and the forms it was sent."""

    status: int = 201
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    forms: list[dict[str, str]] = field(default_factory=list)


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[str, Script]]:
    script = Script()

    async def create(request: web.Request) -> web.Response:
        script.forms.append({key: str(value) for key, value in (await request.post()).items()})
        return web.Response(status=script.status, headers=script.headers, text=script.body,
                            content_type="application/json")

    app = web.Application()
    app.router.add_post(f"/2010-04-01/Accounts/{SID}/Messages.json", create)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}", script
    await runner.cleanup()


class _LoopbackClient(AsyncTwilioHttpClient):
    """Twilio's aiohttp client sending to ``base_url``: the provider's transport before."""

    def __init__(self, base_url: str) -> None:
        super().__init__(pool_connections=True, timeout=5.0)
        self.base_url = base_url

    async def request(self, method: str, url: str, *args: object, **kwargs: object) -> Response:
        response: Response = await super().request(
            method, self.base_url + url.removeprefix(TWILIO_API_URL), *args, **kwargs)  # type: ignore[arg-type]
        return response


async def sdk_outcome(base_url: str, message: Message, callback: str) -> Outcome:
    """What ``TwilioSmsProvider.send`` answered when it went through ``twilio.rest.Client``."""
    http = _LoopbackClient(base_url)
    client = Client(SID, TOKEN, http_client=http, environment={})
    try:
        answer = await client.messages.create_async(
            to=message.to, from_=FROM, body=message.text, status_callback=callback)
    except MAPPED_ERRORS as exc:
        last = http._test_only_last_response
        retry_after = parse_retry_after((last.headers or {}).get("Retry-After") if last else None)
        return outcome_from_error(message.tag, "twilio", provider_error(exc, retry_after))
    finally:
        await http.close()
    local = segments(message.text)
    count = int(answer.num_segments) if str(answer.num_segments or "").isdigit() else 0
    return Outcome(message.tag, "sent", "twilio", provider_id=answer.sid,
                   info={"segments": count or local.segments, "encoding": local.encoding})


def sms(to: str = "+14155550100") -> Message:
    return Message(
        tag=str(uuid.uuid4()), tenant="acme", type="OTP_SMS", channel="sms", uid="42", attempt=1,
        to=to, sender=None, subject=None, title=None, text="Your code is 123456", html=None,
        media_url=None, bill_to=None, expires_at=time.time() + 60,
    )


def _error(code: int, message: str, status: int) -> str:
    return json.dumps({"code": code, "message": message, "status": status,
                       "more_info": f"https://www.twilio.com/docs/errors/{code}"})


ANSWERS = {
    "created": (201, {}, json.dumps({"sid": "SM" + "1" * 32, "num_segments": "1"})),
    "created, segments not known yet": (201, {}, json.dumps({"sid": "SM" + "2" * 32,
                                                             "num_segments": "0"})),
    "created, empty body": (200, {}, ""),
    "429 with Retry-After": (429, {"Retry-After": "7"}, _error(20429, "Too Many Requests", 429)),
    "400 code 21211": (400, {}, _error(21211, "The 'To' number +0123456789 is not valid", 400)),
    "400 code 20429 and Retry-After": (400, {"Retry-After": "3"},
                                       _error(20429, "Too Many Requests", 400)),
    "401 code 20003": (401, {}, _error(20003, "Authenticate", 401)),
    "503 with Retry-After": (503, {"Retry-After": "12"}, _error(20503, "Unavailable", 503)),
    "500 not JSON": (500, {}, "<html>oops</html>"),
    "502 empty": (502, {}, ""),
    "408 no code": (408, {}, json.dumps({"message": "timeout"})),
    "302 not followed": (302, {"Location": "http://127.0.0.1:9/"}, ""),
    "RFC 9457 problem": (400, {}, json.dumps({
        "type": "https://www.twilio.com/docs/errors/21211", "title": "Invalid 'To'",
        "status": 400, "code": 21211, "detail": "+14155550100 is not a mobile number"})),
    "RFC 9457 problem, 429": (429, {"Retry-After": "5"}, json.dumps({
        "type": "https://www.twilio.com/docs/errors/20429", "title": "Too Many Requests",
        "status": 429, "code": 20429})),
}


@pytest.mark.parametrize("answer", list(ANSWERS))
async def test_direct_post_answers_as_the_official_client(
    scripted: tuple[str, Script], answer: str
) -> None:
    base_url, script = scripted
    script.status, script.headers, script.body = ANSWERS[answer]
    callback = "https://herald.example/v1/providers/twilio/status"
    provider = TwilioSmsProvider(SID, TOKEN, base_url=base_url, default_from=FROM,
                                 status_callback_url=callback, timeout=5.0)
    await provider.start()
    try:
        message = sms()
        [direct] = await deliver(provider, [message])
    finally:
        await provider.close()
    before = await sdk_outcome(base_url, message, f"{callback}?tag={message.tag}")
    assert direct == before
    assert script.forms[0] == script.forms[1]  # the same form, field for field


async def test_direct_post_maps_429_and_21211_as_before(scripted: tuple[str, Script]) -> None:
    """The two answers the brief names, spelled out: 429 → retry after 7 s, 21211 → failed."""
    base_url, script = scripted
    provider = TwilioSmsProvider(SID, TOKEN, base_url=base_url, default_from=FROM)
    await provider.start()
    try:
        script.status, script.headers, script.body = ANSWERS["429 with Retry-After"]
        [limited] = await deliver(provider, [sms()])
        script.status, script.headers, script.body = ANSWERS["400 code 21211"]
        [refused] = await deliver(provider, [sms()])
    finally:
        await provider.close()
    assert (limited.kind, limited.code, limited.retry_after) == ("retry", "20429", 7.0)
    assert (refused.kind, refused.code) == ("failed", "21211")
    assert refused.error == "Twilio 400: Unable to create record: The 'To' number +0…89 is not valid"
    assert script.forms[0].keys() == {"To", "From", "Body"}  # no StatusCallback=None
