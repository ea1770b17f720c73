"""`RayReplica`: a `ModelHost` actor as a replica of the fleet."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from orchestrator.runtime.handles import call, stream
from serving.host.admission import Load
from serving.host.model_host import HostStatus
from serving.types import GenerationRequest, OpenAICall, OpenAIPart, Result, StreamChunk


@dataclass
class RayReplica:
    handle: Any
    index: int
    gpus: float
    capacity: int
    max_queue: int | None = None
    model: str = ""

    @property
    def what(self) -> str:
        return f"replica {self.index} of model '{self.model}'"

    async def generate(self, request: GenerationRequest) -> Result:
        result: Result = await call(self.handle.generate, request, what=self.what)
        return result

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        async for chunk in stream(self.handle.stream, request, what=self.what):
            yield chunk

    async def openai(self, call: OpenAICall) -> AsyncIterator[OpenAIPart]:
        async for part in stream(self.handle.openai, call, what=self.what):
            yield part

    async def load(self) -> Load:
        load: Load = await call(self.handle.load, what=self.what)
        return load

    async def status(self) -> HostStatus:
        status: HostStatus = await call(self.handle.status, what=self.what)
        return status
