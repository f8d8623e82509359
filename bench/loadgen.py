"""A closed-loop HTTP load generator in a process of its own: ``wrk`` if installed, else aiohttp.

Many keep-alive connections POST the same body for a fixed time. ``wrk`` (Debian's ``wrk``)
costs the least CPU per request, which matters on a 2-core box where the client shares the cores
with what it measures; the fallback is ``python -m bench.loadgen`` with one uvloop and N
connections, which spends more of them. ``LoadResult`` is the same either way.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}
_REQUESTS = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m),", re.MULTILINE)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s*(\d+)")
_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_PERCENTILE = re.compile(r"^\s*(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s|m)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class LoadResult:
    """One closed-loop run: what came back and how fast."""

    tool: str
    requests: int
    non_2xx: int
    errors: int
    seconds: float
    p50_ms: float | None = None
    p99_ms: float | None = None

    @property
    def ok_per_s(self) -> float:
        """2xx answers per second: a refused request is not throughput."""
        return (self.requests - self.non_2xx) / self.seconds if self.seconds else 0.0


def parse_wrk(output: str) -> LoadResult:
    """``wrk --latency``'s report → LoadResult (ValueError if it holds no request count)."""
    found = _REQUESTS.search(output)
    if not found:
        raise ValueError(f"no request count in wrk's output:\n{output}")
    seconds = float(found.group(2)) * _UNITS[found.group(3)] / 1e3
    non_2xx = _NON_2XX.search(output)
    socket = _SOCKET.search(output)
    percentiles = {m.group(1): float(m.group(2)) * _UNITS[m.group(3)]
                   for m in _PERCENTILE.finditer(output)}
    return LoadResult(
        tool="wrk", requests=int(found.group(1)), non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        errors=sum(int(g) for g in socket.groups()) if socket else 0, seconds=seconds,
        p50_ms=percentiles.get("50"), p99_ms=percentiles.get("99"))


def wrk_script(body: bytes, headers: Mapping[str, str]) -> str:
    """The Lua that makes wrk POST ``body`` with ``headers``."""
    lines = ['wrk.method = "POST"', f"wrk.body = {_lua_string(body.decode())}"]
    lines += [f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in headers.items()]
    return "\n".join(lines) + "\n"


def _lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def run_load(url: str, body: bytes, headers: Mapping[str, str], connections: int = 64,
             duration: float = 10.0, tool: str = "auto") -> LoadResult:
    """POST ``body`` to ``url`` from ``connections`` keep-alive connections for ``duration`` s."""
    wrk = shutil.which("wrk")
    if tool == "wrk" or (tool == "auto" and wrk):
        if not wrk:
            raise FileNotFoundError("wrk is not installed (apt-get install wrk)")
        with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
            script.write(wrk_script(body, headers))
            script.flush()
            done = subprocess.run(
                [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency",
                 "--timeout", "10s", "-s", script.name, url],
                capture_output=True, text=True, timeout=duration + 60, check=True)
        return parse_wrk(done.stdout)
    with tempfile.NamedTemporaryFile("wb", suffix=".json") as spec:
        spec.write(json.dumps({"url": url, "body": body.decode(), "headers": dict(headers),
                               "connections": connections, "duration": duration}).encode())
        spec.flush()
        done = subprocess.run([sys.executable, "-m", "bench.loadgen", spec.name],
                              capture_output=True, text=True, timeout=duration + 60, check=True)
    return LoadResult(**json.loads(done.stdout.strip().splitlines()[-1]))


async def _drive(url: str, body: bytes, headers: Mapping[str, str], connections: int,
                 duration: float) -> LoadResult:
    import aiohttp

    ok = bad = errors = 0
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector, headers=dict(headers)) as session:
        start = time.monotonic()
        deadline = start + duration

        async def worker() -> None:
            nonlocal ok, bad, errors
            while time.monotonic() < deadline:
                sent = time.monotonic()
                try:
                    async with session.post(url, data=body) as response:
                        await response.read()
                        ok += 200 <= response.status < 300
                        bad += not 200 <= response.status < 300
                except aiohttp.ClientError:
                    errors += 1
                latencies.append(time.monotonic() - sent)

        await asyncio.gather(*(worker() for _ in range(connections)))
        seconds = time.monotonic() - start
    latencies.sort()
    pick = (lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1e3) \
        if latencies else (lambda q: None)
    return LoadResult(tool="aiohttp", requests=ok + bad, non_2xx=bad, errors=errors,
                      seconds=seconds, p50_ms=pick(0.5), p99_ms=pick(0.99))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="the aiohttp fallback of bench.loadgen.run_load")
    parser.add_argument("spec", type=Path, help="JSON: url, body, headers, connections, duration")
    spec = json.loads(parser.parse_args(argv).spec.read_text())
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(_drive(spec["url"], spec["body"].encode(), spec["headers"],
                                spec["connections"], spec["duration"]))
    print(json.dumps(asdict(result)))


if __name__ == "__main__":
    main()
