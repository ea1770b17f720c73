"""Continuous batching in a simulated engine: the stepping loop, admission and the steps.

One background task runs steps, as vLLM's engine core does. Each step serves every running
sequence one token (decode) and spends the rest of its token budget on prompt chunks (chunked
prefill). The task sleeps each step's simulated length on the engine's `SimClock`. Runs of pure
decode steps are taken as one sleep up to the next sequence's end; an arrival (or a change in GPU
sharing) interrupts the sleep and joins at the next step boundary, as in vLLM.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

from cluster.errors import EngineError
from serving.sim.clock import SimClock
from serving.sim.gpu import SimulatedGpu
from serving.sim.latency import LatencyModel
from serving.sim.prefix_cache import PrefixCache
from serving.sim.sequence import RequestStats, SimSequence
from serving.types import StreamChunk


@dataclass(frozen=True)
class _Chunk:
    """Prompt tokens of one sequence that a step prefills."""

    seq: SimSequence
    tokens: int


@dataclass
class _Step:
    """What one mixed step does: tokens per sequence, and its nominal GPU time."""

    decode: list[SimSequence] = field(default_factory=list)
    prefill: list[_Chunk] = field(default_factory=list)
    seconds: float = 0.0


class BatchScheduler:
    """The waiting and running sequences of one engine and the loop that steps them.

    Counters (simulated seconds): `busy_seconds` (time with a sequence stepping, stretched by GPU
    sharing), `work_seconds` (GPU time the steps needed, as if the GPU were this engine's alone),
    `steps`, `tokens_generated`, `max_batch`, and `stats` for every finished request.
    """

    def __init__(
        self,
        *,
        latency: LatencyModel,
        clock: SimClock,
        max_num_seqs: int,
        kv_capacity_tokens: int,
        prefix_caching: bool,
        devices: Sequence[SimulatedGpu] = (),
    ) -> None:
        self.latency = latency
        self.clock = clock
        self.max_num_seqs = max_num_seqs
        self.kv_capacity_tokens = kv_capacity_tokens
        self.cache = PrefixCache(enabled=prefix_caching, capacity_tokens=kv_capacity_tokens)
        self.devices = list(devices)
        for d in self.devices:
            d.attach(self)
        self.busy_seconds = 0.0
        self.work_seconds = 0.0
        self.steps = 0
        self.tokens_generated = 0
        self.max_batch = 0
        self.stats: list[RequestStats] = []
        self._waiting: list[SimSequence] = []
        self._running: list[SimSequence] = []
        self._busy = False

    # ---- what the engine facade calls ----------------------------------------------------

    def submit(self, seq: SimSequence) -> None:
        self._waiting.append(seq)
        self.poke()

    def poke(self) -> None:
        """Something changed (an arrival, GPU sharing): re-plan at the next step boundary."""
        self.clock.poke()

    def abort(self, seq: SimSequence) -> None:
        if seq in self._waiting:
            self._waiting.remove(seq)
        if seq in self._running:
            self._running.remove(seq)
        if not seq.future.done():
            seq.future.cancel()

    def fail_all(self, error: EngineError) -> None:
        """Ends every sequence: streams get an abort chunk, callers of generate the error."""
        for seq in self._waiting + self._running:
            if seq.stream is not None:
                seq.stream.put_nowait(StreamChunk(delta="", finish_reason="abort"))
                seq.future.cancel()  # a stream's reader never awaits the future
            elif not seq.future.done():
                seq.future.set_exception(error)
        self._waiting.clear()
        self._running.clear()

    def set_busy(self, busy: bool) -> None:
        if busy != self._busy:
            self._busy = busy
            for d in self.devices:
                d.set_busy(self, busy)

    async def run(self) -> None:
        """The stepping loop: idle until work arrives, admit, step; until cancelled."""
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
            self.set_busy(True)
            if all(s.decoding for s in self._running):
                await self._decode_run()
            else:
                await self._mixed_step()

    # ---- the loop's parts ----------------------------------------------------------------

    async def _idle(self) -> None:
        self.set_busy(False)
        await self.clock.wait_for_poke()

    def _admit(self) -> None:
        """First come first served while the batch has room and the KV cache holds the prompt."""
        for seq in self._waiting:
            if seq.arrived is None:
                seq.arrived = self.clock.elapsed
        in_use = sum(s.context for s in self._running)
        while self._waiting and len(self._running) < self.max_num_seqs:
            seq = self._waiting[0]
            if in_use + seq.prompt_tokens > self.kv_capacity_tokens and self._running:
                break  # vLLM waits for KV blocks to free up; chorus never preempts here
            self._waiting.pop(0)
            seq.cached = self.cache.lookup(seq.blocks, seq.prompt_tokens)
            seq.prefilled = seq.cached
            seq.admitted = self.clock.elapsed
            self._running.append(seq)
            in_use += seq.prompt_tokens
        self.max_batch = max(self.max_batch, len(self._running))

    def _sharing(self) -> int:
        return max((d.sharing for d in self.devices), default=1)

    async def _mixed_step(self) -> None:
        """One step with prompt chunks in it: decoders take one token each, prompts the rest."""
        step = _Step(decode=[s for s in self._running if s.decoding])
        budget = self.latency.profile.max_batched_tokens - len(step.decode)
        for seq in self._running:
            if not seq.decoding and budget > 0:
                n = min(budget, seq.prompt_tokens - seq.prefilled)
                step.prefill.append(_Chunk(seq, n))
                budget -= n
        context = sum(s.context for s in step.decode)
        chunks = [(c.tokens, c.seq.prefilled) for c in step.prefill]  # (tokens, position they start at)
        step.seconds = self.latency.step_seconds(len(step.decode), context, chunks)
        elapsed = step.seconds * self._sharing()
        await self.clock.sleep(elapsed, interruptible=False)
        self._account(step.seconds, elapsed, steps=1)
        for chunk in step.prefill:
            seq = chunk.seq
            seq.prefilled += chunk.tokens
            if seq.decoding:
                self.cache.insert(seq.blocks, tokens_in_use=sum(s.context for s in self._running))
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
        durations = [self.latency.step_seconds(batch, context + i * batch) for i in range(steps)]
        ends = list(itertools.accumulate(d * share for d in durations))
        start = self.clock.loop_seconds()
        may_join = len(self._running) < self.max_num_seqs or bool(self.devices)
        cut = await self.clock.sleep(ends[-1], interruptible=may_join)
        done = steps
        if cut:
            elapsed = self.clock.loop_seconds() - start
            done = min(steps, 1 + sum(1 for e in ends if e <= elapsed))  # finish the step under way
            rest = ends[done - 1] - elapsed
            if rest > 0:
                await self.clock.sleep(rest, interruptible=False)
        self._account(sum(durations[:done]), ends[done - 1], steps=done)
        for seq in self._running:
            self._emit(seq, done)
        self._retire()

    def _account(self, work: float, elapsed: float, *, steps: int) -> None:
        self.clock.advance(elapsed)
        self.busy_seconds += elapsed
        self.work_seconds += work
        for d in self.devices:
            d.work_seconds += work
        self.steps += steps

    def _emit(self, seq: SimSequence, n: int) -> None:
        self.tokens_generated += seq.reveal(n, self.clock.elapsed)

    def _retire(self) -> None:
        for seq in [s for s in self._running if s.finished]:
            self._running.remove(seq)
            self.stats.append(seq.stats(finished=self.clock.elapsed))
            if not seq.future.done():
                seq.future.set_result(seq.result())
