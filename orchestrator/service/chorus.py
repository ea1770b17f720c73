"""`Chorus`: resolves a request's `model` to a pattern or a hosted model, runs it, returns a `Reply`.

Transport-free: the Serve deployment (orchestrator.runtime.serve_app), the HTTP app and the tests all drive it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from cluster.errors import ChorusError, OverloadedError, PatternFailed, StepFailed, UnknownModelError
from orchestrator.core.context import Context
from orchestrator.core.schema import CatalogEntry, ChatRequest, Delta, FleetStatus, Reply
from orchestrator.core.trace import Step, Trace
from orchestrator.patterns import Pattern, PatternRequest
from orchestrator.patterns.kit.assembly import build_patterns
from orchestrator.patterns.kit.embedding import Embedder, MiniLMEmbedder
from orchestrator.patterns.single import SinglePattern, SingleSpec
from orchestrator.routing.fleet import Fleet
from orchestrator.service.config import ChorusConfig
from serving.types import GenerationRequest, Sampling, Usage


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
        entries += [CatalogEntry(id=m, kind="model") for m in self.fleet.models()]
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

    async def chat(self, req: ChatRequest) -> Reply:
        kind, pattern, roles = self._resolve(req.model)
        await self.admit(req.model)
        trace = Trace(pattern=req.model, kind=kind, request_id=req.request_id)
        ctx = Context(
            self.fleet,
            roles,
            trace,
            sampling=self._sampling(req),
            budget=req.budget or self.config.budget,
            priority=req.priority,
            request_id=req.request_id,
        )
        t0 = time.perf_counter()
        try:
            answer = await pattern.run(PatternRequest(messages=req.messages), ctx)
        except StepFailed as exc:
            trace.close(time.perf_counter() - t0)
            raise PatternFailed(f"'{req.model}' could not answer: {exc}") from exc
        trace.close(time.perf_counter() - t0)
        return Reply.of(req.model, answer.text, answer.finish_reason, trace)

    async def stream(self, req: ChatRequest) -> AsyncIterator[Delta | Reply]:
        """Token deltas for a hosted model; a pattern's answer as one delta. Ends with the Reply."""
        kind, _, _ = self._resolve(req.model)
        if kind != "model":
            reply = await self.chat(req)
            yield Delta(text=reply.text)
            yield reply
            return
        await self.admit(req.model)
        t0 = time.perf_counter()
        request = GenerationRequest(
            messages=req.messages,
            sampling=self._sampling(req),
            priority=req.priority,
            request_id=f"{req.request_id}-0-{uuid.uuid4().hex[:8]}" if req.request_id else None,
        )
        text, finish, usage = [], "stop", Usage()
        try:
            async for chunk in self.fleet.stream(req.model, request):
                if chunk.delta:
                    text.append(chunk.delta)
                    yield Delta(text=chunk.delta)
                if chunk.finish_reason is not None:
                    finish, usage = chunk.finish_reason, chunk.usage or Usage()
        except ChorusError:
            raise
        except Exception as exc:  # engine faults mid-stream become a typed failure
            raise PatternFailed(f"'{req.model}' failed while streaming: {type(exc).__name__}: {exc}") from exc
        wall = time.perf_counter() - t0
        trace = Trace(pattern=req.model, kind="model", request_id=req.request_id)
        trace.steps.append(
            Step(
                index=0,
                name="answer",
                role=req.model,
                model=req.model,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                cached_tokens=usage.cached_tokens,
                latency_s=wall,
                output="".join(text),
            )
        )
        trace.close(wall)
        yield Reply.of(req.model, "".join(text), finish, trace)
