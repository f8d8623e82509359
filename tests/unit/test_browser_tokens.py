"""Browser tokens: round trip, expiry, forgery and malformed input all handled as AuthError."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from herald.browser_tokens import BrowserIdentity, mint_token, verify_token
from herald.errors import AuthError

SECRET = b"s" * 32
NOW = 1_700_000_000.0


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed(claims: object, secret: bytes = SECRET) -> str:
    """A correctly signed token around arbitrary claims (to test the claims checks)."""
    signing_input = "v1." + b64(json.dumps(claims).encode())
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def test_round_trip() -> None:
    token, expires_at = mint_token(SECRET, "acme", "u-1", ttl=900, now=NOW)
    assert expires_at == NOW + 900
    assert verify_token(SECRET, token, NOW + 899.9) == BrowserIdentity("acme", "u-1", NOW + 900)


def test_format_is_url_safe_without_padding() -> None:
    # Lengths that would need padding in plain base64 (1 and 2 bytes over a multiple of 3).
    for uid in ("u", "uu", "uuu", "ü-ñ/+?&=", "x" * 101):
        token, _ = mint_token(SECRET, "tenant", uid, ttl=60, now=NOW)
        version, payload, signature = token.split(".")
        assert version == "v1"
        assert "=" not in token and "+" not in token and "/" not in token
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        assert claims == {"t": "tenant", "u": uid, "e": NOW + 60}
        assert len(base64.urlsafe_b64decode(signature + "=")) == 32
        assert verify_token(SECRET, token, NOW).uid == uid


def test_expired_at_and_after_expiry() -> None:
    token, expires_at = mint_token(SECRET, "acme", "u-1", ttl=10, now=NOW)
    for now in (expires_at, expires_at + 1):
        with pytest.raises(AuthError, match="expired"):
            verify_token(SECRET, token, now)


def test_wrong_secret_is_refused() -> None:
    token, _ = mint_token(SECRET, "acme", "u-1", ttl=60, now=NOW)
    with pytest.raises(AuthError, match="signature"):
        verify_token(b"other-secret", token, NOW)


def test_tampered_payload_is_refused() -> None:
    token, _ = mint_token(SECRET, "acme", "u-1", ttl=60, now=NOW)
    _, _, signature = token.split(".")
    forged_claims = b64(json.dumps({"t": "acme", "u": "admin", "e": NOW + 60}).encode())
    with pytest.raises(AuthError):
        verify_token(SECRET, f"v1.{forged_claims}.{signature}", NOW)


def test_tampered_signature_is_refused() -> None:
    token, _ = mint_token(SECRET, "acme", "u-1", ttl=60, now=NOW)
    head, _, signature = token.rpartition(".")
    flipped = b64(bytes([base64.urlsafe_b64decode(signature + "=")[0] ^ 1]) + b"\0" * 31)
    with pytest.raises(AuthError):
        verify_token(SECRET, f"{head}.{flipped}", NOW)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "v1",
        "v1..",
        "v1.abc",
        "v1.a.b.c",
        "v2.e30.AAAA",
        "v1.e30=.AAAA",  # padding is not part of the format
        "v1.e3 0.AAAA",  # the stdlib would skip the space; we do not
        "v1.ÿÿ.AAAA",  # non-ASCII
        "v1.A.AAAA",  # impossible base64 length
        "v1." + "A" * 5000 + ".AAAA",  # oversized
    ],
)
def test_malformed_tokens_are_refused(token: str) -> None:
    with pytest.raises(AuthError):
        verify_token(SECRET, token, NOW)


@pytest.mark.parametrize(
    "claims",
    [
        [],
        "acme",
        {"t": "acme", "u": "u-1"},
        {"t": "", "u": "u-1", "e": NOW + 60},
        {"t": "acme", "u": 7, "e": NOW + 60},
        {"t": "acme", "u": "u-1", "e": "later"},
        {"t": "acme", "u": "u-1", "e": True},
    ],
)
def test_signed_but_malformed_claims_are_refused(claims: object) -> None:
    with pytest.raises(AuthError, match="malformed"):
        verify_token(SECRET, signed(claims), NOW)


def test_signed_non_json_payload_is_refused() -> None:
    signing_input = "v1." + b64(b"\xff not json")
    signature = hmac.new(SECRET, signing_input.encode(), hashlib.sha256).digest()
    with pytest.raises(AuthError, match="malformed"):
        verify_token(SECRET, f"{signing_input}.{b64(signature)}", NOW)


def test_integer_expiry_from_another_minter_is_accepted() -> None:
    identity = verify_token(SECRET, signed({"t": "acme", "u": "u-1", "e": int(NOW) + 5}), NOW)
    assert identity.expires_at == int(NOW) + 5


@pytest.mark.parametrize(
    ("tenant", "uid", "ttl"), [("", "u", 1), ("t", "", 1), ("t", "u", 0), ("t", "u", float("nan"))]
)
def test_mint_refuses_bad_arguments(tenant: str, uid: str, ttl: float) -> None:
    with pytest.raises(ValueError):
        mint_token(SECRET, tenant, uid, ttl=ttl, now=NOW)


def test_empty_secret_is_a_configuration_error() -> None:
    with pytest.raises(ValueError):
        mint_token(b"", "t", "u", ttl=1, now=NOW)
    token, _ = mint_token(SECRET, "t", "u", ttl=1, now=NOW)
    with pytest.raises(ValueError):
        verify_token(b"", token, NOW)
