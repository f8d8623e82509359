"""One-click unsubscribe tokens and the RFC 8058 POST body (``herald.unsubscribe_tokens``)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from herald.errors import NotFound
from herald.unsubscribe_tokens import (
    UNSUBSCRIBE_PATH,
    InvalidToken,
    Unsubscribe,
    UnsubscribeLinks,
    is_one_click,
    mint_token,
    signing_key,
    verify_token,
)

SECRET = "unsub-secret-" + "s" * 20
KEY = signing_key(SECRET)
ISSUED = 1_700_000_000.75
TOKEN = mint_token(KEY, "acme", "user-7", "CM", ISSUED)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_a_token_names_tenant_uid_and_category_and_is_one_url_path_segment() -> None:
    assert verify_token(KEY, TOKEN) == Unsubscribe("acme", "user-7", "CM", 1_700_000_000)
    assert re.fullmatch(r"u1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", TOKEN)
    # Every attempt of one notification carries the same link: nothing random in it.
    assert mint_token(KEY, "acme", "user-7", "CM", ISSUED) == TOKEN


def test_unicode_and_separators_in_names_survive() -> None:
    token = mint_token(KEY, "ténant.b", "ü/ser 1", "NEWS_LETTER", 5)
    assert verify_token(KEY, token) == Unsubscribe("ténant.b", "ü/ser 1", "NEWS_LETTER", 5)
    assert "/" not in token


def test_tokens_never_expire_unless_a_max_age_is_asked() -> None:
    years_later = ISSUED + 5 * 365 * 86400
    assert verify_token(KEY, TOKEN).uid == "user-7"
    assert verify_token(KEY, TOKEN, now=ISSUED + 59, max_age=60).uid == "user-7"
    with pytest.raises(InvalidToken, match="expired"):
        verify_token(KEY, TOKEN, now=years_later, max_age=60)
    with pytest.raises(ValueError, match="now"):
        verify_token(KEY, TOKEN, max_age=60)


def test_a_token_from_another_key_is_refused_as_not_found() -> None:
    other = mint_token(signing_key("another-secret-" + "x" * 20), "acme", "user-7", "CM", ISSUED)
    with pytest.raises(InvalidToken) as caught:
        verify_token(KEY, other)
    assert isinstance(caught.value, NotFound) and caught.value.status == 404


def test_the_key_is_derived_for_this_purpose_only() -> None:
    """The stored secret itself never signs: a token HMAC'd with the raw secret (as if it were
    reused for something else) is refused."""
    assert KEY != SECRET.encode() and len(KEY) == 32
    payload = b64(json.dumps(["acme", "user-7", "CM", 1]).encode())
    raw = hmac.new(SECRET.encode(), f"u1.{payload}".encode(), hashlib.sha256).digest()
    with pytest.raises(InvalidToken):
        verify_token(KEY, f"u1.{payload}.{b64(raw)}")
    with pytest.raises(ValueError):
        signing_key("")


def test_an_altered_payload_is_refused_even_with_a_valid_shape() -> None:
    version, _, signature = TOKEN.split(".")
    for claims in (["acme", "user-8", "CM", 1_700_000_000], ["evil", "user-7", "CM", 1_700_000_000],
                   ["acme", "user-7", "OTP", 1_700_000_000]):
        forged = f"{version}.{b64(json.dumps(claims, separators=(',', ':')).encode())}.{signature}"
        with pytest.raises(InvalidToken):
            verify_token(KEY, forged)


@pytest.mark.parametrize("token", [
    "", "u1", "u1..", "u1.a.b", "u2" + TOKEN[2:], TOKEN + ".x", TOKEN + "=", TOKEN[:-1],
    TOKEN.replace(".", "..", 1), " " + TOKEN, TOKEN + "\n", "u1." + "a" * 5 + "." + "b" * 43,
    "u1." + "A" * 5000 + ".x",
])
def test_malformed_tokens_are_refused(token: str) -> None:
    with pytest.raises(InvalidToken):
        verify_token(KEY, token)


@pytest.mark.parametrize("claims", [
    {"t": "acme", "u": "1", "c": "CM", "i": 1}, ["acme", "1", "CM"], ["acme", "", "CM", 1],
    ["acme", "1", "CM", True], ["acme", "1", "CM", 1.5], ["acme", 1, "CM", 1], "x", None,
])
def test_signed_but_ill_formed_claims_are_refused(claims: object) -> None:
    """What we would never mint, even correctly signed, is not taken apart any further."""
    signing_input = f"u1.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(KEY, signing_input.encode(), hashlib.sha256).digest()
    with pytest.raises(InvalidToken):
        verify_token(KEY, f"{signing_input}.{b64(signature)}")


def test_a_token_has_one_spelling() -> None:
    """base64's last character carries spare bits the decoder ignores: a token spelled with
    other spare bits is another token, refused, not the same one accepted."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    tried = 0
    for uid in ("u", "uu", "uuu"):  # payloads of each length modulo 3
        token = mint_token(KEY, "acme", uid, "CM", ISSUED)
        for part in (1, 2):  # the payload, then the signature
            parts = token.split(".")
            spare = len(parts[part]) * 6 % 8  # bits of the last character past the last byte
            index = alphabet.index(parts[part][-1])
            for low in range(1, 1 << spare):
                parts[part] = parts[part][:-1] + alphabet[index ^ low]
                tried += 1
                with pytest.raises(InvalidToken):
                    verify_token(KEY, ".".join(parts))
    assert tried == 3 * 3 + 15 + 3  # the signature thrice (2 bits), payloads of 4 and 2 bits


@given(st.integers(min_value=0, max_value=len(TOKEN) - 1),
       st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."))
def test_any_one_character_changed_is_refused(position: int, replacement: str) -> None:
    altered = TOKEN[:position] + replacement + TOKEN[position + 1:]
    if altered == TOKEN:
        return
    with pytest.raises(InvalidToken):
        verify_token(KEY, altered)


def test_links_point_under_the_public_url() -> None:
    links = UnsubscribeLinks.of(SECRET, "https://herald.example.com/")
    assert links is not None
    url = links.url("acme", "user-7", "CM", ISSUED)
    assert url == f"https://herald.example.com{UNSUBSCRIBE_PATH}{TOKEN}"
    assert UnsubscribeLinks.of(None, "https://herald.example.com") is None
    assert UnsubscribeLinks.of("", "https://herald.example.com") is None


def test_mint_refuses_empty_names() -> None:
    for names in (("", "1", "CM"), ("acme", "", "CM"), ("acme", "1", "")):
        with pytest.raises(ValueError):
            mint_token(KEY, *names, ISSUED)


# ---- the POST body ---------------------------------------------------------------------------

def encoded(**kwargs: object) -> tuple[str, bytes]:
    """A form body as httpx (a real client) encodes it, with its Content-Type."""
    request = httpx.Request("POST", "http://127.0.0.1/", **kwargs)  # type: ignore[arg-type]
    return request.headers["content-type"], request.read()


def test_the_one_click_body_as_either_form_encoding() -> None:
    assert is_one_click(*encoded(data={"List-Unsubscribe": "One-Click"}))
    multipart = encoded(data={"List-Unsubscribe": "One-Click"},
                        files={"other": ("a.txt", b"x", "text/plain")})
    assert multipart[0].startswith("multipart/form-data") and is_one_click(*multipart)
    assert is_one_click(None, b"List-Unsubscribe=One-Click")  # a provider that sends no type
    assert is_one_click("application/x-www-form-urlencoded; charset=utf-8",
                        b"foo=bar&List-Unsubscribe=One-Click")


@pytest.mark.parametrize(("content_type", "body"), [
    ("application/x-www-form-urlencoded", b""),
    ("application/x-www-form-urlencoded", b"List-Unsubscribe=one-click"),
    ("application/x-www-form-urlencoded", b"List-Unsubscribe=Yes"),
    ("application/x-www-form-urlencoded", b"list-unsubscribe=One-Click"),
    ("application/x-www-form-urlencoded", b"List-Unsubscribe=One-Click\xff"),
    ("application/json", b'{"List-Unsubscribe": "One-Click"}'),
    ("text/plain", b"List-Unsubscribe=One-Click"),
    ("multipart/form-data", b"List-Unsubscribe=One-Click"),  # no boundary: not a form
    ("multipart/form-data; boundary=x\r\nX: y", b"--x\r\n"),
])
def test_anything_else_is_not_one_click(content_type: str, body: bytes) -> None:
    assert not is_one_click(content_type, body)


def test_a_multipart_form_without_the_field_or_with_another_value_is_not_one_click() -> None:
    assert not is_one_click(*encoded(data={"List-Unsubscribe": "Later"},
                                     files={"f": ("a", b"x", "text/plain")}))
    assert not is_one_click(*encoded(data={"Unsubscribe": "One-Click"},
                                     files={"f": ("a", b"x", "text/plain")}))
