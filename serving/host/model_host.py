"""`ModelHost`: a Ray actor owning one engine for one replica of one deployed model.

The host admits requests in priority order up to the engine's batch capacity, times them
(queue vs. run), splits the engine's busy time among the requests sharing it (the basis of
GPU-seconds accounting) and reports health, load and throughput. It is a plain class; the
deploy code wraps it with `ray.remote` and the placement's resources.
"""

from __future__ import annotations

import collections
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from pydantic import BaseModel

from cluster.spec import ModelSpec
from serving.engines.base import Engine
from serving.host.admission import Admission, Load
from serving.host.coalesce import coalesced
from serving.host.openai_host import serve_openai
from serving.types import Coalesce, GenerationRequest, OpenAICall, OpenAIPart, Result, StreamChunk

THROUGHPUT_WINDOW_S = 30.0


class HostStatus(BaseModel):
    model: str
    replica: int
    ok: bool
    detail: str = ""
    running: int = 0
    waiting: int = 0
    capacity: int = 0
    completed: int = 0
    failed: int = 0
    tokens_per_s: float = 0.0
    gpus: float = 0.0
    gpu_ids: list[str] = []
    node_id: str = ""


class StartTimes(BaseModel):
    """Wall-clock marks (time.time()) of one host's start, for `chorus up`'s timeline."""

    process_up: float  # the actor's process ran __init__
    engine_start: float  # start() began
    ready: float  # the engine can generate
    phases: dict[str, float] = {}  # the engine's own marks within its start (e.g. "vllm imported")


class BusyClock:
    """Integrates dt / (requests in the engine): each request's fair share of busy time.

    A request's share is the clock's reading at its end minus at its start. Summed over all
    requests it equals the time the engine held at least one request.
    """

    def __init__(self, now: Callable[[], float] = time.perf_counter) -> None:
        self._now = now
        self._value = 0.0
        self._inside = 0
        self._last = now()

    def _advance(self) -> float:
        now = self._now()
        if self._inside:
            self._value += (now - self._last) / self._inside
        self._last = now
        return self._value

    def enter(self) -> float:
        start = self._advance()
        self._inside += 1
        return start

    def leave(self, start: float) -> float:
        share = self._advance() - start
        self._inside -= 1
        return share


class ModelHost:
    def __init__(
        self,
        spec: ModelSpec,
        replica: int,
        engine_cls: type[Engine],
        engine_kwargs: dict[str, Any] | None = None,
        *,
        gpus: float = 0.0,
    ) -> None:
        self._born = time.time()
        self.spec = spec
        self.replica = replica
        self.gpus = gpus
        self.engine: Engine = engine_cls(spec, **(engine_kwargs or {}))  # type: ignore[call-arg]
        self.admission = Admission(spec.max_num_seqs, spec.max_queue)
        self.clock = BusyClock()
        self.started = False
        self.completed = 0
        self.failed = 0
        self._tokens: collections.deque[tuple[float, int]] = collections.deque()

    async def start(self) -> StartTimes:
        begun = time.time()
        await self.engine.start()
        self.started = True
        # Engines that time their own start (VLLMEngine) expose `phases`; others report none.
        phases = dict(getattr(self.engine, "phases", {}))
        return StartTimes(process_up=self._born, engine_start=begun, ready=time.time(), phases=phases)

    def _done(self, tokens: int) -> None:
        now = time.perf_counter()
        self.completed += 1
        self._tokens.append((now, tokens))
        while self._tokens and self._tokens[0][0] < now - THROUGHPUT_WINDOW_S:
            self._tokens.popleft()

    async def generate(self, request: GenerationRequest) -> Result:
        arrived = time.perf_counter()
        async with self.admission.slot(request.priority):
            entered = time.perf_counter()
            mark = self.clock.enter()
            try:
                result = await self.engine.generate(request)
            except BaseException:
                self.failed += 1
                raise
            finally:
                share = self.clock.leave(mark)
            finished = time.perf_counter()
        self._done(result.usage.completion_tokens)
        return result.model_copy(
            update={"queue_s": entered - arrived, "run_s": finished - entered, "engine_seconds": share}
        )

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        """The engine's deltas, coalesced (request.coalesce) before they cross Ray; the last
        chunk also carries queue, run and engine time."""
        async for batch in coalesced(self._stream(request), request.coalesce or Coalesce()):
            yield merged(batch)

    async def _stream(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        arrived = time.perf_counter()
        async with self.admission.slot(request.priority):
            entered = time.perf_counter()
            mark = self.clock.enter()
            tokens, left = 0, False
            try:
                async for chunk in self.engine.stream(request):
                    if chunk.finish_reason is None:
                        yield chunk
                        continue
                    share, left = self.clock.leave(mark), True
                    tokens = chunk.usage.completion_tokens if chunk.usage is not None else 0
                    timing = {"queue_s": entered - arrived, "run_s": time.perf_counter() - entered}
                    yield chunk.model_copy(update=timing | {"engine_seconds": share})
            except BaseException:
                self.failed += 1
                raise
            finally:
                if not left:
                    self.clock.leave(mark)
        self._done(tokens)

    async def openai(self, call: OpenAICall) -> AsyncIterator[OpenAIPart]:
        """A raw OpenAI request through the engine's OpenAI layer (serving.host.openai_host)."""
        async for part in serve_openai(self, call):
            yield part

    async def load(self) -> Load:
        """Admission state only (no engine probe): cheap enough to ask before every request."""
        return self.admission.load()

    async def status(self) -> HostStatus:
        health = await self.engine.health() if self.started else None
        window = [t for t in self._tokens if t[0] >= time.perf_counter() - THROUGHPUT_WINDOW_S]
        placement = _ray_placement()
        return HostStatus(
            model=self.spec.name,
            replica=self.replica,
            ok=bool(health and health.ok),
            detail=health.detail if health else "starting",
            running=self.admission.inside,
            waiting=self.admission.waiting,
            capacity=self.admission.capacity,
            completed=self.completed,
            failed=self.failed,
            tokens_per_s=sum(n for _, n in window) / THROUGHPUT_WINDOW_S,
            gpus=self.gpus,
            **placement,
        )

    async def shutdown(self) -> None:
        await self.engine.shutdown()
        self.started = False


def merged(chunks: list[StreamChunk]) -> StreamChunk:
    """Consecutive chunks as one: the deltas joined, the end (finish, usage, timing) of the last."""
    if len(chunks) == 1:
        return chunks[0]
    return chunks[-1].model_copy(update={"delta": "".join(c.delta for c in chunks)})


def _ray_placement() -> dict[str, Any]:
    """GPU ids and node this actor holds, when it runs under Ray."""
    try:
        import ray

        if not ray.is_initialized():
            return {}
        ctx = ray.get_runtime_context()
        return {"gpu_ids": [str(g) for g in ray.get_gpu_ids()], "node_id": ctx.get_node_id()}
    except ImportError:
        return {}

