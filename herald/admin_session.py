"""The admin console's credential: the admin key, a signed session for the page, a CSRF token.

Scripts send ``Authorization: Bearer <admin key>`` (``is_admin_key``). The page's login form
trades the key for a session token held in an HttpOnly cookie, so the key itself never sits in
the browser: ``a1.<expires_at>.<nonce>.<signature>``, the signature an HMAC-SHA256 with a key
derived from the admin key, so changing ``HERALD_ADMIN_KEY`` ends every session and any intake
replica verifies any session alone (only a logout needs shared state, below). A
state-changing request made with the cookie must also carry ``X-CSRF-Token``: an HMAC of the
session token that the page gets from the login answer (``csrf_token``); another site can make
the browser send the cookie, but cannot read that token. Pure: time is passed in.

Logging out ends a session before its expiry: its nonce goes into ``Revocations`` (kept by
intake in one Ray actor that every replica asks, ``actors/admin_sessions.py``), until the
session would have expired anyway. Wrong keys are counted per client address by
``LoginThrottle``, on every endpoint that takes an operator or admin credential.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import math
import re
import secrets
from collections import OrderedDict, deque

from herald.errors import AuthError, HeraldError, TooManyRequests

__all__ = ["Forbidden", "LoginThrottle", "Revocations", "check_csrf", "client_key", "csrf_token",
           "is_admin_key", "mint_session", "session_nonce", "verify_session"]

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


def session_nonce(token: str) -> str:
    """The nonce that names a session (its token must have passed ``verify_session``)."""
    return token.split(".")[2]


class Revocations:
    """Sessions logged out before their expiry: nonce → expiry, each forgotten once it expires.

    A set that lost its memory (its actor restarted at ``since``) cannot tell which sessions
    were revoked before, so it refuses every session minted before ``since`` (fail closed: the
    operator logs in again)."""

    def __init__(self, since: float = 0.0, ttl: float = SESSION_SECONDS,
                 max_sessions: int = 100_000) -> None:
        self.since, self.ttl, self.max_sessions = since, ttl, max_sessions
        self._revoked: dict[str, float] = {}

    def _forget(self, now: float) -> None:
        for nonce, expires_at in list(self._revoked.items()):
            if expires_at <= now:
                del self._revoked[nonce]

    def revoke(self, nonce: str, expires_at: float, now: float) -> None:
        if len(self._revoked) >= self.max_sessions:
            self._forget(now)
        self._revoked[nonce] = expires_at

    def revoked(self, nonce: str, expires_at: float, now: float) -> bool:
        """Whether the session ``nonce`` (which expires at ``expires_at``) was ended."""
        if expires_at - self.ttl < self.since:
            return True
        if len(self._revoked) >= self.max_sessions:
            self._forget(now)
        return nonce in self._revoked


def client_key(address: str | None) -> str:
    """Whose failures a request counts towards: its peer address; an IPv6 client by its /64
    (one host usually holds the whole /64, and could otherwise pick a fresh address per guess)."""
    if not address:
        return "unknown"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip)


class LoginThrottle:
    """At most ``limit`` wrong operator or admin credentials per ``window`` seconds from one
    client (``client_key``; per intake replica): the login form, the admin API and the
    operator's ``/metrics`` and ``/v1/queue`` alike, so a weak key cannot be guessed at network
    speed anywhere. While a client's window is used up every key it presents is refused, the
    right one too (otherwise the refusals would still answer guesses); other clients are not
    affected, nor are sessions already open. At most ``max_clients`` are remembered (the one
    that failed longest ago goes first)."""

    def __init__(self, limit: int = 20, window: float = 60.0, max_clients: int = 10_000) -> None:
        self.limit, self.window, self.max_clients = limit, window, max_clients
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, client: str, now: float) -> deque[float]:
        failures = self._failures.get(client) or deque()
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            self._failures.pop(client, None)
        return failures

    def check(self, client: str, now: float) -> None:
        """``TooManyRequests`` while ``client``'s failures of the window are used up."""
        failures = self._recent(client, now)
        if len(failures) >= self.limit:
            wait = failures[0] + self.window - now
            raise TooManyRequests("too many wrong admin or operator keys from this address; "
                                  "try again shortly", retry_after=max(1.0, wait))

    def failed(self, client: str, now: float) -> None:
        failures = self._recent(client, now)
        failures.append(now)
        self._failures[client] = failures
        self._failures.move_to_end(client)
        while len(self._failures) > self.max_clients:
            self._failures.popitem(last=False)
