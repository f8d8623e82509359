"""The `herald` command: run Herald (`up`) and talk to a running one over its HTTP API."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from herald.config import Settings, load_settings
from herald.errors import Unavailable
from herald.open_store import open_store
from launcher.cli_error import CliError
from launcher.data_commands import cmd_report, cmd_rollup, cmd_webhook_secret, parse_day
from launcher.stored_secrets import DEV_API_KEY

DESCRIPTION = """\
Herald delivers email, SMS, fax and in-browser notifications.

"herald up" runs the service in the foreground. The other commands talk to a running
Herald at http://HERALD_HOST:HERALD_PORT (127.0.0.1:8000 by default) with the first key
of HERALD_API_KEYS, or with the dev key that "herald up" keeps in the data directory."""

EPILOG = """\
examples:
  herald up                        run Herald here; Ctrl-C stops it cleanly
  herald send notification.json    queue one notification, or {"notifications": [...]}
  herald status TAG --wait 30      its status, waiting up to 30 s for a final state
  herald cancel TAG                cancel it while it is still queued or retrying
  herald retry TAG                 send a dead notification again
  herald queue                     queue depth per shard and channel
  herald outbox --channel email    what the local capture providers received (dev mode)
  herald rollup                    roll the delivery log into Parquet (what reports read)
  herald report --out report.html  delivery report from the rolled-up log (--format json)
  herald webhook-secret rotate T   a new webhook secret for tenant T (old one signs 24 h more)

Configuration: herald.toml and HERALD_* environment variables (see docs/configuration.md).
Exit status: 0 success; 1 Herald answered with an error or could not be reached;
2 bad usage, unreadable input file or configuration error."""

#: Every HTTP answer but a ``?wait`` long poll comes within this; the long poll gets it on top.
REQUEST_SECONDS = 60.0


def _base_url(settings: Settings) -> str:
    return _http_url(settings.host, settings.port)


def _http_url(host: str, port: int) -> str:
    # A server bound to every interface is reached on loopback; an IPv6 literal needs [].
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _api_key(settings: Settings) -> str:
    if settings.api_keys:
        return next(iter(settings.api_keys))
    try:
        with open_store(settings) as store:  # the data dir, or the database herald up used
            key = store.get(DEV_API_KEY)
    except (OSError, Unavailable) as exc:
        raise CliError(f"cannot read the dev API key: {exc}", 2) from None
    if key is None:
        raise CliError("no API key: set HERALD_API_KEYS, or run `herald up` once to make a dev "
                       f"key in {store.where}", 2)
    return key


def _request(settings: Settings, method: str, path: str, *, wait: float = 0.0,
             **kwargs: Any) -> int:
    """Send one request to Herald and show the answer; connection trouble is a CliError."""
    base = _base_url(settings)
    headers = {"Authorization": f"Bearer {_api_key(settings)}"}
    timeout = httpx.Timeout(REQUEST_SECONDS + wait, connect=5.0)
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=timeout) as client:
            response = client.request(method, path, **kwargs)
    except httpx.ConnectError:
        raise CliError(f"cannot reach Herald at {base} (is `herald up` running?)") from None
    except httpx.TimeoutException:
        raise CliError(f"Herald at {base} did not answer within {timeout.read:.0f} s") from None
    except httpx.HTTPError as exc:
        raise CliError(f"request to {base}{path} failed: {exc or type(exc).__name__}") from None
    return _show(response)


def _show(response: httpx.Response) -> int:
    """The answer as pretty JSON on stdout; an error status also gets one line on stderr."""
    try:
        body: Any = response.json()
    except ValueError:  # not JSON: Serve's own 404/503 while the app is (re)starting
        body = None
    if body is not None:
        print(json.dumps(body, indent=2, ensure_ascii=False))
    elif response.text and response.is_success:
        print(response.text)
    if response.is_success:
        _note_refused(body)
        return 0
    print(f"herald: {_error_line(response, body)}", file=sys.stderr)
    return 1


def _error_line(response: httpx.Response, body: Any) -> str:
    status = f"HTTP {response.status_code}"
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        text = " ".join(response.text.split())[:200]
        return f"{status} {response.reason_phrase}" + (f": {text}" if text else "")
    line = f"{status} {error.get('code', 'error')}: {error.get('message', '')}"
    if error.get("field"):
        line += f" (field: {error['field']})"
    if "retry-after" in response.headers:
        line += f" (retry after {response.headers['retry-after']} s)"
    if response.status_code == 401:
        line += " (check HERALD_API_KEYS)"
    return line


def _note_refused(body: Any) -> None:
    """A batch is accepted as a whole (2xx) even when some items are not: say how many."""
    results = body.get("results") if isinstance(body, dict) else None
    if isinstance(results, list):
        refused = sum(1 for r in results if isinstance(r, dict) and "error" in r)
        if refused:
            print(f"herald: {refused} of {len(results)} notifications were refused "
                  "(see their \"error\")", file=sys.stderr)


def _read_json(name: str) -> Any:
    """The JSON in file ``name`` (``-``: standard input); unreadable or invalid is a CliError."""
    try:
        text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CliError(f"no such file: {name}", 2) from None
    except UnicodeDecodeError:
        raise CliError(f"{name} is not JSON: it is not UTF-8 text", 2) from None
    except OSError as exc:
        raise CliError(f"cannot read {name}: {exc.strerror or exc}", 2) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"{name} is not JSON: {exc}", 2) from None


def _deployment_line(settings: Settings) -> str:
    """With PostgreSQL: whether this deployment is the active one or a standby."""
    from herald.pg_connect import connect
    from herald.pg_leases import active_deployment

    try:
        with connect(settings.database_url or "") as conn:
            active = active_deployment(conn, settings.shard_lease_seconds)
    except Exception as exc:  # noqa: BLE001 - a line on the console, not a reason to stop
        return f"state in PostgreSQL; the database does not answer now ({type(exc).__name__})"
    me = settings.deployment_id
    if active == me:
        return f"state in PostgreSQL; deployment {me} is the active one"
    return (f"state in PostgreSQL; deployment {me} is a standby (/healthz 503) while "
            f"{active or 'another deployment'} is active: it takes over when that one stops")


def cmd_up(settings: Settings, _: argparse.Namespace) -> int:
    from ray.exceptions import RayError, RayTaskError

    from launcher.runtime import Herald

    stop = threading.Event()
    starting = [True]

    def on_signal(*_: Any) -> None:
        # Once up, only set the event: the main thread stops Herald (a print from a handler
        # can collide with one it interrupted). While starting, abort the start, which may
        # wait long (a worker that cannot start); once only, so the clean-up runs through.
        stop.set()
        if starting[0]:
            starting[0] = False
            raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    herald = Herald(settings)
    try:
        herald.start(progress=lambda line: print(line, flush=True))
        starting[0] = False
    except (KeyboardInterrupt, SystemExit):  # SystemExit: Ray's handler, inside ray.init
        herald.stop(timeout=0)  # start() undid its work; this covers a signal just after it
        print("stopped before Herald was up", flush=True)
        return 130
    except (OSError, TimeoutError, ValueError) as exc:  # a port in use, no Ray to join…
        raise CliError(f"could not start: {_one_line(exc)}") from exc
    except RayError as exc:  # failed in an actor: its traceback is in the log above
        cause = exc.cause if isinstance(exc, RayTaskError) else exc
        first = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
        raise CliError(f"could not start: {type(cause).__name__}: {first}") from exc
    s = herald.settings
    # Where Serve really listens: a Serve already running on the Ray joined keeps its own.
    url = _http_url(*herald.http_address) if herald.http_address else _base_url(s)
    print(f"Herald is up on {url} (data in {s.data_dir})", flush=True)
    if s.database_url is not None:
        print(_deployment_line(s), flush=True)
    if herald.dev_key:
        print(f"dev API key (tenant 'dev'): {herald.dev_key}", flush=True)
    if herald.admin_key:
        print(f"admin key (console at {url}/admin): {herald.admin_key}", flush=True)
    if herald.captured:
        print(f"capturing {', '.join(herald.captured)} deliveries locally (HERALD_CAPTURE; "
              "see `herald outbox`)", flush=True)
    configured = {c.key for c in s.channels_configured()}
    missing = [c for c in ("email", "sms", "fax") if c not in configured]
    if missing:
        print(f"no provider configured for {', '.join(missing)}: such notifications are refused "
              "(422); configure one or list it in HERALD_CAPTURE", flush=True)
    print("Ctrl-C to stop", flush=True)
    stop.wait()
    print("stopping: finishing in-flight deliveries…", flush=True)
    started = time.monotonic()
    herald.stop()
    print(f"stopped in {time.monotonic() - started:.1f} s", flush=True)
    return 0


def cmd_send(settings: Settings, args: argparse.Namespace) -> int:
    payload = _read_json(args.file)
    batch = isinstance(payload, dict) and "notifications" in payload
    path = "/v1/notifications/batch" if batch else "/v1/notifications"
    return _request(settings, "POST", path, json=payload)


def _tag_path(tag: str, suffix: str = "") -> str:
    return f"/v1/notifications/{quote(tag, safe='')}{suffix}"


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    return _request(settings, "GET", _tag_path(args.tag), wait=max(args.wait, 0.0),
                    params={"wait": args.wait})


def cmd_cancel(settings: Settings, args: argparse.Namespace) -> int:
    return _request(settings, "DELETE", _tag_path(args.tag))


def cmd_retry(settings: Settings, args: argparse.Namespace) -> int:
    return _request(settings, "POST", _tag_path(args.tag, "/retry"))


def cmd_queue(settings: Settings, _: argparse.Namespace) -> int:
    return _request(settings, "GET", "/v1/queue")


def cmd_outbox(settings: Settings, args: argparse.Namespace) -> int:
    from capture.outbox import read

    for entry in read(settings.data_dir / "outbox", args.channel, args.limit):
        print(json.dumps(entry, ensure_ascii=False))
    return 0


Command = Callable[[Settings, argparse.Namespace], int]


def version() -> str:
    """The installed Herald's version (pyproject.toml's, as pip recorded it)."""
    try:
        return importlib.metadata.version("herald")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout never installed
        return "unknown (not installed)"


def _parser() -> argparse.ArgumentParser:
    plain = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="herald", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=plain)
    parser.add_argument("--version", action="version", version=f"herald {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run: Command, summary: str, about: str,
                example: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=summary, description=about, formatter_class=plain,
                           epilog=f"example:\n  {example}")
        p.set_defaults(run=run)
        return p

    command("up", cmd_up, "run Herald in the foreground",
            "Run Herald in the foreground: Ray, the queue shards, the channel pools and the\n"
            "HTTP API. Ctrl-C or SIGTERM stops it cleanly: deliveries in flight finish first.",
            "HERALD_PORT=8080 herald up")
    send = command("send", cmd_send, "queue the notification(s) in a JSON file",
                   "Queue the notification in FILE: one payload, or a batch\n"
                   '{"notifications": [...]}. Prints the tag to ask "herald status" about.',
                   "herald send notification.json")
    send.add_argument("file", metavar="FILE", help="a JSON file, or - for standard input")
    status = command("status", cmd_status, "show a notification's status",
                     "Show a notification's status, timestamps and delivery attempts.",
                     "herald status 0002c0de-… --wait 30")
    status.add_argument("tag", metavar="TAG", help='the tag that "herald send" printed')
    status.add_argument("--wait", type=float, default=0.0, metavar="S",
                        help="wait up to S seconds (at most 60) for a final state")
    cancel = command("cancel", cmd_cancel, "cancel a queued notification",
                     "Cancel a notification that is still queued or retrying\n"
                     "(HTTP 409 once it is being sent or done).",
                     "herald cancel 0002c0de-…")
    cancel.add_argument("tag", metavar="TAG")
    retry = command("retry", cmd_retry, "send a dead notification again",
                    "Send a dead notification again with a fresh attempt budget; its\n"
                    "history is kept (HTTP 409 unless it is dead).",
                    "herald retry 0002c0de-…")
    retry.add_argument("tag", metavar="TAG")
    command("queue", cmd_queue, "show the queue depth",
            "Show the queue depth per shard and channel.", "herald queue")
    outbox = command("outbox", cmd_outbox, "list what the capture providers received",
                     "List what the local capture providers received (dev mode, when no\n"
                     "provider is configured), oldest first, one JSON object a line.",
                     "herald outbox --channel sms --limit 5")
    outbox.add_argument("--channel", choices=["email", "sms", "fax", "browser"])
    outbox.add_argument("--limit", type=int, default=None, metavar="N", help="the last N only")
    rollup = command("rollup", cmd_rollup, "roll the delivery log into Parquet",
                     "Roll the delivery log into Parquet under HERALD_ANALYTICS_URI (default\n"
                     "DATA_DIR/analytics)/events (dt=…/channel=…), once each: the closed\n"
                     "segments of the data dir, or with HERALD_DATABASE_URL the database's rows.",
                     "herald rollup")
    rollup.add_argument("--data-dir", type=Path, metavar="DIR",
                        help="Herald's data directory (default: HERALD_DATA_DIR)")
    webhook = command("webhook-secret", cmd_webhook_secret, "rotate a tenant's webhook secret",
                      "Give TENANT a new random webhook secret (in DATA_DIR, or the database of\n"
                      "HERALD_DATABASE_URL; read by the running Heralds within a second). For\n"
                      "24 h callbacks carry the old signature too.",
                      "herald webhook-secret rotate acme")
    webhook.add_argument("action", choices=["rotate"])
    webhook.add_argument("tenant", metavar="TENANT")
    webhook.add_argument("--data-dir", type=Path, metavar="DIR",
                         help="Herald's data directory (default: HERALD_DATA_DIR)")
    report = command("report", cmd_report, "write a delivery report (HTML or JSON)",
                     "Report on the notifications accepted from --since to --until (UTC days,\n"
                     "both included; default: all), from the Parquet `herald rollup` writes under\n"
                     "HERALD_ANALYTICS_URI (default DATA_DIR/analytics): volume, success rates,\n"
                     "latency, retries, errors.",
                     "herald report --since 2026-03-01 --until 2026-03-07 --out week.html")
    report.add_argument("--since", type=parse_day, metavar="YYYY-MM-DD", help="first day (UTC)")
    report.add_argument("--until", type=parse_day, metavar="YYYY-MM-DD", help="last day (UTC)")
    report.add_argument("--format", choices=["html", "json"], default="html",
                        help="html (default, to report.html) or json (to standard output)")
    report.add_argument("--out", metavar="FILE", help="write here instead")
    report.add_argument("--data-dir", type=Path, metavar="DIR",
                        help="Herald's data directory (default: HERALD_DATA_DIR)")
    return parser


def _one_line(error: BaseException) -> str:
    # A pydantic error spans lines ("1 validation error…\nport\n  Input should…"): join them.
    return "; ".join(line.strip() for line in str(error).splitlines() if line.strip())


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except (ValueError, OSError) as exc:  # ConfigError is a ValueError; herald.toml unreadable
        print(f"herald: configuration error: {_one_line(exc)}", file=sys.stderr)
        return 2
    try:
        code: int = args.run(settings, args)
        sys.stdout.flush()
    except CliError as exc:
        print(f"herald: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `herald outbox | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
