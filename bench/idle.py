"""`python -m bench.idle`: the memory of ``herald up`` at idle — every process it starts, summed.

Starts ``.venv/bin/herald up`` as ``make run`` does (no ``HERALD_*`` but free ports and a temp
data dir) in a session of its own, waits for ``/healthz`` and ``--settle`` seconds more, sums
RSS and PSS (``/proc/<pid>/smaps_rollup``) over that session, its descendants and anything
naming its Ray session (``bench.procinfo.family_of``; other Rays on the machine never count),
then stops it with SIGTERM. ``--env K=V`` adds variables; ``--sweep`` measures each candidate
knob in ``CANDIDATES`` alone on top of the defaults, then all together, and prints the table.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.procinfo import ProcInfo, family_of, load_average, mib, pid_listening_on, stop_session
from capture.net import free_port

HERALD = Path(sys.executable).with_name("herald")
TARGET_MIB = 1024.0

#: (name, variables): each measured alone on top of ``make run``'s defaults by ``--sweep``.
CANDIDATES: tuple[tuple[str, dict[str, str]], ...] = (
    ("no Ray dashboard", {"HERALD_DASHBOARD_PORT": "0"}),
    ("1 shard", {"HERALD_SHARDS": "1"}),
    ("1 email actor", {"HERALD_POOLS": "email=1,sms=1,browser=1,fax=1,webhook=1"}),
    ("glibc 2 malloc arenas", {"MALLOC_ARENA_MAX": "2"}),
    ("no Ray metrics collection", {"RAY_enable_metrics_collection": "0"}),
    ("no worker prestart", {"RAY_enable_worker_prestart": "0",
                            "RAY_prestart_worker_first_driver": "0",
                            "RAY_num_prestart_python_workers": "0"}),
    ("Ray sees 1 CPU", {"RAY_OVERRIDE_RESOURCES": '{"CPU": 1}'}),
    ("no Serve GC freeze", {"RAY_SERVE_FREEZE_GC_ON_STARTUP": "0"}),
)


@dataclass(frozen=True)
class RoleTotal:
    """The processes of one role: how many, and their memory in MiB."""

    role: str
    count: int
    rss_mib: float
    pss_mib: float
    uss_mib: float


@dataclass(frozen=True)
class IdleResult:
    """What an idle ``herald up`` holds, with the variables it ran with."""

    env: Mapping[str, str]
    processes: int
    rss_mib: float
    pss_mib: float
    uss_mib: float
    roles: tuple[RoleTotal, ...]
    top: tuple[ProcInfo, ...]
    start_seconds: float
    load: str
    #: Ports still listened on after the stop (a process left behind), empty if none.
    held_ports: tuple[int, ...] = field(default=())

    @property
    def under_target(self) -> bool:
        return self.pss_mib < TARGET_MIB

    def describe(self, top: int = 12) -> str:
        lines = [f"herald up at idle: {self.processes} processes, RSS {self.rss_mib:,.0f} MiB, "
                 f"PSS {self.pss_mib:,.0f} MiB, USS {self.uss_mib:,.0f} MiB (target PSS < "
                 f"{TARGET_MIB:,.0f} MiB), started in {self.start_seconds:.1f} s, load {self.load}"]
        if self.env:
            lines.append("  env: " + " ".join(f"{k}={v}" for k, v in self.env.items()))
        lines.append("  by role:                  n   RSS MiB  PSS MiB  USS MiB")
        lines += [f"    {r.role:22s} {r.count:3d} {r.rss_mib:9,.0f} {r.pss_mib:8,.0f} {r.uss_mib:8,.0f}"
                  for r in self.roles]
        lines.append(f"  top {top} processes:")
        lines += [f"    {p.pid:7d} {p.role:22s} RSS {mib(p.rss_kib):6,.0f}  PSS {mib(p.pss_kib):6,.0f}  "
                  f"{p.cmdline[:60]}" for p in self.top[:top]]
        if self.held_ports:
            lines.append(f"  still listening after the stop: {list(self.held_ports)}")
        return "\n".join(lines)


def by_role(processes: list[ProcInfo]) -> tuple[RoleTotal, ...]:
    """Per role: count, RSS and PSS; the biggest PSS first."""
    grouped: dict[str, list[ProcInfo]] = defaultdict(list)
    for proc in processes:
        grouped[proc.role].append(proc)
    totals = [RoleTotal(role, len(procs), mib(sum(p.rss_kib for p in procs)),
                        mib(sum(p.pss_kib for p in procs)), mib(sum(p.uss_kib for p in procs)))
              for role, procs in grouped.items()]
    return tuple(sorted(totals, key=lambda t: t.pss_mib, reverse=True))


def make_run_env(extra: Mapping[str, str], data_dir: Path) -> tuple[dict[str, str], list[int]]:
    """``make run``'s environment (ours without ``HERALD_*``), free ports, a temp data dir, and
    ``extra``; the ports Herald listens on."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    ports = {"HERALD_PORT": free_port(), "HERALD_BROWSER_PORT": free_port(),
             "HERALD_DASHBOARD_PORT": free_port()}
    env.update({k: str(v) for k, v in ports.items()})
    env["HERALD_DATA_DIR"] = str(data_dir)
    env.update(extra)
    listened = [int(env[k]) for k in ports if env[k] != "0"]
    return env, listened


def _wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"herald up exited with {process.returncode} before /healthz answered")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def measure_idle(extra: Mapping[str, str] | None = None, settle: float = 20.0,
                 timeout: float = 240.0, log_dir: Path | None = None) -> IdleResult:
    """Start ``herald up`` with ``extra`` variables, let it settle, measure, stop it."""
    extra = dict(extra or {})
    with tempfile.TemporaryDirectory(prefix="herald-idle-") as tmp:
        env, ports = make_run_env(extra, Path(tmp) / "data")
        log_path = (log_dir or Path(tmp)) / f"herald-up-{os.getpid()}-{time.time_ns()}.log"
        started = time.monotonic()
        with open(log_path, "wb") as log:
            process = subprocess.Popen([str(HERALD), "up"], env=env, cwd=tmp, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        try:
            try:
                _wait_healthy(f"http://127.0.0.1:{env['HERALD_PORT']}/healthz", process, timeout)
            except (RuntimeError, TimeoutError) as exc:
                tail = log_path.read_text(errors="replace").splitlines()[-5:]
                raise RuntimeError(f"{exc}; its last lines:\n" + "\n".join(tail)) from None
            start_seconds = time.monotonic() - started
            time.sleep(settle)
            processes = family_of(process.pid)
            load = load_average()
        finally:
            stopped = stop_session(process.pid)
            process.wait(10)
        time.sleep(1)
        held = tuple(port for port in ports if pid_listening_on(port) is not None)
        if not stopped:
            print(f"warning: herald up did not stop by itself; see {log_path}", file=sys.stderr)
    return IdleResult(
        env=extra, processes=len(processes), rss_mib=mib(sum(p.rss_kib for p in processes)),
        pss_mib=mib(sum(p.pss_kib for p in processes)),
        uss_mib=mib(sum(p.uss_kib for p in processes)), roles=by_role(processes),
        top=tuple(processes), start_seconds=start_seconds, load=load, held_ports=held)


def sweep(settle: float, base: Mapping[str, str]) -> list[tuple[str, IdleResult]]:
    """The defaults, each candidate alone, then all candidates together."""
    runs: list[tuple[str, dict[str, str]]] = [("make run defaults", dict(base))]
    runs += [(name, {**base, **env}) for name, env in CANDIDATES]
    combined: dict[str, str] = dict(base)
    for _, env in CANDIDATES:
        combined.update(env)
    runs.append(("all of the above", combined))
    results = []
    for name, env in runs:
        result = measure_idle(env, settle)
        print(f"{name:28s} {result.processes:3d} procs  RSS {result.rss_mib:7,.0f} MiB  "
              f"PSS {result.pss_mib:7,.0f} MiB  USS {result.uss_mib:7,.0f} MiB  load {result.load}",
              flush=True)
        results.append((name, result))
    return results


def sweep_table(results: list[tuple[str, IdleResult]]) -> str:
    """Markdown: option, processes, RSS, PSS, and PSS saved against the first row."""
    first = results[0][1].pss_mib
    rows = ["| option | processes | RSS MiB | PSS MiB | USS MiB | PSS vs defaults | load |",
            "|---|---|---|---|---|---|---|"]
    for name, r in results:
        env = " ".join(f"`{k}={v}`" for k, v in r.env.items()) or "–"
        rows.append(f"| {name} ({env}) | {r.processes} | {r.rss_mib:,.0f} | {r.pss_mib:,.0f} | "
                    f"{r.uss_mib:,.0f} | {r.pss_mib - first:+,.0f} | {r.load} |")
    return "\n".join(rows)


def _parse_env(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--env wants NAME=VALUE (got {pair!r})")
        env[name] = value
    return env


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settle", type=float, default=20.0, help="seconds after /healthz")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--sweep", action="store_true", help="measure every knob in CANDIDATES")
    parser.add_argument("--out", type=Path, help="append the result (markdown) to this file")
    args = parser.parse_args(argv)
    base = _parse_env(args.env)
    if args.sweep:
        text = sweep_table(sweep(args.settle, base))
    else:
        text = measure_idle(base, args.settle).describe()
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("a") as out:
            out.write(text + "\n\n")


if __name__ == "__main__":
    main()
