"""The benchmark's sinks: Herald's capture peers in processes of their own, counting what arrives.

``python -m bench.sinks sms --account-sid AC… --auth-token …`` serves the Twilio-compatible
capture API (``capture.twilio_api``: Basic auth, form parsing, E.164 check, outbox line, signed
status callbacks when asked for), ``python -m bench.sinks email`` an aiosmtpd server that
takes every message (``CountingSmtpHandler``). Each counts the
``[bench:<run>:<i>]`` references it receives, stamps the last arrival with ``time.monotonic()``
(system-wide on Linux, so comparable with the driver's), prints ``{"port", "control"}`` on its
first stdout line and answers ``GET /counts?run=R`` on the control port.

A sink runs in its own process so that it takes a core's share of its own, as a real provider
would, rather than the GIL of whatever it measures. ``Sinks`` starts the pair and waits on them.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import logging
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web

from bench.workload import REFERENCE
from capture.smtp import LoopbackController
from capture.twilio_api import CaptureTwilioApi

HOST = "127.0.0.1"
_REFERENCE = re.compile(REFERENCE.pattern.encode())


class Tally:
    """References seen, per run; thread-safe (the SMTP server has a loop thread of its own)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, collections.Counter[int]] = collections.defaultdict(collections.Counter)
        self._received: collections.Counter[str] = collections.Counter()
        self._first: dict[str, float] = {}
        self._last: dict[str, float] = {}
        self.unknown = 0

    def note(self, text: bytes) -> None:
        now = time.monotonic()
        found = _REFERENCE.search(text)
        with self._lock:
            if found is None:
                self.unknown += 1
                return
            run = found.group(1).decode()
            self._seen[run][int(found.group(2))] += 1
            self._received[run] += 1
            self._first.setdefault(run, now)
            self._last[run] = now

    def counts(self, run: str, detail: bool) -> dict[str, Any]:
        with self._lock:
            answer: dict[str, Any] = {
                "received": self._received[run], "unknown": self.unknown,
                "first_at": self._first.get(run), "last_at": self._last.get(run)}
            if detail:
                seen = self._seen[run]
                answer["distinct"] = len(seen)
                answer["duplicates"] = sum(n - 1 for n in seen.values() if n > 1)
                answer["indexes"] = sorted(seen)
            return answer


class CountingTwilioApi(CaptureTwilioApi):
    """The capture Twilio API, unchanged, plus a tally of each message it accepted."""

    def __init__(self, tally: Tally, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tally = tally

    def _record(self, to: str, sender: str, body: str) -> dict[str, Any]:
        message = super()._record(to, sender, body)
        self.tally.note(body.encode())
        # The API keeps every message for GET …/Messages/{sid}.json; the benchmark never asks.
        self.messages.clear()
        self._by_sid.clear()
        return message


class CountingSmtpHandler:
    """Takes every message (aiosmtpd does the SMTP) and tallies the reference in its subject.

    It does not parse the MIME message: the email sink then costs the box what aiosmtpd costs,
    and what is measured is the sender, not ``email.policy.default`` in the sink.
    """

    def __init__(self, tally: Tally) -> None:
        self.tally = tally

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.content
        self.tally.note(content if isinstance(content, bytes) else content.encode())
        return "250 Message accepted"


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()  # type: ignore[no-any-return]


async def _serve(args: argparse.Namespace) -> None:
    tally = Tally()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    cleanup: list[Any] = []
    if args.kind == "sms":
        api = CountingTwilioApi(tally, args.account_sid, args.auth_token, Path(args.outbox_dir))
        await api.start()
        cleanup.append(api.stop)
        port = api.port
    else:
        controller = LoopbackController(CountingSmtpHandler(tally), hostname=HOST, port=0,
                                        loop=_new_loop(), server_hostname="localhost")
        controller.start()
        cleanup.append(lambda: asyncio.to_thread(controller.stop))
        port = controller.port

    async def counts(request: web.Request) -> web.Response:
        run = request.query.get("run", "")
        return web.json_response(tally.counts(run, request.query.get("detail") == "1"))

    app = web.Application()
    app.router.add_get("/counts", counts)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    control = runner.addresses[0][1]
    print(json.dumps({"port": port, "control": control}), flush=True)
    await stop.wait()
    await runner.cleanup()
    for step in reversed(cleanup):
        await step()


def main() -> None:
    parser = argparse.ArgumentParser(description="One benchmark sink (run by bench.sinks.Sinks).")
    parser.add_argument("kind", choices=["sms", "email"])
    parser.add_argument("--account-sid", default="")
    parser.add_argument("--auth-token", default="")
    parser.add_argument("--outbox-dir", default=".")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with asyncio.Runner(loop_factory=_new_loop) as runner:
        runner.run(_serve(args))


# ---- the driver's side ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Arrivals:
    """What the sinks saw of one run: every reference exactly once, else ``SinkLoss``."""

    received: int
    duplicates: int
    first_at: float
    last_at: float


class SinkLoss(AssertionError):
    """Some notifications never reached their sink (or arrived for an index never sent)."""


class SinkProcess:
    """One ``python -m bench.sinks`` child; ``counts()`` asks it what arrived."""

    def __init__(self, kind: str, *extra: str) -> None:
        self.kind = kind
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench.sinks", kind, *extra],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            self._process.wait(5)
            raise RuntimeError(f"the {kind} sink did not start (exit {self._process.returncode})")
        ports = json.loads(line)
        self.port: int = ports["port"]
        self.pid = self._process.pid
        self._control = httpx.Client(base_url=f"http://{HOST}:{ports['control']}", timeout=30,
                                     trust_env=False)

    def counts(self, run: str, detail: bool = False) -> dict[str, Any]:
        params = {"run": run, "detail": "1" if detail else "0"}
        answer: dict[str, Any] = self._control.get("/counts", params=params).json()
        return answer

    def stop(self) -> None:
        self._control.close()
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(5)


class Sinks:
    """A fresh SMS sink (Twilio-compatible API) and email sink (SMTP) for one system's run."""

    def __init__(self, account_sid: str, auth_token: str) -> None:
        self.account_sid, self.auth_token = account_sid, auth_token
        self._outbox = tempfile.TemporaryDirectory(prefix="herald-bench-outbox-")
        self.sms = SinkProcess("sms", "--account-sid", account_sid, "--auth-token", auth_token,
                               "--outbox-dir", self._outbox.name)
        try:
            self.email = SinkProcess("email")
        except BaseException:
            self.sms.stop()
            raise

    @property
    def twilio_base_url(self) -> str:
        return f"http://{HOST}:{self.sms.port}"

    @property
    def smtp_url(self) -> str:
        return f"smtp://{HOST}:{self.email.port}"

    def wait(self, run: str, sms: int, emails: int, timeout: float,
             poll: float = 0.25) -> Arrivals:
        """Wait until ``sms`` SMS (even indexes) and ``emails`` emails (odd) of ``run`` arrived,
        each exactly once; ``SinkLoss`` names what is missing after ``timeout`` seconds. The
        sinks stamp the last arrival themselves: ``poll`` only decides when we look."""
        deadline = time.monotonic() + timeout
        expected = {self.sms: sms, self.email: emails}
        while True:
            now = {sink: sink.counts(run) for sink in expected}
            if all(now[sink]["received"] >= n for sink, n in expected.items()):
                problems = self._problems(run, expected)
                if isinstance(problems, Arrivals):
                    return problems
            else:
                got = {sink.kind: now[sink]["received"] for sink in expected}
                problems = f"the sinks have {got} of {[sms, emails]}"
            if time.monotonic() > deadline:
                raise SinkLoss(f"run {run!r} after {timeout:.0f}s: {problems}")
            time.sleep(poll)

    def _problems(self, run: str, expected: dict[SinkProcess, int]) -> Arrivals | str:
        """The arrivals if every index arrived, else what is missing or unexpected."""
        received = duplicates = 0
        first, last = [], []
        for sink, n in expected.items():
            final = sink.counts(run, detail=True)
            parity = 0 if sink is self.sms else 1
            wanted = list(range(parity, 2 * n, 2))
            if final["indexes"] != wanted:
                missing = sorted(set(wanted) - set(final["indexes"]))
                stray = sorted(set(final["indexes"]) - set(wanted))
                return (f"{sink.kind}: {len(missing)} missing (first {missing[:5]}), "
                        f"{len(stray)} unexpected (first {stray[:5]})")
            received += final["distinct"]
            duplicates += final["duplicates"]
            if n:
                first.append(final["first_at"])
                last.append(final["last_at"])
        return Arrivals(received, duplicates, min(first), max(last))

    def pids(self) -> list[int]:
        return [self.sms.pid, self.email.pid]

    def stop(self) -> None:
        for sink in (self.sms, self.email):
            with contextlib.suppress(Exception):
                sink.stop()
        self._outbox.cleanup()

    def __enter__(self) -> Sinks:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


if __name__ == "__main__":
    main()
