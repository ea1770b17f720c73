"""Admission to an engine: at most `capacity` requests inside it, the rest wait in priority order.

vLLM batches whatever it holds, so admitting more than its `max_num_seqs` only moves the queue
into the engine, where chorus can no longer order it. Waiting here keeps interactive requests
(lower priority number) ahead of batch work, and a bounded wait queue turns overload into a
prompt `QueueFull` (HTTP 429) instead of unbounded latency.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator
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


class Admission:
    def __init__(self, capacity: int, max_waiting: int | None = None) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.max_waiting = max_waiting
        self.inside = 0
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._live = 0  # waiters still waiting (the heap may also hold cancelled ones)
        self._order = itertools.count()

    @property
    def waiting(self) -> int:
        return self._live

    def load(self) -> Load:
        return Load(self.inside, self.waiting, self.capacity, self.max_waiting)

    @asynccontextmanager
    async def slot(self, priority: int = 0) -> AsyncIterator[None]:
        await self._acquire(priority)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, priority: int) -> None:
        # Slots pass straight from a finishing request to a live waiter, so a free slot
        # means nobody is waiting.
        if self.inside < self.capacity:
            self.inside += 1
            return
        if self.max_waiting is not None and self.waiting >= self.max_waiting:
            raise QueueFull(f"{self.waiting} requests already waiting (bound {self.max_waiting})")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (priority, next(self._order), fut))
        self._live += 1
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self._release()  # we were handed a slot as we were cancelled: pass it on
            else:
                self._live -= 1  # left the queue without a slot
            raise

    def _release(self) -> None:
        while self._waiting:
            _, _, fut = heapq.heappop(self._waiting)
            if not fut.done():
                self._live -= 1
                fut.set_result(None)  # the slot moves to the waiter; `inside` is unchanged
                return
        self.inside -= 1
