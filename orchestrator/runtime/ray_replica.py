"""`RayReplica`: a `ModelHost` actor as a replica of the fleet, and what the supervisor does to it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import ray

from orchestrator.runtime.handles import call, stream

# For the process that calls ModelHosts (the orchestrator): when a host's process dies, Ray
# fails the calls to it only after waiting up to this long for the death's cause (default 1 s).
# 100 ms lets the fleet route around a dead replica, or answer 503, well within a second
# (measured: a call sent right after a SIGKILL failed after 1.34 s by default, 0.32 s with it).
CALLER_ENV = {"RAY_timeout_ms_task_wait_for_death_info": "100"}
from serving.host.model_host import HostStatus
from serving.types import GenerationRequest, Result, StreamChunk


@dataclass
class RayReplica:
    handle: Any
    index: int
    gpus: float
    capacity: int
    max_queue: int | None = None
    model: str = ""

    @property
    def what(self) -> str:
        return f"replica {self.index} of model '{self.model}'"

    async def generate(self, request: GenerationRequest) -> Result:
        result: Result = await call(self.handle.generate, request, what=self.what)
        return result

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        async for chunk in stream(self.handle.stream, request, what=self.what):
            yield chunk

    async def status(self) -> HostStatus:
        status: HostStatus = await call(self.handle.status, what=self.what)
        return status

    # --- supervision ----------------------------------------------------------------------

    async def probe(self, timeout_s: float) -> HostStatus:
        status: HostStatus = await call(self.handle.probe, timeout_s, what=self.what)
        return status

    async def start(self) -> None:
        await call(self.handle.start, what=self.what)

    def restart(self) -> None:
        """Kill the host's process; Ray starts a new one in the same placement bundle
        (`max_restarts` bounds how often), whose engine the supervisor then starts."""
        ray.kill(self.handle, no_restart=False)


def ray_replicas(
    hosts: Mapping[str, Sequence[tuple[Any, float]]], capacity: Mapping[str, tuple[int, int | None]]
) -> dict[str, list[RayReplica]]:
    """ModelHost handles (with the GPUs each holds) as the fleet's replicas; `capacity` gives each
    model's (max_num_seqs, max_queue)."""
    return {
        model: [
            RayReplica(handle, index, gpus, capacity=capacity[model][0], max_queue=capacity[model][1], model=model)
            for index, (handle, gpus) in enumerate(replicas)
        ]
        for model, replicas in hosts.items()
    }
