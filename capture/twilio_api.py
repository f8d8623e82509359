"""A Twilio-compatible Messages API on loopback, for dev mode and tests: captures, signs receipts.

Serves what Herald's Twilio provider uses of the real API, with Twilio's field names, error
shapes and codes:

    POST /2010-04-01/Accounts/{AccountSid}/Messages.json          send (201, status "queued")
    GET  /2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json    fetch (current status)

Each accepted message is appended to the outbox (channel ``sms``); if it named a
``StatusCallback``, that URL then receives ``sent`` and ``delivered`` in the background, form
encoded and signed with ``X-Twilio-Signature`` like Twilio does. Faults for tests:
``fail_next``, ``fail_until``, ``reject_numbers`` and ``delay_until`` (slow or hanging).
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import secrets
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from twilio.request_validator import RequestValidator

from capture import outbox
from capture.callbacks import post_receipt
from herald.contacts import E164_RE
from herald.sms import mask_number, segments

API = "/2010-04-01/Accounts/{account}"
log = logging.getLogger("herald.capture.twilio")

_STATUS_CODES = {401: 20003, 404: 20404, 429: 20429, 500: 20500, 503: 20503}
_MESSAGES = {
    20003: "Authenticate",
    20404: "The requested resource was not found",
    20429: "Too Many Requests",
    20500: "An internal server error has occurred",
    20503: "Service Unavailable",
    21408: "Permission to send an SMS has not been enabled for the region indicated by the "
           "'To' number",
    21602: "Message body is required.",
    21603: "A 'From' phone number is required.",
    21604: "A 'To' phone number is required.",
    21610: "Attempt to send to unsubscribed recipient",
    21614: "'To' number is not a valid mobile number",
}


def _now() -> str:
    """Twilio's timestamp format: ``Thu, 24 Aug 2023 05:01:45 +0000``."""
    return email.utils.format_datetime(datetime.now(UTC))


def _twilio_error(status: int, code: int, message: str | None = None,
                  headers: dict[str, str] | None = None) -> web.Response:
    body = {"code": code, "message": message or _MESSAGES.get(code, "Error"),
            "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status}
    return web.json_response(body, status=status, headers=headers)


class CaptureTwilioApi:
    """The fake Twilio: ``await start()``, point a client at ``base_url``, ``await stop()``."""

    def __init__(self, account_sid: str, auth_token: str, outbox_dir: Path | str,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.account_sid = account_sid
        self._auth = aiohttp.BasicAuth(account_sid, auth_token)
        self._validator = RequestValidator(auth_token)
        self.outbox_dir = Path(outbox_dir)
        self.host, self.port = host, port
        self.messages: list[dict[str, Any]] = []
        self.requests = 0
        self._by_sid: dict[str, dict[str, Any]] = {}
        self._fail_count, self._fail_status, self._fail_retry_after = 0, 503, 1.0
        self._fail_deadline = 0.0
        self._delay_deadline, self._delay = 0.0, 0.0
        self._rejected: dict[str, int] = {}
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def base_url(self) -> str:
        if self._runner is None:
            raise RuntimeError("CaptureTwilioApi is not started")
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post(API + "/Messages.json", self._create)
        app.router.add_get(API + "/Messages/{sid}.json", self._fetch)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        self.port = self._runner.addresses[0][1]
        # Like a real provider, callbacks go out over a bounded pool, not all at once.
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=16),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=30))

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()
        self._runner = self._session = None

    # Fault injection -----------------------------------------------------------------------

    def fail_next(self, count: int, status: int = 503, retry_after: float = 1.0) -> None:
        """Answer the next ``count`` send requests with ``status`` (429 adds ``Retry-After``)."""
        self._fail_count, self._fail_status, self._fail_retry_after = count, status, retry_after

    def fail_until(self, deadline: float, status: int = 503, retry_after: float = 1.0) -> None:
        """Answer every send request with ``status`` until ``time.monotonic()`` >= ``deadline``."""
        self._fail_deadline = deadline
        self._fail_status, self._fail_retry_after = status, retry_after

    def delay_until(self, deadline: float, seconds: float) -> None:
        """Take ``seconds`` over each send request that arrives before ``time.monotonic()``
        reaches ``deadline``: a slow provider, or one that hangs when ``seconds`` outlasts the
        client. A request whose client gave up meanwhile is dropped unprocessed."""
        self._delay_deadline, self._delay = deadline, seconds

    def reject_numbers(self, numbers: Iterable[str], code: int = 21610) -> None:
        """Refuse sends to these numbers for good with Twilio error ``code`` (HTTP 400)."""
        self._rejected.update(dict.fromkeys(numbers, code))

    # Handlers ------------------------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        try:
            auth = aiohttp.BasicAuth.decode(request.headers.get("Authorization", ""))
        except ValueError:
            return False
        return secrets.compare_digest(auth.encode(), self._auth.encode())

    def _injected_fault(self) -> web.Response | None:
        if self._fail_count > 0:
            self._fail_count -= 1
        elif time.monotonic() >= self._fail_deadline:
            return None
        status = self._fail_status
        headers = {"Retry-After": f"{self._fail_retry_after:g}"} if status == 429 else None
        return _twilio_error(status, _STATUS_CODES.get(status, status), headers=headers)

    def _check_account(self, request: web.Request) -> web.Response | None:
        if not self._authorized(request):
            return _twilio_error(401, 20003)
        if request.match_info["account"] != self.account_sid:
            return _twilio_error(404, 20404)
        return None

    async def _create(self, request: web.Request) -> web.Response:
        self.requests += 1
        if time.monotonic() < self._delay_deadline:
            answer_at = time.monotonic() + self._delay
            while (left := answer_at - time.monotonic()) > 0:
                await asyncio.sleep(min(left, 0.25))
                if request.transport is None or request.transport.is_closing():
                    return web.Response(status=499)  # nobody is waiting: nothing was sent
        refused = self._check_account(request) or self._injected_fault()
        if refused is not None:
            return refused
        form = await request.post()
        to, sender, body = (str(form.get(key, "")) for key in ("To", "From", "Body"))
        if not to:
            return _twilio_error(400, 21604)
        if not E164_RE.match(to):
            return _twilio_error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if not sender:
            return _twilio_error(400, 21603)
        if not body:
            return _twilio_error(400, 21602)
        if to in self._rejected:
            return _twilio_error(400, self._rejected[to])
        message = self._record(to, sender, body)
        callback = str(form.get("StatusCallback", ""))
        if callback:
            task = asyncio.create_task(self._report(callback, message))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return web.json_response(message, status=201)

    async def _fetch(self, request: web.Request) -> web.Response:
        refused = self._check_account(request)
        if refused is not None:
            return refused
        message = self._by_sid.get(request.match_info["sid"])
        return web.json_response(message) if message else _twilio_error(404, 20404)

    def _record(self, to: str, sender: str, body: str) -> dict[str, Any]:
        sid = "SM" + secrets.token_hex(16)
        now = _now()
        uri = f"{API.format(account=self.account_sid)}/Messages/{sid}.json"
        count = segments(body).segments
        message: dict[str, Any] = {
            "sid": sid, "account_sid": self.account_sid, "api_version": "2010-04-01",
            "to": to, "from": sender, "body": body, "status": "queued",
            "num_segments": str(count), "num_media": "0", "direction": "outbound-api",
            "date_created": now, "date_updated": now, "date_sent": None,
            "error_code": None, "error_message": None, "messaging_service_sid": None,
            "price": None, "price_unit": "USD", "uri": uri,
            "subresource_uris": {"media": uri.replace(".json", "/Media.json")},
        }
        self.messages.append(message)
        self._by_sid[sid] = message
        outbox.append(self.outbox_dir, "sms",
                      {"sid": sid, "to": to, "from": sender, "body": body, "segments": count})
        return message

    async def _report(self, url: str, message: dict[str, Any]) -> None:
        """POST ``sent`` then ``delivered`` to the StatusCallback, signed; failures only logged."""
        if self._session is None:
            return
        for status in ("sent", "delivered"):
            message["status"] = status
            message["date_updated"] = _now()
            params = {
                "MessageSid": message["sid"], "SmsSid": message["sid"],
                "MessageStatus": status, "SmsStatus": status, "AccountSid": self.account_sid,
                "To": message["to"], "From": message["from"], "ApiVersion": "2010-04-01",
            }
            headers = {"X-Twilio-Signature": self._validator.compute_signature(url, params)}
            try:
                status_code = await post_receipt(self._session, url, params, headers)
                if status_code >= 400:
                    log.warning("status callback answered %s", status_code,
                                extra={"sid": message["sid"], "to": mask_number(message["to"])})
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                log.warning("status callback failed: %s", type(exc).__name__,
                            extra={"sid": message["sid"], "to": mask_number(message["to"])})
                return
