"""The one place a batch job reaches chorus: a request in, a reply out, chorus's errors raised.

Today the orchestrator is a named Ray actor; the job calls it through its Ray handle (never
HTTP), with the same translation of Ray failures as every other caller
(`orchestrator.runtime.handles`). When the request tier moves behind a Serve handle, only this
module changes.
"""

from __future__ import annotations

from typing import Any, Protocol

from cluster.errors import NotRunning
from orchestrator.core.schema import CatalogEntry, ChatRequest, FleetStatus, Reply
from orchestrator.runtime.deploy import find_orchestrator
from orchestrator.runtime.handles import call, call_blocking
from orchestrator.service.config import ChorusConfig

WHAT = "the chorus orchestrator"


class Asker(Protocol):
    """What a row needs: run one request at the priority it carries (`Chorus` itself is one)."""

    async def chat(self, req: ChatRequest) -> Reply: ...


class ChorusLink:
    """The running chorus, seen from a job's driver (catalog, status, config) and its callers (ask)."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    @classmethod
    def find(cls) -> ChorusLink:
        """The orchestrator of the Ray cluster this process is connected to."""
        try:
            return cls(find_orchestrator())
        except ValueError:
            raise NotRunning("no chorus orchestrator is running on this Ray cluster; start one with `chorus up`") from None

    async def chat(self, req: ChatRequest) -> Reply:
        reply: Reply = await call(self.handle.chat, req, what=WHAT, lost=NotRunning)
        return reply

    def catalog(self) -> list[CatalogEntry]:
        entries: list[CatalogEntry] = call_blocking(self.handle.catalog, what=WHAT, timeout_s=60, lost=NotRunning)
        return entries

    def status(self) -> FleetStatus:
        status: FleetStatus = call_blocking(self.handle.status, what=WHAT, timeout_s=60, lost=NotRunning)
        return status

    def config(self) -> ChorusConfig:
        config: ChorusConfig = call_blocking(self.handle.config, what=WHAT, timeout_s=60, lost=NotRunning)
        return config
