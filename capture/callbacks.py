"""How the capture peers post receipts: like real providers, retried with backoff when refused."""

from __future__ import annotations

import asyncio

import aiohttp

ATTEMPTS = 6
FIRST_DELAY = 0.5


async def post_receipt(
    session: aiohttp.ClientSession, url: str, data: bytes | dict[str, str], headers: dict[str, str]
) -> int:
    """POST until the target answers below 500 (or the attempts run out); return its status.

    Raises the last connection error if no attempt got an answer.
    """
    delay = FIRST_DELAY
    for attempt in range(ATTEMPTS):
        try:
            async with session.post(url, data=data, headers=headers) as answer:
                await answer.read()
                if answer.status < 500 or attempt == ATTEMPTS - 1:
                    return answer.status
        except (aiohttp.ClientError, TimeoutError, OSError):
            if attempt == ATTEMPTS - 1:
                raise
        await asyncio.sleep(delay)
        delay *= 2
    raise AssertionError("unreachable")
