"""Suppressed contacts over HTTP (issue 20, 4): the tenant's list, and SMS STOP from Twilio.

``GET /v1/suppressions`` lists the tenant's suppressed contacts; ``POST /v1/suppressions``
(``{"contact"}``) adds one by hand (``reason: manual``); ``DELETE /v1/suppressions/{contact}``
lifts every suppression of that contact. ``POST /v1/providers/twilio/inbound`` is Twilio's
inbound-message webhook (signature verified, no key): STOP and its synonyms suppress the texter
for the number they texted (``reason: stop``), START or UNSTOP lift it. Every shard keeps the
whole list (``herald.suppressions``), so a change goes to all of them; one that fails is a 503
and the client tries again (adding and lifting are idempotent). Routes on ``suppressions_router``
reach the replica through ``attach_suppressions``, as ``serve/users.py`` does.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from actors.clients import on_every_shard
from herald.contacts import email_address, phone_number
from herald.errors import NotFound, Unavailable, ValidationError
from herald.sms_keywords import Keyword, inbound_opt_out
from herald.suppressions import EVERY_TENANT, MANUAL, STOP, Suppression, contact_key
from serve.answers import JsonBody

suppressions_router = APIRouter()
_intake: Any = None
#: What Twilio gets back: no reply (Twilio answers STOP itself on its numbers).
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


def attach_suppressions(intake: Any) -> None:
    global _intake
    _intake = intake


def _replica() -> Any:
    if _intake is None:
        raise Unavailable("starting")
    return _intake


def suppressible_contact(raw: Any) -> str:
    """A contact as the list keeps it (an email address lower-cased, an E.164 number), or a 422
    naming ``contact``."""
    if not isinstance(raw, str) or not raw.strip():
        raise ValidationError("contact: an email address or an E.164 phone number", "contact")
    text = raw.strip()
    return contact_key(email_address(text, "contact") if "@" in text
                       else phone_number(text, "contact"))


async def _everywhere(tenant: str, entry: Suppression | None, contact: str = "",
                      sender: str | None = None) -> int:
    """The change on every shard; how many entries one shard changed."""
    changed = await on_every_shard(_replica().shards,
                                   lambda shard: shard.suppress(tenant, entry, contact, sender))
    return max(changed, default=0)


@suppressions_router.get("/v1/suppressions")
async def list_suppressions(request: Request) -> Response:
    intake = _replica()
    tenant = intake._tenant(request)
    entries = await intake.shards[0].suppressions(tenant)
    return JsonBody({"items": [entry.public() for entry in entries]})


@suppressions_router.post("/v1/suppressions")
async def add_suppression(request: Request) -> Response:
    intake = _replica()
    tenant = intake._tenant(request)
    raw = await intake._json(request)
    contact = suppressible_contact(raw.get("contact") if isinstance(raw, dict) else None)
    entry = Suppression(contact, MANUAL, time.time())
    await _everywhere(tenant, entry)
    return JsonBody(entry.public(), status_code=201)


@suppressions_router.delete("/v1/suppressions/{contact}")
async def lift_suppression(contact: str, request: Request) -> Response:
    tenant = _replica()._tenant(request)
    key = contact_key(contact)
    if not await _everywhere(tenant, None, key):
        raise NotFound(f"{key} is not suppressed")
    return JsonBody({"contact": key, "lifted": True})


@suppressions_router.post("/v1/providers/twilio/inbound")
async def twilio_inbound(request: Request) -> Response:
    """Twilio's inbound-message webhook for the sending numbers (configure it on each number)."""
    intake = _replica()
    url, form, token = await intake.twilio_form(request, intake.settings.twilio_auth_token)
    found = inbound_opt_out(url, form, request.headers.get("x-twilio-signature"), token)
    if found is not None:
        word, texter, texted = found
        tenant = EVERY_TENANT  # a STOP holds for the number texted, whoever sends from it
        if word is Keyword.STOP:
            await _everywhere(tenant, Suppression(contact_key(texter), STOP, time.time(), texted))
        else:
            await _everywhere(tenant, None, contact_key(texter), texted)
    return Response(EMPTY_TWIML, media_type="text/xml")
