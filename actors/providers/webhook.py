"""Requester callbacks: POST the final status to ``requester.callback_url``, signed per tenant.

The signature is ``X-Herald-Signature: <hex HMAC-SHA256 of the raw body>`` with the tenant's
webhook secret (``HERALD_WEBHOOK_SECRETS``, else the tenant's API key). 2xx → sent; any other
status as ``herald.http_status`` classifies it (408, 425, 429, 5xx → retry with ``Retry-After``;
the rest → failed; redirects are not followed); network errors → retry.
"""

from __future__ import annotations

from collections.abc import Callable

import aiohttp

from actors.providers.base import Provider
from herald.errors import TransientProviderError
from herald.http_status import classify_http_status
from herald.outcome import Outcome
from herald.render import Message
from herald.retry import parse_retry_after
from herald.signing import sign_body

SIGNATURE_HEADER = "X-Herald-Signature"


class WebhookProvider(Provider):
    name = "webhook"

    def __init__(self, secret_for: Callable[[str], str], timeout: float = 10.0) -> None:
        self._secret_for = secret_for
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=self._timeout)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def send(self, message: Message) -> Outcome:
        assert self._session is not None and message.to
        body = message.text.encode()
        headers = {"Content-Type": "application/json", "User-Agent": "Herald-Webhook/1",
                   SIGNATURE_HEADER: sign_body(body, self._secret_for(message.tenant)),
                   "X-Herald-Tag": message.tag.split(".")[0]}
        try:
            async with self._session.post(message.to, data=body, headers=headers,
                                          allow_redirects=False) as response:
                status = response.status
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise TransientProviderError(f"{type(exc).__name__}", "network") from exc
        if 200 <= status < 300:
            return Outcome(message.tag, "sent", self.name, info={"http_status": status})
        raise classify_http_status(status, f"HTTP {status}", retry_after=retry_after)
