"""Start and stop a whole Herald: local Ray, capture peers (dev mode), supervisor, HTTP intake."""

from __future__ import annotations

import asyncio
import logging
import secrets
import signal
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
from ray import serve

from herald.config import Settings

log = logging.getLogger("herald.runtime")


def stored_secret(data_dir: Path, name: str, prefix: str = "") -> str:
    """A secret kept in the data dir (made once, mode 0600): dev API key, browser secret…"""
    path = data_dir / name
    if path.is_file():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    value = prefix + secrets.token_urlsafe(24)
    path.touch(mode=0o600)
    path.write_text(value + "\n")
    return value


def dev_api_key(data_dir: Path) -> str:
    return stored_secret(data_dir, "dev-api-key", "hk_dev_")


class LoopThread:
    """An asyncio loop in a daemon thread, for the aiohttp capture peers of dev mode."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True,
                                        name="herald-capture")
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)


@dataclass
class Herald:
    """A running Herald; ``stop()`` drains in-flight work and shuts everything down."""

    settings: Settings
    supervisor: Any = None
    peers: list[Any] = field(default_factory=list)
    dev_key: str | None = None
    _async_peers: list[Any] = field(default_factory=list)
    _loop: LoopThread | None = None

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
        settings = self._capture_providers(settings, outbox)
        if not settings.browser_secret:
            settings = settings.with_overrides(
                browser_secret=stored_secret(settings.data_dir, "browser-secret"))
        self.settings = settings
        if not ray.is_initialized():
            # ray.init replaces SIGINT/SIGTERM handlers; keep the caller's (graceful stop).
            handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
            ray.init(address=settings.ray_address, namespace="herald", include_dashboard=False,
                     logging_level=logging.WARNING, configure_logging=True)
            if threading.current_thread() is threading.main_thread():
                for sig, handler in handlers.items():
                    signal.signal(sig, handler)
        from actors.supervisor import NAMESPACE, SUPERVISOR_NAME, Supervisor

        self.supervisor = Supervisor.options(  # type: ignore[attr-defined]
            name=SUPERVISOR_NAME, namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
        ).remote(settings, settings.channels_configured())
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

    def _capture_providers(self, settings: Settings, outbox: Path) -> Settings:
        """Dev mode: Twilio- and Telnyx-compatible capture APIs for what is not configured."""
        if settings.twilio_account_sid and settings.fax_api_key:
            return settings
        self._loop = LoopThread()
        if not settings.twilio_account_sid:
            from capture.twilio_api import CaptureTwilioApi

            sid, token = "AC" + secrets.token_hex(16), secrets.token_hex(16)
            twilio = CaptureTwilioApi(sid, token, outbox)
            self._loop.run(twilio.start())
            self._async_peers.append(twilio)
            settings = settings.with_overrides(
                twilio_account_sid=sid, twilio_auth_token=token, twilio_base_url=twilio.base_url,
                twilio_from=settings.twilio_from or "+15005550006")
        if not settings.fax_api_key:
            from capture.fax_api import CaptureFaxApi

            key = secrets.token_hex(16)
            secret = settings.fax_webhook_secret or secrets.token_hex(16)
            fax = CaptureFaxApi(key, outbox, secret)
            self._loop.run(fax.start())
            self._async_peers.append(fax)
            settings = settings.with_overrides(
                fax_api_key=key, fax_base_url=fax.base_url, fax_webhook_secret=secret,
                fax_connection_id=settings.fax_connection_id or "capture",
                fax_from=settings.fax_from or "+15005550007")
        return settings

    def stop(self, timeout: float = 30.0) -> None:
        """Drain channel actors (in-flight work finishes and is acked), then shut down."""
        try:
            if self.supervisor is not None:
                left = ray.get(self.supervisor.drain.remote(timeout), timeout=timeout + 10)
                if left:
                    log.warning("%d deliveries still in flight; their leases will expire", left)
        except Exception:
            log.exception("drain failed")
        try:
            serve.shutdown()
        finally:
            if self.supervisor is not None:
                try:
                    ray.get(self.supervisor.shutdown.remote(), timeout=30)
                except Exception:
                    log.exception("supervisor shutdown failed")
                ray.kill(self.supervisor, no_restart=True)
            ray.shutdown()
            for peer in self.peers:
                peer.stop()
            if self._loop is not None:
                for async_peer in self._async_peers:
                    self._loop.run(async_peer.stop())
                self._loop.stop()
