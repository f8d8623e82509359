"""Unit tests for herald.models: the payload from DESIGN.md, channel rules, priority, bad input."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from herald.errors import TemplateError, ValidationError
from herald.models import DEFAULT_TTL_SECONDS, validate_notification
from herald.record import Record
from herald.storage import SQLiteStorage
from tests.support.payloads import DESIGN_PAYLOAD  # the example payload of DESIGN.md, verbatim

NOW = 1_700_000_000.0



def payload(**changes: Any) -> dict[str, Any]:
    """The DESIGN.md payload with dotted-path changes: ``payload(**{"user.email": "x"})``.

    A value of ``...`` deletes the key.
    """
    raw = copy.deepcopy(DESIGN_PAYLOAD)
    for path, value in changes.items():
        *parents, last = path.split(".")
        node = raw
        for part in parents:
            node = node.setdefault(part, {})
        if value is ...:
            node.pop(last, None)
        else:
            node[last] = value
    return raw


def invalid_field(raw: Any) -> str | None:
    with pytest.raises(ValidationError) as caught:
        validate_notification(raw, tenant="acme", now=NOW)
    return caught.value.field


def email(**changes: Any) -> dict[str, Any]:
    return payload(**{"type": "CM_EMAIL", "user.email": "bob@example.com", **changes})


def sms(**changes: Any) -> dict[str, Any]:
    return payload(**{"type": "CM_SMS", "user.phone": "+14155550100", **changes})


# -- the DESIGN.md payload ------------------------------------------------------------------
def test_design_payload_validates_for_browser() -> None:
    notification = validate_notification(DESIGN_PAYLOAD, tenant="acme", now=NOW)
    assert notification.type == "CM_BROWSER"
    assert (notification.category, notification.channel) == ("CM", "BROWSER")
    assert notification.priority == 8  # asap "yes"
    assert notification.uid == "76143021"
    assert notification.idempotency_key == "A36701-BCDEF-779821-C31024-BA"
    assert notification.recipient is None
    assert notification.tenant == "acme"
    assert notification.created_at == NOW
    assert notification.expires_at == NOW + DEFAULT_TTL_SECONDS
    assert notification.payload["user"]["mq-uuid-btag"] == "A36701-BCDEF-779821-C31024-BA"
    assert notification.payload["user"]["name"]["expr"] == "he/him"
    assert notification.payload["details"]["content"] == "{message|sub(0,15)|'...'}"


def test_design_payload_validates_for_email_with_an_address() -> None:
    notification = validate_notification(email(), tenant="acme", now=NOW)
    assert (notification.channel, notification.recipient) == ("EMAIL", "bob@example.com")


def test_each_notification_gets_its_own_tag() -> None:
    tags = {validate_notification(DESIGN_PAYLOAD, "acme", NOW).tag for _ in range(20)}
    assert len(tags) == 20


def test_the_raw_payload_is_not_modified() -> None:
    raw = email(**{"details.vars": {"a": 1}})
    before = copy.deepcopy(raw)
    validate_notification(raw, tenant="acme", now=NOW)
    assert raw == before


def test_unknown_keys_are_kept_for_templates() -> None:
    raw = payload(**{"user.plan": "gold", "details.content": "Plan {user.plan}"})
    assert validate_notification(raw, "acme", NOW).payload["user"]["plan"] == "gold"


def test_ttl() -> None:
    notification = validate_notification(payload(**{"details.ttl": 60}), "acme", NOW)
    assert notification.expires_at == NOW + 60
    assert invalid_field(payload(**{"details.ttl": 0})) == "details.ttl"
    assert invalid_field(payload(**{"details.ttl": 31 * 86400})) == "details.ttl"


# -- structure ------------------------------------------------------------------------------
@pytest.mark.parametrize("bad_type", ["BROWSER", "CM_PIGEON", "cm_browser", "CM__SMS", "", 7, None])
def test_bad_type_names_the_type_field(bad_type: Any) -> None:
    assert invalid_field(payload(type=bad_type)) == "type"


def test_missing_parts_are_named() -> None:
    assert invalid_field(payload(user=...)) == "user"
    assert invalid_field(payload(**{"user.uid": ...})) == "user.uid"
    assert invalid_field(payload(details=...)) == "details"
    assert invalid_field(payload(type=...)) == "type"


def test_unknown_top_level_key_is_refused() -> None:
    assert invalid_field(payload(extra={"x": 1})) == "extra"


@pytest.mark.parametrize("raw", [None, [], "CM_BROWSER", 42, [DESIGN_PAYLOAD]])
def test_not_an_object(raw: Any) -> None:
    assert invalid_field(raw) is None


def test_bad_uid_and_btag_are_refused() -> None:
    assert invalid_field(payload(**{"user.uid": ""})) == "user.uid"
    assert invalid_field(payload(**{"user.uid": "x" * 129})) == "user.uid"
    assert invalid_field(payload(**{"user.uid": []})) == "user.uid"
    assert invalid_field(payload(**{"user.uid": {"int": 1}})) == "user.uid"
    assert invalid_field(payload(**{"user.mq-uuid-btag": ""})) == "user.mq-uuid-btag"


def test_browser_needs_content_or_title() -> None:
    assert invalid_field(payload(**{"details.content": ..., "details.title": ...})) == (
        "details.content"
    )


# -- header injection -----------------------------------------------------------------------
@pytest.mark.parametrize("field", ["subject", "to", "from", "reply_to", "title"])
@pytest.mark.parametrize("newline", ["\r\n", "\n", "\r"])
def test_crlf_in_header_fields_is_refused(field: str, newline: str) -> None:
    raw = email(**{f"details.{field}": f"x@example.com{newline}Bcc: victim@example.com"})
    assert invalid_field(raw) == f"details.{field}"


def test_crlf_in_user_email_is_refused() -> None:
    assert invalid_field(email(**{"user.email": "bob@example.com\nBcc: x@y.z"})) == "user.email"


def test_crlf_smuggled_into_the_subject_by_a_variable_is_refused() -> None:
    raw = email(**{"details.subject": "Hi {name}", "details.vars": {"name": "a\r\nBcc: x@y.z"}})
    assert invalid_field(raw) == "details.subject"


# -- channel rules --------------------------------------------------------------------------
def test_email_needs_a_valid_address() -> None:
    assert invalid_field(payload(type="CM_EMAIL")) == "details.to"
    assert invalid_field(email(**{"user.email": "not-an-address"})) == "user.email"
    assert invalid_field(email(**{"details.to": "a@b@c"})) == "details.to"
    assert invalid_field(email(**{"details.from": "nobody"})) == "details.from"
    explicit = validate_notification(email(**{"details.to": "ann@example.org"}), "acme", NOW)
    assert explicit.recipient == "ann@example.org"


def test_sms_recipient_from_user_phone_or_details() -> None:
    assert validate_notification(sms(), "acme", NOW).recipient == "+14155550100"
    explicit = validate_notification(sms(**{"details.to": "+442071838750"}), "acme", NOW)
    assert explicit.recipient == "+442071838750"


@pytest.mark.parametrize("number", ["4155550100", "+0155550100", "+1 415 555 0100",
                                    "+1415555010012345", "+1415555O100", "+14155550100\n"])
def test_sms_needs_an_e164_number(number: str) -> None:
    assert invalid_field(sms(**{"details.to": number})) == "details.to"
    assert invalid_field(sms(**{"user.phone": number})) == "user.phone"


def test_sms_without_any_number() -> None:
    assert invalid_field(payload(type="CM_SMS")) in ("details.to", "user.phone")


def test_sms_sender_is_a_number_or_a_sender_id() -> None:
    validate_notification(sms(**{"details.from": "Herald"}), "acme", NOW)
    validate_notification(sms(**{"details.from": "+14155550111"}), "acme", NOW)
    assert invalid_field(sms(**{"details.from": "Herald Notifications Inc"})) == "details.from"


def test_fax_takes_the_fax_number_then_the_phone() -> None:
    fax = payload(type="CM_FAX", **{"user.fax": "+14155550199", "user.phone": "+14155550100"})
    assert validate_notification(fax, "acme", NOW).recipient == "+14155550199"
    phone_only = payload(type="CM_FAX", **{"user.phone": "+14155550100"})
    assert validate_notification(phone_only, "acme", NOW).recipient == "+14155550100"
    assert invalid_field(payload(type="CM_FAX", **{"user.fax": "12345"})) == "user.fax"


# -- templates ------------------------------------------------------------------------------
def test_unknown_template_variable_names_the_field() -> None:
    with pytest.raises(TemplateError) as caught:
        validate_notification(payload(**{"details.content": "Hi {nickname}"}), "acme", NOW)
    assert caught.value.field == "details.content"
    assert "nickname" in caught.value.message


def test_template_syntax_error_names_the_field() -> None:
    assert invalid_field(payload(**{"details.title": "Hi {user.name.first"})) == "details.title"


def test_template_variables_from_vars_payload_and_defaults() -> None:
    raw = payload(**{
        "details.content": "{greeting} {user.name.first} {requester.service} {nick|default('x')}",
        "details.vars": {"greeting": "Hello"},
    })
    validate_notification(raw, "acme", NOW)


# -- priority -------------------------------------------------------------------------------
@pytest.mark.parametrize(("requester", "priority"), [
    ({"asap": "yes"}, 8),
    ({"asap": "YES "}, 8),
    ({"asap": True}, 8),
    ({"asap": "no"}, 4),
    ({"asap": ""}, 4),
    ({}, 4),
    ({"asap": "yes", "priority": 2}, 2),
    ({"asap": "no", "priority": 9}, 9),
    ({"priority": 0}, 0),
])
def test_priority(requester: dict[str, Any], priority: int) -> None:
    raw = payload(requester={"type": "WEB_APP_BACKEND", **requester})
    assert validate_notification(raw, "acme", NOW).priority == priority


@pytest.mark.parametrize("value", [-1, 10, 99, "high"])
def test_priority_out_of_range(value: Any) -> None:
    assert invalid_field(payload(**{"requester.priority": value})) == "requester.priority"


def test_asap_must_be_yes_or_no() -> None:
    assert invalid_field(payload(**{"requester.asap": "maybe"})) == "requester.asap"


# -- junk and storability -------------------------------------------------------------------
#: Text as ``json.loads`` may produce it: lone surrogates included (``"\ud800"`` is valid JSON).
json_text = st.text(st.characters(exclude_categories=[]), max_size=20)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False)
    | json_text,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
TEMPLATES = ("Hi {user.name.first|default('you')}", "{message|sub(0,15)|'...'}", "{x}")
phones = st.from_regex(r"\+[1-9][0-9]{6,14}", fullmatch=True)


def mostly(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Usually a plausible value, sometimes junk."""
    return st.integers(0, 7).flatmap(lambda pick: valid if pick else json_values)


#: Near-valid payloads: the right keys, each value usually plausible, so that validation gets
#: deep and some pass.
near_valid = st.fixed_dictionaries(
    {"type": st.sampled_from(["CM_BROWSER", "CM_EMAIL", "CM_SMS", "CM_FAX"]),
     "user": st.fixed_dictionaries(
         {"uid": mostly(st.integers(-(2**63), 2**63) | json_text.filter(bool))},
         optional={"email": mostly(st.emails()), "phone": mostly(phones),
                   "fax": mostly(phones), "mq-uuid-btag": mostly(json_text.filter(bool)),
                   "name": mostly(st.fixed_dictionaries({}, optional={"first": json_text})),
                   "extra": json_values}),
     "details": st.fixed_dictionaries(
         {"content": mostly(json_text.filter(bool) | st.sampled_from(TEMPLATES))},
         optional={"title": json_text, "to": mostly(phones | st.emails()),
                   "subject": json_text, "vars": st.dictionaries(st.text(max_size=5), json_values),
                   "ttl": mostly(st.integers(-5, 40 * 86400)),
                   "media_url": mostly(st.just("https://example.com/a.pdf")),
                   "from": mostly(phones | st.emails()), "message": json_text})},
    optional={"requester": st.fixed_dictionaries(
        {}, optional={"asap": mostly(st.sampled_from(["yes", "no", True, False])),
                      "priority": mostly(st.integers(-2, 12)),
                      "callback_url": mostly(st.just("https://example.com/hook"))})},
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(raw=st.integers(0, 3).flatmap(lambda pick: near_valid if pick else st.one_of(
    json_values, st.dictionaries(st.text(max_size=10), json_values))))
def test_junk_raises_only_validation_error_and_what_passes_can_be_stored(raw: Any) -> None:
    try:
        notification = validate_notification(raw, tenant="acme", now=NOW)
    except ValidationError as exc:
        event(f"refused at {exc.field}")
        return
    event("accepted")
    assert 0 <= notification.priority <= 9
    assert notification.channel in ("BROWSER", "EMAIL", "SMS", "FAX")
    storage = SQLiteStorage(Path(":memory:"), synchronous="OFF")
    try:
        storage.write([Record.new(notification, 1)], [])
        assert storage.get(notification.tag) is not None
    finally:
        storage.close()


def _nested(depth: int) -> dict[str, Any]:
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(depth):
        node["a"] = {}
        node = node["a"]
    return deep


@pytest.mark.parametrize(("junk", "field"), [
    ({"n": 2**64}, "details"),  # beyond what JSON (orjson) writes as an integer
    ({"text": "\ud800"}, "details"),  # a lone surrogate: valid in a Python str, not in UTF-8
    (_nested(300), None),  # deeper than the encoder goes (None: too deep to tell where)
], ids=["big-int", "surrogate", "deep"])
def test_what_storage_cannot_hold_is_refused_at_intake(junk: Any, field: str | None) -> None:
    """Intake answers 202 only after the write: a payload storage cannot hold must be a 4xx."""
    with pytest.raises(ValidationError) as caught:
        validate_notification(payload(**{"details.vars": junk}), tenant="acme", now=NOW)
    assert (caught.value.status, caught.value.field) == (422, field)
    assert "cannot be stored as JSON" in caught.value.message


@pytest.mark.parametrize("where", ["details.vars", "user.extra", "requester.extra"])
@pytest.mark.parametrize("depth", [256, 300, 5000])
def test_deep_nesting_is_a_validation_error(where: str, depth: int) -> None:
    with pytest.raises(ValidationError) as caught:
        validate_notification(payload(**{where: _nested(depth)}), tenant="acme", now=NOW)
    assert caught.value.status == 422


def test_surrogate_in_uid_is_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        validate_notification(payload(**{"user.uid": "ab\udc80"}), "a", NOW)
    assert (caught.value.status, caught.value.field) == (422, "user")
    assert "cannot be stored as JSON" in caught.value.message


# -- phone numbers and addresses checked by phonenumbers / email-validator -----------------------
def test_impossible_sms_number_is_refused_at_intake() -> None:
    with pytest.raises(ValidationError) as caught:
        validate_notification(sms(**{"details.to": "+12"}), tenant="acme", now=NOW)
    assert (caught.value.status, caught.value.field) == (422, "details.to")
    assert invalid_field(sms(**{"user.phone": "+999"})) == "user.phone"
    assert invalid_field(payload(type="CM_FAX", **{"user.fax": "+1415555010"})) == "user.fax"


def test_twilio_test_numbers_pass_intake() -> None:
    raw = sms(**{"details.to": "+15005550006", "details.from": "+15005550006"})
    assert validate_notification(raw, "acme", NOW).recipient == "+15005550006"


def test_malformed_email_is_refused_at_intake() -> None:
    with pytest.raises(ValidationError) as caught:
        validate_notification(email(**{"user.email": "a..b.@x..y"}), tenant="acme", now=NOW)
    assert (caught.value.status, caught.value.field) == (422, "user.email")
    assert invalid_field(email(**{"details.to": '"Bob" <bob@x.com>'})) == "details.to"


def test_internationalized_email_is_accepted() -> None:
    notification = validate_notification(email(**{"user.email": "jürgen@bücher.de"}), "acme", NOW)
    assert notification.recipient == "jürgen@bücher.de"


def test_senders_and_reply_to_are_checked() -> None:
    assert invalid_field(sms(**{"details.from": "+12"})) == "details.from"
    assert invalid_field(email(**{"details.from": "a..b.@x..y"})) == "details.from"
    assert invalid_field(email(**{"details.reply_to": "not-an-address"})) == "details.reply_to"
    validate_notification(email(**{"details.reply_to": "ann@example.org"}), "acme", NOW)
    fax = payload(type="CM_FAX", **{"user.fax": "+14155550199"})
    assert invalid_field({**fax, "details": {**fax["details"], "from": "+999"}}) == "details.from"
    validate_notification({**fax, "details": {**fax["details"], "from": "+14155550100"}}, "acme", NOW)


# -- templates cannot blow up memory; the email subject checked after rendering (issue 9) ------
def refusal(raw: Any) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        validate_notification(raw, tenant="acme", now=NOW)
    return caught.value


@pytest.mark.parametrize("source", ["{details}", "{user}", "{items}", "Hi {user.name}"])
def test_a_placeholder_naming_an_object_is_refused_at_intake(source: str) -> None:
    error = refusal(payload(**{"details.content": source, "details.vars": {"items": [1, 2]}}))
    assert isinstance(error, TemplateError)
    assert (error.status, error.field) == (422, "details.content")
    assert error.message.startswith(f"details.content: {source.removeprefix('Hi ')} names an object")


def test_a_template_that_would_render_a_gigabyte_is_refused_without_building_it() -> None:
    import time
    import tracemalloc

    raw = payload(**{"details.content": "{big}" * 20_000, "details.vars": {"big": "x" * 60_000}})
    tracemalloc.start()
    started = time.perf_counter()
    try:
        error = refusal(raw)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert error.field == "details.content" and "more than 100000 characters" in error.message
    assert peak < 8_000_000  # the whole validation, parse included; the output would be 1.2 GB
    assert time.perf_counter() - started < 5.0


@pytest.mark.parametrize(("field", "limit"), [("title", 1_000), ("subject", 1_000),
                                              ("content", 100_000), ("html", 500_000)])
def test_each_template_field_has_a_rendered_size_cap(field: str, limit: int) -> None:
    source = "x" * (limit - 100) + "{a}"  # the source fits its own max_length
    validate_notification(email(**{f"details.{field}": source, "details.vars": {"a": "y" * 100}}),
                          "acme", NOW)
    error = refusal(email(**{f"details.{field}": source, "details.vars": {"a": "y" * 101}}))
    assert (error.status, error.field) == (422, f"details.{field}")
    assert f"more than {limit} characters" in error.message


def test_sms_content_is_capped_at_1600_characters() -> None:
    text = {"details.content": "{a}{a}", "details.vars": {"a": "x" * 800}}
    validate_notification(sms(**text), "acme", NOW)
    validate_notification(payload(**{**text, "details.vars": {"a": "x" * 5_000}}), "acme", NOW)
    error = refusal(sms(**{**text, "details.vars": {"a": "x" * 801}}))
    assert error.field == "details.content" and "more than 1600" in error.message


def test_vars_are_capped_by_size_and_keys() -> None:
    validate_notification(payload(**{"details.vars": {"v": "x" * 60_000}}), "acme", NOW)
    assert invalid_field(payload(**{"details.vars": {"v": "x" * 66_000}})) == "details.vars"
    nested = {"a": [{"b": "x" * 1_000}] * 70}  # over 64 KiB without any long top-level value
    assert invalid_field(payload(**{"details.vars": nested})) == "details.vars"
    validate_notification(payload(**{"details.vars": {f"k{i}": i for i in range(1_000)}}), "a", NOW)
    many = {f"k{i}": i for i in range(1_001)}
    error = refusal(payload(**{"details.vars": many}))
    assert (error.status, error.field) == (422, "details.vars")


def test_crlf_in_a_title_that_becomes_the_email_subject_is_refused() -> None:
    smuggled = {"details.vars": {"message": "Hi\r\nBcc: x@y"}}
    error = refusal(email(**{"details.title": "{message}", **smuggled}))
    assert (error.status, error.field) == (422, "details.title")
    assert invalid_field(email(**{"details.subject": "{message}", **smuggled})) == (
        "details.subject")
    # With its own subject, the title is not a header; and a browser title never is.
    validate_notification(email(**{"details.title": "{message}", "details.subject": "Hi",
                                   **smuggled}), "acme", NOW)
    validate_notification(payload(**{"details.title": "{message}", **smuggled}), "acme", NOW)


def test_existing_payloads_still_pass() -> None:
    from tests.support.payloads import email_payload

    validate_notification(DESIGN_PAYLOAD, "acme", NOW)
    validate_notification(email_payload(), "acme", NOW)
    validate_notification(email_payload(subject="Order {message|sub(0,5)}"), "acme", NOW)


def test_the_channel_renders_with_the_same_checks() -> None:
    """Defence in depth: a stored payload that slipped past intake still fails to render."""
    from herald.channels import Channel
    from herald.delivery import Delivery
    from herald.render import render_message

    def delivery(details: dict[str, Any]) -> Delivery:
        return Delivery(tag="t", tenant="acme", type="CM_EMAIL", channel=Channel.EMAIL,
                        priority=4, uid="1", recipient="bob@example.com", attempt=1, lease=1.0,
                        created_at=NOW, expires_at=NOW + 60,
                        payload={"type": "CM_EMAIL", "user": {"uid": 1}, "details": details})

    message = render_message(delivery({"title": "T {n}", "content": "{n}", "vars": {"n": 1}}))
    assert (message.subject, message.title, message.text) == ("T 1", "T 1", "1")
    for details, field in [
        ({"content": "{details}"}, "details.content"),
        ({"content": "{a}" * 1_000, "vars": {"a": "x" * 200}}, "details.content"),
        ({"content": "x", "title": "{m}", "vars": {"m": "a\nBcc: x@y"}}, "details.title"),
    ]:
        with pytest.raises(TemplateError) as caught:
            render_message(delivery(details))
        assert caught.value.field == field
