"""chorus's Prometheus metrics, through Ray's metrics (`ray.util.metrics`).

Every Ray node's metrics agent exports them (with Ray's, Serve's and vLLM's) on its metrics port:
that is the one scrape target per node (`ray_`-prefixed names). `/metrics` on the API port shows
the same text for the node the answering replica runs on, for the single-machine user.

    ray_chorus_requests_total{model, kind, status}         requests by pattern/model and HTTP status
    ray_chorus_request_latency_seconds{model, kind}        end-to-end latency (histogram)
    ray_chorus_time_to_first_token_seconds{model, kind}    streams: time to the first token (histogram)
    ray_chorus_prompt_tokens_total / _completion_tokens_total{model, kind}
    ray_chorus_model_calls_total{pattern, model, outcome}  model calls a pattern made (ok / failed)
    ray_chorus_gpu_seconds_total{pattern, model}           GPU-seconds answers cost
    ray_chorus_host_running / _waiting / _up{model, replica} each ModelHost's admission and health

Orchestrator replicas' own load and restarts are Serve's (`ray_serve_replica_processing_queries`,
`ray_serve_deployment_replica_starts_total`…); the engines' are vLLM's (`ray_vllm:*`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable

import httpx
import ray
from ray.util.metrics import Counter, Gauge, Histogram

from cluster.errors import ChorusError
from orchestrator.api.app import Backend, MetricsText
from orchestrator.api.errors import status_of
from orchestrator.core.schema import CatalogEntry, ChatRequest, Delta, FleetStatus, Progress, Reply
from orchestrator.core.trace import Trace
from orchestrator.routing.fleet import Fleet
from orchestrator.service.hosted import HostedRequest
from serving.types import OpenAIReply, SSEBatch

log = logging.getLogger("chorus.metrics")

LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0]
UNKNOWN = "unknown"  # the label of a name that is no pattern or model (keeps label values bounded)


class RayMetrics:
    """The metric objects; one set per process (Ray aggregates them per node)."""

    def __init__(self) -> None:
        self.requests = Counter("chorus_requests", "Requests by pattern/model and status.", ("model", "kind", "status"))
        self.latency = Histogram(
            "chorus_request_latency_seconds", "End-to-end latency.", LATENCY_BUCKETS, ("model", "kind")
        )
        self.ttft = Histogram(
            "chorus_time_to_first_token_seconds", "Time to the first streamed token.", LATENCY_BUCKETS, ("model", "kind")
        )
        self.prompt_tokens = Counter("chorus_prompt_tokens", "Prompt tokens of answered requests.", ("model", "kind"))
        self.completion_tokens = Counter(
            "chorus_completion_tokens", "Completion tokens of answered requests.", ("model", "kind")
        )
        self.model_calls = Counter("chorus_model_calls", "Model calls by pattern.", ("pattern", "model", "outcome"))
        self.gpu_seconds = Counter("chorus_gpu_seconds", "GPU-seconds spent answering.", ("pattern", "model"))
        self.host_running = Gauge("chorus_host_running", "Requests inside a ModelHost's engine.", ("model", "replica"))
        self.host_waiting = Gauge("chorus_host_waiting", "Requests waiting at a ModelHost.", ("model", "replica"))
        self.host_up = Gauge("chorus_host_up", "1 when a ModelHost answers its load probe.", ("model", "replica"))


class Metered:
    """A Backend that records every request it passes on (HTTP and Serve-handle callers alike)."""

    def __init__(self, inner: Backend, metrics: RayMetrics, kind_of: Callable[[str], str | None]) -> None:
        self.inner = inner
        self.m = metrics
        self.kind_of = kind_of

    def _labels(self, model: str) -> dict[str, str]:
        kind = self.kind_of(model)
        return {"model": model, "kind": kind} if kind is not None else {"model": UNKNOWN, "kind": UNKNOWN}

    def _failed(self, labels: dict[str, str], exc: BaseException) -> None:
        status = "499" if isinstance(exc, asyncio.CancelledError) else str(status_of(exc)[0])
        self.m.requests.inc(1, {**labels, "status": status})

    def _answered(self, labels: dict[str, str], trace: Trace, wall_s: float) -> None:
        self.m.requests.inc(1, {**labels, "status": "200"})
        self.m.latency.observe(wall_s, labels)
        prompt = sum(s.prompt_tokens for s in trace.steps)
        completion = sum(s.completion_tokens for s in trace.steps)
        if prompt:  # Ray counters take only positive increments
            self.m.prompt_tokens.inc(prompt, labels)
        if completion:
            self.m.completion_tokens.inc(completion, labels)
        for step in trace.steps:
            self.m.model_calls.inc(
                1, {"pattern": labels["model"], "model": step.model, "outcome": "ok" if step.error is None else "failed"}
            )
            if step.gpu_seconds:
                self.m.gpu_seconds.inc(step.gpu_seconds, {"pattern": labels["model"], "model": step.model})

    async def chat(self, req: ChatRequest) -> Reply:
        labels, t0 = self._labels(req.model), time.perf_counter()
        try:
            reply = await self.inner.chat(req)
        except BaseException as exc:
            self._failed(labels, exc)
            raise
        self._answered(labels, reply.trace, time.perf_counter() - t0)
        return reply

    async def stream(self, req: ChatRequest) -> AsyncIterator[Delta | Progress | Reply]:
        labels, t0 = self._labels(req.model), time.perf_counter()
        first = True
        try:
            async for event in self.inner.stream(req):
                if first and isinstance(event, Delta):
                    self.m.ttft.observe(time.perf_counter() - t0, labels)
                    first = False
                if isinstance(event, Reply):
                    self._answered(labels, event.trace, time.perf_counter() - t0)
                yield event
        except BaseException as exc:
            self._failed(labels, exc)
            raise

    async def hosted(self, req: HostedRequest, full_trace: bool) -> AsyncIterator[OpenAIReply | SSEBatch | Trace]:
        labels, t0 = self._labels(str(req.body.get("model", ""))), time.perf_counter()
        first = True
        try:
            async for part in self.inner.hosted(req, full_trace):
                if first and isinstance(part, SSEBatch):
                    self.m.ttft.observe(time.perf_counter() - t0, labels)
                    first = False
                if isinstance(part, Trace):
                    self._answered(labels, part, time.perf_counter() - t0)
                yield part
        except BaseException as exc:
            self._failed(labels, exc)
            raise

    async def catalog(self) -> list[CatalogEntry]:
        return await self.inner.catalog()

    async def status(self) -> FleetStatus:
        return await self.inner.status()


async def watch_hosts(fleet: Fleet, metrics: RayMetrics, period_s: float) -> None:
    """Publish every ModelHost's running/waiting/up, asking the hosts (cheap admission probes)."""
    while True:
        for model in fleet.models():
            for replica in fleet.replicas[model]:
                tags = {"model": model, "replica": str(replica.index)}
                try:
                    load = await replica.load()
                except ChorusError:
                    metrics.host_up.set(0, tags)
                    continue
                metrics.host_up.set(1, tags)
                metrics.host_running.set(load.running, tags)
                metrics.host_waiting.set(load.waiting, tags)
        await asyncio.sleep(period_s)  # a sampling period, not a wait for readiness


def node_metrics_url() -> str | None:
    """This node's Ray metrics agent endpoint (the Prometheus scrape target), if it exports one."""
    node_id = ray.get_runtime_context().get_node_id()
    for node in ray.nodes():
        if node.get("NodeID") == node_id and node.get("MetricsExportPort"):
            return f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"
    return None


def metrics_text_source(url: str | None) -> MetricsText:
    """A coroutine function returning the node's metrics text (what `/metrics` serves)."""

    async def text() -> str:
        if url is None:
            return "# this Ray node exports no metrics\n"
        async with httpx.AsyncClient(timeout=10) as client:
            r = await client.get(url)
            r.raise_for_status()
            return r.text

    return text
