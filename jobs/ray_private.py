"""Every place Herald reaches into Ray's private API, each with why: the next Ray upgrade fails here.

Ray offers no public way to do these; each one was checked against Ray ``CHECKED_RAY_VERSION``,
and ``tests/unit/test_ray_private.py`` fails when the installed Ray is another one, or when a
name used here is gone. Nothing else in the project imports ``ray._private`` or a private name
of Ray (that test checks it too).

It sits in ``jobs/`` because the rollup job (``jobs.local_ray``: joining `herald up`'s Ray over
loopback) and the launcher both need it, and ``jobs/`` is the lower of the two layers. Ray is
imported in the functions only: a test session sets ``LOOPBACK_SWITCH`` before Ray is imported.
"""

from __future__ import annotations

import os
from typing import Any

#: The Ray these workarounds were last checked against (pyproject.toml pins it).
CHECKED_RAY_VERSION = "2.60.0"
#: Ray's switch for the address a node is known by (``ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR``),
#: read once when Ray is imported and inherited by every process Ray starts. Off ("0"), a node
#: is named by loopback, not by the machine's network address.
LOOPBACK_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
#: Ray's internal config knob (``RAY_`` + a name in its ``ray_config_def.h``) for how long
#: ``ray.shutdown`` waits to flush task events to the GCS; an unknown name Ray ignores silently.
SHUTDOWN_FLUSH_VARIABLE = "RAY_task_events_shutdown_flush_timeout_ms"
#: (module, name) of each private name used below: the pinned test imports every one.
PRIVATE_NAMES = (
    ("ray._private.ray_constants", "ENABLE_RAY_CLUSTER"),
    ("ray._private.ray_constants", "ENABLE_RAY_CLUSTERS_ENV_VAR"),
    ("ray._private.authentication.authentication_token_setup",
     "maybe_enable_token_auth_if_token_available"),
    ("ray.serve.context", "_get_global_client"),
    ("ray._private.worker", "_global_node"),
    ("ray._private.node", "Node"),
    ("ray._private.state", "actors"),
)


def stay_on_loopback() -> None:
    """Keep a Ray of one box on loopback, for this process and what Ray starts from it.

    Why: on Linux Ray names a node by the machine's network address
    (``services.get_node_ip_address``, also when given ``127.0.0.1``) and its daemons then talk
    over it; `herald up`'s Ray listens on loopback only. The switch is read when Ray is imported
    (often before this runs), so the constant it set is set again here.
    """
    from ray._private import ray_constants

    switch = os.environ.setdefault(LOOPBACK_SWITCH, "0")
    ray_constants.ENABLE_RAY_CLUSTER = switch.lower() not in ("0", "false")


def enable_token_auth_if_token_exists() -> None:
    """Use Ray's token authentication when this box has a token, as ``address="auto"`` does.

    Why: ``ray.init`` of a new local Ray (`herald up`) turns token auth on and makes a token; a
    process joining it at an explicit address (`herald rollup`) is never told to use it, and
    there is no public call that does.
    """
    from ray._private.authentication.authentication_token_setup import (
        maybe_enable_token_auth_if_token_available,
    )

    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def shorten_shutdown_flush() -> None:
    """Make ``ray.shutdown`` wait at most 1 s (default 5 s) to flush task events.

    Why: after a SIGTERM to the whole process group (systemd, ``docker stop``) the GCS it
    flushes to is gone, and `herald up`'s stop would wait the full default for nothing.
    """
    os.environ.setdefault(SHUTDOWN_FLUSH_VARIABLE, "1000")


def serve_http_address() -> tuple[str, int] | None:
    """Host and port of the HTTP proxies of the Serve running on the connected Ray; None if no
    Serve runs there.

    Why: ``serve.start`` on a running Serve ignores the HTTP options it is given (with a
    warning), so Herald must learn the port that counts; ``serve.status()`` does not say it,
    only the controller's client does.
    """
    from ray.serve.context import _get_global_client

    client = _get_global_client(raise_if_no_controller_running=False)
    if client is None:
        return None
    return str(client.http_config.host), int(client.http_config.port)


def local_ray_gone() -> bool:
    """Whether a process of the local Ray this process started has exited. False for a Ray
    joined, not started (this process holds none of its processes).

    Why: a SIGTERM to the whole process group reaches Ray's processes too; a stop that waited
    on a controller or an actor of that Ray would wait for ever. Only the driver's node object
    knows its processes.
    """
    from ray._private import worker

    node = worker._global_node
    return node is not None and not node.remaining_processes_alive()


def kill_local_ray() -> None:
    """SIGKILL what is left of the local Ray this process started, when it is going anyway.

    Why: ``ray.shutdown`` would give each of its processes a second of SIGTERM in turn.
    """
    from ray._private import worker

    node = worker._global_node
    if node is None:
        return
    live = [process for _, process in node.live_processes()]
    for process in live:
        process.kill()
    for process in live:
        process.wait(timeout=1)


def actor_table() -> dict[str, dict[str, Any]]:
    """The GCS actor table of the connected Ray (class name, name, state, pid of each actor).

    Why: the chaos tests kill actors by pid; the public state API needs the dashboard, which a
    test Ray runs without.
    """
    from ray._private import state

    return dict(state.actors())
