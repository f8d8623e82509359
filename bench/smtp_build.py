"""Micro-benchmark: the email provider's CPU per message, from a rendered ``Message`` to wire bytes.

``python -m bench.smtp_build`` builds and flattens 10,000 messages (text + HTML alternative) and
prints µs per message, the median of 5 runs, for plain ASCII messages and for messages with a
non-ASCII name, subject and body. No network: what is timed is everything the provider does to
a message before ``SMTP.sendmail`` writes its bytes.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import Callable
from email.message import EmailMessage

from aiosmtplib.email import extract_recipients, extract_sender, flatten_message

from herald.channels import Channel
from herald.email_message import build_email
from herald.render import Message

SENDER = "Herald <herald@example.org>"


def _message(n: int, non_ascii: bool) -> Message:
    name, subject, greeting = (
        ("Jürgen Müller", "Grüße 你好, Ihre Bestellung", "Grüße") if non_ascii
        else ("Bob Smith", "Your order", "Hi")
    )
    return Message(
        tag=str(uuid.uuid4()), tenant="acme", type="CM_EMAIL", channel=Channel.EMAIL, uid=str(n),
        attempt=1, to=f"{name} <user{n}@example.com>", sender=None,
        subject=f"{subject} {n} has shipped", title=None,
        text=f"{greeting} {name},\nyour order {n} is on its way.\n\nThe shop",
        html=f"<p>{greeting} <b>{name}</b>,</p><p>your order {n} is on its way.</p>",
        media_url=None, bill_to=None, expires_at=4_102_444_800.0,
    )


def _wire_bytes(message: Message) -> bytes:
    built = build_email(message, SENDER)
    if isinstance(built, EmailMessage):
        # build_email before it wrote bytes itself: SMTP.send_message then read the envelope
        # from the headers and flattened the message. Kept to measure that code the same way.
        extract_sender(built), extract_recipients(built)
        return flatten_message(built)
    return built.data


def _median_us(messages: list[Message], runs: int, to_bytes: Callable[[Message], bytes]) -> float:
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        for message in messages:
            to_bytes(message)
        timings.append((time.perf_counter() - start) / len(messages) * 1e6)
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    for label, non_ascii in (("ascii", False), ("non-ascii", True)):
        messages = [_message(n, non_ascii) for n in range(args.messages)]
        per_message = _median_us(messages, args.runs, _wire_bytes)
        print(f"smtp build+flatten {label:9}: {per_message:8.1f} µs/message "
              f"(median of {args.runs} runs of {args.messages})")


if __name__ == "__main__":
    main()
