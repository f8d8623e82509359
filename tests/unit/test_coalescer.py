"""Coalescer: concurrent submits become one call, results go back per caller; and its two users."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from herald.coalescer import Coalescer
from herald.errors import QueueFull
from serve.batcher import ShardBatcher


class Backend:
    """A scripted ``call``: records each batch, answers ``item * 10``, can be held or fail."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.entered = asyncio.Event()
        self.fail_with: Exception | None = None

    async def __call__(self, items: list[int]) -> list[int]:
        self.calls.append(items)
        self.entered.set()
        await self.gate.wait()
        if self.fail_with is not None:
            raise self.fail_with
        return [item * 10 for item in items]

    async def hold_first_call(self, coalescer: Coalescer[int, int], items: list[int]) -> asyncio.Task[Any]:
        """Start a submit whose call stays in flight until ``gate`` is set."""
        self.gate.clear()
        task = asyncio.create_task(coalescer.submit(items))
        await asyncio.wait_for(self.entered.wait(), 1)
        return task


async def _settle() -> None:
    """Let every ready task run up to its next real wait."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_an_idle_submit_goes_out_at_once_alone() -> None:
    backend = Backend()
    coalescer: Coalescer[int, int] = Coalescer(backend)
    assert await coalescer.submit([1, 2]) == [10, 20]
    assert await coalescer.submit_one(3) == 30
    assert backend.calls == [[1, 2], [3]]


async def test_submits_during_a_call_go_together_in_the_next_and_get_their_own_results() -> None:
    backend = Backend()
    coalescer: Coalescer[int, int] = Coalescer(backend)
    first = await backend.hold_first_call(coalescer, [1])
    waiting = [asyncio.create_task(coalescer.submit(items)) for items in ([2], [3, 4], [5])]
    await _settle()
    assert backend.calls == [[1]]  # nothing else goes while a call is in flight
    backend.gate.set()
    assert await first == [10]
    assert [await task for task in waiting] == [[20], [30, 40], [50]]
    assert backend.calls == [[1], [2, 3, 4, 5]]


async def test_max_batch_splits_between_submits_never_inside_one() -> None:
    backend = Backend()
    coalescer: Coalescer[int, int] = Coalescer(backend, max_batch=4)
    first = await backend.hold_first_call(coalescer, [0])
    waiting = [asyncio.create_task(coalescer.submit(items))
               for items in ([1, 2], [3, 4], [5, 6], [7, 8, 9, 10, 11])]
    await _settle()
    backend.gate.set()
    await first
    assert [await task for task in waiting] == [[10, 20], [30, 40], [50, 60], [70, 80, 90, 100, 110]]
    # A submit larger than max_batch goes alone rather than being split over two calls.
    assert backend.calls == [[0], [1, 2, 3, 4], [5, 6], [7, 8, 9, 10, 11]]


async def test_an_exception_reaches_every_caller_of_the_batch_and_later_batches_go_on() -> None:
    backend = Backend()
    coalescer: Coalescer[int, int] = Coalescer(backend)
    first = await backend.hold_first_call(coalescer, [1])
    waiting = [asyncio.create_task(coalescer.submit([n])) for n in (2, 3)]
    await _settle()
    backend.fail_with = ConnectionError("shard down")
    backend.gate.set()
    for task in (first, *waiting):
        with pytest.raises(ConnectionError, match="shard down"):
            await task
    backend.fail_with = None
    assert await coalescer.submit_one(4) == 40


async def test_a_wrong_number_of_results_is_an_error_for_every_caller() -> None:
    async def short(items: list[int]) -> list[int]:
        return items[:-1]

    coalescer: Coalescer[int, int] = Coalescer(short)
    with pytest.raises(ValueError, match="2 results for 3 items"):
        await coalescer.submit([1, 2, 3])


async def test_a_caller_that_went_away_does_not_disturb_the_others() -> None:
    backend = Backend()
    coalescer: Coalescer[int, int] = Coalescer(backend)
    in_flight = await backend.hold_first_call(coalescer, [1])
    before = asyncio.create_task(coalescer.submit([2]))
    gone_before = asyncio.create_task(coalescer.submit([3]))
    after = asyncio.create_task(coalescer.submit([4]))
    await _settle()
    in_flight.cancel()  # its items are already out: its share of the answer is ignored
    gone_before.cancel()  # its items have not gone yet: they are dropped
    backend.gate.set()
    assert await before == [20] and await after == [40]
    for task in (in_flight, gone_before):
        with pytest.raises(asyncio.CancelledError):
            await task
    assert backend.calls == [[1], [2, 4]]


async def test_window_gathers_a_burst_into_one_call() -> None:
    backend = Backend()
    coalescer: Coalescer[int, int] = Coalescer(backend, window=0.01)
    results = await asyncio.gather(*(coalescer.submit_one(n) for n in range(5)))
    assert results == [0, 10, 20, 30, 40]
    assert backend.calls == [[0, 1, 2, 3, 4]]


async def test_an_empty_submit_answers_without_a_call() -> None:
    backend = Backend()
    assert await Coalescer(backend).submit([]) == []
    assert backend.calls == []


@pytest.mark.parametrize("options", [{"window": -1.0}, {"max_batch": 0}])
def test_nonsense_options_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Coalescer(Backend(), **options)


class FakeShard:
    """A shard actor handle: ``handle.enqueue.remote(items)`` is awaitable, like Ray's."""

    def __init__(self, refuse: Exception | None = None) -> None:
        self.refuse = refuse
        self.calls: list[list[str]] = []
        self.enqueue = self

    def remote(self, items: list[str]) -> asyncio.Future[list[str]]:
        self.calls.append(items)
        future: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        if self.refuse is not None:
            future.set_exception(self.refuse)
        else:
            future.set_result([f"ok:{item}" for item in items])
        return future


async def test_shard_batcher_answers_each_request_its_own_results() -> None:
    shard = FakeShard()
    batcher = ShardBatcher(shard.remote)
    one, two = await asyncio.gather(batcher.submit(["a", "b"]), batcher.submit(["c"]))
    assert (one, two) == (["ok:a", "ok:b"], ["ok:c"])


async def test_shard_batcher_raises_what_the_shard_raised_to_every_request_of_the_batch() -> None:
    batcher = ShardBatcher(FakeShard(QueueFull("shard 0 holds 10 notifications")).remote)
    answers = await asyncio.gather(batcher.submit(["a"]), batcher.submit(["b"]),
                                   return_exceptions=True)
    assert [type(answer) for answer in answers] == [QueueFull, QueueFull]


async def test_rate_limit_client_asks_once_per_burst_and_waits_a_second_when_unreachable() -> None:
    from actors.ratelimiter import UNREACHABLE_WAIT, RateLimitClient

    class Limiter:
        def __init__(self) -> None:
            self.calls: list[list[tuple[str, str, str | None]]] = []
            self.admit = self
            self.down = False

        async def remote(self, questions: list[tuple[str, str, str | None]]) -> list[float]:
            self.calls.append(questions)
            if self.down:
                raise ConnectionError("limiter restarting")
            return [0.0 if recipient == "+1" else 2.5 for _, _, recipient in questions]

    limiter = Limiter()
    client = RateLimitClient(limiter, {"twilio"}, set())
    waits = await asyncio.gather(client.wait_for("twilio", "SMS", "+1"),
                                 client.wait_for("twilio", "SMS", "+2"),
                                 client.wait_for("smtp", "EMAIL", "a@b.c"))  # not limited: not asked
    assert waits == [0.0, 2.5, 0.0]
    assert limiter.calls == [[("twilio", "SMS", "+1"), ("twilio", "SMS", "+2")]]
    limiter.down = True
    assert await client.wait_for("twilio", "SMS", "+1") == UNREACHABLE_WAIT
