"""``outcome_from_error``: the one place an exception raised while delivering becomes an outcome."""

from __future__ import annotations

from herald.errors import PermanentProviderError, TemplateError, TransientProviderError
from herald.outcome import outcome_from_error


def test_a_template_that_cannot_render_fails_for_good() -> None:
    outcome = outcome_from_error("t", "herald", TemplateError("missing variable 'name'"))
    assert (outcome.kind, outcome.provider, outcome.error) == (
        "failed", "herald", "missing variable 'name'")


def test_provider_errors_keep_their_kind_code_and_wait() -> None:
    retry = outcome_from_error("t", "smtp", TransientProviderError("busy", "421", retry_after=2.0))
    failed = outcome_from_error("t", "smtp", PermanentProviderError("no such user", "550"))
    assert (retry.kind, retry.code, retry.retry_after, retry.error) == ("retry", "421", 2.0, "busy")
    assert (failed.kind, failed.code, failed.retry_after) == ("failed", "550", None)


def test_a_deadline_is_a_retry_with_its_code() -> None:
    outcome = outcome_from_error("t", "herald", TransientProviderError("no answer within 30s",
                                                                       "deadline"))
    assert (outcome.kind, outcome.code, outcome.error) == ("retry", "deadline",
                                                           "no answer within 30s")


def test_an_unknown_exception_is_retried_and_named() -> None:
    outcome = outcome_from_error("t", "herald", KeyError("x"))
    assert (outcome.kind, outcome.error, outcome.code) == ("retry", "KeyError: 'x'", None)
