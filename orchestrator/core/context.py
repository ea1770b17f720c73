"""What a pattern sees while it runs: `call` a role, run calls concurrently, a budget and the trace."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from cluster.errors import BudgetExceeded, EngineError, StepFailed, Unsupported
from orchestrator.core.budget import Budget
from orchestrator.core.decisions import Decided
from orchestrator.core.trace import Step, Trace
from serving.types import Coalesce, Constraint, GenerationRequest, JsonSchema, Message, Result, Sampling

T = TypeVar("T")


class Served(Protocol):
    """Which replica served a call: its index and the GPUs it holds (for GPU-seconds)."""

    index: int
    gpus: float


class Dispatcher(Protocol):
    """Sends one request to a replica of a model (`orchestrator.routing.fleet.Fleet`)."""

    async def generate(self, model: str, request: GenerationRequest) -> tuple[Result, Served]: ...

    async def generate_streaming(
        self, model: str, request: GenerationRequest, on_delta: Callable[[str], None]
    ) -> tuple[Result, Served]:
        """As `generate`, handing each text delta to `on_delta` as the engine makes it."""
        ...


class Sink(Protocol):
    """Where a streamed request's events go (orchestrator.service.streaming.StreamSink)."""

    def delta(self, text: str) -> None: ...

    def progress(self, step: Step) -> None: ...


@dataclass(frozen=True)
class StepOutput:
    text: str
    result: Result
    step: Step


class Context:
    def __init__(
        self,
        fleet: Dispatcher,
        roles: Mapping[str, str],
        trace: Trace,
        *,
        sampling: Sampling = Sampling(),
        budget: Budget = Budget(),
        priority: int = 0,
        sink: Sink | None = None,
        answer_format: JsonSchema | None = None,
        coalesce: Coalesce | None = None,
        request_id: str | None = None,
    ) -> None:
        self.fleet = fleet
        # A streamed request: the final step streams its tokens here, earlier steps report progress.
        self.sink = sink
        # The request's response_format: it constrains the calls whose text becomes the answer.
        self.answer_format = answer_format
        self.answer_format_applied = False
        self.coalesce = coalesce  # how a streamed final step's tokens are batched across Ray
        self.roles = roles
        self.trace = trace
        self.sampling = sampling
        self.budget = budget
        self.priority = priority
        self.request_id = request_id
        self._calls_started = 0

    def model_of(self, role: str) -> str:
        return self.roles[role]

    def decide(self, decision: Decided) -> Decided:
        """Record the pattern's decision (its typed decision model) in the trace and return it, so
        the pattern can fill it in as it goes. A later call replaces it: adaptive records its own
        decision, with the chosen pattern's nested in it, after that pattern has run."""
        self.trace.decision = decision
        return decision

    def _check_budget(self) -> None:
        b = self.budget
        if b.max_model_calls is not None and self._calls_started >= b.max_model_calls:
            raise BudgetExceeded(f"budget of {b.max_model_calls} model calls used up")
        spent = sum(s.prompt_tokens + s.completion_tokens for s in self.trace.steps)
        if b.max_tokens is not None and spent >= b.max_tokens:
            raise BudgetExceeded(f"budget of {b.max_tokens} tokens used up ({spent} spent)")

    async def call(
        self,
        role: str,
        messages: list[Message],
        *,
        name: str,
        constraint: Constraint | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        logprobs: int | None = None,
        final: bool = False,
        candidate: bool = False,
    ) -> StepOutput:
        """One model call for `role`; recorded as a step. Raises StepFailed if the call fails.

        `final`: this call's text is the answer (it streams when the request does, and the
        request's response_format constrains it). `candidate`: its text may become the answer
        as it is (a vote's member, best_of_n's candidate), so response_format constrains it too.
        """
        self._check_budget()
        if (final or candidate) and self.answer_format is not None:
            if constraint is not None and constraint != self.answer_format:
                raise Unsupported(
                    "response_format",
                    f"step '{name}' already constrains its output ({constraint.kind}); this pattern cannot also "
                    "follow the request's response_format",
                )
            constraint = self.answer_format
        self._calls_started += 1
        model = self.model_of(role)
        overrides: dict[str, Any] = {}
        if max_tokens is not None:
            overrides["max_tokens"] = max_tokens
        if temperature is not None:
            overrides["temperature"] = temperature
        if logprobs is not None:
            overrides["logprobs"] = logprobs
        request = GenerationRequest(
            messages=messages,
            sampling=self.sampling.model_copy(update=overrides),
            constraint=constraint,
            priority=self.priority,
            coalesce=self.coalesce if final and self.sink is not None else None,
            request_id=self._engine_request_id(len(self.trace.steps)),
        )
        step = Step(index=len(self.trace.steps), name=name, role=role, model=model)
        self.trace.steps.append(step)
        t0 = time.perf_counter()
        try:
            if final and self.sink is not None:
                result, replica = await self.fleet.generate_streaming(model, request, self.sink.delta)
            else:
                result, replica = await self.fleet.generate(model, request)
        except EngineError as exc:
            # An engine fault (the engine failed, its replica died or timed out) is a failed step,
            # which a pattern may answer without. The caller's mistakes and overload propagate as
            # they are, and so does anything else: a bug must fail the request, not shrink a vote.
            step.latency_s = time.perf_counter() - t0
            step.error = f"{type(exc).__name__}: {exc}"
            raise StepFailed(f"step '{name}' ({role} on {model}) failed: {step.error}") from exc
        except asyncio.CancelledError:
            # The pattern stopped early, the deadline passed or the caller left; the engine
            # request was aborted.
            step.latency_s = time.perf_counter() - t0
            step.error = "cancelled"
            raise
        except BaseException as exc:
            step.latency_s = time.perf_counter() - t0
            step.error = f"{type(exc).__name__}: {exc}"
            raise
        step.latency_s = time.perf_counter() - t0
        step.replica = replica.index
        step.prompt_tokens = result.usage.prompt_tokens
        step.completion_tokens = result.usage.completion_tokens
        step.cached_tokens = result.usage.cached_tokens
        step.queue_s = result.queue_s
        step.run_s = result.run_s
        step.engine_seconds = result.engine_seconds
        step.gpu_seconds = result.engine_seconds * replica.gpus
        step.output = result.text
        if constraint is not None and constraint == self.answer_format:
            self.answer_format_applied = True
        if self.sink is not None and not final:
            self.sink.progress(step)
        return StepOutput(text=result.text, result=result, step=step)

    def _engine_request_id(self, step: int) -> str | None:
        """The engine's id for one call: the request's id, the step, and a random tail (a client
        may reuse its id, the engine needs every id unique)."""
        if self.request_id is None:
            return None
        return f"{self.request_id}-{step}-{uuid.uuid4().hex[:8]}"

    async def gather(self, *calls: Awaitable[T]) -> list[T | StepFailed]:
        """Run independent calls concurrently (so the engines batch them).

        A failed call comes back as its `StepFailed` in place, so a pattern can answer from the
        others; budget errors, unavailable models and bugs propagate at once, and the calls
        still running are cancelled (their engine requests aborted): nobody will read them.
        """
        tasks = [asyncio.ensure_future(c) for c in calls]
        try:
            pending = set(tasks)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    error = task.exception()
                    if error is not None and not isinstance(error, StepFailed):
                        raise error
        finally:
            for task in tasks:
                task.cancel()  # a no-op for finished ones
            await asyncio.gather(*tasks, return_exceptions=True)
        return [t.exception() or t.result() for t in tasks]  # type: ignore[misc]
