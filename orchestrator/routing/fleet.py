"""The hosted models as the orchestrator sees them: replicas per model, dispatched by the Balancer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from cluster.errors import ChorusError, UnknownModelError
from orchestrator.core.schema import ReplicaStatus
from orchestrator.routing.balancer import Balancer
from orchestrator.routing.replicas import Replica
from serving.types import GenerationRequest, Result, StreamChunk


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

    async def status(self) -> list[ReplicaStatus]:
        """Every replica's status; a replica that cannot answer is reported down, not raised."""

        async def one(model: str, replica: Replica) -> ReplicaStatus:
            try:
                status = await replica.status()
            except ChorusError as exc:  # an unreachable replica is a status, not an error
                return ReplicaStatus(model=model, replica=replica.index, ok=False, detail=str(exc))
            return ReplicaStatus.model_validate(status.model_dump() | {"model": model})

        pairs = [(m, r) for m in self.models() for r in self.replicas[m]]
        return list(await asyncio.gather(*(one(m, r) for m, r in pairs)))
