"""Typed values cross into Ray (pickled) as their constructor's arguments: ``herald.wire``."""

from __future__ import annotations

import pickle

from herald.notification import Accepted
from herald.outcome import Outcome
from herald.queue import LeaseRenewal
from tests.unit.conftest import T0, make_notification


def test_values_crossing_into_ray_pickle_as_their_fields() -> None:
    notification = make_notification("SMS", now=T0)
    for value in (notification, Accepted(notification.tag, 3, duplicate=True),
                  Outcome(notification.tag, "sent", "twilio", info={"segments": 2}, lease=1.5),
                  LeaseRenewal(notification.tag, 2.5)):
        assert pickle.loads(pickle.dumps(value, protocol=5)) == value
        assert type(value).__reduce__(value)[0] is type(value)  # not the dataclass default
