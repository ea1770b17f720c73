"""A replica of a hosted model as the fleet sees it, and the two kinds that live in this process.

The Ray kind (a `ModelHost` actor) is `orchestrator.runtime.ray_replica.RayReplica`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

from cluster.errors import EngineRejected
from serving.engines.base import Engine, OpenAIEngine
from serving.host.admission import Load
from serving.host.model_host import HostStatus, ModelHost
from serving.types import (
    Accounting,
    GenerationRequest,
    OpenAICall,
    OpenAIPart,
    OpenAIReply,
    Result,
    SSEBatch,
    StreamChunk,
)


class Replica(Protocol):
    index: int
    gpus: float  # GPUs this replica holds (gpu_share × tensor_parallel_size); 0 on CPU
    capacity: int  # sequences its engine batches (max_num_seqs)
    max_queue: int | None  # calls that may wait beyond capacity before new requests are refused

    async def generate(self, request: GenerationRequest) -> Result: ...

    def stream(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]: ...

    def openai(self, call: OpenAICall) -> AsyncIterator[OpenAIPart]: ...

    async def status(self) -> HostStatus: ...

    async def load(self) -> Load:
        """The replica's own admission state: the truth every orchestrator replica shares."""
        ...


@dataclass
class LocalReplica:
    """An engine in this process (tests, and benchmarks that measure the orchestrator's own cost)."""

    engine: Engine
    index: int = 0
    gpus: float = 0.0
    capacity: int = 16
    max_queue: int | None = None
    inflight: int = field(default=0, init=False)  # calls inside the engine or waiting for it

    async def generate(self, request: GenerationRequest) -> Result:
        self.inflight += 1
        try:
            return await self.engine.generate(request)
        finally:
            self.inflight -= 1

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        self.inflight += 1
        try:
            async for chunk in self.engine.stream(request):
                yield chunk
        finally:
            self.inflight -= 1

    async def load(self) -> Load:
        running = min(self.inflight, self.capacity)
        return Load(running, self.inflight - running, self.capacity, self.max_queue)

    async def openai(self, call: OpenAICall) -> AsyncIterator[OpenAIPart]:
        """The engine's OpenAI layer without a host: no admission, no coalescing, no timing."""
        if not isinstance(self.engine, OpenAIEngine):
            raise EngineRejected(f"{type(self.engine).__name__} has no OpenAI layer", status=400)
        async for item in self.engine.openai(call.endpoint, call.body):
            yield OpenAIReply(body=item) if isinstance(item, dict) else SSEBatch(text=item)
        yield Accounting()

    async def status(self) -> HostStatus:
        health = await self.engine.health()
        return HostStatus(model="", replica=self.index, ok=health.ok, detail=health.detail, gpus=self.gpus)


@dataclass
class HostReplica:
    """A `ModelHost` in this process: admission, timing and accounting without Ray
    (simulation at cluster scale, and benchmarks of chorus's own overhead)."""

    host: ModelHost
    index: int = 0
    gpus: float = 0.0

    @property
    def capacity(self) -> int:
        return self.host.admission.capacity

    @property
    def max_queue(self) -> int | None:
        return self.host.admission.max_waiting

    async def generate(self, request: GenerationRequest) -> Result:
        return await self.host.generate(request)

    def stream(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        return self.host.stream(request)

    def openai(self, call: OpenAICall) -> AsyncIterator[OpenAIPart]:
        return self.host.openai(call)

    async def status(self) -> HostStatus:
        return await self.host.status()

    async def load(self) -> Load:
        return await self.host.load()
