"""The hosted models as the orchestrator sees them: replicas per model, picked by least work."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from serving.engine import Engine
from serving.types import GenerationRequest, Result, StreamChunk

from .errors import UnknownModelError


class Replica(Protocol):
    index: int
    gpus: float  # GPUs this replica holds (gpu_share × tensor_parallel_size); 0 on CPU

    async def generate(self, request: GenerationRequest) -> Result: ...

    def stream(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]: ...


@dataclass
class RayReplica:
    """A `ModelHost` actor."""

    handle: Any
    index: int
    gpus: float

    async def generate(self, request: GenerationRequest) -> Result:
        return await self.handle.generate.remote(request)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        async for ref in self.handle.stream.options(num_returns="streaming").remote(request):
            yield await ref


@dataclass
class LocalReplica:
    """An engine in this process (tests, and benchmarks that measure the orchestrator's own cost)."""

    engine: Engine
    index: int = 0
    gpus: float = 0.0

    async def generate(self, request: GenerationRequest) -> Result:
        return await self.engine.generate(request)

    def stream(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        return self.engine.stream(request)


@dataclass
class Fleet:
    replicas: dict[str, list[Replica]]
    _outstanding: dict[tuple[str, int], int] = field(default_factory=dict)

    def models(self) -> list[str]:
        return sorted(self.replicas)

    def pick(self, model: str) -> Replica:
        """The replica with the fewest calls in flight from here; ties go to the lowest index."""
        try:
            candidates = self.replicas[model]
        except KeyError:
            raise UnknownModelError(model, self.models()) from None
        return min(candidates, key=lambda r: (self._outstanding.get((model, r.index), 0), r.index))

    async def generate(self, model: str, request: GenerationRequest) -> tuple[Result, Replica]:
        replica = self.pick(model)
        key = (model, replica.index)
        self._outstanding[key] = self._outstanding.get(key, 0) + 1
        try:
            return await replica.generate(request), replica
        finally:
            self._outstanding[key] -= 1

    async def stream(self, model: str, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        replica = self.pick(model)
        key = (model, replica.index)
        self._outstanding[key] = self._outstanding.get(key, 0) + 1
        try:
            async for chunk in replica.stream(request):
                yield chunk
        finally:
            self._outstanding[key] -= 1
