"""`python -m bench.gateway_load`: one browser gateway alone (no Ray): frames pushed and acked per
second, and the gateway process's CPU per frame, with ``--users`` browsers acking on loopback.

The gateway runs in this process on uvloop (as in its Ray actor) and is driven the way a
ChannelActor drives it: each send in its own task through a ``ProviderChain``, at most ``--slots``
holding a slot; a slot frees when the send's outcome comes or, if the gateway releases it
earlier (``Provider.set_slot_release``), when its frame is written. ``--clients`` processes hold
the users (``bench.browser_fanout.ack_everything``), so their CPU is not counted. What Herald
adds around the gateway (leases, acks to the shards, intake) is ``bench.browser_fanout``'s part.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import resource
import statistics
import time
from collections import Counter
from dataclasses import dataclass
from multiprocessing.synchronize import Event
from pathlib import Path

from bench.browser_fanout import ClientBoard, ack_everything, run_uvloop
from bench.cpu import cpu_of

SECRET = b"gateway-load-secret-" + b"g" * 12
TENANT = "bench"


@dataclass(frozen=True)
class GatewayResult:
    """Frames acked per second and the gateway's CPU per frame (medians over rounds)."""

    users: int
    total: int
    slots: int
    per_s: float
    cpu_us: float
    sys_us: float  # of cpu_us, in the kernel (the sockets)
    clients_cpu_us: float
    rounds: tuple[float, ...]
    outcomes: dict[str, int]

    def describe(self) -> str:
        each = ", ".join(f"{r:,.0f}" for r in self.rounds)
        return (f"gateway alone: {self.users} users, {self.total:,} frames a round, "
                f"{self.slots} slots\n  pushed + acked {self.per_s:10,.0f}/s (rounds {each})\n"
                f"  gateway CPU    {self.cpu_us:10,.1f} µs a frame ({self.sys_us:,.1f} in the kernel; "
                f"the clients "
                f"{self.clients_cpu_us:,.1f})\n  outcomes {self.outcomes}")


def _client_process(port: int, uids: list[int], board: ClientBoard, slot: int, stop: Event) -> None:
    from herald.browser_tokens import mint_token

    urls = [f"ws://127.0.0.1:{port}/ws?token="
            + mint_token(SECRET, TENANT, f"u{uid}", ttl=3600, now=time.time())[0] for uid in uids]
    run_uvloop(ack_everything(urls, board, slot, stop))


def _messages(start: int, count: int, users: int) -> list[object]:
    from herald.channels import Channel
    from herald.render import Message

    expires = time.time() + 3600
    return [Message(tag=f"t{i}", tenant=TENANT, type="BN_BROWSER", channel=Channel.BROWSER,
                    uid=f"u{i % users}", attempt=1, to=None, sender=None, subject=None,
                    title="Bench", text="Hi Bob: " + "x" * 40 + "...", html=None, media_url=None,
                    bill_to=None, expires_at=expires) for i in range(start, start + count)]


async def _drive(gateway: object, messages: list[object], slots: int) -> Counter[str]:
    """Send every message as a ChannelActor would, ``slots`` at a time; count the outcomes."""
    from actors.provider_chain import ProviderChain
    from actors.providers.websocket_browser import WebSocketGateway

    assert isinstance(gateway, WebSocketGateway)
    chain = ProviderChain([gateway])
    free = asyncio.Semaphore(slots)
    holding: set[str] = set()
    outcomes: Counter[str] = Counter()

    def release(tag: str) -> None:
        if tag in holding:
            holding.discard(tag)
            free.release()

    setter = getattr(gateway, "set_slot_release", None)
    if setter is not None:
        setter(release)

    async def one(message: object) -> None:
        try:
            outcome = await chain.send(message)  # type: ignore[arg-type]
        finally:
            release(message.tag)  # type: ignore[attr-defined]
        outcomes[outcome.kind] += 1

    tasks = []
    for message in messages:
        await free.acquire()
        holding.add(message.tag)  # type: ignore[attr-defined]
        tasks.append(asyncio.create_task(one(message)))
    await asyncio.gather(*tasks)
    return outcomes


def _cpu_seconds() -> tuple[float, float]:
    """(user + system, system) CPU seconds of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime, usage.ru_stime


async def _measure(users: int, total: int, slots: int, rounds: int, clients: int,
                   profile: tuple[Path, float] | None) -> GatewayResult:
    from actors.providers.websocket_browser import WebSocketGateway

    gateway = WebSocketGateway("127.0.0.1", 0, SECRET)
    await gateway.start()
    context = multiprocessing.get_context("spawn")
    board, stop = ClientBoard(clients), context.Event()
    processes = [context.Process(target=_client_process, daemon=True,
                                 args=(gateway.port, list(range(i, users, clients)), board, i, stop))
                 for i in range(clients)]
    for process in processes:
        process.start()
    try:
        async with asyncio.timeout(120):
            while gateway.connections() < users:  # noqa: ASYNC110 - the clients are elsewhere
                await asyncio.sleep(0.1)
        sent = 0
        await _drive(gateway, _messages(sent, users, users), slots)  # warm up
        sent += users
        rates, cpus, kernel, client_cpus, outcomes = [], [], [], [], Counter[str]()
        pids = [p.pid for p in processes if p.pid is not None]
        for _ in range(rounds):
            cpu, client_cpu, start = _cpu_seconds(), cpu_of(pids), time.monotonic()
            outcomes += await _drive(gateway, _messages(sent, total, users), slots)
            sent += total
            rates.append(total / (time.monotonic() - start))
            cpu_after = _cpu_seconds()
            cpus.append((cpu_after[0] - cpu[0]) / total * 1e6)
            kernel.append((cpu_after[1] - cpu[1]) / total * 1e6)
            client_cpus.append((cpu_of(pids) - client_cpu) / total * 1e6)
        if profile:
            from bench.pyspy import Recording

            out_dir, seconds = profile
            recording = Recording({"gateway-alone": os.getpid()}, seconds, out_dir,
                                  svg=("gateway-alone",))
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                await _drive(gateway, _messages(sent, total, users), slots)
                sent += total
            for summary in (await asyncio.to_thread(recording.wait)).values():
                print(summary.describe(), flush=True)
    finally:
        stop.set()
        await gateway.close()
        for process in processes:
            process.join(10)
            if process.is_alive():
                process.kill()
    return GatewayResult(users, total, slots, statistics.median(rates), statistics.median(cpus),
                         statistics.median(kernel), statistics.median(client_cpus), tuple(rates),
                         dict(outcomes))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--total", type=int, default=50_000, help="frames a round")
    parser.add_argument("--slots", type=int, default=64, help="sends holding a slot at most")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="then more rounds under py-spy; collapsed stacks and SVG in DIR")
    parser.add_argument("--profile-seconds", type=float, default=15.0)
    args = parser.parse_args(argv)
    profile = (args.profile, args.profile_seconds) if args.profile else None
    run_uvloop(_report(args.users, args.total, args.slots, args.rounds, args.clients, profile))


async def _report(users: int, total: int, slots: int, rounds: int, clients: int,
                  profile: tuple[Path, float] | None) -> None:
    print((await _measure(users, total, slots, rounds, clients, profile)).describe(), flush=True)


if __name__ == "__main__":
    main()
