"""`CpuLanes`: simulated CPU time that a process spends per request, charged on the event loop's clock.

The simulated engines model the GPUs; the processes around them (the orchestrator, a model
host, a mixture-of-agents client, a vLLM API server) also spend CPU on every model call, and a
process's event loop does that work one call at a time. `CpuLanes(n)` is such a process with
`n` cores' worth of event loops: `await lanes.charge(s)` waits for a free lane, holds it for `s`
seconds of the loop's clock (simulated seconds under `VirtualClockLoop`), and records the time.
Calls queue behind each other when the process is saturated, which is how per-call CPU turns
into latency and a throughput ceiling at scale. docs/simulated-engine.md says which figures
the scale benchmark charges and where they were measured.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field


@dataclass
class CpuLanes:
    lanes: int = 1  # processes (or cores) that share the work; each serves one call at a time
    time_scale: float = 1.0  # loop seconds per simulated second (as SimulatedEngine's)
    busy_seconds: float = 0.0  # simulated CPU seconds charged so far
    calls: int = 0
    _sem: asyncio.Semaphore | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.lanes < 1:
            raise ValueError(f"lanes={self.lanes}: a process needs at least one")

    async def charge(self, seconds: float) -> None:
        """Spends `seconds` of simulated CPU on one lane, waiting for a free one first."""
        if seconds <= 0:
            return
        if self._sem is None:  # created on first use, inside the running loop
            self._sem = asyncio.Semaphore(self.lanes)
        async with self._sem:
            await asyncio.sleep(seconds * self.time_scale)
        self.busy_seconds += seconds
        self.calls += 1

    def utilization(self, elapsed: float) -> float:
        """Share of the lanes' capacity used over `elapsed` simulated seconds."""
        return self.busy_seconds / (elapsed * self.lanes) if elapsed > 0 else 0.0
