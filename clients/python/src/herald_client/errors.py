"""What can go wrong when calling Herald, as one tree; catch the branch you can act on.

    HeraldError
    ├── TransportError          no answer: the connection failed or broke
    │   ├── ConnectError        nobody listens at the URL (also a ``ConnectionError``)
    │   └── Timeout             no answer in time (also a ``TimeoutError``)
    ├── ApiError                Herald answered with an error status: ``status``, ``code``,
    │   │                       ``message``, ``field``, ``retry_after``, ``body``
    │   ├── InvalidRequest      400/422: bad input, ``field`` names where (also a ``ValueError``)
    │   ├── AuthError           401: missing or wrong API key or browser token
    │   ├── Forbidden           403: this key may not do that
    │   ├── NotFound            404: no such notification, user, suppression (also a ``LookupError``)
    │   ├── Conflict            409: too late (cancel once sending) or not dead (retry)
    │   ├── PayloadTooLarge     413: the body is over Herald's limit
    │   ├── TooManyRequests     429: queue full or too many waits; try again after ``retry_after``
    │   ├── Unavailable         503: temporary (a shard restarting); try again after ``retry_after``
    │   └── ServerError         500 and other 5xx: a bug in Herald; the same request would fail again
    └── UnexpectedAnswer        a success whose body this client does not understand (versions apart?)

``ApiError.code`` is Herald's error code (``invalid``, ``not_found``, ``queue_full``…); an answer
that did not come from Herald's API (a proxy's page) has ``code`` None and its text as ``message``.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any


class HeraldError(Exception):
    """Base of every error this client raises."""


class TransportError(HeraldError):
    """The request got no answer: the connection could not be made, timed out or broke."""


class ConnectError(TransportError, ConnectionError):
    """Nothing answers at the URL (refused, unknown host, TLS failure)."""


class Timeout(TransportError, TimeoutError):
    """Herald did not answer within the timeout (a status ``wait`` is added to it)."""


class UnexpectedAnswer(HeraldError):
    """A success answer whose body does not have the shape this client expects."""


class ApiError(HeraldError):
    """Herald answered with an error status; what it said is on the exception."""

    def __init__(self, status: int, code: str | None, message: str, field: str | None = None,
                 retry_after: float | None = None, body: Any = None) -> None:
        super().__init__(describe(status, code, message, field))
        self.status = status
        #: Herald's error code (``invalid``, ``not_found``…); None if the answer was not Herald's.
        self.code = code
        self.message = message
        #: The request field at fault (``details.content``, ``notifications.3.type``), if any.
        self.field = field
        #: Seconds to wait before trying again (``Retry-After``), when Herald said.
        self.retry_after = retry_after
        #: The JSON answer as received, or None if it was not JSON.
        self.body = body


class InvalidRequest(ApiError, ValueError):
    pass


class AuthError(ApiError):
    pass


class Forbidden(ApiError):
    pass


class NotFound(ApiError, LookupError):
    pass


class Conflict(ApiError):
    pass


class PayloadTooLarge(ApiError):
    pass


class TooManyRequests(ApiError):
    pass


class Unavailable(ApiError):
    pass


class ServerError(ApiError):
    pass


_BY_STATUS: dict[int, type[ApiError]] = {
    400: InvalidRequest, 401: AuthError, 403: Forbidden, 404: NotFound, 409: Conflict,
    413: PayloadTooLarge, 422: InvalidRequest, 429: TooManyRequests, 503: Unavailable,
}


def error_class(status: int) -> type[ApiError]:
    """The exception for an error ``status``: the tree's, else ``ServerError`` for 5xx, else
    ``ApiError`` itself."""
    return _BY_STATUS.get(status) or (ServerError if status >= 500 else ApiError)


def describe(status: int, code: str | None, message: str, field: str | None) -> str:
    """One line: ``HTTP 409 conflict: too late`` or ``HTTP 503 Service Unavailable: …``."""
    if code is None:
        try:
            label = HTTPStatus(status).phrase
        except ValueError:
            label = "error"
    else:
        label = code
    line = f"HTTP {status} {label}" + (f": {message}" if message else "")
    return line + (f" (field: {field})" if field else "")
