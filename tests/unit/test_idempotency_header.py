"""The ``Idempotency-Key`` header (issue 20, 6): the same as ``user.mq-uuid-btag``."""

from __future__ import annotations

import pytest

from herald.errors import ValidationError
from herald.models import MAX_IDEMPOTENCY_KEY, validate_notification
from tests.unit.conftest import T0, make_notification

RAW = {"type": "CM_EMAIL", "user": {"uid": 7, "email": "bob@example.com"},
       "details": {"content": "hi"}}


def _with_btag(btag: str) -> dict[str, object]:
    return {**RAW, "user": {**RAW["user"], "mq-uuid-btag": btag}}  # type: ignore[dict-item]


def test_the_header_is_the_idempotency_key() -> None:
    assert validate_notification(RAW, "acme", T0, 1, "order-42").idempotency_key == "order-42"
    assert validate_notification(_with_btag("k"), "acme", T0, 1, "k").idempotency_key == "k"
    assert validate_notification(_with_btag("k"), "acme", T0, 1).idempotency_key == "k"
    assert validate_notification(RAW, "acme", T0, 1).idempotency_key is None
    assert make_notification("EMAIL").idempotency_key is None


@pytest.mark.parametrize(("raw", "header", "says"), [
    (_with_btag("one"), "two", "differs from user.mq-uuid-btag"),
    (RAW, "", "1 to 200 characters"),
    (RAW, "x" * (MAX_IDEMPOTENCY_KEY + 1), "1 to 200 characters"),
])
def test_a_bad_or_conflicting_header_is_a_422_naming_it(raw: object, header: str,
                                                         says: str) -> None:
    with pytest.raises(ValidationError) as refused:
        validate_notification(raw, "acme", T0, 1, header)
    assert refused.value.field == "Idempotency-Key" and says in str(refused.value)
