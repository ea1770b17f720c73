"""`SimulatedEngine`: an Engine that simulates a GPU running vLLM-style continuous batching.

It generates no real text. It exists so chorus's scheduling (admission, batching, replicas,
patterns' concurrent steps) can be studied at cluster scale — hundreds of requests, 8+ GPUs —
on a machine without a GPU. docs/simulated-engine.md states the latency model, every constant
and its source, and what the model ignores.

The pieces it stands on are listed in `serving/sim/__init__.py`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from cluster.errors import EngineError, PromptTooLong
from cluster.sizing.memory import ModelMemory, estimate
from cluster.spec import ModelSpec
from serving.engines.base import PROBE_REQUEST, EngineHealth
from serving.sim.answers import draw_answer
from serving.sim.clock import SimClock
from serving.sim.gpu import SimulatedGpu
from serving.sim.latency import H100, GpuProfile, LatencyModel
from serving.sim.scheduler import BatchScheduler
from serving.sim.sequence import RequestStats, SimSequence
from serving.sim.tokens import BLOCK_TOKENS, prompt_blocks
from serving.types import GenerationRequest, Result, StreamChunk


class SimulatedEngine:
    """A simulated GPU engine for one replica; `engine_cls(spec, **kwargs)` as ModelHost builds it.

    kwargs: `profile` (GPU figures, H100 by default), `tensor_parallel_size`, `gpu_share` (the
    memory share that sizes the KV cache, as vLLM's gpu_memory_utilization), `devices` (the
    `SimulatedGpu`s it runs on, for sharing; none: GPUs of its own), `time_scale` (wall seconds
    per simulated second on the event loop's clock; 0 runs as fast as possible), `seed`,
    `median_completion_tokens` (typical answer length), `kv_capacity_tokens` (overrides sizing).
    """

    def __init__(
        self,
        spec: ModelSpec,
        *,
        profile: GpuProfile | None = None,
        tensor_parallel_size: int = 1,
        time_scale: float = 1.0,
        seed: int = 0,
        gpu_share: float = 0.9,
        devices: Sequence[SimulatedGpu] = (),
        median_completion_tokens: int = 180,
        kv_capacity_tokens: int | None = None,
    ) -> None:
        if tensor_parallel_size < 1:
            raise ValueError(f"tensor_parallel_size must be >= 1, got {tensor_parallel_size}")
        if not 0.0 < gpu_share <= 1.0:
            raise ValueError(f"gpu_share must be in (0, 1], got {gpu_share}")
        if devices and len(devices) != tensor_parallel_size:
            raise ValueError(
                f"{len(devices)} devices for tensor_parallel_size={tensor_parallel_size}: give one per rank"
            )
        self.spec = spec
        self.profile = profile or H100
        self.tp = tensor_parallel_size
        self.seed = seed
        self.median_completion_tokens = median_completion_tokens
        self.memory: ModelMemory = estimate(spec)  # model facts from the catalog / config.json
        capacity = self.memory.kv_tokens(int(gpu_share * self.profile.memory_bytes), self.tp)
        self.kv_capacity_tokens = kv_capacity_tokens if kv_capacity_tokens is not None else capacity
        if self.kv_capacity_tokens < BLOCK_TOKENS:
            raise ValueError(
                f"{spec.name}: gpu_share={gpu_share} leaves no KV cache beside the weights on "
                f"{self.profile.name} × {self.tp}; raise gpu_share or tensor_parallel_size"
            )
        self.latency = LatencyModel(self.profile, self.memory, self.tp)
        self._clock = SimClock(time_scale)
        self.scheduler = BatchScheduler(
            latency=self.latency,
            clock=self._clock,
            max_num_seqs=spec.max_num_seqs,
            kv_capacity_tokens=self.kv_capacity_tokens,
            prefix_caching=spec.enable_prefix_caching,
            devices=devices,
        )
        self._task: asyncio.Task[None] | None = None
        self._count = 0

    # ---- what it reports (simulated seconds) ---------------------------------------------

    @property
    def time_scale(self) -> float:
        return self._clock.time_scale

    @property
    def devices(self) -> list[SimulatedGpu]:
        return self.scheduler.devices

    @property
    def clock(self) -> float:
        """The engine's own clock: simulated seconds since start, advanced step by step."""
        return self._clock.elapsed

    @property
    def sim_seconds(self) -> float:
        """Simulated time since start: the loop's clock / time_scale (the engine's own clock
        while it steps)."""
        return self._clock.now()

    @property
    def busy_seconds(self) -> float:
        return self.scheduler.busy_seconds

    @property
    def work_seconds(self) -> float:
        return self.scheduler.work_seconds

    @property
    def steps(self) -> int:
        return self.scheduler.steps

    @property
    def tokens_generated(self) -> int:
        return self.scheduler.tokens_generated

    @property
    def max_batch(self) -> int:
        return self.scheduler.max_batch

    @property
    def stats(self) -> list[RequestStats]:
        return self.scheduler.stats

    def step_seconds(
        self, decode_seqs: int, context_tokens: int, prefill: Sequence[tuple[int, int]] = ()
    ) -> float:
        """The latency model: one step's nominal length (see `LatencyModel.step_seconds`)."""
        return self.latency.step_seconds(decode_seqs, context_tokens, prefill)

    # ---- the Engine protocol -------------------------------------------------------------

    async def start(self) -> dict[str, float]:
        if self._task is None:
            self._clock.start()
            self._task = asyncio.create_task(self.scheduler.run(), name=f"simulated-{self.spec.name}")
            self._task.add_done_callback(self._loop_ended)
        return {}

    async def generate(self, request: GenerationRequest) -> Result:
        seq = self._submit(request, stream=False)
        try:
            return await asyncio.shield(seq.future)
        except asyncio.CancelledError:
            self.scheduler.abort(seq)
            raise

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        seq = self._submit(request, stream=True)
        queue = seq.stream
        if queue is None:  # _submit always makes one for streams; keeps the type checker honest
            raise EngineError("stream queue missing")
        try:
            while True:
                chunk = await queue.get()
                yield chunk
                if chunk.finish_reason is not None:
                    return
        finally:
            if not seq.future.done():
                self.scheduler.abort(seq)

    def running(self) -> int:
        return self.scheduler.held()

    async def probe(self) -> None:
        await self.generate(PROBE_REQUEST)

    def progress(self) -> int:
        return self.scheduler.steps

    async def health(self) -> EngineHealth:
        ok = self._task is not None and not self._task.done()
        return EngineHealth(ok=ok, detail="" if ok else "not started")

    async def shutdown(self) -> None:
        task, self._task = self._task, None
        self._clock.stop()
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        self.scheduler.fail_all(EngineError(f"{self.spec.name}: engine shut down"))
        self.scheduler.set_busy(False)

    def _loop_ended(self, task: asyncio.Task[None]) -> None:
        """A bug in the stepping loop must fail the requests in it, not leave them waiting."""
        if not task.cancelled() and task.exception() is not None:
            error = EngineError(f"{self.spec.name}: simulated engine failed: {task.exception()!r}")
            self.scheduler.fail_all(error)

    def _submit(self, request: GenerationRequest, *, stream: bool) -> SimSequence:
        if self._task is None:
            raise EngineError(f"{self.spec.name}: engine not started")
        tokens, blocks = prompt_blocks(request)
        limit = min(self.spec.max_model_len, self.kv_capacity_tokens)
        if tokens >= limit:
            raise PromptTooLong(
                f"prompt of {tokens} tokens does not fit {self.spec.name} (max_model_len "
                f"{self.spec.max_model_len}, KV cache {self.kv_capacity_tokens} tokens)"
            )
        answer = draw_answer(
            request,
            seed=self.seed,
            model=self.spec.name,
            median_tokens=self.median_completion_tokens,
            room=limit - tokens,
        )
        self._count += 1
        seq = SimSequence(
            request=request,
            request_id=request.request_id or f"sim-{self._count}",
            blocks=blocks,
            prompt_tokens=tokens,
            answer=answer,
            future=asyncio.get_running_loop().create_future(),
            stream=asyncio.Queue() if stream else None,
        )
        self.scheduler.submit(seq)
        return seq
