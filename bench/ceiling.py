"""The ceiling: the benchmark's notifications sent straight from one asyncio process.

No queue, no durability, no retries: SMS are POSTed to the Twilio-compatible Messages endpoint
(``/2010-04-01/Accounts/{sid}/Messages.json``, form fields ``To``/``From``/``Body``, Basic
auth, ``201`` expected) over one aiohttp session with keep-alive, ``--sms-concurrency`` in
flight; email goes over ``--smtp-sessions`` persistent aiosmtplib sessions, each sending one
message after the other. Emails are the bytes Herald's own builder writes (same headers and
sizes as Herald's). uvloop when it is installed: the box's best, not the library default.

``python -m bench.ceiling --twilio-base-url … --account-sid … --auth-token … --smtp-url …``
prints ``{"start": …, "sent": …}`` (``time.monotonic()``) once every send was answered, and
``"cpu"``, the process's CPU seconds over those sends; the sinks say when the last one
arrived. ``bench.mixed`` runs it as a child process.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
import aiosmtplib

from bench import workload
from herald.channels import Channel
from herald.email_message import Email, build_email
from herald.render import Message

LOOPBACK = ("127.", "localhost")


@dataclass(frozen=True, slots=True)
class Target:
    """Where the ceiling sends: the sinks' addresses and the Twilio account they accept."""

    twilio_base_url: str
    account_sid: str
    auth_token: str
    smtp_url: str

    def check_loopback(self) -> None:
        for url in (self.twilio_base_url, self.smtp_url):
            host = urlsplit(url).hostname or ""
            if not host.startswith(LOOPBACK):
                raise ValueError(f"the benchmark sends to loopback only, not {host!r}")


def email_bytes(run: str, i: int) -> Email:
    """Email ``i`` written by Herald's builder, as Herald's SMTP provider would send it."""
    mail = workload.mail(run, i)
    message = Message(
        tag=str(uuid.uuid4()), tenant="bench", type="BENCH_EMAIL", channel=Channel.EMAIL,
        uid=f"u{i % 1000}", attempt=1, to=mail.to, sender=None, subject=mail.subject, title=None,
        text=mail.text, html=None, media_url=None, bill_to=None, expires_at=4_102_444_800.0)
    return build_email(message, workload.EMAIL_FROM)


async def _sms_worker(session: aiohttp.ClientSession, url: str, headers: dict[str, str],
                      run: str, indexes: Iterator[int]) -> None:
    for i in indexes:
        sms = workload.sms(run, i)
        form = {"To": sms.to, "From": workload.SMS_FROM, "Body": sms.body}
        async with session.post(url, data=form, headers=headers) as response:
            answer = await response.json()
            if response.status != 201:
                raise RuntimeError(f"SMS {i}: {response.status} {answer}")


async def _smtp_worker(smtp_url: str, run: str, indexes: Iterator[int]) -> None:
    parts = urlsplit(smtp_url)
    smtp = aiosmtplib.SMTP(hostname=parts.hostname, port=parts.port, start_tls=False,
                           use_tls=False, timeout=30)
    await smtp.connect()
    try:
        for i in indexes:
            email = email_bytes(run, i)
            await smtp.sendmail(email.sender, list(email.recipients), email.data)
    finally:
        await smtp.quit()


async def send_all(target: Target, run: str, total: int, sms_concurrency: int = 32,
                   smtp_sessions: int = 8) -> tuple[float, float]:
    """Send notifications ``0..total-1`` of ``run``; (start, all answered) in monotonic time."""
    target.check_loopback()
    sms_indexes = iter(range(0, total, 2))  # shared: each worker takes the next one
    email_indexes = iter(range(1, total, 2))
    url = f"{target.twilio_base_url}/2010-04-01/Accounts/{target.account_sid}/Messages.json"
    credentials = base64.b64encode(f"{target.account_sid}:{target.auth_token}".encode()).decode()
    headers = {"Authorization": f"Basic {credentials}"}
    connector = aiohttp.TCPConnector(limit=sms_concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.monotonic()
        await asyncio.gather(
            *(_sms_worker(session, url, headers, run, sms_indexes) for _ in range(sms_concurrency)),
            *(_smtp_worker(target.smtp_url, run, email_indexes) for _ in range(smtp_sessions)))
        return start, time.monotonic()


async def _main(args: argparse.Namespace) -> None:
    target = Target(args.twilio_base_url, args.account_sid, args.auth_token, args.smtp_url)
    if args.warmup:
        await send_all(target, "w", args.warmup, args.sms_concurrency, args.smtp_sessions)
    cpu = time.process_time()
    start, sent = await send_all(target, args.run, args.total, args.sms_concurrency,
                                 args.smtp_sessions)
    cpu = time.process_time() - cpu
    print(json.dumps({"start": start, "sent": sent, "cpu": cpu}), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--twilio-base-url", required=True)
    parser.add_argument("--account-sid", required=True)
    parser.add_argument("--auth-token", required=True)
    parser.add_argument("--smtp-url", required=True)
    parser.add_argument("--total", type=int, default=16_000)
    parser.add_argument("--run", default="m")
    parser.add_argument("--warmup", type=int, default=0)
    parser.add_argument("--sms-concurrency", type=int, default=32)
    parser.add_argument("--smtp-sessions", type=int, default=8)
    args = parser.parse_args(argv)
    try:
        import uvloop
    except ImportError:
        asyncio.run(_main(args))
    else:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(_main(args))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
