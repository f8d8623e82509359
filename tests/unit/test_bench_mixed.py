"""The mixed benchmark's fairness pieces: same texts for every system, exact counting, loopback only."""

from __future__ import annotations

from typing import Any

import pytest

from bench import workload
from bench.ceiling import Target, email_bytes
from bench.sinks import Tally
from herald.channels import Channel
from herald.render import render_fields, template_context


@pytest.mark.parametrize("i", [0, 1, 2, 7, 15_999])
def test_herald_renders_the_texts_the_others_send(i: int) -> None:
    payload = workload.payload("m", i)
    channel = Channel.SMS if workload.is_sms(i) else Channel.EMAIL
    fields = render_fields(channel, payload["details"], template_context(payload))
    if workload.is_sms(i):
        sms = workload.sms("m", i)
        assert (payload["details"]["to"], fields.text) == (sms.to, sms.body)
    else:
        mail = workload.mail("m", i)
        assert (payload["user"]["email"], fields.subject, fields.text) == (mail.to, mail.subject,
                                                                            mail.text)


def test_the_reference_is_found_in_what_the_sinks_receive() -> None:
    email = email_bytes("m", 3)
    found = workload.REFERENCE.search(email.data.decode())
    assert found is not None and found.groups() == ("m", "000003")
    assert workload.split(16_000) == (8_000, 8_000)


def test_the_tally_counts_runs_duplicates_and_strays() -> None:
    tally = Tally()
    for text in (b"a [bench:m:000002]", b"[bench:m:000002]", b"[bench:m:000004]",
                 b"[bench:w:000000]", b"no reference"):
        tally.note(text)
    counts = tally.counts("m", detail=True)
    assert (counts["received"], counts["distinct"], counts["duplicates"]) == (3, 2, 1)
    assert counts["indexes"] == [2, 4] and counts["unknown"] == 1
    assert counts["first_at"] <= counts["last_at"]
    assert tally.counts("w", detail=False)["received"] == 1


def test_the_ceiling_sends_to_loopback_only() -> None:
    Target("http://127.0.0.1:1", "AC", "t", "smtp://127.0.0.1:2").check_loopback()
    with pytest.raises(ValueError, match="loopback"):
        Target("https://api.twilio.com", "AC", "t", "smtp://127.0.0.1:2").check_loopback()


def test_celery_twilio_client_is_pointed_at_the_capture_api(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("celery", reason="Celery comes with the bench extra (make bench)")
    from twilio.http.http_client import TwilioHttpClient

    from bench.celery_peer import BaseUrlHttpClient

    seen: list[str] = []

    def fake_request(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> None:
        seen.append(url)

    monkeypatch.setattr(TwilioHttpClient, "request", fake_request)
    client = BaseUrlHttpClient("http://127.0.0.1:4010/")
    client.request("POST", "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages.json")
    assert seen == ["http://127.0.0.1:4010/2010-04-01/Accounts/AC1/Messages.json"]
    with pytest.raises(ValueError):
        client.request("POST", "https://evil.example/2010-04-01/x")
    with pytest.raises(ValueError, match="loopback"):
        BaseUrlHttpClient("https://api.twilio.com")
