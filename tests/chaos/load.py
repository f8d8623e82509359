"""Mixed notification load for chaos runs: offers idempotently, waits for every tag to be final.

Every notification carries its own ``mq-uuid-btag``, so a POST whose answer was lost (a killed
proxy or replica) is simply sent again: Herald answers ``200`` with the tag it already gave,
and nothing is queued twice. ``offered`` counts notifications we tried to hand over,
``accepted`` those Herald answered with a tag. Each one also carries a marker in its content
(``vars.ref``), which is how an SMS is recognised at the Twilio peer.
"""

from __future__ import annotations

import asyncio
import collections
import random
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.chaos.peers import new_marker

CHANNELS = ("email", "sms", "fax", "browser")
FINAL = frozenset({"sent", "delivered", "failed", "dead", "cancelled"})
DONE = frozenset({"sent", "delivered"})
#: Answers after which the same POST is sent again (same idempotency key).
RETRIED = frozenset({0, 429, 500, 502, 503, 504})
#: A batch item's error code → the status a single POST would have had.
ITEM_CODES = {"queue_full": 429, "unavailable": 503}


@dataclass
class Offer:
    """One notification we tried to hand over, and what became of it."""

    channel: str
    uid: str
    marker: str
    payload: dict[str, Any]
    offered_at: float = 0.0
    tag: str | None = None
    answers: list[int] = field(default_factory=list)
    status: dict[str, Any] | None = None

    @property
    def key(self) -> str:
        """What the peer records it under: the marker for SMS, else the tag."""
        return self.marker if self.channel == "sms" else str(self.tag)

    @property
    def state(self) -> str | None:
        return None if self.status is None else str(self.status.get("status"))

    def sent_after(self) -> float | None:
        """Seconds from acceptance to the first ``sent``/``delivered`` in its history."""
        if self.status is None:
            return None
        times = [h["at"] for h in self.status.get("history", ()) if h.get("outcome") in DONE]
        return min(times) - float(self.status["created_at"]) if times else None


def payload(channel: str, uid: str, marker: str, number: int, **details: Any) -> dict[str, Any]:
    """A small valid notification of ``channel`` carrying ``marker``."""
    user: dict[str, Any] = {"uid": uid, "mq-uuid-btag": str(uuid.uuid4()), "name": {"first": "Kim"}}
    body: dict[str, Any]
    if channel == "email":
        user["email"] = f"{uid}@example.com"
        body = {"subject": "Chaos {ref}", "content": "Hello {user.name.first}, ref {ref}"}
        kind = "CM_EMAIL"
    elif channel == "sms":
        body = {"to": f"+1415{number % 10_000_000:07d}", "content": "Code 4242 ref {ref}"}
        kind = "OTP_SMS"
    elif channel == "fax":
        body = {"to": f"+1212{number % 10_000_000:07d}", "title": "Doc", "content": "Ref {ref}"}
        kind = "DOC_FAX"
    else:
        body = {"title": "Chaos", "content": "ref {ref}"}
        kind = "CM_BROWSER"
    body["vars"] = {"ref": marker}
    body.update(details)
    return {"type": kind, "user": user, "requester": {"service": "CHAOS"}, "details": body}


class LoadClient:
    """Offers notifications to one Herald and follows them until they are final."""

    def __init__(self, base_url: str, api_key: str, retry_for: float = 120.0,
                 concurrency: int = 48, retried: frozenset[int] = RETRIED) -> None:
        self.base_url = base_url
        self.http = httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"Bearer {api_key}"},
            timeout=httpx.Timeout(30.0, connect=5.0),
            limits=httpx.Limits(max_connections=concurrency + 16))
        self.retry_for, self.retried = retry_for, retried
        self.slots = asyncio.Semaphore(concurrency)
        self.offers: list[Offer] = []
        self.answers: collections.Counter[int] = collections.Counter()
        #: (status, body) of every 5xx that was not a 503 with Retry-After: server errors.
        self.server_errors: list[tuple[int, str]] = []
        self.retry_after_missing = 0
        #: POSTs answered 404 by Serve itself (not JSON): no Herald app behind the proxy.
        self.serve_404 = 0
        #: "status code: message" of the 429/503 answers seen (one of each).
        self.errors_seen: set[str] = set()
        self._number = random.randrange(10_000_000)
        self._user_locks: dict[str, asyncio.Lock] = collections.defaultdict(asyncio.Lock)
        #: uid → its browser tags in the order Herald accepted them (offers per user are serial).
        self.accepted_order: dict[str, list[str]] = collections.defaultdict(list)

    async def close(self) -> None:
        await self.http.aclose()

    def new_offer(self, channel: str, uid: str, **details: Any) -> Offer:
        self._number += 1
        marker = new_marker()
        return Offer(channel, uid, marker, payload(channel, uid, marker, self._number, **details))

    async def offer(self, channel: str, uid: str, **details: Any) -> Offer:
        """Hand one notification over (retrying what may not have arrived); record the answer."""
        offer = self.new_offer(channel, uid, **details)
        self.offers.append(offer)
        if channel == "browser":  # one user's browser messages go one after the other
            async with self._user_locks[uid], self.slots:
                await self._post(offer)
                if offer.tag:
                    self.accepted_order[uid].append(offer.tag)
        else:
            async with self.slots:
                await self._post(offer)
        return offer

    async def _post(self, offer: Offer) -> None:
        offer.offered_at = time.time()
        deadline = time.monotonic() + self.retry_for
        pause = 0.1
        while True:
            try:
                response = await self.http.post("/v1/notifications", json=offer.payload)
                code = response.status_code
            except httpx.HTTPError:
                code, response = 0, None
            offer.answers.append(code)
            self.answers[code] += 1
            if response is not None:
                self._check(response)
            if code in (200, 202) and response is not None:
                offer.tag = str(response.json()["details"]["tag"])
                return
            if code == 404 and response is not None and not _is_json(response):
                self.serve_404 += 1  # Serve's proxy, not Herald: the app is not deployed yet
                code = 503
            if code not in self.retried or time.monotonic() > deadline:
                return
            wait = pause
            if response is not None and "retry-after" in response.headers:
                wait = min(float(response.headers["retry-after"]), 5.0)
            await asyncio.sleep(wait * random.uniform(0.5, 1.0))
            pause = min(pause * 2, 2.0)

    async def offer_batch(self, channel: str, uids: list[str],
                          callback_url: str | None = None) -> list[Offer]:
        """Hand ``len(uids)`` notifications over in one batch request (not retried); each
        item's answer is recorded as a status: 202, or 429/503/422 for its error code."""
        offers = [self.new_offer(channel, uid) for uid in uids]
        if callback_url:
            for offer in offers:
                offer.payload["requester"]["callback_url"] = callback_url
        self.offers.extend(offers)
        async with self.slots:
            for offer in offers:
                offer.offered_at = time.time()
            try:
                response = await self.http.post(
                    "/v1/notifications/batch", json={"notifications": [o.payload for o in offers]})
            except httpx.HTTPError:
                response = None
        results: list[dict[str, Any]] = []
        if response is not None:
            self._check(response)
            if response.status_code == 202:
                results = response.json()["results"]
        for offer, result in zip(offers, results or [{}] * len(offers), strict=True):
            code = ITEM_CODES.get(str((result.get("error") or {}).get("code")), 422)
            if "details" in result:
                code, offer.tag = 202, str(result["details"]["tag"])
            elif response is None or response.status_code != 202:
                code = 0 if response is None else response.status_code
            offer.answers.append(code)
            self.answers[code] += 1
        return offers

    def _check(self, response: httpx.Response) -> None:
        code = response.status_code
        if code in (429, 503) and "retry-after" not in response.headers:
            self.retry_after_missing += 1
        if code == 404 and not _is_json(response):
            self.errors_seen.add(f"404 not JSON: {response.text[:80]!r}")
        if code in (429, 503):
            try:
                error = response.json()["error"]
                self.errors_seen.add(f"{code} {error['code']}: {error['message']}")
            except (ValueError, KeyError, TypeError):
                self.errors_seen.add(f"{code} not JSON: {response.text[:80]!r}")
        if code >= 500 and not (code == 503 and "retry-after" in response.headers):
            self.server_errors.append((code, response.text[:300]))

    async def steady(self, duration: float, rate: float, mix: dict[str, float],
                     uids: Callable[[str], str]) -> None:
        """Offer ``rate`` notifications a second for ``duration`` seconds, channels by ``mix``."""
        channels, weights = list(mix), list(mix.values())
        tasks: set[asyncio.Task[Offer]] = set()
        started = time.monotonic()
        count = 0
        while time.monotonic() - started < duration:
            channel = random.choices(channels, weights)[0]
            task = asyncio.create_task(self.offer(channel, uids(channel)))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            count += 1
            await asyncio.sleep(max(0.0, started + count / rate - time.monotonic()))
        await asyncio.gather(*tasks)

    async def status(self, tag: str) -> dict[str, Any] | None:
        try:
            response = await self.http.get(f"/v1/notifications/{tag}")
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            self._check(response)
            return None
        answer: dict[str, Any] = response.json()
        return answer

    async def settle(self, offers: Iterable[Offer], timeout: float) -> list[Offer]:
        """Poll until every accepted offer is final (or ``timeout``); the ones still not final."""
        pending = [o for o in offers if o.tag and o.state not in FINAL]
        deadline = time.monotonic() + timeout
        polls = asyncio.Semaphore(16)

        async def poll(offer: Offer) -> None:
            async with polls:
                answer = await self.status(str(offer.tag))
            if answer is not None:
                offer.status = answer

        pending.sort(key=lambda o: o.offered_at)
        while pending and time.monotonic() < deadline:
            # Oldest first, 64 at a time; a chunk with nothing final ends the round (the rest,
            # younger, are likely waiting too): a backlog of thousands costs few polls.
            for start in range(0, len(pending), 64):
                chunk = pending[start:start + 64]
                await asyncio.gather(*(poll(o) for o in chunk))
                if all(o.state not in FINAL for o in chunk):
                    break
            pending = [o for o in pending if o.state not in FINAL]
            if pending:
                await asyncio.sleep(0.5)
        return pending

    async def metrics(self) -> dict[str, float]:
        """``/metrics`` as {name{labels}: value}, summed over labels for ``*_total`` counters."""
        try:
            text = (await self.http.get("/metrics")).text
        except httpx.HTTPError:
            return {}
        return parse_metrics(text)

    async def wait_healthy(self, timeout: float = 90.0) -> float:
        """Seconds until ``/healthz`` answers 200 (raises TimeoutError past ``timeout``)."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            try:
                if (await self.http.get("/healthz", timeout=3.0)).status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.3)
        raise TimeoutError(f"{self.base_url} not healthy within {timeout} s")


def _is_json(response: httpx.Response) -> bool:
    return response.headers.get("content-type", "").startswith("application/json")


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text → {metric name: value summed over its label sets}."""
    values: dict[str, float] = collections.defaultdict(float)
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, _, value = line.rpartition(" ")
        name = name_labels.split("{", 1)[0]
        try:
            values[name] += float(value)
        except ValueError:
            continue
    return dict(values)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]
