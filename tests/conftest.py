"""Shared fixtures: one local Ray for the session, and one running Herald on loopback.

Herald delivers to real peers the tests control: a recording SMTP server, two Twilio-compatible
APIs (primary and backup, driven by the official client), a Telnyx-compatible fax API, and a
webhook receiver for requester callbacks.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.ray_private import LOOPBACK_SWITCH  # imports no Ray

# Every Ray a test starts stays on loopback: otherwise Ray names a node by the machine's own
# address (services.resolve_ip_for_localhost) and its daemons talk over that. Set before any
# test module imports Ray (it is read when Ray is imported, and inherited by what Ray starts).
os.environ.setdefault(LOOPBACK_SWITCH, "0")

import httpx
import pytest

from capture.net import free_port
from capture.postgres import PostgresServer, pg_bin, running_postgres
from capture.smtp_sink import SmtpSink
from tests.support.webhooks import WebhookReceiver

KEYS = {"tenant-a": "key-a-" + "x" * 20, "tenant-b": "key-b-" + "y" * 20}
TWILIO_SID, TWILIO_TOKEN = "AC" + "1" * 32, "t" * 32
FAX_KEY = "fax-key-" + "f" * 16
METRICS_TOKEN = "operator-" + "o" * 24
MAX_WAITS = 8  # ?wait holds per tenant: small, so the bound is tested
ADMIN_KEY = "admin-" + "z" * 26
BOUNCE_DOMAIN = "bounces.example.org"  # the return paths' (HERALD_BOUNCE_DOMAIN)


@dataclass
class Service:
    base_url: str
    sink: SmtpSink
    data_dir: Path
    herald: Any
    twilio: Any
    twilio_backup: Any
    fax: Any
    webhooks: WebhookReceiver
    loop: Any

    def client(self, tenant: str = "tenant-a") -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=90.0,
                            headers={"Authorization": f"Bearer {KEYS[tenant]}"})


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    import ray

    from herald.actor_names import NAMESPACE

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    ray.init(address="local", num_cpus=2, namespace=NAMESPACE, include_dashboard=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def service(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """Herald on the session's Ray, delivering to peers the tests control."""
    from capture.fax_api import CaptureFaxApi
    from capture.twilio_api import CaptureTwilioApi
    from herald.config import Settings
    from launcher.runtime import Herald, LoopThread

    loop = LoopThread()
    outbox = tmp_path_factory.mktemp("peer-outbox")
    twilio = CaptureTwilioApi(TWILIO_SID, TWILIO_TOKEN, outbox)
    twilio_backup = CaptureTwilioApi(TWILIO_SID, TWILIO_TOKEN, outbox)
    fax = CaptureFaxApi(FAX_KEY, outbox)
    webhooks = WebhookReceiver()
    for peer in (twilio, twilio_backup, fax, webhooks):
        loop.run(peer.start())
    sink = SmtpSink().start()
    data_dir = tmp_path_factory.mktemp("herald-data")
    settings = Settings(
        port=free_port(), data_dir=data_dir, shards=4,
        pools={"email": 2, "sms": 1, "browser": 1, "fax": 1, "webhook": 1},  # none starts lazily
        api_keys={key: tenant for tenant, key in KEYS.items()},
        smtp_url=sink.url, lease_seconds=8.0, retry_base_seconds=0.2, retry_cap_seconds=2.0,
        sqlite_synchronous="NORMAL", max_body_bytes=1_000_000,
        twilio_account_sid=TWILIO_SID, twilio_auth_token=TWILIO_TOKEN,
        twilio_base_url=twilio.base_url, twilio_backup_base_url=twilio_backup.base_url,
        twilio_from="+15005550006",
        fax_api_key=FAX_KEY, fax_base_url=fax.base_url, fax_public_key=fax.public_key,
        fax_connection_id="conn-1", fax_from="+15005550007",
        browser_port=free_port(), browser_ack_timeout=3.0,
        breaker_threshold=3, breaker_cooldown=2.0, callback_allow="127.0.0.1/32",
        metrics_token=METRICS_TOKEN, max_waits_per_tenant=MAX_WAITS, admin_key=ADMIN_KEY,
        recipient_limits={"sms": "3/60"},
        bounce_domain=BOUNCE_DOMAIN, bounce_port=free_port(),
        max_attempts={"email": 6, "sms": 10, "browser": 3, "fax": 4, "webhook": 8},
    )
    herald = Herald(settings).start()
    yield Service(f"http://127.0.0.1:{settings.port}", sink, data_dir, herald, twilio,
                  twilio_backup, fax, webhooks, loop)
    herald.stop(timeout=10)
    sink.stop()
    for peer in (twilio, twilio_backup, fax, webhooks):
        loop.run(peer.stop())
    loop.stop()


@pytest.fixture(scope="module")
def durable_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL of the module's own on loopback, durable as a deployment's would be (fsync
    and ``synchronous_commit`` on)."""
    if pg_bin() is None:
        pytest.skip("PostgreSQL is not installed (make pg-deps)")
    with running_postgres(durable=True) as server:
        yield server
