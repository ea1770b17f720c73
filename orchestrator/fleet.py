"""The hosted models as the orchestrator sees them: replicas per model, picked by least work."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from serving.engine import Engine
from serving.host import HostStatus, ModelHost
from serving.types import GenerationRequest, Result, StreamChunk

from .errors import UnknownModelError


class Replica(Protocol):
    index: int
    gpus: float  # GPUs this replica holds (gpu_share × tensor_parallel_size); 0 on CPU

    async def generate(self, request: GenerationRequest) -> Result: ...

    def stream(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]: ...

    async def status(self) -> HostStatus: ...


@contextmanager
def unwrap_ray_errors() -> Iterator[None]:
    """Re-raise an actor's own exception instead of Ray's wrapper, so callers can tell
    a client mistake (PromptTooLong) or overload (QueueFull) from an engine fault."""
    from ray.exceptions import RayTaskError

    try:
        yield
    except RayTaskError as exc:
        cause = exc.cause
        if isinstance(cause, Exception):
            raise cause from exc
        raise


@dataclass
class RayReplica:
    """A `ModelHost` actor."""

    handle: Any
    index: int
    gpus: float

    async def generate(self, request: GenerationRequest) -> Result:
        with unwrap_ray_errors():
            return await self.handle.generate.remote(request)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        with unwrap_ray_errors():
            async for ref in self.handle.stream.options(num_returns="streaming").remote(request):
                yield await ref

    async def status(self) -> HostStatus:
        with unwrap_ray_errors():
            return await self.handle.status.remote()


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

    async def generate(self, request: GenerationRequest) -> Result:
        return await self.host.generate(request)

    def stream(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        return self.host.stream(request)

    async def status(self) -> HostStatus:
        return await self.host.status()


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

    async def status(self) -> list[HostStatus]:
        """Every replica's status; a replica that cannot answer is reported down, not raised."""

        async def one(model: str, replica: Replica) -> HostStatus:
            try:
                status = await replica.status()
            except Exception as exc:  # an unreachable replica is a status, not an error
                return HostStatus(model=model, replica=replica.index, ok=False, detail=f"{type(exc).__name__}: {exc}")
            return status.model_copy(update={"model": model})

        pairs = [(m, r) for m in self.models() for r in self.replicas[m]]
        return list(await asyncio.gather(*(one(m, r) for m, r in pairs)))
