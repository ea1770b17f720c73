"""Priority admission, the wait bound, and the replica balancer."""

from __future__ import annotations

import asyncio

import pytest

from cluster.errors import QueueFull
from orchestrator.routing.balancer import Balancer
from serving.host.admission import Admission
from serving.types import GenerationRequest, Message


async def test_capacity_bounds_those_inside_and_priority_orders_the_rest():
    adm = Admission(capacity=2)
    order: list[str] = []
    release = asyncio.Event()

    async def worker(name: str, priority: int) -> None:
        async with adm.slot(priority):
            order.append(name)
            await release.wait()

    first = [asyncio.create_task(worker(n, 0)) for n in ("a", "b")]
    await asyncio.sleep(0)  # let them take the two slots
    late = [asyncio.create_task(worker(n, p)) for n, p in (("batch", 10), ("chat", 0), ("urgent", -5))]
    await asyncio.sleep(0)
    assert adm.inside == 2 and adm.waiting == 3 and order == ["a", "b"]
    release.set()
    await asyncio.gather(*first, *late)
    assert order[2:] == ["urgent", "chat", "batch"]
    assert adm.inside == 0 and adm.waiting == 0


async def test_a_full_wait_queue_refuses_at_once():
    adm = Admission(capacity=1, max_waiting=1)
    hold = asyncio.Event()

    async def occupy() -> None:
        async with adm.slot():
            await hold.wait()

    tasks = [asyncio.create_task(occupy()), asyncio.create_task(occupy())]
    await asyncio.sleep(0)
    with pytest.raises(QueueFull, match="1 requests already waiting"):
        async with adm.slot():
            pass
    hold.set()
    await asyncio.gather(*tasks)


async def test_a_cancelled_waiter_does_not_leak_its_slot():
    adm = Admission(capacity=1)
    hold = asyncio.Event()

    async def occupy() -> None:
        async with adm.slot():
            await hold.wait()

    owner = asyncio.create_task(occupy())
    await asyncio.sleep(0)
    waiter = asyncio.create_task(occupy())
    await asyncio.sleep(0)
    waiter.cancel()
    hold.set()
    await owner
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert adm.inside == 0
    async with adm.slot():  # the slot is free again
        assert adm.inside == 1


class R:
    def __init__(self, index: int, capacity: int = 4) -> None:
        self.index, self.capacity = index, capacity


def req(text: str, system: str = "sys") -> GenerationRequest:
    return GenerationRequest(messages=[Message(role="system", content=system), Message(role="user", content=text)])


def test_least_loaded_relative_to_capacity():
    b = Balancer()
    small, big = R(0, capacity=2), R(1, capacity=8)
    for _ in range(2):
        b.begin("m", small)
    for _ in range(3):
        b.begin("m", big)
    assert b.choose("m", [small, big]).index == 1  # 3/8 < 2/2


def test_prefix_affinity_while_the_home_replica_has_room():
    b = Balancer()
    replicas = [R(0), R(1)]
    first = b.choose("m", replicas, req("q1"))
    b.begin("m", first)
    # Same prefix: back to the same replica even though the other is idle.
    assert b.choose("m", replicas, req("q1")).index == first.index
    # A different prefix goes to the least loaded.
    assert b.choose("m", replicas, req("other", system="different")).index != first.index
    # Once the home replica's batch is full, the prefix goes elsewhere.
    for _ in range(3):
        b.begin("m", first)
    assert b.choose("m", replicas, req("q1")).index != first.index
