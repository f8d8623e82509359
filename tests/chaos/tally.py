"""What a chaos scenario found: offered, accepted, delivered, lost, duplicates, latency, and why."""

from __future__ import annotations

import collections
from dataclasses import asdict, dataclass, field
from typing import Any

from tests.chaos.browser import BrowserFleet
from tests.chaos.load import DONE, FINAL, LoadClient, Offer, percentile
from tests.chaos.peers import Peers, duplicates


@dataclass
class Tally:
    """One scenario's figures; ``problems`` lists every broken promise, with evidence."""

    name: str
    offered: int = 0
    accepted: int = 0
    delivered: int = 0  # final and sent/delivered
    failed: int = 0  # final and failed/dead/cancelled
    lost: int = 0  # accepted, and never final, or "sent" with nothing at the peer
    duplicates: dict[str, int] = field(default_factory=dict)
    browser_resends: int = 0
    out_of_order: int = 0
    kills: dict[str, int] = field(default_factory=dict)
    p50: float | None = None
    p99: float | None = None
    peak_rss: int = 0
    server_errors: int = 0
    answers: dict[str, int] = field(default_factory=dict)
    herald: dict[str, float] = field(default_factory=dict)  # lease_expired, duplicate_sends…
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Tally:
        return cls(**data)

    def merge(self, other: Tally) -> None:
        """Add ``other``'s counts to these (for the table's total row)."""
        for name in ("offered", "accepted", "delivered", "failed", "lost", "browser_resends",
                     "out_of_order", "server_errors"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for mine, theirs in ((self.duplicates, other.duplicates), (self.kills, other.kills)):
            for key, value in theirs.items():
                mine[key] = mine.get(key, 0) + value
        self.peak_rss = max(self.peak_rss, other.peak_rss)
        self.problems += [f"{other.name}: {p}" for p in other.problems]


HERALD_COUNTERS = ("herald_lease_expired_total", "herald_duplicate_sends_total",
                   "herald_stale_acks_total", "herald_write_failures_total")


def count(tally: Tally, client: LoadClient, peers: Peers | None,
          fleet: BrowserFleet | None = None, offers: list[Offer] | None = None,
          latency_from: float = 0.0, expect_done: bool = True,
          errors_are_problems: bool = True, client_stats: bool = True) -> Tally:
    """Fill ``tally`` from what the client offered and what the peers (and browsers) received.

    ``expect_done``: every accepted notification should end sent/delivered (no failures
    injected that should make one fail); a failed or dead one is then a problem too.
    ``errors_are_problems``: a 5xx answer (other than 503 + Retry-After) is a problem; not while
    we kill Serve's processes, whose proxy answers 500 for a request its dead replica held.
    ``client_stats``: also add the client's answers and errors (once per client).
    """
    offers = client.offers if offers is None else offers
    received: dict[str, collections.Counter[str]] = peers.received() if peers else {}
    if fleet is not None:
        received["browser"] = fleet.received()
    accepted = [o for o in offers if o.tag]
    tally.offered += len(offers)
    tally.accepted += len(accepted)
    lost: list[str] = []
    for offer in accepted:
        state = offer.state
        arrived = received.get(offer.channel, collections.Counter())[offer.key]
        if state not in FINAL:
            lost.append(f"{offer.channel} {offer.tag} still {state}")
        elif state in DONE:
            tally.delivered += 1
            if offer.channel in received and arrived == 0:
                lost.append(f"{offer.channel} {offer.tag} {state} but never reached the peer")
        else:
            tally.failed += 1
            if expect_done:
                history = (offer.status or {}).get("history", [])[-2:]
                tally.problems.append(f"{offer.channel} {offer.tag} ended {state}: {history}")
    tally.lost += len(lost)
    if lost:
        tally.problems.append(f"{len(lost)} lost, e.g. {lost[:5]}")
    for channel in ("email", "sms", "fax"):
        keys = [o.key for o in accepted if o.channel == channel]
        if keys and channel in received:
            tally.duplicates[channel] = (tally.duplicates.get(channel, 0)
                                         + duplicates(received[channel], keys))
    twice = [o for o in accepted if o.channel in ("email", "sms", "fax")
             and received.get(o.channel, collections.Counter())[o.key] > 1]
    for offer in twice[:3]:  # evidence: how a duplicate came about
        history = [(h.get("outcome"), h.get("code"), round(h.get("at", 0) - offer.offered_at, 1))
                   for h in (offer.status or {}).get("history", [])]
        tally.notes.append(f"sent {received[offer.channel][offer.key]}×: {offer.channel} "
                           f"{offer.tag}, history {history}")
    if fleet is not None:
        keys = [str(o.tag) for o in accepted if o.channel == "browser"]
        tally.browser_resends += duplicates(received["browser"], keys)
        tally.out_of_order += fleet.out_of_order(client.accepted_order)
    times = [t for o in accepted if o.offered_at >= latency_from
             and (t := o.sent_after()) is not None]
    tally.p50, tally.p99 = percentile(times, 50), percentile(times, 99)
    if not client_stats:
        return tally
    tally.server_errors += len(client.server_errors)
    if client.server_errors and errors_are_problems:
        tally.problems.append(f"{len(client.server_errors)} server errors, e.g. "
                              f"{client.server_errors[:3]}")
    if client.retry_after_missing:
        tally.problems.append(f"{client.retry_after_missing} 429/503 answers without Retry-After")
    answers = collections.Counter({str(k): v for k, v in client.answers.items()})
    tally.answers = dict(collections.Counter(tally.answers) + answers)
    return tally


async def herald_counters(client: LoadClient) -> dict[str, float]:
    """Herald's own counts of what went wrong (summed over shards since they last started)."""
    metrics = await client.metrics()
    return {name.removeprefix("herald_").removesuffix("_total"): metrics.get(name, 0.0)
            for name in HERALD_COUNTERS}
