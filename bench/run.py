"""`make bench`: batch intake accepted/s and delivered/s per channel, on this machine.

Starts a whole Herald (its own local Ray, SQLite with synchronous=FULL, 4 shards) with local
peers: an SMTP sink, the Twilio- and fax-compatible capture APIs, WebSocket browser clients
that ack. Each figure is the median of ``--rounds`` runs.

Intake is measured twice: with the email pool at 0 actors (what the queue itself takes: the
notifications wait durably, as during a provider outage), and while email is being delivered
at the same time on the same two cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from capture.net import free_port
from capture.smtp_sink import SmtpSink
from herald.config import Settings
from launcher.runtime import Herald

KEY = "bench-key-" + "b" * 20


def _payload(channel: str, i: int) -> dict[str, Any]:
    details: dict[str, Any] = {"title": "Bench", "content": "Hi {user.name.first}: {message|sub(0,40)|'...'}",
                               "vars": {"message": "x" * 60}}
    user: dict[str, Any] = {"uid": f"u{i % 200}", "name": {"first": "Bob"}}
    if channel == "EMAIL":
        user["email"] = f"user{i}@example.com"
    elif channel in ("SMS", "FAX"):
        details["to"] = f"+1415555{i % 10000:04d}"
    return {"type": f"BN_{channel}", "user": user, "details": details}


async def _post_batches(client: httpx.AsyncClient, channel: str, total: int, size: int,
                        concurrency: int) -> float:
    """Post ``total`` notifications in batches; return accepted/s."""
    batches = [[_payload(channel, i) for i in range(s, min(s + size, total))]
               for s in range(0, total, size)]
    sem = asyncio.Semaphore(concurrency)
    accepted = 0

    async def post(batch: list[dict[str, Any]]) -> None:
        nonlocal accepted
        async with sem:
            response = await client.post("/v1/notifications/batch", json={"notifications": batch})
            response.raise_for_status()
            accepted += sum("details" in r for r in response.json()["results"])

    start = time.perf_counter()
    await asyncio.gather(*(post(b) for b in batches))
    elapsed = time.perf_counter() - start
    assert accepted == total, f"only {accepted} of {total} accepted"
    return total / elapsed


async def _counter(client: httpx.AsyncClient, name: str) -> int:
    text = (await client.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith(f"herald_{name}_total "):
            return int(float(line.split()[1]))
    return 0


async def _rates(client: httpx.AsyncClient, channel: str, total: int, counters: list[str],
                 timeout: float = 300.0) -> dict[str, float]:
    """Post ``total`` of ``channel``; per counter, ``total`` / seconds until it grew by ``total``."""
    before = {name: await _counter(client, name) for name in counters}
    start = time.perf_counter()
    await _post_batches(client, channel, total, 500, 2)
    rates: dict[str, float] = {}
    while len(rates) < len(counters):
        for name in counters:
            if name not in rates and await _counter(client, name) - before[name] >= total:
                rates[name] = total / (time.perf_counter() - start)
        if time.perf_counter() - start > timeout:
            raise TimeoutError(f"{channel}: not all {total} {counters} within {timeout}s")
        await asyncio.sleep(0.05)
    return rates


async def _browser_clients(client: httpx.AsyncClient, users: int, stop: asyncio.Event) -> None:
    import websockets

    async def one(uid: str) -> None:
        token = (await client.post("/v1/browser-tokens", json={"uid": uid})).json()["token"]
        url = (await client.get("/v1/browser-endpoint", params={"token": token})).json()["url"]
        async with websockets.connect(url) as ws:
            while not stop.is_set():
                try:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), 0.5))
                except TimeoutError:
                    continue
                if "tag" in frame:
                    await ws.send(json.dumps({"ack": frame["tag"]}))

    await asyncio.gather(*(one(f"u{i}") for i in range(users)))


async def _run_intake_only(base: str, rounds: int, total: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=120) as client:
        await _post_batches(client, "EMAIL", 2000, 1000, 2)  # warm up
        rates = [await _post_batches(client, "EMAIL", total, 1000, 4) for _ in range(rounds)]
    return {"intake_batch_accepted_per_s (queue only)": statistics.median(rates)}


async def _run(base: str, rounds: int, intake_total: int, per_channel: int) -> dict[str, Any]:
    results: dict[str, list[float]] = {}
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=120) as client:
        stop = asyncio.Event()
        browsers = asyncio.create_task(_browser_clients(client, 200, stop))
        await asyncio.sleep(3)  # let the browser clients connect
        for _ in range(rounds):
            results.setdefault("intake_batch_accepted_per_s (delivering)", []).append(
                await _post_batches(client, "EMAIL", intake_total, 1000, 4))
            await _wait_idle(client)
            # email: taken by the SMTP server (``sent``); SMS and fax: taken by the provider
            # (``sent``) and confirmed by its signed receipt (``delivered``); browser: acked.
            for channel, counters in (("EMAIL", ["sent"]), ("SMS", ["sent", "delivered"]),
                                      ("FAX", ["sent", "delivered"]), ("BROWSER", ["delivered"])):
                rates = await _rates(client, channel, per_channel, counters)
                for name, rate in rates.items():
                    results.setdefault(f"{channel.lower()}_{name}_per_s", []).append(rate)
                await _wait_idle(client)
        stop.set()
        await browsers
    return {name: statistics.median(values) for name, values in results.items()}


async def _wait_idle(client: httpx.AsyncClient) -> None:
    while True:
        shards = (await client.get("/v1/queue")).json()["shards"]
        if not any(sum(states.values()) for s in shards for states in s["depth"].values()):
            return
        await asyncio.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--intake", type=int, default=20_000, help="notifications per intake round")
    parser.add_argument("--per-channel", type=int, default=2_000)
    args = parser.parse_args()
    figures: dict[str, Any] = {}
    for email_actors in (0, 2):
        with tempfile.TemporaryDirectory() as data_dir, SmtpSink() as sink:
            settings = Settings(
                port=free_port(), data_dir=Path(data_dir), api_keys={KEY: "bench"},
                smtp_url=sink.url, browser_port=free_port(),
                pools={"email": email_actors, "sms": 1, "fax": 1, "browser": 1, "webhook": 1})
            herald = Herald(settings).start()
            base = f"http://127.0.0.1:{settings.port}"
            try:
                if email_actors == 0:
                    figures.update(asyncio.run(_run_intake_only(base, args.rounds, args.intake)))
                else:
                    figures.update(asyncio.run(_run(base, args.rounds, args.intake,
                                                    args.per_channel)))
            finally:
                herald.stop(timeout=10)
    print(f"\nHerald benchmark — {os.cpu_count()} cores, median of {args.rounds} rounds")
    for name, value in figures.items():
        print(f"  {name:44s} {value:10.0f}")


if __name__ == "__main__":
    main()
