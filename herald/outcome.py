"""Outcome of one delivery attempt, and the one place provider errors become outcomes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from herald.errors import PermanentProviderError, TemplateError, TransientProviderError
from herald.wire import compact

OutcomeKind = Literal["sent", "delivered", "retry", "failed", "park", "defer"]


@compact
@dataclass(frozen=True, slots=True)
class Outcome:
    """What a provider made of one message.

    ``sent``: the provider took it; ``delivered``: the recipient has it (browser ack, receipt);
    ``retry``: transient, try again (after ``retry_after`` s if given); ``failed``: permanent;
    ``park``: the recipient is not reachable now (a browser offline): wait, not an attempt;
    ``defer``: a rate limit says wait ``retry_after`` s: not an attempt either.
    """

    tag: str
    kind: OutcomeKind
    provider: str
    provider_id: str | None = None
    error: str | None = None
    code: str | None = None
    retry_after: float | None = None
    info: dict[str, Any] = field(default_factory=dict)
    #: The lease this outcome answers (``Delivery.lease``); None for provider receipts.
    lease: float | None = None

    def __post_init__(self) -> None:
        # Provider replies are foreign text (aiosmtplib decodes SMTP replies with
        # surrogateescape): make every string storable JSON here, at the boundary, so one odd
        # reply can never fail a shard's write.
        for name in ("provider", "provider_id", "error", "code"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, safe_text(value))
        if self.info:
            object.__setattr__(self, "info", safe_json(self.info))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Outcome:
        return cls(**data)


#: Longest text kept from a provider's answer (an error message, an id).
MAX_TEXT = 500


def safe_text(value: object, limit: int = MAX_TEXT) -> str:
    """Valid UTF-8 (lone surrogates and undecodable bytes replaced), no NULs, at most ``limit``."""
    text = value if isinstance(value, str) else str(value)
    if not text.isascii():
        text = text.encode("utf-8", "replace").decode("utf-8", "replace")
    return text.replace("\x00", "")[:limit]


def safe_json(info: dict[str, Any]) -> dict[str, Any]:
    """``info`` as JSON can store it: keys and strings made safe, anything else as text."""
    out: dict[str, Any] = {}
    for key, value in list(info.items())[:20]:
        if isinstance(value, bool | int | float) or value is None:
            out[safe_text(key, 100)] = value
        else:
            out[safe_text(key, 100)] = safe_text(value)
    return out


def outcome_from_error(tag: str, provider: str, error: BaseException) -> Outcome:
    """Map any exception raised while delivering to an outcome, by type: the one place an
    exception becomes an outcome (a provider's, in ``actors.providers.base.attempt``; the
    channel actor's own — a template, the attempt's deadline, a bug — as provider ``herald``).

    A template that cannot render fails for good (the same payload would fail again). Unknown
    exceptions count as transient: a bug or an unexpected network error should be retried (and
    end ``dead`` if it persists), never silently dropped.
    """
    if isinstance(error, TemplateError):
        return Outcome(tag, "failed", provider, error=error.message)
    if isinstance(error, PermanentProviderError):
        return Outcome(tag, "failed", provider, error=error.message, code=error.provider_code)
    if isinstance(error, TransientProviderError):
        return Outcome(
            tag, "retry", provider, error=error.message, code=error.provider_code,
            retry_after=error.retry_after,
        )
    return Outcome(tag, "retry", provider, error=f"{type(error).__name__}: {error}")
