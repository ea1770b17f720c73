"""The hosted models as the orchestrator sees them: replicas per model, dispatched by the Balancer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from serving.engine import Engine
from serving.host import HostStatus, ModelHost
from serving.types import GenerationRequest, Result, StreamChunk

from .balancer import Balancer
from .errors import UnknownModelError


class Replica(Protocol):
    index: int
    gpus: float  # GPUs this replica holds (gpu_share × tensor_parallel_size); 0 on CPU
    capacity: int  # sequences its engine batches (max_num_seqs)
    max_queue: int | None  # calls that may wait beyond capacity before new requests are refused

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
    capacity: int
    max_queue: int | None = None

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
    capacity: int = 16
    max_queue: int | None = None

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

    async def status(self) -> HostStatus:
        return await self.host.status()


@dataclass
class Fleet:
    replicas: dict[str, list[Replica]]
    balancer: Balancer = field(default_factory=Balancer)

    def models(self) -> list[str]:
        return sorted(self.replicas)

    def _replicas(self, model: str) -> list[Replica]:
        try:
            return self.replicas[model]
        except KeyError:
            raise UnknownModelError(model, self.models()) from None

    def pick(self, model: str, request: GenerationRequest | None = None) -> Replica:
        return self.balancer.choose(model, self._replicas(model), request)  # type: ignore[return-value]

    def saturated(self, model: str) -> bool:
        """True when every replica's batch and wait queue are full: a new request would only wait."""
        return all(
            r.max_queue is not None and self.balancer.load(model, r) >= r.capacity + r.max_queue
            for r in self._replicas(model)
        )

    @asynccontextmanager
    async def _dispatch(self, model: str, request: GenerationRequest) -> AsyncIterator[Replica]:
        replica = self.pick(model, request)
        self.balancer.begin(model, replica)
        try:
            yield replica
        finally:
            self.balancer.end(model, replica)

    async def generate(self, model: str, request: GenerationRequest) -> tuple[Result, Replica]:
        async with self._dispatch(model, request) as replica:
            return await replica.generate(request), replica

    async def stream(self, model: str, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        async with self._dispatch(model, request) as replica:
            async for chunk in replica.stream(request):
                yield chunk

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
