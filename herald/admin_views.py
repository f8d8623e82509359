"""What the admin console shows of a notification: a row of the list, and the full page.

Both are built from a ``Record`` on its shard, for operators of every tenant: unlike the
tenant's status view (``Record.public``) they name the tenant and uid, but contact details are
partly masked (``herald.masking``). The page adds the masked payload and the content rendered
the way the channel sends it.
"""

from __future__ import annotations

from typing import Any

import orjson

from herald.channels import Channel
from herald.errors import TemplateError
from herald.masking import mask_contact, mask_payload
from herald.record import Record
from herald.render import render_fields, template_context
from herald.search import service_of

__all__ = ["detail", "summary"]

#: A list row's subject is cut to this many characters.
SUBJECT_CHARS = 200


def _subject(record: Record) -> str | None:
    if record.channel is Channel.WEBHOOK:
        return f"callback to {record.payload.get('url', '?')}"[:SUBJECT_CHARS]
    details = record.payload.get("details") or {}
    for name in ("subject", "title", "content"):
        text = details.get(name)
        if isinstance(text, str) and text:
            return text[:SUBJECT_CHARS]
    return None


def summary(record: Record) -> dict[str, Any]:
    """One row of the admin list (a template's source, not its rendering: rows are many)."""
    return {
        "tag": record.tag, "tenant": record.tenant, "uid": record.uid, "type": record.type,
        "channel": record.channel.value, "status": record.status.value,
        "priority": record.priority, "attempts": record.attempts,
        "created_at": record.created_at, "updated_at": record.updated_at,
        "service": service_of(record.payload),
        "recipient": mask_contact(record.recipient) if record.recipient else None,
        "subject": _subject(record),
    }


def rendered(record: Record) -> dict[str, Any]:
    """The content as the channel sends it: title, subject, text and HTML, or why it cannot be."""
    if record.channel is Channel.WEBHOOK:
        body = orjson.dumps(record.payload.get("body"), option=orjson.OPT_INDENT_2).decode()
        return {"title": None, "subject": None, "text": body, "html": None}
    try:
        fields = render_fields(record.channel, record.payload.get("details") or {},
                               template_context(record.payload))
    except TemplateError as exc:
        return {"error": exc.message}
    return {"title": fields.title, "subject": fields.subject, "text": fields.text,
            "html": fields.html}


def detail(record: Record) -> dict[str, Any]:
    """A notification's admin page: status and full attempt history, payload, rendered content."""
    return record.public() | summary(record) | {
        "expires_at": record.expires_at, "idempotency_key": record.idempotency_key,
        "payload": mask_payload(record.payload), "rendered": rendered(record),
    }
