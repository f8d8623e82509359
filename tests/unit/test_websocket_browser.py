"""WebSocketGateway with real `websockets` clients on loopback: auth, park, ack, order, tenants."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from actors.providers.websocket_browser import WebSocketGateway
from herald.browser_tokens import mint_token
from herald.outcome import Outcome
from herald.render import Message
from tests.support.providers import deliver

HOST = "127.0.0.1"
SECRET = b"browser-secret-" + b"x" * 17
TENANT = "acme"


def make_message(tag: str, tenant: str = TENANT, uid: str = "u-1", **changes: Any) -> Message:
    message = Message(
        tag=tag, tenant=tenant, type="CM_BROWSER", channel="browser", uid=uid, attempt=1,
        to=None, sender=None, subject=None, title="New Message", text=f"Hi {uid}", html=None,
        media_url=None, bill_to=None, expires_at=time.time() + 3600, priority=4,
    )
    return dataclasses.replace(message, **changes)


def token_for(tenant: str = TENANT, uid: str = "u-1", *, ttl: float = 60.0,
              now: float | None = None, secret: bytes = SECRET) -> str:
    return mint_token(secret, tenant, uid, ttl=ttl, now=time.time() if now is None else now)[0]


async def until(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    """Wait for a condition the server reaches on its own (e.g. after a client hung up)."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - the state is the gateway's, it fires no event
            await asyncio.sleep(0.005)


async def next_frame(ws: ClientConnection) -> dict[str, Any]:
    async with asyncio.timeout(2.0):
        frame = json.loads(await ws.recv())
    assert isinstance(frame, dict)
    return frame


async def ping(ws: ClientConnection, value: object = 1) -> None:
    """Round trip: every frame this client sent before has been handled by the gateway."""
    await ws.send(json.dumps({"ping": value}))
    assert await next_frame(ws) == {"pong": value}


class Harness:
    """One started gateway, its ``on_connect`` calls, and the clients a test opens."""

    def __init__(self, stack: AsyncExitStack, **options: Any) -> None:
        self.connected: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self.fail_on_connect = False
        #: What ``on_connect`` answers (the tags "the shard" released), once set.
        self.released: asyncio.Future[list[str]] | None = None
        self.gateway = WebSocketGateway(HOST, 0, SECRET, on_connect=self._on_connect, **options)
        self._stack = stack

    async def _on_connect(self, tenant: str, uid: str) -> list[str] | None:
        await self.connected.put((tenant, uid))
        if self.fail_on_connect:
            raise RuntimeError("queue unreachable")
        return None if self.released is None else await self.released

    def url(self, query: str = "", path: str = "/ws") -> str:
        return f"ws://{HOST}:{self.gateway.port}{path}{query}"

    async def join(self, tenant: str = TENANT, uid: str = "u-1") -> ClientConnection:
        """A client connected as (tenant, uid), once the gateway has registered it."""
        url = self.url(f"?token={token_for(tenant, uid)}")
        ws = await self._stack.enter_async_context(connect(url))
        async with asyncio.timeout(2.0):
            assert await self.connected.get() == (tenant, uid)
        return ws


@pytest.fixture
async def make_harness() -> AsyncIterator[Callable[..., Awaitable[Harness]]]:
    async with AsyncExitStack() as stack:

        async def make(**options: Any) -> Harness:
            harness = Harness(stack, **options)
            await harness.gateway.start()
            stack.push_async_callback(harness.gateway.close)
            return harness

        yield make


@pytest.fixture
async def harness(make_harness: Callable[..., Awaitable[Harness]]) -> Harness:
    return await make_harness(ack_timeout=5.0)


# -- connecting -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("", "no token"),
        ("?token=", "empty token"),
        ("?token=v1.garbage.garbage", "malformed"),
        (f"?token={token_for(secret=b'another secret')}", "forged"),
        (f"?token={token_for(ttl=10, now=time.time() - 60)}", "expired"),
    ],
)
async def test_refused_before_upgrade_without_valid_token(
    harness: Harness, query: str, reason: str
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(harness.url(query)):
            pass
    assert refused.value.response.status_code == 401, reason
    assert harness.gateway.connections() == 0
    assert harness.connected.empty()


async def test_wrong_path_is_404(harness: Harness) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(harness.url(f"?token={token_for()}", path="/other")):
            pass
    assert refused.value.response.status_code == 404


async def test_valid_token_connects_and_reports_the_user(harness: Harness) -> None:
    ws = await harness.join(TENANT, "u-1")
    assert (harness.gateway.connected_users(), harness.gateway.connections()) == (1, 1)
    assert harness.gateway.is_connected(TENANT, "u-1")
    await ws.close()
    await until(lambda: harness.gateway.connections() == 0)
    assert harness.gateway.connected_users() == 0


async def test_on_connect_failure_is_not_fatal(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    harness.fail_on_connect = True
    ws = await harness.join()
    await ping(ws)
    await until(lambda: "on_connect failed" in caplog.text)
    task = asyncio.create_task(harness.gateway.send(make_message("t-1")))
    await ws.send(json.dumps({"ack": (await next_frame(ws))["tag"]}))
    assert (await task).kind == "delivered"


async def test_what_the_shard_released_goes_out_before_a_newer_send(harness: Harness) -> None:
    """A newer send already inside the gateway when its user connects waits for what the shard
    released on that connection (it comes back a lease later): it would arrive first otherwise
    (seen in the three-node test, the third of three first after a node loss)."""
    harness.released = asyncio.get_running_loop().create_future()
    ws = await harness.join()
    newer = asyncio.create_task(harness.gateway.send(make_message("t-3")))
    await asyncio.sleep(0.05)
    harness.released.set_result(["t-1", "t-2"])
    await asyncio.sleep(0.05)
    assert not newer.done()
    older = [asyncio.create_task(harness.gateway.send(make_message(t))) for t in ("t-1", "t-2")]
    frames = [(await next_frame(ws))["tag"] for _ in range(3)]
    assert frames == ["t-1", "t-2", "t-3"]
    for tag in frames:
        await ws.send(json.dumps({"ack": tag}))
    assert [(await task).kind for task in (*older, newer)] == ["delivered"] * 3


async def test_a_catch_up_whose_released_never_come_lets_newer_sends_go(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr("actors.providers.websocket_browser.CATCH_UP_SECONDS", 0.2)
    harness.released = asyncio.get_running_loop().create_future()
    harness.released.set_result(["cancelled-meanwhile"])
    ws = await harness.join()
    newer = asyncio.create_task(harness.gateway.send(make_message("t-2")))
    assert (await next_frame(ws))["tag"] == "t-2"
    assert "browser catch-up cut short" in caplog.text
    await ws.send(json.dumps({"ack": "t-2"}))
    assert (await newer).kind == "delivered"


async def test_a_send_waiting_behind_a_catch_up_parks_when_the_user_leaves(
    harness: Harness,
) -> None:
    harness.released = asyncio.get_running_loop().create_future()
    ws = await harness.join()
    newer = asyncio.create_task(harness.gateway.send(make_message("t-2")))
    await asyncio.sleep(0.05)
    await ws.close()
    outcome = await asyncio.wait_for(newer, 2.0)
    assert (outcome.kind, outcome.error) == ("park", "disconnected")


async def test_connections_per_user_are_limited(
    make_harness: Callable[..., Awaitable[Harness]],
) -> None:
    harness = await make_harness(max_connections_per_user=1)
    await harness.join(TENANT, "u-1")
    with pytest.raises(InvalidStatus) as refused:
        async with connect(harness.url(f"?token={token_for(TENANT, 'u-1')}")):
            pass
    assert refused.value.response.status_code == 429
    await harness.join(TENANT, "u-2")  # the limit is per user


# -- sending ----------------------------------------------------------------------------------


async def test_offline_user_parks(harness: Harness) -> None:
    outcome = await harness.gateway.send(make_message("t-1"))
    assert outcome == Outcome("t-1", "park", "websocket")


async def test_a_reconnect_unparks_only_once_the_parks_on_their_way_are_recorded(
        harness: Harness) -> None:
    """Released before a park still on its way to the shard is recorded, the notifications
    parked earlier would arrive first and that one after them: out of order."""
    outcome = await harness.gateway.send(make_message("t-1"))
    assert outcome.kind == "park"  # not yet recorded by the shard (``acked`` not called)
    url = harness.url(f"?token={token_for(TENANT, 'u-1')}")
    async with connect(url):
        await asyncio.sleep(0.2)
        assert harness.connected.empty()  # no unpark while the park is on its way
        await harness.gateway.acked([outcome])  # the shard recorded it
        async with asyncio.timeout(2.0):
            assert await harness.connected.get() == (TENANT, "u-1")


async def test_online_user_gets_the_frame_and_the_ack_delivers(harness: Harness) -> None:
    ws = await harness.join()
    message = make_message("t-1", title="Hello", text="Hi u-1", priority=6)
    task = asyncio.create_task(harness.gateway.send(message))
    frame = await next_frame(ws)
    assert frame == {"tag": "t-1", "type": "CM_BROWSER", "title": "Hello", "content": "Hi u-1",
                     "priority": 6}
    assert not task.done()  # sent is not delivered
    await ws.send(json.dumps({"ack": "t-1"}))
    assert await task == Outcome("t-1", "delivered", "websocket")


async def test_every_connection_gets_the_frame_and_one_ack_is_enough(harness: Harness) -> None:
    tab_1, tab_2 = await harness.join(), await harness.join()
    assert (harness.gateway.connected_users(), harness.gateway.connections()) == (1, 2)
    task = asyncio.create_task(harness.gateway.send(make_message("t-1")))
    assert (await next_frame(tab_1))["tag"] == (await next_frame(tab_2))["tag"] == "t-1"
    await tab_2.send(json.dumps({"ack": "t-1"}))
    assert (await task).kind == "delivered"


async def test_no_ack_in_time_is_an_attempt(make_harness: Callable[..., Awaitable[Harness]]) -> None:
    """A connected client that never acks uses up attempts (and ends dead at the budget),
    instead of being parked and sent again every few seconds until the TTL."""
    harness = await make_harness(ack_timeout=0.2)
    ws = await harness.join()
    task = asyncio.create_task(harness.gateway.send(make_message("t-1")))
    assert (await next_frame(ws))["tag"] == "t-1"
    assert await task == Outcome("t-1", "retry", "websocket", error="no ack", code="no_ack")
    await ws.send(json.dumps({"ack": "t-1"}))  # a late ack is harmless
    await ping(ws)


async def test_disconnect_before_ack_parks_at_once(harness: Harness) -> None:
    ws = await harness.join()
    task = asyncio.create_task(harness.gateway.send(make_message("t-1")))
    await next_frame(ws)
    await ws.close()
    async with asyncio.timeout(2.0):  # well before the 5 s ack timeout
        assert await task == Outcome("t-1", "park", "websocket", error="disconnected")


async def test_user_cannot_ack_another_users_tag(harness: Harness) -> None:
    alice, mallory = await harness.join(TENANT, "alice"), await harness.join(TENANT, "mallory")
    task = asyncio.create_task(harness.gateway.send(make_message("t-1", uid="alice")))
    assert (await next_frame(alice))["tag"] == "t-1"
    await mallory.send(json.dumps({"ack": "t-1"}))
    await ping(mallory)  # mallory's ack has been handled: no effect, and no frame for her
    assert not task.done()
    await alice.send(json.dumps({"ack": "t-1"}))
    assert (await task).kind == "delivered"


async def test_same_uid_in_two_tenants_are_different_users(harness: Harness) -> None:
    ours, theirs = await harness.join("acme", "u-1"), await harness.join("globex", "u-1")
    assert harness.gateway.connected_users() == 2
    task = asyncio.create_task(harness.gateway.send(make_message("t-1", tenant="globex")))
    assert (await next_frame(theirs))["tag"] == "t-1"
    await ours.send(json.dumps({"ack": "t-1"}))
    await ping(ours)  # the frame did not reach acme's u-1: the pong comes first
    assert not task.done()
    await theirs.send(json.dumps({"ack": "t-1"}))
    assert (await task).kind == "delivered"


async def test_frames_keep_the_order_of_send(harness: Harness) -> None:
    ws = await harness.join()
    tags = [f"t-{i:02d}" for i in range(20)]
    delivery = asyncio.create_task(deliver(harness.gateway, [make_message(t) for t in tags]))
    received = []
    for _ in tags:
        frame = await next_frame(ws)
        received.append(frame["tag"])
        await ws.send(json.dumps({"ack": frame["tag"]}))
    assert received == tags
    outcomes = await delivery
    assert [(o.tag, o.kind) for o in outcomes] == [(t, "delivered") for t in tags]


async def test_a_tag_sent_twice_is_resolved_by_one_ack(harness: Harness) -> None:
    ws = await harness.join()
    first = asyncio.create_task(harness.gateway.send(make_message("t-1")))
    second = asyncio.create_task(harness.gateway.send(make_message("t-1", attempt=2)))
    assert [(await next_frame(ws))["tag"] for _ in range(2)] == ["t-1", "t-1"]
    await ws.send(json.dumps({"ack": "t-1"}))
    assert [(await first).kind, (await second).kind] == ["delivered", "delivered"]


async def test_the_slot_is_released_once_the_frame_is_written(harness: Harness) -> None:
    """The actor may lease more while the browser acks: written frees the slot, not delivered."""
    released: list[str] = []
    harness.gateway.set_slot_release(released.append)
    ws = await harness.join()
    task = asyncio.create_task(harness.gateway.send(make_message("t-1")))
    assert (await next_frame(ws))["tag"] == "t-1"
    assert released == ["t-1"] and not task.done()
    assert harness.gateway.unacked() == 1
    await ws.send(json.dumps({"ack": "t-1"}))
    assert (await task).kind == "delivered"
    assert released == ["t-1"] and harness.gateway.unacked() == 0


async def test_a_park_releases_no_slot(harness: Harness) -> None:
    released: list[str] = []
    harness.gateway.set_slot_release(released.append)
    assert (await harness.gateway.send(make_message("t-1"))).kind == "park"
    assert released == []


async def test_past_max_unacked_a_send_keeps_its_slot_until_its_outcome(
    make_harness: Callable[..., Awaitable[Harness]],
) -> None:
    harness = await make_harness(max_unacked=1)
    released: list[str] = []
    harness.gateway.set_slot_release(released.append)
    ws = await harness.join()
    sends = [asyncio.create_task(harness.gateway.send(make_message(t))) for t in ("t-1", "t-2")]
    for _ in sends:
        await ws.send(json.dumps({"ack": (await next_frame(ws))["tag"]}))
    assert [(await s).kind for s in sends] == ["delivered", "delivered"]
    assert released == ["t-1"]


async def test_a_later_send_is_acked_after_an_earlier_one_expired(
    make_harness: Callable[..., Awaitable[Harness]],
) -> None:
    """One timer serves every deadline: it fires for the oldest and waits again for the next."""
    harness = await make_harness(ack_timeout=0.3)
    ws = await harness.join()
    silent = asyncio.create_task(harness.gateway.send(make_message("t-1")))
    await next_frame(ws)
    await asyncio.sleep(0.15)
    acked = asyncio.create_task(harness.gateway.send(make_message("t-2")))
    await next_frame(ws)
    assert (await silent).code == "no_ack"
    assert not acked.done()
    await ws.send(json.dumps({"ack": "t-2"}))
    assert (await acked).kind == "delivered"
    late = asyncio.create_task(harness.gateway.send(make_message("t-3")))
    await next_frame(ws)
    assert (await late).code == "no_ack"  # the timer is armed again once idle


async def test_a_cancelled_send_is_forgotten(harness: Harness) -> None:
    ws = await harness.join()
    task = asyncio.create_task(harness.gateway.send(make_message("t-1")))
    await next_frame(ws)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert harness.gateway.unacked() == 0
    await ws.send(json.dumps({"ack": "t-1"}))  # a late ack is harmless
    await ping(ws)


async def test_a_browser_that_stops_reading_is_dropped_and_its_sends_park(
    make_harness: Callable[..., Awaitable[Harness]], caplog: pytest.LogCaptureFixture,
) -> None:
    """Its write buffers fill, one write waits ``ack_timeout`` and the connection goes: what was
    never written parks; what was written and never acked is an attempt, as for any silence."""
    harness = await make_harness(ack_timeout=0.5)
    url = harness.url(f"?token={token_for()}")
    async with connect(url, max_queue=1, max_size=None) as ws:  # and never reads
        await harness.connected.get()
        big = "x" * 100_000
        sends = [asyncio.create_task(harness.gateway.send(make_message(f"t-{i}", text=big)))
                 for i in range(100)]  # more than loopback's socket buffers hold
        async with asyncio.timeout(5):
            outcomes = await asyncio.gather(*sends)
        ws.transport.abort()  # the server is gone: no closing handshake to wait for
    kinds = [(o.kind, o.error) for o in outcomes]
    assert set(kinds) <= {("park", "disconnected"), ("retry", "no ack")}
    assert kinds[-1] == ("park", "disconnected")
    assert "browser too slow, connection dropped" in caplog.text
    assert harness.gateway.unacked() == 0


async def test_content_with_a_lone_surrogate_is_still_sent(harness: Harness) -> None:
    ws = await harness.join()
    task = asyncio.create_task(harness.gateway.send(make_message("t-1", text="a\ud800b")))
    frame = await next_frame(ws)
    assert frame["content"] == "a\ud800b"
    await ws.send(json.dumps({"ack": "t-1"}))
    assert (await task).kind == "delivered"


# -- incoming frames --------------------------------------------------------------------------


async def test_ping_pong_and_anything_else_is_ignored(harness: Harness) -> None:
    ws = await harness.join()
    await ping(ws, {"at": 123})
    junk_frames: list[str | bytes] = [
        "not json", b"\x00binary", "[1, 2]", '{"ack": 5}', '{"hello": 1}', "[" * 60_000,
        '{"ack": "unknown-tag"}',
    ]
    for junk in junk_frames:
        await ws.send(junk)
    await ping(ws, "still here")


async def test_oversized_frame_closes_the_connection(harness: Harness) -> None:
    ws = await harness.join()
    await ws.send("x" * (64 * 1024 + 1))
    with pytest.raises(ConnectionClosed) as closed:
        async with asyncio.timeout(2.0):
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    await until(lambda: harness.gateway.connections() == 0)


# -- shutdown and hygiene ---------------------------------------------------------------------


async def test_close_closes_connections_and_parks_pending_sends(harness: Harness) -> None:
    ws = await harness.join()
    task = asyncio.create_task(harness.gateway.send(make_message("t-1")))
    await next_frame(ws)
    await harness.gateway.close()
    assert (await task).kind == "park"
    assert harness.gateway.connections() == 0
    with pytest.raises(ConnectionClosed) as closed:
        await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001


async def test_logs_never_hold_tokens_or_content(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = token_for()
    async with connect(harness.url(f"?token={token}")) as ws:
        await harness.connected.get()
        task = asyncio.create_task(harness.gateway.send(make_message("t-1", text="s3cret body")))
        await ws.send(json.dumps({"ack": (await next_frame(ws))["tag"]}))
        await task
    ours = "\n".join(  # the test's own client logs its request line: not ours to judge
        r.getMessage() for r in caplog.records if not r.name.startswith("websockets.client")
    )
    assert "GET /ws?token=<redacted>" in ours  # the wire log was on, and redacted
    assert "> TEXT <redacted> [" in ours
    assert token not in ours and token.split(".")[2] not in ours
    assert "s3cret" not in ours and "New Message" not in ours


async def test_a_connection_closes_when_its_token_expires(harness: Harness) -> None:
    url = harness.url(f"?token={token_for(ttl=0.5)}")
    async with connect(url) as ws:
        async with asyncio.timeout(2.0):
            assert await harness.connected.get() == (TENANT, "u-1")
        async with asyncio.timeout(3.0):
            await ws.wait_closed()
        assert ws.close_code == 4001
    await until(lambda: harness.gateway.connected_users() == 0)


def test_wire_log_records_can_be_written_as_json() -> None:
    """websockets logs its connection object in ``extra``; Ray's JSON formatter must still
    write the record (it used to lose it with a '--- Logging error ---' traceback)."""
    from ray._common.formatters import JSONFormatter

    from actors.providers.websocket_browser import _wire_log

    class _Connection:
        id = "c0ffee"

    record = _wire_log.makeRecord(_wire_log.name, logging.INFO, __file__, 1, "connection open",
                                  None, None, extra={"websocket": _Connection()})
    for log_filter in _wire_log.filters:
        assert log_filter.filter(record)  # type: ignore[union-attr]
    written = json.loads(JSONFormatter().format(record))
    assert written["message"] == "connection open" and written["connection"] == "c0ffee"
