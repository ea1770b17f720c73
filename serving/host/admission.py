"""Admission to an engine: at most `capacity` requests inside it, the rest wait in priority order.

vLLM batches whatever it holds, so admitting more than its `max_num_seqs` only moves the queue
into the engine, where chorus can no longer order it. Waiting here keeps interactive requests
(lower priority number) ahead of batch work, and a bounded wait queue turns overload into a
prompt `QueueFull` (HTTP 429) instead of unbounded latency.

Ordering the queue is not enough where every request inside the engine slows the others: on a
CPU, a decode step of 32 sequences takes several times one of a single sequence, so an
interactive request admitted first still runs at the pace of the batch around it. With a
`Yield`, batch work (priority at or past `Yield.from_priority`) holds at most `Yield.slots`
engine slots while interactive work is inside or waiting, and for `Yield.hold_s` after the last
of it left (a pattern's next call comes a few milliseconds after its previous one); the rest of
the batch waits here and takes the slots back when the hold ends.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from cluster.errors import QueueFull


@dataclass(frozen=True)
class Load:
    """An admission's state at one instant: what an orchestrator asks before it admits a request."""

    running: int
    waiting: int
    capacity: int
    max_waiting: int | None

    @property
    def full(self) -> bool:
        """A new request would be refused: the batch is full and so is the bounded wait queue."""
        return self.max_waiting is not None and self.running >= self.capacity and self.waiting >= self.max_waiting


@dataclass(frozen=True)
class Yield:
    """Batch work gives engine slots up to interactive work (see the module's docstring)."""

    from_priority: int  # requests at this priority number or past it are batch work
    slots: int  # engine slots batch work may hold while interactive work is about
    hold_s: float = 2.0  # interactive work counts as about this long after the last of it left


@dataclass
class _Waiter:
    background: bool
    future: asyncio.Future[None]


class Admission:
    def __init__(
        self,
        capacity: int,
        max_waiting: int | None = None,
        *,
        yield_: Yield | None = None,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        if yield_ is not None and yield_.slots < 1:
            raise ValueError(f"batch work needs at least one slot, got {yield_.slots}")
        self.capacity = capacity
        self.max_waiting = max_waiting
        self.yield_ = yield_
        self._now = now
        self.inside = 0
        self.background_inside = 0
        self._foreground = 0  # interactive requests inside or waiting
        self._foreground_left = -float("inf")  # when the last one left
        self._waiting: list[tuple[int, int, _Waiter]] = []
        self._live = 0  # waiters still waiting (the heap may also hold cancelled ones)
        self._order = itertools.count()
        self._wake: asyncio.TimerHandle | None = None

    @property
    def waiting(self) -> int:
        return self._live

    def load(self) -> Load:
        return Load(self.inside, self.waiting, self.capacity, self.max_waiting)

    def _is_background(self, priority: int) -> bool:
        return self.yield_ is not None and priority >= self.yield_.from_priority

    def _held_back(self) -> bool:
        """Batch work may not take another slot now."""
        y = self.yield_
        if y is None or self.background_inside < y.slots:
            return False
        return self._foreground > 0 or self._now() - self._foreground_left < y.hold_s

    @asynccontextmanager
    async def slot(self, priority: int = 0) -> AsyncIterator[None]:
        background = self._is_background(priority)
        if not background:
            self._foreground += 1
        try:
            await self._acquire(priority, background)
            try:
                yield
            finally:
                self._release(background)
        finally:
            if not background:
                self._foreground -= 1
                self._foreground_left = self._now()
                self._wake_when_hold_ends()

    async def _acquire(self, priority: int, background: bool) -> None:
        if self.inside < self.capacity and not self._live and not (background and self._held_back()):
            self._take(background)
            return
        if self.max_waiting is not None and self.waiting >= self.max_waiting:
            raise QueueFull(f"{self.waiting} requests already waiting (bound {self.max_waiting})")
        waiter = _Waiter(background, asyncio.get_running_loop().create_future())
        heapq.heappush(self._waiting, (priority, next(self._order), waiter))
        self._live += 1
        self._fill()  # a free slot held back from batch work may be this request's
        if background:
            self._wake_when_hold_ends()
        try:
            await waiter.future
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled():
                self._release(background)  # we were handed a slot as we were cancelled: pass it on
            else:
                self._live -= 1  # left the queue without a slot
            raise

    def _take(self, background: bool) -> None:
        self.inside += 1
        self.background_inside += background

    def _release(self, background: bool) -> None:
        self.inside -= 1
        self.background_inside -= background
        self._fill()

    def _fill(self) -> None:
        """Hand free slots to the first live waiters, in priority order, until a batch waiter is
        held back (every waiter behind it is batch work too: interactive ones sort first)."""
        while self._waiting and self.inside < self.capacity:
            _, _, waiter = self._waiting[0]
            if waiter.future.done():  # cancelled while waiting
                heapq.heappop(self._waiting)
                continue
            if waiter.background and self._held_back():
                return
            heapq.heappop(self._waiting)
            self._live -= 1
            self._take(waiter.background)
            waiter.future.set_result(None)

    def _wake_when_hold_ends(self) -> None:
        """Batch work waiting gets its slots back when the hold after the last interactive
        request ends (while one is still about, its leaving sets the time)."""
        if self.yield_ is None or self._foreground:
            return
        delay = self._foreground_left + self.yield_.hold_s - self._now()
        if delay <= 0:
            return
        if self._wake is not None:
            self._wake.cancel()
        # A little late rather than early: the loop may run a timer up to its clock's resolution
        # ahead, when the hold would still be on.
        self._wake = asyncio.get_running_loop().call_later(delay + 0.005, self._fill)
