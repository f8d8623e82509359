"""The value types of Herald's configuration: each setting's shape and check, in one place.

``herald.config.Settings`` uses them; a check raises ``ValueError`` with a message that says what
is wrong without repeating the value (it may be a secret).
"""

from __future__ import annotations

import base64
import contextlib
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import parse_qs, unquote, urlsplit

from pydantic import AfterValidator, Field

from herald.return_path import domain_name

SYNC_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")


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
        """Parse, or raise ValueError saying what is wrong without repeating the URL (credentials)."""
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps"):
            raise ValueError("must start with smtp:// or smtps://")
        if not parts.hostname:
            raise ValueError("must name a host, e.g. smtp://mail.example.com:587")
        try:
            port = parts.port
        except ValueError:  # urllib's message quotes the port text; ours stays value-free
            raise ValueError("must have a port from 1 to 65535") from None
        query = parse_qs(parts.query)
        flag = query.get("starttls", ["0"])[0].lower() in ("1", "true", "yes")
        return cls(
            host=parts.hostname,
            port=port or (465 if parts.scheme == "smtps" else 25),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            starttls=flag,
            use_tls=parts.scheme == "smtps",
        )


def smtp_url(url: str) -> str:
    SmtpTarget.from_url(url)  # checked at load time so smtp_target() cannot fail in an actor
    return url


def http_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    return url


#: The placeholders of ``HERALD_BROWSER_PUBLIC_URL``, filled per browser gateway.
BROWSER_URL_PLACEHOLDERS = ("{node_ip}", "{port}")


def fill_browser_url(template: str, node_ip: str, port: int) -> str:
    """``HERALD_BROWSER_PUBLIC_URL`` for one gateway: the IP of the node it runs on and the port
    it listens on put in for ``{node_ip}`` and ``{port}``."""
    return template.replace("{node_ip}", node_ip).replace("{port}", str(port))


def browser_url_template(template: str) -> str:
    """A ws:// or wss:// URL once filled in (``wss://gw.example.com/{node_ip}/{port}/ws``)."""
    filled = fill_browser_url(template, "10.0.0.1", 8001)
    parts = urlsplit(filled)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError("must be a ws:// or wss:// URL with a host, e.g. "
                         "wss://gw.example.com/{node_ip}/{port}/ws")
    if "{" in filled or "}" in filled:
        raise ValueError("may use only the placeholders " + " and ".join(BROWSER_URL_PLACEHOLDERS))
    if parts.query or parts.fragment:
        raise ValueError("must have no query or fragment (Herald adds ?token=…)")
    try:
        parts.port  # noqa: B018 - urllib checks the port only when asked
    except ValueError:
        raise ValueError("must have a port from 1 to 65535") from None
    return template


def window(spec: str) -> str:
    """``"5/60"``: at most 5 per 60 s (herald.ratelimit.RecipientWindow reads it)."""
    count, slash, seconds = spec.partition("/")
    try:
        ok = bool(slash) and int(count) >= 1 and float(seconds) > 0
    except ValueError:
        ok = False
    if not ok:
        raise ValueError("must be N/SECONDS with N >= 1 and SECONDS > 0, e.g. 5/60")
    return spec.strip()


def ed25519_key(key: str) -> str:  # as Telnyx's portal shows it: base64 of the raw 32 bytes
    with contextlib.suppress(ValueError):  # binascii.Error is a ValueError
        if len(base64.b64decode(key.strip(), validate=True)) == 32:
            return key.strip()
    raise ValueError("must be the base64 ed25519 public key (32 bytes) Telnyx shows")


def sync_mode(value: object) -> object:
    mode = value.upper() if isinstance(value, str) else value  # SQLite's PRAGMA ignores case
    if mode not in SYNC_MODES:
        raise ValueError("must be one of " + ", ".join(SYNC_MODES))
    return mode


def postgres_url(value: str) -> str:
    """``HERALD_DATABASE_URL``: a PostgreSQL URL (libpq's form); the message never repeats it,
    as it may hold a password."""
    scheme = value.split("://", 1)[0].lower() if "://" in value else ""
    if scheme not in ("postgresql", "postgres"):
        raise ValueError("must be a postgresql:// URL (unset: SQLite files in the data dir)")
    return value


#: The ``pyarrow.fs.FileSystem.from_uri`` schemes Herald accepts for ``analytics_uri``.
ANALYTICS_SCHEMES = ("file", "s3", "gs", "gcs", "hdfs", "abfs", "abfss")


def analytics_location(value: str) -> str:
    """``HERALD_ANALYTICS_URI``: a directory, or a URI of a scheme pyarrow reads and writes
    (checked by its form only: a bucket is not asked anything at start)."""
    if "://" not in value:
        if not value.strip():
            raise ValueError("must be a directory or a URI (unset: DATA_DIR/analytics)")
        return value
    scheme, rest = value.split("://", 1)
    if scheme.lower() not in ANALYTICS_SCHEMES:
        raise ValueError(f"must be a directory or a URI of {', '.join(ANALYTICS_SCHEMES)}")
    if scheme.lower() == "file" and not rest.startswith("/"):
        raise ValueError("a file:// URI needs an absolute path (file:///srv/herald/analytics)")
    if scheme.lower() != "file" and not rest.split("@")[-1].strip("/"):
        raise ValueError(f"needs a bucket: {scheme}://bucket/prefix")
    return value


@dataclass(frozen=True, slots=True)
class MustBe:
    """What a setting must be, said whole when any check of its type fails (``HERALD_PORT: must
    be an integer from 1 to 65535``) instead of pydantic's message for that one check."""

    text: str


Port = Annotated[int, Field(ge=1, le=65535), MustBe("an integer from 1 to 65535")]
DashboardPort = Annotated[int, Field(ge=0, le=65535), MustBe("an integer from 0 (off) to 65535")]
#: Sizes and counts where zero would leave Herald unable to do anything.
Count = Annotated[int, Field(ge=1)]
Seconds = Annotated[float, Field(gt=0)]
Backoff = Annotated[float, Field(ge=0)]  # RetryPolicy accepts 0: retry at once
HttpUrl = Annotated[str, AfterValidator(http_url)]
SmtpUrl = Annotated[str, AfterValidator(smtp_url)]
BrowserUrlTemplate = Annotated[str, AfterValidator(browser_url_template)]
DomainName = Annotated[str, AfterValidator(domain_name)]


def secret(default: Any = None) -> Any:
    """A field kept out of ``repr`` and out of error messages."""
    return Field(default=default, repr=False)


#: The channels that can use the local capture peers (browser delivery needs no provider).
CAPTURABLE = ("email", "sms", "fax")


def capture_list(value: str) -> str:
    """``HERALD_CAPTURE``: ``email,sms``, ``all`` or ``none`` → the normalised comma list."""
    names = {part.strip().lower() for part in value.split(",") if part.strip()}
    if names == {"all"}:
        return ",".join(CAPTURABLE)
    if names in ({"none"}, set()):
        return ""
    unknown = names - set(CAPTURABLE)
    if unknown:
        raise ValueError("must list channels among email, sms, fax (or all, none)")
    return ",".join(c for c in CAPTURABLE if c in names)
