"""A bad setting as one line that names it the way its author wrote it, never quoting a secret.

``HERALD_PORT: must be an integer from 1 to 65535 (got '80x0')`` or ``herald.toml: pools.email:
must be >= 0 (got -1)``: the first problem pydantic found, in Herald's words.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from pydantic.fields import FieldInfo

from herald.config_types import MustBe
from herald.errors import ConfigError

#: Where a value came from, for messages: (label, how a table key is joined to it), e.g.
#: ("HERALD_POOLS", ": ") → "HERALD_POOLS: email: …"; ("herald.toml: pools", ".") → "….email: …".
Origin = tuple[str, str]

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


def _may_show(info: FieldInfo | None, name: str, value: Any) -> bool:
    """Whether an error message may quote ``value``: never a secret, nor a URL's credentials."""
    text = str(value)
    if "://" in text and "@" in text:  # user:pass@host (a password may hold "/", so look anywhere)
        return False
    # smtp_url is hidden from repr for its credentials; without them it is worth quoting.
    return info is not None and (info.repr or name == "smtp_url")


def _must_be(info: FieldInfo | None) -> str | None:
    found = [item.text for item in info.metadata if isinstance(item, MustBe)] if info else []
    return found[0] if found else None


def config_error(
    exc: ValidationError, origins: Mapping[tuple[str, ...], Origin], fields: Mapping[str, FieldInfo]
) -> ConfigError:
    """The first problem as one line: ``WHERE: what is wrong (got VALUE)``."""
    error = exc.errors()[0]
    loc = tuple(str(part) for part in error["loc"])
    name = loc[0]
    label, joiner = origins.get(loc[:2]) or origins.get(loc[:1]) or (name, ".")
    info = fields.get(name)
    shown = _may_show(info, name, error["input"])
    if len(loc) > 1 and shown and not loc[-1].startswith("["):  # a table entry, e.g. pools.email
        label += joiner + loc[1]
    must_be = _must_be(info)
    if error["type"] in ("value_error", "assertion_error"):
        problem = str(error["ctx"]["error"])
    elif must_be and len(loc) == 1:
        problem = f"must be {must_be}"
    else:
        # "> 0", not "> 0.0": pydantic hands float fields' bounds back as floats.
        bounds = {key: int(v) if isinstance(v, float) and v.is_integer() else v
                  for key, v in error.get("ctx", {}).items()}
        template = _PROBLEMS.get(error["type"])
        problem = template.format(**bounds) if template else error["msg"]
    got = f" (got {error['input']!r})" if shown else ""
    return ConfigError(f"{label}: {problem}{got}")
