"""The mixed benchmark's notifications: the same texts, sizes and recipients for every system.

Notification ``i`` of run ``run`` is an SMS when ``i`` is even, an email when it is odd. Each
carries a reference ``[bench:<run>:<i>]`` (in the SMS body, in the email subject) that the
sinks count, so a loss or a duplicate shows whichever system sent it. Herald gets the texts as
templates over the payload (``{user.name.first}``, ``{code}``, ``{ref}``), rendered by Herald;
the ceiling and Celery get the same texts already rendered, byte for byte.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

#: What a sink looks for in an SMS body or an email subject: the run and the index.
REFERENCE = re.compile(r"\[bench:(\w+):(\d+)\]")
#: Sender number and address, as Herald's settings give them (``twilio_from``, ``smtp_from``).
SMS_FROM = "+15005550006"
EMAIL_FROM = "herald@localhost"
FIRST_NAME = "Bob"
SMS_TEMPLATE = "Hi {user.name.first}, your Herald code is {code}. It expires in 10 minutes. {ref}"
SUBJECT_TEMPLATE = "Your order {order} has shipped {ref}"
TEXT_TEMPLATE = (
    "Hi {user.name.first},\n\nyour order {order} left our warehouse today and should arrive "
    "within three working days. Track it any time from your account page.\n\nThank you for "
    "shopping with us,\nThe shop"
)


@dataclass(frozen=True, slots=True)
class Sms:
    to: str
    body: str


@dataclass(frozen=True, slots=True)
class Mail:
    to: str
    subject: str
    text: str


def reference(run: str, i: int) -> str:
    return f"[bench:{run}:{i:06d}]"


def is_sms(i: int) -> bool:
    return i % 2 == 0


def _code(i: int) -> str:
    return f"{(i * 7919) % 1_000_000:06d}"


def _order(i: int) -> str:
    return f"A{100_000 + i}"


def phone(i: int) -> str:
    return f"+1415555{i % 10_000:04d}"


def address(i: int) -> str:
    return f"user{i}@example.com"


def sms(run: str, i: int) -> Sms:
    """SMS ``i`` as the ceiling and Celery send it (what Herald renders from ``payload``)."""
    body = (f"Hi {FIRST_NAME}, your Herald code is {_code(i)}. It expires in 10 minutes. "
            f"{reference(run, i)}")
    return Sms(phone(i), body)


def mail(run: str, i: int) -> Mail:
    """Email ``i`` as the ceiling and Celery send it (what Herald renders from ``payload``)."""
    order = _order(i)
    text = TEXT_TEMPLATE.replace("{user.name.first}", FIRST_NAME).replace("{order}", order)
    return Mail(address(i), f"Your order {order} has shipped {reference(run, i)}", text)


def payload(run: str, i: int) -> dict[str, Any]:
    """Notification ``i`` for Herald's ``/v1/notifications/batch``: the same texts as templates."""
    user: dict[str, Any] = {"uid": f"u{i % 1000}", "name": {"first": FIRST_NAME}}
    if is_sms(i):
        details: dict[str, Any] = {"to": phone(i), "content": SMS_TEMPLATE,
                                   "vars": {"code": _code(i), "ref": reference(run, i)}}
        return {"type": "BENCH_SMS", "user": user, "details": details}
    user["email"] = address(i)
    details = {"subject": SUBJECT_TEMPLATE, "content": TEXT_TEMPLATE,
               "vars": {"order": _order(i), "ref": reference(run, i)}}
    return {"type": "BENCH_EMAIL", "user": user, "details": details}


def split(total: int) -> tuple[int, int]:
    """(SMS, emails) among ``total`` notifications numbered from 0."""
    return (total + 1) // 2, total // 2
