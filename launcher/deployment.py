"""Herald's actors and HTTP application on a connected Ray: the one start and the one stop,
for `herald up` (``launcher.runtime``) and ``serve deploy`` (``launcher.builder``) alike.

Start: ``prepare_data_dir`` where the shards keep their files (the dev keys, secrets and shard
count it keeps), then ``start``: the Supervisor found or started, its shards and channel pools
answering, the Intake bound to their handles (the Serve application). Stop: ``stop`` deletes
Herald's Serve application (only it), drains in-flight deliveries meanwhile, and shuts the
Supervisor and what it started down; each step bounded, none waiting on a local Ray gone.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ray

from actors.clients import SupervisorClient
from herald.actor_names import NAMESPACE, SUPERVISOR_NAME
from herald.config import Settings
from herald.deployment_store import DeploymentStore
from herald.layout import check_layout, shards_in_files
from herald.open_store import open_store
from herald.webhook_secrets import WebhookSecrets
from jobs.ray_private import local_ray_gone
from launcher.stored_secrets import browser_secret, dev_admin_key, dev_api_key, unsubscribe_secret

log = logging.getLogger("herald.deployment")
#: Herald's Serve application: the only one ``stop`` deletes.
APP_NAME = "herald"
#: How long a stopping intake replica lets in-flight HTTP requests finish; only ``?wait``
#: long polls last longer, and their clients may ask again.
HTTP_GRACE_SECONDS = 5.0
#: The longest stop waits for Serve to take Herald's HTTP app down (a Serve that answers takes
#: well under a second; one that is gone is not waited for at all, see ``bounded``).
APP_DELETE_SECONDS = 15.0
#: How often a stop step that waits on Ray checks that the local Ray it waits on still runs.
RAY_WATCH_SECONDS = 0.05


@dataclass(frozen=True)
class Started:
    """Herald's actors, started: the Supervisor and the Serve application bound to them."""

    supervisor: SupervisorClient
    app: Any  # ray.serve.Application: for serve.run, or returned to `serve deploy`


def prepare_data_dir(settings: Settings) -> tuple[Settings, str | None]:
    """Before any actor starts: record the shard count, and without ``HERALD_API_KEYS`` make
    (once) a dev API key and admin key; without ``HERALD_BROWSER_SECRET`` the browser-token
    secret (``HERALD_UNSUBSCRIBE_SECRET``: the unsubscribe-link one); the tenants' webhook
    secrets. All of it is kept in the deployment's store (``open_store``): the data dir, or with
    ``HERALD_DATABASE_URL`` the database, where every deployment on it finds the same values.
    Returns the completed settings and the dev key if one is in use. Runs where the shards
    keep their files (`herald up`: its own process; under Serve: a task on the queue node)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    dev_key = None
    with open_store(settings) as store:
        # SQLite shard files from before the layout record say how many shards wrote them.
        found = None if settings.database_url else shards_in_files(settings.data_dir)
        check_layout(store, settings.shards, found)
        if not settings.api_keys:
            dev_key = dev_api_key(store)
            settings = settings.with_overrides(api_keys={dev_key: "dev"})
            if not settings.admin_key:
                settings = settings.with_overrides(admin_key=dev_admin_key(store))
        if not settings.browser_secret:
            settings = settings.with_overrides(browser_secret=browser_secret(store))
        if not settings.unsubscribe_secret:
            settings = settings.with_overrides(unsubscribe_secret=unsubscribe_secret(store))
        ensure_webhook_secrets(settings, store)
    if settings.database_url is not None and settings.deployment_id is None:
        # Who this deployment is among those on the database: its leases carry it.
        settings = settings.with_overrides(deployment_id=uuid.uuid4().hex[:12])
    return settings, dev_key


def ensure_webhook_secrets(settings: Settings, store: DeploymentStore) -> list[str]:
    """Make (once, in ``store``) a random ``whsec_`` webhook secret for each tenant with an API
    key and no ``HERALD_WEBHOOK_SECRETS`` entry; the tenants given one now."""
    tenants = set(settings.api_keys.values()) - set(settings.webhook_secrets)
    return WebhookSecrets(store).ensure(tenants)


def start(settings: Settings) -> Started:
    """The Supervisor (the running one, or a new one told ``settings``) with its shards and
    pools answering, and Herald's Serve application bound to their handles.

    A Supervisor already running keeps the settings it was started with: changing what the
    actors were told (shards, pools, providers) takes ``python -m launcher.builder stop`` first.
    """
    from actors.supervisor import Supervisor
    from serve.app import Intake

    # Actors may run on any node: a relative path would resolve against each one's cwd.
    settings = settings.with_overrides(data_dir=settings.data_dir.absolute())
    supervisor = SupervisorClient(Supervisor.options(  # type: ignore[attr-defined]
        name=SUPERVISOR_NAME, namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
    ).remote(settings, settings.channels_configured()))
    supervisor.start().get()
    shards = supervisor.shard_handles().get()
    intake = Intake.options(  # type: ignore[attr-defined]
        num_replicas=settings.intake_replicas,
        # Serve's defaults (check every 2 s, wait up to 20 s) made even an idle stop take
        # seconds; an idle replica now goes at once and a busy one waits at most
        # HTTP_GRACE_SECONDS for its requests (a POST takes milliseconds).
        graceful_shutdown_wait_loop_s=0.1, graceful_shutdown_timeout_s=HTTP_GRACE_SECONDS,
    )
    return Started(supervisor, intake.bind(settings, shards, supervisor))


def running_supervisor() -> SupervisorClient | None:
    """The Supervisor running on the connected Ray (a detached actor); None if there is none."""

    try:
        return SupervisorClient(ray.get_actor(SUPERVISOR_NAME, namespace=NAMESPACE))
    except ValueError:
        return None


def stop(supervisor: SupervisorClient | None, *, delete_app: bool, timeout: float) -> None:
    """Delete Herald's Serve application (``delete_app``: only it; on a shared cluster Serve's
    controller, proxies and other applications stay), let in-flight deliveries finish (at most
    ``timeout`` s), then shut ``supervisor`` and its shards and pools down. A failed or stuck
    step is logged and the next one still runs."""
    drained = None
    if supervisor is not None and not local_ray_gone():
        # Channel actors stop leasing and finish what they hold while the HTTP app goes: the
        # two waits overlap instead of adding up.
        drained = guarded("drain", lambda: supervisor.drain(timeout))
    if delete_app:
        from ray import serve

        # serve.delete waits on the Serve controller without a timeout; a controller that does
        # not answer (an overloaded box) must not keep Herald from stopping.
        bounded("deleting the HTTP app", lambda: serve.delete(APP_NAME), APP_DELETE_SECONDS)
    if drained is not None:
        left = bounded("drain", lambda: drained.get(), timeout + 10)
        if left:
            log.warning("%d deliveries still in flight; their leases will expire", left)
    if supervisor is not None and not local_ray_gone():
        bounded("supervisor shutdown", lambda: supervisor.shutdown().get(), 30)
        bounded("killing the supervisor", lambda: ray.kill(supervisor.handle, no_restart=True), 5)


def guarded(what: str, step: Callable[[], Any]) -> Any:
    """Run one stop step; a failure is logged and the next steps still run."""
    try:
        return step()
    except Exception:
        log.exception("%s failed", what)
        return None


def bounded(what: str, step: Callable[[], Any], seconds: float) -> Any:
    """Run one stop step that waits on Ray, for at most ``seconds``, and not at all once the
    local Ray is gone (it would wait for a controller or an actor that no longer exists).
    A failure is logged and the next steps still run; a step given up on returns None."""
    if local_ray_gone():
        return None
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(guarded(what, step)), daemon=True,
                              name=f"herald-stop-{what.replace(' ', '-')}")
    thread.start()
    deadline = time.monotonic() + seconds
    while thread.is_alive():
        thread.join(RAY_WATCH_SECONDS)
        if local_ray_gone():
            log.warning("%s: the local Ray is gone; going on", what)
            return None
        if time.monotonic() > deadline:
            log.warning("%s did not finish within %.0f s; going on", what, seconds)
            return None
    return result[0] if result else None
