"""Hostile input: schema-driven fuzzing from Herald's own OpenAPI document, CR/LF in header-bound
fields, template abuse, and more WebSocket connections per user than the gateway allows.

Run it only against a Herald that cannot reach anything but loopback (``tests.chaos.sandbox``
runs it in a network namespace of its own): a fuzzed ``callback_url`` names hosts that Herald
resolves, and no DNS query may leave this machine.
"""

from __future__ import annotations

import asyncio
import copy
import random
import time
from collections.abc import Callable
from typing import Any

import httpx
import requests
import schemathesis
import websockets
from hypothesis import HealthCheck, Phase, given, seed, settings
from websockets.exceptions import InvalidStatus

from tests.chaos.load import parse_metrics
from tests.chaos.tally import Tally

#: Longest a non-waiting request may take before we call it a hang.
ANSWER_SECONDS = 15.0


def fuzz(base_url: str, api_key: str, budget: int, rng_seed: int = 0,
         admin_key: str | None = None) -> Tally:
    """About ``budget`` schema-generated requests over every operation, valid and invalid data.

    A problem: any 5xx but a 503 with ``Retry-After``, any request not answered in time (a
    hang), a dropped connection, or a Herald not healthy afterwards. ``/v1/admin/…`` gets
    ``admin_key`` (when the admin console exists and has one).
    """
    tally = Tally("hostile input: fuzz")
    started = time.monotonic()
    document = httpx.get(f"{base_url}/openapi.json", timeout=30).json()
    schema = schemathesis.openapi.from_dict(document)
    # An operation the document describes wrongly is a finding too: the generator says so.
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    modes = list(schemathesis.GenerationMode)
    session = requests.Session()
    rng = random.Random(rng_seed)
    statuses: dict[str, int] = {}
    errors: list[str] = []
    sent = [0]

    def call(case: Any) -> None:
        headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
        if rng.random() < 0.9:  # mostly past authentication, where the interesting code is
            admin = admin_key and str(case.path).startswith("/v1/admin")
            headers["Authorization"] = f"Bearer {admin_key if admin else api_key}"
        wait: Any = (case.query or {}).get("wait") if isinstance(case.query, dict) else None
        timeout = ANSWER_SECONDS + (min(float(wait), 60.0) if _number(wait) else 0.0)
        sent[0] += 1
        case.headers = headers
        request = case.as_transport_kwargs(base_url=base_url)
        try:
            # Streamed: an answer is its status line and headers (the admin event stream
            # never ends); a body is read only to quote an error.
            with session.request(**request, stream=True, timeout=(5.0, timeout)) as response:
                code = response.status_code
                text = response.raw.read(200, decode_content=True) if code >= 500 else b""
        except requests.Timeout:
            errors.append(f"hang: no answer in {timeout:.0f} s to {case.as_curl_command()[:300]}")
            return
        except requests.ConnectionError as exc:
            errors.append(f"connection dropped ({type(exc).__name__}): {case.method} "
                          f"{case.formatted_path}")
            return
        statuses[str(code)] = statuses.get(str(code), 0) + 1
        if code >= 500 and not (code == 503 and "Retry-After" in response.headers):
            errors.append(f"{code} {text!r} for {case.as_curl_command()[:400]}")

    runs = [(operation, mode) for operation in operations for mode in modes]
    # Rounds until the budget is spent: an operation with few distinct inputs (GET /healthz)
    # runs out early, so the others are given what it left (with another seed each round).
    for round_ in range(6):
        left = budget - sent[0]
        if left <= 0 or not runs:
            break
        per_run = max(1, left // len(runs))
        for operation, mode in list(runs):
            before = sent[0]
            try:
                _generate(operation, mode, per_run, rng_seed + round_, call)
            except Exception as exc:  # noqa: BLE001 - a generation failure is ours to note
                runs.remove((operation, mode))
                if round_ == 0:
                    tally.notes.append(f"{operation.label} {mode.value}: {type(exc).__name__}")
                continue
            if sent[0] - before < per_run // 2:
                runs.remove((operation, mode))  # it has little more to say
    tally.offered = sent[0]
    tally.answers = statuses
    tally.server_errors = len(errors)
    tally.problems += errors[:20]
    if not _healthy(base_url):
        tally.problems.append("Herald is not healthy after the fuzzing")
    tally.notes.append(f"{sent[0]} requests over {len(operations)} operations")
    tally.seconds = time.monotonic() - started
    return tally


def _generate(operation: Any, mode: Any, examples: int, rng_seed: int,
              call: Callable[[Any], None]) -> None:
    """Call ``call`` on up to ``examples`` cases Hypothesis generates for ``operation``."""

    @seed(rng_seed)
    @settings(max_examples=examples, database=None, deadline=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.generate])
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        call(case)

    run()


def _number(value: Any) -> bool:
    try:
        return float(value) >= 0
    except (TypeError, ValueError):
        return False


def _healthy(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/healthz", timeout=10).status_code == 200
    except httpx.HTTPError:
        return False


EMAIL: dict[str, Any] = {"type": "CM_EMAIL", "user": {"uid": "hostile", "name": {"first": "Bo"}},
                         "details": {"to": "bo@example.com", "subject": "Hi", "content": "x"}}
SMS: dict[str, Any] = {"type": "OTP_SMS", "user": {"uid": "hostile"},
                       "details": {"to": "+14155550100", "content": "x"}}
FAX: dict[str, Any] = {"type": "DOC_FAX", "user": {"uid": "hostile"},
                       "details": {"to": "+14155550100", "content": "x"}}
INJECT = "a@example.com\r\nBcc: victim@example.com"


def _with(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    payload = copy.deepcopy(base)
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = payload
        for name in parents:
            node = node.setdefault(name, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return payload


#: (what, payload, the field the 422 must name).
CRLF_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("email to", _with(EMAIL, details__to=INJECT), "details.to"),
    ("email from", _with(EMAIL, details__from=INJECT), "details.from"),
    ("email subject", _with(EMAIL, details__subject="Hi\r\nBcc: victim@example.com"),
     "details.subject"),
    ("email reply_to", _with(EMAIL, details__reply_to=INJECT), "details.reply_to"),
    ("email title as subject", _with(EMAIL, details__subject=None, details__title="Hi\nBcc: v@x.io"),
     "details.title"),
    ("user.email", _with(EMAIL, details__to=None, user__email=INJECT), "user.email"),
    ("sms from", _with(SMS, details__from="Herald\r\nX"), "details.from"),
    ("fax from", _with(FAX, details__from="+14155550100\r\nX: y"), "details.from"),
    ("subject via vars", _with(EMAIL, details__subject="Hi {who}",
                               details__vars={"who": "x\r\nBcc: victim@example.com"}),
     "details.subject"),
    ("subject via user name", _with(EMAIL, details__subject="Hi {user.name.first}",
                                    user__name={"first": "Bo\rBcc: victim@example.com"}),
     "details.subject"),
    ("title via vars", _with(EMAIL, details__subject=None, details__title="{t}",
                             details__vars={"t": "x\nBcc: v@x.io"}), "details.title"),
]
BIG = "A" * 60_000
TEMPLATE_CASES: list[tuple[str, dict[str, Any]]] = [
    ("object placeholder {details}", _with(EMAIL, details__content="{details}")),
    ("object placeholder {user}", _with(EMAIL, details__content="{user}")),
    ("object placeholder {user.name}", _with(EMAIL, details__content="{user.name}")),
    ("object var", _with(EMAIL, details__content="{v}", details__vars={"v": {"a": [1, 2]}})),
    ("render bomb", _with(EMAIL, details__content="{x}" * 30_000, details__vars={"x": BIG})),
    ("subject bomb", _with(EMAIL, details__subject="{x}" * 300, details__vars={"x": BIG})),
    ("vars too big", _with(EMAIL, details__vars={"x": "A" * 70_000})),
    ("too many vars", _with(EMAIL, details__vars={f"k{i}": i for i in range(1_500)})),
    ("unknown filter", _with(EMAIL, details__content="{message|__class__}")),
    ("filter argument bomb", _with(EMAIL, details__content="{message|default('" + BIG + "')}"
                                   "{message|sub(0,99999999999999999999)}")),
    ("dunder path", _with(EMAIL, details__content="{user.__class__.__init__.__globals__}")),
    ("format spec", _with(EMAIL, details__content="{message:>99999999}")),
]


def hostile_payloads(base_url: str, api_key: str) -> Tally:
    """CR/LF in every header-bound field and template abuse: each a 422 naming the field, fast."""
    tally = Tally("hostile input: CR/LF, templates")
    started = time.monotonic()
    headers = {"Authorization": f"Bearer {api_key}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=ANSWER_SECONDS) as client:
        for what, payload, field in CRLF_CASES:
            for route, body, prefix in (("/v1/notifications", payload, ""),
                                        ("/v1/notifications/batch",
                                         {"notifications": [payload]}, "notifications.0.")):
                _expect_422(tally, client, f"CR/LF {what} ({route})", route, body, prefix + field)
        for what, payload in TEMPLATE_CASES:
            _expect_422(tally, client, f"template {what}", "/v1/notifications", payload, None,
                        allowed=(413, 422))
    tally.seconds = time.monotonic() - started
    return tally


def _expect_422(tally: Tally, client: httpx.Client, what: str, route: str, body: Any,
                field: str | None, allowed: tuple[int, ...] = (422,)) -> None:
    tally.offered += 1
    began = time.monotonic()
    try:
        response = client.post(route, json=body)
    except httpx.HTTPError as exc:
        tally.problems.append(f"{what}: {type(exc).__name__} after {time.monotonic() - began:.1f} s")
        return
    code = response.status_code
    answer = response.json() if response.headers.get("content-type", "").startswith(
        "application/json") else {}
    if route.endswith("/batch") and code == 202:
        results = answer.get("results") or [{}]
        answer, code = results[0], (422 if "error" in results[0] else 202)
    tally.answers[str(code)] = tally.answers.get(str(code), 0) + 1
    error = answer.get("error") or {}
    if code not in allowed:
        tally.problems.append(f"{what}: answered {code} {response.text[:200]!r}")
    elif code == 422 and field is not None and error.get("field") != field:
        tally.problems.append(f"{what}: 422 names {error.get('field')!r}, not {field!r}")
    elif code == 422 and not error.get("field"):
        tally.problems.append(f"{what}: 422 names no field: {error}")
    if time.monotonic() - began > 5:
        tally.problems.append(f"{what}: took {time.monotonic() - began:.1f} s")


async def websocket_flood(base_url: str, api_key: str, attempts: int = 60) -> Tally:
    """One user opens ``attempts`` connections: the gateway takes up to its cap and answers
    429 beyond it; the gateway still serves others, and the user again once they closed."""
    tally = Tally("hostile input: WebSocket flood")
    started = time.monotonic()
    headers = {"Authorization": f"Bearer {api_key}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as http:
        token = (await http.post("/v1/browser-tokens", json={"uid": "flood"})).json()["token"]
        url = (await http.get("/v1/browser-endpoint", params={"token": token})).json()["url"]
        opened: list[Any] = []
        refused: dict[int, int] = {}
        for _ in range(attempts):
            try:
                opened.append(await websockets.connect(url, open_timeout=10))
            except InvalidStatus as exc:
                code = exc.response.status_code
                refused[code] = refused.get(code, 0) + 1
            except (OSError, TimeoutError) as exc:
                tally.problems.append(f"connection failed outright: {type(exc).__name__}")
                break
        tally.offered, tally.accepted = attempts, len(opened)
        tally.notes.append(f"{len(opened)} connections taken, refused {refused}")
        if not opened or set(refused) - {429}:
            tally.problems.append(f"wanted connections up to the cap then 429s: {len(opened)} "
                                  f"taken, refused {refused}")
        for ws in opened:
            await ws.close()
        await asyncio.sleep(0.5)
        try:
            async with websockets.connect(url, open_timeout=10):
                pass
        except (InvalidStatus, OSError, TimeoutError) as exc:
            tally.problems.append(f"after closing, the user cannot connect: {exc!r}")
        metrics = parse_metrics((await http.get("/metrics")).text)
        tally.herald = {"restarts": metrics.get("herald_actor_restarts", 0.0)}
    tally.seconds = time.monotonic() - started
    return tally
