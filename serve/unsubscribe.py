"""One-click unsubscribe over HTTP (RFC 8058): ``GET`` and ``POST /v1/unsubscribe/{token}``.

Every email Herald sends points here (``List-Unsubscribe``, ``herald.unsubscribe_tokens``).
A mailbox provider's one-click ``POST`` with the body ``List-Unsubscribe=One-Click`` turns the
token's category off for email at the user's shard (``set_preference``: read and written in
one call) and answers 200, never a redirect (RFC 8058 3.2). A ``GET`` only shows a page whose
button makes that POST: mail scanners follow links, and a followed link must not unsubscribe
anyone. The token is the credential (no API key); one that does not verify is a 404 in the
JSON error shape. Routes reach the replica's ``Intake`` through ``attach_unsubscribe``, as
``serve/users.py`` does; they only parse, verify and call.
"""

from __future__ import annotations

import base64
import hashlib
import html
import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from herald.channels import Channel
from herald.errors import Unavailable, ValidationError
from herald.sharding import shard_for_uid
from herald.unsubscribe_tokens import (
    ONE_CLICK_FIELD,
    ONE_CLICK_VALUE,
    UNSUBSCRIBE_PATH,
    InvalidToken,
    Unsubscribe,
    is_one_click,
    signing_key,
    verify_token,
)
from serve.answers import JsonBody
from serve.auth import UNAUTHENTICATED_BODY_LIMIT

log = logging.getLogger("herald.unsubscribe")
unsubscribe_router = APIRouter()
_intake: Any = None
_key: bytes | None = None

_STYLE = ("body{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem}"
          "button{font:inherit;padding:.5rem 1.25rem;cursor:pointer}")
#: No script at all, the one inline style by its hash, forms to this origin only; the token in
#: the URL is a credential, so no Referer carries it anywhere.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'sha256-"
        + base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()
        + "'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"),
    "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY", "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff", "X-Robots-Tag": "noindex",
}


def attach_unsubscribe(intake: Any) -> None:
    """Called by ``Intake.__init__``: these routes work over ``intake`` and verify tokens with
    the deployment's unsubscribe secret (``HERALD_UNSUBSCRIBE_SECRET``, else made at start)."""
    global _intake, _key
    _intake = intake
    secret = intake.settings.unsubscribe_secret
    _key = signing_key(secret) if secret else None


def _verified(token: str) -> Unsubscribe:
    if _intake is None:
        raise Unavailable("starting")
    if _key is None:  # nothing to verify with: no link can be ours
        raise InvalidToken("no such unsubscribe link")
    return verify_token(_key, token)


def _page(title: str, paragraph: str, form: str = "") -> HTMLResponse:
    body = (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{title}</title><style>{_STYLE}</style></head>"
            f"<body><main><h1>{title}</h1><p>{paragraph}</p>{form}</main></body></html>")
    return HTMLResponse(body, headers=PAGE_HEADERS)


@unsubscribe_router.get(UNSUBSCRIBE_PATH + "{token}", response_class=HTMLResponse)
async def confirm_page(token: str) -> Response:
    """A page asking to confirm; its button POSTs the one-click body to this same URL."""
    asked = _verified(token)
    category = html.escape(asked.category)
    # Relative to this page's own URL, whatever host or proxy prefix it was reached through.
    form = (f'<form method="post" action="./{html.escape(token)}">'
            f'<input type="hidden" name="{ONE_CLICK_FIELD}" value="{ONE_CLICK_VALUE}">'
            f'<button type="submit">Unsubscribe</button></form>')
    return _page("Unsubscribe", f"Stop receiving <strong>{category}</strong> emails?", form)


@unsubscribe_router.post(UNSUBSCRIBE_PATH + "{token}")
async def unsubscribe(token: str, request: Request) -> Response:
    """Turn the token's category off for email: 200 (JSON, or a page for a browser)."""
    asked = _verified(token)
    body = await _intake._body(request, UNAUTHENTICATED_BODY_LIMIT)
    if not is_one_click(request.headers.get("content-type"), body):
        raise ValidationError(f"the body must be the form {ONE_CLICK_FIELD}={ONE_CLICK_VALUE}"
                              " (RFC 8058)", ONE_CLICK_FIELD)
    shard = _intake.shards[shard_for_uid(asked.uid, len(_intake.shards))]
    await shard.set_preference(asked.tenant, asked.uid, asked.category, Channel.EMAIL.key, False)
    log.info("unsubscribed", extra={"tenant": asked.tenant, "category": asked.category})
    if "text/html" in request.headers.get("accept", ""):  # the confirmation page's button
        category = html.escape(asked.category)
        return _page("Unsubscribed", f"You will no longer receive <strong>{category}</strong>"
                     " emails.")
    return JsonBody({"unsubscribed": True, "category": asked.category,
                     "channel": Channel.EMAIL.key})
