"""Ray's private API, pinned: the workarounds in ``jobs/ray_private.py`` were checked against one
Ray; another Ray, or a private name gone, fails here, and nowhere else in the project uses one.

After a Ray upgrade: read each function of ``jobs/ray_private.py`` against the new Ray (is the
workaround still needed, does it still work), then set ``CHECKED_RAY_VERSION``.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import mmap
import os
import subprocess
import sys
from pathlib import Path

import pytest
import ray

from jobs import ray_private

ROOT = Path(__file__).resolve().parents[2]
#: What ships and runs Herald (tests may lean on Ray's internals to check it, and fail themselves).
PRODUCT = ("herald", "actors", "serve", "capture", "launcher", "jobs", "analytics", "bench")


def test_ray_is_the_one_the_workarounds_were_checked_against() -> None:
    assert ray.__version__ == ray_private.CHECKED_RAY_VERSION, (
        f"Ray is {ray.__version__}; jobs/ray_private.py was checked against "
        f"{ray_private.CHECKED_RAY_VERSION}: check each workaround there, then update it")


@pytest.mark.parametrize(("module", "name"), ray_private.PRIVATE_NAMES,
                         ids=[f"{m}.{n}" for m, n in ray_private.PRIVATE_NAMES])
def test_each_private_name_still_exists(module: str, name: str) -> None:
    assert hasattr(importlib.import_module(module), name), f"{module}.{name} is gone"


def test_the_private_calls_take_what_we_pass() -> None:
    from ray._private.authentication.authentication_token_setup import (
        maybe_enable_token_auth_if_token_available,
    )
    from ray._private.node import Node
    from ray.serve._private.client import ServeControllerClient
    from ray.serve.context import _get_global_client

    assert "raise_if_no_controller_running" in inspect.signature(_get_global_client).parameters
    assert isinstance(ServeControllerClient.http_config, property)
    assert "warn_if_disabled" in inspect.signature(
        maybe_enable_token_auth_if_token_available).parameters
    assert callable(Node.remaining_processes_alive) and callable(Node.live_processes)


def test_the_loopback_switch_is_rays_and_keeps_a_node_on_loopback() -> None:
    from ray._private import ray_constants

    assert ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR == ray_private.LOOPBACK_SWITCH
    # A process without the switch (a user's shell), Ray imported first: the node is named by
    # loopback once stay_on_loopback ran, as `herald up` and `herald rollup` need.
    script = ("import ray\nfrom ray._private import services\n"
              "from jobs.ray_private import stay_on_loopback\n"
              "stay_on_loopback()\nprint(services.get_node_ip_address())\n")
    env = {k: v for k, v in os.environ.items() if k != ray_private.LOOPBACK_SWITCH}
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=True)
    assert done.stdout.strip() == "127.0.0.1"


def test_the_shutdown_flush_knob_is_one_rays_core_reads() -> None:
    # An unknown RAY_ name is ignored without a word: look for it in the core library.
    name = ray_private.SHUTDOWN_FLUSH_VARIABLE.removeprefix("RAY_").encode()
    library = Path(ray.__file__).parent / "_raylet.so"
    with library.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        assert data.find(name) >= 0, f"{name.decode()} is not a config of this Ray's core"


def _private_uses(path: Path) -> list[str]:
    """Ray's private names that ``path`` reaches: a ``_`` part in an import or attribute chain."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        dotted: list[str] = []
        if isinstance(node, ast.Import):
            dotted = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            dotted = [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Attribute):
            parts, inner = [node.attr], node.value
            while isinstance(inner, ast.Attribute):
                parts.append(inner.attr)
                inner = inner.value
            if isinstance(inner, ast.Name):
                dotted = [".".join([inner.id, *reversed(parts)])]
        found += [name for name in dotted if name.split(".")[0] == "ray" and any(
            part.startswith("_") and not part.endswith("__") for part in name.split("."))]
    return found


def test_no_other_module_reaches_into_rays_private_api() -> None:
    home = Path(ray_private.__file__)
    assert _private_uses(home), "the check finds nothing even where the private names are"
    elsewhere = {path.relative_to(ROOT).as_posix(): uses
                 for place in PRODUCT for path in sorted((ROOT / place).rglob("*.py"))
                 if path != home and (uses := _private_uses(path))}
    assert not elsewhere, f"Ray's private API outside jobs/ray_private.py: {elsewhere}"
