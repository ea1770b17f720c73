"""ModelHost: fair busy-time shares, queue vs run timing, status."""

from __future__ import annotations

import asyncio

import pytest

from cluster.spec import ModelSpec
from serving.host.model_host import BusyClock, ModelHost
from serving.types import GenerationRequest, Message
from tests.fakes.scripted_engine import ScriptedEngine


def test_busy_clock_splits_time_among_requests_in_flight():
    t = [0.0]
    clock = BusyClock(now=lambda: t[0])
    a = clock.enter()  # t=0: a alone
    t[0] = 1.0
    b = clock.enter()  # t=1: a and b share
    t[0] = 3.0
    share_a = clock.leave(a)  # a: 1 + 2/2 = 2
    t[0] = 4.0
    share_b = clock.leave(b)  # b: 2/2 + 1 = 2
    assert (share_a, share_b) == (2.0, 2.0)
    assert share_a + share_b == 4.0  # the engine was busy from 0 to 4


def request(priority: int = 0) -> GenerationRequest:
    return GenerationRequest(messages=[Message(role="user", content="hello")], priority=priority)


async def test_requests_beyond_capacity_queue_and_say_so():
    spec = ModelSpec(name="m", source="x", max_num_seqs=1)
    host = ModelHost(spec, 0, ScriptedEngine, {"script": lambda r: "ok", "delay_s": 0.05})
    await host.start()
    first, second = await asyncio.gather(host.generate(request()), host.generate(request()))
    assert first.queue_s < 0.01 and second.queue_s >= 0.04  # waited for the only slot
    assert first.run_s >= 0.05 and second.run_s >= 0.05
    assert first.engine_seconds == pytest.approx(first.run_s, rel=0.2)  # alone in the engine
    status = await host.status()
    assert status.ok and status.completed == 2 and status.running == 0 and status.capacity == 1


async def test_engine_failures_count_and_propagate():
    spec = ModelSpec(name="m", source="x")
    host = ModelHost(spec, 0, ScriptedEngine, {"script": lambda r: RuntimeError("boom")})
    await host.start()
    with pytest.raises(RuntimeError, match="boom"):
        await host.generate(request())
    status = await host.status()
    assert status.failed == 1 and status.running == 0
