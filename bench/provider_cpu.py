"""CPU per SMS send in the sending process: the Twilio provider against the capture API.

``python -m bench.provider_cpu --sends 2000 --rounds 5`` starts the Twilio-compatible sink in a
process of its own (``bench.sinks``), so that only the provider's side is measured, then times
``rounds`` of ``sends`` SMS each (``--batch`` concurrent sends at a time) with
``time.process_time`` and prints the median CPU and wall time per send, in microseconds.
``--module`` times another version of ``TwilioSmsProvider`` (a copy on ``PYTHONPATH``), or
``bare``: the same form POSTs on one aiohttp session with nothing around them (the floor).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import importlib
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

import aiohttp

from bench.sinks import SinkProcess
from herald.channels import Channel
from herald.render import Message

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "bench-token-not-a-secret"


def _sms(n: int) -> Message:
    return Message(
        tag=str(uuid.uuid4()), tenant="bench", type="OTP_SMS", channel=Channel.SMS, uid=str(n),
        attempt=1, to=f"+1415555{n % 10_000:04d}", sender=None, subject=None, title=None,
        text=f"Your code is {n:06d}", html=None, media_url=None, bill_to=None,
        expires_at=time.time() + 600,
    )


class BareFormPost:
    """The floor: each message one form POST on one session, the answer read and parsed."""

    def __init__(self, account_sid: str, auth_token: str, base_url: str, default_from: str,
                 **_: Any) -> None:
        self._url = f"{base_url}/2010-04-01/Accounts/{account_sid}/Messages.json"
        credentials = base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode()
        self._headers = {"Authorization": f"Basic {credentials}",
                         "Content-Type": "application/x-www-form-urlencoded"}
        self._from = default_from
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(headers=self._headers)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _post(self, message: Message) -> Any:
        assert self._session is not None
        form = {"To": message.to, "From": self._from, "Body": message.text}
        async with self._session.post(self._url, data=urlencode(form).encode()) as answer:
            return await answer.json()

    async def send(self, message: Message) -> Any:
        await self._post(message)
        return _Sent()


class _Sent:
    kind = "sent"


async def _batch(provider: Any, messages: Sequence[Message]) -> list[Any]:
    """Each message its own ``send``, all at once, as a channel actor sends them."""
    return list(await asyncio.gather(*(provider.send(m) for m in messages)))


async def _rounds(
    provider_class: Any, base_url: str, sends: int, rounds: int, batch: int
) -> list[tuple[float, float]]:
    provider = provider_class(SID, TOKEN, base_url=base_url, default_from="+15005550006",
                                 status_callback_url=None)
    await provider.start()
    try:
        await _batch(provider, [_sms(n) for n in range(batch)])  # warm the pool
        results = []
        for _ in range(rounds):
            cpu, wall = time.process_time(), time.perf_counter()
            for start in range(0, sends, batch):
                outcomes = await _batch(provider, [_sms(n) for n in range(start, start + batch)])
                assert all(o.kind == "sent" for o in outcomes), outcomes[0]
            results.append(((time.process_time() - cpu) / sends * 1e6,
                            (time.perf_counter() - wall) / sends * 1e6))
        return results
    finally:
        await provider.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sends", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--module", default="actors.providers.twilio_sms",
                        help="where TwilioSmsProvider comes from (to time another version)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="herald-provider-cpu-") as outbox:
        sink = SinkProcess("sms", "--account-sid", SID, "--auth-token", TOKEN,
                           "--outbox-dir", outbox)
        try:
            provider_class = (BareFormPost if args.module == "bare"
                              else importlib.import_module(args.module).TwilioSmsProvider)
            results = asyncio.run(_rounds(provider_class, f"http://127.0.0.1:{sink.port}",
                                          args.sends, args.rounds, args.batch))
        finally:
            sink.stop()
    print(json.dumps({
        "cpu_us_per_send": round(statistics.median(r[0] for r in results), 1),
        "wall_us_per_send": round(statistics.median(r[1] for r in results), 1),
        "rounds_cpu_us": [round(r[0], 1) for r in results],
    }))


if __name__ == "__main__":
    main()
