"""Inbound SMS opt-out keywords and the signed Twilio webhook that carries them."""

from __future__ import annotations

import pytest
from twilio.request_validator import RequestValidator

from herald.errors import AuthError
from herald.sms_keywords import Keyword, inbound_opt_out, keyword

TOKEN = "t" * 32
URL = "https://herald.example.com/v1/providers/twilio/inbound"


@pytest.mark.parametrize(("body", "word"), [
    ("STOP", Keyword.STOP), (" stop\n", Keyword.STOP), ("StopAll", Keyword.STOP),
    ("unsubscribe", Keyword.STOP), ("CANCEL", Keyword.STOP), ("end", Keyword.STOP),
    ("quit", Keyword.STOP), ("START", Keyword.START), ("unstop", Keyword.START),
    ("please stop", None), ("", None), ("STOP!", None),
])
def test_only_a_whole_keyword_counts(body: str, word: Keyword | None) -> None:
    assert keyword(body) is word


def _signed(form: dict[str, str], token: str = TOKEN) -> str:
    return RequestValidator(token).compute_signature(URL, form)


def test_a_signed_stop_names_the_texter_and_the_number_texted() -> None:
    form = {"From": "+14155550100", "To": "+15005550006", "Body": "STOP", "MessageSid": "SM1"}
    assert inbound_opt_out(URL, form, _signed(form), TOKEN) == (
        Keyword.STOP, "+14155550100", "+15005550006")
    chat = {**form, "Body": "see you at 5"}
    assert inbound_opt_out(URL, chat, _signed(chat), TOKEN) is None


def test_a_forged_or_unsigned_webhook_is_refused() -> None:
    form = {"From": "+14155550100", "To": "+15005550006", "Body": "START"}
    with pytest.raises(AuthError):
        inbound_opt_out(URL, form, _signed(form, "another-token-" + "x" * 18), TOKEN)
    with pytest.raises(AuthError):
        inbound_opt_out(URL, form, None, TOKEN)
