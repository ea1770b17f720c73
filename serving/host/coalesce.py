"""Batching a stream's pieces before they cross Ray, the way Ray Serve LLM batches its streams.

Every message across an actor boundary costs about a millisecond; one per token would make the
transport, not the engine, the bound of a fast stream. A producer task drains the source into a
buffer; the first piece leaves at once (time to first token pays nothing), and after it each
message leaves once `max_items` pieces are waiting or `max_wait_s` has passed since the
consumer was free to send, whichever comes first. The wait is one timer per message, not one
per piece. A host counts its open streams (`Streams`) and each message's window follows that
count (`Coalesce.window_s`): the more streams share the host, the fewer messages each sends.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TypeVar

from serving.types import Coalesce

T = TypeVar("T")


class Streams:
    """How many coalesced streams a host is sending right now."""

    def __init__(self) -> None:
        self.open = 0


class _Ended(Exception):
    """The source ended; `error` is what it raised, if anything."""

    def __init__(self, error: BaseException | None) -> None:
        super().__init__()
        self.error = error


async def coalesced(
    source: AsyncIterator[T], policy: Coalesce, streams: Streams | None = None
) -> AsyncIterator[list[T]]:
    """`source`'s items in order, in lists of at most `policy.max_items`; its error re-raised.
    `streams`: the host's open streams, this one counted while it is open."""
    streams = streams or Streams()
    pending: list[T] = []
    ended: _Ended | None = None
    arrived = asyncio.Event()  # something is pending, or the source ended
    full = asyncio.Event()  # a whole message is pending, or the source ended

    async def pump() -> None:
        nonlocal ended
        try:
            async for value in source:
                pending.append(value)
                arrived.set()
                if len(pending) >= policy.max_items:
                    full.set()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which re-raises it
            ended = _Ended(exc)
        else:
            ended = _Ended(None)
        arrived.set()
        full.set()

    task = asyncio.get_running_loop().create_task(pump())
    streams.open += 1
    first = True
    try:
        while True:
            await arrived.wait()
            window = policy.window_s(streams.open)
            if not first and not full.is_set() and window > 0:
                try:
                    await asyncio.wait_for(full.wait(), window)
                except TimeoutError:
                    pass  # the window closed: send what has gathered
            first = False
            batch = pending[: policy.max_items]
            del pending[: len(batch)]
            if len(pending) < policy.max_items and ended is None:
                full.clear()
            if not pending and ended is None:
                arrived.clear()
            if batch:
                yield batch
            if ended is not None and not pending:
                if ended.error is not None:
                    raise ended.error
                return
    finally:
        # The consumer left (client gone) or the source ended: stop the producer, which closes
        # the source, which aborts the engine's request.
        streams.open -= 1
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
