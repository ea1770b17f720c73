"""One request inside a simulated engine, and what it reports when it finishes."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from serving.sim.answers import Answer
from serving.types import GenerationRequest, Result, StreamChunk, Usage


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


@dataclass(eq=False)  # compared by identity: the engine removes the very request it was given
class SimSequence:
    """A request's progress: prompt tokens with KV, tokens generated, and where results go."""

    request: GenerationRequest
    request_id: str
    blocks: list[bytes]  # chained hashes of the prompt's full blocks
    prompt_tokens: int
    answer: Answer  # drawn on arrival; the steps reveal it token by token
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
        return len(self.answer.pieces)

    @property
    def decoding(self) -> bool:
        return self.prefilled >= self.prompt_tokens

    @property
    def context(self) -> int:
        return self.prefilled + self.generated

    @property
    def finished(self) -> bool:
        return self.decoding and self.generated >= self.target

    def usage(self) -> Usage:
        return Usage(prompt_tokens=self.prompt_tokens, completion_tokens=self.target, cached_tokens=self.cached)

    def result(self) -> Result:
        return Result(
            text="".join(self.answer.pieces),
            finish_reason=self.answer.finish_reason,
            usage=self.usage(),
            logprobs=self.answer.logprobs,
        )

    def stats(self, finished: float) -> RequestStats:
        return RequestStats(
            request_id=self.request_id,
            arrived=self.arrived if self.arrived is not None else self.admitted,
            admitted=self.admitted,
            first_token=self.first_token,
            finished=finished,
            prompt_tokens=self.prompt_tokens,
            cached_tokens=self.cached,
            completion_tokens=self.target,
        )

    def reveal(self, n: int, now: float) -> int:
        """`n` more tokens (up to the answer's end); streams them; returns how many were new."""
        before = self.generated
        self.generated = min(self.target, self.generated + n)
        if before == 0:
            self.first_token = now
        if self.stream is not None and self.generated > before:
            piece = "".join(self.answer.pieces[before : self.generated])
            if self.generated < self.target:
                self.stream.put_nowait(StreamChunk(delta=piece))
            else:
                last = StreamChunk(delta=piece, finish_reason=self.answer.finish_reason, usage=self.usage())
                self.stream.put_nowait(last)
        return self.generated - before
