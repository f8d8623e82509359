"""Configuration: defaults, ``herald.toml`` and ``HERALD_*`` layering, and one-line errors."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from herald.callback_policy import CallbackAllow
from herald.channels import Channel
from herald.config import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_POOLS,
    Settings,
    SmtpTarget,
    load_settings,
    parse_api_keys,
)
from herald.errors import ConfigError, HeraldError


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "herald.toml"
    path.write_text(text)
    return path


def _error(env: dict[str, str], config_file: Path | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(env=env, config_file=config_file)
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.fixture(autouse=True)
def _no_stray_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run where no herald.toml exists, so the default file never leaks into a test."""
    monkeypatch.chdir(tmp_path)


# ---- defaults and formats -----------------------------------------------------------------

def test_defaults() -> None:
    settings = load_settings(env={})
    assert settings == Settings()
    assert settings.port == 8000 and settings.host == "127.0.0.1"
    assert settings.data_dir == Path(".herald")
    assert settings.pools == DEFAULT_POOLS and settings.max_attempts == DEFAULT_MAX_ATTEMPTS
    assert settings.api_keys == {} and settings.rate_limits == {} and settings.webhook_secrets == {}
    assert settings.smtp_url is None and settings.smtp_target() is None
    assert settings.sqlite_synchronous == "FULL"
    assert settings.channels_configured() == ["BROWSER", "WEBHOOK"]  # EMAIL needs an SMTP URL
    assert settings.base_url() == "http://127.0.0.1:8000"


def test_env_formats() -> None:
    settings = load_settings(env={
        "HERALD_API_KEYS": "acme:k1, globex:k2,",
        "HERALD_POOLS": "email=4,SMS=2",
        "HERALD_MAX_ATTEMPTS": "sms=10",
        "HERALD_RATE_LIMITS": "twilio=50,smtp=500.5",
        "HERALD_RECIPIENT_LIMITS": "sms=5/60",
        "HERALD_WEBHOOK_SECRETS": "acme:s1,globex:s2",
        "HERALD_RETRY_BASE_SECONDS": "0.25",
        "HERALD_DATA_DIR": "/var/lib/herald",
        "HERALD_PORT": "9000",
        "HERALD_SQLITE_SYNCHRONOUS": "normal",
        "HERALD_PUBLIC_URL": "https://herald.example.com",
    })
    assert settings.api_keys == {"k1": "acme", "k2": "globex"}
    assert settings.pools == {**DEFAULT_POOLS, "email": 4, "sms": 2}  # merged over the defaults
    assert settings.max_attempts == {**DEFAULT_MAX_ATTEMPTS, "sms": 10}
    assert settings.rate_limits == {"twilio": 50.0, "smtp": 500.5}
    assert settings.recipient_limits == {"sms": "5/60"}
    assert settings.webhook_secrets == {"acme": "s1", "globex": "s2"}
    assert settings.webhook_secret("globex") == "s2"
    assert settings.retry_base_seconds == 0.25
    assert settings.data_dir == Path("/var/lib/herald") and isinstance(settings.data_dir, Path)
    assert settings.port == 9000
    assert settings.sqlite_synchronous == "NORMAL"
    assert settings.base_url() == "https://herald.example.com"
    assert settings.retry_policy(Channel.SMS).max_attempts == 10
    assert settings.retry_policy_for("WEBHOOK").max_attempts == 8


def test_empty_variables_and_other_names_are_ignored() -> None:
    settings = load_settings(env={"HERALD_PORT": "", "HERALD_POOLS": "", "PORT": "1", "HERALD_NOPE": "x"})
    assert settings == Settings()


def test_bool_words_follow_the_usual_spelling() -> None:
    # No Settings field is boolean today; the one yes/no switch is the SMTP URL's starttls.
    for word, expected in (("1", True), ("true", True), ("yes", True), ("0", False), ("no", False)):
        settings = load_settings(env={"HERALD_SMTP_URL": f"smtp://mail.local:587?starttls={word}"})
        target = settings.smtp_target()
        assert target is not None and target.starttls is expected


def test_smtp_urls() -> None:
    target = SmtpTarget.from_url("smtps://bob:p%40ss@mail.example.com")
    assert (target.host, target.port, target.use_tls) == ("mail.example.com", 465, True)
    assert (target.username, target.password) == ("bob", "p@ss")
    assert "p@ss" not in repr(target)
    plain = load_settings(env={"HERALD_SMTP_URL": "smtp://127.0.0.1:2525"}).smtp_target()
    assert plain == SmtpTarget(host="127.0.0.1", port=2525)


def test_parse_api_keys() -> None:
    assert parse_api_keys("t1:k1,t2:k:with:colons") == {"k1": "t1", "k:with:colons": "t2"}
    with pytest.raises(ValueError, match="tenant:key"):
        parse_api_keys("t1:k1,oops")


# ---- the TOML file ------------------------------------------------------------------------

TOML = """
port = 8100
shards = 2
data_dir = "/srv/herald"
smtp_url = "smtp://mail.local:25"

[api_keys]
acme = "key-from-file"

[pools]
email = 5

[rate_limits]
twilio = 20
"""


def test_toml_values(tmp_path: Path) -> None:
    settings = load_settings(env={}, config_file=_toml(tmp_path, TOML))
    assert settings.port == 8100 and settings.shards == 2
    assert settings.data_dir == Path("/srv/herald")
    assert settings.api_keys == {"key-from-file": "acme"}
    assert settings.pools == {**DEFAULT_POOLS, "email": 5}
    assert settings.rate_limits == {"twilio": 20.0}


def test_default_file_and_herald_config(tmp_path: Path) -> None:
    _toml(tmp_path, "port = 8200\n")  # herald.toml in the working directory
    assert load_settings(env={}).port == 8200
    other = tmp_path / "other.toml"
    other.write_text("port = 8300\n")
    assert load_settings(env={"HERALD_CONFIG": str(other)}).port == 8300
    assert "HERALD_CONFIG: no such file" in _error({"HERALD_CONFIG": str(tmp_path / "missing.toml")})


def test_env_beats_toml(tmp_path: Path) -> None:
    settings = load_settings(
        env={"HERALD_PORT": "8400", "HERALD_POOLS": "sms=3", "HERALD_API_KEYS": "globex:k2"},
        config_file=_toml(tmp_path, TOML),
    )
    assert settings.port == 8400
    assert settings.shards == 2  # not in the environment: the file's value stays
    assert settings.pools == {**DEFAULT_POOLS, "email": 5, "sms": 3}  # file and env both merged
    assert settings.api_keys == {"k2": "globex"}


def test_unknown_toml_key(tmp_path: Path) -> None:
    message = _error({}, _toml(tmp_path, 'prot = 8000\napi_key = "s3cret"\n'))
    assert message.endswith("herald.toml: prot: unknown key (did you mean port?)")
    assert "s3cret" not in message


def test_broken_toml(tmp_path: Path) -> None:
    assert "not readable TOML" in _error({}, _toml(tmp_path, "port = = 1\n"))


def test_toml_errors_name_the_key_as_written(tmp_path: Path) -> None:
    message = _error({}, _toml(tmp_path, "[pools]\nemail = -1\n"))
    assert message.endswith("herald.toml: pools.email: must be >= 0 (got -1)")
    message = _error({}, _toml(tmp_path, "port = 70000\n"))
    assert message.endswith("herald.toml: port: must be an integer from 1 to 65535 (got 70000)")
    message = _error({}, _toml(tmp_path, "[api_keys]\nacme = 5\n"))
    assert message.endswith("herald.toml: api_keys: each tenant must map to a non-empty key string")
    message = _error({}, _toml(tmp_path, "pools = 3\n"))
    assert "herald.toml: pools: must be a table" in message


# ---- bad values ---------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "value", "expected"), [
    ("PORT", "80x0", "HERALD_PORT: must be an integer from 1 to 65535 (got '80x0')"),
    ("PORT", "0", "HERALD_PORT: must be an integer from 1 to 65535 (got '0')"),
    ("BROWSER_PORT", "65536", "HERALD_BROWSER_PORT: must be an integer from 1 to 65535 (got '65536')"),
    ("SHARDS", "0", "HERALD_SHARDS: must be >= 1 (got '0')"),
    ("SHARDS", "four", "HERALD_SHARDS: must be an integer (got 'four')"),
    ("SQLITE_SYNCHRONOUS", "fast",
     "HERALD_SQLITE_SYNCHRONOUS: must be one of OFF, NORMAL, FULL, EXTRA (got 'fast')"),
    ("SMTP_URL", "http://x", "HERALD_SMTP_URL: must start with smtp:// or smtps:// (got 'http://x')"),
    ("SMTP_URL", "smtp://", "HERALD_SMTP_URL: must name a host"),
    ("SMTP_URL", "smtp://mail:99999", "HERALD_SMTP_URL: must have a port from 1 to 65535"),
    ("POOLS", "email=-1", "HERALD_POOLS: email: must be >= 0 (got '-1')"),
    ("POOLS", "email", "HERALD_POOLS: entries must look like channel=N (got 'email')"),
    ("MAX_ATTEMPTS", "sms=0", "HERALD_MAX_ATTEMPTS: sms: must be >= 1 (got '0')"),
    ("RATE_LIMITS", "twilio=-5", "HERALD_RATE_LIMITS: twilio: must be > 0 (got '-5')"),
    ("RATE_LIMITS", "twilio=fast", "HERALD_RATE_LIMITS: twilio: must be a number (got 'fast')"),
    ("RECIPIENT_LIMITS", "sms=5", "HERALD_RECIPIENT_LIMITS: sms: must be N/SECONDS"),
    ("RECIPIENT_LIMITS", "sms=x/60", "HERALD_RECIPIENT_LIMITS: sms: must be N/SECONDS"),
    ("TWILIO_BASE_URL", "ftp://x", "HERALD_TWILIO_BASE_URL: must be an http:// or https:// URL"),
    ("FAX_BASE_URL", "api.telnyx.com", "HERALD_FAX_BASE_URL: must be an http:// or https:// URL"),
    ("PUBLIC_URL", "https://", "HERALD_PUBLIC_URL: must be an http:// or https:// URL"),
    ("LEASE_SECONDS", "0", "HERALD_LEASE_SECONDS: must be > 0 (got '0')"),
    ("LEASE_SECONDS", "-3", "HERALD_LEASE_SECONDS: must be > 0 (got '-3')"),
    ("SMTP_TIMEOUT", "soon", "HERALD_SMTP_TIMEOUT: must be a number (got 'soon')"),
])
def test_bad_values_name_the_variable(name: str, value: str, expected: str) -> None:
    message = _error({"HERALD_" + name: value})
    assert message.startswith(expected)


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("API_KEYS", "acme:topsecret1,topsecret2", "HERALD_API_KEYS: entries must look like tenant:key"),
    ("API_KEYS", "acme:", "HERALD_API_KEYS: entries must look like tenant:key"),
    ("WEBHOOK_SECRETS", "acme=topsecret1", "HERALD_WEBHOOK_SECRETS: entries must look like tenant:secret"),
    ("SMTP_URL", "http://bob:topsecret1@mail", "HERALD_SMTP_URL: must start with smtp:// or smtps://"),
    ("SMTP_URL", "smtp://bob:topsecret1@", "HERALD_SMTP_URL: must name a host"),
    ("PUBLIC_URL", "ftp://bob:topsecret1@host", "HERALD_PUBLIC_URL: must be an http:// or https:// URL"),
])
def test_bad_secrets_are_not_repeated(name: str, value: str, expected: str) -> None:
    message = _error({"HERALD_" + name: value})
    assert message.startswith(expected)
    assert "topsecret" not in message


def test_first_bad_value_wins_and_errors_are_value_errors() -> None:
    with pytest.raises(ValueError, match="HERALD_PORT"):
        load_settings(env={"HERALD_PORT": "x", "HERALD_SHARDS": "0"})
    assert issubclass(ConfigError, HeraldError)


# ---- construction, copies, pickling, repr -------------------------------------------------

def test_keyword_construction_ignores_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HERALD_PORT", "1234")
    monkeypatch.setenv("HERALD_POOLS", "email=9")
    _toml(tmp_path, "shards = 9\n")
    settings = Settings(data_dir=tmp_path, api_keys={"k": "acme"}, recipient_limits={"sms": "3/60"},
                        pools={"email": 0, "sms": 1})
    assert settings.port == 8000 and settings.shards == 4
    assert settings.pools == {"email": 0, "sms": 1}  # keywords replace, they do not merge
    assert Settings().port == 8000
    # load_settings(env=…) reads that mapping only, never os.environ:
    assert load_settings(env={}).port == 8000
    assert load_settings().port == 1234  # the real environment, when none is given


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValueError):
        settings.port = 1  # type: ignore[misc]


def test_with_overrides() -> None:
    base = Settings(port=1234)
    changed = base.with_overrides(smtp_url="smtps://mail.example.com", sqlite_synchronous="off")
    assert changed.port == 1234 and changed.sqlite_synchronous == "OFF"
    assert base.smtp_url is None  # the original is untouched
    target = changed.smtp_target()
    assert target is not None and target.use_tls
    with pytest.raises(ConfigError, match=r"^shards: must be >= 1 \(got 0\)$"):
        base.with_overrides(shards=0)
    with pytest.raises(ConfigError, match="prot: unknown key"):
        base.with_overrides(prot=1)


def test_pickle_round_trip() -> None:
    settings = load_settings(env={"HERALD_API_KEYS": "acme:k1", "HERALD_POOLS": "email=3",
                                  "HERALD_DATA_DIR": "/tmp/h"})
    copy = pickle.loads(pickle.dumps(settings))
    assert copy == settings and copy.data_dir == Path("/tmp/h") and copy.api_keys == {"k1": "acme"}


def test_repr_hides_secrets() -> None:
    settings = Settings(
        api_keys={"key-secret-1": "acme"}, smtp_url="smtp://bob:pw-secret-2@mail", public_url=None,
        twilio_auth_token="tok-secret-3", twilio_backup_auth_token="tok-secret-4",
        fax_api_key="fax-secret-5", browser_secret="br-secret-7",
        webhook_secrets={"acme": "wh-secret-8"},
    )
    text = repr(settings) + str(settings)
    assert "secret-" not in text
    assert "port=8000" in text


class _NoEnviron(dict[str, str]):
    """Stands in for os.environ and fails the test if anything looks inside."""

    def _refuse(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("os.environ was read")

    __getitem__ = __iter__ = __len__ = __contains__ = get = items = keys = copy = _refuse  # type: ignore[assignment]


def test_explicit_env_never_touches_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.setattr(os, "environ", _NoEnviron())
    assert load_settings(env={"HERALD_PORT": "8500"}).port == 8500
    assert Settings(port=1).with_overrides(shards=2).shards == 2


# ---- delivery log and rollup --------------------------------------------------------------

def test_log_and_rollup_defaults_and_env() -> None:
    defaults = Settings()
    assert (defaults.log_rotate_seconds, defaults.log_rotate_rows) == (60.0, 100_000)
    assert (defaults.retention_days, defaults.rollup_seconds) == (7.0, 300.0)
    settings = load_settings(env={"HERALD_LOG_ROTATE_SECONDS": "5", "HERALD_LOG_ROTATE_ROWS": "1000",
                                  "HERALD_RETENTION_DAYS": "0.5", "HERALD_ROLLUP_SECONDS": "0"})
    assert (settings.log_rotate_seconds, settings.log_rotate_rows) == (5.0, 1000)
    assert (settings.retention_days, settings.rollup_seconds) == (0.5, 0.0)  # 0: rollup off


def test_log_and_rollup_in_toml(tmp_path: Path) -> None:
    text = "log_rotate_seconds = 30\nretention_days = 14\nrollup_seconds = 60\n"
    settings = load_settings(env={}, config_file=_toml(tmp_path, text))
    assert (settings.log_rotate_seconds, settings.retention_days, settings.rollup_seconds) == (
        30.0, 14.0, 60.0)


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("LOG_ROTATE_SECONDS", "0", "HERALD_LOG_ROTATE_SECONDS: must be > 0 (got '0')"),
    ("LOG_ROTATE_ROWS", "0", "HERALD_LOG_ROTATE_ROWS: must be >= 1 (got '0')"),
    ("LOG_ROTATE_ROWS", "1e5", "HERALD_LOG_ROTATE_ROWS: must be an integer (got '1e5')"),
    ("RETENTION_DAYS", "-1", "HERALD_RETENTION_DAYS: must be >= 0 (got '-1')"),
    ("ROLLUP_SECONDS", "-5", "HERALD_ROLLUP_SECONDS: must be >= 0 (got '-5')"),
    ("ROLLUP_SECONDS", "often", "HERALD_ROLLUP_SECONDS: must be a number (got 'often')"),
])
def test_bad_log_and_rollup_values(name: str, value: str, expected: str) -> None:
    assert _error({"HERALD_" + name: value}).startswith(expected)


# ---- fax receipts: Telnyx's public key ----------------------------------------------------

_TELNYX_KEY = "kB0yl5LwRc4/TUfhsyCcFYJjt6+zx1l8bo9KtAA1yAA="  # 32 bytes, as the portal shows one


def test_fax_public_key_is_read_and_checked() -> None:
    assert Settings().fax_public_key is None
    settings = load_settings(env={"HERALD_FAX_PUBLIC_KEY": f" {_TELNYX_KEY}\n"})
    assert settings.fax_public_key == _TELNYX_KEY  # stripped, as pasted from the portal
    assert _TELNYX_KEY not in repr(settings)
    for wrong in ("KEY-not-a-key", _TELNYX_KEY[:-4], "AAAA" + _TELNYX_KEY, "é" * 44):
        message = _error({"HERALD_FAX_PUBLIC_KEY": wrong})
        assert message == ("HERALD_FAX_PUBLIC_KEY: must be the base64 ed25519 public key "
                           "(32 bytes) Telnyx shows")  # never quotes what was pasted


def test_fax_webhook_secret_is_gone(tmp_path: Path) -> None:
    # The HMAC scheme is replaced by Telnyx's ed25519 signatures: a leftover key is an error.
    assert "fax_webhook_secret" not in Settings.model_fields
    message = _error({}, _toml(tmp_path, 'fax_webhook_secret = "s"\n'))
    assert "fax_webhook_secret: unknown key" in message


# ---- requester callbacks: HERALD_CALLBACK_ALLOW --------------------------------------------

def test_callback_allow_defaults_to_nothing_and_reads_hosts_and_cidrs(tmp_path: Path) -> None:
    assert Settings().callback_allow == CallbackAllow() == load_settings(env={}).callback_allow
    settings = load_settings(env={"HERALD_CALLBACK_ALLOW": "127.0.0.1/32, Hooks.Internal.,fd00::/8,"})
    allow = settings.callback_allow
    assert allow.hosts == {"hooks.internal"}
    assert [str(network) for network in allow.networks] == ["127.0.0.1/32", "fd00::/8"]
    from_file = load_settings(env={}, config_file=_toml(
        tmp_path, 'callback_allow = ["127.0.0.1/32", "hooks.internal", "fd00::/8"]\n'))
    assert from_file.callback_allow == allow
    as_text = _toml(tmp_path, 'callback_allow = "10.0.0.0/8"\n')
    assert str(load_settings(env={}, config_file=as_text).callback_allow) == "10.0.0.0/8"
    # Keywords, copies and pickles keep the typed value:
    assert Settings(callback_allow="127.0.0.1/32,hooks.internal,fd00::/8").callback_allow == allow
    assert settings.with_overrides(port=1).callback_allow == allow
    assert pickle.loads(pickle.dumps(settings)) == settings
    assert settings.model_dump()["callback_allow"] == "hooks.internal,127.0.0.1/32,fd00::/8"


def test_a_bad_callback_allow_entry_is_named() -> None:
    assert _error({"HERALD_CALLBACK_ALLOW": "hooks.internal,10.0.0.0/33"}) == (
        "HERALD_CALLBACK_ALLOW: entry 2 is neither a host name nor an address or CIDR"
        " (got 'hooks.internal,10.0.0.0/33')")
    assert "entry 1" in _error({"HERALD_CALLBACK_ALLOW": "http://hooks.internal"})
    with pytest.raises(ConfigError, match=r"^callback_allow: must be host names or CIDRs"):
        Settings().with_overrides(callback_allow=5)


def test_capture_is_explicit() -> None:
    """HERALD_CAPTURE names the channels that use the local peers; unset, every channel is
    captured only when no provider at all is configured."""
    assert Settings().capture_channels() == {"email", "sms", "fax"}
    assert Settings(smtp_url="smtp://mail.example.com:25").capture_channels() == set()
    assert load_settings(env={"HERALD_CAPTURE": "sms,email"}).capture_channels() == {"sms", "email"}
    assert load_settings(env={"HERALD_CAPTURE": "none"}).capture_channels() == set()
    assert load_settings(env={"HERALD_CAPTURE": "all"}).capture_channels() == {"email", "sms", "fax"}
    with pytest.raises(ConfigError, match="HERALD_CAPTURE"):
        load_settings(env={"HERALD_CAPTURE": "pigeon"})
    channels = Settings(smtp_url="smtp://mail.example.com:25").channels_configured()
    assert [c.value for c in channels] == ["BROWSER", "WEBHOOK", "EMAIL"]


def test_the_admin_search_scan_budget() -> None:
    assert Settings().admin_search_scan == 20_000
    assert load_settings(env={"HERALD_ADMIN_SEARCH_SCAN": "500"}).admin_search_scan == 500
    with pytest.raises(ConfigError, match="HERALD_ADMIN_SEARCH_SCAN"):
        load_settings(env={"HERALD_ADMIN_SEARCH_SCAN": "0"})


def test_the_analytics_uri_is_a_directory_or_a_pyarrow_uri_and_never_quoted() -> None:
    assert Settings().analytics_uri is None  # DATA_DIR/analytics
    for where in ("/srv/herald/analytics", "reports", "file:///srv/a", "s3://bucket/herald",
                  "gs://bucket", "s3://key:secret@bucket/herald?region=eu-west-1"):
        assert load_settings(env={"HERALD_ANALYTICS_URI": where}).analytics_uri == where
    assert "secret" not in repr(load_settings(env={"HERALD_ANALYTICS_URI": "s3://k:secret@b"}))
    for bad, problem in (("http://bucket/x", "must be a directory or a URI of file, s3, gs"),
                         ("file://relative/x", "a file:// URI needs an absolute path"),
                         ("s3://key:secret@", "needs a bucket: s3://bucket/prefix")):
        error = _error({"HERALD_ANALYTICS_URI": bad})
        assert error.startswith(f"HERALD_ANALYTICS_URI: {problem}") and "secret" not in error
