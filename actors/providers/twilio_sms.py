"""SMS through Twilio's Messages API (official ``twilio`` client).

``TwilioSmsProvider`` sends; ``herald.receipts.twilio_receipt`` turns a signed ``StatusCallback``
request into a ``delivered``/``failed`` outcome. ``provider_error`` is the one place where Twilio's
errors and network errors become Herald's transient/permanent provider errors.

How a receipt finds its notification: the provider asks Twilio to call
``<status_callback_url>?tag=<tag>`` (``&tag=`` when the URL already has a query), so the tag
comes back in the callback URL, which Twilio's signature covers. Whoever serves that URL passes
the full public URL Twilio called, the form fields and the ``X-Twilio-Signature`` header to
``herald.receipts.twilio_receipt`` together with the auth token of the account that sent the message.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from actors.providers.base import Provider
from herald.errors import (
    PermanentProviderError,
    ProviderError,
    TransientProviderError,
)
from herald.http_status import classify_http_status
from herald.outcome import Outcome
from herald.render import Message
from herald.retry import parse_retry_after
from herald.sms import mask_number, segments

TWILIO_API_URL = "https://api.twilio.com"
log = logging.getLogger("herald.providers.twilio")
# The twilio library logs every request at INFO, the account SID included: keep it quiet.
logging.getLogger("twilio").setLevel(logging.WARNING)


@dataclass(slots=True)
class ResponseMeta:
    """What the HTTP client saw of the last response inside one ``observe()`` block."""

    status: int | None = None
    retry_after: float | None = None


# One slot per send: concurrent sends share the client, so "the last response" must be per task.
_RESPONSE_META: ContextVar[ResponseMeta | None] = ContextVar("twilio_response", default=None)


class BaseUrlAsyncHttpClient(AsyncTwilioHttpClient):
    """Twilio's aiohttp client, pointed at ``base_url`` and with a default timeout that applies.

    The official client has no base-URL option, so request URLs starting with
    ``https://api.twilio.com`` are rewritten. The upstream client passes ``timeout=None`` to
    aiohttp, which disables every timeout; the constructor's ``timeout`` is used instead.
    """

    def __init__(self, base_url: str = TWILIO_API_URL, timeout: float | None = 15.0) -> None:
        super().__init__(pool_connections=True, timeout=timeout)
        self.base_url = base_url.rstrip("/")

    def rewrite(self, url: str) -> str:
        if url.startswith(TWILIO_API_URL):
            return self.base_url + url[len(TWILIO_API_URL):]
        return url

    @contextmanager
    def observe(self) -> Iterator[ResponseMeta]:
        """Record status and ``Retry-After`` of the responses awaited inside the block."""
        meta = ResponseMeta()
        token = _RESPONSE_META.set(meta)
        try:
            yield meta
        finally:
            _RESPONSE_META.reset(token)

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        response: Response = await super().request(
            method, self.rewrite(url), params=params, data=data, headers=headers, auth=auth,
            timeout=self.timeout if timeout is None else timeout, allow_redirects=allow_redirects,
        )
        meta = _RESPONSE_META.get()
        if meta is not None:
            meta.status = response.status_code
            meta.retry_after = parse_retry_after((response.headers or {}).get("Retry-After"))
        return response


#: Errors ``provider_error`` knows how to classify; anything else propagates unchanged.
MAPPED_ERRORS: tuple[type[BaseException], ...] = (
    TwilioRestException, TwilioServiceException, aiohttp.ClientError, TimeoutError, OSError,
)
#: Twilio's "too many requests" code: transient whatever HTTP status carried it.
_TRANSIENT_CODES = frozenset({20429})
_PHONE_RE = re.compile(r"\+?\d{6,15}")


def provider_error(error: BaseException, retry_after: float | None = None) -> ProviderError:
    """Classify one of ``MAPPED_ERRORS``: HTTP statuses as ``herald.http_status`` says, plus
    Twilio's code 20429 and network trouble, are transient."""
    if isinstance(error, TwilioRestException | TwilioServiceException):
        status, code = int(error.status), error.code
        if isinstance(error, TwilioRestException):
            text = str(error.msg)
        else:
            text = f"{error.title} {error.detail or ''}".rstrip()
        # Twilio quotes the number it refused; outcomes end up in logs, so mask it.
        message = f"Twilio {status}: " + _PHONE_RE.sub(lambda m: mask_number(m.group()), text)
        if code in _TRANSIENT_CODES:
            return TransientProviderError(message, str(code), retry_after)
        return classify_http_status(status, message, str(code or status), retry_after)
    if isinstance(error, TimeoutError):
        return TransientProviderError(f"Twilio timeout: {type(error).__name__}", "timeout")
    return TransientProviderError(f"Twilio unreachable: {type(error).__name__}: {error}", "network")


def with_tag(url: str, tag: str) -> str:
    """The status callback URL for one message: ``url`` with ``tag=<tag>`` appended."""
    return f"{url}{'&' if urlsplit(url).query else '?'}{urlencode({'tag': tag})}"


class TwilioSmsProvider(Provider):
    """Sends SMS with one pooled Twilio client per instance (per actor)."""

    name = "twilio"

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        base_url: str = TWILIO_API_URL,
        default_from: str | None = None,
        status_callback_url: str | None = None,
        timeout: float = 15.0,
        name: str = "twilio",
    ) -> None:
        self.name = name
        self.account_sid = account_sid
        self._auth_token = auth_token
        self.base_url = base_url
        self.default_from = default_from
        self.status_callback_url = status_callback_url
        self.timeout = timeout
        self.http_client: BaseUrlAsyncHttpClient | None = None
        self._client: Any = None

    def __repr__(self) -> str:  # never show the auth token
        return f"TwilioSmsProvider(name={self.name!r}, account_sid={self.account_sid!r})"

    async def start(self) -> None:
        if self._client is not None:
            return
        self.http_client = BaseUrlAsyncHttpClient(self.base_url, timeout=self.timeout)
        # environment={} keeps TWILIO_REGION/TWILIO_EDGE from rewriting the host behind our back.
        self._client = Client(
            self.account_sid, self._auth_token, http_client=self.http_client, environment={}
        )

    async def close(self) -> None:
        if self.http_client is not None:
            await self.http_client.close()
        self.http_client, self._client = None, None

    def _callback_for(self, tag: str) -> str | None:
        return with_tag(self.status_callback_url, tag) if self.status_callback_url else None

    async def send(self, message: Message) -> Outcome:
        if self._client is None or self.http_client is None:
            raise RuntimeError(f"{self!r}: call start() before send()")
        sender = message.sender or self.default_from
        if not message.to or not sender:
            raise PermanentProviderError("SMS needs a To number and a From (or default_from)")
        callback = self._callback_for(message.tag)
        with self.http_client.observe() as meta:
            try:
                answer = await self._client.messages.create_async(
                    to=message.to, from_=sender, body=message.text, status_callback=callback
                )
            except MAPPED_ERRORS as exc:
                error = provider_error(exc, meta.retry_after)
                log.debug("twilio refused", extra={
                    "tag": message.tag, "to": mask_number(message.to), "code": error.provider_code,
                })
                raise error from exc
        local = segments(message.text)
        # num_segments is a string, and "0" until a Messaging Service has picked a sender.
        count = int(answer.num_segments) if str(answer.num_segments or "").isdigit() else 0
        log.debug("twilio accepted", extra={"tag": message.tag, "sid": answer.sid,
                                            "to": mask_number(message.to)})
        return Outcome(
            message.tag, "sent", self.name, provider_id=answer.sid,
            info={"segments": count or local.segments, "encoding": local.encoding},
        )
