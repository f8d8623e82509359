"""`python -m bench.single_post`: single-notification POSTs/s, Herald against a no-op Serve endpoint.

One run starts a whole Herald (its own local Ray, no dashboard, every channel pool at 0 so the
notifications wait durably and nothing else takes the cores), then deploys on the same Ray Serve
a no-op FastAPI app (``NoopIntake``: one POST route that reads the body and answers a small 202
JSON) with as many replicas as Herald's intake, under ``/noop``. The same closed-loop load
(``bench.loadgen``: ``wrk`` with N keep-alive connections, in a process of its own) drives each
for the same time, alternating, ``--rounds`` times; the figures are medians. The target is
Herald ≥ 0.8× the no-op.

``--env NAME=VALUE`` sets a variable before Ray starts (Ray Serve reads its knobs at import, in
each process), ``--direct`` drives the replicas' own ports (``RAY_SERVE_ENABLE_DIRECT_INGRESS``),
``--sweep`` runs every candidate in ``bench.serve_knobs.CANDIDATES`` in a fresh process each.
"""

# No ``from __future__ import annotations``: FastAPI reads the route's annotations in the replica,
# where a class pickled by value (``python -m``) keeps only the names its code uses.
import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from ray import serve

from bench.loadgen import LoadResult, run_load
from bench.procinfo import listening_ports, load_average, start_retrying

KEY = "bench-key-" + "s" * 20
TARGET_RATIO = 0.8
NOOP_APP, NOOP_PREFIX = "noop", "/noop"
#: The figures' names: through Serve's proxy, and straight to the replica's own port.
HERALD, NOOP, HERALD_DIRECT, NOOP_DIRECT = "Herald", "no-op", "Herald direct", "no-op direct"
PATH = "/v1/notifications"
#: The one notification every POST carries: an email, as a SaaS backend sends them.
NOTIFICATION: dict[str, Any] = {
    "type": "BN_EMAIL",
    "user": {"uid": 76143021, "email": "bob@example.com", "name": {"first": "Bob", "last": "Smith"}},
    "requester": {"type": "WEB_APP_BACKEND", "service": "bench", "asap": "yes"},
    "details": {"subject": "Bench", "content": "Hi {user.name.first}: {message|sub(0,40)|'...'}",
                "vars": {"message": "x" * 60}},
}

noop_api = FastAPI()


@serve.deployment(
    ray_actor_options={"num_cpus": 0}, max_ongoing_requests=1000,
    logging_config={"log_level": "WARNING", "enable_access_log": False},
)
@serve.ingress(noop_api)
class NoopIntake:
    """What any FastAPI intake on Serve costs: read the body, answer 202 with a small JSON."""

    @noop_api.post(PATH)
    async def create(self, request: Request) -> Response:
        await request.body()
        return Response(b'{"details":{"tag":"00000000-0000","pos":1}}', status_code=202,
                        media_type="application/json")


@dataclass(frozen=True)
class SinglePostResult:
    """2xx answers per second (medians over rounds): Herald's and the no-op's through Serve's
    proxy, and with ``direct`` also each one's replica port, all measured in the same run."""

    rounds: Mapping[str, tuple[LoadResult, ...]]
    connections: int
    seconds: float
    replicas: int
    load: str
    env: Mapping[str, str] = field(default_factory=dict)
    #: Ports Herald's Ray listened on, for a check that nothing holds them after the stop.
    ports: tuple[int, ...] = ()

    def per_s(self, name: str) -> float | None:
        rounds = self.rounds.get(name)
        return statistics.median(r.ok_per_s for r in rounds) if rounds else None

    @property
    def herald_per_s(self) -> float:
        return self.per_s(HERALD) or 0.0

    @property
    def noop_per_s(self) -> float:
        return self.per_s(NOOP) or 0.0

    @property
    def ratio(self) -> float:
        return self.herald_per_s / self.noop_per_s if self.noop_per_s else 0.0

    def describe(self) -> str:
        env = " ".join(f"{k}={v}" for k, v in self.env.items()) or "defaults"
        lines = [f"single POSTs, {self.connections} connections × {self.seconds:.0f} s, "
                 f"{self.replicas} replica(s), {env}, load {self.load}"]
        for name, rounds in self.rounds.items():
            each = ", ".join(f"{r.ok_per_s:,.0f}" for r in rounds)
            p99 = statistics.median(r.p99_ms or 0 for r in rounds)
            bad = sum(r.non_2xx + r.errors for r in rounds)
            lines.append(f"  {name:13s} {self.per_s(name) or 0:8,.0f}/s  (rounds {each}; "
                         f"p99 {p99:.0f} ms; non-2xx/errors {bad})")
        lines.append(f"  ratio         {self.ratio:.2f}× through the proxy (target ≥ {TARGET_RATIO}×)")
        direct_herald, direct_noop = self.per_s(HERALD_DIRECT), self.per_s(NOOP_DIRECT)
        if direct_herald and direct_noop:
            lines.append(f"  ratio         {direct_herald / direct_noop:.2f}× to the replica ports")
        return "\n".join(lines)


def _direct_url(app: str, path: str) -> str:
    """The URL of ``app``'s (first) replica's own HTTP server, under direct ingress."""
    from bench.procinfo import family_of

    replicas = [p for p in family_of(os.getpid()) if f"ServeReplica:{app}:" in p.cmdline]
    for replica in replicas:
        for port in listening_ports(replica.pid):
            if 30000 <= port <= 31000:  # RAY_SERVE_DIRECT_INGRESS_{MIN,MAX}_HTTP_PORT
                return f"http://127.0.0.1:{port}{path}"
    raise RuntimeError(f"no direct-ingress port for {app} (is RAY_SERVE_ENABLE_DIRECT_INGRESS=1?)")


def _redeploy(herald: Any, options: Mapping[str, Any]) -> None:
    """Herald's intake again with other deployment options (e.g. ``max_ongoing_requests``)."""

    from launcher.deployment import APP_NAME
    from serve.app import Intake

    shards = herald.supervisor.shard_handles().get()
    intake = Intake.options(**options)  # type: ignore[attr-defined]
    serve.run(intake.bind(herald.settings, shards, herald.supervisor), name=APP_NAME,
              route_prefix="/")


def run_single_post(seconds: float = 10.0, rounds: int = 3, connections: int = 64,
                    replicas: int = 1, direct: bool = False, warmup: float = 3.0,
                    intake_options: Mapping[str, Any] | None = None,
                    env: Mapping[str, str] | None = None) -> SinglePostResult:
    """Start Herald and the no-op on one Serve, measure both alternately, stop everything.

    ``env`` is only recorded: Serve reads its variables at import, so they must be in the
    environment before this process imports Ray (``main`` re-executes itself for ``--env``).
    """
    import httpx

    from capture.net import free_port
    from herald.config import Settings
    from launcher.runtime import Herald

    logging.getLogger("httpx").setLevel(logging.WARNING)  # Ray's logging config makes it INFO
    with tempfile.TemporaryDirectory(prefix="herald-single-") as data_dir:
        herald = start_retrying(lambda: Herald(Settings(
            port=free_port(), data_dir=Path(data_dir), api_keys={KEY: "bench"},
            browser_port=free_port(), dashboard_port=0, intake_replicas=replicas,
            pools={"email": 0, "sms": 0, "fax": 0, "browser": 0, "webhook": 0},
            pool_max={})).start())
        settings = herald.settings
        try:
            if intake_options:
                _redeploy(herald, {"num_replicas": replicas, **intake_options})
            serve.run(NoopIntake.options(num_replicas=replicas).bind(),  # type: ignore[attr-defined]
                      name=NOOP_APP, route_prefix=NOOP_PREFIX)
            base = f"http://127.0.0.1:{settings.port}"
            urls = {HERALD: base + PATH, NOOP: base + NOOP_PREFIX + PATH}
            if direct:  # a replica's own server still routes by its application's prefix
                urls[HERALD_DIRECT] = _direct_url("herald", PATH)
                urls[NOOP_DIRECT] = _direct_url(NOOP_APP, NOOP_PREFIX + PATH)
            body = json.dumps(NOTIFICATION).encode()
            headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
            for name, url in urls.items():  # each answers 202 before anything is timed
                answer = httpx.post(url, content=body, headers=headers, timeout=30)
                if answer.status_code != 202:
                    raise RuntimeError(f"{name}: {answer.status_code} {answer.text[:200]}")
                run_load(url, body, headers, connections, warmup)
            results: dict[str, list[LoadResult]] = {name: [] for name in urls}
            for i in range(rounds):  # alternating, and in the other order every other round
                for name in list(urls)[::1 if i % 2 == 0 else -1]:
                    results[name].append(run_load(urls[name], body, headers, connections, seconds))
            load = load_average()
            ports = tuple(sorted({settings.port, *(int(u.split(":")[2].split("/")[0])
                                                   for u in urls.values())}))
        finally:
            herald.stop(timeout=10)
    return SinglePostResult(
        rounds={name: tuple(r) for name, r in results.items()}, connections=connections,
        seconds=seconds, replicas=replicas, load=load, env=dict(env or {}), ports=ports)


def result_json(result: SinglePostResult) -> str:
    """One line of JSON (what ``--json`` prints and ``--sweep`` reads back)."""
    data = asdict(result)
    data["per_s"] = {name: result.per_s(name) for name in result.rounds}
    return json.dumps(data)


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
    parser.add_argument("--seconds", type=float, default=10.0, help="per round and endpoint")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--max-ongoing", type=int, help="redeploy Herald's intake with this")
    parser.add_argument("--direct", action="store_true",
                        help="also drive the replicas' own ports (RAY_SERVE_ENABLE_DIRECT_INGRESS=1)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--sweep", action="store_true", help="every candidate, a process each")
    parser.add_argument("--out", type=Path, help="--sweep: write the markdown table here")
    args = parser.parse_args(argv)
    if args.sweep:
        from bench.serve_knobs import run_sweep

        run_sweep(args.seconds, args.rounds, args.connections, args.out)
        return
    env = _parse_env(args.env)
    if any(os.environ.get(k) != v for k, v in env.items()):  # Ray was imported without them
        argv = sys.argv[1:] if argv is None else argv
        os.execve(sys.executable, [sys.executable, "-m", "bench.single_post", *argv],
                  {**os.environ, **env})
    options = {"max_ongoing_requests": args.max_ongoing} if args.max_ongoing else None
    result = run_single_post(args.seconds, args.rounds, args.connections, args.replicas,
                             args.direct, intake_options=options, env=env)
    print(result_json(result) if args.json else result.describe(), flush=True)


if __name__ == "__main__":
    main()
