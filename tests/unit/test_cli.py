"""The `herald` command as a user meets it: in-process against a closed port and a tiny fake Herald.

Every failure must be one `herald: …` line on stderr with a meaningful exit status, never a
traceback; every answer is pretty JSON on stdout.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from launcher.cli import main

KEY = "cli-test-key-" + "k" * 20
SENT_TAG = "0001aaaa-0000-4000-8000-000000000001"  # a notification that was sent
DEAD_TAG = "0002bbbb-0000-4000-8000-000000000002"  # a dead one


@dataclass
class Seen:
    method: str
    path: str
    authorization: str | None
    body: Any = None
    idempotency_key: str | None = None


@dataclass
class FakeHerald:
    """Answers like Herald's API for the routes the CLI uses, and records each request."""

    url: str
    port: int
    requests: list[Seen] = field(default_factory=list)


def _status(tag: str, status: str) -> dict[str, Any]:
    """A status answer as Herald gives it (``herald.record.Record.public``)."""
    return {"tag": tag, "status": status, "type": "CM_EMAIL", "channel": "EMAIL", "priority": 5,
            "attempts": 1, "created_at": 1.0, "updated_at": 2.0, "expires_at": 3.0,
            "not_before": None, "provider_id": None, "reason": None, "bill_to": None,
            "history": [{"attempt": 1, "at": 1.5, "provider": "smtp", "outcome": "sent",
                         "error": None, "code": None}]}


def _answer(method: str, path: str, body: Any) -> tuple[int, Any]:
    error = {"code": "conflict", "message": "cancelled too late: it is sent", "field": None}
    routes: dict[tuple[str, str], tuple[int, Any]] = {
        ("GET", f"/v1/notifications/{SENT_TAG}"): (200, _status(SENT_TAG, "sent")),
        ("DELETE", f"/v1/notifications/{SENT_TAG}"): (409, {"error": error}),
        ("DELETE", f"/v1/notifications/{DEAD_TAG}"): (200, _status(DEAD_TAG, "cancelled")),
        ("POST", f"/v1/notifications/{DEAD_TAG}/retry"): (202, _status(DEAD_TAG, "queued")),
        ("GET", "/v1/notifications/busy"): (429, {"error": {
            "code": "too_many_requests", "message": "at most 8 waiting", "field": None}}),
        ("GET", "/v1/queue"): (200, {"shards": [{"shard": 0, "depth": {"EMAIL": {"queued": 2}}}]}),
        ("POST", "/v1/notifications"): (202, {"details": {"tag": SENT_TAG, "pos": 1}}),
    }
    if (method, path) == ("POST", "/v1/notifications/batch"):
        results = [{"details": {"tag": SENT_TAG, "pos": 1}},
                   {"error": {"code": "invalid", "message": "type is required", "field": "type"}}]
        return 202, {"results": results[:len(body["notifications"])]}
    if (method, path) == ("GET", "/v1/notifications/plain-503"):
        return 503, "no healthy replica"
    return routes.get((method, path), (404, {"error": {
        "code": "not_found", "message": f"no notification at {path}", "field": None}}))


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        path = self.path.split("?", 1)[0]
        self.server.fake.requests.append(
            Seen(self.command, self.path, self.headers.get("Authorization"), body,
                 self.headers.get("Idempotency-Key")))
        if self.headers.get("Authorization") != f"Bearer {KEY}":
            status, answer = 401, {"error": {"code": "unauthorized",
                                             "message": "invalid API key", "field": None}}
        else:
            status, answer = _answer(self.command, path, body)
        text = answer if isinstance(answer, str) else json.dumps(answer)
        data = text.encode()
        self.send_response(status)
        kind = "text/plain" if isinstance(answer, str) else "application/json"
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        if status == 429:
            self.send_header("Retry-After", "2")
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = _handle

    def log_message(self, fmt: str, *args: Any) -> None:  # keep the test output clean
        pass


class _Server(ThreadingHTTPServer):
    fake: FakeHerald


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A clean configuration: nothing from the caller's HERALD_* or herald.toml leaks in."""
    for name in list(os.environ):
        if name.startswith("HERALD_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HERALD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HERALD_API_KEYS", f"acme:{KEY}")
    return tmp_path


@pytest.fixture
def fake(env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHerald]:
    server = _Server(("127.0.0.1", 0), _Handler)
    port = server.server_address[1]
    server.fake = FakeHerald(f"http://127.0.0.1:{port}", port)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("HERALD_PORT", str(port))
    yield server.fake
    server.shutdown()
    server.server_close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _one_error_line(err: str) -> str:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("herald: "), err
    return lines[0]


# -- Herald is not there -----------------------------------------------------------------------
@pytest.mark.parametrize("argv", [["status", SENT_TAG], ["queue"], ["cancel", SENT_TAG],
                                  ["retry", DEAD_TAG], ["send", "n.json"]])
def test_server_down_is_one_line_and_exit_1(
    argv: list[str], env: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (env / "n.json").write_text('{"type": "CM_EMAIL"}')
    port = _closed_port()
    monkeypatch.setenv("HERALD_PORT", str(port))
    assert main(argv) == 1
    out, err = capsys.readouterr()
    line = _one_error_line(err)
    assert line == (f"herald: cannot reach Herald at http://127.0.0.1:{port} "
                    "(is `herald up` running?)")
    assert out == ""


# -- answers -----------------------------------------------------------------------------------
def test_status_prints_pretty_json_with_the_key(
    fake: FakeHerald, capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["status", SENT_TAG, "--wait", "5"]) == 0
    out, err = capsys.readouterr()
    shown = json.loads(out)
    assert (shown["tag"], shown["status"], shown["history"][0]["provider"]) == (
        SENT_TAG, "sent", "smtp")
    assert out.startswith("{\n  ")  # indented, not one line
    assert err == ""
    (seen,) = fake.requests
    assert (seen.method, seen.path) == ("GET", f"/v1/notifications/{SENT_TAG}?wait=5.0")
    assert seen.authorization == f"Bearer {KEY}"


def test_cancel_retry_and_queue_use_their_routes(
    fake: FakeHerald, capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["cancel", DEAD_TAG]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "cancelled"
    assert main(["retry", DEAD_TAG]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "queued"
    assert main(["queue"]) == 0
    assert json.loads(capsys.readouterr().out)["shards"][0]["depth"] == {"EMAIL": {"queued": 2}}
    assert [(s.method, s.path) for s in fake.requests] == [
        ("DELETE", f"/v1/notifications/{DEAD_TAG}"),
        ("POST", f"/v1/notifications/{DEAD_TAG}/retry"),
        ("GET", "/v1/queue"),
    ]
    assert {s.authorization for s in fake.requests} == {f"Bearer {KEY}"}


def test_an_error_answer_prints_its_json_and_one_line_and_exits_1(
    fake: FakeHerald, capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["cancel", SENT_TAG]) == 1
    out, err = capsys.readouterr()
    assert json.loads(out)["error"]["code"] == "conflict"
    assert _one_error_line(err) == "herald: HTTP 409 conflict: cancelled too late: it is sent"
    assert main(["status", "no-such-tag"]) == 1
    out, err = capsys.readouterr()
    assert json.loads(out)["error"]["code"] == "not_found"
    assert _one_error_line(err).startswith("herald: HTTP 404 not_found: ")


def test_a_non_json_error_answer_is_one_line(
    fake: FakeHerald, capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["status", "plain-503"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert _one_error_line(err) == "herald: HTTP 503 Service Unavailable: no healthy replica"


def test_a_wrong_key_says_which_setting_to_check(
    fake: FakeHerald, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("HERALD_API_KEYS", "acme:not-the-key")
    assert main(["queue"]) == 1
    out, err = capsys.readouterr()
    assert json.loads(out)["error"]["code"] == "unauthorized"
    assert "HERALD_API_KEYS" in _one_error_line(err)


def test_the_dev_key_from_the_data_dir_is_used(
    fake: FakeHerald, env: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("HERALD_API_KEYS")
    (env / "data").mkdir()
    (env / "data" / "dev-api-key").write_text(KEY + "\n")
    assert main(["queue"]) == 0
    assert fake.requests[0].authorization == f"Bearer {KEY}"


def test_no_key_at_all_is_one_line_and_exit_2(
    env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("HERALD_API_KEYS")
    assert main(["queue"]) == 2
    assert "no API key" in _one_error_line(capsys.readouterr().err)


# -- send --------------------------------------------------------------------------------------
def test_send_posts_the_file(
    fake: FakeHerald, env: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    payload = {"type": "CM_EMAIL", "user": {"uid": 1}, "details": {"content": "hi"}}
    (env / "n.json").write_text(json.dumps(payload))
    assert main(["send", str(env / "n.json")]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == {"tag": SENT_TAG, "pos": 1, "duplicate": False}
    assert err == ""
    (seen,) = fake.requests
    assert (seen.method, seen.path, seen.body) == ("POST", "/v1/notifications", payload)
    assert seen.idempotency_key is None


def test_send_a_batch_says_how_many_were_refused(
    fake: FakeHerald, env: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    (env / "batch.json").write_text(json.dumps({"notifications": [{}, {}]}))
    assert main(["send", str(env / "batch.json")]) == 0  # accepted as a whole: 202
    out, err = capsys.readouterr()
    accepted, refused = json.loads(out)
    assert accepted["tag"] == SENT_TAG
    assert (refused["index"], refused["field"]) == (1, "type")
    assert _one_error_line(err) == ('herald: 1 of 2 notifications were refused '
                                    '(see their "code" and "message")')
    assert fake.requests[0].path == "/v1/notifications/batch"


def test_send_a_missing_file(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["send", "x.json"]) == 2
    out, err = capsys.readouterr()
    assert _one_error_line(err) == "herald: no such file: x.json"
    assert out == ""


def test_send_a_file_that_is_not_json(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (env / "x.json").write_text("{'type': 'CM_EMAIL'}")
    assert main(["send", "x.json"]) == 2
    assert _one_error_line(capsys.readouterr().err).startswith("herald: x.json is not JSON: ")


def test_send_a_binary_file(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (env / "x.json").write_bytes(b"\xff\xfe\x00garbage")
    assert main(["send", "x.json"]) == 2
    assert _one_error_line(capsys.readouterr().err).startswith("herald: x.json is not JSON: ")


def test_send_a_directory(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (env / "d").mkdir()
    assert main(["send", "d"]) == 2
    assert _one_error_line(capsys.readouterr().err).startswith("herald: cannot read d: ")


# -- configuration and help --------------------------------------------------------------------
@pytest.mark.parametrize("argv", [["queue"], ["status", SENT_TAG], ["outbox"], ["up"]])
def test_a_bad_port_is_a_configuration_error(
    argv: list[str], env: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("HERALD_PORT", "eighty")
    assert main(argv) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith("herald: configuration error: ")
    assert "HERALD_PORT" in line


def test_outbox_lists_captured_entries(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outbox = env / "data" / "outbox"
    outbox.mkdir(parents=True)
    (outbox / "sms.jsonl").write_text('{"at": 2, "to": "+1"}\n{"at": 1, "to": "+2"}\n')
    assert main(["outbox", "--channel", "sms", "--limit", "1"]) == 0
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == [
        {"at": 2, "to": "+1"}]


@pytest.mark.parametrize("argv", [["--help"], ["up", "--help"], ["send", "--help"],
                                  ["status", "--help"], ["cancel", "--help"],
                                  ["retry", "--help"], ["queue", "--help"],
                                  ["outbox", "--help"]])
def test_help_is_plain_text_with_examples(
    argv: list[str], capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "example" in out
    assert "``" not in out and ":class:" not in out


def test_the_top_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("up", "send", "status", "cancel", "retry", "queue", "outbox"):
        assert f"\n    {command} " in out


def test_send_with_an_idempotency_key(
    fake: FakeHerald, env: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    (env / "n.json").write_text(json.dumps({"type": "CM_EMAIL"}))
    assert main(["send", "n.json", "--idempotency-key", "order-17"]) == 0
    assert fake.requests[0].idempotency_key == "order-17"


def test_a_429_says_when_to_try_again(
    fake: FakeHerald, capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["status", "busy"]) == 1
    assert _one_error_line(capsys.readouterr().err) == (
        "herald: HTTP 429 too_many_requests: at most 8 waiting (retry after 2 s)")


# -- another Herald: --url and --key, HERALD_URL and HERALD_KEY ----------------------------------
@pytest.fixture
def elsewhere(fake: FakeHerald, monkeypatch: pytest.MonkeyPatch) -> FakeHerald:
    """The fake is not the local Herald: that one is a closed port with a wrong key."""
    monkeypatch.setenv("HERALD_PORT", str(_closed_port()))
    monkeypatch.setenv("HERALD_API_KEYS", "acme:not-the-key")
    return fake


def test_url_and_key_options_reach_another_herald(
    elsewhere: FakeHerald, capsys: pytest.CaptureFixture[str],
) -> None:
    for argv in (["status", SENT_TAG], ["cancel", DEAD_TAG], ["retry", DEAD_TAG], ["queue"]):
        assert main([*argv, "--url", elsewhere.url + "/", "--key", KEY]) == 0, argv
    assert len(elsewhere.requests) == 4
    assert {s.authorization for s in elsewhere.requests} == {f"Bearer {KEY}"}


def test_herald_url_and_key_variables_reach_another_herald(
    elsewhere: FakeHerald, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("HERALD_URL", elsewhere.url)
    monkeypatch.setenv("HERALD_KEY", KEY)
    assert main(["status", SENT_TAG]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "sent"
    assert main(["cancel", DEAD_TAG, "--key", "wrong"]) == 1  # the option wins
    assert "(check --key, HERALD_KEY or HERALD_API_KEYS)" in _one_error_line(
        capsys.readouterr().err)


def test_another_herald_that_is_down_is_one_line(
    env: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    assert main(["status", SENT_TAG, "--url", url]) == 1
    assert _one_error_line(capsys.readouterr().err) == f"herald: cannot reach Herald at {url}"


@pytest.mark.parametrize("url", ["herald.example.org", "ftp://herald.example.org"])
def test_a_url_that_is_not_http_is_a_usage_error(
    url: str, env: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["queue", "--url", url]) == 2
    assert _one_error_line(capsys.readouterr().err).startswith("herald: --url: ")


def test_a_bad_herald_url_is_a_configuration_error(
    env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("HERALD_URL", "herald.example.org")
    assert main(["queue"]) == 2
    assert _one_error_line(capsys.readouterr().err).startswith(
        "herald: configuration error: HERALD_URL: ")
