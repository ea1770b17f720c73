"""Bring a config up on a Ray cluster: reserve GPUs, plan cores, start the ModelHosts' engines wave
by wave while the Orchestrator warms up, then the HTTP Gateway; and take it down again.
`chorus up` prints each engine's start timeline (seconds since deploy began).

Actors are named in the `chorus` namespace (`chorus.host.<model>.<replica>`,
`chorus.orchestrator`, `chorus.gateway`) so other drivers find them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import ray

from cluster.errors import DeployError
from cluster.inventory import from_nvml
from cluster.placement.cpus import nodes_of, plan_cpus, with_cpus
from cluster.runtime.leases import ReplicaSlot
from cluster.runtime.reservation import Reservation, reserve
from orchestrator.runtime.actor import Orchestrator
from orchestrator.runtime.gateway import Gateway
from orchestrator.service.config import ChorusConfig
from serving.engines.base import Engine
from serving.engines.vllm_engine import EngineSettings, VLLMEngine
from serving.host.model_host import ModelHost, StartTimes

NAMESPACE = "chorus"
ORCHESTRATOR = "chorus.orchestrator"
GATEWAY = "chorus.gateway"

Progress = Callable[[str], None]



def host_name(model: str, replica: int) -> str:
    return f"chorus.host.{model}.{replica}"


def vllm_engine_for(config: ChorusConfig, slot: ReplicaSlot) -> tuple[type[Engine], dict[str, Any]]:
    placement = config.placement_of(slot.model)
    settings = EngineSettings(
        on_gpu=placement.on_gpu,
        gpu_memory_utilization=slot.gpu_memory_utilization,
        tensor_parallel_size=placement.tensor_parallel_size,
        cpus=placement.cpus[slot.replica] if placement.cpus is not None else None,
    )
    return VLLMEngine, {"settings": settings}


EngineChoice = Callable[[ChorusConfig, ReplicaSlot], tuple[type[Engine], dict[str, Any]]]


@dataclass
class LiveDeployment:
    """A running chorus: the reservation, the live actor handles of its ModelHosts, Orchestrator and
    Gateway, and the URL it serves on. `shutdown()` takes it all down."""

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
    except Exception:  # noqa: BLE001 - best effort while tearing down: the actor is killed right after
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
) -> LiveDeployment:
    """Start everything `config` describes on the connected Ray cluster.

    Engines sharing a GPU start in separate waves (vLLM sizes its KV cache from free memory at
    start). If any engine fails or the deadline passes, everything started is torn down and a
    DeployError names the model.
    """
    deadline = time.monotonic() + timeout_s
    began = time.time()
    lifetime = {"lifetime": "detached"} if detached else {}
    config = with_planned_cpus(config, progress)
    progress(f"reserving resources for {sum(config.placement_of(m.name).replicas for m in config.models)} replica(s)")
    reservation = reserve(
        config.models, config.placement, timeout_s=min(120.0, timeout_s), lifetime="detached" if detached else None
    )
    dep = LiveDeployment(config=config, reservation=reservation)
    remote_host = ray.remote(ModelHost)
    made: dict[tuple[str, int], tuple[Any, ReplicaSlot]] = {}
    try:
        # Every host process starts at once (an actor's __init__ touches no GPU memory); the
        # engines then start wave by wave, and the orchestrator (its embedder warm-up included)
        # comes up alongside them instead of after them.
        scheduled = time.time()
        for slot in reservation.slots:
            engine_cls, engine_kwargs = engine(config, slot)
            handle: Any = remote_host.options(
                **slot.options, name=host_name(slot.model, slot.replica), namespace=namespace, **lifetime
            ).remote(config.model(slot.model), slot.replica, engine_cls, engine_kwargs, gpus=slot.gpus)
            made[(slot.model, slot.replica)] = (handle, slot)
            dep.hosts.setdefault(slot.model, []).append(handle)  # so a failure tears it down
        hosts = {
            m.name: [made[(m.name, r)] for r in range(config.placement_of(m.name).replicas)] for m in config.models
        }
        dep.orchestrator = (
            ray.remote(Orchestrator)
            .options(name=ORCHESTRATOR, namespace=namespace, num_cpus=0, max_concurrency=10_000, **lifetime)
            .remote(config, {m: [(h, s.gpus) for h, s in pairs] for m, pairs in hosts.items()})
        )
        warmed = dep.orchestrator.warm.remote()
        for n, wave in enumerate(reservation.waves, 1):
            started = {made[(slot.model, slot.replica)][0].start.remote(): slot for slot in wave}
            names = ", ".join(f"{s.model}[{s.replica}]" for s in wave)
            progress(f"wave {n}/{len(reservation.waves)}: starting {names}")
            _await_starts(started, deadline, progress, began, scheduled)
            scheduled = time.time()
        dep.hosts = {m: [h for h, _ in pairs] for m, pairs in hosts.items()}
        ray.get(warmed, timeout=max(1.0, deadline - time.monotonic()))
        progress(f"orchestrator ready at {time.time() - began:.1f}s")
        if http:
            dep.gateway = (
                ray.remote(Gateway)
                .options(name=GATEWAY, namespace=namespace, num_cpus=0, max_concurrency=10_000, **lifetime)
                .remote(config.server, dep.orchestrator)
            )
            dep.url = ray.get(dep.gateway.start.remote(), timeout=max(1.0, deadline - time.monotonic()))
            progress(f"serving the OpenAI API at {dep.url} ({time.time() - began:.1f}s after deploy began)")
    except BaseException:
        dep.shutdown()
        raise
    return dep


def with_planned_cpus(config: ChorusConfig, progress: Progress = lambda _: None) -> ChorusConfig:
    """`config` with a CPU set for every replica whose placement has none, on a one-node cluster.

    Without one, vLLM-CPU binds every engine to the same core. The plan uses this machine's
    cores and its GPUs' NUMA affinity (cluster.placement.cpus); on a multi-node cluster only `chorus plan`'s explicit
    `cpus:` apply, since the driver cannot see the other nodes' cores.
    """
    missing = [m.name for m in config.models if config.placement_of(m.name).cpus is None]
    alive = [n for n in ray.nodes() if n.get("Alive")]
    if not missing or len(alive) != 1:
        return config
    placement = {m.name: config.placement_of(m.name) for m in config.models}
    # This machine's cores, and its GPUs' NUMA cores where NVML reports them (none on a CPU machine).
    planned = with_cpus(placement, plan_cpus([m.name for m in config.models], placement, nodes_of(from_nvml())))
    merged = {m: (planned[m] if m in missing else p) for m, p in placement.items()}
    progress("engine cores: " + ", ".join(f"{m} {'|'.join(merged[m].cpus or [])}" for m in missing))
    return config.model_copy(update={"placement": merged})


def _await_starts(
    started: dict[Any, ReplicaSlot], deadline: float, progress: Progress, began: float, scheduled: float
) -> None:
    """Waits for a wave's engines; prints each one's timeline (seconds since deploy began)."""
    pending = list(started)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1, timeout=max(0.0, deadline - time.monotonic()))
        if not ready:
            late = ", ".join(f"{started[r].model}[{started[r].replica}]" for r in pending)
            raise DeployError(f"engine(s) {late} did not start before the deadline")
        slot = started[ready[0]]
        try:
            times: StartTimes = ray.get(ready[0])
        except Exception as exc:  # noqa: BLE001 - any start failure becomes the DeployError naming the replica
            cause = getattr(exc, "cause", None) or exc
            raise DeployError(f"model '{slot.model}' replica {slot.replica} failed to start: {cause}") from None
        marks = [("scheduled", scheduled), ("process up", times.process_up), *times.phases.items(), ("ready", times.ready)]
        line = ", ".join(f"{name} {at - began:.1f}s" for name, at in marks)
        progress(f"  {slot.model}[{slot.replica}]: {line} (engine start {times.ready - times.engine_start:.1f}s)")


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
            _quietly(lambda: ray.get(handle.shutdown.remote(), timeout=60))  # noqa: B023 - called at once
        ray.kill(handle)
        killed.append(info["name"])
    return killed
