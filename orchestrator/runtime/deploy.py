"""Bring a config up on a Ray cluster: reserve GPUs, start ModelHosts wave by wave, then the
Orchestrator and the HTTP Gateway; and take it down again.

Actors are named in the `chorus` namespace (`chorus.host.<model>.<replica>`,
`chorus.orchestrator`, `chorus.gateway`) so other drivers find them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import ray

from cluster.runtime.reservation import Reservation, ReplicaSlot, reserve
from serving.engines.base import Engine
from serving.host.model_host import ModelHost
from serving.engines.recorded import RecordedEngine
from serving.engines.vllm_engine import EngineSettings, VLLMEngine

from orchestrator.runtime.actor import Orchestrator
from orchestrator.service.config import ChorusConfig
from cluster.errors import DeployError
from orchestrator.runtime.gateway import Gateway

NAMESPACE = "chorus"
ORCHESTRATOR = "chorus.orchestrator"
GATEWAY = "chorus.gateway"

Progress = Callable[[str], None]



def host_name(model: str, replica: int) -> str:
    return f"chorus.host.{model}.{replica}"


def vllm_engine_for(config: ChorusConfig, slot: ReplicaSlot) -> tuple[type[Engine], dict[str, Any]]:
    if config.model(slot.model).engine == "recorded":
        return RecordedEngine, {}  # replays recorded answers (offline evaluation beside live models)
    placement = config.placement_of(slot.model)
    settings = EngineSettings(
        on_gpu=placement.on_gpu,
        gpu_memory_utilization=slot.gpu_memory_utilization,
        tensor_parallel_size=placement.tensor_parallel_size,
    )
    return VLLMEngine, {"settings": settings}


EngineChoice = Callable[[ChorusConfig, ReplicaSlot], tuple[type[Engine], dict[str, Any]]]


@dataclass
class Deployment:
    config: ChorusConfig
    reservation: Reservation
    hosts: dict[str, list[Any]] = field(default_factory=dict)
    orchestrator: Any = None
    gateway: Any = None
    url: str | None = None

    def shutdown(self) -> None:
        """Stops the server, the engines (and their processes) and frees the GPUs. Idempotent."""
        if self.gateway is not None:
            _quietly(lambda: ray.get(self.gateway.stop.remote(), timeout=30))
            ray.kill(self.gateway)
            self.gateway = None
        if self.orchestrator is not None:
            ray.kill(self.orchestrator)
            self.orchestrator = None
        handles = [h for replicas in self.hosts.values() for h in replicas]
        _quietly(lambda: ray.get([h.shutdown.remote() for h in handles], timeout=60))
        for h in handles:
            ray.kill(h)
        self.hosts = {}
        self.reservation.release()


def _quietly(fn: Callable[[], Any]) -> None:
    try:
        fn()
    except Exception:  # best effort while tearing down: the actor is killed right after
        pass


def deploy(
    config: ChorusConfig,
    *,
    engine: EngineChoice = vllm_engine_for,
    http: bool = True,
    detached: bool = False,
    progress: Progress = lambda _: None,
    timeout_s: float = 900.0,
    namespace: str = NAMESPACE,
) -> Deployment:
    """Start everything `config` describes on the connected Ray cluster.

    Engines sharing a GPU start in separate waves (vLLM sizes its KV cache from free memory at
    start). If any engine fails or the deadline passes, everything started is torn down and a
    DeployError names the model.
    """
    deadline = time.monotonic() + timeout_s
    lifetime = {"lifetime": "detached"} if detached else {}
    progress(f"reserving resources for {sum(config.placement_of(m.name).replicas for m in config.models)} replica(s)")
    reservation = reserve(
        config.models, config.placement, timeout_s=min(120.0, timeout_s), lifetime="detached" if detached else None
    )
    dep = Deployment(config=config, reservation=reservation)
    remote_host = ray.remote(ModelHost)
    made: dict[tuple[str, int], tuple[Any, ReplicaSlot]] = {}
    try:
        for n, wave in enumerate(reservation.waves, 1):
            started: dict[Any, ReplicaSlot] = {}
            for slot in wave:
                engine_cls, engine_kwargs = engine(config, slot)
                handle = remote_host.options(
                    **slot.options, name=host_name(slot.model, slot.replica), namespace=namespace, **lifetime
                ).remote(config.model(slot.model), slot.replica, engine_cls, engine_kwargs, gpus=slot.gpus)
                made[(slot.model, slot.replica)] = (handle, slot)
                dep.hosts.setdefault(slot.model, []).append(handle)  # so a failure tears it down
                started[handle.start.remote()] = slot
            names = ", ".join(f"{s.model}[{s.replica}]" for s in wave)
            progress(f"wave {n}/{len(reservation.waves)}: starting {names}")
            _await_starts(started, deadline, progress)
        # Waves may start a model's replicas out of order; list them by replica index.
        hosts = {
            m.name: [made[(m.name, r)] for r in range(config.placement_of(m.name).replicas)] for m in config.models
        }
        dep.hosts = {m: [h for h, _ in pairs] for m, pairs in hosts.items()}
        dep.orchestrator = (
            ray.remote(Orchestrator)
            .options(name=ORCHESTRATOR, namespace=namespace, num_cpus=0, max_concurrency=10_000, **lifetime)
            .remote(config, {m: [(h, s.gpus) for h, s in pairs] for m, pairs in hosts.items()})
        )
        ray.get(dep.orchestrator.warm.remote(), timeout=max(1.0, deadline - time.monotonic()))
        progress("orchestrator ready")
        if http:
            dep.gateway = (
                ray.remote(Gateway)
                .options(name=GATEWAY, namespace=namespace, num_cpus=0, max_concurrency=10_000, **lifetime)
                .remote(config.server, dep.orchestrator)
            )
            dep.url = ray.get(dep.gateway.start.remote(), timeout=max(1.0, deadline - time.monotonic()))
            progress(f"serving the OpenAI API at {dep.url}")
    except BaseException:
        dep.shutdown()
        raise
    return dep


def _await_starts(started: dict[Any, ReplicaSlot], deadline: float, progress: Progress) -> None:
    t0 = time.monotonic()
    pending = list(started)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1, timeout=max(0.0, deadline - time.monotonic()))
        if not ready:
            late = ", ".join(f"{started[r].model}[{started[r].replica}]" for r in pending)
            raise DeployError(f"engine(s) {late} did not start before the deadline")
        slot = started[ready[0]]
        try:
            ray.get(ready[0])
        except Exception as exc:
            cause = getattr(exc, "cause", None) or exc
            raise DeployError(f"model '{slot.model}' replica {slot.replica} failed to start: {cause}") from None
        progress(f"  {slot.model}[{slot.replica}] ready after {time.monotonic() - t0:.1f}s")


def find_orchestrator(namespace: str = NAMESPACE) -> Any:
    """The running Orchestrator actor (requires a connected Ray); raises ValueError if absent."""
    return ray.get_actor(ORCHESTRATOR, namespace=namespace)


def teardown_named() -> list[str]:
    """Kill every chorus actor in the namespace (for `chorus down` on a shared cluster)."""
    killed = []
    for info in ray.util.list_named_actors(all_namespaces=True):
        if info.get("namespace") != NAMESPACE:
            continue
        handle = ray.get_actor(info["name"], namespace=NAMESPACE)
        if info["name"].startswith("chorus.host."):
            _quietly(lambda: ray.get(handle.shutdown.remote(), timeout=60))
        ray.kill(handle)
        killed.append(info["name"])
    return killed
