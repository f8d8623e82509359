"""Shared fixtures: one local Ray for the session, and one running Herald on loopback."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.net import free_port
from tests.support.smtp_sink import SmtpSink

KEYS = {"tenant-a": "key-a-" + "x" * 20, "tenant-b": "key-b-" + "y" * 20}


@dataclass
class Service:
    base_url: str
    sink: SmtpSink
    data_dir: Path
    herald: object

    def client(self, tenant: str = "tenant-a") -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=90.0,
                            headers={"Authorization": f"Bearer {KEYS[tenant]}"})


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    import ray

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    ray.init(num_cpus=2, namespace="herald", include_dashboard=False, log_to_driver=True)
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def service(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """Herald on the session's Ray, delivering to a recording SMTP sink."""
    from herald.config import Settings
    from serve.runtime import Herald

    sink = SmtpSink().start()
    data_dir = tmp_path_factory.mktemp("herald-data")
    settings = Settings(
        port=free_port(), data_dir=data_dir, shards=4,
        api_keys={key: tenant for tenant, key in KEYS.items()},
        smtp_url=sink.url, lease_seconds=8.0, retry_base_seconds=0.2, retry_cap_seconds=2.0,
        sqlite_synchronous="NORMAL", max_body_bytes=1_000_000,
    )
    herald = Herald(settings).start()
    yield Service(f"http://127.0.0.1:{settings.port}", sink, data_dir, herald)
    herald.stop(timeout=10)
    sink.stop()
