"""``herald up`` joining a Ray where Serve already runs prints where Serve really listens.

Serve keeps the HTTP options it was started with (``serve.start`` on a running Serve ignores
new ones with a warning), so ``HERALD_PORT`` does not count there. The test starts a head of its
own, starts Serve on it on one port (``serve start``), runs ``herald up`` with
``HERALD_RAY_ADDRESS`` set to that head and ``HERALD_PORT`` set to another port, and checks that
the address printed is Serve's, that Herald answers there, and that SIGTERM stops it cleanly.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cluster.ray_nodes import BIN, RAY, SERVE, RayNode, free_ports, start_head
from tests.support.payloads import email_payload

HERALD = shutil.which("herald", path=str(BIN))

pytestmark = [pytest.mark.cluster,
              pytest.mark.skipif(RAY is None or SERVE is None or HERALD is None,
                                 reason="the ray/serve/herald commands are absent")]


@pytest.fixture(scope="module")
def head() -> Iterator[RayNode]:
    temp_dir = Path(tempfile.mkdtemp(prefix="hjs", dir="/tmp"))  # short: unix socket paths
    node = None
    try:
        node = start_head(temp_dir, num_cpus=1, ip="127.0.0.20")
        yield node
    finally:
        if node is not None:
            node.kill()
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_herald_up_prints_the_port_of_the_serve_already_running(head: RayNode,
                                                                 tmp_path: Path) -> None:
    started = time.monotonic()
    serve_port, herald_port, browser_port = free_ports(3)
    serving = head.run(str(SERVE), "start", "-a", head.gcs, "--http-host", "127.0.0.1",
                       "--http-port", str(serve_port), "--proxy-location", "HeadOnly", timeout=240)
    assert serving.returncode == 0, serving.stdout + serving.stderr
    env = {**head.env, "HERALD_RAY_ADDRESS": head.gcs, "HERALD_PORT": str(herald_port),
           "HERALD_BROWSER_PORT": str(browser_port), "HERALD_DATA_DIR": str(tmp_path / "data"),
           "HERALD_SHARDS": "1", "HERALD_POOLS": "email=1,sms=1,browser=1,fax=1,webhook=1",
           "HERALD_ROLLUP_SECONDS": "0", "HERALD_CAPTURE": "email"}
    herald = subprocess.Popen([str(HERALD), "up"], env=env, cwd=tmp_path, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              start_new_session=True)
    lines: list[str] = []
    up = threading.Event()

    def read() -> None:
        assert herald.stdout is not None
        for line in herald.stdout:
            lines.append(line.rstrip())
            if line.startswith("Ctrl-C to stop"):  # the last line of the start
                up.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert up.wait(180), "herald up did not come up:\n" + "\n".join(lines[-40:])
        printed = next(line for line in lines if line.startswith("Herald is up on"))
        assert f"http://127.0.0.1:{serve_port} " in printed, printed
        assert any(f"HTTP on port {serve_port}" in line for line in lines), lines
        key = next(re.sub(r".*: ", "", line) for line in lines if line.startswith("dev API key"))
        base = f"http://127.0.0.1:{serve_port}"
        assert httpx.get(f"{base}/healthz", timeout=10).status_code == 200
        answer = httpx.post(f"{base}/v1/notifications", json=email_payload(), timeout=30,
                            headers={"Authorization": f"Bearer {key}"})
        assert answer.status_code == 202, answer.text
        with pytest.raises(httpx.ConnectError):  # nothing on the port Herald was told
            httpx.get(f"http://127.0.0.1:{herald_port}/healthz", timeout=2)
        herald.send_signal(signal.SIGTERM)
        assert herald.wait(90) == 0, "\n".join(lines[-40:])
    finally:
        if herald.poll() is None:
            os.killpg(herald.pid, signal.SIGKILL)
            herald.wait(10)
        reader.join(5)
    shown = [line for line in lines if "Serve" in line or line.startswith(("Herald is up", "stop"))]
    print("\n" + "\n".join(shown))
    print(f"herald up joined a running Serve and stopped in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q", "-s", "-p", "no:cacheprovider"]))
