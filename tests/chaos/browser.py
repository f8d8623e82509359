"""Browser users for chaos runs: WebSocket clients that ack, reconnect, and record what arrived."""

from __future__ import annotations

import asyncio
import collections
import json
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import httpx
import websockets
from websockets.exceptions import InvalidHandshake, InvalidStatus


@dataclass
class BrowserUser:
    uid: str
    #: Tags in the order their frames arrived, repeats included (a resend after a lost ack).
    arrivals: list[str] = field(default_factory=list)
    connects: int = 0


class BrowserFleet:
    """One always-reconnecting, always-acking browser per uid (a fresh token per connection)."""

    def __init__(self, http: httpx.AsyncClient, uids: Iterable[str]) -> None:
        self.http = http
        self.users = {uid: BrowserUser(uid) for uid in uids}
        self._tasks: list[asyncio.Task[None]] = []
        self.refused: collections.Counter[int] = collections.Counter()
        self._all_connected = asyncio.Event()

    async def start(self, timeout: float = 30.0) -> None:
        """Connect every user (each keeps reconnecting until ``stop``)."""
        self._tasks = [asyncio.create_task(self._run(u)) for u in self.users.values()]
        async with asyncio.timeout(timeout):
            await self._all_connected.wait()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _url(self, uid: str) -> str:
        token = (await self.http.post("/v1/browser-tokens", json={"uid": uid})).json()["token"]
        answer = await self.http.get("/v1/browser-endpoint", params={"token": token})
        return str(answer.json()["url"])

    async def _run(self, user: BrowserUser) -> None:
        pause = 0.2
        while True:
            try:
                url = await self._url(user.uid)
                async with websockets.connect(url, open_timeout=5, close_timeout=1) as ws:
                    user.connects += 1
                    if all(u.connects for u in self.users.values()):
                        self._all_connected.set()
                    pause = 0.2
                    async for raw in ws:
                        frame = json.loads(raw)
                        tag = frame.get("tag") if isinstance(frame, dict) else None
                        if isinstance(tag, str):
                            user.arrivals.append(tag)
                            await ws.send(json.dumps({"ack": tag}))
            except asyncio.CancelledError:
                raise
            except InvalidStatus as exc:
                self.refused[exc.response.status_code] += 1
            except (OSError, InvalidHandshake, websockets.ConnectionClosed, httpx.HTTPError,
                    ValueError, KeyError, TimeoutError):
                pass
            await asyncio.sleep(pause * random.uniform(0.5, 1.0))
            pause = min(pause * 2, 2.0)

    def received(self) -> collections.Counter[str]:
        counts: collections.Counter[str] = collections.Counter()
        for user in self.users.values():
            counts.update(user.arrivals)
        return counts

    def out_of_order(self, accepted: Mapping[str, Sequence[str]]) -> int:
        """Tags that first arrived after a tag their user's accepted later (per user, summed)."""
        late = 0
        for uid, order in accepted.items():
            rank = {tag: i for i, tag in enumerate(order)}
            seen: set[str] = set()
            highest = -1
            for tag in self.users[uid].arrivals if uid in self.users else ():
                if tag in seen or tag not in rank:
                    continue
                seen.add(tag)
                if rank[tag] < highest:
                    late += 1
                highest = max(highest, rank[tag])
        return late
