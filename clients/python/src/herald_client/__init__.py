"""A typed client for Herald's HTTP API: ``Herald`` (sync) and ``AsyncHerald`` (asyncio).

    from herald_client import Herald

    with Herald("http://127.0.0.1:8000", key) as herald:
        accepted = herald.send({"type": "CM_EMAIL", "user": {...}, "details": {...}})
        final = herald.status(accepted.tag, wait=30)

Answers are frozen dataclasses (``herald_client.models``); failures raise the tree in
``herald_client.errors``. ``herald_client.calls`` holds every call as a plain value, shared by
both clients.
"""

from herald_client.async_client import AsyncHerald
from herald_client.client import Herald
from herald_client.errors import (
    ApiError,
    AuthError,
    Conflict,
    ConnectError,
    Forbidden,
    HeraldError,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    ServerError,
    Timeout,
    TooManyRequests,
    TransportError,
    Unavailable,
    UnexpectedAnswer,
)
from herald_client.models import (
    Accepted,
    Attempt,
    BrowserToken,
    FeedItem,
    FeedPage,
    Notification,
    QuietHours,
    ReadCount,
    Refused,
    ShardDepth,
    Status,
    Suppression,
    UserSettings,
)
from herald_client.version import __version__

__all__ = [
    "Accepted", "ApiError", "AsyncHerald", "Attempt", "AuthError", "BrowserToken", "Conflict",
    "ConnectError", "FeedItem", "FeedPage", "Forbidden", "Herald", "HeraldError",
    "InvalidRequest", "NotFound", "Notification", "PayloadTooLarge", "QuietHours", "ReadCount",
    "Refused", "ServerError", "ShardDepth", "Status", "Suppression", "Timeout",
    "TooManyRequests", "TransportError", "Unavailable", "UnexpectedAnswer", "UserSettings",
    "__version__",
]
