"""The `Orchestrator` Ray actor (a thin shell around `Chorus`) and the `RayBackend` that calls it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from cluster.errors import UnavailableError
from orchestrator.core.schema import CatalogEntry, ChatRequest, Delta, FleetStatus, Progress, Reply
from orchestrator.routing.fleet import Fleet
from orchestrator.runtime.handles import call, stream
from orchestrator.runtime.ray_replica import RayReplica
from orchestrator.service.chorus import Chorus
from orchestrator.service.config import ChorusConfig
from orchestrator.service.hosted import HostedRequest
from orchestrator.core.trace import Trace
from serving.types import OpenAIReply, SSEBatch

WHAT = "the chorus orchestrator"


class Orchestrator:
    """Runs patterns over the ModelHost actors. Named, so any driver can find it."""

    def __init__(self, config: ChorusConfig, hosts: dict[str, list[tuple[Any, float]]]) -> None:
        fleet = Fleet(
            {
                model: [
                    RayReplica(
                        handle,
                        index,
                        gpus,
                        capacity=config.model(model).max_num_seqs,
                        max_queue=config.model(model).max_queue,
                        model=model,
                    )
                    for index, (handle, gpus) in enumerate(replicas)
                ]
                for model, replicas in hosts.items()
            }
        )
        self.chorus = Chorus(config, fleet)

    async def chat(self, req: ChatRequest) -> Reply:
        return await self.chorus.chat(req)

    async def stream(self, req: ChatRequest) -> AsyncIterator[Delta | Progress | Reply]:
        async for event in self.chorus.stream(req):
            yield event

    async def hosted(self, req: HostedRequest, full_trace: bool) -> AsyncIterator[OpenAIReply | SSEBatch | Trace]:
        async for part in self.chorus.hosted(req, full_trace):
            yield part

    async def catalog(self) -> list[CatalogEntry]:
        return await self.chorus.catalog()

    async def warm(self) -> None:
        await self.chorus.warm()

    async def status(self) -> FleetStatus:
        return await self.chorus.status()

    def config(self) -> ChorusConfig:
        return self.chorus.config


class RayBackend:
    """The HTTP app's view of a remote Orchestrator actor."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    async def chat(self, req: ChatRequest) -> Reply:
        reply: Reply = await call(self.handle.chat, req, what=WHAT, lost=UnavailableError)
        return reply

    async def stream(self, req: ChatRequest) -> AsyncIterator[Delta | Progress | Reply]:
        async for event in stream(self.handle.stream, req, what=WHAT, lost=UnavailableError):
            yield event

    async def hosted(self, req: HostedRequest, full_trace: bool) -> AsyncIterator[OpenAIReply | SSEBatch | Trace]:
        async for part in stream(self.handle.hosted, req, full_trace, what=WHAT, lost=UnavailableError):
            yield part

    async def catalog(self) -> list[CatalogEntry]:
        entries: list[CatalogEntry] = await call(self.handle.catalog, what=WHAT, lost=UnavailableError)
        return entries

    async def status(self) -> FleetStatus:
        status: FleetStatus = await call(self.handle.status, what=WHAT, lost=UnavailableError)
        return status
