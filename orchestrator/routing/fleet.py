"""The hosted models as the orchestrator sees them: replicas per model, dispatched by the Balancer
to healthy replicas only.

A call whose replica was lost before any token reached the caller (`ReplicaLost`: the process
died, or its engine is not serving) is tried once more on another healthy replica of the same
model; the lost replica leaves the routable set at once, before the supervisor's next probe.
When no replica of the model is healthy the call fails at once with `NoHealthyReplica` (HTTP 503
with Retry-After), naming the model and what its replicas are doing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, field
from typing import TypeVar

from cluster.errors import ChorusError, EngineError, NoHealthyReplica, ReplicaLost, UnknownModelError
from orchestrator.core.schema import ReplicaStatus
from orchestrator.routing.balancer import Balancer
from orchestrator.routing.health import HealthBoard
from orchestrator.routing.replicas import Replica
from serving.types import GenerationRequest, OpenAICall, OpenAIPart, Result, StreamChunk, Usage

ATTEMPTS = 2  # the first try and one retry on another replica
STATUS_TIMEOUT_S = 2.0  # /health answers promptly even when a replica does not
T = TypeVar("T")


@dataclass
class Fleet:
    replicas: Mapping[str, Sequence[Replica]]
    balancer: Balancer = field(default_factory=Balancer)
    health: HealthBoard = field(default_factory=HealthBoard)

    def models(self) -> list[str]:
        return sorted(self.replicas)

    def _replicas(self, model: str) -> Sequence[Replica]:
        try:
            return self.replicas[model]
        except KeyError:
            raise UnknownModelError(model, self.models()) from None

    def pick(self, model: str, request: GenerationRequest | None = None, exclude: frozenset[int] = frozenset()) -> Replica:
        every = self._replicas(model)
        healthy = [r for r in every if r.index not in exclude and self.health.routable(model, r.index)]
        if not healthy:
            indices = [r.index for r in every]
            raise NoHealthyReplica(
                model, self.health.summary(model, indices), retry_after_s=self.health.retry_after_s(model, indices)
            )
        return self.balancer.choose(model, healthy, request)  # type: ignore[return-value]

    async def saturated(self, models: Iterable[str]) -> list[str]:
        """The models whose every replica has a full batch and a full wait queue.

        Read from the health board, which carries each replica's admission as of its last
        probe (the replicas' own admission is the one truth when several orchestrators share
        them): no call before the request. A replica the board has no report of yet (a fleet
        with no supervisor, in one process) is asked; one that cannot answer does not count as
        full, and one found lost is marked at once, so the call that follows does not wait on it.
        The hosts still refuse a request their queue has no room for (`QueueFull`).
        """
        full: dict[str, bool] = {}
        ask: list[tuple[str, Replica]] = []
        for m in sorted(set(models)):
            for r in self._replicas(m):
                if r.max_queue is None:
                    full[m] = False  # a replica without a queue bound is never refused up front
                elif self.health.routable(m, r.index):
                    reported = self.health.of(m, r.index).full
                    if reported is None:
                        ask.append((m, r))
                    else:
                        full[m] = full.get(m, True) and reported
        loads = await asyncio.gather(*(r.load() for _, r in ask), return_exceptions=True)
        for (model, replica), load in zip(ask, loads, strict=True):
            if isinstance(load, BaseException):
                if not isinstance(load, ChorusError):
                    raise load
                if isinstance(load, ReplicaLost):
                    self.health.call_lost(model, replica.index, str(load))
                full[model] = False  # unreachable: let the call itself find out
            else:
                full[model] = full.get(model, True) and load.full
        return sorted(m for m, f in full.items() if f)

    @asynccontextmanager
    async def _dispatch(self, model: str, replica: Replica) -> AsyncIterator[Replica]:
        self.balancer.begin(model, replica)
        try:
            yield replica
        except ReplicaLost as exc:
            self.health.call_lost(model, replica.index, str(exc))
            raise
        finally:
            self.balancer.end(model, replica)

    async def generate(self, model: str, request: GenerationRequest) -> tuple[Result, Replica]:
        tried: set[int] = set()
        while True:
            replica = self.pick(model, request, frozenset(tried))
            try:
                async with self._dispatch(model, replica):
                    return await replica.generate(request), replica
            except ReplicaLost:
                tried.add(replica.index)
                if len(tried) >= ATTEMPTS:
                    raise

    async def _retried(
        self, model: str, request: GenerationRequest | None, open_on: Callable[[Replica], AsyncIterator[T]]
    ) -> AsyncGenerator[tuple[T, Replica], None]:
        """The parts `open_on(replica)` yields, each with its replica; a replica lost before its
        first part is replaced by another healthy one (once a part reached the caller, a retry
        would repeat it: the call fails instead)."""
        tried: set[int] = set()
        while True:
            replica = self.pick(model, request, frozenset(tried))
            sent = False
            try:
                async with self._dispatch(model, replica):
                    async for part in open_on(replica):
                        sent = True
                        yield part, replica
                    return
            except ReplicaLost:
                tried.add(replica.index)
                if sent or len(tried) >= ATTEMPTS:
                    raise

    async def stream(self, model: str, request: GenerationRequest) -> AsyncGenerator[StreamChunk, None]:
        async with aclosing(self._retried(model, request, lambda r: r.stream(request))) as parts:
            async for chunk, _ in parts:
                yield chunk

    async def generate_streaming(
        self, model: str, request: GenerationRequest, on_delta: Callable[[str], None]
    ) -> tuple[Result, Replica]:
        """`generate` over a replica's stream: each delta goes to `on_delta` as it arrives."""
        texts: list[str] = []
        last: tuple[StreamChunk, Replica] | None = None
        async with aclosing(self._retried(model, request, lambda r: r.stream(request))) as parts:
            async for chunk, replica in parts:
                if chunk.delta:
                    texts.append(chunk.delta)
                    on_delta(chunk.delta)
                if chunk.finish_reason is not None:
                    last = chunk, replica
        if last is None:
            raise EngineError(f"the stream of a replica of '{model}' ended without a finish")
        chunk, replica = last
        result = Result(
            text="".join(texts),
            finish_reason=chunk.finish_reason or "stop",
            usage=chunk.usage or Usage(),
            queue_s=chunk.queue_s,
            run_s=chunk.run_s,
            engine_seconds=chunk.engine_seconds,
        )
        return result, replica

    async def openai(self, model: str, call: OpenAICall) -> AsyncGenerator[tuple[OpenAIPart, Replica], None]:
        """A raw OpenAI request on one replica of `model`: its parts, each with the replica."""
        async with aclosing(self._retried(model, None, lambda r: r.openai(call))) as parts:
            async for part in parts:
                yield part

    async def status(self, timeout_s: float | None = None) -> list[ReplicaStatus]:
        """Every replica's status and health state; one that cannot answer (in `timeout_s`)
        is reported down, not raised."""
        timeout_s = timeout_s or min(STATUS_TIMEOUT_S, self.health.spec.probe_timeout_s)

        async def one(model: str, replica: Replica) -> ReplicaStatus:
            h = self.health.of(model, replica.index)
            if h.lost_since is not None:  # its process is down: a call would wait for its restart
                return ReplicaStatus(
                    model=model, replica=replica.index, ok=False, state=h.state, detail=h.detail, restarts=h.restarts
                )
            try:
                async with asyncio.timeout(timeout_s):
                    status = await replica.status()
            except (ChorusError, TimeoutError) as exc:  # an unreachable replica is a status, not an error
                detail = h.detail or (str(exc) if isinstance(exc, ChorusError) else "did not answer in time")
                state = h.state if h.state != "healthy" else "restarting"
                return ReplicaStatus(
                    model=model, replica=replica.index, ok=False, state=state, detail=detail, restarts=h.restarts
                )
            fields = status.model_dump() | {"model": model, "state": h.state, "restarts": h.restarts}
            if h.state != "healthy":
                fields |= {"ok": False, "detail": h.detail or status.detail}
            return ReplicaStatus.model_validate(fields)

        pairs = [(m, r) for m in self.models() for r in self.replicas[m]]
        return list(await asyncio.gather(*(one(m, r) for m, r in pairs)))
