"""A client's load with a known order per user, and what came of it: for tests that lose
part of a Herald (or its database) mid-load and must show that nothing was lost.

``USERS`` users with ``PER_USER`` notifications each, email and SMS, posted over HTTP by a few
client threads; a thread owns some users and posts each user's next notification in turn, so a
user's are accepted one after another, in a known order. A client here is one behind a load
balancer: a POST refused (429, 503) or cut off is sent again, with the same idempotency key, to
the deployment ``Load.route`` names now, until accepted.

``judge`` compares what was accepted with each one's final status and with what reached the
peers (keys in arrival order per channel: the idempotency key is the email's subject and in the
SMS body). A notification whose lease ran out (``lease_expired`` in its history: an owner that
was lost had leased it and never answered) may arrive twice, or after later ones of its user;
every other one must arrive once at least, in its user's order.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from herald.status import FINAL
from tests.support.payloads import email_payload

USERS, PER_USER = 30, 10  # 300 notifications, a third of them SMS
FINAL_NAMES = {s.value for s in FINAL}


@dataclass(frozen=True)
class Notification:
    key: str  # its idempotency key (``mq-uuid-btag``), also in what the peer receives
    user: int
    uid: str
    index: int  # its place among its user's notifications
    channel: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class Answer:
    tag: str
    by: str  # the deployment that answered
    duplicate: bool  # 200: the key was taken already (an earlier try committed, its answer lost)


def notification(run: str, user: int, index: int) -> Notification:
    uid, key = f"{run}-u{user:02d}", f"{run}-u{user:02d}-{index:02d}"
    if index % 3 == 2:
        payload: dict[str, Any] = {
            "type": "OTP_SMS", "user": {"uid": uid, "mq-uuid-btag": key},
            "details": {"to": f"+1415{user:07d}", "content": f"code {key}"}}
        return Notification(key, user, uid, index, "sms", payload)
    payload = email_payload(to=f"u{user}@example.com", uid=uid, btag=key, subject=key)
    payload["requester"]["asap"] = "no"  # no express slots: one send in flight per shard
    return Notification(key, user, uid, index, "email", payload)


@dataclass
class Load:
    """``USERS`` users, ``PER_USER`` notifications each, posted by a few client threads; a
    thread owns some users and posts each user's next notification in turn, so a user's are
    posted one after another. ``route`` is where the balancer sends a POST now."""

    run: str
    api_key: str
    route: tuple[str, str]  # (deployment name, base URL)
    threads: int = 5
    accepted: dict[str, Answer] = field(default_factory=dict)
    refused: collections.Counter[str] = field(default_factory=collections.Counter)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.sent = [notification(self.run, u, i) for u in range(USERS) for i in range(PER_USER)]
        self._workers = [threading.Thread(target=self._post_users, args=(t,), daemon=True)
                         for t in range(self.threads)]

    def start(self) -> Load:
        for worker in self._workers:
            worker.start()
        return self

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for worker in self._workers:
            worker.join(timeout=max(0.0, deadline - time.monotonic()))
        assert not any(w.is_alive() for w in self._workers), "the load did not finish"

    def accepted_by(self, name: str) -> dict[str, Answer]:
        with self.lock:
            return {k: a for k, a in self.accepted.items() if a.by == name}

    def _post_users(self, thread: int) -> None:
        mine = [n for n in self.sent if n.user % self.threads == thread]
        mine.sort(key=lambda n: (n.index, n.uid))  # round robin over this thread's users
        with httpx.Client(timeout=10, headers={"Authorization": f"Bearer {self.api_key}"}) as client:
            for item in mine:
                if not self._post(client, item):
                    return

    def _post(self, client: httpx.Client, item: Notification) -> bool:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            name, base = self.route
            try:
                answer = client.post(f"{base}/v1/notifications", json=item.payload)
            except httpx.HTTPError as exc:
                code = type(exc).__name__
            else:
                if answer.status_code in (200, 202):
                    with self.lock:
                        self.accepted[item.key] = Answer(answer.json()["details"]["tag"], name,
                                                         answer.status_code == 200)
                    return True
                if answer.status_code not in (429, 503):  # refused for good: a bug
                    with self.lock:
                        self.errors.append(f"{item.key} at {name}: {answer.status_code} {answer.text}")
                    return False
                code = str(answer.status_code)
            with self.lock:
                self.refused[f"{name} {code}"] += 1
            time.sleep(0.3)
        with self.lock:
            self.errors.append(f"{item.key} was never accepted")
        return False


def final_statuses(base: str, api_key: str, tags: list[str]) -> dict[str, dict[str, Any]]:
    """Each tag's status view at ``base``, once final (or after a minute of asking)."""

    async def one(client: httpx.AsyncClient, gate: asyncio.Semaphore, tag: str) -> dict[str, Any]:
        view: dict[str, Any] = {"status": "unanswered"}
        async with gate:
            for _ in range(4):
                try:
                    answer = await client.get(f"/v1/notifications/{tag}", params={"wait": 15})
                except httpx.HTTPError as exc:
                    view = {"status": type(exc).__name__}
                    continue
                view = answer.json() if answer.status_code == 200 else {
                    "status": f"HTTP {answer.status_code}"}
                if view.get("status") in FINAL_NAMES:
                    break
        return view

    async def every() -> dict[str, dict[str, Any]]:
        gate = asyncio.Semaphore(20)
        async with httpx.AsyncClient(base_url=base, timeout=30,
                                     headers={"Authorization": f"Bearer {api_key}"}) as client:
            found = await asyncio.gather(*(one(client, gate, tag) for tag in tags))
        return dict(zip(tags, found, strict=True))

    return asyncio.run(every())


@dataclass
class Verdict:
    not_final: dict[str, str]
    lost: list[str]
    duplicates: int
    came_back: list[str]  # leased by an owner that was lost, never answered: lease_expired
    out_of_order: list[tuple[str, str]]  # (earlier key, later key) that arrived the other way
    #: Of ``came_back``, those that first arrived after a later one of their user (allowed).
    overtaken: list[str]

    def summary(self) -> str:
        return (f"not final {len(self.not_final)}, lost {len(self.lost)}, duplicates "
                f"{self.duplicates}, leases that came back {len(self.came_back)} (overtaken "
                f"{len(self.overtaken)}), out of order {len(self.out_of_order)}")


def judge(load: Load, statuses: dict[str, dict[str, Any]],
          arrivals: dict[str, list[str]]) -> Verdict:
    """``statuses``: each tag's final status view; ``arrivals``: per channel, the keys of
    ``load.run`` in the order they reached the peer, repeats kept."""
    by_tag = {a.tag: key for key, a in load.accepted.items()}
    not_final = {by_tag[t]: v["status"] for t, v in statuses.items() if v["status"] not in FINAL_NAMES}
    came_back = sorted(by_tag[t] for t, v in statuses.items()
                       if any(h.get("code") == "lease_expired" for h in v.get("history", ())))
    seen = collections.Counter(k for keys in arrivals.values() for k in keys)
    first = {c: {k: i for i, k in reversed(list(enumerate(keys)))} for c, keys in arrivals.items()}
    lost = sorted(k for k in load.accepted if seen[k] == 0)
    out_of_order = []
    lines: dict[tuple[str, str], list[Notification]] = collections.defaultdict(list)
    for item in sorted(load.sent, key=lambda n: n.index):
        if item.key in load.accepted and seen[item.key]:
            lines[(item.uid, item.channel)].append(item)
    overtaken = sorted(n.key for (_, channel), items in lines.items() for i, n in enumerate(items)
                       if n.key in came_back
                       and any(first[channel][later.key] < first[channel][n.key] for later in items[i + 1:]))
    for (_, channel), items in lines.items():
        kept = [n for n in items if n.key not in came_back]
        for earlier, later in itertools.pairwise(kept):
            if first[channel][earlier.key] > first[channel][later.key]:
                out_of_order.append((earlier.key, later.key))
    return Verdict(not_final, lost, sum(n - 1 for n in seen.values() if n > 1), came_back,
                   out_of_order, overtaken)


def check(verdict: Verdict, in_flight: int) -> None:
    """Nothing lost, everything final, each user's order kept; duplicates only from leases
    that ran out, and no more of those than ``in_flight`` (what a failure could catch leased)."""
    assert not verdict.not_final, verdict.not_final
    assert not verdict.lost, verdict.lost
    assert not verdict.out_of_order, verdict.out_of_order
    # Only a send whose lease ran out goes out again, and only what was in flight can.
    assert verdict.duplicates <= len(verdict.came_back) <= in_flight, verdict.summary()
