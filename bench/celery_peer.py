"""The Celery 5 + Redis peer: the same notifications sent the way a Celery shop sends them.

Two tasks: ``send_sms`` with the official ``twilio`` client (``Client.messages.create``) and
``send_email`` with ``smtplib`` (``EmailMessage`` + ``send_message``), each with autoretry and
backoff like production tasks. Each prefork child keeps one Twilio client (a ``requests``
session with keep-alive) and one SMTP session open across tasks, as a careful team would: a
connection per message would be the anti-pattern, not the baseline.

The worker is a subprocess, ``celery -A bench.celery_peer worker --concurrency 2 --pool
prefork``, told where everything is by ``BENCH_*`` variables (this module is its app, so it
reads them at import). ``CeleryPeer`` starts it; ``enqueue_range`` calls ``delay``. The twilio client
is pointed at the capture API by rewriting ``https://api.twilio.com`` to ``BENCH_TWILIO_BASE_URL``
in its HTTP client (it has no base-URL option), and refuses any URL that is not loopback.
"""

from __future__ import annotations

import os
import signal
import smtplib
import subprocess
import sys
import time
import uuid
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from celery import Celery
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response

from bench import workload

TWILIO_API_URL = "https://api.twilio.com"
ROOT = Path(__file__).resolve().parents[1]

app = Celery("herald_bench")
app.conf.update(
    broker_url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:1/0"),
    task_ignore_result=True,
    # Acknowledge after the send, so a worker killed mid-task leaves it queued (Herald's leases
    # give the same: nothing accepted is lost to a crash). BENCH_ACKS_LATE=0: Celery's default.
    task_acks_late=os.environ.get("BENCH_ACKS_LATE", "1") == "1",
    task_reject_on_worker_lost=True,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


class BaseUrlHttpClient(TwilioHttpClient):
    """Twilio's ``requests`` client with ``https://api.twilio.com`` replaced by ``base_url``."""

    def __init__(self, base_url: str, timeout: float = 15.0) -> None:
        super().__init__(pool_connections=True, timeout=timeout)
        host = urlsplit(base_url).hostname or ""
        if not host.startswith("127."):
            raise ValueError(f"the benchmark's twilio client talks to loopback only, not {host!r}")
        self.base_url = base_url.rstrip("/")
        if self.session is not None:
            self.session.trust_env = False  # no proxy from the environment, ever

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        if not url.startswith(TWILIO_API_URL + "/"):
            raise ValueError(f"unexpected twilio URL {url!r}")
        local = self.base_url + url[len(TWILIO_API_URL):]
        return super().request(method, local, *args, **kwargs)


_twilio: Any = None
_smtp: smtplib.SMTP | None = None


def twilio_client() -> Any:
    """This process's Twilio client (made after the fork, on first use)."""
    global _twilio
    if _twilio is None:
        from twilio.rest import Client

        _twilio = Client(os.environ["BENCH_TWILIO_ACCOUNT_SID"],
                         os.environ["BENCH_TWILIO_AUTH_TOKEN"],
                         http_client=BaseUrlHttpClient(os.environ["BENCH_TWILIO_BASE_URL"]),
                         environment={})  # no TWILIO_REGION / TWILIO_EDGE from the environment
    return _twilio


def smtp_session() -> smtplib.SMTP:
    """This process's SMTP session, opened on first use and again after a disconnect."""
    global _smtp
    if _smtp is None:
        target = urlsplit(os.environ["BENCH_SMTP_URL"])
        # local_hostname: EHLO without a DNS lookup of this host's name
        _smtp = smtplib.SMTP(target.hostname or "127.0.0.1", target.port or 25, local_hostname="localhost",
                             timeout=30)
    return _smtp


@app.task(name="bench.send_sms", autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def send_sms(to: str, body: str) -> None:
    twilio_client().messages.create(to=to, from_=workload.SMS_FROM, body=body)


@app.task(name="bench.send_email", autoretry_for=(OSError, smtplib.SMTPException),
          retry_backoff=True, max_retries=5)
def send_email(to: str, subject: str, text: str) -> None:
    global _smtp
    message = EmailMessage()
    message["From"] = workload.EMAIL_FROM
    message["To"] = to
    message["Subject"] = subject
    message["X-Herald-Tag"] = str(uuid.uuid4())  # the same headers as Herald's mail
    message["Message-ID"] = make_msgid(domain="localhost")
    message["Date"] = formatdate(usegmt=True)
    message.set_content(text)
    try:
        smtp_session().send_message(message)
    except smtplib.SMTPServerDisconnected:
        _smtp = None  # dropped while idle: once more on a fresh session
        smtp_session().send_message(message)


def enqueue_range(run: str, first: int, end: int) -> None:
    """``delay`` notifications ``first..end-1`` of ``run``, in order, from this thread."""
    for i in range(first, end):
        if workload.is_sms(i):
            sms = workload.sms(run, i)
            send_sms.delay(sms.to, sms.body)
        else:
            mail = workload.mail(run, i)
            send_email.delay(mail.to, mail.subject, mail.text)


class CeleryPeer:
    """The worker subprocess and this process's producer, both on ``redis_url``."""

    def __init__(self, redis_url: str, twilio_base_url: str, account_sid: str, auth_token: str,
                 smtp_url: str, concurrency: int = 2, acks_late: bool = True) -> None:
        self.redis_url = redis_url
        self.concurrency = concurrency
        self.env = os.environ | {
            "BENCH_REDIS_URL": redis_url, "BENCH_TWILIO_BASE_URL": twilio_base_url,
            "BENCH_TWILIO_ACCOUNT_SID": account_sid, "BENCH_TWILIO_AUTH_TOKEN": auth_token,
            "BENCH_SMTP_URL": smtp_url, "BENCH_ACKS_LATE": "1" if acks_late else "0",
            # Running as root here, as CI does; Celery's warning about it is noise in the figure.
            "PYTHONWARNINGS": "ignore:You're running the worker with superuser privileges",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> CeleryPeer:
        app.conf.broker_url = self.redis_url
        app.conf.task_acks_late = self.env["BENCH_ACKS_LATE"] == "1"
        celery = Path(sys.executable).with_name("celery")
        self._process = subprocess.Popen(
            [str(celery), "--quiet", "-A", "bench.celery_peer", "worker", "--concurrency",
             str(self.concurrency), "--pool", "prefork", "--loglevel", "WARNING",
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not app.control.ping(timeout=0.5):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the Celery worker did not come up")
        return self

    def pids(self) -> list[int]:
        """The worker's main process and its prefork children."""
        if self._process is None:
            return []
        children = Path(f"/proc/{self._process.pid}/task/{self._process.pid}/children")
        extra = [int(p) for p in children.read_text().split()] if children.exists() else []
        return [self._process.pid, *extra]

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)  # warm shutdown
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        app.pool.force_close_all()

    def __enter__(self) -> CeleryPeer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
