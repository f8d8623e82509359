"""Start and stop a whole Herald: local Ray, capture peers (dev mode), supervisor, HTTP intake."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
from ray import serve

from herald.config import Settings

log = logging.getLogger("herald.runtime")
CHANNELS = ["EMAIL"]


def dev_api_key(data_dir: Path) -> str:
    """The dev key stored in the data dir (made once, mode 0600)."""
    path = data_dir / "dev-api-key"
    if path.is_file():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = "hk_dev_" + secrets.token_urlsafe(24)
    path.touch(mode=0o600)
    path.write_text(key + "\n")
    return key


@dataclass
class Herald:
    """A running Herald; ``stop()`` drains in-flight work and shuts everything down."""

    settings: Settings
    supervisor: Any = None
    peers: list[Any] = field(default_factory=list)
    dev_key: str | None = None

    def start(self) -> Herald:
        settings = self.settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        if not settings.api_keys:
            self.dev_key = dev_api_key(settings.data_dir)
            settings = settings.with_overrides(api_keys={self.dev_key: "dev"})
        outbox = settings.data_dir / "outbox"
        if not settings.smtp_url:
            from capture.smtp import CaptureSmtpServer

            smtp = CaptureSmtpServer(outbox_dir=outbox, port=0)
            smtp.start()
            self.peers.append(smtp)
            settings = settings.with_overrides(smtp_url=f"smtp://127.0.0.1:{smtp.port}")
            log.info("no SMTP configured: capturing mail on 127.0.0.1:%d", smtp.port)
        self.settings = settings
        if not ray.is_initialized():
            ray.init(namespace="herald", include_dashboard=False, logging_level=logging.WARNING,
                     configure_logging=True)
        from actors.supervisor import NAMESPACE, SUPERVISOR_NAME, Supervisor

        self.supervisor = Supervisor.options(  # type: ignore[attr-defined]
            name=SUPERVISOR_NAME, namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
        ).remote(settings, CHANNELS)
        ray.get(self.supervisor.start.remote())
        shards = ray.get(self.supervisor.shard_handles.remote())
        from serve.app import Intake

        serve.start(http_options={"host": settings.host, "port": settings.port},
                    logging_config={"log_level": "WARNING", "enable_access_log": False})
        serve.run(
            Intake.options(num_replicas=settings.intake_replicas).bind(  # type: ignore[attr-defined]
                settings, shards, self.supervisor),
            name="herald", route_prefix="/",
        )
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Drain channel actors (in-flight work finishes and is acked), then shut down."""
        try:
            if self.supervisor is not None:
                left = ray.get(self.supervisor.drain.remote(timeout), timeout=timeout + 10)
                if left:
                    log.warning("%d deliveries still in flight; their leases will expire", left)
        except Exception:  # noqa: BLE001 - shutting down anyway
            log.exception("drain failed")
        try:
            serve.shutdown()
        finally:
            if self.supervisor is not None:
                ray.kill(self.supervisor)
            ray.shutdown()
            for peer in self.peers:
                peer.stop()
