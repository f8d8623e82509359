"""Start and stop a whole Herald: local Ray, capture peers (dev mode), supervisor, HTTP intake."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import socket
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray

from actors.clients import SupervisorClient
from herald.actor_names import NAMESPACE
from herald.config import Settings
from herald.data_dir import DataDir
from jobs.local_ray import remove_record, write_record
from jobs.ray_private import (
    kill_local_ray,
    local_ray_gone,
    serve_http_address,
    shorten_shutdown_flush,
    stay_on_loopback,
)
from launcher import deployment
from launcher.deployment import APP_NAME, guarded, prepare_data_dir
from serve.starting import PROXY_CALLBACK, PROXY_CALLBACK_VARIABLE

log = logging.getLogger("herald.runtime")
#: Hears one line per start step, e.g. ``herald up`` printing "starting Ray…".
Progress = Callable[[str], None]


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
    supervisor: SupervisorClient | None = None
    peers: list[Any] = field(default_factory=list)
    dev_key: str | None = None
    #: The admin key made for the deployment (dev mode, no ``HERALD_ADMIN_KEY``), to print.
    admin_key: str | None = field(default=None, repr=False)
    #: The channels whose deliveries go to a local capture peer (dev mode): ``email``, ``sms``…
    captured: list[str] = field(default_factory=list)
    #: Host and port Serve's HTTP proxies listen on once started: HERALD_HOST/HERALD_PORT, or
    #: those of a Serve already running on the Ray joined (it keeps its own).
    http_address: tuple[str, int] | None = None
    _async_peers: list[Any] = field(default_factory=list)
    _loop: LoopThread | None = None
    #: True when start() called ray.init: then stop() calls ray.shutdown (a Ray someone else
    #: started, like the test session's, is theirs to stop).
    _owns_ray: bool = False
    _serving: bool = False
    #: jobs.scheduler.RollupScheduler: the delivery log into Parquet every HERALD_ROLLUP_SECONDS.
    _rollup: Any = None

    def start(self, progress: Progress | None = None) -> Herald:
        """Start every part; ``progress`` hears one line per step (``herald up`` prints them).

        If a step fails, what was already started is stopped again before the error propagates.
        """
        say: Progress = progress or (lambda _: None)
        try:
            return self._start(say)
        except BaseException:
            self.stop(timeout=0)
            raise

    def _start(self, say: Progress) -> Herald:
        # The shard count checked, the dev keys and secrets made or read (in the data dir, or
        # the database every deployment on it shares) before anything starts.
        settings, self.dev_key = prepare_data_dir(self.settings)
        if self.dev_key and not self.settings.admin_key:
            self.admin_key = settings.admin_key  # made for dev mode: `herald up` prints it
        fresh = False  # a Ray this process starts now (no Serve can run on it yet)
        if not ray.is_initialized():
            local = fresh = settings.ray_address == "local"
            if local:  # on a cluster the listeners run elsewhere
                check_ports_free(settings)
            say("starting Ray…" if local else f"connecting to Ray at {settings.ray_address}…")
            self._init_ray(settings)
        # A Ray this process just started runs no Serve yet (a client cached from an earlier
        # Ray of this process would name that one's port).
        serving = None if fresh else serve_http_address()
        if serving is not None and serving[1] != settings.port:
            # Serve keeps the HTTP options it was started with: the API is on its port, and
            # the receipt URLs the actors are told must say so.
            say(f"Serve already runs on this Ray with HTTP on port {serving[1]}: Herald's API "
                f"will be there, not on HERALD_PORT {settings.port}")
            settings = settings.with_overrides(port=serving[1])
        if settings.capture_channels():
            say("starting the capture peers…")
        settings = self._capture_providers(settings, DataDir(settings.data_dir).outbox)
        self.settings = settings
        say("starting the Supervisor, shards and channel pools…")
        from ray import serve

        # The same start as `serve deploy serve_config.yaml` (launcher/builder.py).
        started = deployment.start(settings)
        self.supervisor = started.supervisor
        say("starting the HTTP API…")
        serve.start(http_options={"host": settings.host, "port": settings.port},
                    logging_config={"log_level": "WARNING", "enable_access_log": False})
        self._serving = True
        self.http_address = serve_http_address() or (settings.host, settings.port)
        serve.run(started.app, name=APP_NAME, route_prefix="/")
        from jobs.scheduler import RollupScheduler

        self._rollup = RollupScheduler.from_settings(settings).start()
        return self

    def _init_ray(self, settings: Settings) -> None:
        # ray.init replaces SIGINT/SIGTERM handlers; keep the caller's (graceful stop).
        handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        self._owns_ray = True  # before init: an init cut short is shut down too
        local = settings.ray_address == "local"
        if local:
            stay_on_loopback()
            # Serve's proxy (started by this Ray) answers 503 + Retry-After, not its own 404,
            # for a path it has no app for yet: it listens before Herald's app is deployed.
            os.environ.setdefault(PROXY_CALLBACK_VARIABLE, PROXY_CALLBACK)
            shorten_shutdown_flush()
        ray.init(
            address=settings.ray_address, namespace=NAMESPACE,
            # A local Ray gets its dashboard on loopback (`serve status`, `ray job submit`).
            include_dashboard=settings.dashboard_port > 0, dashboard_host="127.0.0.1",
            dashboard_port=settings.dashboard_port or None,
            # Ray's own driver chatter stays at WARNING; the job's LoggingConfig makes every
            # actor's INFO records JSON lines carrying their ``extra`` fields (tag, uid…).
            logging_level=logging.WARNING, configure_logging=True,
            logging_config=ray.LoggingConfig(encoding="JSON", log_level="INFO",
                                             additional_log_standard_attrs=["name"]),
        )
        if local:  # for `herald rollup`, `python -m jobs.rollup`: they join this Ray
            write_record(settings.data_dir, ray.get_runtime_context().gcs_address)
        # That config also sets this process's root logger to INFO: keep aiosmtpd's lines per
        # SMTP connection (the dev-mode capture server runs here) to its warnings.
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        if threading.current_thread() is threading.main_thread():
            for sig, handler in handlers.items():
                signal.signal(sig, handler)

    def _capture_providers(self, settings: Settings, outbox: Path) -> Settings:
        """The local peers for the channels ``HERALD_CAPTURE`` names (``capture_channels``): an
        SMTP server, Twilio- and Telnyx-compatible APIs. Never a silent fallback: a channel with
        neither a provider nor capture is refused at intake."""
        capture = settings.capture_channels()
        if "email" in capture:
            from capture.smtp import CaptureSmtpServer

            smtp = CaptureSmtpServer(outbox_dir=outbox, port=0)
            smtp.start()
            self.peers.append(smtp)
            self.captured.append("email")
            settings = settings.with_overrides(smtp_url=f"smtp://127.0.0.1:{smtp.port}")
            log.info("no SMTP configured: capturing mail on 127.0.0.1:%d", smtp.port)
        if not capture & {"sms", "fax"}:
            return settings
        self._loop = LoopThread()
        if "sms" in capture:
            from capture.twilio_api import CaptureTwilioApi

            sid, token = "AC" + secrets.token_hex(16), secrets.token_hex(16)
            twilio = CaptureTwilioApi(sid, token, outbox)
            self._loop.run(twilio.start())
            self._async_peers.append(twilio)
            self.captured.append("sms")
            settings = settings.with_overrides(
                twilio_account_sid=sid, twilio_auth_token=token, twilio_base_url=twilio.base_url,
                twilio_from=settings.twilio_from or "+15005550006")
        if "fax" in capture:
            from capture.fax_api import CaptureFaxApi

            key = secrets.token_hex(16)
            fax = CaptureFaxApi(key, outbox)  # signs its webhooks with a key of its own, as Telnyx
            self._loop.run(fax.start())
            self._async_peers.append(fax)
            self.captured.append("fax")
            settings = settings.with_overrides(
                fax_api_key=key, fax_base_url=fax.base_url, fax_public_key=fax.public_key,
                fax_connection_id=settings.fax_connection_id or "capture",
                fax_from=settings.fax_from or "+15005550007")
        return settings

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking requests, let in-flight deliveries finish (≤ ``timeout`` s), shut down.

        Only Herald's own Serve application is deleted: on a shared cluster the Serve
        controller, its proxies and other applications stay. Safe to call twice. A local Ray
        that is already gone (its processes got the same SIGTERM, from systemd or ``docker
        stop``) is not waited for: what it ran is stopped already; the data is on disk.
        """
        if self._owns_ray:  # a rollup started from now on must not join a Ray going away
            guarded("removing the Ray record", lambda: remove_record(self.settings.data_dir))
        rollup, self._rollup = self._rollup, None
        if rollup is not None:
            guarded("stopping the rollup", rollup.stop)
        supervisor, self.supervisor = self.supervisor, None
        serving, self._serving = self._serving, False
        # The same stop as `python -m launcher.builder stop` (launcher/builder.py).
        deployment.stop(supervisor, delete_app=serving, timeout=timeout)
        if self._owns_ray:
            self._owns_ray = False
            if local_ray_gone():  # its other processes got the signal too and are ending
                guarded("ending the local Ray", kill_local_ray)
            # Stops the local Ray we started (or leaves the cluster we joined).
            guarded("ray shutdown", ray.shutdown)
        for peer in self.peers:
            guarded("stopping a capture peer", peer.stop)
        self.peers.clear()
        if self._loop is not None:
            loop, self._loop = self._loop, None
            for async_peer in self._async_peers:
                guarded("stopping a capture peer", _stopper(loop, async_peer))
            self._async_peers.clear()
            loop.stop()


def check_ports_free(settings: Settings) -> None:
    """Raise OSError naming the setting if a port Herald listens on here is taken.

    Found later, a busy HTTP port costs Serve's 30 s proxy timeout and a Ray traceback, and a
    busy gateway port leaves browser delivery dead behind a Herald that looks healthy.
    """
    wanted = [("HERALD_PORT", settings.host, settings.port)]
    wanted += [("HERALD_BROWSER_PORT", settings.host, settings.browser_port + i)
               for i in range(settings.pools.get("browser", 1))]
    if settings.bounce_domain:  # the bounce listener (actors/bounce_desk.py)
        wanted.append(("HERALD_BOUNCE_PORT", settings.host, settings.bounce_port))
    if settings.dashboard_port:  # the local Ray's dashboard, on loopback
        wanted.append(("HERALD_DASHBOARD_PORT", "127.0.0.1", settings.dashboard_port))
    for name, host, port in wanted:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
            # As the servers do: a port left in TIME_WAIT by a previous run is free.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError as exc:
                raise OSError(f"{host}:{port} ({name}) is not free: "
                              f"{exc.strerror or exc}") from None


def _stopper(loop: LoopThread, peer: Any) -> Callable[[], Any]:
    return lambda: loop.run(peer.stop())
