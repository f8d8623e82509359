"""Herald's own counters, read from outside: ``/metrics``, parsed, and what a measured run added.

The benchmarks count what Herald did between two readings (store commits, notifications sent,
receipts) rather than trusting a figure of their own: ``herald_store_commits_total`` is every
transaction the shards committed (one group commit carries many changes), ``herald_sent_total``
every notification a provider took, ``herald_delivered_total`` every receipt that confirmed one,
``herald_shard_calls_total`` every call the shards answered (issue 19; absent before it).
Service-wide figures need the operator credential (``Settings.metrics_token``) as a Bearer token;
a tenant key sees its own counters, and no commits.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

#: The operator credential the benchmarks give the Herald they start (``metrics_token``).
METRICS_TOKEN = "bench-metrics-" + "t" * 20


def counters(text: str) -> dict[str, float]:
    """Every unlabelled ``herald_<name>_total`` sample of a ``/metrics`` answer: name → value."""
    return {sample.name.removeprefix("herald_").removesuffix("_total"): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples
            if sample.name.startswith("herald_") and sample.name.endswith("_total")
            and not sample.labels}


@dataclass(frozen=True, slots=True)
class StoreCounts:
    """Herald's counts at one reading (or, subtracted, what happened between two)."""

    commits: int | None  # None: this Herald does not count its commits (before group commit)
    sent: int
    delivered: int
    shard_calls: int | None = None  # None: this Herald does not count the calls its shards took

    @classmethod
    def parse(cls, text: str) -> StoreCounts:
        found = counters(text)
        commits, calls = found.get("store_commits"), found.get("shard_calls")
        return cls(None if commits is None else int(commits), int(found.get("sent", 0)),
                   int(found.get("delivered", 0)), None if calls is None else int(calls))

    def __sub__(self, before: StoreCounts) -> StoreCounts:
        return StoreCounts(_less(self.commits, before.commits), self.sent - before.sent,
                           self.delivered - before.delivered,
                           _less(self.shard_calls, before.shard_calls))

    @property
    def commits_per_sent(self) -> float | None:
        """Commits per notification sent: the store's cost of one delivery, intake to receipt."""
        return _per(self.commits, self.sent)

    @property
    def shard_calls_per_sent(self) -> float | None:
        """Calls into the shards per notification sent, intake to receipt (issue 19)."""
        return _per(self.shard_calls, self.sent)


def _less(after: int | None, before: int | None) -> int | None:
    return None if after is None or before is None else after - before


def _per(count: int | None, sent: int) -> float | None:
    return None if count is None or not sent else count / sent


def read(base: str, token: str = METRICS_TOKEN) -> StoreCounts:
    answer = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {token}"},
                       timeout=30, trust_env=False)
    return StoreCounts.parse(answer.raise_for_status().text)


def read_when(base: str, done: Callable[[StoreCounts], bool], stall: float = 15.0,
              token: str = METRICS_TOKEN) -> tuple[StoreCounts, bool]:
    """Read until ``done`` holds (receipts still arriving, say) or the counts have not moved for
    ``stall`` seconds: the last reading and whether ``done`` held."""
    last = read(base, token)
    moved = time.monotonic()
    while not done(last):
        time.sleep(0.2)
        counts = read(base, token)
        if counts != last:
            last, moved = counts, time.monotonic()
        elif time.monotonic() - moved > stall:
            return last, False
    return last, True
