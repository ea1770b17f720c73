"""One request's deadline (`timeout_s`, default `server.request_timeout_s`), the one mechanism for
every caller (HTTP, Serve handle, batch job): past it the work the request started is cancelled,
which aborts its engine requests, and it fails with `DeadlineExceeded` (HTTP 504).

`within` bounds a coroutine; `bounded` bounds a stream, each wait by what is left of the
deadline (a deadline cannot span a generator's `yield`s: the cancellation would hit its consumer).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable
from typing import TypeVar

from cluster.errors import DeadlineExceeded

T = TypeVar("T")


async def within(work: Awaitable[T], timeout_s: float, what: str) -> T:
    """The work's result, or DeadlineExceeded once `timeout_s` has passed (the work cancelled)."""
    deadline = asyncio.timeout(timeout_s)
    try:
        async with deadline:
            return await work
    except TimeoutError:
        if deadline.expired():
            raise DeadlineExceeded(timeout_s, what) from None
        raise  # a timeout of the work's own, not the request's


async def bounded(events: AsyncGenerator[T, None], timeout_s: float, what: str) -> AsyncGenerator[T, None]:
    """`events` while the deadline lasts. Leaving early (the client left, the deadline passed)
    closes `events` at once, which cancels the remote calls behind it and aborts their engine work."""
    loop = asyncio.get_running_loop()
    at = loop.time() + timeout_s
    async with contextlib.aclosing(events):
        while True:
            try:
                event = await asyncio.wait_for(anext(events), max(0.0, at - loop.time()))
            except StopAsyncIteration:
                return
            except TimeoutError:
                if loop.time() < at:
                    raise  # a timeout of the stream's own, not the request's
                raise DeadlineExceeded(timeout_s, what) from None
            yield event
