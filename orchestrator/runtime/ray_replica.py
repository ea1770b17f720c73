"""`RayReplica`: a `ModelHost` actor as a replica of the fleet, and what the supervisor does to it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import ray

from orchestrator.runtime.handles import call, stream
from orchestrator.service.config import ChorusConfig
from serving.host.admission import Load
from serving.host.model_host import HostPlacement, HostStatus
from serving.types import GenerationRequest, OpenAICall, OpenAIPart, Result, StreamChunk

# For the process that calls ModelHosts (the orchestrator): when a host's process dies, Ray by
# default holds a call it could not deliver until the GCS reports the death, up to 1 s, checked
# on a coarse timer. 0 fails the call at once (`ActorUnavailableError`, a lost replica to the
# fleet, which routes around it or answers 503); KubeRay sets the same on RayService clusters.
# Measured (2026-11-22, 2 cores, `configs/cpu-faults.yaml`, SIGKILL of the only replica, three
# kills each): the first 503 after 0.67-1.19 s with 100 ms, 0.09-0.12 s with 0.
CALLER_ENV = {"RAY_timeout_ms_task_wait_for_death_info": "0"}


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

    # --- supervision ----------------------------------------------------------------------

    async def probe(self, timeout_s: float, generate_every_s: float = 0.0) -> HostStatus:
        status: HostStatus = await call(self.handle.probe, timeout_s, generate_every_s, what=self.what)
        return status

    async def start(self) -> None:
        await call(self.handle.start, what=self.what)

    def restart(self) -> None:
        """Kill the host's process; Ray starts a new one in the same placement bundle
        (`max_restarts` bounds how often), whose engine the supervisor then starts."""
        ray.kill(self.handle, no_restart=False)


def ray_placement() -> HostPlacement:
    """A ModelHost's placement as Ray knows it (given to each host as its `placement`)."""
    ctx = ray.get_runtime_context()
    restarted = ctx.get_actor_id() is not None and bool(ctx.was_current_actor_reconstructed)
    return HostPlacement(gpu_ids=[str(g) for g in ray.get_gpu_ids()], node_id=ctx.get_node_id(), restarted=restarted)


def gpus_of(config: ChorusConfig, model: str) -> float:
    """GPUs one replica of `model` holds (its share × tensor parallel size): GPU-seconds' factor."""
    p = config.placement_of(model)
    return p.gpu_share * p.tensor_parallel_size if p.on_gpu else 0.0


def host_name(model: str, replica: int) -> str:
    """The name of a ModelHost actor in its chorus namespace."""
    return f"chorus.host.{model}.{replica}"


def named_hosts(config: ChorusConfig, namespace: str) -> dict[str, list[Any]]:
    """The running ModelHost handles of every model of `config`, found by name (by replica index)."""
    return {
        m.name: [ray.get_actor(host_name(m.name, r), namespace=namespace) for r in range(config.placement_of(m.name).replicas)]
        for m in config.models
    }


def replicas_of(config: ChorusConfig, hosts: Mapping[str, Sequence[Any]]) -> dict[str, list[RayReplica]]:
    """The ModelHost handles of each model (by replica index) as the fleet's replicas."""
    return {
        m.name: [
            RayReplica(handle, index, gpus_of(config, m.name), capacity=m.max_num_seqs, max_queue=m.max_queue, model=m.name)
            for index, handle in enumerate(hosts[m.name])
        ]
        for m in config.models
    }
