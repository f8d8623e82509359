"""Which HTTP error statuses are worth a retry: one rule for every provider that speaks HTTP.

``classify_http_status`` turns a status that is *not* a success into the ``ProviderError`` kind
Herald decides on (``herald.outcome.outcome_from_error``). Success is the caller's to recognise
first, because what counts as accepted differs per API (a webhook takes any 2xx, the fax API only
200/201/202); whatever reaches this function is an error.

    408 Request Timeout, 425 Too Early,     transient: the same request may well succeed later
    429 Too Many Requests, any 5xx          (carrying the server's ``Retry-After``, if any)
    every other status (4xx, a 3xx we do    permanent: the request itself is wrong (bad number,
    not follow, a 2xx the API never sends)  bad credentials, gone endpoint) and would fail again

Transport failures (refused connections, timeouts) never reach here: each provider maps those to
transient errors where it makes the request.
"""

from __future__ import annotations

from herald.errors import PermanentProviderError, ProviderError, TransientProviderError

__all__ = ["TRANSIENT_STATUSES", "classify_http_status"]

#: 4xx statuses that describe the moment, not the request (RFC 9110 §15.5.9, RFC 8470, RFC 6585).
TRANSIENT_STATUSES = frozenset({408, 425, 429})


def classify_http_status(
    status: int, message: str, code: str | None = None, retry_after: float | None = None
) -> ProviderError:
    """The error for an HTTP answer that is not a success; ``code`` defaults to the status.

    The error is returned, not raised, so the caller raises it ``from`` whatever it caught.
    """
    provider_code = code or str(status)
    if status >= 500 or status in TRANSIENT_STATUSES:
        return TransientProviderError(message, provider_code, retry_after)
    return PermanentProviderError(message, provider_code)
