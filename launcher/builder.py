"""Herald as a Ray Serve application: what ``serve deploy serve_config.yaml`` builds, and ``herald up``.

``serve_config.yaml`` names ``launcher.builder:build_app``. Serve calls it in a build task on the
cluster, with the application's ``runtime_env``: its ``env_vars`` carry the same ``HERALD_*``
names as ``herald up`` (``herald.config.load_settings``). The builder finds or starts the
Supervisor (named ``herald-supervisor``, detached, namespace ``herald``), which finds or starts
the shards, the rate limiter and the channel pools, and returns the Intake bound to their
handles. ``herald up`` binds the same application (``start_supervisor``, ``herald_app``).

Under Serve the data dir must be absolute: a relative one would resolve against whatever
directory each worker process runs in, node by node. What ``herald up`` keeps for the deployment
(the dev API key, the browser-token secret, the tenants' webhook secrets, the recorded shard
count: ``prepare_data_dir``) is made by a task on the node that holds the shards (``herald_queue``,
see ``actors.members.queue_placement``), in its data dir; with ``HERALD_DATABASE_URL``, in the
database, where every deployment on it finds the same values.

Builder arguments (``args:`` of the application in the Serve config):

* ``queue_nodes: required`` waits up to ``queue_wait_s`` (default 600) for a node offering the
  ``herald_queue`` resource before anything starts, so that the shards never open their files
  on the head because the queue node had not joined yet. ``auto`` (the default) decides from
  what the cluster offers now.

``serve delete herald`` stops the HTTP application only: the Supervisor, shards and pools are
detached and keep delivering what is queued. ``python -m launcher.builder stop`` (on a node of
the cluster, or as a Ray job) drains and stops them too.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import uuid
from collections.abc import Mapping
from typing import Any

import ray

from actors.clients import SupervisorClient
from herald.actor_names import NAMESPACE, SUPERVISOR_NAME
from herald.config import Settings, load_settings
from herald.deployment_store import DeploymentStore
from herald.errors import ConfigError
from herald.layout import check_layout, shards_in_files
from herald.open_store import open_store
from herald.webhook_secrets import WebhookSecrets
from launcher.stored_secrets import (
    browser_secret,
    dev_admin_key,
    dev_api_key,
    unsubscribe_secret,
)

log = logging.getLogger("herald.builder")
#: Herald's Serve application: the only one stop() deletes.
APP_NAME = "herald"
#: How long a stopping intake replica lets in-flight HTTP requests finish; only ``?wait``
#: long polls last longer, and their clients may ask again.
HTTP_GRACE_SECONDS = 5.0
#: How long ``queue_nodes: required`` waits for a queue node by default.
QUEUE_WAIT_SECONDS = 600.0
_ARGS = {"queue_nodes", "queue_wait_s"}


def _absolute(settings: Settings) -> Settings:
    # Actors may run on any node: a relative path would resolve against each one's cwd.
    return settings.with_overrides(data_dir=settings.data_dir.absolute())


def start_supervisor(settings: Settings) -> SupervisorClient:
    """The Supervisor: the running one, or a new one told ``settings``.

    A Supervisor already running keeps the settings it was started with: changing what the
    actors were told (shards, pools, providers) takes ``python -m launcher.builder stop`` first.
    """
    from actors.supervisor import Supervisor

    return SupervisorClient(Supervisor.options(  # type: ignore[attr-defined]
        name=SUPERVISOR_NAME, namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
    ).remote(_absolute(settings), settings.channels_configured()))


def herald_app(settings: Settings, supervisor: SupervisorClient) -> Any:
    """Wait until the Supervisor's shards and pools answer; Herald's Serve application (the
    Intake bound to their handles), for ``serve.run`` or a Serve config."""
    from serve.app import Intake

    supervisor.start().get()
    shards = supervisor.shard_handles().get()
    intake = Intake.options(  # type: ignore[attr-defined]
        num_replicas=settings.intake_replicas,
        # Serve's defaults (check every 2 s, wait up to 20 s) made even an idle stop take
        # seconds; an idle replica now goes at once and a busy one waits at most
        # HTTP_GRACE_SECONDS for its requests (a POST takes milliseconds).
        graceful_shutdown_wait_loop_s=0.1, graceful_shutdown_timeout_s=HTTP_GRACE_SECONDS,
    )
    return intake.bind(_absolute(settings), shards, supervisor)


def prepare_data_dir(settings: Settings) -> tuple[Settings, str | None]:
    """What ``herald up`` does in its own process before starting the actors, for Serve: record
    the shard count, and without ``HERALD_API_KEYS`` make (once) a dev API key and admin key;
    without ``HERALD_BROWSER_SECRET`` the browser-token secret (``HERALD_UNSUBSCRIBE_SECRET``:
    the unsubscribe-link one); the tenants' webhook secrets.
    All of it is kept in the deployment's store (``open_store``): the data dir, or with
    ``HERALD_DATABASE_URL`` the database, where every deployment on it finds the same values.
    Returns the completed settings and the dev key if one is in use. Runs where the shards
    keep their files."""
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


def wait_for_queue_nodes(timeout: float) -> None:
    """Block until the cluster offers ``herald_queue``; ConfigError after ``timeout`` s."""
    from actors.members import QUEUE_RESOURCE

    deadline = time.monotonic() + timeout
    while ray.cluster_resources().get(QUEUE_RESOURCE, 0) <= 0:
        if time.monotonic() > deadline:
            raise ConfigError(f"queue_nodes: required, but no node offers {QUEUE_RESOURCE!r} "
                              f"after {timeout:.0f} s (is a queue node up? `ray status`)")
        time.sleep(2.0)


def settings_for_serve(args: Mapping[str, Any] | None = None) -> tuple[Settings, dict[str, Any]]:
    """Settings from ``HERALD_*`` (the application's ``runtime_env.env_vars``) and herald.toml,
    and the builder's own arguments. Raises ConfigError naming what is wrong."""
    given = dict(args or {})
    unknown = sorted(set(given) - _ARGS)
    if unknown:
        raise ConfigError(f"args: unknown argument {unknown[0]!r} (known: {', '.join(sorted(_ARGS))})")
    options = {"queue_nodes": str(given.get("queue_nodes", "auto")),
               "queue_wait_s": float(given.get("queue_wait_s", QUEUE_WAIT_SECONDS))}
    if options["queue_nodes"] not in ("auto", "required"):
        raise ConfigError(f"args: queue_nodes must be auto or required (got {options['queue_nodes']!r})")
    settings = load_settings()
    if not settings.data_dir.is_absolute():
        raise ConfigError(
            f"HERALD_DATA_DIR: must be an absolute path under Ray Serve (got {str(settings.data_dir)!r}):"
            " a relative one resolves against each worker's directory, node by node")
    return settings, options


def build_app(args: dict[str, Any] | None = None) -> Any:
    """The application builder ``serve_config.yaml`` names (``launcher.builder:build_app``)."""
    from actors.members import queue_placement

    settings, options = settings_for_serve(args)
    if options["queue_nodes"] == "required":
        wait_for_queue_nodes(options["queue_wait_s"])
    unreachable = settings.capture_channels() - {c.key for c in settings.channels_configured()}
    if unreachable:  # the local capture peers are herald up's; under Serve, providers only
        log.warning("no provider configured for %s: such notifications are refused (422); "
                    "the capture peers run under `herald up` only", ", ".join(sorted(unreachable)))
    prepare = ray.remote(num_cpus=0)(prepare_data_dir).options(**queue_placement(settings))
    settings, dev_key = ray.get(prepare.remote(settings))
    if dev_key:
        where = "the database" if settings.database_url else f"{settings.data_dir} on the queue node"
        log.warning("no HERALD_API_KEYS: using the dev API key kept in %s (tenant 'dev')", where)
    return herald_app(settings, start_supervisor(settings))


# ---- stopping what Serve does not stop ----------------------------------------------------------

def stop_herald(timeout: float = 30.0) -> bool:
    """Delete Herald's Serve application (only it), then drain and stop the Supervisor, its
    shards and pools. Returns False if no Supervisor was running. Needs ``ray.init`` done."""
    from ray import serve

    try:
        serve.delete(APP_NAME)
    except Exception as exc:  # noqa: BLE001 - no Serve running: nothing to delete
        log.info("no Serve application deleted: %s", exc)
    try:
        supervisor = SupervisorClient(ray.get_actor(SUPERVISOR_NAME, namespace=NAMESPACE))
    except ValueError:
        return False
    left = supervisor.drain(timeout).get(timeout=timeout + 10)
    if left:
        log.warning("%d deliveries still in flight; their leases will expire", left)
    supervisor.shutdown().get(timeout=30)
    ray.kill(supervisor.handle, no_restart=True)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m launcher.builder",
        description="Stop a Herald deployed with `serve deploy`: its Serve application, then its "
                    "detached Supervisor, shards and channel pools (draining in-flight work).")
    parser.add_argument("command", choices=["stop"])
    parser.add_argument("--address", default="auto", help="Ray to join (default: auto)")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds in-flight deliveries may take to finish (default 30)")
    args = parser.parse_args(argv)
    ray.init(address=args.address, namespace=NAMESPACE, logging_level=logging.WARNING,
             log_to_driver=False)
    logging.getLogger("ray.serve").setLevel(logging.WARNING)  # "Deleting app …"
    try:
        found = stop_herald(args.timeout)
    finally:
        ray.shutdown()
    print("herald stopped" if found else "no Herald supervisor was running", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
