"""Herald's configuration: one typed object, loaded once from ``herald.toml`` and ``HERALD_*``.

Precedence: defaults < ``herald.toml`` (or the file in ``HERALD_CONFIG``) < environment.
Nothing else in Herald reads ``os.environ``.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from herald.channels import Channel
from herald.retry import RetryPolicy

DEFAULT_POOLS = {"email": 2, "sms": 1, "browser": 1, "fax": 1, "webhook": 1}
DEFAULT_MAX_ATTEMPTS = {"email": 6, "sms": 6, "browser": 3, "fax": 4, "webhook": 8}


@dataclass(frozen=True, slots=True)
class SmtpTarget:
    """Where the email channel sends: ``smtp://user:pass@host:port?starttls=1`` parsed once."""

    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: bool = False
    use_tls: bool = False

    @classmethod
    def from_url(cls, url: str) -> SmtpTarget:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps"):
            raise ValueError("HERALD_SMTP_URL must start with smtp:// or smtps://")
        query = parse_qs(parts.query)
        flag = query.get("starttls", ["0"])[0].lower() in ("1", "true", "yes")
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or (465 if parts.scheme == "smtps" else 25),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            starttls=flag,
            use_tls=parts.scheme == "smtps",
        )


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path(".herald")
    shards: int = 4
    #: API key → tenant. Empty means "make a dev key" (``herald up``).
    api_keys: Mapping[str, str] = field(default_factory=dict, repr=False)
    pools: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_POOLS))
    max_attempts: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_MAX_ATTEMPTS))
    retry_base_seconds: float = 1.0
    retry_cap_seconds: float = 300.0
    lease_seconds: float = 60.0
    lease_batch: int = 200
    channel_concurrency: int = 64
    max_body_bytes: int = 8 * 1024 * 1024
    max_batch: int = 1000
    queue_limit: int = 2_000_000
    sqlite_synchronous: str = "FULL"
    intake_replicas: int = 1
    #: ``local`` starts a Ray instance of our own; ``auto`` or ``ray://…`` joins a cluster.
    ray_address: str = "local"
    smtp_url: str | None = field(default=None, repr=False)
    smtp_from: str = "herald@localhost"
    smtp_pool_size: int = 8
    smtp_timeout: float = 30.0
    #: Where providers post receipts (Twilio StatusCallback, fax webhook): Herald's public URL.
    public_url: str | None = None
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = field(default=None, repr=False)
    twilio_base_url: str = "https://api.twilio.com"
    twilio_from: str | None = None
    #: A second Twilio-compatible account to fail over to (same credentials unless given).
    twilio_backup_base_url: str | None = None
    twilio_backup_account_sid: str | None = None
    twilio_backup_auth_token: str | None = field(default=None, repr=False)
    fax_api_key: str | None = field(default=None, repr=False)
    fax_base_url: str = "https://api.telnyx.com"
    fax_connection_id: str | None = None
    fax_from: str | None = None
    fax_webhook_secret: str | None = field(default=None, repr=False)
    browser_port: int = 8001
    browser_secret: str | None = field(default=None, repr=False)
    browser_token_ttl: float = 900.0
    browser_ack_timeout: float = 10.0
    #: Messages per second per provider name (``twilio=50,smtp=500``); absent = unlimited.
    rate_limits: Mapping[str, float] = field(default_factory=dict)
    #: Per recipient per channel: ``sms=5/60`` = at most 5 SMS per number per 60 s.
    recipient_limits: Mapping[str, str] = field(default_factory=dict)
    #: Tenant → secret for signing requester callbacks (default: the tenant's first API key).
    webhook_secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    breaker_threshold: int = 5
    breaker_cooldown: float = 30.0

    def retry_policy(self, channel: Channel) -> RetryPolicy:
        return self.retry_policy_for(channel.value)

    def retry_policy_for(self, lane: str) -> RetryPolicy:
        """Retry policy of a channel or internal lane (``WEBHOOK``)."""
        return RetryPolicy(
            base_seconds=self.retry_base_seconds,
            cap_seconds=self.retry_cap_seconds,
            max_attempts=self.max_attempts.get(lane.lower(), 5),
        )

    def base_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"

    def webhook_secret(self, tenant: str) -> str:
        if tenant in self.webhook_secrets:
            return self.webhook_secrets[tenant]
        return next((key for key, owner in self.api_keys.items() if owner == tenant), "")

    def channels_configured(self) -> list[str]:
        """The channels this configuration can deliver (each gets a pool)."""
        channels = ["EMAIL", "BROWSER", "WEBHOOK"]
        if self.twilio_account_sid and self.twilio_auth_token:
            channels.append("SMS")
        if self.fax_api_key:
            channels.append("FAX")
        return channels

    def smtp_target(self) -> SmtpTarget | None:
        return SmtpTarget.from_url(self.smtp_url) if self.smtp_url else None

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **changes)


def parse_api_keys(text: str) -> dict[str, str]:
    """``"tenant1:key1,tenant2:key2"`` → {key: tenant}."""
    keys: dict[str, str] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        tenant, sep, key = item.partition(":")
        if not sep or not tenant.strip() or not key.strip():
            raise ValueError("HERALD_API_KEYS entries must look like tenant:key")
        keys[key.strip()] = tenant.strip()
    return keys


def _parse_mapping(text: str, cast: Any = int) -> dict[str, Any]:
    """``"email=4,sms=2"`` → {"email": 4, "sms": 2}."""
    out: dict[str, Any] = {}
    for item in text.split(","):
        if item.strip():
            name, _, value = item.partition("=")
            out[name.strip().lower()] = cast(value.strip())
    return out


def _parse_pairs(text: str) -> dict[str, str]:
    """``"tenant1:secret1,tenant2:secret2"`` → {"tenant1": "secret1", …}."""
    out: dict[str, str] = {}
    for item in text.split(","):
        if item.strip():
            name, _, value = item.partition(":")
            out[name.strip()] = value.strip()
    return out


def _coerce(name: str, current: Any, raw: Any) -> Any:
    if name == "api_keys":
        return parse_api_keys(raw) if isinstance(raw, str) else {v: k for k, v in raw.items()}
    if name in ("pools", "max_attempts", "rate_limits", "recipient_limits"):
        cast = {"pools": int, "max_attempts": int, "rate_limits": float}.get(name, str)
        merged = dict(current)
        merged.update(_parse_mapping(raw, cast) if isinstance(raw, str) else raw)
        return merged
    if name == "webhook_secrets":
        return _parse_pairs(raw) if isinstance(raw, str) else dict(raw)
    if name == "data_dir":
        return Path(raw)
    if isinstance(current, bool):
        return str(raw).lower() in ("1", "true", "yes")
    if isinstance(current, int) and not isinstance(current, bool):
        return int(raw)
    if isinstance(current, float):
        return float(raw)
    if raw is not None and not isinstance(raw, str):
        raise ValueError(f"{name} must be a string")
    return str(raw) if raw is not None else None


def load_settings(
    env: Mapping[str, str] | None = None, config_file: Path | None = None
) -> Settings:
    """Build Settings from defaults, the optional TOML file and ``HERALD_*`` variables.

    The TOML file uses the same names in lower case (``port = 8000``, ``[pools] email = 4``;
    ``[api_keys] tenant1 = "key1"``).
    """
    env = os.environ if env is None else env
    settings = Settings()
    path = config_file or Path(env.get("HERALD_CONFIG", "herald.toml"))
    values: dict[str, Any] = {}
    if path.is_file():
        with path.open("rb") as fh:
            values.update(tomllib.load(fh))
    for f in fields(Settings):
        raw = env.get("HERALD_" + f.name.upper())
        if raw is not None and raw != "":
            values[f.name] = raw
    known = {f.name for f in fields(Settings)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown configuration keys: {', '.join(sorted(unknown))}")
    changes = {k: _coerce(k, getattr(settings, k), v) for k, v in values.items()}
    settings = replace(settings, **changes)
    if settings.shards < 1:
        raise ValueError("HERALD_SHARDS must be >= 1")
    if settings.sqlite_synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
        raise ValueError("HERALD_SQLITE_SYNCHRONOUS must be OFF, NORMAL, FULL or EXTRA")
    return settings
