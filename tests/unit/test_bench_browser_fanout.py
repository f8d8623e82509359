"""The fan-out benchmark's batches: 1,000 a batch, spread over the users in turn."""

from __future__ import annotations

from bench.browser_fanout import BATCH, batches_for, payload


def test_batches_spread_over_every_user() -> None:
    batches = batches_for(2500, 1000)
    assert [len(b) for b in batches] == [BATCH, BATCH, 500]
    assert [n["user"]["uid"] for n in batches[1][:2]] == ["u0", "u1"]
    assert {n["user"]["uid"] for n in batches[0]} == {f"u{i}" for i in range(1000)}


def test_a_payload_is_a_browser_notification() -> None:
    assert payload(7)["type"].endswith("_BROWSER")


def test_the_payload_is_valid_at_intake() -> None:
    from herald.channels import Channel
    from herald.models import validate_notification

    notification = validate_notification(payload(7), "bench", 1_000_000.0, 4)
    assert notification.channel is Channel.BROWSER


def test_the_cpu_of_each_role_is_reported_biggest_first() -> None:
    from bench.browser_fanout import FanoutResult

    result = FanoutResult(users=1000, total=20_000, per_s=2_000.0, rounds=(2_000.0,),
                          accepted_per_s=3_000.0, herald_delivered=20_000, load="1 1 1",
                          cpu_us={"gateways": 221.4, "QueueActor (shard)": 334.0})
    assert "CPU µs a notification: QueueActor (shard) 334, gateways 221\n" in result.describe()


async def test_the_clients_ack_every_frame_after_the_round_trip_asked() -> None:
    """The benchmark's browsers on loopback, against a server that times each ack."""
    import asyncio
    import json
    import threading
    import time

    from websockets.asyncio.server import ServerConnection, serve

    from bench.browser_fanout import ClientBoard, ack_everything

    waited: list[tuple[str, float]] = []

    async def server(ws: ServerConnection) -> None:
        for tag in ("t-1", "t-2"):
            sent = time.monotonic()
            await ws.send(json.dumps({"tag": tag}))
            waited.append((json.loads(await ws.recv())["ack"], time.monotonic() - sent))

    board, stop = ClientBoard(1), threading.Event()
    async with serve(server, "127.0.0.1", 0) as listening:
        url = f"ws://127.0.0.1:{listening.sockets[0].getsockname()[1]}"
        clients = asyncio.create_task(ack_everything([url], board, 0, stop, ack_delay=0.2))  # type: ignore[arg-type]
        async with asyncio.timeout(5):
            while board.total_acked() < 2:  # noqa: ASYNC110 - the board is shared memory
                await asyncio.sleep(0.01)
        stop.set()
        await clients
    assert [tag for tag, _ in waited] == ["t-1", "t-2"]
    assert all(0.2 <= seconds < 1.0 for _, seconds in waited)
    assert board.connected[0] == 1
