"""A Telnyx-compatible capture fax API for dev mode and tests: takes faxes, keeps them, reports.

``POST /v2/faxes`` (JSON or ``multipart/form-data`` with a ``contents`` PDF part) is checked the
way Telnyx checks it (Bearer key → 401 ``10009``; missing field → 422 ``10004``; ``to``/``from``
not E.164 → 422 ``10016``; neither or both of ``media_url``/``contents`` → 422), then stored:
uploaded PDFs under ``outbox_dir/fax/<id>.pdf``, one entry in the outbox (``capture.outbox``), and
``.faxes``. The answer is ``202 {"data": {"id", "status": "queued", ...}}``. In the background
the API then posts ``fax.queued`` and a final ``fax.delivered`` webhook to the request's
``webhook_url``, signed the way Telnyx signs: ``telnyx-timestamp`` (unix seconds) and
``telnyx-signature-ed25519`` (base64 ed25519 signature of ``timestamp|body``) made with the
peer's private key, generated at construction unless one is given; ``.public_key`` is its
public half in base64, as Telnyx's portal shows it, for Herald's ``fax_public_key``. A
``client_state`` given with the fax (it must be base64, as at Telnyx) is echoed in every webhook
as ``data.payload.client_state``.

Fault injection: ``fail_next(n, status)`` answers the next ``n`` requests with ``status`` (and
``Retry-After`` if given) before anything else is checked; ``reject_numbers(numbers)`` makes
faxes to those numbers fail the way busy lines fail at Telnyx: the request is accepted (202) and
a ``fax.failed`` webhook with ``failure_reason: "user_busy"`` follows. Unlike Telnyx, ``to`` must
be E.164 (no SIP URIs) and ``media_url`` is never fetched (its page count is unknown).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiohttp import ClientError, ClientSession, ClientTimeout, TCPConnector, web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from capture import outbox
from capture.callbacks import post_receipt
from herald.contacts import E164_RE
from herald.fax_document import count_pages
from herald.receipts import TELNYX_SIGNATURE_HEADER, TELNYX_TIMESTAMP_HEADER

__all__ = ["CaptureFaxApi"]

log = logging.getLogger(__name__)

_MAX_UPLOAD = 20 * 1024 * 1024  # Telnyx's limit for ``contents``
_ERROR_CODES = {401: "10009", 429: "10011"}  # Telnyx: authentication failed, too many requests


def _error(
    status: int, code: str, title: str, detail: str, pointer: str | None = None
) -> web.Response:
    error: dict[str, Any] = {"code": code, "title": title, "detail": detail}
    if pointer:
        error["source"] = {"pointer": pointer}
    return web.json_response({"errors": [error]}, status=status, dumps=_dumps)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class CaptureFaxApi:
    """The capture peer; ``await start()`` then point a provider at ``.base_url``."""

    def __init__(
        self,
        api_key: str,
        outbox_dir: Path,
        private_key: Ed25519PrivateKey | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.faxes: list[dict[str, Any]] = []
        self._api_key = api_key
        self._outbox_dir = Path(outbox_dir)
        self._private_key = private_key or Ed25519PrivateKey.generate()
        #: The webhook signing key's public half, base64 of the raw 32 bytes (Herald's
        #: ``fax_public_key``).
        self.public_key = base64.b64encode(
            self._private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        ).decode("ascii")
        self._host, self._port = host, port
        self._failures: list[tuple[int, float | None]] = []
        self._rejected: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None
        self._client: ClientSession | None = None

    @property
    def base_url(self) -> str:
        if self._runner is None:
            raise RuntimeError("CaptureFaxApi is not started")
        return f"http://{self._host}:{self._port}"

    def signed_headers(self, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        """Telnyx's signature headers for ``body`` sent at ``timestamp`` (default: now)."""
        sent_at = str(int(time.time()) if timestamp is None else timestamp)
        signature = self._private_key.sign(sent_at.encode("ascii") + b"|" + body)
        return {
            TELNYX_TIMESTAMP_HEADER: sent_at,
            TELNYX_SIGNATURE_HEADER: base64.b64encode(signature).decode("ascii"),
        }

    def fail_next(self, n: int, status: int = 503, retry_after: float | None = None) -> None:
        """Answer the next ``n`` requests with ``status`` (Telnyx-style error body)."""
        self._failures.extend([(status, retry_after)] * n)

    def reject_numbers(self, numbers: set[str]) -> None:
        """Faxes to these numbers are accepted, then fail (``fax.failed``, ``user_busy``)."""
        self._rejected = set(numbers)

    async def start(self) -> None:
        app = web.Application(client_max_size=_MAX_UPLOAD + 64 * 1024)
        app.router.add_post("/v2/faxes", self._create_fax)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port).start()
        self._port = int(self._runner.addresses[0][1])  # the ephemeral port, when port=0
        # Like a real provider, webhooks go out over a bounded pool, not all at once.
        self._client = ClientSession(connector=TCPConnector(limit=16),
                                     timeout=ClientTimeout(total=None, sock_connect=5, sock_read=30))

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.close()
            self._client = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _create_fax(self, request: web.Request) -> web.Response:
        if self._failures:
            status, retry_after = self._failures.pop(0)
            response = _error(
                status, _ERROR_CODES.get(status, "10007"), "Injected failure",
                f"capture API told to answer {status}",
            )
            if retry_after is not None:
                response.headers["Retry-After"] = f"{retry_after:g}"
            return response
        if request.headers.get("Authorization") != f"Bearer {self._api_key}":
            return _error(
                401, "10009", "Authentication failed",
                "The required authentication headers were either invalid or not included.",
            )
        try:
            fields, pdf = await _read_request(request)
        except ValueError as problem:
            return _error(400, "10015", "Bad Request", str(problem))

        for name in ("connection_id", "to", "from"):
            if not fields.get(name):
                return _error(
                    422, "10004", "Missing required parameter", f"'{name}' is required.",
                    f"/{name}",
                )
        for name in ("to", "from"):
            if not E164_RE.match(fields[name]):
                return _error(
                    422, "10016", "Phone number must be in +E.164 format",
                    f"The '{name}' parameter must be in +E.164 format.", f"/{name}",
                )
        media_url = fields.get("media_url")
        if (media_url is None) == (pdf is None):
            return _error(
                422, "10004", "Missing required parameter",
                "Exactly one of 'media_url' and 'contents' is required.", "/media_url",
            )
        if pdf is not None and not pdf.startswith(b"%PDF-"):
            return _error(422, "10015", "Bad Request", "'contents' is not a PDF.", "/contents")
        if not _is_base64(fields.get("client_state", "")):
            return _error(
                422, "10015", "Bad Request", "'client_state' must be a valid Base-64 string.",
                "/client_state",
            )

        fax = self._store(fields, media_url, pdf)
        webhook_url = fields.get("webhook_url")
        if webhook_url:
            task = asyncio.create_task(self._report(webhook_url, fax, self.faxes[-1]["pages"]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return web.json_response({"data": fax}, status=202, dumps=_dumps)

    def _store(
        self, fields: dict[str, str], media_url: str | None, pdf: bytes | None
    ) -> dict[str, Any]:
        fax_id = str(uuid.uuid4())
        entry: dict[str, Any] = {"id": fax_id, "to": fields["to"], "from": fields["from"]}
        if pdf is not None:
            path = self._outbox_dir / "fax" / f"{fax_id}.pdf"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(pdf)
            entry.update(pdf=str(path), pages=count_pages(pdf), bytes=len(pdf))
        else:
            entry.update(media_url=media_url, pages=None, bytes=None)
        outbox.append(self._outbox_dir, "fax", entry)
        now = _now()
        fax = {
            "id": fax_id, "record_type": "fax", "connection_id": fields["connection_id"],
            "direction": "outbound", "to": fields["to"], "from": fields["from"],
            "status": "queued", "webhook_url": fields.get("webhook_url"),
            "created_at": now, "updated_at": now,
            **({"media_url": media_url} if media_url else {}),
            **({"client_state": fields["client_state"]} if fields.get("client_state") else {}),
        }
        self.faxes.append({**fax, "pages": entry["pages"], "pdf": pdf})
        return fax

    async def _report(self, webhook_url: str, fax: dict[str, Any], pages: int | None) -> None:
        payload = {
            "fax_id": fax["id"], "connection_id": fax["connection_id"], "direction": "outbound",
            "to": fax["to"], "from": fax["from"],
            **({"client_state": fax["client_state"]} if "client_state" in fax else {}),
        }
        final: tuple[str, dict[str, Any]]
        if fax["to"] in self._rejected:
            final = ("fax.failed", {"status": "failed", "failure_reason": "user_busy"})
        else:
            final = ("fax.delivered", {"status": "delivered", "page_count": pages})
        for event_type, extra in (("fax.queued", {"status": "queued"}), final):
            await self._post_event(webhook_url, event_type, {**payload, **extra})

    async def _post_event(self, url: str, event_type: str, payload: dict[str, Any]) -> None:
        body = orjson.dumps({
            "data": {
                "event_type": event_type, "id": str(uuid.uuid4()), "occurred_at": _now(),
                "record_type": "event", "payload": payload,
            },
            "meta": {"attempt": 1, "delivered_to": url},
        })
        headers = {"Content-Type": "application/json", **self.signed_headers(body)}
        if self._client is None:
            return
        try:
            await post_receipt(self._client, url, body, headers)
        except (ClientError, TimeoutError, OSError) as error:
            # Like a provider whose webhook target is down: the receipt is lost.
            log.warning("fax webhook not delivered", extra={"error": type(error).__name__})


def _is_base64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except ValueError:  # binascii.Error, and what a non-ASCII str raises
        return False
    return True


async def _read_request(request: web.Request) -> tuple[dict[str, str], bytes | None]:
    """Form fields and the uploaded ``contents`` (if any), from JSON or multipart."""
    if request.content_type == "application/json":
        try:
            document = await request.json(loads=orjson.loads)
        except orjson.JSONDecodeError as error:
            raise ValueError("The request body is not valid JSON.") from error
        if not isinstance(document, dict):
            raise ValueError("The request body must be a JSON object.")
        return {k: str(v) for k, v in document.items() if v is not None}, None
    if request.content_type == "multipart/form-data":
        form = await request.post()
        fields: dict[str, str] = {}
        pdf: bytes | None = None
        for key, value in form.items():
            if isinstance(value, web.FileField):
                if key == "contents":
                    pdf = value.file.read()
            else:
                fields[key] = str(value)
        return fields, pdf
    raise ValueError(f"Unsupported content type {request.content_type!r}.")
