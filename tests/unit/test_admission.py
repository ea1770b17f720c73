"""Priority admission, the wait bound, and the replica balancer."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cluster.errors import QueueFull
from cluster.spec import ModelSpec
from orchestrator.routing.balancer import Balancer
from serving.host.admission import Admission, Yield
from serving.host.model_host import batch_yield
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


class Holder:
    """A request that holds its slot until released; `entered` is set once it is inside."""

    def __init__(self, adm: Admission, priority: int) -> None:
        self.entered, self.done = asyncio.Event(), asyncio.Event()
        self.task = asyncio.create_task(self._run(adm, priority))

    async def _run(self, adm: Admission, priority: int) -> None:
        async with adm.slot(priority):
            self.entered.set()
            await self.done.wait()

    async def leave(self) -> None:
        self.done.set()
        await self.task


async def settled() -> None:
    for _ in range(5):
        await asyncio.sleep(0)  # let woken tasks run their admission step (no time passes)


async def test_batch_work_yields_engine_slots_to_interactive_work_and_takes_them_back_after_the_hold():
    adm = Admission(capacity=4, yield_=Yield(from_priority=10, slots=1, hold_s=0.2))
    batch = [Holder(adm, 10) for _ in range(4)]
    await settled()
    assert adm.inside == 4 and adm.background_inside == 4  # no interactive work: batch fills the engine
    chat = Holder(adm, 0)
    more = [Holder(adm, 10) for _ in range(2)]
    await settled()
    assert not chat.entered.is_set() and adm.waiting == 3
    await batch[0].leave()
    await settled()
    assert chat.entered.is_set()  # the first slot freed goes to the interactive request
    for b in batch[1:3]:
        await b.leave()
    await settled()
    # Two slots are free, but batch work holds its one slot while interactive work is about.
    assert adm.inside == 2 and adm.background_inside == 1 and not any(m.entered.is_set() for m in more)
    await chat.leave()
    loop = asyncio.get_running_loop()
    left = loop.time()
    await settled()
    assert not any(m.entered.is_set() for m in more)  # still within the hold
    await asyncio.wait_for(asyncio.gather(*(m.entered.wait() for m in more)), timeout=5)
    assert loop.time() - left >= 0.2 and adm.background_inside == 3
    for h in (batch[3], *more):
        await h.leave()
    assert adm.inside == adm.background_inside == adm.waiting == 0


async def test_without_yield_batch_work_keeps_every_free_slot():
    adm = Admission(capacity=3)
    chat = Holder(adm, 0)
    batch = [Holder(adm, 10) for _ in range(2)]
    await settled()
    assert chat.entered.is_set() and all(b.entered.is_set() for b in batch) and adm.inside == 3
    for h in (chat, *batch):
        await h.leave()


@settings(max_examples=150, deadline=None)
@given(
    capacity=st.integers(2, 6),
    share=st.integers(0, 100),
    script=st.lists(
        st.tuples(st.sampled_from(["chat", "batch", "batch", "leave", "leave", "cancel"]), st.integers(0, 20)), max_size=50
    ),
)
def test_admission_never_oversubscribes_and_never_strands_a_waiter(capacity, share, script):
    """Any interleaving of arrivals, departures and cancellations: never more than `capacity`
    inside, batch work within its share whenever interactive work is inside or waiting, and
    once everyone still inside has left, every waiter got in (after the hold)."""

    slots = 1 + share % (capacity - 1)  # a real limit: fewer slots than the engine has

    async def run() -> None:
        adm = Admission(capacity, max_waiting=None, yield_=Yield(from_priority=10, slots=slots, hold_s=0.01))
        over_share: list[int] = []
        take = adm._take

        def watched_take(background: bool) -> None:
            if background and adm._foreground and adm.background_inside >= slots:
                over_share.append(adm.background_inside)  # batch let in past its share beside interactive work
            take(background)

        adm._take = watched_take  # type: ignore[method-assign]
        live: list[Holder] = []
        for op, pick in script:
            if op in ("chat", "batch"):
                live.append(Holder(adm, 0 if op == "chat" else 10))
            elif live:
                h = live.pop(pick % len(live))
                if op == "leave" and h.entered.is_set():
                    await h.leave()
                else:
                    h.task.cancel()
                    await asyncio.gather(h.task, return_exceptions=True)
            await settled()
            assert adm.inside <= capacity and not over_share
            assert adm.inside == sum(h.entered.is_set() and not h.done.is_set() and not h.task.done() for h in live)
        while live:  # those inside leave, again and again: each waiter must get in (after the hold)
            inside = [h for h in live if h.entered.is_set()]
            if not inside:
                waits = [asyncio.create_task(h.entered.wait()) for h in live]
                got, _ = await asyncio.wait(waits, timeout=5, return_when=asyncio.FIRST_COMPLETED)
                for w in waits:
                    w.cancel()
                assert got, f"{len(live)} waiter(s) stranded with {adm.inside} inside"
                continue
            for h in inside:
                live.remove(h)
                await h.leave()
            await settled()
        assert adm.inside == adm.background_inside == adm.waiting == 0

    asyncio.run(run())


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


def test_batch_yields_an_eighth_of_a_cpu_engine_by_default_and_nothing_on_a_gpu():
    spec = ModelSpec(name="m", source="/m", max_num_seqs=32)
    assert batch_yield(spec, on_gpu=False) == Yield(from_priority=10, slots=4)
    assert batch_yield(spec, on_gpu=True) is None
    assert batch_yield(spec.model_copy(update={"batch_slots_when_busy": 2}), on_gpu=True) == Yield(from_priority=10, slots=2)
    assert batch_yield(spec.model_copy(update={"batch_slots_when_busy": 32}), on_gpu=False) is None  # the whole engine: off
    assert batch_yield(ModelSpec(name="m", source="/m", max_num_seqs=2), on_gpu=False) == Yield(from_priority=10, slots=1)
