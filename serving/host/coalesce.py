"""Batching a stream's pieces before they cross Ray, the way Ray Serve LLM batches its streams.

Every message across an actor boundary costs about a millisecond; one per token would make the
transport, not the engine, the bound of a fast stream. A producer task drains the source into a
queue; the consumer sends what has gathered once `max_items` pieces are waiting or the oldest
has waited `max_wait_s`. A piece is never held back longer than that, so the first token still
leaves at once when nothing follows it quickly.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from serving.types import Coalesce

T = TypeVar("T")


@dataclass(frozen=True)
class _End:
    error: BaseException | None = None


@dataclass(frozen=True)
class _Item(Generic[T]):
    value: T


async def coalesced(source: AsyncIterator[T], policy: Coalesce) -> AsyncIterator[list[T]]:
    """`source`'s items in order, in lists of at most `policy.max_items`; its error re-raised."""
    queue: asyncio.Queue[_Item[T] | _End] = asyncio.Queue()

    async def pump() -> None:
        try:
            async for value in source:
                queue.put_nowait(_Item(value))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which re-raises it
            queue.put_nowait(_End(exc))
            return
        queue.put_nowait(_End())

    loop = asyncio.get_running_loop()
    task = loop.create_task(pump())
    try:
        while True:
            first = await queue.get()
            if isinstance(first, _End):
                if first.error is not None:
                    raise first.error
                return
            batch, end = [first.value], None
            deadline = loop.time() + policy.max_wait_s
            while len(batch) < policy.max_items:
                if queue.empty():
                    left = deadline - loop.time()
                    if left <= 0:
                        break
                    try:
                        nxt = await asyncio.wait_for(queue.get(), left)
                    except TimeoutError:
                        break
                else:
                    nxt = queue.get_nowait()
                if isinstance(nxt, _End):
                    end = nxt
                    break
                batch.append(nxt.value)
            yield batch
            if end is not None:
                if end.error is not None:
                    raise end.error
                return
    finally:
        # The consumer left (client gone) or the source ended: stop the producer, which closes
        # the source, which aborts the engine's request.
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
