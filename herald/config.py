"""Herald's configuration: one typed, frozen object, loaded once from ``herald.toml`` and ``HERALD_*``.

Precedence: defaults < ``herald.toml`` (or the file in ``HERALD_CONFIG``) < environment. ``Settings``
(``herald.settings``, every setting with its doc) is a pydantic-settings model and does all the
checking; ``load_settings`` reads the two sources
itself so that a bad value stops start-up with a ``ConfigError`` naming it the way its author wrote
it (``HERALD_PORT: …`` or ``herald.toml: port: …``). Nothing else in Herald reads ``os.environ``.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import EnvSettingsSource, TomlConfigSettingsSource

from herald.config_errors import Origin, config_error
from herald.config_types import SmtpTarget
from herald.errors import ConfigError
from herald.settings import DEFAULT_MAX_ATTEMPTS, DEFAULT_POOL_MAX, DEFAULT_POOLS, Settings

__all__ = ["DEFAULT_MAX_ATTEMPTS", "DEFAULT_POOLS", "DEFAULT_POOL_MAX", "ConfigError", "Settings",
           "SmtpTarget", "load_settings", "parse_api_keys"]


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
        raise config_error(exc, origins, Settings.model_fields) from None
