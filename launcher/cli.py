"""The `herald` command: run Herald (`up`) and talk to a running one over its HTTP API."""

from __future__ import annotations

import argparse
import dataclasses
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

from herald_client import (
    Accepted,
    ApiError,
    ConnectError,
    Herald,
    Refused,
    Timeout,
    TransportError,
    UnexpectedAnswer,
)

from herald.config import Settings, load_settings
from herald.data_dir import DEV_API_KEY, DataDir
from herald.errors import Unavailable
from herald.open_store import open_store
from launcher.cli_error import CliError
from launcher.data_commands import cmd_report, cmd_rollup, cmd_webhook_secret, parse_day

DESCRIPTION = """\
Herald delivers email, SMS, fax and in-browser notifications.

"herald up" runs the service in the foreground. send, status, cancel, retry and queue
talk to a running Herald through its Python client: the one at --url or HERALD_URL, else
this one at http://HERALD_HOST:HERALD_PORT (127.0.0.1:8000 by default), with the key of
--key or HERALD_KEY, else the first of HERALD_API_KEYS, else the dev key that "herald up"
keeps in the data directory."""

EPILOG = """\
examples:
  herald up                        run Herald here; Ctrl-C stops it cleanly
  herald send notification.json    queue one notification, or {"notifications": [...]}
  herald status TAG --wait 30      its status, waiting up to 30 s for a final state
  herald status TAG --url https://herald.example.org --key KEY    ask another Herald
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
    if settings.key:
        return settings.key
    if settings.api_keys:
        return next(iter(settings.api_keys))
    try:
        with open_store(settings) as store:  # the data dir, or the database herald up used
            key = store.get(DEV_API_KEY)
    except (OSError, Unavailable) as exc:
        raise CliError(f"cannot read the dev API key: {exc}", 2) from None
    if key is None:
        raise CliError("no API key: give --key or set HERALD_KEY or HERALD_API_KEYS, or run "
                       f"`herald up` once to make a dev key in {store.where}", 2)
    return key


def _remote(settings: Settings, args: argparse.Namespace,
            ask: Callable[[Herald], object], wait: float = 0.0) -> int:
    """Ask Herald (``--url``, ``HERALD_URL`` or the local one) through the Python client and
    show the answer; no answer at all is a CliError, an error answer exit status 1."""
    url = args.url or settings.url or _base_url(settings)
    try:
        herald = Herald(url, args.key or _api_key(settings), timeout=REQUEST_SECONDS)
    except ValueError as exc:  # --url is not an http(s) URL (HERALD_URL is checked by Settings)
        raise CliError(f"--url: {exc}", 2) from None
    try:
        with herald:
            result = ask(herald)
    except ConnectError:
        local = "" if args.url or settings.url else " (is `herald up` running?)"
        raise CliError(f"cannot reach Herald at {herald.target.url}{local}") from None
    except Timeout:
        raise CliError(f"Herald at {herald.target.url} did not answer within "
                       f"{REQUEST_SECONDS + wait:.0f} s") from None
    except (TransportError, UnexpectedAnswer) as exc:
        raise CliError(str(exc)) from None
    except ApiError as exc:
        _show_error(exc)
        return 1
    print(json.dumps(_plain(result), indent=2, ensure_ascii=False))
    return 0


def _plain(result: object) -> Any:
    """A client answer as JSON-ready values (its dataclasses as objects)."""
    if isinstance(result, list):
        return [_plain(item) for item in result]
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        return dataclasses.asdict(result)
    return result


def _show_error(error: ApiError) -> None:
    """Herald's JSON error on stdout (as it came) and one line on stderr."""
    if error.body is not None:
        print(json.dumps(error.body, indent=2, ensure_ascii=False))
    line = str(error)
    if error.retry_after is not None:
        line += f" (retry after {error.retry_after:g} s)"
    if error.status == 401:
        line += " (check --key, HERALD_KEY or HERALD_API_KEYS)"
    print(f"herald: {line}", file=sys.stderr)


def _note_refused(results: list[Accepted | Refused]) -> None:
    """A batch is accepted as a whole (2xx) even when some items are not: say how many."""
    refused = sum(isinstance(result, Refused) for result in results)
    if refused:
        print(f"herald: {refused} of {len(results)} notifications were refused "
              "(see their \"code\" and \"message\")", file=sys.stderr)


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
    if isinstance(payload, dict) and "notifications" in payload:
        if not isinstance(payload["notifications"], list):
            raise CliError(f'{args.file}: "notifications" must be a list', 2)

        def batch(herald: Herald) -> list[Accepted | Refused]:
            results = herald.send_batch(payload["notifications"])
            _note_refused(results)
            return results
        return _remote(settings, args, batch)
    if not isinstance(payload, dict):
        raise CliError(f"{args.file}: a notification is a JSON object", 2)
    return _remote(settings, args,
                   lambda herald: herald.send(payload, idempotency_key=args.idempotency_key))


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    return _remote(settings, args, lambda herald: herald.status(args.tag, wait=args.wait),
                   wait=max(args.wait, 0.0))


def cmd_cancel(settings: Settings, args: argparse.Namespace) -> int:
    return _remote(settings, args, lambda herald: herald.cancel(args.tag))


def cmd_retry(settings: Settings, args: argparse.Namespace) -> int:
    return _remote(settings, args, lambda herald: herald.retry(args.tag))


def cmd_queue(settings: Settings, args: argparse.Namespace) -> int:
    return _remote(settings, args, lambda herald: {"shards": _plain(herald.queue())})


def cmd_outbox(settings: Settings, args: argparse.Namespace) -> int:
    from capture.outbox import read

    for entry in read(DataDir(settings.data_dir).outbox, args.channel, args.limit):
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

    remote = argparse.ArgumentParser(add_help=False)
    remote.add_argument("--url", metavar="URL", help="the Herald to talk to (default: "
                        "HERALD_URL, else http://HERALD_HOST:HERALD_PORT)")
    remote.add_argument("--key", metavar="KEY", help="its API key (default: HERALD_KEY, else "
                        "the first of HERALD_API_KEYS, else the dev key)")

    def command(name: str, run: Command, summary: str, about: str,
                example: str, talks: bool = False) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=summary, description=about, formatter_class=plain,
                           epilog=f"example:\n  {example}", parents=[remote] if talks else [])
        p.set_defaults(run=run)
        return p

    command("up", cmd_up, "run Herald in the foreground",
            "Run Herald in the foreground: Ray, the queue shards, the channel pools and the\n"
            "HTTP API. Ctrl-C or SIGTERM stops it cleanly: deliveries in flight finish first.",
            "HERALD_PORT=8080 herald up")
    send = command("send", cmd_send, "queue the notification(s) in a JSON file",
                   "Queue the notification in FILE: one payload, or a batch\n"
                   '{"notifications": [...]}. Prints the tag to ask "herald status" about.',
                   "herald send notification.json", talks=True)
    send.add_argument("file", metavar="FILE", help="a JSON file, or - for standard input")
    send.add_argument("--idempotency-key", metavar="KEY",
                      help="sent as Idempotency-Key: the same key again is answered with the "
                      "first tag, never sent twice (one notification only)")
    status = command("status", cmd_status, "show a notification's status",
                     "Show a notification's status, timestamps and delivery attempts.",
                     "herald status 0002c0de-… --wait 30", talks=True)
    status.add_argument("tag", metavar="TAG", help='the tag that "herald send" printed')
    status.add_argument("--wait", type=float, default=0.0, metavar="S",
                        help="wait up to S seconds (at most 60) for a final state")
    cancel = command("cancel", cmd_cancel, "cancel a queued notification",
                     "Cancel a notification that is still queued or retrying\n"
                     "(HTTP 409 once it is being sent or done).",
                     "herald cancel 0002c0de-…", talks=True)
    cancel.add_argument("tag", metavar="TAG")
    retry = command("retry", cmd_retry, "send a dead notification again",
                    "Send a dead notification again with a fresh attempt budget; its\n"
                    "history is kept (HTTP 409 unless it is dead).",
                    "herald retry 0002c0de-…", talks=True)
    retry.add_argument("tag", metavar="TAG")
    command("queue", cmd_queue, "show the queue depth",
            "Show the queue depth per shard and channel.", "herald queue", talks=True)
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
