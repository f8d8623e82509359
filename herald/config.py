"""Herald's configuration: one typed, frozen object, loaded once from ``herald.toml`` and ``HERALD_*``.

Precedence: defaults < ``herald.toml`` (or the file in ``HERALD_CONFIG``) < environment. ``Settings``
is a pydantic-settings model and does all the checking; ``load_settings`` reads the two sources
itself so that a bad value stops start-up with a ``ConfigError`` naming it the way its author wrote
it (``HERALD_PORT: …`` or ``herald.toml: port: …``). Nothing else in Herald reads ``os.environ``.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from herald.callback_policy import CallbackAllow
from herald.channels import Channel
from herald.config_types import (
    CAPTURABLE,
    Backoff,
    BrowserUrlTemplate,
    Count,
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
from herald.errors import ConfigError
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

    # case_sensitive=False: the env source then matches HERALD_PORT to ``port``.
    model_config = SettingsConfigDict(frozen=True, extra="forbid", env_prefix="HERALD_", case_sensitive=False)

    host: str = "127.0.0.1"
    port: Port = 8000
    data_dir: Path = Path(".herald")
    shards: Count = 4
    #: API key → tenant. Empty means "make a dev key" (``herald up``).
    api_keys: Mapping[str, str] = Field(default_factory=dict, repr=False)
    pools: Mapping[str, Annotated[int, Field(ge=0)]] = Field(default_factory=lambda: dict(DEFAULT_POOLS))
    #: The most actors a pool may grow to under a backlog (``email=16,sms=8``); unset: its size.
    pool_max: Mapping[str, Annotated[int, Field(ge=0)]] = Field(
        default_factory=lambda: dict(DEFAULT_POOL_MAX))
    #: A pool grows while more than this many notifications per actor wait...
    pool_grow_backlog: Count = GROW_BACKLOG_PER_ACTOR
    #: ...and shrinks by one actor after this long with nothing waiting.
    pool_idle_seconds: Seconds = SHRINK_AFTER_SECONDS
    #: Records one shard looks at, at most, for one page of an admin search.
    admin_search_scan: Count = SCAN_ROWS
    #: CPU a channel actor asks of its node: a sliver by default, as it mostly waits on
    #: providers. On a cluster, actors that do not fit are the demand the autoscaler adds nodes for.
    channel_cpus: Annotated[float, Field(ge=0)] = 0.05
    #: CPU a queue shard asks of its node (0: anywhere, even a node that offers no CPU). With
    #: PostgreSQL shards may run on any node; asking CPU keeps them off a head that offers none.
    shard_cpus: Annotated[float, Field(ge=0)] = 0.0
    max_attempts: Mapping[str, Count] = Field(default_factory=lambda: dict(DEFAULT_MAX_ATTEMPTS))
    retry_base_seconds: Backoff = 1.0
    retry_cap_seconds: Backoff = 300.0
    lease_seconds: Seconds = 60.0
    lease_batch: Count = 200
    #: Sends one channel actor keeps in flight, split evenly over the shards. Leased work that
    #: waits for a provider connection counts (asap goes first there): enough that each
    #: exchange with a shard carries dozens (``actors.channels``).
    channel_concurrency: Count = 256
    max_body_bytes: Count = 8 * 1024 * 1024
    max_batch: Count = 1000
    queue_limit: Count = 2_000_000
    #: Live notifications a shard keeps in memory; beyond, email/SMS/fax wait on disk only.
    memory_window: Count = 20_000
    #: Bytes of stored payloads queued, over all shards: the limit that protects memory.
    queue_limit_bytes: Count = 2 * 1024**3
    #: Channels that use the local capture peers: ``email,sms,fax``, ``all`` or ``none``.
    capture: Annotated[str, AfterValidator(capture_list)] | None = None
    #: The operator's credential for service-wide ``/metrics`` and ``/v1/queue`` (tenant keys see
    #: their own figures only).
    metrics_token: str | None = secret()
    #: The admin console's credential (``/admin``, ``/v1/admin/…``); it also acts as the operator
    #: credential. Unset: ``herald up`` in dev mode makes one in the data dir; else no console.
    admin_key: str | None = secret()
    url: HttpUrl | None = None  #: Where ``herald send/status/cancel/retry/queue`` go; unset: here.
    key: str | None = secret()  #: Their API key; unset: the first of ``api_keys``, else the dev key.
    #: ``?wait`` requests one tenant may hold open at once (per intake replica).
    max_waits_per_tenant: Count = 100
    #: One delivery attempt may take this long (a slow provider); the lease is renewed meanwhile.
    attempt_timeout: Seconds = 45.0
    sqlite_synchronous: Annotated[str, BeforeValidator(sync_mode)] = "FULL"
    #: Unset: each shard in a SQLite file of the data dir. ``postgresql://user:pass@host:port/db``
    #: (any libpq URL, several hosts with ``target_session_attrs=read-write`` included): every
    #: shard's state in that database, shards placed anywhere, a second deployment a standby.
    database_url: Annotated[str, AfterValidator(postgres_url)] | None = secret()
    #: Group commit: a shard's changes wait up to this long (ms) to share one transaction with
    #: other calls' (0: only those of one event-loop round); a full batch commits at once.
    commit_window_ms: Annotated[float, Field(ge=0, le=1000)] = 0.0
    #: A shard (or deployment) owner that has not renewed for this long is replaced.
    shard_lease_seconds: Seconds = 15.0
    #: Who this deployment is among those sharing ``database_url`` (default: made at start).
    deployment_id: str | None = None
    intake_replicas: Count = 1
    #: ``local`` starts a Ray instance of our own; ``auto`` or ``ray://…`` joins a cluster.
    ray_address: str = "local"
    #: Port of the Ray dashboard a local Ray serves on 127.0.0.1 (``serve status``, ``ray job
    #: submit``); 0: no dashboard.
    dashboard_port: Annotated[
        int, Field(ge=0, le=65535, description="an integer from 0 (off) to 65535")] = 8265
    smtp_url: SmtpUrl | None = secret()
    smtp_from: str = "herald@localhost"
    smtp_pool_size: Count = 8
    smtp_timeout: Seconds = 30.0
    #: Emails go out with the return path ``bounce+{tag}@`` this domain, whose MX is Herald's bounce
    #: listener (``bounce_port``, on ``host``); unset: no VERP, the envelope sender is ``smtp_from``.
    bounce_domain: DomainName | None = None
    bounce_port: Port = 2525
    #: Where providers post receipts (Twilio StatusCallback, fax webhook): Herald's public URL.
    public_url: HttpUrl | None = None
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = secret()
    twilio_base_url: HttpUrl = "https://api.twilio.com"
    twilio_from: str | None = None
    #: A second Twilio-compatible account to fail over to (same credentials unless given).
    twilio_backup_base_url: HttpUrl | None = None
    twilio_backup_account_sid: str | None = None
    twilio_backup_auth_token: str | None = secret()
    fax_api_key: str | None = secret()
    fax_base_url: HttpUrl = "https://api.telnyx.com"
    fax_connection_id: str | None = None
    fax_from: str | None = None
    fax_public_key: Annotated[str, AfterValidator(ed25519_key)] | None = secret()
    browser_port: Port = 8001
    browser_secret: str | None = secret()
    browser_token_ttl: Seconds = 900.0
    browser_ack_timeout: Seconds = 10.0
    #: The WebSocket URL browsers are given for a gateway behind a proxy, ``{node_ip}`` and
    #: ``{port}`` filled in per gateway. Unset: ``ws://<address it binds, or its node's IP when
    #: it binds every interface>:<port>/ws``.
    browser_public_url: BrowserUrlTemplate | None = None
    #: Signs one-click unsubscribe links (``herald.unsubscribe_tokens``); made once like the
    #: browser secret, but its own: a link in a mail must keep working for weeks, so rotating
    #: the browser secret (its tokens live minutes) must not break every link ever sent.
    unsubscribe_secret: str | None = secret()
    #: Messages per second per provider name (``twilio=50,smtp=500``); absent = unlimited.
    rate_limits: Mapping[str, Annotated[float, Field(gt=0)]] = Field(default_factory=dict)
    #: Per recipient per channel: ``sms=5/60`` = at most 5 SMS per number per 60 s.
    recipient_limits: Mapping[str, Annotated[str, AfterValidator(window)]] = Field(default_factory=dict)
    #: Tenant → secret for signing requester callbacks (default: a random ``whsec_`` secret per
    #: tenant kept in the data dir, ``herald.webhook_secrets``; never the API key).
    webhook_secrets: Mapping[str, str] = Field(default_factory=dict, repr=False)
    #: Callback hosts and networks allowed although not public (``127.0.0.1/32,hooks.internal``).
    callback_allow: CallbackAllow = CallbackAllow()
    #: Categories (``OTP`` of ``OTP_SMS``) sent whatever users' preferences say (comma list).
    required_categories: str = "OTP"
    breaker_threshold: Count = 5
    breaker_cooldown: Backoff = 30.0
    #: Delivery-log segments close after these seconds or rows; rolled-up ones are deleted after
    #: ``retention_days``; ``herald up`` rolls them into Parquet every ``rollup_seconds`` (0: never).
    log_rotate_seconds: Seconds = 60.0
    log_rotate_rows: Count = 100_000
    retention_days: Annotated[float, Field(ge=0)] = 7.0
    rollup_seconds: Annotated[float, Field(ge=0)] = 300.0
    #: Where the rollup writes Parquet and ``herald report`` reads it: a directory or a pyarrow.fs
    #: URI (``s3://bucket/prefix``: needs ``database_url``); unset: ``<data_dir>/analytics``.
    analytics_uri: Annotated[str, AfterValidator(analytics_location)] | None = secret()

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
            raise _config_error(exc, {}) from None


# ---- loading ------------------------------------------------------------------------------

#: Where a value came from, for messages: (label, how a table key is joined to it), e.g.
#: ("HERALD_POOLS", ": ") → "HERALD_POOLS: email: …"; ("herald.toml: pools", ".") → "….email: …".
Origin = tuple[str, str]
#: Tables merged key by key over the defaults (``HERALD_POOLS="email=4"`` keeps sms at 1),
#: with the shape an entry must have.
_MERGED = {"pools": "channel=N", "pool_max": "channel=N", "max_attempts": "channel=N",
           "rate_limits": "provider=N", "recipient_limits": "channel=N/SECONDS"}
#: Fields in Herald's list formats rather than pydantic-settings' JSON.
_LISTS = frozenset(_MERGED) | {"api_keys", "webhook_secrets", "callback_allow"}


def _pairs(text: str, sep: str, shape: str, show: bool = True) -> list[tuple[str, str]]:
    """``"a=1, b=2"`` → [("a", "1"), ("b", "2")]; blank entries (a trailing comma) are skipped."""
    pairs = []
    for number, entry in enumerate(text.split(","), 1):
        if not entry.strip():
            continue
        name, found, value = (part.strip() for part in entry.partition(sep))
        if not found or not name or not value:
            seen = f"got {entry.strip()!r}" if show else f"entry {number} is not"
            raise ValueError(f"entries must look like {shape} ({seen})")
        pairs.append((name, value))
    return pairs


def parse_api_keys(text: str) -> dict[str, str]:
    """``"tenant1:key1,tenant2:key2"`` → {key: tenant}; a bad entry is named by number only."""
    return {key: tenant for tenant, key in _pairs(text, ":", "tenant:key", show=False)}


def _table(value: Any, example: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"must be a table, e.g. {example}")
    return {str(key): item for key, item in value.items()}


class _HeraldEnv(EnvSettingsSource):
    """``HERALD_*`` from the mapping ``load_settings`` was given; list formats left as text."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ  # before super().__init__, which calls _load_env_vars
        super().__init__(Settings)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        # Only the given mapping, so a test's dict never mixes with the real environment;
        # names lower-cased because the source matches case-insensitively. Empty = unset.
        return {name.lower(): value for name, value in self._environ.items()
                if name.startswith("HERALD_") and value != ""}

    def prepare_field_value(
        self, field_name: str, field: FieldInfo, value: Any, value_is_complex: bool
    ) -> Any:
        if field_name in _LISTS:  # "email=4,sms=2" is not JSON: _add_layer parses it
            return value
        return super().prepare_field_value(field_name, field, value, value_is_complex)


def _add_layer(
    raw: Mapping[str, Any],
    origin_of: Callable[[str], Origin],
    values: dict[str, Any],
    origins: dict[tuple[str, ...], Origin],
) -> None:
    """Lay one source over ``values``, remembering which source set each value and table entry."""
    for name, value in raw.items():
        origin = origin_of(name)
        origins[(name,)] = origin
        if name not in Settings.model_fields:  # only the file can get here; a typo must not pass
            close = difflib.get_close_matches(name, Settings.model_fields, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"{origin[0]}: unknown key{hint}")
        try:
            if name in _MERGED:
                example = f"[{name}] " + _MERGED[name].replace("=", " = ")
                table = (dict(_pairs(value, "=", _MERGED[name])) if isinstance(value, str)
                         else _table(value, example))
                for key, item in table.items():
                    values[name][key.lower()] = item
                    origins[(name, key.lower())] = origin
            elif name == "api_keys":  # the file says tenant = "key"; Settings holds key → tenant
                if isinstance(value, str):
                    values[name] = parse_api_keys(value)
                else:
                    table = _table(value, '[api_keys] tenant1 = "key1"')
                    if not all(isinstance(key, str) and key for key in table.values()):
                        raise ValueError("each tenant must map to a non-empty key string")
                    values[name] = {key: tenant for tenant, key in table.items()}
            elif name == "webhook_secrets":
                values[name] = (dict(_pairs(value, ":", "tenant:secret", show=False))
                                if isinstance(value, str)
                                else _table(value, '[webhook_secrets] tenant1 = "secret"'))
            else:
                values[name] = value
        except ValueError as exc:
            raise ConfigError(f"{origin[0]}: {exc}") from None


def load_settings(env: Mapping[str, str] | None = None, config_file: Path | None = None) -> Settings:
    """Build Settings from defaults, the optional TOML file and ``HERALD_*`` variables.

    The TOML file uses the same names in lower case (``port = 8000``, ``[pools] email = 4``;
    ``[api_keys] tenant1 = "key1"``). ``env`` (default ``os.environ``) is the only environment
    read. Raises ConfigError (a ValueError) on the first bad value, naming where it came from.
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    named = config_file or environ.get("HERALD_CONFIG") or None
    path = Path(named) if named else Path("herald.toml")
    if named and not path.is_file():  # only the default file may be absent
        who = "config_file" if config_file else "HERALD_CONFIG"
        raise ConfigError(f"{who}: no such file {str(path)!r}")
    values: dict[str, Any] = {
        name: dict(Settings.model_fields[name].get_default(call_default_factory=True))
        for name in _MERGED
    }
    origins: dict[tuple[str, ...], Origin] = {}
    if path.is_file():
        try:
            from_file = TomlConfigSettingsSource(Settings, toml_file=path)()
        except (OSError, tomllib.TOMLDecodeError) as exc:  # position only, never the text
            raise ConfigError(f"{path}: not readable TOML ({exc})") from None
        _add_layer(from_file, lambda name: (f"{path}: {name}", "."), values, origins)
    from_env = _HeraldEnv(environ)()
    _add_layer(from_env, lambda name: (f"HERALD_{name.upper()}", ": "), values, origins)
    try:
        return Settings(**values)
    except ValidationError as exc:
        raise _config_error(exc, origins) from None


#: pydantic error type → our wording (``{ge}`` etc. come from the error's context).
_PROBLEMS = {
    "int_parsing": "must be an integer", "int_from_float": "must be an integer",
    "int_type": "must be an integer", "float_parsing": "must be a number",
    "float_type": "must be a number", "string_type": "must be a string",
    "bool_parsing": "must be 1/true/yes or 0/false/no", "bool_type": "must be 1/true/yes or 0/false/no",
    "greater_than_equal": "must be >= {ge}", "greater_than": "must be > {gt}",
    "less_than_equal": "must be <= {le}", "less_than": "must be < {lt}",
    "dict_type": "must be a table of name = value", "path_type": "must be a path",
    "extra_forbidden": "unknown key",
}


def _may_show(name: str, value: Any) -> bool:
    """Whether an error message may quote ``value``: never a secret, nor a URL's credentials."""
    text = str(value)
    if "://" in text and "@" in text:  # user:pass@host (a password may hold "/", so look anywhere)
        return False
    info = Settings.model_fields.get(name)
    # smtp_url is hidden from repr for its credentials; without them it is worth quoting.
    return info is not None and (info.repr or name == "smtp_url")


def _config_error(exc: ValidationError, origins: Mapping[tuple[str, ...], Origin]) -> ConfigError:
    """The first problem as one line: ``WHERE: what is wrong (got VALUE)``."""
    error = exc.errors()[0]
    loc = tuple(str(part) for part in error["loc"])
    name = loc[0]
    label, joiner = origins.get(loc[:2]) or origins.get(loc[:1]) or (name, ".")
    shown = _may_show(name, error["input"])
    if len(loc) > 1 and shown and not loc[-1].startswith("["):  # a table entry, e.g. pools.email
        label += joiner + loc[1]
    info = Settings.model_fields.get(name)
    if error["type"] in ("value_error", "assertion_error"):
        problem = str(error["ctx"]["error"])
    elif info is not None and info.description and len(loc) == 1:
        problem = f"must be {info.description}"
    else:
        # "> 0", not "> 0.0": pydantic hands float fields' bounds back as floats.
        bounds = {key: int(v) if isinstance(v, float) and v.is_integer() else v
                  for key, v in error.get("ctx", {}).items()}
        template = _PROBLEMS.get(error["type"])
        problem = template.format(**bounds) if template else error["msg"]
    got = f" (got {error['input']!r})" if shown else ""
    return ConfigError(f"{label}: {problem}{got}")
