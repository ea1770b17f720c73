"""`SimulatedEngine`: an Engine that simulates a GPU running vLLM-style continuous batching.

It generates no real text. It exists so chorus's scheduling (admission, batching, replicas,
patterns' concurrent steps) can be studied at cluster scale — hundreds of requests, 8+ GPUs —
on a machine without a GPU. docs/simulated-engine.md states the latency model, every constant
and its source, and what the model ignores.

How time passes: one background task per engine runs *steps*. Each step serves every running
sequence one token (decode) and spends the rest of its token budget on prompt chunks (chunked
prefill). A step lasts, in simulated seconds,

    max(HBM bytes read / achieved bandwidth, FLOPs / achieved FLOP/s) / TP efficiency
      + per-step overhead + per-sequence overhead × batch

where the bytes are the weights (once per step, shared by the whole batch) plus every sequence's
KV cache, and the FLOPs are 2 × parameters per token plus attention. The task sleeps
`step × time_scale` on the event loop's clock, so the loop's time divided by `time_scale` is
simulated time. Runs of pure decode steps are taken as one sleep up to the next sequence's end;
an arrival (or a change in GPU sharing) interrupts the sleep and joins at the next step
boundary, as in vLLM.

Engines on one GPU share it (`SimulatedGpu`): while n of them are stepping, each runs at 1/n
speed (processor sharing). The work each does is credited to its GPUs, so GPU utilization is
work / elapsed time.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import math
import random
import re
import selectors
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from cluster.inventory import KNOWN_GPUS
from cluster.sizing.memory import ModelMemory, estimate
from cluster.spec import ModelSpec

from serving.engines.base import EngineHealth
from cluster.errors import EngineError, PromptTooLong
from serving.types import Choice, GenerationRequest, JsonSchema, Regex, Result, StreamChunk, TokenLogprob, Usage

Finish = Literal["stop", "length"]
BLOCK_TOKENS = 16  # vLLM's default KV block size; prefix-cache hits are whole blocks
CHARS_PER_TOKEN = 4  # tokenizer-free count: a word is one token per 4 characters (≈1.3 per English word)
NUMERIC_MARK = "####"  # GSM8K-style final answer line that numeric voting reads
CHOICE_CONFIDENCE = 0.85  # probability reported for the chosen option of a Choice
# Short words (≤ CHARS_PER_TOKEN characters) so a generated text counts one token per word.
WORDS = (
    "the a of and to in is it that for on with as be by this are we can use more one each step then "
    "so if not all new data time fast run two set its than our also when only both case sum key way "
    "map list node part rate cost load work test plan code fact view form goal rule"
).split()


@dataclass(frozen=True)
class GpuProfile:
    """Published peak figures of one GPU and the fractions an inference engine achieves.

    Peaks are NVIDIA's H100 SXM5 datasheet figures; the achieved fractions and overheads are
    stated assumptions (docs/simulated-engine.md gives the reasoning and sanity checks).
    """

    name: str = "H100-SXM5-80GB"
    memory_bytes: int = KNOWN_GPUS[("H100", 80)][0]  # what NVML reports for an 80 GB H100
    hbm_bytes_per_s: float = 3.35e12  # HBM3 peak bandwidth
    bf16_flops: float = 989.4e12  # dense BF16 tensor-core peak (1,979 is with 2:4 sparsity)
    bandwidth_efficiency: float = 0.75  # achieved share of HBM peak reading weights and KV
    flops_efficiency: float = 0.55  # achieved share of tensor-core peak in large GEMMs (prefill)
    step_overhead_s: float = 1.0e-3  # scheduling, sampling, kernel launches per step (CUDA graphs on)
    seq_overhead_s: float = 10e-6  # per sequence per step: sampling, detokenizing, bookkeeping
    tp_efficiency: tuple[float, ...] = (1.0, 0.88, 0.80, 0.80, 0.70, 0.70, 0.70, 0.70)  # by TP size 1…8
    max_batched_tokens: int = 8192  # vLLM's chunked-prefill token budget per step

    def tp_factor(self, tp: int) -> float:
        return self.tp_efficiency[min(tp, len(self.tp_efficiency)) - 1]


H100 = GpuProfile()


class SimulatedGpu:
    """One GPU that several simulated engines may share.

    While n engines on it are stepping, each advances at 1/n of its own speed (processor
    sharing: the GPU's time is split, its total work conserved). `work_seconds` sums the GPU
    time the engines' steps needed, so work / elapsed is the GPU's utilization.
    """

    def __init__(self, index: int) -> None:
        self.index = index
        self.work_seconds = 0.0
        self._engines: list[SimulatedEngine] = []
        self._busy: set[int] = set()

    def attach(self, engine: SimulatedEngine) -> None:
        self._engines.append(engine)

    @property
    def sharing(self) -> int:
        """Engines stepping on this GPU right now (at least 1 from the asking engine's view)."""
        return max(1, len(self._busy))

    def set_busy(self, engine: SimulatedEngine, busy: bool) -> None:
        before = len(self._busy)
        (self._busy.add if busy else self._busy.discard)(id(engine))
        if len(self._busy) != before:
            for other in self._engines:  # their speed changed: replan at the next step boundary
                if other is not engine:
                    other._poke()


@dataclass(frozen=True)
class RequestStats:
    """One finished request on the engine's own clock (simulated seconds)."""

    request_id: str
    arrived: float  # first seen by the engine loop (a step boundary)
    admitted: float  # entered the running batch
    first_token: float
    finished: float
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int

    @property
    def ttft(self) -> float:
        """Time to first token from admission (prefill, and decode steps it shared)."""
        return self.first_token - self.admitted

    @property
    def queued(self) -> float:
        return self.admitted - self.arrived


@dataclass
class _Seq:
    request: GenerationRequest
    request_id: str
    blocks: list[bytes]  # chained hashes of the prompt's full blocks
    prompt_tokens: int
    pieces: list[str]  # the completion, one text piece per token (they concatenate to the text)
    finish_reason: Finish
    logprobs: list[TokenLogprob] | None
    future: asyncio.Future[Result]
    stream: asyncio.Queue[StreamChunk] | None = None
    cached: int = 0
    prefilled: int = 0  # prompt tokens whose KV exists (cached or computed)
    generated: int = 0
    arrived: float | None = None
    admitted: float = 0.0
    first_token: float = 0.0

    @property
    def target(self) -> int:
        return len(self.pieces)

    @property
    def decoding(self) -> bool:
        return self.prefilled >= self.prompt_tokens

    @property
    def context(self) -> int:
        return self.prefilled + self.generated


@dataclass
class _Step:
    """What one step does: tokens per sequence, and its nominal GPU time."""

    decode: list[_Seq] = field(default_factory=list)
    prefill: list[tuple[_Seq, int]] = field(default_factory=list)  # (sequence, prompt tokens this step)
    seconds: float = 0.0


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
        if time_scale < 0:
            raise ValueError(f"time_scale must be >= 0, got {time_scale}")
        if not 0.0 < gpu_share <= 1.0:
            raise ValueError(f"gpu_share must be in (0, 1], got {gpu_share}")
        if devices and len(devices) != tensor_parallel_size:
            raise ValueError(
                f"{len(devices)} devices for tensor_parallel_size={tensor_parallel_size}: give one per rank"
            )
        self.spec = spec
        self.profile = profile or H100
        self.tp = tensor_parallel_size
        self.time_scale = time_scale
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
        self.devices = list(devices)
        for d in self.devices:
            d.attach(self)
        # Observable simulated quantities.
        self.clock = 0.0  # simulated seconds since start
        self.busy_seconds = 0.0  # time with at least one sequence stepping (slowed by sharing)
        self.work_seconds = 0.0  # GPU time the steps needed, as if the GPU were this engine's alone
        self.steps = 0
        self.tokens_generated = 0
        self.max_batch = 0
        self.stats: list[RequestStats] = []
        self._waiting: list[_Seq] = []
        self._running: list[_Seq] = []
        self._cache: OrderedDict[bytes, None] = OrderedDict()  # prefix-cache blocks, LRU first
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Future[bool] | None = None  # resolved by a timer (True) or a poke (False)
        self._t0 = 0.0
        self._count = 0
        self._busy = False

    # ---- the Engine protocol -------------------------------------------------------------

    @property
    def sim_seconds(self) -> float:
        """Simulated time since start: the loop's clock / time_scale (the engine's own clock
        while it steps)."""
        try:
            return max(self.clock, self._loop_now())
        except RuntimeError:  # read outside the event loop
            return self.clock

    async def start(self) -> None:
        if self._task is None:
            self._t0 = asyncio.get_running_loop().time()
            self._task = asyncio.create_task(self._run(), name=f"simulated-{self.spec.name}")
            self._task.add_done_callback(self._loop_ended)

    async def generate(self, request: GenerationRequest) -> Result:
        seq = self._submit(request, stream=False)
        try:
            return await asyncio.shield(seq.future)
        except asyncio.CancelledError:
            self._abort(seq)
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
                self._abort(seq)

    async def health(self) -> EngineHealth:
        ok = self._task is not None and not self._task.done()
        return EngineHealth(ok=ok, detail="" if ok else "not started")

    async def shutdown(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._fail_all(EngineError(f"{self.spec.name}: engine shut down"))
        self._set_busy(False)

    def _loop_ended(self, task: asyncio.Task[None]) -> None:
        """A bug in the stepping loop must fail the requests in it, not leave them waiting."""
        if not task.cancelled() and task.exception() is not None:
            self._fail_all(EngineError(f"{self.spec.name}: simulated engine failed: {task.exception()!r}"))

    def _fail_all(self, error: EngineError) -> None:
        for seq in self._waiting + self._running:
            if seq.stream is not None:
                seq.stream.put_nowait(StreamChunk(delta="", finish_reason="abort"))
                seq.future.cancel()  # a stream's reader never awaits the future
            elif not seq.future.done():
                seq.future.set_exception(error)
        self._waiting.clear()
        self._running.clear()

    # ---- the latency model ---------------------------------------------------------------

    def step_seconds(self, decode_seqs: int, context_tokens: int, prefill: Sequence[tuple[int, int]] = ()) -> float:
        """Nominal length of one step: `decode_seqs` sequences decoding one token each with
        `context_tokens` of KV between them, plus prompt chunks (tokens, position they start at)."""
        p, m = self.profile, self.memory
        new_tokens = decode_seqs + sum(n for n, _ in prefill)
        # Bytes: the weights once per step (the whole batch shares the read), every decoding
        # sequence's KV, and the KV each prompt chunk attends to (its own and what precedes it).
        kv_read = context_tokens + sum(start + n for n, start in prefill)
        bytes_read = m.weight_bytes + kv_read * m.kv_bytes_per_token
        # FLOPs: 2 per parameter per new token, plus attention (QK^T and AV: 4 × layers × q_dim
        # per token attended to); a chunk's token at position i attends to i tokens.
        q_dim = m.arch.heads * m.arch.head_dim
        attended = context_tokens + sum(n * (start + n / 2) for n, start in prefill)
        flops = 2 * m.params * new_tokens + 4 * m.arch.layers * q_dim * attended
        memory_s = bytes_read / (p.hbm_bytes_per_s * p.bandwidth_efficiency)
        compute_s = flops / (p.bf16_flops * p.flops_efficiency)
        gpu = max(memory_s, compute_s)  # roofline: the step waits for the slower of the two
        batch = decode_seqs + len(prefill)
        return gpu / self.tp / p.tp_factor(self.tp) + p.step_overhead_s + p.seq_overhead_s * batch

    # ---- requests ------------------------------------------------------------------------

    def _submit(self, request: GenerationRequest, *, stream: bool) -> _Seq:
        if self._task is None:
            raise EngineError(f"{self.spec.name}: engine not started")
        tokens, blocks = prompt_blocks(request)
        limit = min(self.spec.max_model_len, self.kv_capacity_tokens)
        if tokens >= limit:
            raise PromptTooLong(
                f"prompt of {tokens} tokens does not fit {self.spec.name} (max_model_len "
                f"{self.spec.max_model_len}, KV cache {self.kv_capacity_tokens} tokens)"
            )
        pieces, finish, logprobs = self._completion(request, limit - tokens)
        self._count += 1
        seq = _Seq(
            request=request,
            request_id=request.request_id or f"sim-{self._count}",
            blocks=blocks,
            prompt_tokens=tokens,
            pieces=pieces,
            finish_reason=finish,
            logprobs=logprobs,
            future=asyncio.get_running_loop().create_future(),
            stream=asyncio.Queue() if stream else None,
        )
        self._waiting.append(seq)
        self._poke()
        return seq

    def _completion(self, request: GenerationRequest, room: int) -> tuple[list[str], Finish, list[TokenLogprob] | None]:
        """The answer's token pieces, finish reason and logprobs: deterministic in seed, model and prompt."""
        s = request.sampling
        rng = random.Random(stable_hash(self.seed, self.spec.name, prompt_text(request), s.seed, s.temperature))
        c = request.constraint
        logprobs = None
        if isinstance(c, Choice):
            answer = rng.choice(c.options)
            if s.logprobs is not None:
                logprobs = [choice_logprob(answer, c.options)]
            tokens = text_pieces(answer)
        elif isinstance(c, JsonSchema):
            tokens = text_pieces(json.dumps(json_example(c.json_schema, rng), separators=(",", ":")))
        elif isinstance(c, Regex):
            example = regex_example(c.pattern, rng)
            tokens = text_pieces(example if example is not None else " ".join(rng.choice(WORDS) for _ in range(8)))
        else:
            length = max(1, round(rng.lognormvariate(math.log(self.median_completion_tokens), 0.6)))
            mark = NUMERIC_MARK in prompt_text(request)  # the prompt asks for a final '#### <number>' line
            if mark:  # an answer that follows the format ends within max_tokens
                length = max(1, min(length, s.max_tokens - 4))
            text = " ".join(rng.choice(WORDS) for _ in range(length))
            if mark:
                text += f"\n{NUMERIC_MARK} {rng.randint(40, 43)}"
            tokens = text_pieces(text)
        tokens = tokens or [""]  # an empty answer still takes one step (end of sequence)
        cap = min(s.max_tokens, room)
        if len(tokens) > cap:
            return tokens[:cap], "length", logprobs
        return tokens, "stop", logprobs

    def _abort(self, seq: _Seq) -> None:
        if seq in self._waiting:
            self._waiting.remove(seq)
        if seq in self._running:
            self._running.remove(seq)
        if not seq.future.done():
            seq.future.cancel()

    # ---- the stepping loop ---------------------------------------------------------------

    def _loop_now(self) -> float:
        if self.time_scale == 0 or self._task is None:
            return self.clock
        return (asyncio.get_running_loop().time() - self._t0) / self.time_scale

    def _poke(self) -> None:
        if self._wake is not None:
            _resolve(self._wake, False)

    def _set_busy(self, busy: bool) -> None:
        if busy != self._busy:
            self._busy = busy
            for d in self.devices:
                d.set_busy(self, busy)

    async def _sleep(self, seconds: float, *, interruptible: bool) -> bool:
        """Sleep `seconds` of simulated time; True if an arrival or a sharing change cut it short."""
        delay = seconds * self.time_scale
        if not interruptible:
            await asyncio.sleep(delay)
            return False
        loop = asyncio.get_running_loop()
        wake = self._wake = loop.create_future()
        timer = loop.call_later(delay, _resolve, wake, True)  # True: the time ran out
        try:
            fired = await wake  # a poke resolves it with False
        finally:
            timer.cancel()
            self._wake = None
        return not fired

    async def _idle(self) -> None:
        self._set_busy(False)
        loop = asyncio.get_running_loop()
        self._wake = loop.create_future()
        await self._wake
        self._wake = None
        self.clock = max(self.clock, self._loop_now())

    async def _run(self) -> None:
        while True:
            if not self._running and not self._waiting:
                await self._idle()
                continue
            self._admit()
            if not self._running:
                # Nothing fits the KV cache beside nothing: cannot happen (prompts are checked
                # against capacity), but never spin.
                await self._idle()
                continue
            self._set_busy(True)
            if all(s.decoding for s in self._running):
                await self._decode_run()
            else:
                await self._mixed_step()

    def _admit(self) -> None:
        for seq in self._waiting:
            if seq.arrived is None:
                seq.arrived = self.clock
        in_use = sum(s.context for s in self._running)
        while self._waiting and len(self._running) < self.spec.max_num_seqs:
            seq = self._waiting[0]
            if in_use + seq.prompt_tokens > self.kv_capacity_tokens and self._running:
                break  # vLLM waits for KV blocks to free up; chorus never preempts here
            self._waiting.pop(0)
            seq.cached = self._lookup(seq)
            seq.prefilled = seq.cached
            seq.admitted = self.clock
            self._running.append(seq)
            in_use += seq.prompt_tokens
        self.max_batch = max(self.max_batch, len(self._running))

    def _sharing(self) -> int:
        return max((d.sharing for d in self.devices), default=1)

    async def _mixed_step(self) -> None:
        """One step with prompt chunks in it: decoders take one token each, prompts the rest."""
        step = _Step(decode=[s for s in self._running if s.decoding])
        budget = self.profile.max_batched_tokens - len(step.decode)
        for seq in self._running:
            if not seq.decoding and budget > 0:
                n = min(budget, seq.prompt_tokens - seq.prefilled)
                step.prefill.append((seq, n))
                budget -= n
        context = sum(s.context for s in step.decode)
        step.seconds = self.step_seconds(len(step.decode), context, [(n, s.prefilled) for s, n in step.prefill])
        elapsed = step.seconds * self._sharing()
        await self._sleep(elapsed, interruptible=False)
        self._account(step.seconds, elapsed, steps=1)
        for seq, n in step.prefill:
            seq.prefilled += n
            if seq.decoding:
                self._insert(seq)
                self._emit(seq, 1)  # the last prompt chunk's step samples the first token
        for seq in step.decode:
            self._emit(seq, 1)
        self._retire()

    async def _decode_run(self) -> None:
        """Pure decode steps until the first sequence ends, cut short by an arrival that could
        join the batch or a change in GPU sharing; always ends on a step boundary."""
        batch = len(self._running)
        steps = min(s.target - s.generated for s in self._running)
        context = sum(s.context for s in self._running)
        share = self._sharing()
        durations = [self.step_seconds(batch, context + i * batch) for i in range(steps)]
        ends = list(itertools.accumulate(d * share for d in durations))
        start = self._loop_now()
        may_join = len(self._running) < self.spec.max_num_seqs or bool(self.devices)
        cut = await self._sleep(ends[-1], interruptible=may_join)
        done = steps
        if cut:
            elapsed = self._loop_now() - start
            done = min(steps, 1 + sum(1 for e in ends if e <= elapsed))  # finish the step under way
            rest = ends[done - 1] - elapsed
            if rest > 0:
                await self._sleep(rest, interruptible=False)
        work = sum(durations[:done])
        self._account(work, ends[done - 1], steps=done)
        for seq in self._running:
            self._emit(seq, done)
        self._retire()

    def _account(self, work: float, elapsed: float, *, steps: int) -> None:
        self.clock += elapsed
        self.busy_seconds += elapsed
        self.work_seconds += work
        for d in self.devices:
            d.work_seconds += work
        self.steps += steps

    def _emit(self, seq: _Seq, n: int) -> None:
        """`n` more tokens for `seq`; stream them."""
        before = seq.generated
        seq.generated = min(seq.target, seq.generated + n)
        self.tokens_generated += seq.generated - before
        if before == 0:
            seq.first_token = self.clock
        if seq.stream is not None and seq.generated > before:
            piece = "".join(seq.pieces[before : seq.generated])
            if seq.generated < seq.target:
                seq.stream.put_nowait(StreamChunk(delta=piece))
            else:
                last = StreamChunk(delta=piece, finish_reason=seq.finish_reason, usage=self._usage(seq))
                seq.stream.put_nowait(last)

    def _usage(self, seq: _Seq) -> Usage:
        return Usage(prompt_tokens=seq.prompt_tokens, completion_tokens=seq.target, cached_tokens=seq.cached)

    def _retire(self) -> None:
        done = [s for s in self._running if s.decoding and s.generated >= s.target]
        for seq in done:
            self._running.remove(seq)
            self.stats.append(
                RequestStats(
                    request_id=seq.request_id,
                    arrived=seq.arrived if seq.arrived is not None else seq.admitted,
                    admitted=seq.admitted,
                    first_token=seq.first_token,
                    finished=self.clock,
                    prompt_tokens=seq.prompt_tokens,
                    cached_tokens=seq.cached,
                    completion_tokens=seq.target,
                )
            )
            if not seq.future.done():
                seq.future.set_result(
                    Result(
                        text="".join(seq.pieces),
                        finish_reason=seq.finish_reason,
                        usage=self._usage(seq),
                        logprobs=seq.logprobs,
                    )
                )

    # ---- prefix cache --------------------------------------------------------------------

    def _lookup(self, seq: _Seq) -> int:
        """Prompt tokens whose KV blocks are cached: the leading run of hits, whole blocks, and
        never the last prompt token (its logits must be computed)."""
        if not self.spec.enable_prefix_caching:
            return 0
        hits = 0
        for h in seq.blocks:
            if h not in self._cache:
                break
            self._cache.move_to_end(h)
            hits += 1
        return min(hits * BLOCK_TOKENS, (seq.prompt_tokens - 1) // BLOCK_TOKENS * BLOCK_TOKENS)

    def _insert(self, seq: _Seq) -> None:
        """Cache the prompt's full blocks; evict least recently used beyond the KV left free."""
        if not self.spec.enable_prefix_caching:
            return
        for h in seq.blocks:
            self._cache[h] = None
            self._cache.move_to_end(h)
        in_use = sum(s.context for s in self._running)
        room = max(0, (self.kv_capacity_tokens - in_use) // BLOCK_TOKENS)
        while len(self._cache) > room:
            self._cache.popitem(last=False)


# ---- tokens, hashes and fake outputs (pure functions) ---------------------------------------


def text_tokens(text: str) -> list[str]:
    """Tokenizer-free tokens: each whitespace word in pieces of CHARS_PER_TOKEN characters."""
    return [w[i : i + CHARS_PER_TOKEN] for w in text.split() for i in range(0, len(w), CHARS_PER_TOKEN)]


def text_pieces(text: str) -> list[str]:
    """`text` cut into tokens as `text_tokens` counts them, keeping the separators, so the
    pieces concatenate back to `text` (a streamed answer's deltas)."""
    return re.findall(r"\s*\S{1,%d}" % CHARS_PER_TOKEN, text) or ([text] if text else [])


def prompt_text(request: GenerationRequest) -> str:
    return "\n".join(f"{m.role}: {m.content}" for m in request.messages)


def prompt_blocks(request: GenerationRequest) -> tuple[int, list[bytes]]:
    """(prompt tokens, chained hashes of its full BLOCK_TOKENS blocks), as vLLM hashes blocks:
    a block's hash covers every token before it, so equal hashes mean equal prefixes."""
    tokens: list[str] = []
    for m in request.messages:
        # ChatML: 5 template tokens per message, 3 for the reply header generation starts after.
        tokens += ["<|im_start|>", m.role, "\n", *text_tokens(m.content), "<|im_end|>", "\n"]
    tokens += ["<|im_start|>", "assistant", "\n"]
    blocks, h = [], b""
    for i in range(0, len(tokens) - BLOCK_TOKENS + 1, BLOCK_TOKENS):
        h = hashlib.blake2b(h + "\x00".join(tokens[i : i + BLOCK_TOKENS]).encode(), digest_size=16).digest()
        blocks.append(h)
    return len(tokens), blocks


def stable_hash(*parts: object) -> int:
    """A hash that is the same in every process (Python's own hash() of str is salted)."""
    return int.from_bytes(hashlib.blake2b(repr(parts).encode(), digest_size=8).digest(), "big")


def choice_logprob(answer: str, options: list[str]) -> TokenLogprob:
    others = [o for o in options if o != answer]
    top = {answer: math.log(CHOICE_CONFIDENCE if others else 1.0)}
    for o in others:
        top[o] = math.log((1.0 - CHOICE_CONFIDENCE) / len(others))
    return TokenLogprob(token=answer, logprob=top[answer], top=top)


def _resolve(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def regex_example(pattern: str, rng: random.Random) -> str | None:
    """A short string matching `pattern` (branches and classes picked by `rng`), or None when
    the pattern uses constructs this walker does not generate (back-references, look-arounds
    that exclude its choice)."""
    try:
        from re import _parser  # the stdlib's own regex parser (sre_parse before 3.11)

        parsed = _parser.parse(pattern)
        text = _emit_regex(parsed, rng, _parser)
    except (re.error, _Unsupported, ImportError, AttributeError):
        return None
    return text if re.fullmatch(pattern, text) else None


class _Unsupported(Exception):
    pass


def _emit_regex(items: Any, rng: random.Random, sre: Any) -> str:
    c = sre  # constants live on the parser module (re._constants names)
    out = []
    for op, av in items:
        if op is c.LITERAL:
            out.append(chr(av))
        elif op is c.NOT_LITERAL:
            out.append("a" if av != ord("a") else "b")
        elif op is c.ANY:
            out.append("a")
        elif op is c.IN:
            out.append(_emit_class(av, rng, c))
        elif op is c.BRANCH:
            out.append(_emit_regex(rng.choice(av[1]), rng, sre))
        elif op is c.SUBPATTERN:
            out.append(_emit_regex(av[-1], rng, sre))
        elif op in (c.MAX_REPEAT, c.MIN_REPEAT) or op is getattr(c, "POSSESSIVE_REPEAT", None):
            low, high, item = av
            n = low if low > 0 else min(1, high)
            out.extend(_emit_regex(item, rng, sre) for _ in range(n))
        elif op in (c.AT, c.ASSERT, c.ASSERT_NOT):
            continue
        else:
            raise _Unsupported(str(op))
    return "".join(out)


def _emit_class(items: Any, rng: random.Random, c: Any) -> str:
    options: list[str] = []
    negate = False
    for op, av in items:
        if op is c.NEGATE:
            negate = True
        elif op is c.LITERAL:
            options.append(chr(av))
        elif op is c.RANGE:
            options.append(chr(rng.randint(av[0], av[1])))
        elif op is c.CATEGORY:
            options.append({c.CATEGORY_DIGIT: "7", c.CATEGORY_SPACE: " "}.get(av, "a"))
        else:
            raise _Unsupported(str(op))
    if negate:
        return next(ch for ch in "aZ0_ x" if ch not in options)
    return rng.choice(options)


def json_example(schema: dict[str, Any] | bool, rng: random.Random, root: dict[str, Any] | None = None) -> Any:
    """A minimal instance of a JSON schema: required-looking fields filled, arrays at their
    minimum length, enums and bounds honoured. Covers the closed schemas chorus's patterns use
    (object, array with items/prefixItems, string, integer, number, boolean, null, enum, const,
    anyOf/oneOf, local $ref, boolean schemas)."""
    if isinstance(schema, bool):
        return None  # `true` accepts anything; `false` nothing (callers never ask for an item then)
    root = root if root is not None else schema
    if "$ref" in schema:
        target: Any = root
        for part in str(schema["$ref"]).removeprefix("#/").split("/"):
            if part:
                target = target[part]
        return json_example(target, rng, root)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return rng.choice(schema["enum"])
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return json_example(schema[key][0], rng, root)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties", {})
        return {name: json_example(sub, rng, root) for name, sub in props.items()}
    if kind == "array":
        prefix = schema.get("prefixItems", [])
        items = schema.get("items", {})
        n = int(schema.get("minItems", 0))
        if items is False:
            n = min(n, len(prefix))
        return [json_example(prefix[i] if i < len(prefix) else items, rng, root) for i in range(n)]
    if kind == "string":
        if "pattern" in schema:
            found = regex_example(schema["pattern"], rng)
            if found is not None:
                return found
        low, high = int(schema.get("minLength", 1)), int(schema.get("maxLength", 60))
        words = " ".join(rng.choice(WORDS) for _ in range(12))[:high].strip()
        return words if len(words) >= low else (words + " " + "a" * low)[:high]
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0) + (1 if "exclusiveMinimum" in schema else 0))
        high = schema.get("maximum", max(low, 0) + 10)
        value = rng.randint(int(math.ceil(low)), int(math.floor(high))) if high >= low else low
        return value if kind == "integer" else float(value)
    if kind == "boolean":
        return rng.random() < 0.5
    return None


# ---- a virtual clock for simulations -------------------------------------------------------------


class _VirtualSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    """Polls without blocking; when nothing is ready and a timer is due later, moves the clock to
    it instead of waiting. Blocks for real only when no timer is pending (e.g. a worker thread)."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def select(self, timeout: float | None = None) -> list[Any]:
        ready = super().select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:
            return super().select(None)
        self.now += timeout
        return []


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock jumps to the next timer whenever nothing is runnable.

    Under it, simulated engines' sleeps take no wall time and no Python overhead leaks into
    simulated time: a simulation runs as fast as its Python work allows and repeats exactly.
    Use `asyncio.Runner(loop_factory=VirtualClockLoop)`. Work handed to threads (to_thread)
    does not advance the clock while timers are pending, so keep simulations on the loop.
    """

    def __init__(self) -> None:
        self._virtual = _VirtualSelector()
        super().__init__(self._virtual)

    def time(self) -> float:
        return self._virtual.now
