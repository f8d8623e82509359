"""Requester callbacks: POST the final status to ``requester.callback_url``, signed per tenant.

The tenant's secret is its ``HERALD_WEBHOOK_SECRETS`` entry, else the random ``whsec_`` secret
Herald keeps for it (``herald.webhook_secrets``: in the data dir, or the database every deployment
on it shares; never the API key). For a day
after a rotation the old secret signs too: each header then carries both signatures, the new
one first, space-separated, and a receiver accepts the callback if any matches.

* ``X-Herald-Signature: <hex HMAC-SHA256 of the raw body>``, Herald's own (kept for existing
  receivers), keyed with the UTF-8 bytes of the secret exactly as the tenant reads it;
* Standard Webhooks (https://www.standardwebhooks.com): ``webhook-id`` (the callback record's
  tag, ``<tag>.<status>``: the same on every retry, so a receiver can drop one it has seen),
  ``webhook-timestamp`` (Unix seconds of this attempt) and ``webhook-signature``
  (``v1,<base64 HMAC of "{id}.{timestamp}.{body}">``). A receiver verifies with
  ``standardwebhooks.Webhook(standard_webhooks_secret(secret)).verify(body, headers)`` (a
  ``whsec_`` secret as it is, another ``"whsec_" + base64(secret)``), which also refuses
  timestamps more than 5 minutes off.

Where it posts is checked again at send time (DNS can change since intake), by the rule of
``herald.callback_policy``: the connector's resolver checks every address a name resolves to
and the connection goes to those checked addresses, so a name rebound to 169.254.169.254 is
never reached. A refused destination is ``failed`` with code ``callback_refused``.

2xx → sent; any other status as ``herald.http_status`` classifies it (408, 425, 429, 5xx →
retry with ``Retry-After``; the rest → failed; redirects are not followed); network errors →
retry. Breakers are per tenant and destination (``breaker_key``): one dead URL defers only its
callbacks, and one tenant's failing endpoint never defers another tenant's on the same host.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from standardwebhooks import Webhook

from actors.providers.base import Provider
from herald.callback_policy import CallbackAllow, check_addresses, parse_callback_url
from herald.errors import PermanentProviderError, TransientProviderError, ValidationError
from herald.http_status import classify_http_status
from herald.outcome import Outcome
from herald.render import Message
from herald.retry import parse_retry_after
from herald.signing import sign_body
from herald.webhook_secrets import hmac_key, standard_webhooks_secret

__all__ = ["REFUSED", "SIGNATURE_HEADER", "CheckedResolver", "WebhookProvider",
           "standard_webhooks_secret"]

SIGNATURE_HEADER = "X-Herald-Signature"
#: The outcome code of a callback whose destination the policy refuses at send time.
REFUSED = "callback_refused"


def _refused(error: ValidationError) -> PermanentProviderError:
    return PermanentProviderError(error.message, REFUSED)


class CheckedResolver(AbstractResolver):
    """Resolves with ``inner``; refuses the whole answer unless the policy allows every address.

    aiohttp connects only to the addresses this returns (and caches only answers that passed).
    """

    def __init__(self, inner: AbstractResolver, allow: CallbackAllow) -> None:
        self._inner = inner
        self._allow = allow

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        try:
            check_addresses(host, [ipaddress.ip_address(r["host"]) for r in results], self._allow)
        except ValidationError as exc:
            raise _refused(exc) from None
        return results

    async def close(self) -> None:
        await self._inner.close()


class WebhookProvider(Provider):
    """``secrets_for(tenant)``: the secrets that sign its callbacks now, current first ([]: none).
    ``resolver`` (default aiohttp's) answers for host names; the provider owns and closes it.
    ``clock`` gives ``webhook-timestamp`` (Unix time)."""

    name = "webhook"

    def __init__(
        self, secrets_for: Callable[[str], Sequence[str]], timeout: float = 10.0,
        allow: CallbackAllow | None = None, resolver: AbstractResolver | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secrets_for = secrets_for
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._allow = allow or CallbackAllow()
        self._resolver = resolver
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._checked: CheckedResolver | None = None

    async def start(self) -> None:
        self._checked = CheckedResolver(self._resolver or aiohttp.DefaultResolver(), self._allow)
        self._session = aiohttp.ClientSession(
            timeout=self._timeout, connector=aiohttp.TCPConnector(resolver=self._checked))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._checked is not None:
            await self._checked.close()

    def breaker_key(self, message: Message) -> str:
        """``webhook:<tenant>:<host>:<port>``: a host is often shared (a hosting platform, a
        webhook relay), and its answers to one tenant say nothing about its answers to another."""
        try:
            target = parse_callback_url(message.to or "")
        except ValidationError:
            return f"{self.name}:{message.tenant}:invalid"
        return f"{self.name}:{message.tenant}:{target.host}:{target.port}"

    def _check_literal(self, url: str) -> None:
        """The policy's checks that happen before DNS: the URL's form and an IP-literal host
        (aiohttp does not ask the resolver about those)."""
        try:
            target = parse_callback_url(url)
            if target.address is not None:
                check_addresses(target.host, [target.address], self._allow)
        except ValidationError as exc:
            raise _refused(exc) from None

    def _headers(self, message: Message, body: bytes) -> dict[str, str]:
        secrets = [s for s in self._secrets_for(message.tenant) if s]
        if not secrets:
            raise PermanentProviderError("no webhook secret for this tenant", "no_webhook_secret")
        timestamp = int(self._clock())
        at = datetime.fromtimestamp(timestamp, UTC)
        signatures = [Webhook(hmac_key(s)).sign(message.tag, at, message.text) for s in secrets]
        return {"Content-Type": "application/json", "User-Agent": "Herald-Webhook/1",
                SIGNATURE_HEADER: " ".join(sign_body(body, s) for s in secrets),
                "X-Herald-Tag": message.tag.split(".")[0],
                "webhook-id": message.tag, "webhook-timestamp": str(timestamp),
                "webhook-signature": " ".join(signatures)}

    async def send(self, message: Message) -> Outcome:
        assert self._session is not None and message.to
        self._check_literal(message.to)
        body = message.text.encode()
        headers = self._headers(message, body)
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
