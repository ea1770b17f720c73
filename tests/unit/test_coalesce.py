"""Coalescing a stream before it crosses Ray: order kept, batches bounded, errors passed on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from serving.host.coalesce import coalesced
from serving.types import Coalesce


async def burst(n: int) -> AsyncIterator[int]:
    for i in range(n):
        yield i


async def test_a_burst_leaves_in_batches_of_at_most_max_items() -> None:
    batches = [b async for b in coalesced(burst(40), Coalesce(max_items=16, max_wait_s=0.5))]
    assert [x for b in batches for x in b] == list(range(40))
    assert all(len(b) <= 16 for b in batches) and len(batches) == 3


async def test_a_lone_piece_is_not_held_beyond_max_wait() -> None:
    gate = asyncio.Event()

    async def slow() -> AsyncIterator[str]:
        yield "first"
        await gate.wait()  # the next piece comes only when the test says so
        yield "second"

    stream = coalesced(slow(), Coalesce(max_items=16, max_wait_s=0.01))
    assert await asyncio.wait_for(anext(stream), timeout=2.0) == ["first"]
    gate.set()
    assert await anext(stream) == ["second"]
    assert await anext(stream, None) is None


async def test_the_first_piece_leaves_at_once_and_later_ones_wait_for_company() -> None:
    gate, more = asyncio.Event(), asyncio.Event()

    async def source() -> AsyncIterator[str]:
        yield "first"
        await gate.wait()
        for piece in ("a", "b", "c"):
            yield piece
        more.set()
        await asyncio.Event().wait()  # the engine is still generating: no end yet

    stream = coalesced(source(), Coalesce(max_items=3, max_wait_s=1.0))
    assert await asyncio.wait_for(anext(stream), timeout=2.0) == ["first"]  # not held for the window
    gate.set()
    # Three pieces fill a message: it leaves without waiting out the window.
    assert await asyncio.wait_for(anext(stream), timeout=0.5) == ["a", "b", "c"]
    assert more.is_set()
    await stream.aclose()


async def test_an_error_after_some_pieces_arrives_after_them() -> None:
    async def failing() -> AsyncIterator[int]:
        yield 1
        yield 2
        raise RuntimeError("engine died")

    got: list[int] = []
    with pytest.raises(RuntimeError, match="engine died"):
        async for batch in coalesced(failing(), Coalesce(max_items=8, max_wait_s=0.0)):
            got += batch
    assert got == [1, 2]


async def test_leaving_early_closes_the_source() -> None:
    closed = asyncio.Event()

    async def endless() -> AsyncIterator[int]:
        try:
            i = 0
            while True:
                yield i
                i += 1
                await asyncio.sleep(0)  # yield control, as an engine between tokens does
        finally:
            closed.set()

    stream = coalesced(endless(), Coalesce(max_items=4, max_wait_s=0.0))
    await anext(stream)
    await stream.aclose()
    assert closed.is_set()
