"""Short chaos on the session's Herald: each kind of process killed once under mixed load, and
provider outages (refused connections, 500, 429 + Retry-After, failover, a 10 s provider, odd
encodings). The long version is ``make chaos`` (``tests/chaos/run.py``)."""

from __future__ import annotations

import asyncio

import pytest

from tests.chaos.kills import KINDS
from tests.chaos.peers import Peers
from tests.chaos.report import details, table
from tests.chaos.scenarios import process_kills, provider_outages
from tests.conftest import KEYS, Service

pytestmark = pytest.mark.ray


def test_killing_each_kind_of_process_under_mixed_load_loses_nothing(service: Service) -> None:
    peers = Peers.of_service(service)
    # The proxy first: Serve takes ~30 s to replace it (3 failed health checks 10 s apart),
    # and the other kills happen meanwhile.
    cycle = ["proxy", *(kind for kind in KINDS if kind != "proxy")]
    tally = asyncio.run(process_kills(service.base_url, KEYS["tenant-a"], peers, duration=12,
                                      rate=15, kill_every=2.0, cycle=cycle, browsers=3,
                                      settle=150))
    print("\n" + table([tally]) + "\n" + details([tally]))
    assert tally.kills == dict.fromkeys(KINDS, 1), tally.notes
    assert tally.accepted == tally.offered > 100
    assert tally.lost == 0, tally.problems
    assert not tally.problems


def test_provider_outages_retry_fail_over_and_dead_letter(service: Service) -> None:
    peers = Peers.of_service(service)
    tally = asyncio.run(provider_outages(service.base_url, KEYS["tenant-a"], peers, outage=3.0,
                                         per_phase=12, slow_messages=4))
    print("\n" + table([tally]) + "\n" + details([tally]))
    assert tally.lost == 0, tally.problems
    assert not tally.problems
