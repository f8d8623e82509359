"""SMS through Twilio's Messages API: one form POST per message over one keep-alive session.

``TwilioSmsProvider`` sends; ``herald.receipts.twilio_receipt`` turns a signed ``StatusCallback``
request into a ``delivered``/``failed`` outcome. ``provider_error`` is the one place where Twilio's
errors and network errors become Herald's transient/permanent provider errors.

The send is the request the official client makes (``POST {base}/2010-04-01/Accounts/{sid}/
Messages.json``, Basic auth, form fields ``To``, ``From``, ``Body``, ``StatusCallback``), written
directly: the client's request path cost more CPU than the POST itself (issue 19). An error
answer is still read by the client's own ``Version.exception``, so the ``TwilioRestException`` /
``TwilioServiceException`` it raised, and therefore every outcome, are as before; the ``twilio``
package also checks receipts (``RequestValidator``). Sends wait for one of ``connections``
sockets in a ``PriorityGate``: an asap message goes out on the next free socket.

How a receipt finds its notification: the provider asks Twilio to call
``<status_callback_url>?tag=<tag>`` (``&tag=`` when the URL already has a query), so the tag
comes back in the callback URL, which Twilio's signature covers. Whoever serves that URL passes
the full public URL Twilio called, the form fields and the ``X-Twilio-Signature`` header to
``herald.receipts.twilio_receipt`` together with the auth token of the account that sent the message.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
import orjson
from twilio import __version__ as twilio_version
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.base.version import Version
from twilio.http.response import Response

from actors.providers.base import Provider
from herald.errors import (
    PermanentProviderError,
    ProviderError,
    TransientProviderError,
)
from herald.http_status import classify_http_status
from herald.outcome import Outcome
from herald.priority_gate import PriorityGate
from herald.render import Message
from herald.retry import parse_retry_after
from herald.sms import mask_number, segments

TWILIO_API_URL = "https://api.twilio.com"
#: Sockets per provider instance (aiohttp's default connector limit, which the client had).
CONNECTIONS = 100
log = logging.getLogger("herald.providers.twilio")
_HEADERS = {
    "Accept": "application/json",
    "Accept-Charset": "utf-8",
    "Content-Type": "application/x-www-form-urlencoded",
    "User-Agent": f"herald twilio-python/{twilio_version}",
}


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
    """Sends SMS over one keep-alive ``aiohttp`` session per instance (per actor)."""

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
        connections: int = CONNECTIONS,
    ) -> None:
        self.name = name
        self.account_sid = account_sid
        self._auth_token = auth_token
        self.base_url = base_url
        self.default_from = default_from
        self.status_callback_url = status_callback_url
        self.timeout = timeout
        self.connections = connections
        #: The path Twilio's client names in its errors, and the URL it is sent to.
        self._path = f"/2010-04-01/Accounts/{account_sid}/Messages.json"
        self._url = base_url.rstrip("/") + self._path
        self.session: aiohttp.ClientSession | None = None
        self.gate: PriorityGate = PriorityGate(connections)

    def __repr__(self) -> str:  # never show the auth token
        return f"TwilioSmsProvider(name={self.name!r}, account_sid={self.account_sid!r})"

    async def start(self) -> None:
        if self.session is not None and not self.session.closed:
            return
        # Basic auth as aiohttp's (deprecated) BasicAuth wrote it: latin-1, base64.
        credentials = f"{self.account_sid}:{self._auth_token}".encode("latin-1")
        auth = "Basic " + base64.b64encode(credentials).decode("ascii")
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.connections),
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            headers={**_HEADERS, "Authorization": auth},
        )

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
        self.session = None

    def _callback_for(self, tag: str) -> str | None:
        return with_tag(self.status_callback_url, tag) if self.status_callback_url else None

    async def send(self, message: Message) -> Outcome:
        if self.session is None:
            raise RuntimeError(f"{self!r}: call start() before send()")
        sender = message.sender or self.default_from
        if not message.to or not sender:
            raise PermanentProviderError("SMS needs a To number and a From (or default_from)")
        form = {"To": message.to, "From": sender, "Body": message.text}
        callback = self._callback_for(message.tag)
        if callback:
            form["StatusCallback"] = callback
        retry_after: str | None = None
        try:
            async with self.gate.slot(message.priority):
                async with self.session.post(
                    self._url, data=urlencode(form).encode(), allow_redirects=False
                ) as answer:
                    body = await answer.read()
                    if not 200 <= answer.status < 300:
                        retry_after = answer.headers.get("Retry-After")
                        raise _refusal(answer.status, body, answer.headers, self._path)
        except MAPPED_ERRORS as exc:
            error = provider_error(exc, parse_retry_after(retry_after))
            log.debug("twilio refused", extra={
                "tag": message.tag, "to": mask_number(message.to), "code": error.provider_code,
            })
            raise error from exc
        created: dict[str, Any] = orjson.loads(body) if body else {}
        local = segments(message.text)
        # num_segments is a string, and "0" until a Messaging Service has picked a sender.
        reported = str(created.get("num_segments") or "")
        count = int(reported) if reported.isdigit() else 0
        sid = created.get("sid")
        log.debug("twilio accepted", extra={"tag": message.tag, "sid": sid,
                                            "to": mask_number(message.to)})
        return Outcome(
            message.tag, "sent", self.name, provider_id=sid,
            info={"segments": count or local.segments, "encoding": local.encoding},
        )


def _refusal(
    status: int, body: bytes, headers: Mapping[str, str], path: str
) -> TwilioRestException | TwilioServiceException:
    """The exception Twilio's client raises for this error answer (it reads the JSON body)."""
    text = body.decode("utf-8", "replace")
    return Version.exception("POST", path, Response(status, text, headers), "Unable to create record")
