"""The one place a batch job reaches chorus: a request in, a reply out, chorus's errors raised.

The job calls the orchestrator's Serve deployment through its handle (never HTTP), as the Python
client does (`orchestrator.client`): its calls are spread over the replicas, and Serve's and
Ray's failures become chorus's errors in the same one place (`served()`): back-pressure is an
`OverloadedError` (the row is retried after its Retry-After), a deployment gone is `NotRunning`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from cluster.errors import EngineError
from orchestrator.client import served
from orchestrator.core.schema import CatalogEntry, ChatRequest, FleetStatus, Reply
from orchestrator.core.trace import Trace
from orchestrator.runtime.deploy import find_orchestrator
from orchestrator.service.config import ChorusConfig
from orchestrator.service.hosted import HostedRequest, whole_reply

CALL_TIMEOUT_S = 60  # the driver's catalog/status/config calls: quick reads of the deployment


@dataclass(frozen=True)
class HostedAnswer:
    """A hosted model's whole response, as its engine's OpenAI layer wrote it, and the call's trace."""

    body: dict[str, Any]
    trace: Trace


class Asker(Protocol):
    """What a row needs: run one request at the priority it carries."""

    async def chat(self, req: ChatRequest) -> Reply: ...

    async def hosted(self, req: HostedRequest) -> HostedAnswer: ...


class ChorusLink:
    """The running chorus, seen from a job's driver (catalog, status, config) and its callers (ask)."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle  # a Serve DeploymentHandle to the orchestrator application

    @classmethod
    def find(cls) -> ChorusLink:
        """The orchestrator of the Ray cluster this process is connected to (`NotRunning` if none)."""
        return cls(find_orchestrator())

    async def chat(self, req: ChatRequest) -> Reply:
        with served():
            reply: Reply = await self.handle.chat.remote(req)
        return reply

    async def hosted(self, req: HostedRequest) -> HostedAnswer:
        with served():
            reply, trace = await whole_reply(self.handle.options(stream=True).hosted.remote(req, False))
        if reply is None or trace is None:
            raise EngineError(f"model '{req.body.get('model')}' ended its reply without a body and a trace")
        return HostedAnswer(body=reply.body, trace=trace)

    def catalog(self) -> list[CatalogEntry]:
        with served():
            entries: list[CatalogEntry] = self.handle.catalog.remote().result(timeout_s=CALL_TIMEOUT_S)
        return entries

    def status(self) -> FleetStatus:
        with served():
            status: FleetStatus = self.handle.status.remote().result(timeout_s=CALL_TIMEOUT_S)
        return status

    def config(self) -> ChorusConfig:
        with served():
            config: ChorusConfig = self.handle.chorus_config.remote().result(timeout_s=CALL_TIMEOUT_S)
        return config
