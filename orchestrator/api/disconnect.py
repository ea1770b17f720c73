"""Stop a request's work when its HTTP client goes away.

Starlette cancels a streaming response whose client disconnected, but a plain request handler
runs to its end. `unless_disconnected` races the work against the client's `http.disconnect`
message and cancels the work when the client leaves first; the cancellation travels down to the
engines, which abort what the request had started.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from fastapi import Request

T = TypeVar("T")


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        continue  # the body was read already; only the disconnect message is left to come


async def unless_disconnected(request: Request, work: Coroutine[Any, Any, T]) -> T | None:
    """The work's result, or None (the work cancelled) if the client disconnected first."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    return None if task.cancelled() else task.result()
