"""Intake's error answers over real HTTP: a bug is a 500 ``internal`` (logged with its traceback,
never shown, no Retry-After); what passes by itself (an actor that died or cannot be reached, a
Ray timeout, a full disk, a locked database) is a 503 with Retry-After.

The app is serve's own exception handlers (``install_error_handlers``) with routes that raise
what a route can meet, served by uvicorn on loopback. A real dead actor's answer is in
``tests/integration/test_intake_guards.py``.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from ray.exceptions import ActorDiedError, ActorUnavailableError, GetTimeoutError, RayTaskError

from herald.errors import NotFound, Unavailable
from serve.answers import install_error_handlers
from tests.support.loopback_app import served


def in_actor(cause: BaseException) -> BaseException:
    """What awaiting an actor call raises when the method raised ``cause``."""
    return RayTaskError("QueueActor.get", "Traceback (most recent call last): …", cause) \
        .as_instanceof_cause()


def locked_database(tmp: Path) -> sqlite3.OperationalError:
    """A real "database is locked": another connection holds the write lock."""
    holder = sqlite3.connect(tmp / "db.sqlite", isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")
    other = sqlite3.connect(tmp / "db.sqlite", timeout=0)
    try:
        other.execute("INSERT INTO t VALUES (1)")
    except sqlite3.OperationalError as exc:
        return exc
    finally:
        other.close()
        holder.close()
    raise AssertionError("the write lock was not held")


@pytest.fixture(scope="module")
def raised(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Callable[[], BaseException]]:
    locked = locked_database(tmp_path_factory.mktemp("sqlite"))
    return {
        "bug": lambda: KeyError("shard"),
        "bug-in-actor": lambda: in_actor(ValueError("a bug in the shard")),
        "actor-died": lambda: ActorDiedError(),
        "actor-unavailable": lambda: ActorUnavailableError("restarting", None),
        "ray-timeout": lambda: GetTimeoutError("no answer"),
        "disk-full": lambda: in_actor(OSError(errno.ENOSPC, "No space left on device")),
        "locked": lambda: in_actor(locked),
        "unavailable": lambda: in_actor(Unavailable("shard 2 cannot write")),
        "not-found": lambda: NotFound("no notification x"),
    }


@pytest.fixture(scope="module")
def base_url(raised: dict[str, Callable[[], BaseException]]) -> Iterator[str]:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/raise/{kind}")
    async def fail(kind: str) -> None:
        raise raised[kind]()

    with served(app) as url:
        yield url


@pytest.mark.parametrize("kind", ["bug", "bug-in-actor"])
def test_a_bug_is_a_500_logged_with_its_traceback_and_never_shown(
    base_url: str, kind: str, caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="herald.intake"):
        answer = httpx.get(f"{base_url}/raise/{kind}")
    assert answer.status_code == 500, answer.text
    assert answer.json() == {"error": {"code": "internal", "message": answer.json()["error"][
        "message"], "field": None}}
    assert "Traceback" not in answer.text and "shard" not in answer.json()["error"]["message"]
    assert "retry-after" not in answer.headers  # the same request would fail again
    logged = [r for r in caplog.records if r.name == "herald.intake" and r.exc_info]
    assert logged and logged[0].levelno == logging.ERROR


@pytest.mark.parametrize("kind", ["actor-died", "actor-unavailable", "ray-timeout", "disk-full",
                                  "locked", "unavailable"])
def test_what_passes_by_itself_is_a_503_with_retry_after(base_url: str, kind: str) -> None:
    answer = httpx.get(f"{base_url}/raise/{kind}")
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"]["code"] == "unavailable"
    assert int(answer.headers["retry-after"]) >= 1


def test_the_cores_errors_keep_their_status(base_url: str) -> None:
    answer = httpx.get(f"{base_url}/raise/not-found")
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"
