"""The `Engine` protocol: what a model host needs from an inference engine.

`VLLMEngine` (serving.engines.vllm_engine) implements it over vLLM's AsyncLLM; tests substitute a
scripted engine with the same surface.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel

from serving.types import Endpoint, GenerationRequest, Result, StreamChunk


class EngineHealth(BaseModel):
    ok: bool
    detail: str = ""


@runtime_checkable
class Engine(Protocol):
    async def start(self) -> None:
        """Load weights and allocate the KV cache; returns when the engine can generate."""

    async def generate(self, request: GenerationRequest) -> Result:
        """Run one request to completion."""

    def stream(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        """Run one request, yielding text deltas; the last chunk carries finish reason and usage."""

    async def health(self) -> EngineHealth: ...

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
