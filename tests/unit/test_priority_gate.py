"""PriorityGate: capacity, highest priority first, FIFO among equals, cancellation, no lost slot."""

from __future__ import annotations

import asyncio
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from herald.priority_gate import PriorityGate


async def settle() -> None:
    """Let every ready task run until each waits on something again."""
    for _ in range(5):
        await asyncio.sleep(0)


async def queue_waiters(gate: PriorityGate, priorities: list[int], admitted: list[str],
                        release: asyncio.Event) -> list[asyncio.Task[None]]:
    """One task per priority, queued in list order; each notes its name when let in."""

    async def waiter(name: str, priority: int) -> None:
        async with gate.slot(priority):
            admitted.append(name)
            await release.wait()

    tasks = []
    for n, priority in enumerate(priorities):
        tasks.append(asyncio.create_task(waiter(f"{priority}#{n}", priority)))
        await settle()  # arrival order is the list order
    return tasks


async def test_capacity_holders_at_once_then_waiters_wait() -> None:
    gate = PriorityGate(2)
    await gate.acquire(4)
    await gate.acquire(4)
    third = asyncio.create_task(gate.acquire(4))
    await settle()
    assert not third.done() and (gate.held, gate.waiting) == (2, 1)
    gate.release()
    await settle()
    assert third.done() and (gate.held, gate.waiting) == (2, 0)


async def test_highest_priority_first_and_fifo_within_a_priority() -> None:
    gate = PriorityGate(1)
    await gate.acquire(4)
    admitted: list[str] = []
    release = asyncio.Event()
    # Each admitted waiter releases at once (release is set), so admission order is the order.
    release.set()
    tasks = await queue_waiters(gate, [4, 4, 8, 4, 9, 8, 0], admitted, release)
    assert admitted == []
    gate.release()
    await asyncio.wait_for(asyncio.gather(*tasks), 1)
    assert admitted == ["9#4", "8#2", "8#5", "4#0", "4#1", "4#3", "0#6"]
    assert (gate.held, gate.waiting) == (0, 0)


async def test_a_newcomer_with_a_free_slot_goes_at_once() -> None:
    gate = PriorityGate(2)
    async with gate.slot(0):
        async with gate.slot(0):
            assert gate.held == 2
    assert gate.held == 0


async def test_cancelled_waiter_leaves_the_queue() -> None:
    gate = PriorityGate(1)
    await gate.acquire(4)
    admitted: list[str] = []
    release = asyncio.Event()
    first, second, third = await queue_waiters(gate, [9, 4, 4], admitted, release)
    first.cancel()
    await settle()
    assert first.cancelled() and gate.waiting == 2
    gate.release()
    await settle()
    assert admitted == ["4#1"] and gate.held == 1
    release.set()
    await asyncio.wait_for(asyncio.gather(second, third), 1)
    assert admitted == ["4#1", "4#2"] and (gate.held, gate.waiting) == (0, 0)


async def test_waiter_cancelled_after_being_let_in_hands_the_slot_on() -> None:
    gate = PriorityGate(1)
    await gate.acquire(4)
    admitted: list[str] = []
    release = asyncio.Event()
    first, second = await queue_waiters(gate, [9, 4], admitted, release)
    gate.release()  # lets ``first`` in; it has not run yet...
    first.cancel()  # ...and is cancelled before it does
    await settle()
    assert first.cancelled() and admitted == ["4#1"] and gate.held == 1
    release.set()
    await asyncio.wait_for(second, 1)
    assert (gate.held, gate.waiting) == (0, 0)


async def test_an_error_in_the_block_releases_the_slot() -> None:
    gate = PriorityGate(1)
    with pytest.raises(ZeroDivisionError):
        async with gate.slot(4):
            raise ZeroDivisionError
    assert gate.held == 0
    with pytest.raises(RuntimeError):
        gate.release()


async def test_resize_grows_at_once_and_shrinks_as_holders_leave() -> None:
    gate = PriorityGate(1)
    await gate.acquire(4)
    admitted: list[str] = []
    release = asyncio.Event()
    tasks = await queue_waiters(gate, [4, 4, 4], admitted, release)
    gate.resize(3)
    await settle()
    assert admitted == ["4#0", "4#1"] and gate.held == 3
    gate.resize(1)
    gate.release()  # 2 held, capacity 1: nobody new
    await settle()
    assert admitted == ["4#0", "4#1"]
    release.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 1)
    assert admitted == ["4#0", "4#1", "4#2"] and gate.held == 0
    with pytest.raises(ValueError):
        gate.resize(0)
    with pytest.raises(ValueError):
        PriorityGate(0)


@settings(max_examples=60, deadline=None)
@given(
    capacity=st.integers(1, 4),
    jobs=st.lists(st.tuples(st.integers(0, 9), st.integers(0, 3), st.booleans()),
                  min_size=1, max_size=30),
    seed=st.integers(0, 2**16),
)
def test_random_load_never_exceeds_capacity_nor_loses_a_slot(
    capacity: int, jobs: list[tuple[int, int, bool]], seed: int
) -> None:
    """Random priorities, hold times and cancellations: at most ``capacity`` inside at once, and
    the gate ends with nothing held and nobody waiting (no slot lost or leaked)."""

    async def run() -> None:
        gate = PriorityGate(capacity)
        rng = random.Random(seed)
        inside: list[int] = []

        async def job(n: int, priority: int, hold: int) -> None:
            async with gate.slot(priority):
                inside.append(n)
                assert len(inside) <= capacity
                try:
                    for _ in range(hold):
                        await asyncio.sleep(0)
                finally:
                    inside.remove(n)

        tasks = []
        for n, (priority, hold, cancel) in enumerate(jobs):
            tasks.append((asyncio.create_task(job(n, priority, hold)), cancel))
            for _ in range(rng.randrange(2)):
                await asyncio.sleep(0)
        for task, cancel in tasks:
            if cancel:
                task.cancel()
                if rng.random() < 0.5:
                    await asyncio.sleep(0)
        await asyncio.wait_for(
            asyncio.gather(*(task for task, _ in tasks), return_exceptions=True), 5)
        assert (gate.held, gate.waiting, inside) == (0, 0, [])
        # The gate still admits after all that.
        async with gate.slot(0):
            assert gate.held == 1

    asyncio.run(run())
