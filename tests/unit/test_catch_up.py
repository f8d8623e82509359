"""CatchUp: the released tags go first, every other send waits, waiters keep their order."""

from __future__ import annotations

import asyncio

from herald.catch_up import CatchUp


async def _admit_all(catch_up: CatchUp, tags: list[str], order: list[str]) -> list[asyncio.Task[bool]]:
    async def one(tag: str) -> bool:
        released = await catch_up.admit(tag)
        order.append(tag)
        return released

    tasks = [asyncio.create_task(one(tag)) for tag in tags]
    await asyncio.sleep(0)
    return tasks


async def test_released_go_first_then_the_others_in_the_order_they_came() -> None:
    catch_up, order = CatchUp(), []
    catch_up.begin()
    tasks = await _admit_all(catch_up, ["new-1", "new-2", "old-1"], order)
    assert order == []  # nothing before the shard said what it released
    catch_up.released(["old-1", "old-2"])
    await asyncio.sleep(0)
    assert order == ["old-1"] and not catch_up.over
    tasks += await _admit_all(catch_up, ["old-2"], order)
    await asyncio.gather(*tasks)
    assert order == ["old-1", "old-2", "new-1", "new-2"]
    assert [t.result() for t in tasks] == [False, False, True, True]
    assert catch_up.over


async def test_a_released_one_that_comes_before_the_answer_waits_for_it() -> None:
    catch_up, order = CatchUp(), []
    catch_up.begin()
    tasks = await _admit_all(catch_up, ["old"], order)
    assert order == []
    catch_up.released(["old"])
    await asyncio.gather(*tasks)
    assert order == ["old"] and catch_up.over


async def test_nothing_released_is_over_at_once() -> None:
    catch_up = CatchUp()
    catch_up.begin()
    catch_up.released([])
    assert catch_up.over
    assert await catch_up.admit("any") is False


async def test_finish_lets_the_waiting_go() -> None:
    catch_up, order = CatchUp(), []
    catch_up.begin()
    tasks = await _admit_all(catch_up, ["new"], order)
    catch_up.released(["never-comes"])
    await asyncio.sleep(0)
    assert order == []
    catch_up.finish()
    await asyncio.gather(*tasks)
    assert order == ["new"]


async def test_a_second_release_joins_the_catch_up_and_both_must_answer() -> None:
    """A park recorded while the user's connection release runs asks a second release; either
    may be the one that frees the parked: newer sends wait for both (the three-node test's
    third-of-three-first)."""
    catch_up, order = CatchUp(), []
    catch_up.begin()  # the connection's
    tasks = await _admit_all(catch_up, ["new"], order)
    catch_up.begin()  # the late park's
    catch_up.released([])  # the first to answer found nothing parked yet
    await asyncio.sleep(0)
    assert order == [] and not catch_up.over
    catch_up.released(["old-1", "old-2"])
    tasks += await _admit_all(catch_up, ["old-1", "old-2"], order)
    await asyncio.gather(*tasks)
    assert order == ["old-1", "old-2", "new"]
