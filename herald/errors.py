"""Herald's error tree: what can go wrong, and whether it is the caller's fault or worth a retry.

    HeraldError
    ├── ValidationError            bad input; intake answers 4xx naming ``field``
    │   └── TemplateError          a template that does not compile or misses a variable
    ├── AuthError                  missing or wrong API key / browser token (401)
    ├── NotFound                   no such notification for this tenant (404)
    ├── Conflict                   the notification is past the point of the request (409)
    ├── PayloadTooLarge            request body over the limit (413)
    ├── QueueFull                  over the configured queue limit (429, ``retry_after``)
    ├── ConfigError                a bad setting in herald.toml or HERALD_*; names which one
    ├── TooManyRequests            too many of this caller's requests in flight (429, ``retry_after``)
    ├── Unavailable                cannot take it now, try again (503, ``retry_after``)
    │   └── StoreUnavailable       the database connection failed; nothing of the call committed
    │       └── StoreInDoubt       lost during COMMIT: the write may or may not have committed
    ├── Fenced                     another owner took the shard: this one must stop (503)
    ├── Internal                   a bug: the same request would fail again (500, no retry hint)
    └── ProviderError              a provider could not deliver
        ├── TransientProviderError worth retrying (timeout, 5xx, 429), maybe after ``retry_after`` s
        └── PermanentProviderError never worth retrying (invalid number, 5xx SMTP); carries ``code``

Provider adapters raise the two ``ProviderError`` kinds; ``herald.outcome.outcome_from_error``
turns them into an outcome. Callers decide on the type, never on message strings.
"""

from __future__ import annotations


class HeraldError(Exception):
    """Base of every error Herald raises on purpose."""

    code = "error"
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ValidationError(HeraldError, ValueError):
    """The input is wrong; ``field`` names where (dotted path, e.g. ``details.to``)."""

    code = "invalid"
    status = 422

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class TemplateError(ValidationError):
    """A template failed to compile or references something that is not there."""

    code = "invalid_template"


class AuthError(HeraldError):
    code = "unauthorized"
    status = 401


class NotFound(HeraldError, LookupError):
    code = "not_found"
    status = 404


class Conflict(HeraldError):
    code = "conflict"
    status = 409


class PayloadTooLarge(HeraldError):
    code = "too_large"
    status = 413


class QueueFull(HeraldError):
    code = "queue_full"
    status = 429

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TooManyRequests(HeraldError):
    """This caller has too many requests of a kind in flight (e.g. ``?wait`` holds)."""

    code = "too_many_requests"
    status = 429

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(HeraldError):
    """Herald cannot take this now (a shard restarting, storage failing): try again shortly."""

    code = "unavailable"
    status = 503

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StoreUnavailable(Unavailable):
    """The shard's database could not be reached, or the connection broke mid-call: what the
    call meant to write was not committed. The storage reconnects on its next call."""

    code = "store_unavailable"


class StoreInDoubt(StoreUnavailable):
    """The connection broke while a write was committing: the database may hold it or not.
    Memory cannot be rolled back to "before"; the shard rebuilds it from the database."""

    code = "store_in_doubt"


class Fenced(HeraldError):
    """This shard owner's lease was taken by another (its epoch is gone): it must stop at once,
    never lease or acknowledge again. Its write was refused and rolled back. A client's retry
    reaches the new owner, hence 503. Not an ``Unavailable``: no handler of passing faults may
    catch it and carry on."""

    code = "fenced"
    status = 503
    retry_after = 1.0


class Internal(HeraldError):
    """Herald failed in a way that is not temporary (a bug): retrying the same request will not
    help. Intake logs the cause with its traceback and tells the client only this."""

    code = "internal"
    status = 500


class ProviderError(HeraldError):
    """A provider failed to take a message."""

    code = "provider_error"

    def __init__(self, message: str, provider_code: str | None = None) -> None:
        super().__init__(message)
        self.provider_code = provider_code


class TransientProviderError(ProviderError):
    """Worth retrying: the provider is busy, down, slow or rate limiting us."""

    def __init__(
        self, message: str, provider_code: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, provider_code)
        self.retry_after = retry_after


class PermanentProviderError(ProviderError):
    """Never worth retrying: the provider refused this message for good."""


class ConfigError(HeraldError, ValueError):
    """A setting that cannot work; the message names the variable or file key, never a secret."""

    code = "bad_config"
