"""Everything Herald can be told, each setting with its type, default and doc in one place.

The docstring under each field is its documentation: ``python -m herald.config_docs`` turns them
into ``docs/configuration.md`` (``make docs``) and a unit test fails when a field has none or the
file is stale. Loading (``herald.toml``, ``HERALD_*``) is ``herald.config``'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from herald.callback_policy import CallbackAllow
from herald.channels import Channel
from herald.config_errors import config_error
from herald.config_types import (
    CAPTURABLE,
    Backoff,
    BrowserUrlTemplate,
    Count,
    DashboardPort,
    DomainName,
    HttpUrl,
    Port,
    Seconds,
    SmtpTarget,
    SmtpUrl,
    analytics_location,
    capture_list,
    ed25519_key,
    postgres_url,
    secret,
    sync_mode,
    window,
)
from herald.pool_sizing import GROW_BACKLOG_PER_ACTOR, SHRINK_AFTER_SECONDS
from herald.retry import RetryPolicy
from herald.search import SCAN_ROWS

#: One actor per everyday channel on a single box; fax and requester callbacks start theirs on
#: their first work (a process each saved while idle), and every pool grows under a backlog.
DEFAULT_POOLS = {"email": 1, "sms": 1, "browser": 1, "fax": 0, "webhook": 0}
DEFAULT_POOL_MAX = {"email": 4, "sms": 4, "fax": 2, "webhook": 2}
DEFAULT_MAX_ATTEMPTS = {"email": 6, "sms": 6, "browser": 3, "fax": 4, "webhook": 8}


class Settings(BaseSettings):
    """Everything Herald can be told; ``Settings(port=…)`` takes only what it is given."""

    # case_sensitive=False: the env source then matches HERALD_PORT to ``port``. Each field's
    # docstring becomes its description (use_attribute_docstrings), the source of the docs.
    model_config = SettingsConfigDict(frozen=True, extra="forbid", env_prefix="HERALD_",
                                      case_sensitive=False, use_attribute_docstrings=True)

    # ---- HTTP and intake (the sections of docs/configuration.md: herald.config_docs.SECTIONS)
    host: str = "127.0.0.1"
    """Address the HTTP API binds; the browser gateways and the bounce listener bind it too."""
    port: Port = 8000
    """Port of the HTTP API."""
    public_url: HttpUrl | None = None
    """Herald's public URL: where providers post receipts (Twilio ``StatusCallback``, the fax
    webhook) and where the unsubscribe links in emails point. Unset: ``http://HOST:PORT``."""
    api_keys: Mapping[str, str] = Field(default_factory=dict, repr=False)
    """Tenants and their API keys, ``tenant1:key1,tenant2:key2`` (in ``herald.toml``:
    ``[api_keys] tenant1 = "key1"``). Unset (dev mode): a key for tenant ``dev`` is made once
    and kept in ``DATA_DIR/dev-api-key`` (or the database)."""
    intake_replicas: Count = 1
    """Ray Serve replicas of the HTTP intake. They ask for no CPU, so more are set here by
    hand (an admin logout reaches every replica; ``max_waits_per_tenant`` is per replica)."""
    max_body_bytes: Count = 8 * 1024 * 1024
    """Largest request body the API reads (413 beyond, chunked or not). Requests answered before
    authentication (the admin login, provider receipts) are held to 16 KiB whatever this says."""
    max_batch: Count = 1000
    """Most notifications one ``POST /v1/notifications/batch`` may hold (422 beyond)."""
    max_waits_per_tenant: Count = 100
    """``?wait`` status requests one tenant may hold open at once, per intake replica (429
    beyond)."""

    # ---- Storage
    data_dir: Path = Path(".herald")
    """Directory of the SQLite shards, delivery-log segments, analytics, outbox, dev keys and
    the secrets Herald makes. Must be absolute under ``serve deploy``."""
    database_url: Annotated[str, AfterValidator(postgres_url)] | None = secret()
    """Unset: each shard in a SQLite file of the data dir. ``postgresql://user:pass@host:5432/db``
    (libpq's form; several hosts with ``?target_session_attrs=read-write`` find a promoted
    standby): every shard's state, the shard layout and the secrets Herald makes live in
    PostgreSQL, shards run on any node, and a second Herald on the same database is a standby
    (``/healthz`` 503 ``{"status": "standby"}``) that takes over when the active one stops
    (docs/deploy.md)."""
    shards: Count = 4
    """Queue shards; a notification's shard follows from ``user.uid``. Recorded in the data dir
    (or database) on first start: another count is refused, as it would orphan stored
    notifications."""
    shards_per_process: Count = 4
    """Shards one queue process hosts (``actors.queue``): each Ray worker process costs ~80 MiB
    at rest, and on a small box one core serves every shard's calls with room to spare. 1 where
    each shard should fail and move alone (a cluster's queue nodes)."""
    shard_cpus: Annotated[float, Field(ge=0)] = 0.0
    """CPU each queue shard asks of its node (0: anywhere, even a node that offers none). With
    PostgreSQL, more than 0 keeps shards off a head that offers no CPU."""
    shard_lease_seconds: Seconds = 15.0
    """With PostgreSQL: a shard owner, or the active deployment, that has not renewed its lease
    for this long is replaced."""
    deployment_id: str | None = None
    """With PostgreSQL: this deployment's name among those sharing the database. Unset: made at
    start."""
    sqlite_synchronous: Annotated[str, BeforeValidator(sync_mode)] = "FULL"
    """Durability of each SQLite commit (``OFF``, ``NORMAL``, ``FULL``, ``EXTRA``). ``FULL``:
    a ``202`` means fsynced to this machine's disk."""
    commit_window_ms: Annotated[float, Field(ge=0, le=1000)] = 0.0
    """Group commit: a shard's changes wait up to this long (ms) to share one transaction with
    other calls' (0: only those of one event-loop round); a full batch commits at once."""
    memory_window: Count = 20_000
    """Live notifications each shard keeps in memory. Beyond it, waiting email, SMS, fax and
    requester callbacks stay on disk only (counted, read back in order as the window empties),
    and so do deferred work and parked browser messages."""
    queue_limit: Count = 2_000_000
    """Live notifications over all shards (callbacks included); over it, 429. A tenant holding
    less than its fair share (the limit over the tenants with live work, at least 1 %) is still
    admitted, up to twice the limit, so one tenant cannot fill the queue for all."""
    queue_limit_bytes: Count = 2 * 1024**3
    """Stored payload bytes queued over all shards, the limit that protects memory; over it,
    429 (fair shares as for ``queue_limit``)."""
    retention_days: Annotated[float, Field(ge=0)] = 7.0
    """Final records and rolled-up log segments older than this are deleted (idempotency claims
    held for another shard are kept at least 395 days: the latest ``send_at``, then the longest
    TTL)."""

    # ---- Ray
    ray_address: str = "local"
    """``local`` starts a Ray instance of Herald's own; ``auto`` or ``ray://…`` joins a running
    cluster."""
    dashboard_port: DashboardPort = 8265
    """Port of the Ray dashboard a local Ray serves on 127.0.0.1 (``serve status``, ``ray job
    submit``); 0: no dashboard (saves about 225 MB and 7 s of start)."""

    # ---- Delivery
    pools: Mapping[str, Annotated[int, Field(ge=0)]] = Field(default_factory=lambda: dict(DEFAULT_POOLS))
    """Channel actors per channel, the minimum (``email=2``: the other channels keep their
    default). A pool at 0 starts its first actor on its first work."""
    pool_max: Mapping[str, Annotated[int, Field(ge=0)]] = Field(
        default_factory=lambda: dict(DEFAULT_POOL_MAX))
    """The most actors a pool may grow to under a backlog (``email=16,sms=8``); a channel not
    named stays at its size (browser pools never grow: a gateway owns its users)."""
    pool_grow_backlog: Count = GROW_BACKLOG_PER_ACTOR
    """A pool grows (up to ``pool_max``) while more notifications than this per actor wait for
    3 s."""
    pool_idle_seconds: Seconds = SHRINK_AFTER_SECONDS
    """A pool shrinks by one actor after this long with nothing waiting and nothing in flight;
    the actor removed is drained for ``attempt_timeout`` + 15 s before it is stopped."""
    channel_cpus: Annotated[float, Field(ge=0)] = 0.05
    """CPU each channel actor asks of its node: a sliver, as it mostly waits on providers. On an
    autoscaling Ray cluster, grown actors that fit nowhere make it add a node (an actor waiting
    for one is not taken for hung)."""
    channel_concurrency: Count = 256
    """Sends one channel actor keeps in flight, split evenly over the shards. Leased work that
    waits for a provider connection counts (asap goes first there): enough that each exchange
    with a shard carries dozens."""
    lease_seconds: Seconds = 60.0
    """How long a lease on a notification lasts (a visibility timeout); channel actors renew
    the leases of sends in flight every third of it, and one that still expires counts as an
    attempt."""
    lease_batch: Count = 200
    """Most notifications a channel actor leases from one shard in one call."""
    attempt_timeout: Seconds = 45.0
    """Seconds one delivery attempt may take (a slow provider); its lease is renewed meanwhile."""
    max_attempts: Mapping[str, Count] = Field(default_factory=lambda: dict(DEFAULT_MAX_ATTEMPTS))
    """Attempts per channel (``webhook``: requester callbacks) before a notification is
    ``dead``."""
    retry_base_seconds: Backoff = 1.0
    """Backoff after the n-th failed attempt: uniform in [0, min(cap, base·2^(n-1))] (full
    jitter)."""
    retry_cap_seconds: Backoff = 300.0
    """The cap of that backoff."""
    breaker_threshold: Count = 5
    """Consecutive transient failures that open a provider's circuit breaker (callbacks: one
    breaker per tenant and destination host); traffic then moves to the next provider."""
    breaker_cooldown: Backoff = 30.0
    """Seconds an open circuit waits before it lets one probe through (success closes it)."""
    rate_limits: Mapping[str, Annotated[float, Field(gt=0)]] = Field(default_factory=dict)
    """Messages per second per provider, for the whole service (``twilio=50,smtp=500``). Unset:
    unlimited, and no rate-limiter actor runs."""
    recipient_limits: Mapping[str, Annotated[str, AfterValidator(window)]] = Field(default_factory=dict)
    """Per recipient per channel, ``sms=5/60``: at most 5 SMS per number per 60 s; limited
    messages wait."""
    required_categories: str = "OTP"
    """Categories (``OTP`` of ``OTP_SMS``) sent whatever users' preferences say, comma list."""
    capture: Annotated[str, AfterValidator(capture_list)] | None = None
    """Channels delivered to the local capture peers (``herald up`` only): ``email,sms,fax``,
    ``all`` or ``none``. Unset: every channel if no provider is configured, else none. A channel
    with neither provider nor capture is a 422 naming ``type``."""

    # ---- Email
    smtp_url: SmtpUrl | None = secret()
    """The SMTP relay, ``smtp://user:pass@host:port?starttls=1`` or ``smtps://…``. Unset: the
    local capture server (``herald up``)."""
    smtp_from: str = "herald@localhost"
    """Sender of emails without ``details.from``."""
    smtp_pool_size: Count = 8
    """Most connections one channel actor keeps to the relay: it starts with two and adds one
    while sends queue, unless the relay's measured latency says the last one made it send less."""
    smtp_timeout: Seconds = 30.0
    """Seconds an SMTP connect or command may take."""
    bounce_domain: DomainName | None = None
    """Emails go out with the return path ``bounce+{tag}@`` this domain; point its MX at Herald's
    bounce listener (``bounce_port`` on ``host``, run by the Supervisor). A DSN with ``Action:
    failed`` and a 5.x.x status makes that email ``bounced`` and suppresses the address (reason
    ``bounced``), a 4.x.x changes nothing, an ARF complaint suppresses it (``complained``) and
    turns the category off for email. A 5xx at RCPT suppresses the address too. Unset: no
    listener, the envelope sender is ``smtp_from``."""
    bounce_port: Port = 2525
    """Port of the bounce listener (with ``bounce_domain``)."""
    unsubscribe_secret: str | None = secret()
    """Signs the one-click unsubscribe links in emails. Unset: made once and kept in the data dir
    (or database), apart from the browser secret, so that rotating one never breaks the other's
    links; changing it breaks the links in mail already sent."""

    # ---- SMS (Twilio)
    twilio_account_sid: str | None = None
    """Twilio account SID; with ``twilio_auth_token``, SMS goes through Twilio. Unset: the local
    capture API (``herald up``)."""
    twilio_auth_token: str | None = secret()
    """Twilio auth token; it also verifies Twilio's signed webhooks."""
    twilio_base_url: HttpUrl = "https://api.twilio.com"
    """Twilio's API (another Twilio-compatible API may stand in)."""
    twilio_from: str | None = None
    """Sending number of SMS without ``details.from``."""
    twilio_backup_base_url: HttpUrl | None = None
    """A second Twilio-compatible API that SMS move to while the first one's circuit breaker
    is open. Unset: no failover."""
    twilio_backup_account_sid: str | None = None
    """Account SID at the backup (unset: ``twilio_account_sid``)."""
    twilio_backup_auth_token: str | None = secret()
    """Auth token at the backup (unset: ``twilio_auth_token``)."""

    # ---- Fax (Telnyx)
    fax_api_key: str | None = secret()
    """Telnyx API key; with ``fax_connection_id`` and ``fax_from``, fax goes through Telnyx.
    Unset: the local capture API (``herald up``)."""
    fax_base_url: HttpUrl = "https://api.telnyx.com"
    """Telnyx's API."""
    fax_connection_id: str | None = None
    """Telnyx fax connection (application) id."""
    fax_from: str | None = None
    """Sending number of faxes without ``details.from``."""
    fax_public_key: Annotated[str, AfterValidator(ed25519_key)] | None = secret()
    """The base64 ed25519 public key Telnyx shows; verifies its fax webhooks."""

    # ---- Browser
    browser_port: Port = 8001
    """First WebSocket gateway port; each browser actor takes the next."""
    browser_public_url: BrowserUrlTemplate | None = None
    """The URL browsers get for a gateway behind a proxy, ``{node_ip}`` and ``{port}`` filled
    in per gateway, e.g. ``wss://gw.example.com/{node_ip}/{port}/ws``. Unset: ``ws://HOST:PORT/ws``,
    with the IP of the gateway's node when ``host`` is every interface (``0.0.0.0``, ``::``)."""
    browser_secret: str | None = secret()
    """Signs browser tokens. Unset: made once and kept in the data dir (or database)."""
    browser_token_ttl: Seconds = 900.0
    """Seconds a browser token (``POST /v1/browser-tokens``) stays valid."""
    browser_ack_timeout: Seconds = 10.0
    """Seconds a pushed notification waits for the browser's ack; without one it is parked
    until the user's next connection (or its TTL)."""

    # ---- Requester callbacks
    webhook_secrets: Mapping[str, str] = Field(default_factory=dict, repr=False)
    """``tenant1:secret1,…``: the secrets requester callbacks are signed with. Unset for a
    tenant: a random ``whsec_`` secret Herald makes once and keeps in the data dir (or database),
    never the API key; ``herald webhook-secret rotate TENANT`` replaces it."""
    callback_allow: CallbackAllow = CallbackAllow()
    """Hosts and networks a ``callback_url`` may target although not public
    (``127.0.0.1/32,hooks.internal``); loopback, private and link-local are refused otherwise."""

    # ---- Operators
    metrics_token: str | None = secret()
    """The operator's credential for service-wide ``/metrics`` and ``/v1/queue`` (a tenant key
    sees its own figures only)."""
    admin_key: str | None = secret()
    """The admin console's credential (``/admin``, ``/v1/admin/…``; a tenant key there is a
    403); also an operator credential for ``/metrics`` and ``/v1/queue``. Unset in dev mode
    (no ``api_keys``): made once and kept in ``DATA_DIR/admin-key``; else no console."""
    admin_search_scan: Count = SCAN_ROWS
    """Records one shard looks at, at most, for one page of an admin search (in a thread, on a
    read-only connection); a search that finds too few in them answers a shorter page and a
    cursor to go on."""

    # ---- Delivery log and analytics
    log_rotate_seconds: Seconds = 60.0
    """A delivery-log segment closes after this long..."""
    log_rotate_rows: Count = 100_000
    """...or this many rows, whichever comes first."""
    rollup_seconds: Annotated[float, Field(ge=0)] = 300.0
    """``herald up`` rolls the delivery log into Parquet this often (0: never)."""
    analytics_uri: Annotated[str, AfterValidator(analytics_location)] | None = secret()
    """Where the rollup writes Parquet and ``herald report`` reads it: a directory or a
    ``pyarrow.fs`` URI (``s3://bucket/prefix``, ``gs://…``, ``file:///…``; object stores with
    ``database_url``, so that the rollup needs no node's disk). Unset: ``DATA_DIR/analytics``."""

    def __init__(self, **values: Any) -> None:
        # Keywords only (tests, with_overrides): BaseSettings.__init__ would also consult the
        # environment. load_settings reads herald.toml and HERALD_* itself, see there.
        BaseModel.__init__(self, **values)

    def retry_policy(self, channel: Channel) -> RetryPolicy:
        return self.retry_policy_for(channel.value)

    def retry_policy_for(self, lane: str) -> RetryPolicy:
        """Retry policy of a channel or internal lane (``WEBHOOK``)."""
        return RetryPolicy(base_seconds=self.retry_base_seconds, cap_seconds=self.retry_cap_seconds,
                           max_attempts=self.max_attempts.get(lane.lower(), 5))

    def base_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"

    def webhook_secret(self, tenant: str) -> str:
        """The operator's ``HERALD_WEBHOOK_SECRETS`` entry for ``tenant``, else "" (the tenant
        then signs with the secret Herald made for it in the data dir)."""
        return self.webhook_secrets.get(tenant, "")

    def channels_configured(self) -> list[Channel]:
        """The channels this configuration can deliver (each gets a pool): those with a provider
        (the launcher points captured channels at the local peers), browser and callbacks."""
        channels = [Channel.BROWSER, Channel.WEBHOOK]
        if self.smtp_url:
            channels.append(Channel.EMAIL)
        if self.twilio_account_sid and self.twilio_auth_token:
            channels.append(Channel.SMS)
        if self.fax_api_key:
            channels.append(Channel.FAX)
        return channels

    def capture_channels(self) -> frozenset[str]:
        """Channels delivered to the local capture peers (``HERALD_CAPTURE``). Unset: every
        channel when no provider at all is configured (the newcomer's ``make run``), else none."""
        if self.capture is not None:
            return frozenset(filter(None, self.capture.split(",")))
        if self.smtp_url or self.twilio_account_sid or self.fax_api_key:
            return frozenset()
        return frozenset(CAPTURABLE)

    def smtp_target(self) -> SmtpTarget | None:
        return SmtpTarget.from_url(self.smtp_url) if self.smtp_url else None

    def with_overrides(self, **changes: Any) -> Settings:
        """A validated copy with ``changes``; a bad one raises ConfigError naming the field."""
        values = {name: getattr(self, name) for name in type(self).model_fields}
        try:
            return type(self)(**(values | changes))
        except ValidationError as exc:
            raise config_error(exc, {}, type(self).model_fields) from None
