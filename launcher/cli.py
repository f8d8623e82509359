"""The ``herald`` command: ``up`` (run the service), ``send``, ``status``, ``outbox``."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import httpx

from herald.config import Settings, load_settings


def _api_key(settings: Settings) -> str:
    if settings.api_keys:
        return next(iter(settings.api_keys))
    path = settings.data_dir / "dev-api-key"
    if path.is_file():
        return path.read_text().strip()
    sys.exit("no API key: set HERALD_API_KEYS or run `herald up` once to make a dev key")


def _client(settings: Settings) -> httpx.Client:
    return httpx.Client(
        base_url=f"http://{settings.host}:{settings.port}",
        headers={"Authorization": f"Bearer {_api_key(settings)}"}, timeout=70.0,
    )


def _print(response: httpx.Response) -> int:
    print(json.dumps(response.json(), indent=2))
    return 0 if response.status_code < 400 else 1


def cmd_up(settings: Settings, _: argparse.Namespace) -> int:
    from launcher.runtime import Herald

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    herald = Herald(settings).start()
    s = herald.settings
    print(f"Herald is up on http://{s.host}:{s.port} (data in {s.data_dir})", flush=True)
    if herald.dev_key:
        print(f"dev API key (tenant 'dev'): {herald.dev_key}", flush=True)
    if herald.peers or herald._async_peers:
        print("no providers configured: capturing deliveries (see `herald outbox`)", flush=True)
    print("Ctrl-C to stop", flush=True)
    stop.wait()
    print("stopping: finishing in-flight deliveries…", flush=True)
    herald.stop()
    print("stopped", flush=True)
    return 0


def cmd_send(settings: Settings, args: argparse.Namespace) -> int:
    payload: Any = json.loads(Path(args.file).read_text())
    path = "/v1/notifications/batch" if "notifications" in payload else "/v1/notifications"
    with _client(settings) as client:
        return _print(client.post(path, json=payload))


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    with _client(settings) as client:
        return _print(client.get(f"/v1/notifications/{args.tag}", params={"wait": args.wait}))


def cmd_outbox(settings: Settings, args: argparse.Namespace) -> int:
    from capture.outbox import read

    for entry in read(settings.data_dir / "outbox", args.channel, args.limit):
        print(json.dumps(entry))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="herald", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="run Herald in the foreground (Ctrl-C stops it cleanly)")
    send = sub.add_parser("send", help="POST a notification (or {\"notifications\": [...]})")
    send.add_argument("file")
    status = sub.add_parser("status", help="show a notification's status")
    status.add_argument("tag")
    status.add_argument("--wait", type=float, default=0.0, help="wait up to S s for a final state")
    outbox = sub.add_parser("outbox", help="list what the local capture providers received")
    outbox.add_argument("--channel", choices=["email", "sms", "fax", "browser"])
    outbox.add_argument("--limit", type=int, default=None)
    args = parser.parse_args(argv)
    settings = load_settings()
    commands = {"up": cmd_up, "send": cmd_send, "status": cmd_status, "outbox": cmd_outbox}
    return commands[args.command](settings, args)


if __name__ == "__main__":
    sys.exit(main())
