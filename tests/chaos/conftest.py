"""The isolated own-Herald run (``tests.chaos.sandbox``) starts as soon as collection has selected
one of its tests, so it runs while the other tests do; ``test_own_herald.py`` reads its tallies."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.chaos import netns
from tests.chaos.procs import KEEP_LOGS
from tests.chaos.tally import Tally

OWN_HERALD_TESTS = "test_own_herald.py"


class SandboxRun:
    """``python -m tests.chaos.sandbox`` running isolated in the background."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="herald-chaos-sandbox-"))
        self.out, self.log = self.dir / "tallies.json", self.dir / "sandbox.log"
        self.started = time.monotonic()
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                netns.command("tests.chaos.sandbox", ["--json", str(self.out)]),
                env=dict(os.environ, **{netns.FLAG: "1"}), stdout=log, stderr=subprocess.STDOUT,
                cwd=Path(__file__).resolve().parents[2])

    def tallies(self, timeout: float = 600.0) -> dict[str, Tally]:
        left = timeout - (time.monotonic() - self.started)
        try:
            status = self.process.wait(timeout=max(left, 1.0))
        except subprocess.TimeoutExpired:
            self.stop()
            pytest.fail(f"the sandbox run took over {timeout:.0f} s:\n{self.tail()}")
        if status != 0 or not self.out.is_file():
            pytest.fail(f"the sandbox run failed ({status}):\n{self.tail()}")
        return {t["name"]: Tally.from_dict(t) for t in json.loads(self.out.read_text())}

    def tail(self, lines: int = 60) -> str:
        text = self.log.read_text(errors="replace").splitlines()
        return "\n".join([line for line in text if not line.startswith('{"asctime"')][-lines:])

    def stop(self) -> None:
        """SIGTERM: the sandbox unwinds and kills the Herald it started."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()


RUN = pytest.StashKey[SandboxRun | None]()


@pytest.hookimpl(trylast=True)  # after -k/-m deselection: start only if its tests will run
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wanted = any(item.path.name == OWN_HERALD_TESTS for item in items)
    config.stash[RUN] = SandboxRun() if wanted and netns.available() is None else None


def pytest_unconfigure(config: pytest.Config) -> None:
    run = config.stash.get(RUN, None)
    if run is not None:
        run.stop()
        if os.environ.get(KEEP_LOGS) != "1":
            shutil.rmtree(run.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def sandbox_tallies(pytestconfig: pytest.Config) -> dict[str, Tally]:
    run = pytestconfig.stash.get(RUN, None)
    if run is None:
        pytest.skip(f"cannot isolate the sandbox: {netns.available()}")
    return run.tallies()
