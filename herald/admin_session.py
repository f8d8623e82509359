"""The admin console's credential: the admin key, a signed session for the page, a CSRF token.

Scripts send ``Authorization: Bearer <admin key>`` (``is_admin_key``). The page's login form
trades the key for a session token held in an HttpOnly cookie, so the key itself never sits in
the browser: ``a1.<expires_at>.<nonce>.<signature>``, the signature an HMAC-SHA256 with a key
derived from the admin key, so changing ``HERALD_ADMIN_KEY`` ends every session and any intake
replica verifies any session without shared state. A state-changing request made with the
cookie must also carry ``X-CSRF-Token``: an HMAC of the session token that the page gets from
the login answer (``csrf_token``); another site can make the browser send the cookie, but
cannot read that token. Pure: time is passed in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
import secrets
from collections import deque

from herald.errors import AuthError, HeraldError, TooManyRequests

__all__ = ["Forbidden", "LoginThrottle", "check_csrf", "csrf_token", "is_admin_key",
           "mint_session", "verify_session"]

VERSION = "a1"
SESSION_SECONDS = 12 * 3600.0
MAX_TOKEN_LENGTH = 512
_TOKEN = re.compile(r"a1\.(\d{1,12})\.([A-Za-z0-9_-]{16,64})\.([A-Za-z0-9_-]{43})")


class Forbidden(HeraldError):
    """A valid credential that may not do this (a tenant's key on the admin API, no CSRF token)."""

    code = "forbidden"
    status = 403


def _key(admin_key: str, purpose: bytes) -> bytes:
    if not admin_key:
        raise ValueError("the admin key must not be empty")
    return hmac.new(admin_key.encode(), b"herald-admin." + purpose, hashlib.sha256).digest()


def _mac(admin_key: str, purpose: bytes, text: str) -> str:
    digest = hmac.new(_key(admin_key, purpose), text.encode("ascii"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def is_admin_key(admin_key: str, presented: str) -> bool:
    """Whether ``presented`` is the admin key (compared in constant time)."""
    return bool(admin_key) and hmac.compare_digest(admin_key.encode(), presented.encode())


def mint_session(admin_key: str, now: float, ttl: float = SESSION_SECONDS,
                 nonce: str | None = None) -> tuple[str, float]:
    """A session token valid for ``ttl`` seconds from ``now``: (token, expires_at)."""
    if not math.isfinite(ttl) or ttl <= 0:
        raise ValueError("ttl must be a positive number of seconds")
    expires_at = int(now + ttl)
    signing_input = f"{VERSION}.{expires_at}.{nonce or secrets.token_urlsafe(18)}"
    return f"{signing_input}.{_mac(admin_key, b'session', signing_input)}", float(expires_at)


def verify_session(admin_key: str, token: str, now: float) -> float:
    """When the session in ``token`` expires; ``AuthError`` if it is malformed, forged or over."""
    match = _TOKEN.fullmatch(token) if len(token) <= MAX_TOKEN_LENGTH else None
    if match is None:
        raise AuthError("malformed admin session; log in again")
    signing_input = token.rsplit(".", 1)[0]
    if not hmac.compare_digest(match.group(3), _mac(admin_key, b"session", signing_input)):
        raise AuthError("invalid admin session; log in again")
    expires_at = float(match.group(1))
    if now >= expires_at:
        raise AuthError("the admin session has expired; log in again")
    return expires_at


def csrf_token(admin_key: str, session: str) -> str:
    """The CSRF token that goes with a session (derived from it: nothing to store)."""
    return _mac(admin_key, b"csrf", session)


def check_csrf(admin_key: str, session: str, presented: str | None) -> None:
    """``Forbidden`` unless ``presented`` is the session's CSRF token."""
    if not presented or not hmac.compare_digest(presented, csrf_token(admin_key, session)):
        raise Forbidden("missing or wrong X-CSRF-Token (reload the admin page)")


class LoginThrottle:
    """At most ``limit`` wrong admin keys per ``window`` seconds (per intake replica, login form
    and Bearer alike), so a weak key cannot be guessed at network speed. While the window is
    used up every key is refused, the right one too: otherwise the refusals would still answer
    guesses. Sessions already open are not affected."""

    def __init__(self, limit: int = 20, window: float = 60.0) -> None:
        self.limit, self.window = limit, window
        self._failures: deque[float] = deque()

    def _forget(self, now: float) -> None:
        while self._failures and self._failures[0] <= now - self.window:
            self._failures.popleft()

    def check(self, now: float) -> None:
        """``TooManyRequests`` while the failures of the window are used up."""
        self._forget(now)
        if len(self._failures) >= self.limit:
            wait = self._failures[0] + self.window - now
            raise TooManyRequests("too many failed admin logins; try again shortly",
                                  retry_after=max(1.0, wait))

    def failed(self, now: float) -> None:
        self._forget(now)
        self._failures.append(now)
