"""`python -m bench.browser_fanout`: browser notifications pushed and acked per second, 1,000 users.

Starts a Herald (its own local Ray, no dashboard, one browser gateway, the other pools at 0),
connects ``--users`` WebSocket clients (one per user, ``--processes`` client processes so the
clients are not what limits), each acking every frame as herald.js does. Then posts
``--total`` browser notifications in batches of 1,000 (one per user), and counts at the clients:
the figure is ``total`` / (last ack − first post). Median of ``--rounds`` rounds; the target is
≥ 10,000/s. ``--profile DIR`` adds a longer round under ``py-spy`` (the gateway's process, the
shards, the intake replica) and prints what dominates each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing
import os
import statistics
import tempfile
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from multiprocessing.sharedctypes import RawArray
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import httpx

from bench.cpu import cpu_of
from bench.procinfo import children_of, load_average, pid_listening_on, start_retrying

KEY = "bench-key-" + "w" * 20
TARGET_PER_S = 10_000.0
BATCH = 1000


@dataclass(frozen=True)
class FanoutResult:
    """Notifications acked per second at the clients (median over rounds), and how it was run."""

    users: int
    total: int
    per_s: float
    rounds: tuple[float, ...]
    accepted_per_s: float
    herald_delivered: int
    load: str
    #: CPU µs per notification of each kind of process (the measured rounds, until idle).
    cpu_us: dict[str, float] = field(default_factory=dict)
    ack_delay: float = 0.0  # seconds each client waited before acking


    def describe(self) -> str:
        each = ", ".join(f"{r:,.0f}" for r in self.rounds)
        cpu = ", ".join(f"{role} {us:,.0f}" for role, us in
                        sorted(self.cpu_us.items(), key=lambda item: -item[1]))
        delay = f", each acked {self.ack_delay * 1000:g} ms after it came" if self.ack_delay else ""
        return (f"browser fan-out: {self.users} connected users, {self.total:,} notifications a "
                f"round{delay}\n  acked at the clients {self.per_s:10,.0f}/s (rounds {each}; target ≥ "
                f"{TARGET_PER_S:,.0f}/s)\n  accepted at intake  {self.accepted_per_s:10,.0f}/s\n"
                f"  CPU µs a notification: {cpu or '-'}\n"
                f"  Herald's delivered counter: {self.herald_delivered:,}; load {self.load}")


class ClientBoard:
    """What the client processes report, in shared memory: one slot per process, one writer each."""

    def __init__(self, processes: int) -> None:
        self.connected = RawArray("q", processes)
        self.acked = RawArray("q", processes)
        self.last_ack = RawArray("d", processes)

    def total_connected(self) -> int:
        return sum(self.connected)

    def total_acked(self) -> int:
        return sum(self.acked)

    def latest_ack(self) -> float:
        return max(self.last_ack)


def payload(uid: int) -> dict[str, Any]:
    return {"type": "BN_BROWSER", "user": {"uid": f"u{uid}", "name": {"first": "Bob"}},
            "details": {"title": "Bench", "content": "Hi {user.name.first}: {message|sub(0,40)|'...'}",
                        "vars": {"message": "x" * 60}}}


def batches_for(total: int, users: int) -> list[list[dict[str, Any]]]:
    """``total`` notifications in batches of ``BATCH``, each spreading over the users in turn."""
    items = [payload(i % users) for i in range(total)]
    return [items[s:s + BATCH] for s in range(0, total, BATCH)]


async def _clients(base: str, uids: list[int], board: ClientBoard, slot: int, stop: Event,
                   ack_delay: float) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    sem = asyncio.Semaphore(32)
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:

        async def url_for(uid: int) -> str:
            async with sem:
                token = (await client.post("/v1/browser-tokens", json={"uid": f"u{uid}"})).json()
                found = await client.get("/v1/browser-endpoint", params={"token": token["token"]})
                return str(found.json()["url"])

        urls = await asyncio.gather(*(url_for(uid) for uid in uids))

    await ack_everything(urls, board, slot, stop, ack_delay)


async def ack_everything(urls: list[str], board: ClientBoard, slot: int, stop: Event,
                         ack_delay: float = 0.0) -> None:
    """One connection per URL, acking every frame as herald.js does, until ``stop``;
    ``ack_delay`` seconds after it came (a browser's round trip: the network and the page)."""
    import websockets

    loop = asyncio.get_running_loop()
    delayed: set[asyncio.Task[None]] = set()

    async def ack(ws: Any, tag: str) -> None:
        await ws.send(json.dumps({"ack": tag}))
        board.acked[slot] += 1
        board.last_ack[slot] = time.monotonic()

    def ack_later(ws: Any, tag: str) -> None:
        task = loop.create_task(ack(ws, tag))
        delayed.add(task)
        task.add_done_callback(delayed.discard)

    async def one(url: str) -> None:
        async with websockets.connect(url, compression=None, max_queue=None) as ws:
            board.connected[slot] += 1
            async for raw in ws:
                tag = json.loads(raw).get("tag")
                if tag and ack_delay:
                    loop.call_later(ack_delay, ack_later, ws, tag)
                elif tag:
                    await ack(ws, tag)

    tasks = [asyncio.create_task(one(url)) for url in urls]
    await asyncio.get_running_loop().run_in_executor(None, stop.wait)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def run_uvloop(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run a client process's coroutine on uvloop when installed (as Ray's actors run)."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(coroutine)


def client_process(base: str, uids: list[int], board: ClientBoard, slot: int, stop: Event,
                   ack_delay: float = 0.0) -> None:
    """One client process: its share of the users, until ``stop``."""
    run_uvloop(_clients(base, uids, board, slot, stop, ack_delay))


async def _post_all(client: httpx.AsyncClient, total: int, users: int, concurrency: int) -> float:
    """Post the batches, ``concurrency`` in flight; accepted/s."""
    sem = asyncio.Semaphore(concurrency)
    accepted = 0

    async def post(batch: list[dict[str, Any]]) -> None:
        nonlocal accepted
        async with sem:
            answer = await client.post("/v1/notifications/batch", json={"notifications": batch})
            answer.raise_for_status()
            accepted += sum("details" in r for r in answer.json()["results"])

    start = time.monotonic()
    await asyncio.gather(*(post(b) for b in batches_for(total, users)))
    if accepted != total:
        raise RuntimeError(f"only {accepted} of {total} accepted")
    return total / (time.monotonic() - start)


async def _round(client: httpx.AsyncClient, board: ClientBoard, total: int, users: int,
                 timeout: float = 300.0) -> tuple[float, float]:
    """One round: (acked/s at the clients, accepted/s at intake)."""
    before = board.total_acked()
    start = time.monotonic()
    accepted_per_s = await _post_all(client, total, users, 2)
    while board.total_acked() - before < total:
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{board.total_acked() - before} of {total} acked in {timeout:.0f} s")
        await asyncio.sleep(0.02)
    return total / (board.latest_ack() - start), accepted_per_s


async def _counter(client: httpx.AsyncClient, name: str) -> int:
    for line in (await client.get("/metrics")).text.splitlines():
        if line.startswith(f"herald_{name}_total "):
            return int(float(line.split()[1]))
    return 0


async def _wait_idle(client: httpx.AsyncClient, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        shards = (await client.get("/v1/queue")).json()["shards"]
        if not any(sum(states.values()) for s in shards for states in s["depth"].values()):
            return
        await asyncio.sleep(0.2)


def process_roles(client_pids: list[int]) -> dict[int, str]:
    """This benchmark's processes (its Herald's and its clients) → what each is. Every pool
    but the browser's is empty: its channel actors are the gateways."""
    roles = {p.pid: "gateways" if p.role == "ChannelActor" else p.role
             for p in children_of(os.getpid())}
    roles.update(dict.fromkeys(client_pids, "browser clients"))
    return roles


def cpu_by_role(roles: dict[int, str]) -> dict[str, float]:
    """CPU seconds so far of each role's processes."""
    seconds = dict.fromkeys(roles.values(), 0.0)
    for pid, role in roles.items():
        seconds[role] += cpu_of([pid])
    return seconds


async def _measure(base: str, board: ClientBoard, users: int, total: int, rounds: int,
                   profile: tuple[Path, float, int] | None, roles: dict[int, str],
                   ) -> tuple[list[float], list[float], int, dict[str, float]]:
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=120) as client:
        await _round(client, board, BATCH, users)  # warm up: every gateway path once
        await _wait_idle(client)
        acked, accepted = [], []
        before = cpu_by_role(roles)
        for _ in range(rounds):
            rate, intake = await _round(client, board, total, users)
            acked.append(rate)
            accepted.append(intake)
            await _wait_idle(client)
        spent = cpu_by_role(roles)
        cpu_us = {role: (seconds - before[role]) / (total * rounds) * 1e6
                  for role, seconds in spent.items() if seconds > before[role]}
        if profile:
            out_dir, seconds, browser_port = profile
            recording = _start_profile(out_dir, seconds, browser_port)
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:  # keep the gateway busy for the whole recording
                await _round(client, board, total, users)
            summaries = await asyncio.to_thread(recording.wait)
            for summary in summaries.values():
                print(summary.describe(), flush=True)
            await _wait_idle(client)
        return acked, accepted, await _counter(client, "delivered"), cpu_us


def _start_profile(out_dir: Path, seconds: float, browser_port: int) -> Any:
    from bench.pyspy import Recording

    pids: dict[str, int] = {}
    gateway = pid_listening_on(browser_port)
    if gateway:
        pids["gateway"] = gateway
    for proc in children_of(multiprocessing.current_process().pid or 0):
        if proc.role == "QueueActor (shard)":
            pids[f"shard-{len([n for n in pids if n.startswith('shard')])}"] = proc.pid
        elif proc.role == "Serve replica":
            pids["replica"] = proc.pid
    return Recording(pids, seconds, out_dir, svg=("gateway",))


def run_browser_fanout(users: int = 1000, total: int = 20_000, rounds: int = 3,
                       processes: int = 2, profile_dir: Path | None = None,
                       profile_seconds: float = 20.0, concurrency: int | None = None,
                       gateways: int = 1, ack_delay: float = 0.0) -> FanoutResult:
    """Start Herald and the clients, measure ``rounds`` rounds, stop everything.

    ``concurrency`` overrides ``channel_concurrency`` (sends in flight per channel actor);
    ``gateways``: browser channel actors, each its own gateway serving its share of the users;
    ``ack_delay``: seconds each client waits before acking (loopback has no round trip)."""
    from capture.net import free_port
    from herald.config import Settings
    from launcher.runtime import Herald

    context = multiprocessing.get_context("spawn")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Ray's logging config makes it INFO
    with tempfile.TemporaryDirectory(prefix="herald-fanout-") as data_dir:
        herald = start_retrying(lambda: Herald(Settings(
            port=free_port(), data_dir=Path(data_dir), api_keys={KEY: "bench"},
            browser_port=free_port(), dashboard_port=0,
            pools={"email": 0, "sms": 0, "fax": 0, "browser": gateways, "webhook": 0},
            **({"channel_concurrency": concurrency} if concurrency else {}))).start())
        settings = herald.settings
        base = f"http://127.0.0.1:{settings.port}"
        board = ClientBoard(processes)
        stop = context.Event()
        clients = [context.Process(target=client_process, daemon=True,
                                   args=(base, list(range(i, users, processes)), board, i, stop,
                                         ack_delay))
                   for i in range(processes)]
        try:
            for process in clients:
                process.start()
            deadline = time.monotonic() + 180
            while board.total_connected() < users:
                if time.monotonic() > deadline or not all(p.is_alive() for p in clients):
                    raise RuntimeError(f"only {board.total_connected()} of {users} connected")
                time.sleep(0.2)
            profile = (profile_dir, profile_seconds, settings.browser_port) if profile_dir else None
            roles = process_roles([p.pid for p in clients if p.pid])
            acked, accepted, delivered, cpu_us = asyncio.run(
                _measure(base, board, users, total, rounds, profile, roles))
            load = load_average()
        finally:
            stop.set()
            for process in clients:
                process.join(10)
                if process.is_alive():
                    process.kill()
            herald.stop(timeout=10)
    return FanoutResult(users=users, total=total, per_s=statistics.median(acked),
                        rounds=tuple(acked), accepted_per_s=statistics.median(accepted),
                        herald_delivered=delivered, load=load, cpu_us=cpu_us,
                        ack_delay=ack_delay)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--total", type=int, default=20_000, help="notifications per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--processes", type=int, default=2, help="client processes")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="then one more round under py-spy; collapsed stacks and SVG in DIR")
    parser.add_argument("--profile-seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, help="HERALD_CHANNEL_CONCURRENCY for this run")
    parser.add_argument("--gateways", type=int, default=1, help="browser channel actors")
    parser.add_argument("--ack-delay", type=float, default=0.0, metavar="SECONDS",
                        help="each client acks this long after a frame came (a round trip)")
    args = parser.parse_args(argv)
    result = run_browser_fanout(args.users, args.total, args.rounds, args.processes,
                                args.profile, args.profile_seconds, args.concurrency,
                                args.gateways, args.ack_delay)
    print(result.describe(), flush=True)


if __name__ == "__main__":
    main()
