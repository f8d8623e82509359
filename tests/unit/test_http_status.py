"""One HTTP-status rule for every HTTP provider: 408/425/429/5xx retry, anything else fails."""

from __future__ import annotations

import pytest

from herald.errors import PermanentProviderError, TransientProviderError
from herald.http_status import classify_http_status
from herald.outcome import outcome_from_error


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504, 599])
def test_busy_or_down_is_transient_with_retry_after(status: int) -> None:
    error = classify_http_status(status, f"HTTP {status}", retry_after=7.0)
    assert isinstance(error, TransientProviderError)
    assert (error.message, error.provider_code, error.retry_after) == (f"HTTP {status}", str(status), 7.0)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 409, 410, 413, 422, 451])
def test_other_4xx_is_permanent(status: int) -> None:
    error = classify_http_status(status, "refused", retry_after=7.0)
    assert isinstance(error, PermanentProviderError)
    assert not isinstance(error, TransientProviderError)
    assert error.provider_code == str(status)


@pytest.mark.parametrize("status", [204, 301, 302, 307])
def test_statuses_the_caller_did_not_accept_are_permanent(status: int) -> None:
    # A redirect is not followed and an unexpected 2xx is not the answer the API promises:
    # sending the same request again would get the same answer.
    assert isinstance(classify_http_status(status, "unexpected"), PermanentProviderError)


def test_the_providers_own_code_is_kept() -> None:
    transient = classify_http_status(503, "down", code="10007")
    permanent = classify_http_status(400, "bad number", code="10016")
    assert (transient.provider_code, permanent.provider_code) == ("10007", "10016")


def test_the_error_becomes_the_expected_outcome() -> None:
    retry = outcome_from_error("t", "fax", classify_http_status(408, "slow", retry_after=3.0))
    failed = outcome_from_error("t", "fax", classify_http_status(404, "gone"))
    assert (retry.kind, retry.code, retry.retry_after) == ("retry", "408", 3.0)
    assert (failed.kind, failed.code, failed.retry_after) == ("failed", "404", None)
