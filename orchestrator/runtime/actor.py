"""The `Orchestrator` Ray actor (a thin shell around `Chorus`) and the `RayBackend` that calls it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from cluster.errors import UnavailableError
from orchestrator.core.schema import CatalogEntry, ChatRequest, Delta, FleetStatus, Reply
from orchestrator.routing.fleet import Fleet
from orchestrator.routing.health import HealthBoard
from orchestrator.runtime.handles import call, stream
from orchestrator.runtime.ray_replica import ray_replicas
from orchestrator.runtime.supervisor import Supervisor
from orchestrator.service.chorus import Chorus
from orchestrator.service.config import ChorusConfig

WHAT = "the chorus orchestrator"


class Orchestrator:
    """Runs patterns over the ModelHost actors. Named, so any driver can find it."""

    def __init__(self, config: ChorusConfig, hosts: dict[str, list[tuple[Any, float]]]) -> None:
        capacity: dict[str, tuple[int, int | None]] = {m.name: (m.max_num_seqs, m.max_queue) for m in config.models}
        replicas = ray_replicas(hosts, capacity)
        fleet = Fleet(replicas, health=HealthBoard(config.healing))
        # Probes the hosts and restarts broken engines; started with the actor's event loop.
        self.supervisor = Supervisor(replicas, fleet.health)
        self.chorus = Chorus(config, fleet)

    async def chat(self, req: ChatRequest) -> Reply:
        self.supervisor.ensure_running()
        return await self.chorus.chat(req)

    async def stream(self, req: ChatRequest) -> AsyncIterator[Delta | Reply]:
        self.supervisor.ensure_running()
        async for event in self.chorus.stream(req):
            yield event

    async def drain(self, timeout_s: float) -> int:
        """Refuse new requests, wait for running ones (up to `timeout_s`), stop supervising."""
        left = await self.chorus.drain(timeout_s)
        await self.supervisor.stop()
        return left

    async def catalog(self) -> list[CatalogEntry]:
        return await self.chorus.catalog()

    async def warm(self) -> None:
        self.supervisor.ensure_running()
        await self.chorus.warm()

    async def status(self) -> FleetStatus:
        self.supervisor.ensure_running()
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

    async def stream(self, req: ChatRequest) -> AsyncIterator[Delta | Reply]:
        async for event in stream(self.handle.stream, req, what=WHAT, lost=UnavailableError):
            yield event

    async def catalog(self) -> list[CatalogEntry]:
        entries: list[CatalogEntry] = await call(self.handle.catalog, what=WHAT, lost=UnavailableError)
        return entries

    async def status(self) -> FleetStatus:
        status: FleetStatus = await call(self.handle.status, what=WHAT, lost=UnavailableError)
        return status
