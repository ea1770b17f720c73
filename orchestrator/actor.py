"""The `Orchestrator` Ray actor (a thin shell around `Chorus`) and the `RayBackend` that calls it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from .config import ChorusConfig
from .fleet import Fleet, RayReplica, unwrap_ray_errors
from .service import CatalogEntry, ChatRequest, Chorus, Delta, FleetStatus, Reply


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
                    )
                    for index, (handle, gpus) in enumerate(replicas)
                ]
                for model, replicas in hosts.items()
            }
        )
        self.chorus = Chorus(config, fleet)

    async def chat(self, req: ChatRequest) -> Reply:
        return await self.chorus.chat(req)

    async def stream(self, req: ChatRequest) -> AsyncIterator[Delta | Reply]:
        async for event in self.chorus.stream(req):
            yield event

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
        with unwrap_ray_errors():
            return await self.handle.chat.remote(req)

    async def stream(self, req: ChatRequest) -> AsyncIterator[Delta | Reply]:
        with unwrap_ray_errors():
            async for ref in self.handle.stream.options(num_returns="streaming").remote(req):
                yield await ref

    async def catalog(self) -> list[CatalogEntry]:
        with unwrap_ray_errors():
            return await self.handle.catalog.remote()

    async def status(self) -> FleetStatus:
        with unwrap_ray_errors():
            return await self.handle.status.remote()
