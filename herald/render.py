"""Turn a leased notification into the message a provider sends: templates rendered, fields chosen.

Intake renders the same fields with the same function (:func:`render_fields`), so what passes
intake is what the channel actor can render, and a template that would not fit is a 422 then,
not a failure later. Rendered sizes are capped per field (:data:`RENDERED_LIMITS`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from herald.channels import Channel, parse_type
from herald.delivery import Delivery
from herald.errors import TemplateError
from herald.templates import compile_template
from herald.unsubscribe_tokens import UnsubscribeLinks

#: The most characters each template field may render to. A template cannot grow past these
#: (rendering stops at the cap), so ``details.vars`` repeated by many placeholders stays small.
RENDERED_LIMITS = {"title": 1_000, "subject": 1_000, "content": 100_000, "html": 500_000}
#: SMS ``content`` is capped lower: Twilio refuses a body over 1,600 characters.
SMS_CONTENT_LIMIT = 1_600


@dataclass(frozen=True, slots=True)
class Message:
    """One rendered notification, ready for a provider adapter."""

    tag: str
    tenant: str
    type: str
    channel: Channel
    uid: str
    attempt: int
    to: str | None
    sender: str | None
    subject: str | None
    title: str | None
    text: str
    html: str | None
    media_url: str | None
    bill_to: str | None
    expires_at: float
    priority: int = 4
    #: Email only: the one-click unsubscribe URL (``herald.unsubscribe_tokens``) it carries.
    unsubscribe_url: str | None = None


@dataclass(frozen=True, slots=True)
class RenderedFields:
    """The template fields of one notification, rendered; ``subject`` falls back to ``title``."""

    title: str | None
    subject: str | None
    text: str
    html: str | None


def template_context(payload: dict[str, Any]) -> dict[str, Any]:
    """What templates can see: ``details.vars`` by bare name, ``message``, and the payload roots."""
    details = payload.get("details") or {}
    context: dict[str, Any] = dict(details.get("vars") or {})
    context.setdefault("message", details.get("message") or "")
    context.update(
        user=payload.get("user") or {}, requester=payload.get("requester") or {},
        details=details, type=payload.get("type"),
    )
    return context


def rendered_limit(channel: Channel, name: str) -> int:
    """The cap on what template field ``name`` may render to for ``channel``."""
    return SMS_CONTENT_LIMIT if channel is Channel.SMS and name == "content" else RENDERED_LIMITS[name]


def _render(channel: Channel, name: str, details: dict[str, Any], context: dict[str, Any]) -> str | None:
    source = details.get(name)
    if not source:
        return None
    try:
        template = compile_template(source)
        if missing := template.missing(context):
            raise TemplateError(f"unknown variable {missing[0]!r} (define it in details.vars)")
        return template.render(context, rendered_limit(channel, name))
    except TemplateError as exc:
        raise TemplateError(f"details.{name}: {exc.message}", field=f"details.{name}") from None


def render_fields(channel: Channel, details: dict[str, Any], context: dict[str, Any]) -> RenderedFields:
    """Render ``title``, ``subject``, ``content`` and ``html`` as ``channel`` sends them.

    Raises :class:`TemplateError` naming the field (``details.content``…) for a syntax error, a
    missing variable, a placeholder naming an object, output over the field's cap, or CR/LF
    in what becomes an email's Subject header (``subject``, or ``title`` standing in for it).
    """
    title = _render(channel, "title", details, context)
    text = _render(channel, "content", details, context) or ""
    subject = _render(channel, "subject", details, context)
    header = "details.subject"
    if not subject:
        subject, header = title, "details.title"
    if channel is Channel.EMAIL and subject and ("\r" in subject or "\n" in subject):
        raise TemplateError(f"{header}: must not contain CR or LF (it is the email subject)",
                            field=header)
    return RenderedFields(title, subject, text, _render(channel, "html", details, context))


def render_message(delivery: Delivery, unsubscribe: UnsubscribeLinks | None = None) -> Message:
    """From a leased delivery to a ``Message``: templates rendered, fields chosen; an email
    gets its unsubscribe link from ``unsubscribe``, issued at the time it was accepted (every
    attempt carries the same one)."""
    payload = delivery.payload
    if delivery.channel is Channel.WEBHOOK:  # a requester callback: the body is JSON, not a template
        return Message(
            tag=delivery.tag, tenant=delivery.tenant, type=delivery.type,
            channel=Channel.WEBHOOK, uid=delivery.uid, attempt=delivery.attempt,
            to=payload["url"], sender=None, subject=None, title=None,
            text=orjson.dumps(payload["body"]).decode(), html=None, media_url=None,
            bill_to=None, expires_at=delivery.expires_at, priority=delivery.priority,
        )
    details = payload.get("details", {})
    fields = render_fields(delivery.channel, details, template_context(payload))
    return Message(
        tag=delivery.tag, tenant=delivery.tenant, type=delivery.type,
        channel=delivery.channel, uid=delivery.uid, attempt=delivery.attempt,
        to=delivery.recipient, sender=details.get("from"), subject=fields.subject,
        title=fields.title, text=fields.text, html=fields.html,
        media_url=details.get("media_url"), bill_to=details.get("bill_to"),
        expires_at=delivery.expires_at, priority=delivery.priority,
        unsubscribe_url=unsubscribe.url(delivery.tenant, delivery.uid,
                                        parse_type(delivery.type)[0], delivery.created_at)
        if unsubscribe is not None and delivery.channel is Channel.EMAIL else None,
    )
