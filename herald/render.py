"""Turn a leased notification into the message a provider sends: templates rendered, fields chosen."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from herald.channels import Channel
from herald.delivery import Delivery
from herald.models import template_context
from herald.templates import compile_template


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


def _render(source: str | None, context: dict[str, Any]) -> str | None:
    return compile_template(source).render(context) if source else None


def render_message(delivery: Delivery) -> Message:
    """From a leased delivery to a ``Message``: templates rendered, fields chosen."""
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
    context = template_context(payload)
    title = _render(details.get("title"), context)
    text = _render(details.get("content"), context) or ""
    subject = _render(details.get("subject"), context) or title
    return Message(
        tag=delivery.tag, tenant=delivery.tenant, type=delivery.type,
        channel=delivery.channel, uid=delivery.uid, attempt=delivery.attempt,
        to=delivery.recipient, sender=details.get("from"), subject=subject, title=title,
        text=text, html=_render(details.get("html"), context),
        media_url=details.get("media_url"), bill_to=details.get("bill_to"),
        expires_at=delivery.expires_at, priority=delivery.priority,
    )
