"""Herald as a Ray Serve application: what ``serve deploy serve_config.yaml`` builds, and its stop.

``serve_config.yaml`` names ``launcher.builder:build_app``. Serve calls it in a build task on the
cluster, with the application's ``runtime_env``: its ``env_vars`` carry the same ``HERALD_*``
names as ``herald up`` (``herald.config.load_settings``). The builder finds or starts the
Supervisor (named ``herald-supervisor``, detached, namespace ``herald``), which finds or starts
the shards, the rate limiter and the channel pools, and returns the Intake bound to their
handles: ``launcher.deployment.start``, as ``herald up`` does.

Under Serve the data dir must be absolute: a relative one would resolve against whatever
directory each worker process runs in, node by node. What ``herald up`` keeps for the deployment
(the dev API key, the browser-token secret, the tenants' webhook secrets, the recorded shard
count: ``launcher.deployment.prepare_data_dir``) is made by a task on the node that holds the
shards (``herald_queue``, see ``actors.members.queue_placement``), in its data dir; with
``HERALD_DATABASE_URL``, in the database, where every deployment on it finds the same values.

Builder arguments (``args:`` of the application in the Serve config):

* ``queue_nodes: required`` waits up to ``queue_wait_s`` (default 600) for a node offering the
  ``herald_queue`` resource before anything starts, so that the shards never open their files
  on the head because the queue node had not joined yet. ``auto`` (the default) decides from
  what the cluster offers now.

``serve delete herald`` stops the HTTP application only: the Supervisor, shards and pools are
detached and keep delivering what is queued. ``python -m launcher.builder stop`` (on a node of
the cluster, or as a Ray job) drains and stops them too, as ``herald up``'s stop does
(``launcher.deployment.stop``).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Mapping
from typing import Any

import ray

from herald.actor_names import NAMESPACE
from herald.config import Settings, load_settings
from herald.errors import ConfigError
from jobs.ray_private import serve_http_address
from launcher import deployment

log = logging.getLogger("herald.builder")
#: How long ``queue_nodes: required`` waits for a queue node by default.
QUEUE_WAIT_SECONDS = 600.0
_ARGS = {"queue_nodes", "queue_wait_s"}


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
    prepare = ray.remote(num_cpus=0)(deployment.prepare_data_dir).options(**queue_placement(settings))
    settings, dev_key = ray.get(prepare.remote(settings))
    if dev_key:
        where = "the database" if settings.database_url else f"{settings.data_dir} on the queue node"
        log.warning("no HERALD_API_KEYS: using the dev API key kept in %s (tenant 'dev')", where)
    return deployment.start(settings).app


# ---- stopping what Serve does not stop ----------------------------------------------------------

def stop_herald(timeout: float = 30.0) -> bool:
    """Delete Herald's Serve application (only it), then drain and stop the Supervisor, its
    shards and pools. Returns False if no Supervisor was running. Needs ``ray.init`` done."""
    supervisor = deployment.running_supervisor()
    deployment.stop(supervisor, delete_app=serve_http_address() is not None, timeout=timeout)
    return supervisor is not None


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
