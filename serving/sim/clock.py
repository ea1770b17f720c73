"""Simulated time on an asyncio event loop.

`SimClock` is one engine's clock: simulated seconds are the loop's seconds divided by
`time_scale`, and the engine's stepping loop sleeps through it (a sleep an arrival may cut short,
an idle wait until something arrives). `VirtualClockLoop` is an event loop whose clock jumps to
the next timer whenever nothing is runnable, so sleeps take no wall time and simulated time is
exact.
"""

from __future__ import annotations

import asyncio
import selectors
from typing import Any


def _resolve(future: asyncio.Future[bool], value: bool) -> None:
    if not future.done():
        future.set_result(value)


class SimClock:
    """One engine's simulated time.

    `elapsed` is the engine's own clock: the simulated seconds its steps and idle waits have
    covered since start. While started (and `time_scale` > 0) the loop's clock also gives
    simulated time, `loop_seconds()`; the two agree at every step boundary.
    """

    def __init__(self, time_scale: float) -> None:
        if time_scale < 0:
            raise ValueError(f"time_scale must be >= 0, got {time_scale}")
        self.time_scale = time_scale
        self.elapsed = 0.0
        self._t0: float | None = None  # the loop's time at start; None while stopped
        self._wake: asyncio.Future[bool] | None = None  # resolved by a timer (True) or a poke (False)

    def start(self) -> None:
        self._t0 = asyncio.get_running_loop().time()

    def stop(self) -> None:
        self._t0 = None

    def loop_seconds(self) -> float:
        """Simulated seconds since start by the loop's clock (`elapsed` when stopped or unscaled)."""
        if self.time_scale == 0 or self._t0 is None:
            return self.elapsed
        return (asyncio.get_running_loop().time() - self._t0) / self.time_scale

    def now(self) -> float:
        """Simulated time since start; readable outside the event loop too (then `elapsed`)."""
        try:
            return max(self.elapsed, self.loop_seconds())
        except RuntimeError:  # no running loop: read from another thread or after it closed
            return self.elapsed

    def advance(self, seconds: float) -> None:
        self.elapsed += seconds

    def poke(self) -> None:
        """Cut short an interruptible sleep or an idle wait (an arrival, a change in sharing)."""
        if self._wake is not None:
            _resolve(self._wake, False)

    async def sleep(self, seconds: float, *, interruptible: bool) -> bool:
        """Sleep `seconds` of simulated time; True if a poke cut it short."""
        delay = seconds * self.time_scale
        if not interruptible:
            await asyncio.sleep(delay)
            return False
        loop = asyncio.get_running_loop()
        wake = self._wake = loop.create_future()
        timer = loop.call_later(delay, _resolve, wake, True)  # True: the time ran out
        try:
            fired = await wake  # a poke resolves it with False
        finally:
            timer.cancel()
            self._wake = None
        return not fired

    async def wait_for_poke(self) -> None:
        """Idle until poked; the engine's clock then catches up with the loop's."""
        self._wake = asyncio.get_running_loop().create_future()
        try:
            await self._wake
        finally:
            self._wake = None
        self.elapsed = max(self.elapsed, self.loop_seconds())


class _VirtualSelector(selectors.DefaultSelector):
    """Polls without blocking; when nothing is ready and a timer is due later, moves the clock to
    it instead of waiting. Blocks for real only when no timer is pending (e.g. a worker thread)."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def select(self, timeout: float | None = None) -> list[Any]:
        ready: list[Any] = super().select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:
            return list(super().select(None))
        self.now += timeout
        return []


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock jumps to the next timer whenever nothing is runnable.

    Under it, simulated engines' sleeps take no wall time and no Python overhead leaks into
    simulated time: a simulation runs as fast as its Python work allows and repeats exactly.
    Use `asyncio.Runner(loop_factory=VirtualClockLoop)`. Work handed to threads (to_thread)
    does not advance the clock while timers are pending, so keep simulations on the loop.
    """

    def __init__(self) -> None:
        self._virtual = _VirtualSelector()
        super().__init__(self._virtual)

    def time(self) -> float:
        return self._virtual.now
