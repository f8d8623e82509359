"""Fax provider adapter for a Telnyx-shaped Programmable Fax API (``POST /v2/faxes``).

Modeled on Telnyx's API (developers.telnyx.com, "Send a fax", "API error codes"):

* ``POST {base}/v2/faxes`` with ``Authorization: Bearer <api key>``. A message with a
  ``media_url`` is sent as JSON ``{connection_id, to, from, media_url, webhook_url,
  client_state}``; a text message is rendered to a one-page PDF (``herald.fax_document``) and
  uploaded in the same request as ``multipart/form-data`` with the file in the ``contents`` part
  (Telnyx's ``SendFaxMultipartRequest``; ``contents`` and ``media_url`` are mutually exclusive,
  max 20 MB).
* The answer is ``202 {"data": {"id": ..., "status": "queued", ...}}``; errors are
  ``{"errors": [{"code": "10016", "title": ..., "detail": ...}]}``. ``_answer`` is the one place
  an HTTP answer becomes an outcome: an error status is classified by ``herald.http_status``
  (408, 425, 429 and 5xx transient, with ``Retry-After``; any other permanent). Transport
  failures (connection refused, timeouts) are transient.
* Delivery receipts arrive later as webhooks (``fax.delivered`` / ``fax.failed``) at
  ``webhook_url``, signed by Telnyx with ed25519 (``telnyx-signature-ed25519`` over
  ``telnyx-timestamp|body``, see ``herald.receipts``). The signature does not cover the URL, so
  the tag travels in the signed body: each fax is sent with ``client_state`` =
  ``fax_client_state(tag)`` (base64, as Telnyx requires), which Telnyx echoes in every webhook
  of that fax; ``herald.receipts.fax_receipt`` reads it back.

One keep-alive session per provider instance with at most ``connections`` sockets; sends wait for
one in a ``PriorityGate``, so an asap fax goes out on the next free socket.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson

from actors.providers.base import Provider
from herald.errors import (
    PermanentProviderError,
    TransientProviderError,
)
from herald.fax_document import render_pdf
from herald.http_status import classify_http_status
from herald.outcome import Outcome
from herald.priority_gate import PriorityGate
from herald.receipts import fax_client_state
from herald.render import Message
from herald.retry import parse_retry_after
from herald.sms import mask_number

__all__ = ["HttpFaxProvider"]

log = logging.getLogger(__name__)

_ACCEPTED = frozenset({200, 201, 202})
#: Sockets per provider instance (aiohttp's default connector limit).
CONNECTIONS = 100


class HttpFaxProvider(Provider):
    """Sends faxes through a Telnyx-compatible API over one pooled ``aiohttp`` session."""

    def __init__(
        self,
        api_key: str,
        *,
        connection_id: str,
        default_from: str,
        base_url: str = "https://api.telnyx.com",
        webhook_url: str | None = None,
        timeout: float = 30.0,
        name: str = "telnyx",
        connections: int = CONNECTIONS,
    ) -> None:
        self.name = name
        self._api_key = api_key
        self._connection_id = connection_id
        self._default_from = default_from
        self._endpoint = f"{base_url.rstrip('/')}/v2/faxes"
        self._webhook_url = webhook_url
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None
        self.gate: PriorityGate = PriorityGate(connections)

    def __repr__(self) -> str:  # never show the API key
        return f"HttpFaxProvider(name={self.name!r}, endpoint={self._endpoint!r})"

    async def start(self) -> None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._connections),
                timeout=self._timeout,
                headers={"Authorization": f"Bearer {self._api_key}", "Accept": "application/json"},
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, message: Message) -> Outcome:
        if self._session is None:
            raise RuntimeError(f"{self!r}: call start() before send()")
        request, info = await self._request(message)
        try:
            async with self.gate.slot(message.priority), self._session.post(
                self._endpoint, **request
            ) as response:
                body = await response.read()
                outcome = _answer(
                    message.tag, self.name, response.status, response.headers, body, info
                )
        except (aiohttp.ClientError, OSError) as error:  # TimeoutError is an OSError
            raise TransientProviderError(
                f"fax API unreachable: {type(error).__name__}", "network"
            ) from error
        log.debug(
            "fax queued",
            extra={"tag": message.tag, "provider": self.name, "to": mask_number(message.to),
                   "provider_id": outcome.provider_id},
        )
        return outcome

    async def _request(self, message: Message) -> tuple[dict[str, Any], dict[str, Any]]:
        """``session.post`` arguments (JSON for a media URL, multipart for a rendered PDF)."""
        if not message.to:
            raise PermanentProviderError("fax without a recipient number", "no_recipient")
        fields = {
            "connection_id": self._connection_id,
            "to": message.to,
            "from": message.sender or self._default_from,
            "client_state": fax_client_state(message.tag),
        }
        if self._webhook_url:
            fields["webhook_url"] = self._webhook_url
        if message.media_url:
            return {"json": {**fields, "media_url": message.media_url}}, {}
        if not (message.text or message.title):
            raise PermanentProviderError("fax with neither media_url nor text", "no_content")
        pdf = await asyncio.to_thread(render_pdf, message.title, message.text)
        form = aiohttp.FormData()
        for key, value in fields.items():
            form.add_field(key, value)
        form.add_field("contents", pdf, filename="fax.pdf", content_type="application/pdf")
        return {"data": form}, {"pages": 1}  # render_pdf always makes exactly one page


def _answer(
    tag: str,
    provider: str,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    info: dict[str, Any] | None = None,
) -> Outcome:
    """The one place a fax API answer becomes an outcome or a ``ProviderError``."""
    document = _json(body)
    if status in _ACCEPTED:
        data = document.get("data")
        # Accepted but unreadable still means the provider has the fax: retrying could send it
        # twice, and the receipt finds the notification by tag, not by provider id.
        fax_id = data.get("id") if isinstance(data, dict) else None
        return Outcome(
            tag, "sent", provider, provider_id=str(fax_id) if fax_id else None, info=info or {}
        )
    code, reason = _first_error(document, status)
    message = f"fax API answered {status}: {reason}"
    raise classify_http_status(status, message, code, parse_retry_after(headers.get("Retry-After")))


def _json(body: bytes) -> dict[str, Any]:
    try:
        document = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError:
        return {}
    return document if isinstance(document, dict) else {}


def _first_error(document: dict[str, Any], status: int) -> tuple[str, str]:
    errors = document.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        first = errors[0]
        code = str(first.get("code") or status)
        return code, str(first.get("title") or first.get("detail") or "error")[:200]
    return str(status), "no error details"
