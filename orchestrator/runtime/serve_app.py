"""The request tier as a Ray Serve application: the `Orchestrator` deployment.

Each replica is stateless: it finds the ModelHost actors by name (`chorus.host.<model>.<i>` in the
chorus namespace), routes by the health board of the one supervisor (`chorus.supervisor`,
`orchestrator.runtime.supervisor_actor`), builds its own `Chorus` over them and serves the OpenAI API (FastAPI ingress)
and the Python client's handle calls (`chat`, `stream`, `hosted`, `catalog`, `status`). Any replica serves
any request; Serve starts, health-checks, restarts and scales them.

    build_app_for(config, namespace)     the Serve application (what `chorus up` runs)
    build({"config": PATH})              the builder `serve deploy` imports (see `chorus serve-config`);
                                         when the ModelHosts are absent its replicas have them started
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import ray
from pydantic import BaseModel, Field
from ray import serve
from ray.serve import Application

from cluster.errors import DeployError
from orchestrator.api.app import build_app
from orchestrator.api.guard import resolve_api_keys
from orchestrator.api.logs import configure_logging, current_request_id
from orchestrator.core.schema import CatalogEntry, ChatRequest, Delta, FleetStatus, Progress, Reply
from orchestrator.core.trace import Trace
from orchestrator.routing.fleet import Fleet
from orchestrator.routing.health import HealthBoard
from orchestrator.runtime.hosts import ensure_hosts
from orchestrator.runtime.metrics import Metered, RayMetrics, metrics_text_source, node_metrics_url, watch_hosts
from orchestrator.runtime.ray_replica import CALLER_ENV, named_hosts, replicas_of
from orchestrator.runtime.supervisor_actor import SUPERVISOR, BoardSync
from orchestrator.service.chorus import Chorus
from orchestrator.service.config import ChorusConfig, load_config
from orchestrator.service.hosted import HostedRequest
from serving.types import OpenAIReply, SSEBatch

NAMESPACE = "chorus"
DEPLOYMENT = "Orchestrator"
HOST_METRICS_PERIOD_S = 5.0

log = logging.getLogger("chorus.serve")


def app_name(namespace: str = NAMESPACE) -> str:
    """One Serve application per chorus namespace (`chorus` for the default one)."""
    return "chorus" if namespace == NAMESPACE else f"chorus-{namespace}"


def fleet_over_hosts(config: ChorusConfig, namespace: str) -> Fleet:
    """Each replica's own fleet over the named ModelHosts; it routes by a copy of the supervisor's
    health board (`BoardSync`)."""
    return Fleet(replicas_of(config, named_hosts(config, namespace)), health=HealthBoard(config.healing))


class Orchestrator:
    """One replica of the request tier (wrapped by `serve.deployment` + `serve.ingress` below)."""

    # Serve awaits an async constructor: the replica is ready once its hosts are found and warm.
    async def __init__(  # type: ignore[misc]
        self, config: ChorusConfig, namespace: str = NAMESPACE, start_hosts: bool = False
    ) -> None:
        configure_logging(json_lines=config.server.json_logs)
        if start_hosts:
            await ensure_hosts(config, namespace)
        try:
            fleet = fleet_over_hosts(config, namespace)
        except ValueError:
            raise DeployError(
                f"the ModelHosts of this config are not running in Ray namespace '{namespace}'; "
                "start them with `chorus up`, or deploy the builder from `chorus serve-config`"
            ) from None
        try:
            supervisor = ray.get_actor(SUPERVISOR, namespace=namespace)
        except ValueError:
            raise DeployError(
                f"the chorus supervisor is not running in Ray namespace '{namespace}'; restart chorus with `chorus up`"
            ) from None
        self.config = config
        self.chorus = Chorus(config, fleet)
        # Route by the one supervisor's health board, refreshed every few hundred ms.
        self.sync = BoardSync(supervisor, fleet.health, self.chorus.gate, ray.get_runtime_context().get_actor_id() or DEPLOYMENT)
        await self.sync.once()
        await self.chorus.warm()
        metrics = RayMetrics()
        self.backend = Metered(self.chorus, metrics, self._kind_of)
        self._metrics_text = metrics_text_source(node_metrics_url())
        loop = asyncio.get_running_loop()
        self._watch = loop.create_task(watch_hosts(fleet, metrics, HOST_METRICS_PERIOD_S))
        self._sync = loop.create_task(self.sync.run(), name="chorus-board-sync")

    def _kind_of(self, name: str) -> str | None:
        if name in self.chorus.patterns:
            return self.chorus.patterns[name][0]
        return "model" if name in self.chorus.fleet.replicas else None

    def __serve_build_asgi_app__(self) -> Any:
        server = self.config.server
        # Serve's proxy accepts or generates x-request-id, passes it in and returns it itself.
        return build_app(
            self.backend,
            server,
            api_keys=resolve_api_keys(server),
            metrics_text=self._metrics_text,
            echo_request_id=False,
        )

    # --- the Python client's calls (Serve handles) ---------------------------------------------

    async def chat(self, req: ChatRequest) -> Reply:
        token = current_request_id.set(req.request_id or "")
        try:
            return await self.backend.chat(req)
        finally:
            current_request_id.reset(token)

    async def stream(self, req: ChatRequest) -> AsyncIterator[Delta | Progress | Reply]:
        token = current_request_id.set(req.request_id or "")
        try:
            async for event in self.backend.stream(req):
                yield event
        finally:
            current_request_id.reset(token)

    async def hosted(self, req: HostedRequest, full_trace: bool = False) -> AsyncIterator[OpenAIReply | SSEBatch | Trace]:
        """A hosted model's OpenAI endpoint (vLLM's own layer on a replica), for handle callers."""
        token = current_request_id.set(req.request_id or "")
        try:
            async for part in self.backend.hosted(req, full_trace):
                yield part
        finally:
            current_request_id.reset(token)

    async def catalog(self) -> list[CatalogEntry]:
        return await self.backend.catalog()

    async def status(self) -> FleetStatus:
        return await self.backend.status()

    async def chorus_config(self) -> ChorusConfig:
        """The config this deployment runs (a batch job sizes its in-flight bound from it)."""
        return self.config

    async def check_health(self) -> None:
        """Serve's health check: the replica's event loop answers and its host watcher and its
        health-board sync live."""
        if self._watch.done():
            raise RuntimeError("the ModelHost watcher stopped")
        if self._sync.done():
            raise RuntimeError("the health-board sync stopped")


OrchestratorDeployment = serve.deployment(name=DEPLOYMENT)(serve.ingress()(Orchestrator))


def deployment_options(config: ChorusConfig) -> dict[str, Any]:
    s = config.server
    options: dict[str, Any] = {
        "max_ongoing_requests": s.max_ongoing_requests,
        # Replicas mostly wait on the engines; they must not take the CPUs the engines need.
        # CALLER_ENV: a call to a ModelHost whose process died fails fast, so the fleet retries it.
        "ray_actor_options": {"num_cpus": 0, "runtime_env": {"env_vars": CALLER_ENV}},
        "logging_config": {"encoding": "JSON" if s.json_logs else "TEXT"},
    }
    if s.autoscaling is not None:
        options["autoscaling_config"] = s.autoscaling.model_dump() | {"initial_replicas": s.autoscaling.min_replicas or 1}
    else:
        options["num_replicas"] = s.num_replicas
    return options


def build_app_for(config: ChorusConfig, namespace: str = NAMESPACE, *, start_hosts: bool = False) -> Application:
    return OrchestratorDeployment.options(**deployment_options(config)).bind(config, namespace, start_hosts)


class BuildArgs(BaseModel):
    """What `serve deploy` passes the builder (the `args:` of the Serve config file)."""

    config: str = Field(description="Path of the chorus config, as the cluster's nodes see it.")
    namespace: str = Field(NAMESPACE, description="Ray namespace of the ModelHost actors.")


def build(args: dict[str, Any]) -> Application:
    """The application builder `serve deploy` imports: `orchestrator.runtime.serve_app:build`.

    `args` is the `args:` mapping of the Serve config file, validated here as `BuildArgs`: Serve
    converts it to a builder's pydantic annotation only when that annotation is a class, and under
    this module's postponed annotations it is a string, so the builder would get the bare dict."""
    options = BuildArgs.model_validate(args)
    config = load_config(Path(options.config))
    return build_app_for(config, options.namespace, start_hosts=True)
