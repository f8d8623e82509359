"""Short chaos with a Herald of its own (``herald up``), isolated: a hanging provider, a full
disk, overload, SIGKILL of everything then a restart, and hostile input.

One run of ``python -m tests.chaos.sandbox`` (in its own network and mount namespaces, see
``tests.chaos.netns``), started by ``conftest.py`` as soon as these tests are collected, does it
all while other tests run; each test here checks one scenario's tally.
"""

from __future__ import annotations

import pytest

from tests.chaos.tally import Tally

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def tallies(sandbox_tallies: dict[str, Tally]) -> dict[str, Tally]:
    assert "sandbox" not in sandbox_tallies, sandbox_tallies["sandbox"].problems
    return sandbox_tallies


def _clean(tally: Tally) -> None:
    assert tally.lost == 0, tally.problems
    assert not tally.problems, tally.problems


def test_a_hanging_provider_is_cut_at_each_attempt_deadline(tallies: dict[str, Tally]) -> None:
    hang = tallies["provider hang"]
    _clean(hang)
    assert hang.accepted == hang.delivered > 0


def test_a_full_disk_answers_503_and_never_202_for_what_it_did_not_write(
    tallies: dict[str, Tally],
) -> None:
    disk = tallies["disk full"]
    _clean(disk)
    assert disk.answers.get("503", 0) > 0, disk.notes
    assert set(disk.answers) <= {"202", "503"}, disk.answers
    # Its 202s were on disk: they are re-checked after the SIGKILL of everything (restart).


def test_overload_answers_429_and_delivers_everything_it_took(tallies: dict[str, Tally]) -> None:
    overload = tallies["overload"]
    _clean(overload)
    assert overload.answers.get("429", 0) > 0 and overload.accepted == overload.delivered


def test_a_tenant_whose_callbacks_all_fail_never_429s_another_below_its_share(
    tallies: dict[str, Tally],
) -> None:
    noisy = tallies["noisy neighbour"]
    _clean(noisy)
    assert noisy.accepted == noisy.delivered > 0, noisy.notes


def test_sigkill_of_everything_then_restart_delivers_all_accepted(tallies: dict[str, Tally]) -> None:
    restart = tallies["whole restart"]
    _clean(restart)
    assert restart.accepted == restart.delivered > 0


def test_a_restarting_herald_never_answers_404_to_an_intake_post(tallies: dict[str, Tally]) -> None:
    """While `herald up` starts again, Serve's proxy listens before Herald's app is deployed:
    it answers 503 + Retry-After then (serve/starting.py), never its plain-text 404."""
    restart = tallies["whole restart"]
    assert restart.herald.get("serve_404", 0) == 0, restart.problems


def test_fuzzing_every_endpoint_finds_no_server_error_and_no_hang(tallies: dict[str, Tally]) -> None:
    fuzz = tallies["hostile input: fuzz"]
    assert fuzz.offered >= 200 and fuzz.server_errors == 0, fuzz.problems
    assert not fuzz.problems


def test_crlf_in_header_fields_and_template_abuse_are_422_naming_the_field(
    tallies: dict[str, Tally],
) -> None:
    hostile = tallies["hostile input: CR/LF, templates"]
    assert hostile.offered > 30 and not hostile.problems, hostile.problems


def test_websocket_connections_beyond_the_per_user_cap_are_refused(
    tallies: dict[str, Tally],
) -> None:
    flood = tallies["hostile input: WebSocket flood"]
    assert 0 < flood.accepted < flood.offered and not flood.problems, flood.notes
