"""`python -m bench.single_post --sweep`: each Ray Serve option beside the no-op, a fresh Ray each.

Serve reads its ``RAY_SERVE_*`` knobs when its modules are imported, in every process, so each
candidate runs ``python -m bench.single_post --json`` in a new process (and session) with its
variables set. After each one exits, the sweep checks that nothing of it is left: no process in
its session, no listener on the ports it used.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.procinfo import family_of, load_average, pid_listening_on

#: (name, variables, extra arguments of ``bench.single_post``).
CANDIDATES: tuple[tuple[str, dict[str, str], tuple[str, ...]], ...] = (
    ("defaults", {}, ()),
    ("user code on the replica's main loop", {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0"}, ()),
    ("router on the main loop", {"RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0"}, ()),
    ("both on the main loop", {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
                               "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0"}, ()),
    ("gRPC proxy→replica", {"RAY_SERVE_USE_GRPC_BY_DEFAULT": "1"}, ()),
    ("no sync threadpool", {"RAY_SERVE_RUN_SYNC_IN_THREADPOOL": "0"}, ()),
    ("no Ray metrics", {"RAY_enable_metrics_collection": "0"}, ()),
    ("proxy GC threshold 10000", {"RAY_SERVE_PROXY_GC_THRESHOLD": "10000"}, ()),
    ("queue-length probe deadline 1 s", {"RAY_SERVE_QUEUE_LENGTH_RESPONSE_DEADLINE_S": "1"}, ()),
    ("2 replicas each", {}, ("--replicas", "2")),
    ("intake max_ongoing_requests=100", {}, ("--max-ongoing", "100")),
    ("no uvloop (control)", {"RAY_USE_UVLOOP": "0"}, ()),
    ("direct ingress", {"RAY_SERVE_ENABLE_DIRECT_INGRESS": "1"}, ("--direct",)),
    ("throughput-optimized", {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}, ("--direct",)),
)


@dataclass(frozen=True)
class KnobResult:
    """One candidate's figures, or why there are none, and what it left behind."""

    name: str
    env: dict[str, str]
    args: tuple[str, ...]
    herald_per_s: float | None
    noop_per_s: float | None
    load: str
    leftovers: str = ""
    error: str = ""
    #: Straight to the replica ports (``--direct``): Herald's and the no-op's.
    direct: tuple[float, float] | None = None

    @property
    def ratio(self) -> float | None:
        if self.herald_per_s is None or not self.noop_per_s:
            return None
        return self.herald_per_s / self.noop_per_s


def run_candidate(name: str, env: dict[str, str], args: tuple[str, ...], seconds: float,
                  rounds: int, connections: int) -> KnobResult:
    command = [sys.executable, "-m", "bench.single_post", "--json", "--seconds", str(seconds),
               "--rounds", str(rounds), "--connections", str(connections), *args]
    for key, value in env.items():
        command += ["--env", f"{key}={value}"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True, env={**os.environ, **env})
    stdout, stderr = process.communicate(timeout=1800)
    time.sleep(2)  # what a stop leaves is still there two seconds after the driver exits
    left = [f"{p.pid} {p.role}" for p in family_of(process.pid)]
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if process.returncode or not lines:
        tail = (stderr.strip().splitlines() or ["no output"])[-1]
        return KnobResult(name, env, args, None, None, load_average(), ", ".join(left), tail[:200])
    data = json.loads(lines[-1])
    held = [str(port) for port in data["ports"] if pid_listening_on(port) is not None]
    leftovers = ", ".join(left + [f"port {port} still listened on" for port in held])
    per_s = data["per_s"]
    direct = (per_s["Herald direct"], per_s["no-op direct"]) if "Herald direct" in per_s else None
    return KnobResult(name, env, args, per_s["Herald"], per_s["no-op"], data["load"], leftovers,
                      direct=direct)


def table(results: list[KnobResult], header: str) -> str:
    rows = [header, "", "| option | Herald req/s | no-op req/s | ratio | direct to the replica: "
            "Herald / no-op / ratio | load | left after stop |", "|---|---|---|---|---|---|---|"]
    for r in results:
        knobs = " ".join([f"`{k}={v}`" for k, v in r.env.items()] + [f"`{a}`" for a in r.args])
        if r.error:
            rows.append(f"| {r.name} ({knobs}) | – | – | – | – | {r.load} | failed: {r.error} |")
            continue
        direct = (f"{r.direct[0]:,.0f} / {r.direct[1]:,.0f} / {r.direct[0] / r.direct[1]:.2f}×"
                  if r.direct else "–")
        rows.append(f"| {r.name} ({knobs or 'defaults'}) | {r.herald_per_s:,.0f} | "
                    f"{r.noop_per_s:,.0f} | {r.ratio:.2f}× | {direct} | {r.load} | "
                    f"{r.leftovers or 'nothing'} |")
    return "\n".join(rows)


def run_sweep(seconds: float, rounds: int, connections: int, out: Path | None) -> list[KnobResult]:
    header = (f"Single POSTs: {connections} keep-alive connections (wrk), {rounds} alternating "
              f"rounds of {seconds:.0f} s per endpoint, medians; {os.cpu_count()} cores")
    results = []
    for name, env, args in CANDIDATES:
        result = run_candidate(name, env, args, seconds, rounds, connections)
        results.append(result)
        print(f"{name:44s} Herald {result.herald_per_s or 0:7,.0f}/s  no-op "
              f"{result.noop_per_s or 0:7,.0f}/s  ratio {result.ratio or 0:.2f}  load {result.load}"
              f"{'  ' + result.error if result.error else ''}", flush=True)
        if out:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(table(results, header) + "\n")
    print(table(results, header))
    return results
