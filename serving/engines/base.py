"""The `Engine` protocol: what a model host needs from an inference engine.

`VLLMEngine` (serving.engines.vllm_engine) implements it over vLLM's AsyncLLM; tests substitute a
scripted engine with the same surface.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel

from serving.types import Endpoint, GenerationRequest, Message, Result, Sampling, StreamChunk

# The health probe's request: one token, ahead of any queued work (lower priority runs first).
PROBE_REQUEST = GenerationRequest(
    messages=[Message(role="user", content="ping")], sampling=Sampling(max_tokens=1), priority=-100
)


class EngineHealth(BaseModel):
    ok: bool
    detail: str = ""


@runtime_checkable
class Engine(Protocol):
    async def start(self) -> dict[str, float]:
        """Load weights and allocate the KV cache; returns when the engine can generate, with
        the wall-clock marks (time.time()) of its own phases for start-up timelines (may be
        empty, e.g. {"vllm imported": ..., "engine ready": ...})."""

    async def generate(self, request: GenerationRequest) -> Result:
        """Run one request to completion."""

    def stream(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        """Run one request, yielding text deltas; the last chunk carries finish reason and usage."""

    async def health(self) -> EngineHealth: ...

    async def probe(self) -> None:
        """Show the engine can generate now, or raise: an engine that generates runs a one-token
        request (`PROBE_REQUEST`); one that only replays recorded answers checks its health."""

    def progress(self) -> int:
        """A count that grows whenever the engine produces output for any request (steps,
        tokens or finished requests: any unit). A count that moved since the last look proves
        the engine steps without a probe request queueing behind its work."""

    def running(self) -> int:
        """Requests the engine holds now (scheduled or waiting inside it); 0 when idle.

        Cancelling a `generate` or `stream` must abort the engine's request, so this drops."""

    async def shutdown(self) -> None: ...


@runtime_checkable
class OpenAIEngine(Protocol):
    """An engine that also serves raw OpenAI requests through its own OpenAI layer (vLLM's)."""

    def openai(self, endpoint: Endpoint, body: dict[str, Any]) -> AsyncIterator[dict[str, Any] | str]:
        """One whole response (a JSON dict) or a stream's SSE lines; refusals raise `EngineRejected`."""
        ...
