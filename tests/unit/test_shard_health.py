"""A shard's start health: backoff between failed starts, and what ``/healthz`` and the overview say."""

from __future__ import annotations

from herald.overview import RateTracker, build_overview
from herald.shard_health import (
    MAX_START_DELAY,
    ShardCondition,
    ShardHealth,
    health_report,
    start_delay,
)


def test_failed_starts_back_off_up_to_a_cap() -> None:
    delays = [start_delay(n) for n in range(1, 10)]
    assert delays[:3] == [1.0, 2.0, 4.0]
    assert delays == sorted(delays) and delays[-1] == MAX_START_DELAY


def test_healthz_is_503_naming_the_shard_that_is_down_and_why() -> None:
    shards = [ShardHealth(0, ShardCondition.UP),
              ShardHealth(1, ShardCondition.DOWN, "OperationalError: database is locked", 10.0, 3),
              ShardHealth(2, ShardCondition.STARTING)]
    status, body = health_report(shards)
    assert status == 503 and body["status"] == "down"
    assert body["down"] == [{"shard": 1, "status": "down", "since": 10.0, "failed_starts": 3,
                             "reason": "OperationalError: database is locked"}]
    status, body = health_report([shards[0], shards[2]])  # starting is not down
    assert status == 200 and body["status"] == "ok" and "down" not in body


def test_healthz_is_503_standby_while_another_deployment_holds_the_shards() -> None:
    standby = [ShardHealth(i, ShardCondition.STANDBY, "another deployment is active", 5.0)
               for i in range(2)]
    status, body = health_report(standby)
    assert status == 503 and body["status"] == "standby" and "down" not in body
    # Half taken over is not active yet: still standby, so no load balancer sends traffic.
    status, body = health_report([ShardHealth(0, ShardCondition.UP), standby[1]])
    assert status == 503 and body["status"] == "standby"
    # A shard that cannot start is worse than waiting: down wins.
    status, body = health_report([standby[0], ShardHealth(1, ShardCondition.DOWN, "x", 1.0, 1)])
    assert status == 503 and body["status"] == "down"


def test_the_overview_lists_a_down_shard_with_why() -> None:
    overview = build_overview(100.0, [None, None], None, [], RateTracker(),
                              {0: "shard 0 is down: OperationalError: database is locked"})
    assert [(s["up"], s["reason"]) for s in overview["shards"]] == [
        (False, "shard 0 is down: OperationalError: database is locked"), (False, "not answering")]
