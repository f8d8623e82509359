"""Run a chaos module in private network and mount namespaces: loopback only, mounts of its own.

Inside, no packet can leave the machine whatever Herald is told to call (a fuzzed callback URL
makes it resolve names: the resolver then fails at once, nothing is sent), and a tmpfs mounted
for the full-disk scenario disappears with the namespace. Needs root and util-linux's
``unshare`` (the project's machines and CI run as root).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

FLAG = "CHAOS_NETNS"


def isolated() -> bool:
    return os.environ.get(FLAG) == "1"


def available() -> str | None:
    """None if we can isolate, else why not."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare or ip is not installed"
    if os.geteuid() != 0:
        return "creating namespaces needs root"
    probe = subprocess.run(["unshare", "--net", "--mount", "true"], capture_output=True,
                           timeout=30, check=False)
    return None if probe.returncode == 0 else f"unshare failed: {probe.stderr.decode()[:200]}"


def command(module: str, argv: list[str]) -> list[str]:
    """The command line that runs ``python -m module argv…`` isolated, loopback up."""
    return ["unshare", "--net", "--mount", "--propagation", "private", "--",
            "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
            sys.executable, "-m", module, *argv]


def run_isolated(module: str, argv: list[str], timeout: float) -> int:
    """Run ``module`` isolated in a child process; its exit status."""
    env = dict(os.environ, **{FLAG: "1"})
    return subprocess.run(command(module, argv), env=env, timeout=timeout, check=False).returncode
