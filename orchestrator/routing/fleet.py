"""The hosted models as the orchestrator sees them: replicas per model, dispatched by the Balancer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from cluster.errors import ChorusError, EngineError, UnknownModelError
from orchestrator.core.schema import ReplicaStatus
from orchestrator.routing.balancer import Balancer
from orchestrator.routing.replicas import Replica
from serving.types import GenerationRequest, OpenAICall, OpenAIPart, Result, StreamChunk, Usage


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

    async def saturated(self, models: Iterable[str]) -> list[str]:
        """The models whose every replica has a full batch and a full wait queue.

        Asked of the replicas themselves (their admission is the one truth when several
        orchestrators share them), all at once; a replica that cannot answer does not count as full.
        """
        pairs = [(m, r) for m in sorted(set(models)) for r in self._replicas(m) if r.max_queue is not None]
        if not pairs:
            return []
        loads = await asyncio.gather(*(r.load() for _, r in pairs), return_exceptions=True)
        room: dict[str, bool] = {m: False for m, _ in pairs}
        for (model, _), load in zip(pairs, loads):
            if isinstance(load, BaseException):
                if not isinstance(load, ChorusError):
                    raise load
                room[model] = True  # unreachable: let the call itself find out
            elif not load.full:
                room[model] = True
        # A model with any replica that has no queue bound is never refused up front.
        bounded = {m for m in models if all(r.max_queue is not None for r in self._replicas(m))}
        return sorted(m for m, ok in room.items() if not ok and m in bounded)

    @asynccontextmanager
    async def _dispatch(self, model: str, request: GenerationRequest | None) -> AsyncIterator[Replica]:
        replica = self.pick(model, request)
        self.balancer.begin(model, replica)
        try:
            yield replica
        finally:
            self.balancer.end(model, replica)

    async def generate(self, model: str, request: GenerationRequest) -> tuple[Result, Replica]:
        async with self._dispatch(model, request) as replica:
            return await replica.generate(request), replica

    async def generate_streaming(
        self, model: str, request: GenerationRequest, on_delta: Callable[[str], None]
    ) -> tuple[Result, Replica]:
        """`generate` over the replica's stream: each delta goes to `on_delta` as it arrives."""
        async with self._dispatch(model, request) as replica:
            parts: list[str] = []
            last: StreamChunk | None = None
            async for chunk in replica.stream(request):
                if chunk.delta:
                    parts.append(chunk.delta)
                    on_delta(chunk.delta)
                if chunk.finish_reason is not None:
                    last = chunk
            if last is None:
                raise EngineError(f"the stream of a replica of '{model}' ended without a finish")
            result = Result(
                text="".join(parts),
                finish_reason=last.finish_reason or "stop",
                usage=last.usage or Usage(),
                queue_s=last.queue_s,
                run_s=last.run_s,
                engine_seconds=last.engine_seconds,
            )
            return result, replica

    async def stream(self, model: str, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        async with self._dispatch(model, request) as replica:
            async for chunk in replica.stream(request):
                yield chunk

    async def openai(self, model: str, call: OpenAICall) -> AsyncIterator[tuple[OpenAIPart, Replica]]:
        """A raw OpenAI request on one replica of `model`: its parts, each with the replica."""
        async with self._dispatch(model, None) as replica:
            async for part in replica.openai(call):
                yield part, replica

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
