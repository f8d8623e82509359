"""Payloads for tests: the DESIGN.md payload and variations."""

from __future__ import annotations

import copy
import uuid
from typing import Any

DESIGN_PAYLOAD: dict[str, Any] = {
    "type": "CM_BROWSER",
    "user": {"uid": 76143021, "mq-uuid-btag": "A36701-BCDEF-779821-C31024-BA",
             "name": {"first": "Bob", "middle": "Lee", "last": "Smith", "expr": "he/him"}},
    "requester": {"type": "WEB_APP_BACKEND", "service": "CM_DA_MESSAGE_SERVICE", "asap": "yes"},
    "details": {"title": "New Message", "content": "{message|sub(0,15)|'...'}"},
}


def email_payload(to: str = "bob@example.com", uid: int | str | None = None,
                  btag: str | None = None, **details: Any) -> dict[str, Any]:
    """The DESIGN.md payload as an EMAIL, with a unique idempotency key unless given."""
    payload = copy.deepcopy(DESIGN_PAYLOAD)
    payload["type"] = "CM_EMAIL"
    payload["user"]["email"] = to
    payload["user"]["uid"] = uid if uid is not None else payload["user"]["uid"]
    payload["user"]["mq-uuid-btag"] = btag or str(uuid.uuid4())
    payload["details"]["vars"] = {"message": "Hello Bob, your order has shipped"}
    payload["details"].update(details)
    return payload
