"""`Chorus`: resolves a request's `model` to a pattern or a hosted model, runs it, returns a `Reply`.

Transport-free: the Serve deployment (orchestrator.runtime.serve_app), the HTTP app and the tests all drive it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from cluster.errors import OverloadedError, PatternFailed, StepFailed, UnknownModelError, Unsupported
from orchestrator.core.context import Context
from orchestrator.core.schema import CatalogEntry, ChatRequest, Delta, FleetStatus, Progress, Reply
from orchestrator.core.trace import Trace
from orchestrator.patterns import Pattern, PatternRequest
from orchestrator.patterns.kit.assembly import build_patterns
from orchestrator.patterns.kit.embedding import Embedder, MiniLMEmbedder
from orchestrator.patterns.single import SinglePattern, SingleSpec
from orchestrator.routing.fleet import Fleet
from orchestrator.service.config import ChorusConfig
from orchestrator.service.deadline import bounded, within
from orchestrator.service.drain import Gate
from orchestrator.service.hosted import HostedRequest, serve_hosted, with_defaults
from orchestrator.service.streaming import StreamSink, streamed
from serving.types import OpenAIReply, Sampling, SSEBatch

# Pattern kinds whose answer is a constrained call's text, so they honour response_format
# ("model": a hosted model asked through the Python client, a single call).
ANSWER_FORMAT_KINDS = frozenset({"model", "single", "router", "pipeline", "council", "vote", "best_of_n",
                                 "planner_executor", "supervisor_worker"})  # fmt: skip


class Chorus:
    def __init__(self, config: ChorusConfig, fleet: Fleet, *, embedder: Embedder | None = None) -> None:
        self.config = config
        self.fleet = fleet
        # One embedder for every pattern that votes semantically; it loads its model on first use.
        self.embedder = embedder or MiniLMEmbedder()
        built = build_patterns(config.patterns, self.embedder)
        self.patterns: dict[str, tuple[str, Pattern]] = {
            name: (spec.kind, built[name]) for name, spec in config.patterns.items()
        }
        self.gate = Gate()  # closed by drain(): running requests finish, new ones get 503

    async def drain(self, timeout_s: float) -> int:
        """Stop admitting; wait up to `timeout_s` for running requests; how many were left."""
        return await self.gate.drain(timeout_s)

    def _timeout_s(self, req: ChatRequest) -> float:
        return req.timeout_s or self.config.server.request_timeout_s

    async def catalog(self) -> list[CatalogEntry]:
        return self._catalog()

    async def warm(self) -> None:
        """Load what the first request would otherwise wait for: the sentence embedder, when a
        pattern votes by meaning (≈5 s on a CPU)."""
        if any(getattr(spec, "extract", None) == "semantic" for spec in self.config.patterns.values()):
            await asyncio.to_thread(self.embedder.embed, ["warm-up"])

    async def status(self) -> FleetStatus:
        hosts = await self.fleet.status()
        return FleetStatus(ok=bool(hosts) and all(h.ok for h in hosts), hosts=hosts)

    def _catalog(self) -> list[CatalogEntry]:
        entries = [
            CatalogEntry(id=name, kind="pattern", pattern_kind=spec.kind, description=spec.description)
            for name, spec in self.config.patterns.items()
        ]
        recorded = {m.name for m in self.config.models if m.engine == "recorded"}
        entries += [CatalogEntry(id=m, kind="model", openai_layer=m not in recorded) for m in self.fleet.models()]
        return entries

    def _models_of(self, name: str) -> set[str]:
        """Every model a request for `name` may call, through the patterns it runs too."""
        spec = self.config.patterns.get(name)
        if spec is None:
            return {name}
        models = {self.config.roles[r] for r in spec.roles()}
        for used in spec.uses():
            models |= self._models_of(used)
        return models

    async def admit(self, name: str) -> None:
        """Refuse a new request up front when a model it needs has a full queue on every replica,
        rather than letting it wait without bound (or fail half-way through a pattern). The
        replicas are asked, not a local count: several orchestrator replicas share them."""
        full = await self.fleet.saturated(self._models_of(name))
        if full:
            raise OverloadedError(f"model(s) {', '.join(full)} are at capacity; retry shortly", retry_after_s=1.0)

    def _resolve(self, name: str) -> tuple[str, Pattern, dict[str, str]]:
        """(kind, pattern, roles) for a pattern name, or a single-model pattern for a hosted model."""
        if name in self.patterns:
            kind, pattern = self.patterns[name]
            return kind, pattern, self.config.roles
        if name in self.fleet.replicas:
            return "model", SinglePattern(SingleSpec(kind="single", role=name), hosted=True), {name: name}
        raise UnknownModelError(name, [e.id for e in self._catalog()])

    def _sampling(self, req: ChatRequest) -> Sampling:
        fields = {"max_tokens": req.max_tokens, "temperature": req.temperature, "top_p": req.top_p, "seed": req.seed}
        update: dict[str, Any] = {k: v for k, v in fields.items() if v is not None}
        if req.stop:
            update["stop"] = req.stop
        return self.config.sampling.model_copy(update=update)

    def _context(self, req: ChatRequest, roles: dict[str, str], trace: Trace, sink: StreamSink | None) -> Context:
        return Context(
            self.fleet,
            roles,
            trace,
            sampling=self._sampling(req),
            budget=req.budget or self.config.budget,
            priority=req.priority,
            sink=sink,
            answer_format=req.response_format,
            coalesce=self.config.streaming,
            request_id=req.request_id,
        )

    async def _run(self, req: ChatRequest, sink: StreamSink | None = None) -> Reply:
        kind, pattern, roles = self._resolve(req.model)
        if req.response_format is not None and kind not in ANSWER_FORMAT_KINDS:
            raise Unsupported(
                "response_format",
                f"pattern '{req.model}' ({kind}) cannot constrain its answer; "
                f"these pattern kinds can: {', '.join(sorted(ANSWER_FORMAT_KINDS - {'model'}))}",
            )
        await self.admit(req.model)
        trace = Trace(pattern=req.model, kind=kind, request_id=req.request_id)
        ctx = self._context(req, roles, trace, sink)
        t0 = time.perf_counter()
        try:
            answer = await pattern.run(PatternRequest(messages=req.messages), ctx)
        except StepFailed as exc:
            trace.close(time.perf_counter() - t0)
            raise PatternFailed(f"'{req.model}' could not answer: {exc}") from exc
        trace.close(time.perf_counter() - t0)
        if req.response_format is not None and not ctx.answer_format_applied:
            # Never a silent 200: the answer came from a path the format did not constrain.
            raise Unsupported("response_format", f"'{req.model}' answered without following response_format")
        return Reply.of(req.model, answer.text, answer.finish_reason, trace)

    async def chat(self, req: ChatRequest) -> Reply:
        """Run the request under its deadline: past it, everything it started is cancelled
        (and so aborted in the engines) and it fails with DeadlineExceeded (HTTP 504)."""
        with self.gate.admit():
            return await within(self._run(req), self._timeout_s(req), f"'{req.model}'")

    async def stream(self, req: ChatRequest) -> AsyncIterator[Delta | Progress | Reply]:
        """The final step's tokens as the engine makes them (see service.streaming), progress
        events for the steps before it, then the Reply with the trace; under the request's
        deadline, as `chat`."""
        self._resolve(req.model)  # an unknown model fails before the stream starts
        with self.gate.admit():
            sink = StreamSink()
            async for event in bounded(streamed(self._run(req, sink), sink), self._timeout_s(req), f"'{req.model}'"):
                yield event

    async def hosted(self, req: HostedRequest, full_trace: bool = False) -> AsyncIterator[OpenAIReply | SSEBatch | Trace]:
        """A hosted model's OpenAI endpoint through vLLM's own OpenAI layer (service.hosted),
        under the request's deadline (`req.timeout_s`, else the server's), as `chat`."""
        model = str(req.body.get("model", ""))
        if model in self.patterns:
            raise Unsupported("model", f"'{model}' is a pattern; {req.endpoint.path} takes a hosted model: "
                              f"{', '.join(self.fleet.models())}")
        if model not in self.fleet.replicas:
            raise UnknownModelError(model, [e.id for e in self._catalog()])
        with self.gate.admit():
            await self.admit(model)
            req = with_defaults(req, self.config.sampling)
            budget = req.budget or self.config.budget
            parts = serve_hosted(self.fleet, req, budget=budget, coalesce=self.config.streaming, full_trace=full_trace)
            timeout_s = req.timeout_s or self.config.server.request_timeout_s
            async for part in bounded(parts, timeout_s, f"'{model}'"):
                yield part
