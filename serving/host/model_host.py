"""`ModelHost`: a Ray actor owning one engine for one replica of one deployed model.

The host admits requests in priority order up to the engine's batch capacity, times them
(queue vs. run), splits the engine's busy time among the requests sharing it (the basis of
GPU-seconds accounting) and reports health, load and throughput. It is a plain class; the
deploy code wraps it with `ray.remote` and the placement's resources.

Healing: the engine has a life of its own (`EngineState`): `idle` until `start()`, `starting`,
`ready`, or `failed` with the reason. `start()` is idempotent (concurrent callers share one
start), so whoever supervises the host may call it after Ray restarted the actor. A call that
arrives while the engine is not `ready` fails at once with `ReplicaLost` (nothing was generated,
so the fleet may send it to another replica). A cancelled call (its caller left, its deadline
passed, a pattern stopped early) cancels the engine's generate, which aborts the engine request.
`probe()` is the supervisor's health check: engine health plus one real one-token generation
under a deadline, outside admission so a busy replica still answers it.
"""

from __future__ import annotations

import asyncio
import collections
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

from pydantic import BaseModel

from cluster.errors import EngineError, ReplicaLost
from cluster.spec import ModelSpec
from serving.engines.base import Engine
from serving.host.admission import Admission, Load, Yield
from serving.host.coalesce import Streams, coalesced
from serving.host.openai_host import serve_openai
from serving.types import BATCH_PRIORITY, Coalesce, GenerationRequest, OpenAICall, OpenAIPart, Result, StreamChunk

THROUGHPUT_WINDOW_S = 30.0

EngineState = Literal["idle", "starting", "ready", "failed"]


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
    engine: EngineState = "idle"
    engine_running: int = 0  # requests inside the engine itself (0 once aborted work is gone)
    restarted: bool = False  # this actor process is a restart by Ray after its predecessor died
    probe_s: float | None = None  # how long the probe's one-token generation took
    full: bool = False  # a new request would be refused now: its batch and wait queue are full


class HostPlacement(BaseModel):
    """Where a host runs; empty outside a cluster."""

    gpu_ids: list[str] = []
    node_id: str = ""
    restarted: bool = False  # this process is a restart of a predecessor that died


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
        placement: Callable[[], HostPlacement] = HostPlacement,
    ) -> None:
        """`placement` says where the host runs (GPU ids, node, whether it is a restart): the Ray
        room supplies one that asks Ray (`orchestrator.runtime.ray_replica.ray_placement`). It is
        asked once, here, in the host's own process: none of it changes while the process lives."""
        self._born = time.time()
        self.spec = spec
        self.replica = replica
        self.gpus = gpus
        self.where = placement()
        self.engine: Engine = engine_cls(spec, **(engine_kwargs or {}))  # type: ignore[call-arg]
        self.admission = Admission(spec.max_num_seqs, spec.max_queue, yield_=batch_yield(spec, on_gpu=gpus > 0))
        self.clock = BusyClock()
        self.state: EngineState = "idle"
        self.last_error = ""
        self.completed = 0
        self.failed = 0
        self.streams = Streams()  # open coalesced streams: they widen each other's window
        self._tokens: collections.deque[tuple[float, int]] = collections.deque()
        self._start: asyncio.Task[None] | None = None
        self._probing = 0  # probes inside the engine (left out of the running count)
        self._seen_progress = 0  # the engine's output count at the last probe (a new engine: 0)
        self._probed_ok_at: float | None = None  # monotonic time of the last passing probe token
        self.started_at: StartTimes | None = None  # this process's first successful engine start

    @property
    def started(self) -> bool:
        return self.state == "ready"

    async def start(self) -> StartTimes:
        """Start the engine, once: a second caller waits for the same start. A failed start
        can be tried again (after a back-off the supervisor decides). Returns when each phase
        of the successful start happened (the `chorus up` timeline)."""
        if self.state != "ready":
            if self._start is None or self._start.done():
                self._start = asyncio.create_task(self._start_engine())
            await asyncio.shield(self._start)
        if self.started_at is None:  # the start that made the engine ready sets it
            raise EngineError(f"'{self.spec.name}' replica {self.replica}: engine ready without a recorded start")
        return self.started_at

    async def _start_engine(self) -> None:
        self.state = "starting"
        begun = time.time()
        try:
            phases = await self.engine.start()
        except Exception as exc:  # noqa: BLE001 - any start failure is the host's state, raised as EngineError
            self.state, self.last_error = "failed", _reason(exc)
            raise EngineError(f"'{self.spec.name}' replica {self.replica}: {self.last_error}") from None
        self.started_at = StartTimes(process_up=self._born, engine_start=begun, ready=time.time(), phases=phases)
        self.state, self.last_error = "ready", ""

    def _serving(self) -> None:
        if self.state != "ready":
            raise ReplicaLost(f"replica {self.replica} of model '{self.spec.name}' is not serving (engine {self.state})")

    def process_id(self) -> int:
        """The host's process id (fault-injection tests and benchmarks kill it; never in an error)."""
        return os.getpid()

    def _done(self, tokens: int) -> None:
        now = time.perf_counter()
        self.completed += 1
        self._tokens.append((now, tokens))
        while self._tokens and self._tokens[0][0] < now - THROUGHPUT_WINDOW_S:
            self._tokens.popleft()

    async def generate(self, request: GenerationRequest) -> Result:
        self._serving()
        arrived = time.perf_counter()
        async with self.admission.slot(request.priority):
            entered = time.perf_counter()
            mark = self.clock.enter()
            try:
                result = await self.engine.generate(request)
            except asyncio.CancelledError:
                raise  # the caller left: the engine aborted the request; not a fault
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
        self._serving()
        async for batch in coalesced(self._stream(request), request.coalesce or Coalesce(), self.streams):
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
            except (asyncio.CancelledError, GeneratorExit):
                raise  # the caller left: the engine aborted the request; not a fault
            except BaseException:
                self.failed += 1
                raise
            finally:
                if not left:
                    self.clock.leave(mark)
        self._done(tokens)

    async def openai(self, call: OpenAICall) -> AsyncIterator[OpenAIPart]:
        """A raw OpenAI request through the engine's OpenAI layer (serving.host.openai_host)."""
        self._serving()
        async for part in serve_openai(self, call):
            yield part

    async def load(self) -> Load:
        """Admission state only (no engine probe): what a fleet without a supervisor's board asks
        before a request (on Ray, each probe carries it as `HostStatus.full`)."""
        return self.admission.load()

    async def status(self) -> HostStatus:
        if self.started:
            health = await self.engine.health()
            ok, detail = health.ok, health.detail
        else:
            ok, detail = False, self.last_error or f"engine {self.state}"
        return self._status(ok, detail)

    async def probe(self, timeout_s: float, generate_every_s: float = 0.0) -> HostStatus:
        """The status, with `ok` only if the engine is healthy and shows it generates: its output
        count moved since the last probe (a busy engine is not made to queue a probe behind its
        work), or a one-token probe finished within `timeout_s` — run at most every
        `generate_every_s` while the last one passed (its health alone is checked in between):
        vLLM's workers busy-poll for a second after every step, so a probe token every second
        would keep an idle engine's cores spinning."""
        status = await self.status()
        if not status.ok:
            return status
        progress = self.engine.progress()
        if progress != self._seen_progress:
            self._seen_progress = progress
            return status
        now = time.monotonic()
        if self._probed_ok_at is not None and now - self._probed_ok_at < generate_every_s:
            return status
        t0 = time.perf_counter()
        self._probing += 1
        try:
            async with asyncio.timeout(timeout_s):
                await self.engine.probe()
        except TimeoutError:
            self._probed_ok_at = None
            return self._status(False, f"a one-token probe took longer than {timeout_s:g} s")
        except Exception as exc:  # noqa: BLE001 - a failing probe is a health finding, reported, not raised
            self._probed_ok_at = None
            return self._status(False, f"probe failed: {_reason(exc)}")
        finally:
            self._probing -= 1
            self._seen_progress = self.engine.progress()  # the probe's own output is not the work's
        self._probed_ok_at = now
        return self._status(True, "", probe_s=time.perf_counter() - t0)

    def _status(self, ok: bool, detail: str, probe_s: float | None = None) -> HostStatus:
        window = [t for t in self._tokens if t[0] >= time.perf_counter() - THROUGHPUT_WINDOW_S]
        return HostStatus(
            model=self.spec.name,
            replica=self.replica,
            ok=ok,
            detail=detail,
            engine=self.state,
            engine_running=max(0, self.engine.running() - self._probing) if self.started else 0,
            probe_s=probe_s,
            running=self.admission.inside,
            waiting=self.admission.waiting,
            capacity=self.admission.capacity,
            full=self.admission.load().full,
            completed=self.completed,
            failed=self.failed,
            tokens_per_s=sum(n for _, n in window) / THROUGHPUT_WINDOW_S,
            gpus=self.gpus,
            **self.where.model_dump(),
        )

    async def shutdown(self) -> None:
        await self.engine.shutdown()
        self.state = "idle"


def batch_yield(spec: ModelSpec, on_gpu: bool) -> Yield | None:
    """How much of an engine batch work keeps beside interactive work (ModelSpec.batch_slots_when_busy)."""
    slots = spec.batch_slots_when_busy
    if slots is None:
        if on_gpu:
            return None  # a GPU decode step costs about the same for 1 sequence as for 32
        slots = max(1, spec.max_num_seqs // 8)
    return None if slots >= spec.max_num_seqs else Yield(from_priority=BATCH_PRIORITY, slots=slots)


def _reason(exc: BaseException) -> str:
    """One line for a status or an error body: the type and the first line, never a traceback."""
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def merged(chunks: list[StreamChunk]) -> StreamChunk:
    """Consecutive chunks as one: the deltas joined, the end (finish, usage, timing) of the last."""
    if len(chunks) == 1:
        return chunks[0]
    return chunks[-1].model_copy(update={"delta": "".join(c.delta for c in chunks)})
