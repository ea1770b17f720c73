"""Coalescing a stream before it crosses Ray: order kept, batches bounded, errors passed on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from serving.host.coalesce import Streams, coalesced
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


@given(
    streams=st.integers(min_value=0, max_value=100_000),
    more=st.integers(min_value=0, max_value=1000),
    base=st.floats(min_value=0.0, max_value=1.0),
    busy=st.floats(min_value=0.0, max_value=2.0),
    rate=st.one_of(st.none(), st.floats(min_value=1e-3, max_value=1e6)),
)
def test_the_window_widens_with_the_streams_but_stays_within_its_bounds(
    streams: int, more: int, base: float, busy: float, rate: float | None
) -> None:
    policy = Coalesce(max_wait_s=base, max_busy_wait_s=busy, host_messages_per_s=rate)
    window = policy.window_s(streams)
    assert base <= window <= max(base, busy)
    assert policy.window_s(streams + more) >= window  # more streams never narrow it
    if rate is None:
        assert window == base
    elif streams > 0 and base <= streams / rate <= busy:
        # Inside the bounds the host's streams together send `rate` messages a second.
        assert streams / window == pytest.approx(rate)


def test_the_default_window_is_ray_serve_llms_until_a_host_is_busy() -> None:
    policy = Coalesce()
    assert policy.window_s(1) == policy.window_s(8) == 0.05
    assert policy.window_s(32) == pytest.approx(32 / 250)
    assert policy.window_s(10_000) == policy.max_busy_wait_s


async def test_a_busy_host_holds_a_lone_piece_for_its_wider_window() -> None:
    gate = asyncio.Event()

    async def slow() -> AsyncIterator[str]:
        yield "first"
        await gate.wait()
        yield "second"
        await asyncio.Event().wait()  # the engine is still generating

    policy = Coalesce(max_items=16, max_wait_s=0.01, host_messages_per_s=10.0, max_busy_wait_s=2.0)
    quiet, busy = Streams(), Streams()
    busy.open = 19  # with this stream, 20 at 10 messages/s: a 2 s window
    for streams, held in ((quiet, False), (busy, True)):
        gate.clear()
        stream = coalesced(slow(), policy, streams)
        assert await asyncio.wait_for(anext(stream), timeout=2.0) == ["first"]  # the first never waits
        gate.set()
        if held:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(asyncio.shield(pending := asyncio.ensure_future(anext(stream))), 0.3)
            assert await asyncio.wait_for(pending, timeout=5.0) == ["second"]
        else:
            assert await asyncio.wait_for(anext(stream), timeout=2.0) == ["second"]
        await stream.aclose()


async def test_a_host_counts_its_open_streams_until_each_ends_or_leaves() -> None:
    streams = Streams()
    policy = Coalesce(max_items=4, max_wait_s=0.0)

    async def endless() -> AsyncIterator[int]:
        while True:
            yield 1
            await asyncio.sleep(0)

    async def failing() -> AsyncIterator[int]:
        yield 1
        raise RuntimeError("engine died")

    a, b = coalesced(endless(), policy, streams), coalesced(endless(), policy, streams)
    await anext(a)
    await anext(b)
    assert streams.open == 2
    await a.aclose()
    assert streams.open == 1
    assert [x async for b in coalesced(burst(3), policy, streams) for x in b] == [0, 1, 2]
    assert streams.open == 1
    with pytest.raises(RuntimeError):
        async for _ in coalesced(failing(), policy, streams):
            assert streams.open == 2
    assert streams.open == 1
    await b.aclose()
    assert streams.open == 0
