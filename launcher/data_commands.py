"""`herald` commands that work on the data dir itself, not over HTTP: rollup, report, and
rotating a tenant's webhook secret."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date
from pathlib import Path

from herald.config import Settings
from herald.errors import ConfigError, Unavailable
from launcher.cli_error import CliError


def parse_day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a day (YYYY-MM-DD): {text!r}") from None


#: What ``herald report`` needs beyond Herald's own dependencies (the ``report`` extra).
REPORT_EXTRA = ("pandas", "matplotlib")


def cmd_report(settings: Settings, args: argparse.Namespace) -> int:
    try:
        from analytics.progress import Progress
        from analytics.report import ReportError, build
    except ModuleNotFoundError as exc:
        if exc.name not in REPORT_EXTRA:
            raise
        raise CliError(f"herald report needs {' and '.join(REPORT_EXTRA)}: "
                       "pip install 'herald[report]'", 2) from None

    if args.since and args.until and args.since > args.until:
        raise CliError(f"--since {args.since} is after --until {args.until}", 2)
    progress = Progress()
    html = args.format == "html"
    try:
        numbers, text = build(args.data_dir or settings.data_dir, args.since, args.until, html,
                              progress, analytics_uri=settings.analytics_uri)
    except ReportError as exc:
        progress.finish("failed")
        raise CliError(str(exc)) from None
    progress.finish()
    if not numbers["rows"]:
        print(f"herald: no delivery events in {numbers['data_dir']} for that window "
              "(has `herald rollup` run?)", file=sys.stderr)
    out = args.out or ("report.html" if html else None)
    if out is None:
        sys.stdout.write(text)
        return 0
    try:
        Path(out).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot write {out}: {exc.strerror or exc}", 2) from None
    print(f"wrote {out}: {numbers['notifications']:,} notifications", flush=True)
    return 0


def cmd_rollup(settings: Settings, args: argparse.Namespace) -> int:
    from jobs.database_rollup import DatabaseUnreachable
    from jobs.local_ray import RayUnreachable
    from jobs.rollup import run

    # "local" (the default) names no cluster: join the Ray of the data dir's running
    # `herald up` (recorded there), else start one. With a database no Ray is needed.
    address = None if settings.ray_address == "local" else settings.ray_address
    try:
        report = run(args.data_dir or settings.data_dir, address, settings.retention_days,
                     database_url=settings.database_url, analytics_uri=settings.analytics_uri)
    except ConfigError as exc:
        raise CliError(str(exc), 2) from None
    except (RayUnreachable, DatabaseUnreachable) as exc:
        raise CliError(str(exc)) from None
    print(report.summary(), flush=True)
    return 0


def cmd_webhook_secret(settings: Settings, args: argparse.Namespace) -> int:
    from herald.open_store import open_store
    from herald.webhook_secrets import WebhookSecrets

    tenant = args.tenant
    if settings.webhook_secret(tenant):
        raise CliError(f"tenant {tenant!r} signs with its HERALD_WEBHOOK_SECRETS entry: "
                       "change it there", 2)
    tenants = set(settings.api_keys.values()) or {"dev"}  # no keys: herald up's dev tenant
    if tenant not in tenants:
        raise CliError(f"no tenant {tenant!r} (tenants: {', '.join(sorted(tenants))})", 2)
    if args.data_dir:
        settings = settings.with_overrides(data_dir=args.data_dir)
    try:
        with open_store(settings) as store:  # the database every deployment shares, if set
            secret = WebhookSecrets(store).rotate(tenant)
    except Unavailable as exc:
        raise CliError(exc.message) from None
    until = secret.previous_until()
    print(f"rotated {tenant!r}'s webhook secret (read it with GET /v1/webhook-secret)"
          + (f"; the previous one signs too until {time.ctime(until)}" if until else ""),
          flush=True)
    return 0
