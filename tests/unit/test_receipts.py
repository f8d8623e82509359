"""Fax receipts verified the way Telnyx signs them: ed25519 over ``timestamp|body``, in tolerance.

The signatures come from the capture fax peer's own key (``CaptureFaxApi.signed_headers``), which
is how the peer signs the webhooks it posts; no socket is opened here.
"""

from __future__ import annotations

import base64
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from capture.fax_api import CaptureFaxApi
from herald.errors import AuthError, ConfigError, ValidationError
from herald.outcome import Outcome
from herald.receipts import (
    TELNYX_SIGNATURE_HEADER,
    TELNYX_TIMESTAMP_HEADER,
    fax_client_state,
    fax_receipt,
    verify_telnyx_signature,
)

T0 = 1_700_000_000  # when the webhooks below were "sent"
PEER = CaptureFaxApi("KEY-test", Path("unused-outbox"))  # only its signing key is used
OTHER = CaptureFaxApi("KEY-test", Path("unused-outbox"))  # another account's key
KEY = PEER.public_key


def _event(event_type: str = "fax.delivered", **payload: object) -> bytes:
    """A Telnyx fax webhook body, as the capture peer and Telnyx post it."""
    fields = {"fax_id": "f-1", "client_state": fax_client_state("tag-1"), **payload}
    return orjson.dumps({
        "data": {"event_type": event_type, "id": "e-1", "occurred_at": "2023-11-14T22:13:20Z",
                 "record_type": "event", "payload": {k: v for k, v in fields.items() if v is not None}},
        "meta": {"attempt": 1, "delivered_to": "https://herald.example.com/v1/providers/fax/status"},
    })


def _signed(body: bytes, peer: CaptureFaxApi = PEER, at: int = T0) -> tuple[str, str]:
    """``(signature, timestamp)`` header values of ``body`` signed by ``peer`` at ``at``."""
    headers = peer.signed_headers(body, at)
    return headers[TELNYX_SIGNATURE_HEADER], headers[TELNYX_TIMESTAMP_HEADER]


def test_a_signature_from_the_capture_peer_verifies() -> None:
    body = _event(page_count=2)
    signature, timestamp = _signed(body)
    assert timestamp == str(T0) and len(base64.b64decode(signature)) == 64
    verify_telnyx_signature(body, signature, timestamp, KEY, now=T0 + 1)
    assert fax_receipt(body, signature, timestamp, KEY, now=T0 + 1) == Outcome(
        "tag-1", "delivered", "telnyx", provider_id="f-1", info={"pages": 2}
    )


def test_failed_and_interim_events() -> None:
    failed = _event("fax.failed", failure_reason="user_busy")
    receipt = fax_receipt(failed, *_signed(failed), KEY, now=T0)
    assert receipt is not None
    assert (receipt.tag, receipt.kind, receipt.code) == ("tag-1", "failed", "user_busy")
    queued = _event("fax.queued", client_state=None)  # an interim event needs no tag
    assert fax_receipt(queued, *_signed(queued), KEY, now=T0) is None


def test_the_tag_is_the_signed_client_state() -> None:
    body = _event(client_state=fax_client_state("tag-ü-42"))
    receipt = fax_receipt(body, *_signed(body), KEY, now=T0)
    assert receipt is not None and receipt.tag == "tag-ü-42"
    # Pointing a genuine receipt at another tag means changing the signed body: refused.
    forged = body.replace(fax_client_state("tag-ü-42").encode(), fax_client_state("tag-9").encode())
    with pytest.raises(AuthError):
        fax_receipt(forged, *_signed(body), KEY, now=T0)


@pytest.mark.parametrize("client_state", [None, "", "%%%", 42, base64.b64encode(b"\xff").decode()])
def test_a_final_event_without_a_tag_is_invalid(client_state: object) -> None:
    body = _event(client_state=client_state) if client_state is not None else orjson.dumps(
        {"data": {"event_type": "fax.delivered", "payload": {"fax_id": "f-1"}}})
    with pytest.raises(ValidationError) as caught:
        fax_receipt(body, *_signed(body), KEY, now=T0)
    assert caught.value.field == "client_state"


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"data": 1}', b'{"data": {"payload": {}}}',
                                  b'{"data": {"event_type": "fax.delivered", "payload": 3}}'])
def test_a_signed_body_that_is_not_a_fax_event_is_invalid(body: bytes) -> None:
    with pytest.raises(ValidationError):
        fax_receipt(body, *_signed(body), KEY, now=T0)


def test_another_key_or_another_body_is_refused() -> None:
    body = _event()
    with pytest.raises(AuthError, match="does not match"):
        fax_receipt(body, *_signed(body, OTHER), KEY, now=T0)
    with pytest.raises(AuthError, match="does not match"):
        fax_receipt(body + b" ", *_signed(body), KEY, now=T0)
    signature, _ = _signed(body)
    with pytest.raises(AuthError, match="does not match"):  # the timestamp is signed too
        fax_receipt(body, signature, str(T0 + 1), KEY, now=T0)


@pytest.mark.parametrize("skew", [-301, 301, -10**6, 10**6])
def test_a_timestamp_outside_the_tolerance_is_refused(skew: int) -> None:
    body = _event()
    with pytest.raises(AuthError, match="tolerance"):
        fax_receipt(body, *_signed(body), KEY, now=T0 + skew)  # stale (skew > 0) or future


@pytest.mark.parametrize("skew", [-300, 0, 300])
def test_a_timestamp_within_the_tolerance_is_accepted(skew: int) -> None:
    body = _event()
    assert fax_receipt(body, *_signed(body), KEY, now=T0 + skew) is not None
    with pytest.raises(AuthError):
        fax_receipt(body, *_signed(body), KEY, now=T0 + skew, tolerance=abs(skew) - 1)


def test_a_replayed_webhook_is_refused_once_outside_the_tolerance() -> None:
    body = _event()
    recorded = _signed(body)  # what an eavesdropper kept
    assert fax_receipt(body, *recorded, KEY, now=T0 + 5) is not None  # Telnyx's own retry
    with pytest.raises(AuthError):
        fax_receipt(body, *recorded, KEY, now=T0 + 301)


_SIGNATURE = _signed(_event())[0]


@pytest.mark.parametrize(("signature", "timestamp"), [
    (None, str(T0)), (_SIGNATURE, None), ("", str(T0)), (_SIGNATURE, ""), (None, None),
])
def test_missing_headers_are_refused(signature: str | None, timestamp: str | None) -> None:
    with pytest.raises(AuthError):
        fax_receipt(_event(), signature, timestamp, KEY, now=T0)


@pytest.mark.parametrize(("signature", "timestamp"), [
    ("sïgnätüre", str(T0)),  # non-ASCII (hmac.compare_digest raised TypeError here: a 503)
    (_SIGNATURE[:-4] + "é" * 4, str(T0)),
    (_SIGNATURE, "١٧٠٠٠٠٠٠٠٠"),  # Arabic-Indic digits: str.isdigit() says yes, int() agrees
    ("not base64!", str(T0)),
    (_SIGNATURE[:-2], str(T0)),  # broken padding
    (base64.b64encode(b"x" * 63).decode(), str(T0)),  # valid base64, wrong length
    (base64.b64encode(b"x" * 65).decode(), str(T0)),
    (_SIGNATURE, "17e8"), (_SIGNATURE, "-1"), (_SIGNATURE, f"{T0}.5"), (_SIGNATURE, f" {T0}"),
    (_SIGNATURE, "9" * 5000),  # int() of this raises ValueError (digit limit), not AuthError
])
def test_malformed_headers_are_auth_errors(signature: str, timestamp: str) -> None:
    with pytest.raises(AuthError):
        verify_telnyx_signature(_event(), signature, timestamp, KEY, now=T0)


@given(signature=st.text(max_size=100), timestamp=st.text(max_size=20))
def test_any_header_text_is_an_auth_error_and_nothing_else(signature: str, timestamp: str) -> None:
    with pytest.raises(AuthError):
        verify_telnyx_signature(b"{}", signature, timestamp, KEY, now=T0)


@given(body=st.binary(max_size=200))
def test_any_genuine_body_verifies(body: bytes) -> None:
    verify_telnyx_signature(body, *_signed(body), KEY, now=T0)


@pytest.mark.parametrize("public_key", ["", "not a key", base64.b64encode(b"k" * 31).decode()])
def test_a_bad_public_key_is_a_config_error(public_key: str) -> None:
    body = _event()
    with pytest.raises(ConfigError) as caught:
        verify_telnyx_signature(body, *_signed(body), public_key, now=T0)
    assert public_key not in str(caught.value) or not public_key


def test_client_state_is_base64_of_the_tag() -> None:
    assert fax_client_state("tag-1") == base64.b64encode(b"tag-1").decode()
